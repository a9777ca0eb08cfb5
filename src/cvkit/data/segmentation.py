"""The semantic-segmentation data module: images with class-index masks -> seeded, sharded batches.

A batch is ``(images, masks)``; what ``masks`` is depends on the loader::

    train       images  float32 [N, 3, H, W], normalised by ``data.mean``/``data.std``; H x W is the size
                        ``data.train_transforms`` ends at (the default configs: ``data.image_size``)
                masks   int64 [N, H, W], transformed together with their images (nearest neighbour, so
                        values stay class indices): 0..K-1, or ``ignore_index``
    val, test   images  float32 [N, 3, H, W], resized to ``data.image_size`` = [H, W] and normalised
                masks   list of N int64 tensors [h_i, w_i]: each image's mask as read from its file, at
                        the image's original size (images of a split may differ in size)

Evaluation happens at the original resolution: upsample the logits of image i ([K, H, W]) to its mask's
[h_i, w_i] before the loss and the metric; pixels equal to ``ignore_index`` count in neither.

Masks are single-channel files of class indices: 8- or 16-bit grayscale PNGs, or palette PNGs (PIL mode
"P", read as their indices, as Pascal VOC stores them). A mask must have its image's size; a value that
is neither a class index (0..K-1) nor ``ignore_index`` is an error naming the file, raised when the mask
is read. An unreadable image or mask is skipped with a warning naming it, unless ``data.strict``.
"""

from __future__ import annotations

import logging
from collections.abc import Sequence
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass
from pathlib import Path
from typing import Any, NamedTuple, Protocol

import albumentations as A
import numpy as np
import torch
from PIL import Image
from torch.utils.data import Dataset

from cvkit.data.base import BaseDataModule
from cvkit.data.batches import Batch, Unreadable, split_unreadable, unreadable_sample
from cvkit.data.images import DECODE_ERRORS, CorruptImageError, read_rgb
from cvkit.data.transforms import build_pipeline, build_steps, normalised_tensor
from cvkit.errors import CvkitError

log = logging.getLogger(__name__)

# PIL modes that hold one class index per pixel: grayscale (1, 8, 16, 32 bit) and palette images.
INDEX_MODES = ("1", "L", "P", "I;16", "I;16B", "I;16L", "I")


class MaskSource(Protocol):
    """A mask that is not a file, such as one drawn from annotations; ``str()`` names it in messages."""

    def read(self) -> np.ndarray:
        """The HxW class indices."""


@dataclass(frozen=True)
class SegmentationRecord:
    """An image file and its mask of class indices: a mask file, or a :class:`MaskSource`."""

    image: Path
    mask: Path | MaskSource


def few(names: Sequence[str], shown: int = 5) -> str:
    """`names` for a message: the first `shown` of them, and how many more there are."""
    more = f", ... ({len(names) - shown} more)" if len(names) > shown else ""
    return ", ".join(names[:shown]) + more


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


def parse_image_size(image_size: int | Sequence[int]) -> tuple[int, int]:
    """``data.image_size`` as (height, width): an int is a square, a pair is [height, width]."""
    size = [image_size] if isinstance(image_size, int) else list(image_size)
    if len(size) == 1:
        size *= 2
    if len(size) != 2 or not all(isinstance(v, int) and not isinstance(v, bool) and v > 0 for v in size):
        raise CvkitError(f"data.image_size must be [height, width] in pixels (or one int), got {image_size!r}")
    return size[0], size[1]


def mask_mode_problem(path: Path | MaskSource) -> str | None:
    """Why the mask file at `path` cannot hold class indices, from its header (None: it can, it is
    unreadable, which reading it reports, or it is not a file)."""
    if not isinstance(path, Path):
        return None
    try:
        with Image.open(path) as image:
            mode = image.mode
    except DECODE_ERRORS:
        return None
    if mode in INDEX_MODES:
        return None
    return (
        f"mask {path} is a {mode} image: masks must be single-channel images of class indices (grayscale "
        "or palette PNGs); convert colour-coded masks to class indices"
    )


def read_mask(path: Path | MaskSource) -> np.ndarray:
    """Decode a mask to an HxW array of class indices (uint8, or uint16 when values exceed 255)."""
    if not isinstance(path, Path):
        return compact_mask(path.read())
    try:
        with Image.open(path) as image:
            mode = image.mode
            mask = np.asarray(image) if mode in INDEX_MODES else None
    except DECODE_ERRORS as err:
        raise CorruptImageError(path, str(err) or type(err).__name__) from err
    if mask is None:
        raise CvkitError(mask_mode_problem(path) or f"mask {path} is not a class-index image")
    return compact_mask(mask)


