"""Data modules: datasets + albumentations pipelines -> seeded, sharded batches."""

from cvkit.data.base import BaseDataModule
from cvkit.data.builtin import DigitsDataModule, TorchvisionDataModule
from cvkit.data.coco import CocoDetectionDataModule
from cvkit.data.coco_seg import CocoSegmentationDataModule
from cvkit.data.datamodule import ClassificationDataModule, Split
from cvkit.data.detection import DetectionDataModule, DetectionRecord
from cvkit.data.folders import ImageFolderDataModule
from cvkit.data.masks import MaskFolderDataModule
from cvkit.data.segmentation import SegmentationDataModule, SegmentationRecord
from cvkit.data.voc import VOCDetectionDataModule
from cvkit.data.voc_seg import VOCSegmentationDataModule

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
