"""Built-in datasets: scikit-learn's digits (bundled) and torchvision's MNIST, Fashion-MNIST, CIFAR-10."""

from __future__ import annotations

import gzip
import math
import struct
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
# Sets stored as IDX files under ROOT/<name>/raw/: cvkit reads them itself, unpacked or as the .gz archives
# (in memory: the folder may be read-only), since torchvision's classes read only unpacked files.
IDX_DATASETS = ("MNIST", "FashionMNIST")
IDX_FILES = {
    True: ("train-images-idx3-ubyte", "train-labels-idx1-ubyte"),
    False: ("t10k-images-idx3-ubyte", "t10k-labels-idx1-ubyte"),
}


def idx_path(raw: Path, name: str) -> Path | None:
    """``raw/name`` if it exists, else ``raw/name.gz`` if that does, else None."""
    return next((path for path in (raw / name, raw / f"{name}.gz") if path.is_file()), None)


def read_idx(path: Path) -> np.ndarray:
    """The uint8 array held by an IDX file (``.gz`` or not): ``00 00 08 ndim``, big-endian sizes, the data.

    A file that is not IDX, or whose size disagrees with its header (truncated), is a CvkitError naming it.
    """
    try:
        data = gzip.decompress(path.read_bytes()) if path.suffix == ".gz" else path.read_bytes()
    except (OSError, EOFError) as err:  # unreadable, or a truncated / corrupt archive
        raise CvkitError(f"data.root: could not read {path} ({err}); fetch the file again") from err
    if len(data) < 8 or data[:3] != b"\x00\x00\x08" or not 1 <= data[3] <= 3:
        raise CvkitError(
            f"data.root: {path} is not an IDX file of uint8 (it starts {data[:4].hex()}, expected 000008 and "
            "a dimension count of 1 to 3)"
        )
    ndim = data[3]
    header = 4 + 4 * ndim
    shape = struct.unpack(f">{ndim}I", data[4:header])
    expected = header + math.prod(shape)
    if len(data) != expected:
        raise CvkitError(
            f"data.root: {path} holds {len(data):,} bytes (unpacked) but its header, shape {shape}, needs "
            f"{expected:,}: the file is truncated or damaged; fetch it again"
        )
    return np.frombuffer(data, dtype=np.uint8, offset=header).reshape(shape)


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
            raw = self.root / self.dataset / "raw"
            paths = [idx_path(raw, name) for name in IDX_FILES[train]]
            if None not in paths:
                images, labels = (read_idx(path) for path in paths)
                if len(images) != len(labels):
                    raise CvkitError(
                        f"data.root: {paths[0]} holds {len(images)} images but {paths[1]} {len(labels)} labels"
                    )
                return images, labels.astype(np.int64), list(dataset_class.classes)
        try:  # CIFAR-10, or IDX files missing: torchvision says what is missing, or fetches it (download)
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
