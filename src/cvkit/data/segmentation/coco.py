"""COCO segmentation data: the instance polygons and RLEs of COCO files, drawn into semantic masks."""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np

from cvkit.data.formats.coco import CocoFiles, CocoImage, Segmentation, check_segmentation, decode_segmentation
from cvkit.data.segmentation.module import SegmentationDataModule, SegmentationRecord
from cvkit.errors import CvkitError


@dataclass(frozen=True)
class CocoMask:
    """The semantic mask of one image, drawn from its annotations when read: each annotation's region
    takes its class; pixels of no annotation take `background`; pixels that annotations of different
    classes claim take `ignore_index` (as torchvision's COCO segmentation reference does)."""

    name: str  # for messages: "<annotation file> image <id>"
    height: int
    width: int
    segmentations: tuple[Segmentation, ...]
    classes: tuple[int, ...]
    background: int
    ignore_index: int

    def __str__(self) -> str:
        return self.name

    def read(self) -> np.ndarray:
        claimed = np.full((self.height, self.width), -1, dtype=np.int64)
        contested = np.zeros((self.height, self.width), dtype=bool)
        for segmentation, index in zip(self.segmentations, self.classes, strict=True):
            region = decode_segmentation(segmentation, self.height, self.width)
            contested |= region & (claimed >= 0) & (claimed != index)
            claimed[region] = index
        mask = np.where(claimed >= 0, claimed, self.background)
        mask[contested] = self.ignore_index
        return mask


class CocoSegmentationDataModule(CocoFiles, SegmentationDataModule):
    """Semantic segmentation from COCO instances files: ``<split>_images`` (a folder; ``file_name`` is
    relative to it) and ``<split>_annotations`` (JSON with polygon or RLE ``segmentation``s) for train and
    val, and optionally test. Masks are drawn with pycocotools as each image is read (see
    :class:`CocoMask`); crowd regions take their category's class.

    With ``background`` a name, class 0 is that name and pixels of no annotation; the categories follow in
    sorted id order. With ``background`` null the categories are classes 0..K-1 and pixels of no
    annotation are ignored (for files that label every pixel, such as COCO-Stuff).
    """

    def __init__(self, *, background: str | None = "background", **files_and_common: Any) -> None:
        super().__init__(**files_and_common)
        self.background = background
        self.name = f"coco_seg {self.paths['train'][1]}"

    def describe(self) -> str:
        return f"COCO segmentation data ({self.paths['train'][1]})"

    def load_splits(self) -> tuple[dict[str, list[SegmentationRecord]], list[str]]:
        images, categories = self.read_files()
        names = list(categories.values())
        if self.background is not None:
            if self.background in names:
                raise CvkitError(
                    f"data.background={self.background!r} is also a category of {self.paths['train'][1]}; "
                    "name the background class otherwise, or set data.background=null if the file labels it"
                )
            names.insert(0, self.background)
        first = 0 if self.background is None else 1
        self.category_to_class = {category: index for index, category in enumerate(categories, first)}
        splits = {
            split: [self._record(image, self.paths[split][1]) for image in split_images]
            for split, split_images in images.items()
        }
        return splits, names

    def _record(self, image: CocoImage, path: Path) -> SegmentationRecord:
        height, width = image.size
        for entry in image.annotations:
            where = f"{path} annotation {entry.get('id', '?')} (image {image.id})"
            check_segmentation(entry.get("segmentation"), height, width, where, "data=coco_seg", "data=coco")
        mask = CocoMask(
            name=f"{path.name} image {image.id}",
            height=height,
            width=width,
            segmentations=tuple(entry["segmentation"] for entry in image.annotations),
            classes=tuple(self.category_to_class[entry["category_id"]] for entry in image.annotations),
            background=self.ignore_index if self.background is None else 0,
            ignore_index=self.ignore_index,
        )
        return SegmentationRecord(image.path, mask)
