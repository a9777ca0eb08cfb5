import logging
import shutil
from pathlib import Path

import numpy as np
import pytest
import torch
from hydra.utils import instantiate
from PIL import Image

from cvkit.data import MaskFolderDataModule, VOCSegmentationDataModule
from cvkit.data.images import CorruptImageError
from cvkit.errors import CvkitError
from tests.helpers.configs import compose_train
from tests.helpers.datasets import CAMVID_CLASSES, CAMVID_IGNORE
from tests.helpers.datasets import IMAGENET_MEAN as MEAN
from tests.helpers.datasets import IMAGENET_STD as STD
from tests.helpers.datasets import RESIZE_TO_TEST_SIZE as RESIZE
from tests.helpers.datasets import SEGMENTATION_TEST_SIZE as SMALL

FLIP = [{"_target_": "albumentations.HorizontalFlip", "p": 1.0}]


def camvid_folders(root: Path) -> dict[str, str]:
    return {
        "train_images": str(root / "train"),
        "train_masks": str(root / "trainannot"),
        "val_images": str(root / "val"),
        "val_masks": str(root / "valannot"),
    }


def masks(**kwargs) -> MaskFolderDataModule:
    defaults = {
        "batch_size": 4,
        "num_workers": 0,
        "image_size": SMALL,
        "mean": MEAN,
        "std": STD,
        "train_transforms": RESIZE,
        "ignore_index": 255,
    }
    module = MaskFolderDataModule(**{**defaults, **kwargs})
    module.setup()
    return module


@pytest.fixture(scope="module")
def camvid_masks(camvid: Path) -> MaskFolderDataModule:
    return masks(**camvid_folders(camvid), class_names=CAMVID_CLASSES, ignore_index=CAMVID_IGNORE)


def read_mask(path: Path) -> np.ndarray:
    return np.asarray(Image.open(path))


def test_camvid_config_composes_and_loads(camvid: Path, tmp_path: Path) -> None:
    cfg = compose_train(tmp_path, "data=camvid", f"data.root={camvid}", "data.num_workers=0")
    module = instantiate(cfg.data, _recursive_=False)
    module.setup()
    assert module.split_sizes() == {"train": 367, "val": 101} and not module.has_split("test")
    assert module.class_names == CAMVID_CLASSES and module.num_classes == 11 and module.ignore_index == CAMVID_IGNORE
    assert module.image_size == (352, 480) and module.mean == MEAN and module.std == STD
    assert str(camvid) in module.describe()
    images, labels = next(iter(module.train_dataloader()))  # the default augmentations end at image_size
    assert images.shape == (8, 3, 352, 480) and labels.shape == (8, 352, 480)


def test_train_batch_has_the_documented_shapes(camvid_masks: MaskFolderDataModule) -> None:
    images, labels = next(iter(camvid_masks.train_dataloader()))  # a CPU run's: finished in the workers
    assert images.dtype == torch.float32 and images.shape == (4, 3, *SMALL)
    assert labels.dtype == torch.int64 and labels.shape == (4, *SMALL)
    assert set(labels.unique().tolist()) <= set(range(12)) and len(labels.unique()) > 3


def test_eval_batch_keeps_the_original_masks(camvid_masks: MaskFolderDataModule) -> None:
    images, labels = next(iter(camvid_masks.val_dataloader()))
    assert images.dtype == torch.float32 and images.shape == (4, 3, *SMALL)
    assert isinstance(labels, list) and len(labels) == 4
    for label, record in zip(labels, camvid_masks.splits["val"]):
        assert label.dtype == torch.int64 and label.shape == (360, 480)
        assert np.array_equal(label.numpy(), read_mask(record.mask))


def test_a_flip_flips_image_and_mask_together(camvid: Path) -> None:
    module = masks(**camvid_folders(camvid), num_classes=11, ignore_index=CAMVID_IGNORE, train_transforms=FLIP)
    record = module.splits["train"][0]
    image, label, _ = module.make_dataset("train", train=True)[0]
    assert torch.equal(label, torch.from_numpy(np.fliplr(read_mask(record.mask)).astype(np.int64)))
    raw = np.fliplr(np.asarray(Image.open(record.image).convert("RGB")))
    assert image.shape == (3, 360, 480) and torch.equal(image, torch.from_numpy(raw.transpose(2, 0, 1).copy()))


def test_explicit_folders_per_split(camvid: Path, tmp_path: Path) -> None:
    for name, folder in (("img", "train"), ("ann", "trainannot")):
        (tmp_path / name).mkdir()
        for path in sorted((camvid / folder).iterdir())[:3]:
            shutil.copy(path, tmp_path / name)
    module = masks(
        train_images=str(camvid / "val"),
        train_masks=str(camvid / "valannot"),
        val_images=str(tmp_path / "img"),
        val_masks=str(tmp_path / "ann"),
        test_images=str(tmp_path / "img"),
        test_masks=str(tmp_path / "ann"),
        num_classes=11,
        ignore_index=CAMVID_IGNORE,
    )
    assert module.split_sizes() == {"train": 101, "val": 3, "test": 3}
    assert module.class_names == [str(index) for index in range(11)]
    images, labels = next(iter(module.test_dataloader()))
    assert images.shape == (3, 3, *SMALL) and [label.shape for label in labels] == [(360, 480)] * 3


