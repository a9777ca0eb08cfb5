"""Data modules: datasets + albumentations pipelines -> seeded, sharded batches, one package per task
(each opens with its batch contract); what they share is beside them (base, batches, images, samplers,
transforms, formats). Every data module is importable from here, as the configs' ``_target_`` names them."""

from cvkit.data.base import BaseDataModule
from cvkit.data.classification import (
    ClassificationDataModule,
    DigitsDataModule,
    ImageFolderDataModule,
    Split,
    TorchvisionDataModule,
)
from cvkit.data.detection import (
    CocoDetectionDataModule,
    DetectionDataModule,
    DetectionRecord,
    VOCDetectionDataModule,
)
from cvkit.data.segmentation import (
    CocoSegmentationDataModule,
    MaskFolderDataModule,
    SegmentationDataModule,
    SegmentationRecord,
    VOCSegmentationDataModule,
)

__all__ = [
    "BaseDataModule",
    "ClassificationDataModule",
    "CocoDetectionDataModule",
    "CocoSegmentationDataModule",
    "DetectionDataModule",
    "DetectionRecord",
    "DigitsDataModule",
    "ImageFolderDataModule",
    "MaskFolderDataModule",
    "SegmentationDataModule",
    "SegmentationRecord",
    "Split",
    "TorchvisionDataModule",
    "VOCDetectionDataModule",
    "VOCSegmentationDataModule",
]
