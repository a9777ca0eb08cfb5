import json
import math
from pathlib import Path

import numpy as np
import pytest
import torch
import torch.multiprocessing as mp
from sklearn.metrics import accuracy_score, confusion_matrix, f1_score, jaccard_score
from torchmetrics.classification import MulticlassJaccardIndex

from cvkit.metrics import pixel_confusion, segmentation_report, segmentation_scores
from tests.helpers.network import free_port, gloo_group

CLASSES = 5  # targets use 0..2, predictions 0..3 (class 3 only predicted), class 4 occurs nowhere
IGNORE = 255
# Unequal batches of unequal quality, so that a mean of per-batch values differs from the whole-set value.
SHAPES_AND_ACCURACY = [((1, 4, 6), 0.9), ((3, 16, 16), 0.4), ((2, 8, 24), 0.7), ((4, 32, 32), 0.2), ((1, 5, 5), 1.0)]

Batch = tuple[torch.Tensor, torch.Tensor]


def masks(target_classes: int = 3, predicted_classes: int = 4, seed: int = 0) -> list[Batch]:
    """Seeded (predictions, targets) batches: targets in 0..target_classes-1 with about 10% ignored pixels,
    predictions equal to the target with each batch's probability, else uniform in 0..predicted_classes-1."""
    generator = torch.Generator().manual_seed(seed)
    batches = []
    for shape, accuracy in SHAPES_AND_ACCURACY:
        targets = torch.randint(0, target_classes, shape, generator=generator)
        noise = torch.randint(0, predicted_classes, shape, generator=generator)
        predictions = torch.where(torch.rand(shape, generator=generator) < accuracy, targets, noise)
        targets[torch.rand(shape, generator=generator) < 0.1] = IGNORE
        batches.append((predictions, targets))
    return batches


def accumulated(batches: list[Batch], num_classes: int = CLASSES) -> dict[str, torch.Tensor]:
    metric = pixel_confusion(num_classes, ignore_index=IGNORE)
    for predictions, targets in batches:
        metric.update(predictions, targets)
    return segmentation_scores(metric.compute())


def counted_pixels(batches: list[Batch]) -> tuple[np.ndarray, np.ndarray]:
    """(targets, predictions) of all non-ignored pixels, flattened, as numpy arrays."""
    targets = torch.cat([t.reshape(-1) for _, t in batches])
    predictions = torch.cat([p.reshape(-1) for p, _ in batches])
    kept = targets != IGNORE
    return targets[kept].numpy(), predictions[kept].numpy()


def test_hand_computed_example() -> None:
    metric = pixel_confusion(num_classes=3, ignore_index=IGNORE)
    metric.update(torch.tensor([[[0, 1], [0, 0]]]), torch.tensor([[[0, 1], [1, IGNORE]]]))
    result = segmentation_scores(metric.compute())
    assert result["confusion"].tolist() == [[1, 0, 0], [1, 1, 0], [0, 0, 0]]
    assert result["iou"][:2].tolist() == [0.5, 0.5] and math.isnan(result["iou"][2])
    assert result["miou"].item() == 0.5
    assert result["pixel_acc"].item() == pytest.approx(2 / 3, abs=1e-12)
    assert result["dice"].item() == pytest.approx(2 / 3, abs=1e-12)  # class 0: 2*1/(2+1), class 1: 2*1/(1+2)
    report = segmentation_report(result["confusion"], ["road", "car", "sky"])
    assert json.loads(json.dumps(report)) == {
        "road": {"iou": 0.5, "dice": pytest.approx(2 / 3), "support": 1},
        "car": {"iou": 0.5, "dice": pytest.approx(2 / 3), "support": 2},
        "sky": {"iou": -1.0, "dice": -1.0, "support": 0},
    }


def test_accumulated_metrics_equal_scikit_learn() -> None:
    batches = masks()
    result = accumulated(batches)
    targets, predictions = counted_pixels(batches)
    assert len(targets) < sum(t.numel() for _, t in batches)  # some pixels are ignored
    np.testing.assert_array_equal(result["confusion"].numpy(), confusion_matrix(targets, predictions, labels=range(5)))
    present = np.union1d(targets, predictions)
    assert present.tolist() == [0, 1, 2, 3]
    iou = jaccard_score(targets, predictions, labels=present, average=None)
    dice = f1_score(targets, predictions, labels=present, average=None)  # F1 is Dice
    np.testing.assert_allclose(result["iou"][:4].numpy(), iou, rtol=0, atol=1e-12)
    assert result["iou"][3] == 0.0  # predicted, never a target: counts as 0
    assert math.isnan(result["iou"][4])  # nowhere: undefined, left out of the mean
    assert result["miou"].item() == pytest.approx(iou.mean(), abs=1e-6)
    assert result["dice"].item() == pytest.approx(dice.mean(), abs=1e-6)
    assert result["pixel_acc"].item() == pytest.approx(accuracy_score(targets, predictions), abs=1e-6)
    report = segmentation_report(result["confusion"].tolist(), list("abcde"))
    assert [row["support"] for row in report.values()] == np.bincount(targets, minlength=5).tolist()
    assert [row["iou"] for row in report.values()] == [*iou.tolist(), -1.0]


