"""COCO detection data: an image folder and a COCO instances JSON per split."""

from __future__ import annotations

import logging
from typing import Any

import numpy as np

from cvkit.data.detection.module import DetectionDataModule, DetectionRecord
from cvkit.data.formats.coco import CocoFiles, CocoImage
from cvkit.errors import CvkitError

log = logging.getLogger(__name__)


class CocoDetectionDataModule(CocoFiles, DetectionDataModule):
    """Detection data in COCO format: ``<split>_images`` (a folder; each image's ``file_name`` is relative
    to it) and ``<split>_annotations`` (a COCO instances JSON) for train and val, and optionally test.

    Category ids (any integers, such as COCO's 1..90 with gaps) become labels 1..K in sorted id order, and
    :attr:`label_to_category` maps them back; the class names are the categories' names, from the train
    file. Crowd annotations (``iscrowd=1``) are left out of training and kept in :meth:`ground_truth`;
    images without annotations are kept. Image ids are the file's own. A box of negative width or height is
    dropped with a warning naming it, or refused under ``data.strict``.
    """

    def __init__(self, **files_and_common: Any) -> None:
        super().__init__(**files_and_common)
        self.name = f"coco {self.paths['train'][1]}"

    def describe(self) -> str:
        return f"COCO detection data ({self.paths['train'][1]})"

    def load_splits(self) -> tuple[dict[str, list[DetectionRecord]], list[str]]:
        images, categories = self.read_files()
        self.label_to_category = list(categories)
        label_of = {category: label for label, category in enumerate(self.label_to_category, 1)}
        splits = {
            split: [self._record(image, label_of, split) for image in split_images]
            for split, split_images in images.items()
        }
        return splits, list(categories.values())

    def _record(self, image: CocoImage, label_of: dict[int, int], split: str) -> DetectionRecord:
        for entry in image.annotations:
            bbox = entry.get("bbox")
            if not isinstance(bbox, list) or len(bbox) != 4:
                raise CvkitError(
                    f"annotation {entry.get('id', '?')} of image {image.id} ({image.path.name}) has bbox "
                    f"{bbox!r}; expected [x, y, width, height]"
                )
        annotations = [entry for entry in image.annotations if self._has_a_size(entry, image, split)]
        boxes = np.array([entry["bbox"] for entry in annotations], dtype=np.float64).reshape(-1, 4)
        boxes[:, 2:] += boxes[:, :2]
        crowd = np.array([bool(entry.get("iscrowd", 0)) for entry in annotations], dtype=bool)
        areas = [entry.get("area", entry["bbox"][2] * entry["bbox"][3]) for entry in annotations]
        height, width = image.size
        return DetectionRecord(
            path=image.path,
            image_id=image.id,
            width=width,
            height=height,
            boxes=boxes,
            labels=[label_of[entry["category_id"]] for entry in annotations],
            iscrowd=crowd,
            train=~crowd,
            areas=np.array(areas, dtype=np.float64),
            file_name=image.entry["file_name"],
            segmentations=self._segmentations(annotations, image, split),
        )

    def _segmentations(self, annotations: list[dict[str, Any]], image: CocoImage, split: str) -> list[Any] | None:
        """What each of `annotations` (of `image`, in the `split` file) contributes besides its box: nothing for
        box detection; instance data reads each object's region."""
        return None

    def _has_a_size(self, entry: dict[str, Any], image: CocoImage, split: str) -> bool:
        """Whether the box of annotation `entry` (of the `split` file) has no negative width or height: such a
        box is dropped with a warning, or refused under ``data.strict``."""
        width, height = entry["bbox"][2:]
        if width >= 0 and height >= 0:
            return True
        problem = (
            f"data.{split}_annotations: {self.paths[split][1]} annotation {entry.get('id', '?')} of image "
            f"{image.id} ({image.entry['file_name']}) has bbox {entry['bbox']} of negative width or height"
        )
        if self.strict:
            raise CvkitError(
                f"{problem}; a COCO bbox is [x, y, width, height] with width, height >= 0 "
                "(data.strict=false drops such boxes with a warning)"
            )
        log.warning("%s: the box is dropped (training and evaluation)", problem)
        return False
