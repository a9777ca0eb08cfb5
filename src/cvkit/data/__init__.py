"""Data modules: datasets + albumentations pipelines -> seeded, sharded batches, one package per task
(each opens with its batch contract); what they share is beside them (base, batches, images, samplers,
transforms, formats).

Every data module is importable from here, as the configs' ``_target_`` names them. They are imported on
first use, so that a module that needs only image reading or the pipelines (``cvkit.load``) does not load
the data modules, nor Lightning with them.
"""

from __future__ import annotations

import importlib
from collections.abc import Callable
from typing import Any

# Public name -> the module that defines it.
PUBLIC = {
    "BaseDataModule": "cvkit.data.base",
    "ClassificationDataModule": "cvkit.data.classification.module",
    "DigitsDataModule": "cvkit.data.classification.builtin",
    "ImageFolderDataModule": "cvkit.data.classification.folders",
    "Split": "cvkit.data.classification.module",
    "TorchvisionDataModule": "cvkit.data.classification.builtin",
    "CocoDetectionDataModule": "cvkit.data.detection.coco",
    "DetectionDataModule": "cvkit.data.detection.module",
    "DetectionRecord": "cvkit.data.detection.module",
    "VOCDetectionDataModule": "cvkit.data.detection.voc",
    "YOLODetectionDataModule": "cvkit.data.detection.yolo",
    "CocoInstanceDataModule": "cvkit.data.instances.coco",
    "InstanceSegmentationDataModule": "cvkit.data.instances.module",
    "YOLOInstanceDataModule": "cvkit.data.instances.yolo",
    "CocoSegmentationDataModule": "cvkit.data.segmentation.coco",
    "MaskFolderDataModule": "cvkit.data.segmentation.folders",
    "SegmentationDataModule": "cvkit.data.segmentation.module",
    "SegmentationRecord": "cvkit.data.segmentation.module",
    "VOCSegmentationDataModule": "cvkit.data.segmentation.voc",
    "StreamingClassificationDataModule": "cvkit.data.streaming.module",
    "StreamingDetectionDataModule": "cvkit.data.streaming.module",
    "StreamingInstanceDataModule": "cvkit.data.streaming.module",
    "StreamingSegmentationDataModule": "cvkit.data.streaming.module",
}
__all__ = sorted(PUBLIC)


def __getattr__(name: str) -> Any:
    if name not in PUBLIC:
        raise AttributeError(f"module 'cvkit.data' has no attribute {name!r}")
    try:
        module = importlib.import_module(PUBLIC[name])
    except AttributeError as err:  # raised while importing it: not "no such name", which would hide it
        raise ImportError(f"importing {PUBLIC[name]} (for cvkit.data.{name}) failed: {err}") from err
    return getattr(module, name)


def __dir__() -> list[str]:
    return sorted([*globals(), *PUBLIC])


def exported(package: str, names: list[str]) -> Callable[[str], Any]:
    """The module ``__getattr__`` of the subpackage `package`: its public `names`, each imported on first use
    (a classification run loads no detection or segmentation format)."""

    def attribute(name: str) -> Any:
        if name not in names:
            raise AttributeError(f"module {package!r} has no attribute {name!r}")
        return __getattr__(name)

    return attribute
