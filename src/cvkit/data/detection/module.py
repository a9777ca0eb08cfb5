"""The detection data module (the batch contract is in :mod:`cvkit.data.detection`): the records of images
with boxes, the dataset that reads them through a box-aware pipeline, the collate function, and the base
class of every detection module with its COCO-format ground truth."""

from __future__ import annotations

import logging
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import albumentations as A
import numpy as np
import torch
from torch.utils.data import Dataset

from cvkit.data.base import BaseDataModule
from cvkit.data.batches import Batch, Unreadable, read_or_skip, split_unreadable
from cvkit.data.formats.coco import Segmentation, decode_segmentation
from cvkit.data.images import DECODE_ERRORS, read_rgb, stored_size
from cvkit.data.transforms import build_detection_pipeline, seed_pipeline, unit_range
from cvkit.errors import CvkitError

log = logging.getLogger(__name__)


@dataclass
class DetectionRecord:
    """One image and every object its annotation file lists, in absolute pixel coordinates."""

    path: Path
    image_id: int
    width: int
    height: int
    boxes: np.ndarray  # float64 [N, 4] xyxy, as annotated (not clipped)
    labels: np.ndarray  # int64 [N], 1..K
    iscrowd: np.ndarray  # bool [N]: evaluation ignores the box (COCO crowd, VOC difficult)
    train: np.ndarray  # bool [N]: the box is part of the training (and validation loss) targets
    areas: np.ndarray | None = None  # float64 [N]: the annotated areas; box areas when None
    file_name: str = field(default="")
    # Instance data: each object's region as COCO writes it (polygons or an RLE, image pixels); None: boxes only
    segmentations: list[Segmentation] | None = None

    def __post_init__(self) -> None:
        self.boxes = np.asarray(self.boxes, dtype=np.float64).reshape(-1, 4)
        self.labels = np.asarray(self.labels, dtype=np.int64)
        self.iscrowd = np.asarray(self.iscrowd, dtype=bool)
        self.train = np.asarray(self.train, dtype=bool)
        if self.areas is None:
            self.areas = (self.boxes[:, 2] - self.boxes[:, 0]) * (self.boxes[:, 3] - self.boxes[:, 1])
        self.file_name = self.file_name or self.path.name


def warn_listing(what: str, lines: list[str]) -> None:
    """Log "N `what`:" and the first 20 of `lines` (nothing when there are none)."""
    if lines:
        more = f"\n  ... and {len(lines) - 20} more" if len(lines) > 20 else ""
        log.warning("%d %s:\n%s%s", len(lines), what, "\n".join(f"  {line}" for line in lines[:20]), more)


def take_stored_size(record: DetectionRecord) -> str | None:
    """Give `record` its image file's own size where its annotation says another (a box outside the
    annotated size may lie inside the real image), and say so; None where nothing changed. A file that
    cannot be opened keeps the annotated size: the loader reports it when it reads it."""
    try:
        width, height = stored_size(record.path)
    except DECODE_ERRORS:
        return None
    if (width, height) == (record.width, record.height):
        return None
    said = f"{record.path}: {width}x{height}, its annotation says {record.width}x{record.height}"
    record.width, record.height = width, height
    return said


def clip_boxes(boxes: np.ndarray, width: int, height: int) -> tuple[np.ndarray, np.ndarray]:
    """Boxes (xyxy) clipped to a `width` x `height` image, and which of them still have an area: in a
    40x40 image, [-5, 10, 50, 20] becomes [0, 10, 40, 20] (kept) and [30, 5, 30, 9] has none."""
    clipped = np.asarray(boxes, dtype=np.float64).reshape(-1, 4).copy()
    clipped[:, [0, 2]] = clipped[:, [0, 2]].clip(0, width)
    clipped[:, [1, 3]] = clipped[:, [1, 3]].clip(0, height)
    valid = (clipped[:, 2] > clipped[:, 0]) & (clipped[:, 3] > clipped[:, 1])
    return clipped, valid