def write_pair(root: Path, stem: str, mask: np.ndarray, image_size: tuple[int, int] | None = None) -> None:
    """An RGB image (of the mask's size unless `image_size` (h, w) is given) and its mask PNG."""
    (root / "img").mkdir(parents=True, exist_ok=True)
    (root / "ann").mkdir(parents=True, exist_ok=True)
    height, width = image_size or mask.shape[:2]
    pixels = np.random.default_rng(len(stem)).integers(0, 256, (height, width, 3), dtype=np.uint8)
    Image.fromarray(pixels).save(root / "img" / f"{stem}.png")
    Image.fromarray(mask).save(root / "ann" / f"{stem}.png")


def tiny_folders(root: Path) -> dict[str, str]:
    return {
        f"{split}_{kind}": str(root / split / folder)
        for split in ("train", "val")
        for kind, folder in (("images", "img"), ("masks", "ann"))
    }


def tiny(root: Path) -> dict[str, str]:
    """Train and val splits of tiny 8x10 images; masks of classes 0..2 and the ignore value 255."""
    for split, count in (("train", 3), ("val", 2)):
        for index in range(count):
            mask = np.zeros((8, 10), np.uint8)
            mask[:4] = 1
            mask[:, : index + 1] = 2
            mask[7, 9] = 255
            write_pair(root / split, f"{split}{index}", mask)
    return tiny_folders(root)


def tiny_masks(root: Path, **kwargs) -> MaskFolderDataModule:
    """The data module of the tiny folders under `root` (written by :func:`tiny`), 3 classes, no augmentation."""
    return masks(**{**tiny_folders(root), "num_classes": 3, "train_transforms": [], **kwargs})


def test_class_pixel_counts_are_counted_once(tmp_path: Path) -> None:
    tiny(tmp_path)
    module = tiny_masks(tmp_path)
    # per mask: columns 0..index are class 2, the rest of rows 0..3 class 1, one pixel ignored
    expected = np.zeros(3, np.int64)
    for index in range(3):
        twos, ones = 8 * (index + 1), 4 * (10 - index - 1)
        expected += [80 - twos - ones - 1, ones, twos]
    assert module.class_pixel_counts().tolist() == expected.tolist()
    shutil.rmtree(tmp_path / "train" / "ann")
    assert module.class_counts("train").tolist() == expected.tolist()  # cached: not read again
    assert module.class_pixel_counts("val").sum() == 2 * 79


def test_masks_config_composes(tmp_path: Path) -> None:
    folders = tiny(tmp_path / "data")
    overrides = [f"data.{key}={value}" for key, value in folders.items()]
    cfg = compose_train(tmp_path, "data=masks", "data.num_classes=3", "data.image_size=[8,10]", *overrides)
    module = instantiate(cfg.data, _recursive_=False)
    module.setup()
    assert module.split_sizes() == {"train": 3, "val": 2} and module.class_names == ["0", "1", "2"]
    assert module.ignore_index == 255 and module.image_size == (8, 10)


def test_unreadable_images_are_skipped_unless_strict(tmp_path: Path, caplog: pytest.LogCaptureFixture) -> None:
    folders = tiny(tmp_path)
    (tmp_path / "val" / "img" / "val0.png").write_bytes(b"not a png")
    module = tiny_masks(tmp_path)
    with caplog.at_level(logging.WARNING):
        batch = next(iter(module.val_dataloader()))
    images, labels = batch
    assert "val0.png" in caplog.text and len(images) == len(labels) == 1
    assert [sample.path for sample in batch.unreadable] == [str(tmp_path / "val" / "img" / "val0.png")]
    strict = masks(**folders, num_classes=3, strict=True)
    with pytest.raises(CorruptImageError, match="val0.png"):
        next(iter(strict.val_dataloader()))


def add_lonely_image(root: Path) -> dict:
    write_pair(root / "train", "extra", np.zeros((8, 10), np.uint8))
    (root / "train" / "ann" / "extra.png").unlink()
    return {}


def add_lonely_mask(root: Path) -> dict:
    write_pair(root / "val", "zebra", np.zeros((8, 10), np.uint8))
    (root / "val" / "img" / "zebra.png").unlink()
    return {}


def rgb_mask(root: Path) -> dict:
    Image.new("RGB", (10, 8)).save(root / "train" / "ann" / "train0.png")
    return {}