def compact_mask(mask: np.ndarray) -> np.ndarray:
    """`mask` in the smallest of uint8, uint16 and int64 that holds its values."""
    if mask.dtype == bool or (mask.size and mask.max() <= 255 and mask.min() >= 0):
        return mask.astype(np.uint8)
    return mask.astype(np.int64) if mask.min() < 0 or mask.max() > 65535 else mask.astype(np.uint16)


def check_mask_values(mask: np.ndarray, path: Path | MaskSource, num_classes: int, ignore_index: int) -> None:
    """CvkitError naming `path` and the values of `mask` that are neither a class nor `ignore_index`."""
    wrong = ((mask >= num_classes) | (mask < 0)) & (mask != ignore_index)
    if wrong.any():
        values = np.unique(mask[wrong]).tolist()
        raise CvkitError(
            f"mask {path} has values {few([str(v) for v in values], 10)} that are neither classes "
            f"(0..{num_classes - 1}, data.num_classes/data.class_names) nor data.ignore_index={ignore_index}"
        )


def build_eval_pipeline(
    specs: Sequence[Any] | None, size: tuple[int, int], mean: Sequence[float], std: Sequence[float]
) -> A.Compose:
    """The pixel-level steps of ``data.eval_transforms``, a resize to `size` (height, width), then
    normalisation and conversion to a tensor. Steps that move pixels (flips, crops, resizes) are refused:
    predictions are compared with the original masks."""
    steps = build_steps(specs, "data.eval_transforms")
    for position, step in enumerate(steps):
        inner = step.transforms if isinstance(step, A.BaseCompose) else [step]
        if not all(isinstance(t, A.ImageOnlyTransform) for t in inner):
            raise CvkitError(
                f"data.eval_transforms[{position}] ({type(step).__name__}) moves pixels; evaluation compares "
                "predictions with the original masks, so only pixel-level steps are allowed there (the image "
                "is resized to data.image_size by the data module)"
            )
    return A.Compose([*steps, A.Resize(*size), *normalised_tensor(mean, std)])


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
        try:
            image, mask = read_rgb(record.image), read_mask(record.mask)
        except CorruptImageError as err:
            return unreadable_sample(err, index, self.strict)
        if mask.shape != image.shape[:2]:
            raise CvkitError(
                f"mask {record.mask} is {mask.shape[1]}x{mask.shape[0]} but its image {record.image} is "
                f"{image.shape[1]}x{image.shape[0]}: a mask must have its image's size"
            )
        check_mask_values(mask, record.mask, self.num_classes, self.ignore_index)
        if seed is not None:
            self.transform.set_random_seed(seed)
        if not self.train:
            return Sample(self.transform(image=image)["image"], torch.from_numpy(mask.astype(np.int64)), True)
        out = self.transform(image=image, mask=mask)
        return Sample(out["image"], torch.as_tensor(out["mask"]).long(), False)


def collate_segmentation(samples: list[Sample | Unreadable]) -> Batch:
    """``(images, masks)`` of the samples that could be read, as the module docstring describes (an empty
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
    format is in this module's docstring.
    """

    name = "segmentation"
    task_kind = "segmentation"
    collate = staticmethod(collate_segmentation)

    def __init__(
        self,
        *,
        image_size: int | Sequence[int],
        mean: Sequence[float],
        std: Sequence[float],
        ignore_index: int = 255,
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
        self.train_pipeline = build_pipeline(train_transforms, mean, std, "data.train_transforms")
        self.eval_pipeline = build_eval_pipeline(eval_transforms, self.image_size, mean, std)
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
            with ThreadPoolExecutor(max_workers=4) as pool:
                counts = list(pool.map(self._count_pixels, self._split(split)))
            self._pixel_counts[split] = np.sum([np.zeros(self.num_classes, np.int64), *counts], axis=0)
        return self._pixel_counts[split].copy()

    def class_counts(self, split: str = "train") -> np.ndarray:
        """:meth:`class_pixel_counts`, under the name class weights are computed from for every task."""
        return self.class_pixel_counts(split)

    def _count_pixels(self, record: SegmentationRecord) -> np.ndarray:
        try:
            mask = read_mask(record.mask)
        except CorruptImageError as err:
            if self.strict:
                raise
            log.warning("skipping unreadable mask %s: %s", err.path, err.reason)
            return np.zeros(self.num_classes, np.int64)
        check_mask_values(mask, record.mask, self.num_classes, self.ignore_index)
        return np.bincount(mask[mask != self.ignore_index].ravel(), minlength=self.num_classes).astype(np.int64)
