"""Built-in datasets: scikit-learn's digits (bundled) and torchvision's MNIST, Fashion-MNIST, CIFAR-10."""

from __future__ import annotations

import gzip
import os
import shutil
from pathlib import Path
from typing import Any

import numpy as np
import torchvision

from cvkit.data.classification.datasets import ArrayImages
from cvkit.data.classification.module import ClassificationDataModule, Split
from cvkit.errors import CvkitError

# Where torchvision expects each set's files under data.root.
TORCHVISION_LAYOUTS = {
    "MNIST": "MNIST/raw/{train,t10k}-{images-idx3,labels-idx1}-ubyte[.gz]",
    "FashionMNIST": "FashionMNIST/raw/{train,t10k}-{images-idx3,labels-idx1}-ubyte[.gz]",
    "CIFAR10": "cifar-10-batches-py/{data_batch_1..5,test_batch,batches.meta}",
}
# Sets whose torchvision class reads unpacked IDX files from ROOT/<name>/raw/ (its download keeps the .gz).
IDX_DATASETS = ("MNIST", "FashionMNIST")


def unpack_idx_archives(raw: Path) -> None:
    """Unpack each ``*-ubyte.gz`` in `raw` that has no unpacked twin: torchvision reads only unpacked files.

    Each file is written under a temporary name and renamed, so ranks that unpack at once never read a
    partial file.
    """
    for archive in sorted(raw.glob("*-ubyte.gz")):
        target = archive.with_suffix("")
        if target.exists():
            continue
        partial = target.with_name(f"{target.name}.{os.getpid()}.partial")
        try:
            with gzip.open(archive, "rb") as source, open(partial, "wb") as sink:
                shutil.copyfileobj(source, sink)
            os.replace(partial, target)
        except (OSError, EOFError) as err:
            partial.unlink(missing_ok=True)
            raise CvkitError(
                f"data.root: could not unpack {archive} to {target} ({err}); unpack it there yourself "
                "(gunzip -k) or point data.root at a writable copy"
            ) from err


def holdout_split(
    labels: np.ndarray, fraction: float, seed: int, key: str = "data.val_fraction"
) -> tuple[np.ndarray, np.ndarray]:
    """Stratified, seeded split of indices into (kept, held out); the same seed gives the same split."""
    if not 0.0 < fraction < 1.0:
        raise CvkitError(f"{key} must be between 0 and 1 (exclusive), got {fraction}")
    from sklearn.model_selection import train_test_split  # here: scikit-learn costs 0.4 s to import

    indices = np.arange(len(labels))
    kept, held_out = train_test_split(indices, test_size=fraction, random_state=seed, stratify=labels)
    return np.sort(kept), np.sort(held_out)


class DigitsDataModule(ClassificationDataModule):
    """scikit-learn's 1797 real 8x8 handwritten digits, split once with a fixed seed into train/val and,
    when ``test_fraction`` > 0, a test split held out first (both stratified by class)."""

    name = "digits"

    def __init__(
        self, *, val_fraction: float = 0.2, test_fraction: float = 0.0, split_seed: int = 0, **common: Any
    ) -> None:
        super().__init__(**common)
        if not 0.0 <= test_fraction < 1.0 or val_fraction + test_fraction >= 1.0:
            raise CvkitError(
                f"data.test_fraction={test_fraction} with data.val_fraction={val_fraction}: each must be in [0, 1) "
                "and together below 1, to leave images for training"
            )
        self.val_fraction = val_fraction
        self.test_fraction = test_fraction
        self.split_seed = split_seed

    def load_splits(self) -> tuple[dict[str, Split], list[str]]:
        from sklearn.datasets import load_digits  # here: scikit-learn costs 0.4 s to import

        digits = load_digits()
        images = np.round(digits.images * (255.0 / 16.0)).astype(np.uint8)
        labels = digits.target.astype(np.int64)
        parts = {}
        remaining = np.arange(len(labels))
        if self.test_fraction:
            kept, test = holdout_split(labels, self.test_fraction, self.split_seed, "data.test_fraction")
            remaining, parts["test"] = kept, test
        # val_fraction is of all images, whatever the test split took
        val_share = self.val_fraction / (1.0 - self.test_fraction)
        train, val = holdout_split(labels[remaining], val_share, self.split_seed)
        parts["train"], parts["val"] = remaining[train], remaining[val]
        splits = {name: Split(ArrayImages(images[idx]), labels[idx]) for name, idx in parts.items()}
        return splits, [str(digit) for digit in range(10)]


class TorchvisionDataModule(ClassificationDataModule):
    """A torchvision dataset read from its on-disk layout under ``root``.

    The official train split is divided into train/val (``val_fraction``, stratified, fixed seed); the
    official test split is the test split.
    """

    def __init__(
        self,
        *,
        dataset: str,
        root: str,
        download: bool = False,
        val_fraction: float = 0.1,
        split_seed: int = 0,
        **common: Any,
    ) -> None:
        super().__init__(**common)
        if dataset not in TORCHVISION_LAYOUTS:
            raise CvkitError(f"data.dataset={dataset!r} is not supported; choose one of {sorted(TORCHVISION_LAYOUTS)}")
        self.dataset = dataset
        self.root = Path(root).expanduser()
        self.download = download
        self.val_fraction = val_fraction
        self.split_seed = split_seed
        self.name = dataset

    def describe(self) -> str:
        return f"{self.dataset} at {self.root}"

    def _read(self, train: bool) -> tuple[np.ndarray, np.ndarray, list[str]]:
        dataset_class = getattr(torchvision.datasets, self.dataset)
        if self.dataset in IDX_DATASETS:
            unpack_idx_archives(self.root / self.dataset / "raw")
        try:
            data = dataset_class(str(self.root), train=train, download=self.download)
        except (RuntimeError, OSError) as err:  # not found / checksum mismatch; failed download (URLError)
            expected = f"{self.root}/{TORCHVISION_LAYOUTS[self.dataset]}"
            if self.download:
                raise CvkitError(
                    f"data.download=true: fetching {self.dataset} into {self.root} failed ({err}). It needs "
                    f"internet; or copy the files to {expected} yourself and set data.download=false."
                ) from err
            raise CvkitError(
                f"data.root: {self.dataset} not found or incomplete under {self.root} ({err}). Expected "
                f"{expected}; set data.download=true to fetch it (needs internet), or point data.root at the "
                "folder that contains it."
            ) from err
        images = np.asarray(data.data, dtype=np.uint8)
        return images, np.asarray(data.targets, dtype=np.int64), list(data.classes)

    def load_splits(self) -> tuple[dict[str, Split], list[str]]:
        images, labels, classes = self._read(train=True)
        train, val = holdout_split(labels, self.val_fraction, self.split_seed)
        test_images, test_labels, _ = self._read(train=False)
        splits = {
            "train": Split(ArrayImages(images[train]), labels[train]),
            "val": Split(ArrayImages(images[val]), labels[val]),
            "test": Split(ArrayImages(test_images), test_labels),
        }
        return splits, classes
