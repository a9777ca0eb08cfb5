"""``cvkit-data check``: what a detection dataset holds and what is wrong with it, before training.

Every image of every split is decoded (as training would), and its size compared with the annotation's;
every box is checked against its image. The report counts images, objects and classes per split, lists the
image sizes, and names each problem with its file: unreadable images, sizes that differ from the
annotation, boxes the data module leaves out of training (no area, or none inside the image), boxes partly
outside their image, images in more than one split, and classes without training objects. Instance data's
masks are decoded too: an empty mask, or one lying mostly outside its object's box, is named.
"""

from __future__ import annotations

from collections import Counter
from collections.abc import Callable, Iterable
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np

from cvkit.data.detection.module import DetectionDataModule, DetectionRecord
from cvkit.data.formats.coco import decode_segmentation
from cvkit.data.images import CorruptImageError, read_rgb

# How far (pixels) a box may reach past the image border before it is reported as partly outside: the
# VOC convention alone puts xmax = width + 1 px away from the border of a 1-based, inclusive box.
BORDER_TOLERANCE = 1.0
# COCO's object sizes by box area in pixels: small below 32^2, medium below 96^2, large above.
BOX_SIZES = {"small": 32**2, "medium": 96**2, "large": float("inf")}
# A mask with more than this share of its pixels outside its object's box (widened by BORDER_TOLERANCE) is
# reported: it belongs to another object, or its coordinates are in other units (fractions of the image size).
MASK_OUTSIDE_SHARE = 0.5


@dataclass
class SplitReport:
    images: int = 0
    objects: int = 0
    images_without_objects: int = 0
    crowd_or_difficult: int = 0
    objects_per_class: dict[str, int] = field(default_factory=dict)
    objects_by_size: dict[str, int] = field(default_factory=lambda: dict.fromkeys(BOX_SIZES, 0))
    image_sizes: dict[str, int] = field(default_factory=dict)  # "WxH" -> images, most common first


@dataclass
class DatasetReport:
    """The per-split figures and the problems found, each problem a line naming its file."""

    dataset: str
    class_names: list[str]
    splits: dict[str, SplitReport]
    problems: dict[str, list[str]]

    @property
    def ok(self) -> bool:
        return not any(self.problems.values())

    def as_dict(self) -> dict[str, Any]:
        return {
            "dataset": self.dataset,
            "class_names": self.class_names,
            "splits": {name: vars(split) for name, split in self.splits.items()},
            "problems": self.problems,
            "ok": self.ok,
        }


PROBLEMS = {
    "unreadable_images": "unreadable images",
    "size_differs_from_annotation": "images whose size differs from their annotation",
    "boxes_left_out_of_training": "boxes left out of training (no width or height, or none inside the image)",
    "boxes_partly_outside_image": "boxes reaching past their image's border (clipped for training)",
    "empty_masks": "objects whose mask has no pixel (left out of training)",
    "masks_outside_their_box": f"objects with over {MASK_OUTSIDE_SHARE:.0%} of their mask outside their box",
    "images_in_several_splits": "images in more than one split",
    "classes_without_train_objects": "classes with no object in the train split",
}


def decoded_size(path: Path) -> tuple[int, int] | str:
    """(width, height) of the image as decoded, or why it cannot be decoded."""
    try:
        height, width = read_rgb(path).shape[:2]
    except CorruptImageError as err:
        return err.reason
    return width, height


def check_dataset(
    datamodule: DetectionDataModule,
    workers: int = 4,
    progress: Callable[[Iterable[Any], int], Iterable[Any]] = lambda items, _: items,
) -> DatasetReport:
    """The report on a set-up detection data module; images are decoded on `workers` threads, their
    results passed through `progress` (an iterable wrapper given the total, e.g. a progress bar)."""
    assert datamodule.splits is not None, "call datamodule.setup() first"
    names = datamodule.class_names
    problems: dict[str, list[str]] = {key: [] for key in PROBLEMS}
    problems["boxes_left_out_of_training"] = list(datamodule.box_problems)
    problems["size_differs_from_annotation"] = list(datamodule.size_corrections)  # set-up took the file's size
    paths = sorted({record.path for records in datamodule.splits.values() for record in records})
    with ThreadPoolExecutor(max(1, workers)) as pool:
        sizes = dict(zip(paths, progress(pool.map(decoded_size, paths), len(paths))))
    for path, size in sizes.items():
        if isinstance(size, str):
            problems["unreadable_images"].append(f"{path}: {size}")
    splits = {}
    for split, records in datamodule.splits.items():
        splits[split] = SplitReport(images=len(records))
        for record in records:
            _check_record(record, sizes[record.path], names, splits[split], problems)
        report = splits[split]
        report.objects_per_class = {name: report.objects_per_class.get(name, 0) for name in names}
        report.image_sizes = dict(Counter(report.image_sizes).most_common())
    _check_splits(datamodule, problems)
    return DatasetReport(datamodule.describe(), names, splits, problems)


