"""The classification data module: splits of labelled images -> seeded, sharded batches."""

from __future__ import annotations

import logging
from collections.abc import Sequence
from dataclasses import dataclass
from typing import Any

import numpy as np

from cvkit.data.base import BaseDataModule
from cvkit.data.classification.datasets import (
    ClassificationDataset,
    ImageSource,
    SubsetImages,
    collate_skipping_unreadable,
)
from cvkit.data.transforms import build_pipeline
from cvkit.errors import CvkitError

log = logging.getLogger(__name__)


@dataclass
class Split:
    """The images and integer labels of one split."""

    images: ImageSource
    labels: np.ndarray

    def __len__(self) -> int:
        return len(self.images)

    def per_class(self, count: int, seed: int) -> Split:
        """`count` images of each class (all of a class that has fewer), drawn with `seed`, in their order."""
        rng = np.random.default_rng(seed)
        kept = [
            index
            for label in np.unique(self.labels)
            for index in rng.permutation(np.flatnonzero(self.labels == label))[:count]
        ]
        kept.sort()
        return Split(SubsetImages(self.images, kept), self.labels[kept])


class ClassificationDataModule(BaseDataModule):
    """Base of every classification data module; subclasses implement :meth:`load_splits`.

    Splits are loaded once (on the first :meth:`setup`); ``train`` and ``val`` are required, ``test``
    is optional. Batches, loaders, sampling and mid-epoch resume are those of
    :class:`~cvkit.data.base.BaseDataModule`.
    """

    name = "classification"
    collate = staticmethod(collate_skipping_unreadable)

    def __init__(
        self,
        *,
        image_size: int,
        mean: Sequence[float],
        std: Sequence[float],
        train_transforms: Sequence[Any] | None = None,
        eval_transforms: Sequence[Any] | None = None,
        train_per_class: int | None = None,
        **common: Any,
    ) -> None:
        super().__init__(**common)
        if train_per_class is not None and (isinstance(train_per_class, bool) or train_per_class < 1):
            raise CvkitError(f"data.train_per_class={train_per_class!r} must be a count of images >= 1, or null")
        self.train_per_class = train_per_class
        if not isinstance(image_size, int) or image_size <= 0:
            raise CvkitError(f"data.image_size must be a positive integer, got {image_size!r}")
        self.image_size = image_size
        self.mean = list(mean)
        self.std = list(std)
        self.train_pipeline = build_pipeline(train_transforms, "data.train_transforms")
        self.eval_pipeline = build_pipeline(eval_transforms, "data.eval_transforms")
        self.splits: dict[str, Split] | None = None

    def load_splits(self) -> tuple[dict[str, Split], list[str]]:
        """Return ``({"train": Split, "val": Split[, "test": Split]}, class_names)``."""
        raise NotImplementedError

    def setup(self, stage: str | None = None) -> None:
        if self.splits is not None:
            return
        super().setup(stage)
        if self.train_per_class:  # a small labelled set, as transfer learning starts from
            self.splits["train"] = self.splits["train"].per_class(self.train_per_class, self.seed)
        if self.num_classes < 2:
            raise CvkitError(
                f"data: {self.describe()} has {self.num_classes} class {self.class_names}: classification needs at "
                "least 2 classes (in an image folder: one sub-folder per class under train/ and val/)"
            )

    def class_counts(self, split: str = "train") -> np.ndarray:
        labels = self._split(split).labels
        return np.bincount(labels, minlength=self.num_classes)

    def make_dataset(self, split: str, train: bool) -> ClassificationDataset:
        data = self._split(split)
        pipeline = self.train_pipeline if train else self.eval_pipeline
        return ClassificationDataset(data.images, data.labels, pipeline, strict=self.strict)
