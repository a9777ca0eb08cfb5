import logging
import shutil
from pathlib import Path

import albumentations as A
import pytest
import torch

from cvkit.data import ImageFolderDataModule
from cvkit.data.batches import Unreadable
from cvkit.data.classification.datasets import ClassificationDataset, collate_skipping_unreadable
from cvkit.data.images import CorruptImageError
from cvkit.data.transforms import normalised, unit_range
from cvkit.errors import CvkitError
from tests.helpers.datasets import corrupt_files, make_folder

RESIZE = [{"_target_": "albumentations.Resize", "height": 32, "width": 32}]


def datamodule(root: Path, **kwargs) -> ImageFolderDataModule:
    options = {
        "batch_size": 4,
        "num_workers": 0,
        "image_size": 32,
        "mean": [0.5] * 3,
        "std": [0.5] * 3,
        "train_transforms": RESIZE,
        "eval_transforms": RESIZE,
    }
    module = ImageFolderDataModule(root=str(root), **{**options, **kwargs})
    module.setup()
    return module


def test_loads_classes_and_splits(bccd_cells: Path, tmp_path: Path) -> None:
    module = datamodule(make_folder(bccd_cells, tmp_path, splits=("train", "val", "test")))
    assert module.class_names == ["Platelets", "RBC", "WBC"]
    assert module.split_sizes() == {"train": 18, "val": 18, "test": 18}
    images, _ = next(iter(module.train_dataloader()))
    assert images.shape == (4, 3, 32, 32)


def test_batches_finished_on_the_device_equal_albumentations_normalize(bccd_cells: Path, tmp_path: Path) -> None:
    """A GPU run's loader gives uint8 batches, finished on the device into what ``A.Normalize`` gives on the same
    pixels; a CPU run's loader finishes them in its workers into the same floats."""
    mean, std = [0.485, 0.456, 0.406], [0.229, 0.224, 0.225]
    module = datamodule(make_folder(bccd_cells, tmp_path), mean=mean, std=std)
    dataset = module.make_dataset("val", train=False)
    images, labels = module.collate([dataset[index] for index in range(4)])
    assert images.dtype == torch.uint8
    finished, same_labels = module.on_after_batch_transfer((images, labels), 0)
    normalize = A.Normalize(mean=mean, std=std, max_pixel_value=255.0)
    reference = torch.stack([torch.from_numpy(normalize(image=i.permute(1, 2, 0).numpy())["image"]) for i in images])
    torch.testing.assert_close(finished, reference.permute(0, 3, 1, 2), atol=1e-6, rtol=0)
    assert same_labels is labels
    loaded = next(iter(module.val_dataloader()))
    assert torch.equal(loaded[0], finished)
    assert module.on_after_batch_transfer(loaded, 0)[0] is loaded[0]  # finished once only
    assert module.on_after_batch_transfer(None, 0) is None  # a batch of which no image could be read


def test_a_worker_finishes_its_batch_in_shared_memory(monkeypatch: pytest.MonkeyPatch) -> None:
    """In a loader worker the float batch is made in shared memory (as ``default_collate`` makes its batches):
    handing it to the main process then copies nothing. The values are those made outside a worker."""
    images = torch.randint(0, 256, (2, 3, 5, 7), dtype=torch.uint8)
    mean, std = [0.485, 0.456, 0.406], [0.229, 0.224, 0.225]
    outside = normalised(images, mean, std)
    assert not outside.is_shared()
    monkeypatch.setattr(torch.utils.data, "get_worker_info", lambda: object())  # as inside a worker
    inside = normalised(images, mean, std)
    assert inside.is_shared() and inside.shape == images.shape and torch.equal(inside, outside)
    assert unit_range(images[0]).is_shared()
    torch.testing.assert_close(unit_range(images[0]), images[0].float() / 255, atol=1e-7, rtol=0)


