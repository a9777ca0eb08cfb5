"""Write tiny but valid copies of torchvision's MNIST, Fashion-MNIST and CIFAR-10 files (its exact on-disk
formats) for tests: no copy of these sets exists offline, and downloading them is not an option in tests.

Image content is real where it is cheap:

- MNIST-format files hold scikit-learn's bundled handwritten digits (8x8, 0..16), scaled to 0..255 and
  resized to 20x20 inside a 28x28 frame, as MNIST centres its digits. Fashion-MNIST files hold the same
  digits: its format is MNIST's, only its class names differ (torchvision supplies those).
- CIFAR-10-format files hold crops of blood cells from the shared ``bccd_cells`` set, resized to 32x32.
  Their labels are assigned round-robin over CIFAR-10's ten classes, so they test the format, not learning.

Formats (as torchvision 0.29 reads them):

- MNIST / FashionMNIST: ``ROOT/<MNIST|FashionMNIST>/raw/{train,t10k}-{images-idx3,labels-idx1}-ubyte``, IDX
  files (magic ``00 00 08 <ndim>``, big-endian uint32 sizes, then the uint8 data). torchvision's download
  leaves both the ``.gz`` it fetched and the unpacked file; its reader opens only the unpacked one.
- CIFAR-10: ``ROOT/cifar-10-batches-py/{data_batch_1..5,test_batch,batches.meta}``, pickled dicts: batches
  hold ``data`` (N x 3072 uint8: the R, G, B planes of a 32x32 image, each row-major) and ``labels``;
  ``batches.meta`` holds ``label_names``. torchvision also checks each file's md5 against the official
  files', which synthetic files cannot match (see ``CIFAR10_MD5_NOTE``).
"""

from __future__ import annotations

import gzip
import pickle
import struct
from pathlib import Path

import numpy as np
from PIL import Image
from sklearn.datasets import load_digits

MNIST_FILE_STEMS = {"train": "train", "test": "t10k"}
CIFAR10_LABEL_NAMES = [
    "airplane",
    "automobile",
    "bird",
    "cat",
    "deer",
    "dog",
    "frog",
    "horse",
    "ship",
    "truck",
]
CIFAR10_MD5_NOTE = (
    "torchvision's CIFAR10 checks every batch file against the md5 of the official file; synthetic files "
    "cannot match it, so tests that load them clear those md5s (monkeypatch) and a separate test shows "
    "the check rejecting them"
)


def idx_bytes(array: np.ndarray) -> bytes:
    """`array` (uint8, 1 to 3 dimensions) in IDX format: ``00 00 08 ndim``, big-endian sizes, data."""
    array = np.ascontiguousarray(array, dtype=np.uint8)
    header = struct.pack(">BBBB", 0, 0, 0x08, array.ndim) + struct.pack(f">{array.ndim}I", *array.shape)
    return header + array.tobytes()


def digit_images(per_class: int, offset: int = 0) -> tuple[np.ndarray, np.ndarray]:
    """``per_class`` real handwritten digits of each class (from the `offset`-th on), as MNIST-like
    28x28 uint8 images with the digit in the central 20x20, and their labels; ordered by class."""
    digits = load_digits()
    images, labels = [], []
    for label in range(10):
        chosen = np.flatnonzero(digits.target == label)[offset : offset + per_class]
        if len(chosen) < per_class:
            raise ValueError(f"only {len(chosen)} digits of class {label} from #{offset}")
        for index in chosen:
            small = Image.fromarray(np.round(digits.images[index] * (255.0 / 16.0)).astype(np.uint8))
            frame = np.zeros((28, 28), dtype=np.uint8)
            frame[4:24, 4:24] = np.asarray(small.resize((20, 20), Image.BILINEAR))
            images.append(frame)
            labels.append(label)
    return np.stack(images), np.asarray(labels, dtype=np.uint8)