def _check_record(
    record: DetectionRecord,
    size: tuple[int, int] | str,
    names: list[str],
    report: SplitReport,
    problems: dict[str, list[str]],
) -> None:
    width, height = size if isinstance(size, tuple) else (record.width, record.height)
    if isinstance(size, tuple) and size != (record.width, record.height):
        problems["size_differs_from_annotation"].append(
            f"{record.path}: {width}x{height}, its annotation says {record.width}x{record.height}"
        )
    key = f"{width}x{height}"
    report.image_sizes[key] = report.image_sizes.get(key, 0) + 1
    report.objects += len(record.boxes)
    report.images_without_objects += not len(record.boxes)
    report.crowd_or_difficult += int(record.iscrowd.sum())
    for box, label in zip(record.boxes, record.labels):
        name = names[label - 1]
        report.objects_per_class[name] = report.objects_per_class.get(name, 0) + 1
        x0, y0, x1, y1 = box
        area = max(x1 - x0, 0) * max(y1 - y0, 0)
        report.objects_by_size[next(size for size, limit in BOX_SIZES.items() if area < limit)] += 1
        has_area_inside = min(x1, width) > max(x0, 0) and min(y1, height) > max(y0, 0)
        past_border = min(x0, y0) < -BORDER_TOLERANCE or x1 > width + BORDER_TOLERANCE or y1 > height + BORDER_TOLERANCE
        if has_area_inside and past_border:
            box_text = ", ".join(f"{value:g}" for value in box)
            problems["boxes_partly_outside_image"].append(
                f"{record.path}: {name} box [{box_text}] in a {width}x{height} image"
            )
    if record.segmentations is not None:
        _check_masks(record, names, problems)


def _check_masks(record: DetectionRecord, names: list[str], problems: dict[str, list[str]]) -> None:
    """Name the objects of `record` whose mask is empty, or lies mostly outside their box."""
    for number, (region, box, label) in enumerate(zip(record.segmentations, record.boxes, record.labels), 1):
        mask = decode_segmentation(region, record.height, record.width)
        what = f"{record.path}: object {number} ({names[label - 1]})"
        pixels = int(mask.sum())
        if not pixels:
            problems["empty_masks"].append(f"{what} has a mask of no pixel")
            continue
        x0, y0 = (max(int(np.floor(value - BORDER_TOLERANCE)), 0) for value in box[:2])
        x1, y1 = (int(np.ceil(value + BORDER_TOLERANCE)) for value in box[2:])
        outside = 1 - mask[y0:y1, x0:x1].sum() / pixels
        if outside > MASK_OUTSIDE_SHARE:
            box_text = ", ".join(f"{value:g}" for value in box)
            problems["masks_outside_their_box"].append(
                f"{what}: {outside:.0%} of its mask is outside its box [{box_text}]"
            )


def _check_splits(datamodule: DetectionDataModule, problems: dict[str, list[str]]) -> None:
    splits_of: dict[Path, list[str]] = {}
    for split, records in datamodule.splits.items():
        for record in records:
            splits_of.setdefault(record.path.resolve(), []).append(split)
    problems["images_in_several_splits"] = [
        f"{path}: in {' and '.join(found)}" for path, found in sorted(splits_of.items()) if len(set(found)) > 1
    ]
    trained = {int(label) for record in datamodule.splits["train"] for label in record.labels}
    problems["classes_without_train_objects"] = [
        name for label, name in enumerate(datamodule.class_names, 1) if label not in trained
    ]
