"""task.class_weights: "balanced" is scikit-learn's, computed on the real train labels; explicit weights and
wrong ones."""

from pathlib import Path

import numpy as np
import pytest
import torch
from sklearn.utils.class_weight import compute_class_weight

from cvkit.builders import build_datamodule
from cvkit.errors import CvkitError
from cvkit.tasks.class_weights import class_weights_from
from tests.helpers.configs import compose_train
from tests.helpers.tasks import configured_task


@pytest.fixture(scope="module")
def cells_cfg(bccd_cells: Path, tmp_path_factory: pytest.TempPathFactory):
    """The blood-cell crops (imbalanced: far more RBC than Platelets or WBC) as cvkit-train composes them."""
    overrides = ["data=imagefolder", f"data.root={bccd_cells}", "data.image_size=32", "data.num_workers=0"]
    return compose_train(tmp_path_factory.mktemp("cells"), *overrides, "task.class_weights=balanced")


@pytest.fixture(scope="module")
def cells(cells_cfg):
    return build_datamodule(cells_cfg)


def test_balanced_equals_scikit_learn_on_the_train_labels(cells) -> None:
    labels = np.asarray(cells.splits["train"].labels)
    expected = compute_class_weight("balanced", classes=np.arange(cells.num_classes), y=labels)
    counts = np.bincount(labels, minlength=cells.num_classes)
    assert counts.max() > 2 * counts.min()  # imbalanced: balanced weights differ from uniform ones
    weights = class_weights_from("balanced", cells.class_counts("train"))
    assert weights.dtype == torch.float32 and weights.tolist() == pytest.approx(expected.tolist(), rel=1e-6)
    assert weights[counts.argmin()] > 1 > weights[counts.argmax()]


def test_the_task_gets_the_balanced_weights_of_the_train_split(cells_cfg, cells) -> None:
    task = configured_task(cells_cfg, cells)
    labels = np.asarray(cells.splits["train"].labels)
    expected = compute_class_weight("balanced", classes=np.arange(cells.num_classes), y=labels)
    assert task.class_weights.tolist() == pytest.approx(expected.tolist(), rel=1e-6)


def test_explicit_weights_are_taken_as_given() -> None:
    counts = np.array([50, 5, 10])
    assert class_weights_from([1, 2.5, 0], counts).tolist() == [1.0, 2.5, 0.0]
    assert class_weights_from(None, counts) is None


@pytest.mark.parametrize("spec", [[1, 2], [1, 2, 3, 4], "inverse"])
def test_a_wrong_spec_is_named_with_the_class_count(spec) -> None:
    expected = f"task.class_weights must be null, 'balanced' or a list of 3 numbers, got {spec!r}"
    with pytest.raises(CvkitError) as raised:
        class_weights_from(spec, np.array([50, 5, 10]))
    assert str(raised.value) == expected