class DetectionDataset(Dataset):
    """Images and their training boxes through a box-aware albumentations pipeline.

    Items are asked for as ``index`` or ``(index, seed)``, as in ``ClassificationDataset``: with a seed,
    the augmentations of the sample are drawn from it. An unreadable image yields an
    :class:`~cvkit.data.batches.Unreadable` with its image id (the collate function drops it from the batch
    and names it in ``batch.unreadable``; evaluation counts it as an image without detections) unless
    ``strict``. With ``keep_size`` (evaluation) a pipeline that changes the
    image size is an error, since predictions must come out in original image coordinates.
    """

    def __init__(self, records: Sequence[DetectionRecord], transform: A.Compose, strict: bool, keep_size: bool):
        self.records = records
        self.transform = transform
        self.strict = strict
        self.keep_size = keep_size
        self._warned: set[Path] = set()

    def __len__(self) -> int:
        return len(self.records)

    def __getitem__(self, item: int | tuple[int, int]) -> tuple[torch.Tensor, dict[str, Any]] | Unreadable:
        index, seed = item if isinstance(item, tuple) else (item, None)
        record = self.records[index]
        image = read_or_skip(lambda: read_rgb(record.path), index, self.strict, record.image_id)
        if isinstance(image, Unreadable):
            return image
        positions = np.flatnonzero(record.train)
        boxes, labels = record.boxes[positions], record.labels[positions]
        height, width = image.shape[:2]
        if (width, height) != (record.width, record.height):
            self._check_size(record, width, height)
            boxes, valid = clip_boxes(boxes, width, height)
            boxes, labels, positions = boxes[valid], labels[valid], positions[valid]
        if seed is not None:
            seed_pipeline(self.transform, seed)
        masks = self._masks(record, positions)
        # The boxes' label field carries each object's position, so that its mask and label follow it
        out = self.transform(image=image, bboxes=boxes.astype(np.float32), labels=np.arange(len(boxes)), **masks)
        if self.keep_size and tuple(out["image"].shape[1:]) != (height, width):
            raise CvkitError(
                f"data.eval_transforms turned {record.path} ({width}x{height}) into "
                f"{out['image'].shape[2]}x{out['image'].shape[1]}: evaluation needs the original size "
                "(the detector resizes internally); remove resizing and cropping steps from data.eval_transforms"
            )
        kept = np.asarray(out["labels"], dtype=np.int64).reshape(-1)
        target = {
            "boxes": torch.as_tensor(np.asarray(out["bboxes"], dtype=np.float32).reshape(-1, 4)),
            "labels": torch.as_tensor(labels[kept]),
            "image_id": record.image_id,
        }
        if record.segmentations is not None:
            target["masks"] = (
                out["masks"][torch.as_tensor(kept)] if masks else out["image"].new_zeros((0, *out["image"].shape[1:]))
            )
            target = drop_empty_masks(target)
        return out["image"], target

    def _check_size(self, record: DetectionRecord, width: int, height: int) -> None:
        """Warn once per file that its boxes are clipped to its own size; refuse it for instance data, whose
        masks are drawn at the annotated size."""
        if record.segmentations is not None:
            raise CvkitError(
                f"{record.path} is {width}x{height}, but its annotation says {record.width}x{record.height}: its "
                "object masks would not line up; correct the image's width and height in the annotation file"
            )
        if record.path not in self._warned:
            self._warned.add(record.path)
            log.warning(
                "%s is %dx%d, but its annotation says %dx%d: its boxes are clipped to the image",
                record.path, width, height, record.width, record.height,
            )  # fmt: skip

    @staticmethod
    def _masks(record: DetectionRecord, positions: np.ndarray) -> dict[str, np.ndarray]:
        """``{"masks": uint8 [N, H, W]}``, the regions of the objects at `positions`, for instance data with
        objects; otherwise nothing (albumentations cannot stack an empty list of masks)."""
        if record.segmentations is None or not len(positions):
            return {}
        regions = [decode_segmentation(record.segmentations[p], record.height, record.width) for p in positions]
        return {"masks": np.stack(regions).astype(np.uint8)}


def drop_empty_masks(target: dict[str, Any]) -> dict[str, Any]:
    """`target` without the objects whose mask has no pixel left (cropped away, or too thin to survive a
    resize), their boxes and labels dropped with them."""
    filled = target["masks"].flatten(1).any(dim=1)
    if bool(filled.all()):
        return target
    return {**target, **{key: target[key][filled] for key in ("boxes", "labels", "masks")}}


def collate_detection(samples: list[Any]) -> Batch:
    """``(images, targets)`` lists from the samples that could be read (an empty batch if none could),
    naming the others in ``batch.unreadable``."""
    kept, unreadable = split_unreadable(samples)
    parts = ([image for image, _ in kept], [target for _, target in kept]) if kept else ()
    return Batch(parts, unreadable)


def unit_range_each(images: list[torch.Tensor]) -> list[torch.Tensor]:
    return [unit_range(image) for image in images]


