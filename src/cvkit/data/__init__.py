"""Data modules: datasets + albumentations pipelines -> seeded, sharded batches."""

from cvkit.data.builtin import DigitsDataModule, TorchvisionDataModule
from cvkit.data.datamodule import ClassificationDataModule, Split
from cvkit.data.folders import ImageFolderDataModule

__all__ = [
    "ClassificationDataModule",
    "DigitsDataModule",
    "ImageFolderDataModule",
    "Split",
    "TorchvisionDataModule",
]
