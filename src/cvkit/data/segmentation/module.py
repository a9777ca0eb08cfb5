"""The segmentation data module (the batch contract is in :mod:`cvkit.data.segmentation`): the dataset that
reads images with their masks, the collate function, and the base class of every segmentation module."""

from __future__ import annotations

from collections.abc import Sequence
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass
from pathlib import Path
from typing import Any, NamedTuple

import albumentations as A
import numpy as np
import torch
from torch.utils.data import Dataset

from cvkit.data.base import BaseDataModule
from cvkit.data.batches import Batch, Unreadable, read_or_skip, split_unreadable
from cvkit.data.images import read_rgb
from cvkit.data.segmentation.masks import MaskSource, check_mask_values, mask_mode_problem, read_mask
from cvkit.data.transforms import build_pipeline, build_segmentation_eval_pipeline, parse_image_size, seed_pipeline
from cvkit.errors import CvkitError


@dataclass(frozen=True)
class SegmentationRecord:
    """An image file and its mask of class indices: a mask file, or a :class:`MaskSource`."""

    image: Path
    mask: Path | MaskSource


def resolve_class_names(num_classes: int | None, class_names: Sequence[Any] | None) -> list[str]:
    """The class names from ``data.class_names``, or "0".."K-1" for ``data.num_classes`` = K."""
    if class_names is None:
        if num_classes is None:
            raise CvkitError("set data.num_classes (classes are then named 0..K-1) or data.class_names")
        if isinstance(num_classes, bool) or not isinstance(num_classes, int) or num_classes < 1:
            raise CvkitError(f"data.num_classes must be a positive integer, got {num_classes!r}")
        return [str(index) for index in range(num_classes)]
    names = [str(name) for name in class_names]
    if num_classes is not None and num_classes != len(names):
        raise CvkitError(f"data.num_classes={num_classes} but data.class_names lists {len(names)}: {names}")
    if not names or len(set(names)) != len(names):
        raise CvkitError(f"data.class_names must list each class once, got {names}")
    return names


class Sample(NamedTuple):
    image: torch.Tensor  # float32 [3, H, W]
    mask: torch.Tensor  # int64: [H, W] with the image (training), or at the original size (evaluation)
    original: bool  # the mask is the untouched original (evaluation): collate lists masks, not stacks


class SegmentationDataset(Dataset):
    """Images and masks through a pipeline: for training both go through it together; for evaluation
    only the image does, and the mask stays as read. Items are asked for as ``index`` or ``(index,
    seed)``, as in ``ClassificationDataset``. An unreadable image or mask yields an
    :class:`~cvkit.data.batches.Unreadable` (the collate function drops it from the batch and names it in
    ``batch.unreadable``) unless ``strict``."""

    def __init__(
        self,
        records: Sequence[SegmentationRecord],
        transform: A.Compose,
        *,
        train: bool,
        num_classes: int,
        ignore_index: int,
        strict: bool,
    ) -> None:
        self.records = records
        self.transform = transform
        self.train = train
        self.num_classes = num_classes
        self.ignore_index = ignore_index
        self.strict = strict

    def __len__(self) -> int:
        return len(self.records)

    def __getitem__(self, item: int | tuple[int, int]) -> Sample | Unreadable:
        index, seed = item if isinstance(item, tuple) else (item, None)
        record = self.records[index]
        pair = read_or_skip(lambda: (read_rgb(record.image), read_mask(record.mask)), index, self.strict)
        if isinstance(pair, Unreadable):
            return pair
        image, mask = pair
        if mask.shape != image.shape[:2]:
            raise CvkitError(
                f"mask {record.mask} is {mask.shape[1]}x{mask.shape[0]} but its image {record.image} is "
                f"{image.shape[1]}x{image.shape[0]}: a mask must have its image's size"
            )
        check_mask_values(mask, record.mask, self.num_classes, self.ignore_index)
        if seed is not None:
            seed_pipeline(self.transform, seed)
        if not self.train:
            return Sample(self.transform(image=image)["image"], torch.from_numpy(mask.astype(np.int64)), True)
        out = self.transform(image=image, mask=mask)
        return Sample(out["image"], torch.as_tensor(out["mask"]).long(), False)


