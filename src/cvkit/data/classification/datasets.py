"""Map-style datasets that yield (image tensor, label) pairs through an albumentations pipeline."""

from __future__ import annotations

from collections.abc import Sequence
from pathlib import Path
from typing import Any, Protocol

import albumentations as A
import numpy as np
import torch
from torch.utils.data import Dataset, default_collate

from cvkit.data.batches import Batch, Unreadable, read_or_skip, split_unreadable
from cvkit.data.images import StoredBytes, read_rgb
from cvkit.data.transforms import seed_pipeline


class ImageSource(Protocol):
    """Indexable images, each returned as an HxWx3 uint8 array."""

    def __len__(self) -> int: ...

    def __getitem__(self, index: int) -> np.ndarray: ...

    def describe(self, index: int) -> str: ...


class ArrayImages:
    """Images held in memory as an (N, H, W) or (N, H, W, C) uint8 array; grayscale becomes 3-channel."""

    def __init__(self, array: np.ndarray) -> None:
        if array.dtype != np.uint8:
            raise TypeError(f"expected uint8 images, got {array.dtype}")
        self.array = array

    def __len__(self) -> int:
        return len(self.array)

    def __getitem__(self, index: int) -> np.ndarray:
        image = self.array[index]
        if image.ndim == 2:
            image = np.repeat(image[:, :, None], 3, axis=2)
        elif image.shape[2] == 1:
            image = np.repeat(image, 3, axis=2)
        return image

    def describe(self, index: int) -> str:
        return f"#{index}"


class FileImages:
    """Images read from files (or their bytes kept in shards) on every access (RGB; grayscale and palette files
    are converted); with
    `min_side`, large JPEGs are decoded at reduced size (:func:`~cvkit.data.images.read_rgb`)."""

    def __init__(self, paths: Sequence[Path | StoredBytes], min_side: int | None = None) -> None:
        self.paths = list(paths)
        self.min_side = min_side

    def __len__(self) -> int:
        return len(self.paths)

    def __getitem__(self, index: int) -> np.ndarray:
        return read_rgb(self.paths[index], self.min_side)

    def describe(self, index: int) -> str:
        return str(self.paths[index])


class SubsetImages:
    """The images of `source` at `indices`, described as `source` describes them."""

    def __init__(self, source: ImageSource, indices: Sequence[int]) -> None:
        self.source = source
        self.indices = list(indices)

    def __len__(self) -> int:
        return len(self.indices)

    def __getitem__(self, index: int) -> np.ndarray:
        return self.source[self.indices[index]]

    def describe(self, index: int) -> str:
        return self.source.describe(self.indices[index])


class ClassificationDataset(Dataset):
    """Labelled images through a transform pipeline.

    An item may be asked for as ``index`` or ``(index, seed)``: with a seed, the random augmentations of
    that sample are drawn from it, so a sample's augmentation depends only on (run seed, epoch, index)
    and not on worker count, worker state or resumption. An unreadable image yields an
    :class:`~cvkit.data.batches.Unreadable` (the collate function drops it from the batch and names it in
    ``batch.unreadable``) unless ``strict``, in which case it raises CorruptImageError.
    """

    def __init__(self, images: ImageSource, labels: np.ndarray, transform: A.Compose, strict: bool) -> None:
        if len(images) != len(labels):
            raise ValueError(f"{len(images)} images but {len(labels)} labels")
        self.images = images
        self.labels = np.asarray(labels, dtype=np.int64)
        self.transform = transform
        self.strict = strict

    def __len__(self) -> int:
        return len(self.images)

    def __getitem__(self, item: int | tuple[int, int]) -> tuple[torch.Tensor, int] | Unreadable:
        index, seed = item if isinstance(item, tuple) else (item, None)
        image = read_or_skip(lambda: self.images[index], index, self.strict)
        if isinstance(image, Unreadable):
            return image
        if seed is not None:
            seed_pipeline(self.transform, seed)
        return self.transform(image=image)["image"], int(self.labels[index])


def collate_skipping_unreadable(samples: list[Any]) -> Batch:
    """``(images, labels)`` of the samples that could be read (an empty batch if none could), naming the
    others in ``batch.unreadable``."""
    kept, unreadable = split_unreadable(samples)
    return Batch(default_collate(kept) if kept else (), unreadable)