def write_mnist_files(
    root: Path,
    dataset: str = "MNIST",
    train_per_class: int = 20,
    test_per_class: int = 5,
    layout: str = "both",
) -> dict[str, tuple[np.ndarray, np.ndarray]]:
    """Write the four IDX files of `dataset` ("MNIST" or "FashionMNIST") under ``root/<dataset>/raw``.

    `layout`: "both" (the ``.gz`` and the unpacked file, as torchvision's download leaves them), "gz"
    (only the ``.gz`` files, as fetched from the official site) or "unpacked". Returns
    ``{"train": (images, labels), "test": (images, labels)}`` as written.
    """
    if layout not in ("both", "gz", "unpacked"):
        raise ValueError(f"layout must be both, gz or unpacked, got {layout!r}")
    raw = Path(root) / dataset / "raw"
    raw.mkdir(parents=True, exist_ok=True)
    written = {
        "train": digit_images(train_per_class),
        "test": digit_images(test_per_class, offset=train_per_class),
    }
    for split, (images, labels) in written.items():
        stem = MNIST_FILE_STEMS[split]
        for name, array in ((f"{stem}-images-idx3-ubyte", images), (f"{stem}-labels-idx1-ubyte", labels)):
            content = idx_bytes(array)
            if layout in ("both", "unpacked"):
                (raw / name).write_bytes(content)
            if layout in ("both", "gz"):
                (raw / f"{name}.gz").write_bytes(gzip.compress(content, mtime=0))
    return written


def cell_images(cells_dir: Path, count: int) -> np.ndarray:
    """`count` real blood-cell crops from an image-folder tree (``split/class/*.jpg``), resized to 32x32
    RGB; taken evenly from the sorted file list of each class in turn, so every class contributes."""
    per_class = [
        sorted(path for path in folder.iterdir() if path.is_file())
        for folder in sorted(Path(cells_dir).glob("train/*"))
        if folder.is_dir()
    ]
    if not per_class or sum(map(len, per_class)) < count:
        raise ValueError(f"{cells_dir} has fewer than {count} images under train/<class>/")
    picks, position = [], 0
    while len(picks) < count:
        for files in per_class:
            if position < len(files) and len(picks) < count:
                picks.append(files[position])
        position += 1
    return np.stack([np.asarray(Image.open(path).convert("RGB").resize((32, 32), Image.BILINEAR)) for path in picks])


def cifar_batch(images: np.ndarray, labels: np.ndarray, batch_label: str) -> dict:
    """One CIFAR-10 batch dict: ``data`` rows are the R, G, B planes of an HxWx3 image, each row-major."""
    return {
        "batch_label": batch_label,
        "labels": [int(label) for label in labels],
        "data": np.ascontiguousarray(images.transpose(0, 3, 1, 2).reshape(len(images), -1), dtype=np.uint8),
        "filenames": [f"cell_{index:05d}.png" for index in range(len(images))],
    }


def write_cifar10_files(
    root: Path,
    cells_dir: Path,
    train_per_class: int = 20,
    test_per_class: int = 5,
) -> dict[str, tuple[np.ndarray, np.ndarray]]:
    """Write ``root/cifar-10-batches-py`` (5 train batches, ``test_batch``, ``batches.meta``) from real
    cell crops. Returns ``{"train": (images, labels), "test": (images, labels)}`` as written (HWC)."""
    folder = Path(root) / "cifar-10-batches-py"
    folder.mkdir(parents=True, exist_ok=True)
    n_train, n_test = 10 * train_per_class, 10 * test_per_class
    images = cell_images(cells_dir, n_train + n_test)
    labels = np.arange(n_train + n_test) % 10
    written = {"train": (images[:n_train], labels[:n_train]), "test": (images[n_train:], labels[n_train:])}
    for number, chunk in enumerate(np.array_split(np.arange(n_train), 5), start=1):
        batch = cifar_batch(images[chunk], labels[chunk], f"training batch {number} of 5")
        (folder / f"data_batch_{number}").write_bytes(pickle.dumps(batch, protocol=2))
    test = cifar_batch(*written["test"], "testing batch 1 of 1")
    (folder / "test_batch").write_bytes(pickle.dumps(test, protocol=2))
    meta = {"num_cases_per_batch": n_train // 5, "label_names": CIFAR10_LABEL_NAMES, "num_vis": 3072}
    (folder / "batches.meta").write_bytes(pickle.dumps(meta, protocol=2))
    return written