class DetectionDataModule(BaseDataModule):
    """Base of every detection data module; subclasses implement :meth:`load_splits`, returning
    ``({"train": [DetectionRecord, ...], "val": [...][, "test": [...]]}, class_names)`` with labels
    1..K for the K class names, and set :attr:`label_to_category` where their category ids are not 1..K.

    Loaders, sampling, mid-epoch resume and ``global_batch_size`` are those of
    :class:`~cvkit.data.base.BaseDataModule`; the batch format is in the docstring of its package.
    """

    name = "detection"
    collate = staticmethod(collate_detection)

    def __init__(
        self,
        *,
        min_box_visibility: float = 0.3,
        train_transforms: Sequence[Any] | None = None,
        eval_transforms: Sequence[Any] | None = None,
        **common: Any,
    ) -> None:
        super().__init__(**common)
        self.min_box_visibility = min_box_visibility
        self.train_pipeline = build_detection_pipeline(train_transforms, min_box_visibility, "data.train_transforms")
        self.eval_pipeline = build_detection_pipeline(eval_transforms, min_box_visibility, "data.eval_transforms")
        self.splits: dict[str, list[DetectionRecord]] | None = None
        self._categories: list[int] = []
        # Boxes left out of training, as "file: why" lines: subclasses add theirs while loading.
        self.box_problems: list[str] = []
        # Images whose annotated size left boxes outside it: they take the file's own size.
        self.size_corrections: list[str] = []

    @property
    def label_to_category(self) -> list[int]:
        """Label i (1..K) is category ``label_to_category[i - 1]`` of the annotations (1..K unless set)."""
        return self._categories or list(range(1, self.num_classes + 1))

    @label_to_category.setter
    def label_to_category(self, categories: Sequence[int]) -> None:
        self._categories = [int(category) for category in categories]

    def setup(self, stage: str | None = None) -> None:
        if self.splits is not None:
            return
        super().setup(stage)
        for records in self.splits.values():
            for record in records:
                _, valid = clip_boxes(record.boxes, record.width, record.height)
                if (record.train & ~valid).any() and (corrected := take_stored_size(record)):
                    self.size_corrections.append(corrected)
                    _, valid = clip_boxes(record.boxes, record.width, record.height)
                for position in np.flatnonzero(record.train & ~valid):
                    box = ", ".join(f"{value:g}" for value in record.boxes[position])
                    self.box_problems.append(f"{record.path}: box [{box}] has no area inside the image")
                record.train &= valid
        warn_listing("image(s) used at their own size, not their annotation's", self.size_corrections)
        warn_listing("box(es) left out of training", self.box_problems)

    def image_finisher(self) -> Callable[[list[torch.Tensor]], list[torch.Tensor]]:
        """0..1 float images: the detector normalises and resizes them inside."""
        return unit_range_each

    def make_dataset(self, split: str, train: bool) -> DetectionDataset:
        pipeline = self.train_pipeline if train else self.eval_pipeline
        return DetectionDataset(self._split(split), pipeline, strict=self.strict, keep_size=not train)

    def ground_truth(self, split: str) -> dict[str, list[dict[str, Any]]]:
        """The split's annotations as a COCO-format dict, for pycocotools' ``COCO`` and evaluation.

        Every annotated box is there, in original image coordinates, with its original category id
        (``label_to_category``); annotation ids are 1, 2, ... in image order. Crowd and difficult boxes
        have ``iscrowd=1``, so COCO evaluation neither rewards nor penalises detections of them (as the
        VOC protocol treats difficult boxes). Instance data carries each object's ``segmentation`` too."""
        categories = self.label_to_category
        images, annotations = [], []
        for record in self._split(split):
            images.append(
                {"id": record.image_id, "width": record.width, "height": record.height, "file_name": record.file_name}
            )
            regions = record.segmentations or [None] * len(record.boxes)
            for box, label, crowd, area, region in zip(
                record.boxes, record.labels, record.iscrowd, record.areas, regions, strict=True
            ):
                x0, y0, x1, y1 = (float(value) for value in box)
                annotations.append(
                    {
                        "id": len(annotations) + 1,
                        "image_id": record.image_id,
                        "category_id": categories[label - 1],
                        "bbox": [x0, y0, x1 - x0, y1 - y0],
                        "area": float(area),
                        "iscrowd": int(crowd),
                        **({"segmentation": region} if region is not None else {}),
                    }
                )
        names = [{"id": category, "name": name} for category, name in zip(categories, self.class_names)]
        return {"images": images, "annotations": annotations, "categories": names}