@pytest.mark.parametrize(
    ("damage", "message"),
    [
        (lambda root: {"val_masks": str(root / "nowhere")}, "data.val_masks: .*nowhere does not exist"),
        (add_lonely_image, "1 of the 4 images in .*train/img have no mask \\(extra\\)"),
        (add_lonely_mask, "1 of the 3 masks in .*val/ann have no image \\(zebra\\)"),
        (rgb_mask, "train0.png is a RGB image: masks must be single-channel images of class indices"),
        (lambda root: {"num_classes": None}, "set data.num_classes .* or data.class_names"),
        (lambda root: {"class_names": ["a", "b"]}, "data.num_classes=3 but data.class_names lists 2"),
        (lambda root: {"ignore_index": 2}, "data.ignore_index=2 is one of the classes 0..2"),
        (lambda root: {"eval_transforms": FLIP}, "data.eval_transforms\\[0\\] \\(HorizontalFlip\\) moves pixels"),
        (lambda root: {"image_size": [8, 10, 3]}, "data.image_size must be \\[height, width\\]"),
    ],
)
def test_setup_errors_name_the_path_or_key(tmp_path: Path, damage, message: str) -> None:
    tiny(tmp_path)
    options = damage(tmp_path)
    with pytest.raises(CvkitError, match=message):
        tiny_masks(tmp_path, **options)


def wrong_values(root: Path) -> None:
    Image.fromarray(np.full((8, 10), 7, np.uint8)).save(root / "train" / "ann" / "train1.png")


def wrong_size(root: Path) -> None:
    Image.fromarray(np.zeros((6, 10), np.uint8)).save(root / "train" / "ann" / "train1.png")


@pytest.mark.parametrize(
    ("damage", "message"),
    [
        (wrong_values, "train1.png has values 7 that are neither classes \\(0..2"),
        (wrong_size, "train1.png is 10x6 but its image .*train1.png is 10x8"),
    ],
)
def test_masks_are_checked_when_loaded(tmp_path: Path, damage, message: str) -> None:
    tiny(tmp_path)
    damage(tmp_path)
    module = tiny_masks(tmp_path)
    with pytest.raises(CvkitError, match=message):
        next(iter(module.train_dataloader()))


def test_training_images_must_end_at_one_size(tmp_path: Path) -> None:
    tiny(tmp_path)
    write_pair(tmp_path / "train", "train1", np.zeros((12, 10), np.uint8))
    with pytest.raises(CvkitError, match="data.train_transforms gave images of different sizes"):
        next(iter(tiny_masks(tmp_path).train_dataloader()))


VOC_PALETTE = [0, 0, 0, 128, 0, 0, 0, 128, 0] + [64, 64, 64] * 252 + [224, 224, 192]


def make_voc_seg(root: Path, splits: dict[str, list[str]]) -> Path:
    """A tiny VOC segmentation folder: JPEG images, palette PNG masks with classes 0, 1, 15 and 255 borders."""
    for folder in ("JPEGImages", "SegmentationClass", "ImageSets/Segmentation"):
        (root / folder).mkdir(parents=True)
    for split, ids in splits.items():
        (root / "ImageSets" / "Segmentation" / f"{split}.txt").write_text("\n".join(ids) + "\n")
        for number, image_id in enumerate(ids):
            Image.new("RGB", (20, 16 + number), (90, 120, 150)).save(root / "JPEGImages" / f"{image_id}.jpg")
            mask = np.zeros((16 + number, 20), np.uint8)
            mask[2:10, 3:12], mask[10:, 12:] = 15, 1
            mask[2, 3:12] = 255
            palette = Image.frombytes("P", (20, 16 + number), mask.tobytes())
            palette.putpalette(VOC_PALETTE)
            palette.save(root / "SegmentationClass" / f"{image_id}.png")
    return root


def test_voc_layout_with_palette_masks(tmp_path: Path) -> None:
    root = make_voc_seg(tmp_path / "voc", {"train": ["2007_000001", "2007_000002"], "val": ["2008_000003"]})
    assert Image.open(root / "SegmentationClass" / "2008_000003.png").mode == "P"
    cfg = compose_train(tmp_path, "data=voc_seg", f"data.root={root}", "data.num_workers=0", "data.image_size=[16,16]")
    module = instantiate(cfg.data, _recursive_=False)
    module.setup()
    assert isinstance(module, VOCSegmentationDataModule) and module.split_sizes() == {"train": 2, "val": 1}
    assert module.num_classes == 21 and module.class_names[15] == "person" and module.ignore_index == 255
    images, labels = next(iter(module.val_dataloader()))
    assert images.shape == (1, 3, 16, 16) and labels[0].shape == (16, 20)
    assert set(labels[0].unique().tolist()) == {0, 1, 15, 255}
    assert module.class_pixel_counts()[[1, 15]].tolist() == [6 * 8 + 7 * 8, 2 * 7 * 9]
    (root / "SegmentationClass" / "2008_000003.png").unlink()
    with pytest.raises(CvkitError, match="of the 1 ids in .*val.txt, 1 have no mask .*SegmentationClass"):
        VOCSegmentationDataModule(
            root=str(root), image_size=16, mean=MEAN, std=STD, ignore_index=255, batch_size=1, num_workers=0
        ).setup()