def collate_segmentation(samples: list[Sample | Unreadable]) -> Batch:
    """``(images, masks)`` of the samples that could be read, as the package docstring describes (an empty
    batch if none could), naming the others in ``batch.unreadable``."""
    kept, unreadable = split_unreadable(samples)
    if not kept:
        return Batch((), unreadable)
    sizes = sorted({tuple(sample.image.shape[1:]) for sample in kept})
    if len(sizes) > 1:
        raise CvkitError(
            f"data.train_transforms gave images of different sizes {sizes} in one batch: end them at one "
            "size, e.g. with RandomResizedCrop or Resize to data.image_size"
        )
    images = torch.stack([sample.image for sample in kept])
    masks = [sample.mask for sample in kept]
    return Batch((images, masks) if kept[0].original else (images, torch.stack(masks)), unreadable)


class SegmentationDataModule(BaseDataModule):
    """Base of every segmentation data module; subclasses implement :meth:`load_splits`, returning
    ``({"train": [SegmentationRecord, ...], "val": [...][, "test": [...]]}, class_names)``.

    ``image_size`` is the network's input size, [height, width] (an int: a square); ``ignore_index`` the
    mask value left out of the loss and the metrics (not a class index). Loaders, sampling, mid-epoch
    resume and ``global_batch_size`` are those of :class:`~cvkit.data.base.BaseDataModule`; the batch
    format is in the docstring of its package.
    """

    name = "segmentation"
    collate = staticmethod(collate_segmentation)

    def __init__(
        self,
        *,
        image_size: int | Sequence[int],
        mean: Sequence[float],
        std: Sequence[float],
        ignore_index: int,
        train_transforms: Sequence[Any] | None = None,
        eval_transforms: Sequence[Any] | None = None,
        **common: Any,
    ) -> None:
        super().__init__(**common)
        if isinstance(ignore_index, bool) or not isinstance(ignore_index, int):
            raise CvkitError(f"data.ignore_index must be an integer mask value, got {ignore_index!r}")
        self.image_size = parse_image_size(image_size)
        self.mean, self.std = list(mean), list(std)
        self.ignore_index = ignore_index
        self.train_pipeline = build_pipeline(train_transforms, "data.train_transforms")
        self.eval_pipeline = build_segmentation_eval_pipeline(eval_transforms, self.image_size)
        self.splits: dict[str, list[SegmentationRecord]] | None = None
        self._pixel_counts: dict[str, np.ndarray] = {}

    def setup(self, stage: str | None = None) -> None:
        if self.splits is not None:
            return
        super().setup(stage)
        if 0 <= self.ignore_index < self.num_classes:
            raise CvkitError(
                f"data.ignore_index={self.ignore_index} is one of the classes 0..{self.num_classes - 1} "
                f"({self.class_names[self.ignore_index]!r}); choose a value outside them, e.g. 255"
            )
        for records in self.splits.values():  # the common mistake (colour masks), before training starts
            if records and (problem := mask_mode_problem(records[0].mask)):
                raise CvkitError(problem)

    def make_dataset(self, split: str, train: bool) -> SegmentationDataset:
        return SegmentationDataset(
            self._split(split),
            self.train_pipeline if train else self.eval_pipeline,
            train=train,
            num_classes=self.num_classes,
            ignore_index=self.ignore_index,
            strict=self.strict,
        )

    def class_pixel_counts(self, split: str = "train") -> np.ndarray:
        """Pixels per class (int64 [K], ignored pixels left out) over every mask of `split`, read once and
        cached: for class weights."""
        if split not in self._pixel_counts:
            records = self._split(split)
            with ThreadPoolExecutor(max_workers=4) as pool:
                counts = list(pool.map(self._count_pixels, range(len(records)), records))
            self._pixel_counts[split] = np.sum([np.zeros(self.num_classes, np.int64), *counts], axis=0)
        return self._pixel_counts[split].copy()

    def class_counts(self, split: str = "train") -> np.ndarray:
        """:meth:`class_pixel_counts`, under the name class weights are computed from for every task."""
        return self.class_pixel_counts(split)

    def _count_pixels(self, position: int, record: SegmentationRecord) -> np.ndarray:
        mask = read_or_skip(lambda: read_mask(record.mask), position, self.strict, what="mask")
        if isinstance(mask, Unreadable):
            return np.zeros(self.num_classes, np.int64)
        check_mask_values(mask, record.mask, self.num_classes, self.ignore_index)
        return np.bincount(mask[mask != self.ignore_index].ravel(), minlength=self.num_classes).astype(np.int64)
