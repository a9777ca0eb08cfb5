from collections import Counter

import numpy as np
import torch
from sklearn.datasets import load_digits

from cvkit.data import DigitsDataModule

COMMON = {"batch_size": 16, "num_workers": 0, "image_size": 24, "mean": [0.5] * 3, "std": [0.5] * 3}
RESIZE = [{"_target_": "albumentations.Resize", "height": 24, "width": 24}]


def test_digits_split_is_fixed_and_stratified() -> None:
    a = DigitsDataModule(**COMMON, eval_transforms=RESIZE, train_transforms=RESIZE)
    b = DigitsDataModule(**COMMON, eval_transforms=RESIZE, train_transforms=RESIZE)
    a.setup(), b.setup()
    assert a.split_sizes() == {"train": 1437, "val": 360}
    assert (a.splits["val"].labels == b.splits["val"].labels).all()
    # Stratified: each digit's share of val is its share of the whole set (20% of its images, to one image).
    whole = np.bincount(load_digits().target, minlength=10)
    assert np.abs(a.class_counts("val") - 0.2 * whole).max() <= 1
    assert a.class_names == [str(d) for d in range(10)]


def test_a_test_split_is_held_out_apart_from_train_and_val() -> None:
    datamodule = DigitsDataModule(**COMMON, test_fraction=0.2, eval_transforms=RESIZE, train_transforms=RESIZE)
    datamodule.setup()
    sizes = datamodule.split_sizes()
    assert sizes == {"test": 360, "train": 1077, "val": 360}
    held = Counter(
        split.images.array[i].tobytes() for split in datamodule.splits.values() for i in range(len(split.images))
    )
    everything = Counter(np.round(image * 255.0 / 16.0).astype(np.uint8).tobytes() for image in load_digits().images)
    assert held == everything  # a partition: each image in exactly one split
    assert datamodule.class_counts("test").min() >= 35


def test_grayscale_digits_become_three_channel_normalised_batches() -> None:
    datamodule = DigitsDataModule(**COMMON, eval_transforms=RESIZE, train_transforms=RESIZE)
    datamodule.setup()
    images, labels = datamodule.on_after_batch_transfer(next(iter(datamodule.val_dataloader())), 0)
    assert images.shape == (16, 3, 24, 24) and images.dtype == torch.float32
    assert torch.equal(images[:, 0], images[:, 1])
    assert images.min() >= -1.0 and images.max() <= 1.0 and images.std() > 0.1
    assert labels.dtype == torch.int64
