"""YOLO-format detection data (Ultralytics): a dataset YAML, image folders, one ``labels/*.txt`` per image."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import numpy as np

from cvkit.data.detection.module import DetectionDataModule, DetectionRecord
from cvkit.data.formats.yolo import label_path, read_dataset_yaml, read_labels
from cvkit.data.images import DECODE_ERRORS, stored_size
from cvkit.errors import CvkitError


class YOLODetectionDataModule(DetectionDataModule):
    """Detection data in the layout Ultralytics trains on (:mod:`cvkit.data.formats.yolo`): ``dataset`` is the
    path of its dataset YAML. Class id c of the label files is label c + 1 (``names[c]``); images are numbered
    1, 2, ... in each split's sorted order. Each image's size is read from its header. Boxes with no area
    inside the image are left out of training with a warning naming the file (they stay in ground truth)."""

    def __init__(self, *, dataset: str, **common: Any) -> None:
        super().__init__(**common)
        self.dataset_yaml = Path(dataset).expanduser()
        self.name = f"yolo {self.dataset_yaml}"

    def describe(self) -> str:
        return f"YOLO detection data of {self.dataset_yaml}"

    def load_splits(self) -> tuple[dict[str, list[DetectionRecord]], list[str]]:
        dataset = read_dataset_yaml(self.dataset_yaml)
        splits = {}
        for split, images in dataset.splits.items():
            if not images:
                raise CvkitError(f"data.dataset: the {split} split of {self.dataset_yaml} holds no images")
            splits[split] = [self._record(path, number, len(dataset.names)) for number, path in enumerate(images, 1)]
        return splits, dataset.names

    def _record(self, image: Path, number: int, num_classes: int) -> DetectionRecord:
        try:
            width, height = stored_size(image)
        except FileNotFoundError as err:
            raise CvkitError(f"data.dataset: {image} is listed in {self.dataset_yaml} but does not exist") from err
        except DECODE_ERRORS as err:
            raise CvkitError(f"cannot read the size of {image}: {err}") from err
        objects = self._objects(label_path(image), num_classes, width, height)
        boxes = objects["boxes"]
        empty = (boxes[:, 2] <= boxes[:, 0]) | (boxes[:, 3] <= boxes[:, 1])
        for position in np.flatnonzero(empty):
            self.box_problems.append(f"{label_path(image)}: object {position + 1} has no width or height")
        return DetectionRecord(
            image, number, width, height, iscrowd=np.zeros(len(boxes), bool), train=~empty, **objects
        )

    def _objects(self, labels: Path, num_classes: int, width: int, height: int) -> dict[str, Any]:
        """The :class:`DetectionRecord` fields of the objects in label file `labels` (of a `width` x `height`
        image): ``boxes`` (xyxy pixels) and ``labels`` (1..K) for detection; instance data adds their regions."""
        boxes, classes = read_labels(labels, num_classes, width, height)
        return {"boxes": boxes, "labels": classes + 1}