def test_a_float_making_step_in_the_transforms_is_refused(bccd_cells: Path, tmp_path: Path) -> None:
    steps = [*RESIZE, {"_target_": "albumentations.Normalize"}]
    with pytest.raises(CvkitError, match=r"data.train_transforms\[1\] is Normalize: cvkit turns the uint8 images"):
        datamodule(make_folder(bccd_cells, tmp_path), train_transforms=steps)


def test_unreadable_images_are_skipped_with_a_warning_naming_them(
    bccd_cells: Path, tmp_path: Path, caplog: pytest.LogCaptureFixture
) -> None:
    root = make_folder(bccd_cells, tmp_path)
    bad = corrupt_files(root / "train" / "RBC", next((root / "train" / "WBC").iterdir()))
    with caplog.at_level(logging.WARNING):
        module = datamodule(root, verify_images="full")
    assert "skipping 3 unreadable image(s)" in caplog.text
    assert all(str(path) in caplog.text for path in bad.values())
    assert module.split_sizes()["train"] == 18


def test_header_check_leaves_truncated_files_to_the_reader_which_skips_them(
    bccd_cells: Path, tmp_path: Path, caplog: pytest.LogCaptureFixture
) -> None:
    root = make_folder(bccd_cells, tmp_path)
    bad = corrupt_files(root / "train" / "RBC", next((root / "train" / "WBC").iterdir()))
    module = datamodule(root, verify_images="header")
    assert module.split_sizes()["train"] == 19  # empty and text files caught by the header check
    dataset = ClassificationDataset(
        module.splits["train"].images, module.splits["train"].labels, module.eval_pipeline, strict=False
    )
    position = dataset.images.paths.index(bad["truncated"])
    with caplog.at_level(logging.WARNING):
        assert dataset[position] == Unreadable(position, str(bad["truncated"]))
    assert str(bad["truncated"]) in caplog.text
    batch = collate_skipping_unreadable([dataset[position], dataset[0]])
    assert batch[0].shape[0] == 1 and batch.unreadable == (Unreadable(position, str(bad["truncated"])),)
    dataset.strict = True
    with pytest.raises(CorruptImageError, match="cut.jpg"):
        dataset[position]


def test_strict_fails_at_once_naming_the_file(bccd_cells: Path, tmp_path: Path) -> None:
    root = make_folder(bccd_cells, tmp_path)
    (root / "val" / "WBC" / "broken.jpg").write_bytes(b"\xff\xd8garbage")
    with pytest.raises(CvkitError, match=r"broken\.jpg.*\n.*data\.strict=false|data.strict=true:\n.*broken\.jpg"):
        datamodule(root, strict=True)


@pytest.mark.parametrize(
    ("layout", "message"),
    [
        ("missing_root", "does not exist"),
        ("no_val", "val is missing"),
        ("flat", "no class sub-folders .*3 images lie directly"),
        ("empty_train", "contains no image files"),
        ("extra_val_class", r"classes \['Monocyte'\] that the train split does not have"),
    ],
)
def test_malformed_folders_are_explained(bccd_cells: Path, tmp_path: Path, layout: str, message: str) -> None:
    root = tmp_path / "data"
    if layout == "no_val":
        make_folder(bccd_cells, root, splits=("train",))
    elif layout == "flat":
        make_folder(bccd_cells, root, splits=("val",))
        (root / "train").mkdir()
        for image in list((root / "val" / "RBC").iterdir())[:3]:
            shutil.copy(image, root / "train" / image.name)
    elif layout == "empty_train":
        make_folder(bccd_cells, root, splits=("val",))
        (root / "train" / "RBC").mkdir(parents=True)
    elif layout == "extra_val_class":
        make_folder(bccd_cells, root)
        shutil.copytree(root / "val" / "WBC", root / "val" / "Monocyte")
    with pytest.raises(CvkitError, match=message) as error:
        datamodule(root)
    assert "ROOT/train/<class>" in str(error.value) or layout == "extra_val_class"
