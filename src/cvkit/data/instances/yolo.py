"""YOLO-format instance segmentation data (Ultralytics): a dataset YAML, image folders, and one
``labels/*.txt`` per image whose every line is a polygon ``class x1 y1 x2 y2 x3 y3 ...``."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import numpy as np
from pycocotools import mask as mask_utils

from cvkit.data.detection.yolo import YOLODetectionDataModule
from cvkit.data.formats.yolo import read_polygons
from cvkit.data.instances.module import InstanceSegmentationDataModule


class YOLOInstanceDataModule(YOLODetectionDataModule, InstanceSegmentationDataModule):
    """Instance segmentation data in the layout Ultralytics trains its segmentation models on: the dataset
    YAML, classes and image numbering of :class:`~cvkit.data.detection.yolo.YOLODetectionDataModule`, and a
    polygon for every object (:func:`~cvkit.data.formats.yolo.read_polygons`: at least 3 points, fractions of
    the image size). Each object's region is that one polygon in pixels, its box the polygon's bounding box
    (as Ultralytics takes it) and its area the polygon's mask area (as COCO's files give it). A box line is
    refused, naming its file and line."""

    def __init__(self, **dataset_and_common: Any) -> None:
        super().__init__(**dataset_and_common)
        self.name = f"yolo_seg {self.dataset_yaml}"

    def describe(self) -> str:
        return f"YOLO instance segmentation data of {self.dataset_yaml}"

    def _objects(self, labels: Path, num_classes: int, width: int, height: int) -> dict[str, Any]:
        polygons, classes = read_polygons(labels, num_classes, width, height)
        flat = [polygon.ravel().tolist() for polygon in polygons]
        areas = mask_utils.area(mask_utils.frPyObjects(flat, height, width)) if flat else []
        return {
            "boxes": np.array([[*polygon.min(axis=0), *polygon.max(axis=0)] for polygon in polygons]).reshape(-1, 4),
            "labels": classes + 1,
            "segmentations": [[points] for points in flat],
            "areas": np.asarray(areas, dtype=np.float64),
        }
