"""Segmentation data in folders: an image folder and a mask folder per split, matched by file stem."""

from __future__ import annotations

import logging
from collections.abc import Sequence
from pathlib import Path
from typing import Any

from cvkit.data.images import is_image_file
from cvkit.data.segmentation.module import SegmentationDataModule, SegmentationRecord, resolve_class_names
from cvkit.errors import CvkitError, few

log = logging.getLogger(__name__)


def files_by_stem(folder: Path, key: str) -> dict[str, Path]:
    """The image files directly in `folder` (config key `key`), by file stem; two files with one stem are
    an error, since images and masks are matched by stem."""
    if not folder.is_dir():
        raise CvkitError(f"data.{key}: {folder} does not exist or is not a folder")
    found: dict[str, Path] = {}
    for path in sorted(folder.iterdir()):
        if path.is_file() and is_image_file(path):
            if path.stem in found:
                raise CvkitError(f"data.{key}: {found[path.stem].name} and {path.name} in {folder} share a stem")
            found[path.stem] = path
    return found


def pair_by_stem(images_dir: Path, masks_dir: Path, split: str) -> list[SegmentationRecord]:
    """The (image, mask) pairs of one split: every image needs a mask of its stem (a.jpg <-> a.png) and
    every mask an image."""
    images = files_by_stem(images_dir, f"{split}_images")
    masks = files_by_stem(masks_dir, f"{split}_masks")
    if not images:
        raise CvkitError(f"data.{split}_images: {images_dir} contains no image files")
    problems = []
    if no_mask := sorted(images.keys() - masks.keys()):
        problems.append(f"{len(no_mask)} of the {len(images)} images in {images_dir} have no mask ({few(no_mask)})")
    if no_image := sorted(masks.keys() - images.keys()):
        problems.append(f"{len(no_image)} of the {len(masks)} masks in {masks_dir} have no image ({few(no_image)})")
    if problems:
        raise CvkitError(
            f"data.{split}_images/data.{split}_masks: {'; '.join(problems)}. Images and masks are matched by "
            f"file stem (image {images_dir}/a.jpg, mask {masks_dir}/a.png)"
        )
    return [SegmentationRecord(images[stem], masks[stem]) for stem in sorted(images)]


class MaskFolderDataModule(SegmentationDataModule):
    """Your images and masks: per split an image folder and a folder of single-channel PNG masks of class
    indices with the same file stems (``train_images``/``train_masks``, ``val_images``/``val_masks``, and
    optionally ``test_images``/``test_masks``). Files are those directly in each folder.

    The classes are ``class_names`` in index order, or "0".."K-1" for ``num_classes`` = K. With
    ``optional_test`` (presets of datasets that may lack a test split), a test split whose image folder
    does not exist is left out; otherwise named test folders must exist. ``root`` is only a name for
    :meth:`describe` (presets derive the folders from it).
    """

    def __init__(
        self,
        *,
        train_images: str,
        train_masks: str,
        val_images: str,
        val_masks: str,
        test_images: str | None = None,
        test_masks: str | None = None,
        optional_test: bool = False,
        num_classes: int | None = None,
        class_names: Sequence[str] | None = None,
        root: str | None = None,
        **common: Any,
    ) -> None:
        super().__init__(**common)
        if (test_images is None) != (test_masks is None):
            raise CvkitError(
                f"data.test_images={test_images!r} and data.test_masks={test_masks!r}: give both or neither"
            )
        given = {
            "train": (train_images, train_masks),
            "val": (val_images, val_masks),
            "test": (test_images, test_masks),
        }
        self.folders = {
            split: (Path(images).expanduser(), Path(masks).expanduser())
            for split, (images, masks) in given.items()
            if images is not None
        }
        self.optional_test = optional_test
        self.class_names = resolve_class_names(num_classes, class_names)
        self.root = Path(root).expanduser() if root else None
        self.name = f"masks {self.root or self.folders['train'][0]}"

    def describe(self) -> str:
        if self.root is not None:
            return f"segmentation masks at {self.root}"
        return f"segmentation masks (train {self.folders['train'][0]}, val {self.folders['val'][0]})"

    def load_splits(self) -> tuple[dict[str, list[SegmentationRecord]], list[str]]:
        splits = {}
        for split, (images, masks) in self.folders.items():
            if split == "test" and self.optional_test and not images.exists():
                log.info("%s: no test split (%s does not exist)", self.describe(), images)
                continue
            splits[split] = pair_by_stem(images, masks, split)
        return splits, self.class_names