def test_batch_by_batch_equals_one_update_not_a_mean_of_batches() -> None:
    batches = masks()
    together = pixel_confusion(CLASSES, ignore_index=IGNORE)
    predictions, targets = (torch.cat([batch[i].reshape(-1) for batch in batches]) for i in range(2))
    together.update(predictions.reshape(1, 1, -1), targets.reshape(1, 1, -1))
    whole = segmentation_scores(together.compute())
    by_batch = accumulated(batches)
    for key in ("confusion", "iou", "miou", "pixel_acc", "dice"):
        torch.testing.assert_close(by_batch[key], whole[key], rtol=0, atol=0, equal_nan=True)
    per_batch = [accumulated([batch]) for batch in batches]
    for key in ("miou", "pixel_acc", "dice"):
        batch_mean = sum(result[key].item() for result in per_batch) / len(per_batch)
        assert abs(batch_mean - whole[key].item()) > 0.01, key  # so the comparison above could have failed


def test_logits_equal_their_argmax() -> None:
    generator = torch.Generator().manual_seed(1)
    from_logits, from_indices = pixel_confusion(CLASSES, IGNORE), pixel_confusion(CLASSES, IGNORE)
    for predictions, targets in masks():
        noise = torch.randn(predictions.shape[0], CLASSES, *predictions.shape[1:], generator=generator)
        logits = noise + 10 * torch.nn.functional.one_hot(predictions, CLASSES).permute(0, 3, 1, 2)
        from_logits.update(logits, targets)
        from_indices.update(predictions, targets)
    assert torch.equal(from_logits.compute(), from_indices.compute())


def test_mean_iou_equals_torchmetrics() -> None:
    # Every class present, then class 3 only predicted and class 4 nowhere: torchmetrics' macro average also
    # leaves out a class absent from target and prediction, but its per-class value for it is 0.0, not NaN.
    for batches, num_classes in ((masks(3, 3), 3), (masks(), CLASSES)):
        reference = MulticlassJaccardIndex(num_classes, ignore_index=IGNORE, average="macro")
        per_class = MulticlassJaccardIndex(num_classes, ignore_index=IGNORE, average="none")
        for predictions, targets in batches:
            reference.update(predictions, targets)
            per_class.update(predictions, targets)
        result = accumulated(batches, num_classes)
        assert result["miou"].item() == pytest.approx(reference.compute().item(), abs=1e-6)
        torch.testing.assert_close(result["iou"].float().nan_to_num(0.0), per_class.compute(), rtol=0, atol=1e-6)
    assert math.isnan(result["iou"][4]) and per_class.compute()[4] == 0.0


def test_what_torchmetrics_refuses_and_what_cvkit_checks_before() -> None:
    # torchmetrics refuses predictions that do not fit the targets. Values it does not all refuse (a prediction
    # of class 9 of 5 lands in another cell): cvkit's predictions are an argmax over the classes, and every
    # mask's values are checked against the classes and data.ignore_index when it is read
    # (tests/data/test_segmentation_data.py).
    metric = pixel_confusion(CLASSES, ignore_index=IGNORE)
    with pytest.raises(ValueError, match="should have the same shape"):
        metric.update(torch.zeros(2, 8, 8, dtype=torch.long), torch.zeros(2, 8, 9, dtype=torch.long))
    with pytest.raises(ValueError, match="should be equal to number of classes"):
        metric.update(torch.zeros(2, 4, 8, 8), torch.zeros(2, 8, 8, dtype=torch.long))
    assert not metric.confmat.any()  # rejected batches count nothing
    with pytest.raises(ValueError, match="no pixel was counted"):
        segmentation_scores(metric.compute())


def sync_worker(rank: int, port: int, out: Path) -> None:
    """One of two gloo ranks: count every other batch, compute (torchmetrics sums the ranks), save the result."""
    with gloo_group(rank, port):
        torch.save(accumulated(masks()[rank::2]), out / f"rank{rank}.pt")


def test_two_gloo_ranks_equal_one_process(tmp_path: Path) -> None:
    # fork, not spawn: the children need not import torch again.
    mp.start_processes(sync_worker, args=(free_port(), tmp_path), nprocs=2, start_method="fork")
    expected = accumulated(masks())
    assert not torch.equal(accumulated(masks()[0::2])["confusion"], expected["confusion"])
    for rank in range(2):
        result = torch.load(tmp_path / f"rank{rank}.pt")
        assert result.keys() == expected.keys()
        for key, value in expected.items():
            torch.testing.assert_close(result[key], value, rtol=0, atol=0, equal_nan=True)
