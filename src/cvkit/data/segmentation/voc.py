"""Pascal VOC segmentation data: ``root/{JPEGImages,SegmentationClass,ImageSets/Segmentation}``."""

from __future__ import annotations

import logging
from collections.abc import Sequence
from pathlib import Path
from typing import Any

from cvkit.data.formats.voc import check_layout, images_by_id, read_split_ids
from cvkit.data.segmentation.module import SegmentationDataModule, SegmentationRecord, resolve_class_names
from cvkit.errors import CvkitError, few

log = logging.getLogger(__name__)

VOC_CLASSES = (
    "background", "aeroplane", "bicycle", "bird", "boat", "bottle", "bus", "car", "cat", "chair", "cow",
    "diningtable", "dog", "horse", "motorbike", "person", "pottedplant", "sheep", "sofa", "train", "tvmonitor",
)  # fmt: skip


class VOCSegmentationDataModule(SegmentationDataModule):
    """Segmentation data in the Pascal VOC layout (``root``): JPEGImages/<id>.jpg, masks
    <mask_folder>/<id>.png (palette PNGs of class indices, 255 = the object borders to ignore) and
    ImageSets/Segmentation/<split>.txt listing image ids.

    ``train_split``/``val_split``/``test_split`` name the split files; the test split is optional (null,
    or no such file). ``class_names`` default to the 21 VOC classes (index 0 is the background).
    ``mask_folder`` may name another folder of the same layout (e.g. ``SegmentationClassAug``).
    """

    def __init__(
        self,
        *,
        root: str,
        class_names: Sequence[str] | None = None,
        mask_folder: str = "SegmentationClass",
        train_split: str = "train",
        val_split: str = "val",
        test_split: str | None = "test",
        **common: Any,
    ) -> None:
        super().__init__(**common)
        self.root = Path(root).expanduser()
        self.class_names = resolve_class_names(None, VOC_CLASSES if class_names is None else class_names)
        self.mask_folder = mask_folder
        self.split_names = {"train": train_split, "val": val_split, "test": test_split}
        self.name = f"voc_seg {self.root}"

    @property
    def layout(self) -> str:
        return (
            f"ROOT/JPEGImages/<id>.jpg, ROOT/{self.mask_folder}/<id>.png and ROOT/ImageSets/Segmentation/<split>.txt"
            " (one image id a line)"
        )

    def describe(self) -> str:
        return f"VOC segmentation data at {self.root}"

    def load_splits(self) -> tuple[dict[str, list[SegmentationRecord]], list[str]]:
        check_layout(self.root, ("JPEGImages", self.mask_folder, "ImageSets/Segmentation"), self.layout)
        images = images_by_id(self.root / "JPEGImages")
        splits = {}
        for split in ("train", "val", "test"):
            ids = read_split_ids(self.root, "Segmentation", split, self.split_names[split])
            if ids is not None:
                splits[split] = self._records(split, ids, images)
        return splits, self.class_names

    def _records(self, split: str, ids: list[str], images: dict[str, Path]) -> list[SegmentationRecord]:
        masks = {image_id: self.root / self.mask_folder / f"{image_id}.png" for image_id in ids}
        listing = self.root / "ImageSets" / "Segmentation" / f"{self.split_names[split]}.txt"
        problems = []
        if no_image := [image_id for image_id in ids if image_id not in images]:
            problems.append(f"{len(no_image)} have no image in {self.root / 'JPEGImages'} ({few(no_image)})")
        if no_mask := [image_id for image_id in ids if not masks[image_id].is_file()]:
            problems.append(f"{len(no_mask)} have no mask {self.root / self.mask_folder}/<id>.png ({few(no_mask)})")
        if problems:
            raise CvkitError(f"data.root: of the {len(ids)} ids in {listing}, {'; '.join(problems)}")
        return [SegmentationRecord(images[image_id], masks[image_id]) for image_id in ids]
