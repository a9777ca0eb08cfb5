"""Fixtures (shared helpers live in tests/helpers/): where the real datasets are, and each of them; and the oneDNN
cap every test process starts with."""

from __future__ import annotations

import os
from pathlib import Path

# oneDNN's AMX bf16 kernels (torch 2.14.1, a KVM Xeon with amx_bf16) turned 18 of 180 identical bf16 training
# runs NaN (scripts/diagnostics/bf16_repeatability.py; docs/benchmarks.md, "Speed"); capped at AVX-512 BF16, 0 of
# 140. Set before torch loads: the bf16 tests check where precision lands, not that kernel.
os.environ.setdefault("ONEDNN_MAX_CPU_ISA", "AVX512_CORE_BF16")

import pytest

from tests.helpers.datasets import dataset
from tests.helpers.paths import REPO


def pytest_addoption(parser: pytest.Parser) -> None:
    parser.addoption(
        "--data-root",
        default=os.environ.get("CVKIT_DATA", str(REPO.parent / "shared" / "data")),
        help="folder with the real test datasets (bccd_cells, BCCD, CamVid, coco128, FashionMNIST); env CVKIT_DATA; "
        "default ../shared/data",
    )


@pytest.fixture(scope="session")
def data_root(request: pytest.FixtureRequest) -> Path:
    root = Path(request.config.getoption("--data-root")).expanduser().resolve()
    if not root.is_dir():
        pytest.skip(f"real datasets not found at {root}: pass --data-root or set CVKIT_DATA")
    return root


@pytest.fixture(scope="session")
def bccd_cells(data_root: Path) -> Path:
    """The blood-cell crops as an image folder (train/val/test, classes Platelets, RBC, WBC)."""
    return dataset(data_root, "bccd_cells", "train", "image-folder classification set")


@pytest.fixture(scope="session")
def bccd_voc(data_root: Path) -> Path:
    """BCCD in Pascal VOC layout (JPEGImages, Annotations, ImageSets/Main)."""
    return dataset(data_root, "BCCD", "Annotations", "Pascal VOC detection set")


@pytest.fixture(scope="session")
def camvid(data_root: Path) -> Path:
    """CamVid in SegNet's layout (train, trainannot, val, valannot, ...)."""
    return dataset(data_root, "CamVid", "trainannot", "CamVid segmentation set")


@pytest.fixture(scope="session")
def coco128(data_root: Path) -> Path:
    """The first 128 COCO train2017 images with their instances annotations."""
    return dataset(data_root, "coco128", "images", "COCO detection set")


@pytest.fixture(scope="session")
def fashion_mnist(data_root: Path) -> Path:
    """The folder holding ``FashionMNIST/raw/*.gz``: torchvision's raw Fashion-MNIST files, 60k/10k, read-only."""
    dataset(data_root, "FashionMNIST", "raw", "Fashion-MNIST raw files")
    return data_root
