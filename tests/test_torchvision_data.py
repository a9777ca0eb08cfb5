"""data=mnist / fashion_mnist / cifar10: torchvision's sets read from its on-disk layout under data.root.

Fashion-MNIST's real files are in the shared data (read-only, only the .gz archives); for the rest, and for
damaged files, each test writes small files in torchvision's exact formats (tests/helpers/torchvision_files.py)
and loads them through the real code: the Hydra config, TorchvisionDataModule, cvkit's IDX reader or
torchvision's own dataset classes, and cvkit's loaders.
"""

from __future__ import annotations

import http.server
import threading
from functools import partial
from pathlib import Path
from urllib.error import URLError

import numpy as np
import pytest
import torch
import torchvision

from cvkit.builders import build_datamodule
from cvkit.data import TorchvisionDataModule
from cvkit.data.classification.builtin import read_idx
from cvkit.errors import CvkitError
from tests.helpers.cli import assert_exit, run_cli
from tests.helpers.configs import compose_train
from tests.helpers.logs import read_metrics
from tests.helpers.torchvision_files import (
    CIFAR10_LABEL_NAMES,
    CIFAR10_MD5_NOTE,
    write_cifar10_files,
    write_mnist_files,
)

TRAIN_PER_CLASS, TEST_PER_CLASS = 20, 5
# Config name -> torchvision class name and the folder its files live in under data.root.
SETS = {
    "mnist": ("MNIST", "MNIST/raw"),
    "fashion_mnist": ("FashionMNIST", "FashionMNIST/raw"),
    "cifar10": ("CIFAR10", "cifar-10-batches-py"),
}


@pytest.fixture
def cifar10_without_md5(monkeypatch: pytest.MonkeyPatch) -> None:
    """Clear the official md5s that torchvision's CIFAR10 checks its files against (for this test only)."""
    cifar = torchvision.datasets.CIFAR10
    monkeypatch.setattr(cifar, "train_list", [[name, None] for name, _ in cifar.train_list])
    monkeypatch.setattr(cifar, "test_list", [[name, None] for name, _ in cifar.test_list])
    monkeypatch.setattr(cifar, "meta", {**cifar.meta, "md5": None})


@pytest.fixture
def write_set(request: pytest.FixtureRequest, tmp_path: Path):
    """``write_set(config_name, root)``: write that set's test files under `root`; returns them."""

    def write(config_name: str, root: Path, **options) -> dict[str, tuple[np.ndarray, np.ndarray]]:
        if config_name == "cifar10":
            request.getfixturevalue("cifar10_without_md5")  # see CIFAR10_MD5_NOTE
            cells = request.getfixturevalue("bccd_cells")
            return write_cifar10_files(root, cells, TRAIN_PER_CLASS, TEST_PER_CLASS)
        return write_mnist_files(root, SETS[config_name][0], TRAIN_PER_CLASS, TEST_PER_CLASS, **options)

    return write


def datamodule_for(config_name: str, root: Path, output_dir: Path, *overrides: str) -> TorchvisionDataModule:
    cfg = compose_train(
        output_dir,
        f"data={config_name}",
        f"data.root={root}",
        "data.num_workers=0",
        "data.batch_size=8",
        *overrides,
    )
    return build_datamodule(cfg)


