"""Data modules: datasets + albumentations pipelines -> seeded, sharded batches."""

from cvkit.data.base import BaseDataModule
from cvkit.data.builtin import DigitsDataModule, TorchvisionDataModule
from cvkit.data.coco import CocoDetectionDataModule
from cvkit.data.datamodule import ClassificationDataModule, Split
from cvkit.data.detection import DetectionDataModule, DetectionRecord
from cvkit.data.folders import ImageFolderDataModule
from cvkit.data.voc import VOCDetectionDataModule

__all__ = [
    "BaseDataModule",
    "ClassificationDataModule",
    "CocoDetectionDataModule",
    "DetectionDataModule",
    "DetectionRecord",
    "DigitsDataModule",
    "ImageFolderDataModule",
    "Split",
    "TorchvisionDataModule",
    "VOCDetectionDataModule",
]