@pytest.mark.parametrize("config_name", sorted(SETS))
def test_loads_official_splits_with_torchvision_class_names(
    config_name: str,
    tmp_path: Path,
    write_set,
) -> None:
    root = tmp_path / "data"
    written = write_set(config_name, root)
    datamodule = datamodule_for(config_name, root, tmp_path / "run")

    assert isinstance(datamodule, TorchvisionDataModule)
    # val_fraction 0.1 of the official train split (stratified), the official test split as test.
    n_train = 10 * TRAIN_PER_CLASS
    assert datamodule.split_sizes() == {
        "train": n_train - n_train // 10,
        "val": n_train // 10,
        "test": 10 * TEST_PER_CLASS,
    }
    assert np.bincount(datamodule.splits["val"].labels, minlength=10).tolist() == [n_train // 10 // 10] * 10
    torchvision_class = getattr(torchvision.datasets, SETS[config_name][0])
    expected_names = CIFAR10_LABEL_NAMES if config_name == "cifar10" else torchvision_class.classes
    assert datamodule.class_names == list(expected_names) and datamodule.num_classes == 10

    # The pixels and labels written in torchvision's format come back unchanged (grayscale as 3 channels).
    test_images, test_labels = written["test"]
    assert np.array_equal(datamodule.splits["test"].labels, test_labels)
    for index in (0, len(test_images) - 1):
        image = datamodule.splits["test"].images[index]
        expected = test_images[index]
        if expected.ndim == 2:
            expected = np.repeat(expected[..., None], 3, axis=2)
        assert image.dtype == np.uint8 and np.array_equal(image, expected)


@pytest.mark.parametrize(
    ("config_name", "image_size"),
    [("mnist", 28), ("fashion_mnist", 40), ("cifar10", 32)],
)
def test_train_batches_are_three_channel_float_at_image_size(
    config_name: str,
    image_size: int,
    tmp_path: Path,
    write_set,
) -> None:
    root = tmp_path / "data"
    write_set(config_name, root)
    datamodule = datamodule_for(config_name, root, tmp_path / "run", f"data.image_size={image_size}")

    images, labels = datamodule.on_after_batch_transfer(next(iter(datamodule.train_dataloader())), 0)
    assert images.shape == (8, 3, image_size, image_size) and images.dtype == torch.float32
    assert labels.dtype == torch.int64 and labels.min() >= 0 and labels.max() < 10
    assert images.std() > 0.1  # real image content, normalised
    if config_name != "cifar10":  # grayscale fed as three identical channels
        assert torch.equal(images[:, 0], images[:, 1]) and torch.equal(images[:, 1], images[:, 2])


@pytest.mark.parametrize("config_name", ["mnist", "fashion_mnist"])
def test_idx_files_only_as_downloaded_gz_are_read_without_writing(config_name: str, tmp_path: Path) -> None:
    root = tmp_path / "data"
    written = write_mnist_files(root, SETS[config_name][0], TRAIN_PER_CLASS, TEST_PER_CLASS, layout="gz")
    raw = root / SETS[config_name][1]
    before = sorted(path.name for path in raw.iterdir())
    datamodule = datamodule_for(config_name, root, tmp_path / "run")

    assert datamodule.split_sizes()["test"] == 10 * TEST_PER_CLASS
    assert np.array_equal(datamodule.splits["test"].labels, written["test"][1])
    assert np.array_equal(datamodule.splits["test"].images[3][..., 0], written["test"][0][3])
    assert sorted(path.name for path in raw.iterdir()) == before  # read in memory: nothing unpacked beside them


def test_real_fashion_mnist_reads_from_its_read_only_folder(fashion_mnist: Path, tmp_path: Path) -> None:
    """The shared copy holds only the .gz files, in a read-only folder: cvkit reads them as they are."""
    raw = fashion_mnist / "FashionMNIST" / "raw"
    before = sorted(path.name for path in raw.iterdir())
    datamodule = datamodule_for("fashion_mnist", fashion_mnist, tmp_path / "run")

    assert datamodule.split_sizes() == {"train": 54_000, "val": 6_000, "test": 10_000}
    assert datamodule.class_names == list(torchvision.datasets.FashionMNIST.classes)
    assert np.bincount(datamodule.splits["test"].labels).tolist() == [1000] * 10  # README.txt: 1000 per class
    # README.txt: the first train labels are 9 0 0 3 0 2 7 2 5 5.
    assert read_idx(raw / "train-labels-idx1-ubyte.gz")[:10].tolist() == [9, 0, 0, 3, 0, 2, 7, 2, 5, 5]
    assert sorted(path.name for path in raw.iterdir()) == before


@pytest.mark.parametrize("layout", ["gz", "unpacked"])
def test_a_truncated_idx_file_is_named_not_loaded(layout: str, tmp_path: Path) -> None:
    root = tmp_path / "data"
    write_mnist_files(root, "FashionMNIST", TRAIN_PER_CLASS, TEST_PER_CLASS, layout=layout)
    name = "train-images-idx3-ubyte" + (".gz" if layout == "gz" else "")
    damaged = root / "FashionMNIST/raw" / name
    damaged.write_bytes(damaged.read_bytes()[: damaged.stat().st_size // 2])
    with pytest.raises(CvkitError, match="fetch") as raised:
        datamodule_for("fashion_mnist", root, tmp_path / "run")
    assert str(damaged) in str(raised.value) and "data.root" in str(raised.value)


def test_a_file_that_is_not_idx_is_named(tmp_path: Path) -> None:
    root = tmp_path / "data"
    write_mnist_files(root, "MNIST", TRAIN_PER_CLASS, TEST_PER_CLASS, layout="unpacked")
    foreign = root / "MNIST/raw/t10k-labels-idx1-ubyte"
    foreign.write_bytes(b"<html>rate limited</html>")
    with pytest.raises(CvkitError, match="not an IDX file") as raised:
        datamodule_for("mnist", root, tmp_path / "run")
    assert str(foreign) in str(raised.value)


def test_unpacked_idx_files_without_gz_are_read(tmp_path: Path) -> None:
    root = tmp_path / "data"
    write_mnist_files(root, "MNIST", TRAIN_PER_CLASS, TEST_PER_CLASS, layout="unpacked")
    assert datamodule_for("mnist", root, tmp_path / "run").split_sizes()["test"] == 10 * TEST_PER_CLASS


@pytest.mark.parametrize("config_name", sorted(SETS))
def test_missing_root_names_the_expected_path_and_download_option(config_name: str, tmp_path: Path) -> None:
    missing = tmp_path / "no-such-folder"
    with pytest.raises(CvkitError) as raised:
        datamodule_for(config_name, missing, tmp_path / "run")
    message = str(raised.value)
    assert str(missing / SETS[config_name][1]) in message
    assert "data.download=true" in message and "data.root" in message
    assert not missing.exists()  # download defaults to false: nothing was fetched or created


@pytest.mark.parametrize("config_name", sorted(SETS))
def test_failed_download_is_a_cvkit_error(
    config_name: str,
    tmp_path: Path,
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    """data.download=true without internet: torchvision raises URLError (CIFAR-10) or RuntimeError (MNIST);
    both become one CvkitError. The download itself is replaced by an offline failure, so that CI machines
    with internet do not fetch the real sets."""

    def offline(url: str, *args, **kwargs) -> None:
        raise URLError(f"offline test: {url} not fetched")

    monkeypatch.setattr(torchvision.datasets.mnist, "download_and_extract_archive", offline)
    monkeypatch.setattr(torchvision.datasets.cifar, "download_and_extract_archive", offline)
    root = tmp_path / "data"
    with pytest.raises(CvkitError, match="data.download=true: fetching") as raised:
        datamodule_for(config_name, root, tmp_path / "run", "data.download=true")
    assert str(root / SETS[config_name][1]) in str(raised.value) and "offline test" in str(raised.value)


def test_incomplete_mnist_names_the_expected_path(tmp_path: Path) -> None:
    root = tmp_path / "data"
    write_mnist_files(root, "MNIST", TRAIN_PER_CLASS, TEST_PER_CLASS, layout="unpacked")
    (root / "MNIST/raw/t10k-labels-idx1-ubyte").unlink()
    with pytest.raises(CvkitError, match="data.download=true") as raised:
        datamodule_for("mnist", root, tmp_path / "run")
    assert str(root / "MNIST/raw") in str(raised.value)


def test_cifar10_files_that_are_not_the_official_ones_are_rejected(tmp_path: Path, bccd_cells: Path) -> None:
    """torchvision checks each CIFAR-10 file's md5 (the reason behind CIFAR10_MD5_NOTE): a changed or
    foreign file is reported as incomplete, not loaded."""
    root = tmp_path / "data"
    write_cifar10_files(root, bccd_cells, TRAIN_PER_CLASS, TEST_PER_CLASS)
    with pytest.raises(CvkitError, match="data.download=true") as raised:
        datamodule_for("cifar10", root, tmp_path / "run")
    assert str(root / "cifar-10-batches-py") in str(raised.value), CIFAR10_MD5_NOTE


@pytest.mark.slow
def test_cvkit_train_runs_on_mnist_files(tmp_path: Path) -> None:
    root = tmp_path / "data"
    write_mnist_files(root, "MNIST", TRAIN_PER_CLASS, TEST_PER_CLASS)
    run_dir = tmp_path / "run"
    # One epoch is too short for the default cosine schedule's one-epoch warmup (cvkit rejects that).
    result = run_cli(
        "cvkit-train",
        "data=mnist",
        f"data.root={root}",
        "trainer.max_epochs=1",
        "scheduler.warmup_epochs=0",
        f"hydra.run.dir={run_dir}",
        "backbone.name=resnet18",
        "data.num_workers=0",
        cwd=tmp_path,
        timeout=300,
    )
    assert_exit(result, 0)
    metrics = read_metrics(run_dir)
    assert "test/acc" in metrics and 0.0 <= metrics["test/acc"] <= 1.0


@pytest.fixture
def local_mirror(data_root: Path):
    """An HTTP server on localhost serving the real Fashion-MNIST files, as torchvision's mirror does; yields
    its address. CI machines have no internet, and tests fetch nothing from it."""
    folder = data_root / "FashionMNIST" / "raw"
    handler = partial(http.server.SimpleHTTPRequestHandler, directory=str(folder))
    server = http.server.ThreadingHTTPServer(("127.0.0.1", 0), handler)
    thread = threading.Thread(target=server.serve_forever, daemon=True)
    thread.start()
    yield f"http://127.0.0.1:{server.server_port}/"
    server.shutdown()
    server.server_close()


def test_download_fetches_the_files_with_torchvisions_downloader(
    local_mirror: str, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """data.download=true into an empty data.root: torchvision's own download (URL, MD5 check, unpacking) fetches
    Fashion-MNIST's four files, here from a local mirror of the real files, and cvkit reads all 70,000 images."""
    monkeypatch.setattr(torchvision.datasets.FashionMNIST, "mirrors", [local_mirror])
    root = tmp_path / "data"
    sizes = datamodule_for("fashion_mnist", root, tmp_path / "run", "data.download=true").split_sizes()
    assert sizes["train"] + sizes["val"] == 60_000 and sizes["test"] == 10_000
    fetched = sorted(path.name for path in (root / "FashionMNIST" / "raw").glob("*.gz"))
    assert fetched == sorted(name for name, _ in torchvision.datasets.FashionMNIST.resources)
