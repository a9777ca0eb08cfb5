"""The parity check of cvkit-export: how far the exported model's outputs may lie from PyTorch's. Detections
are paired within their class at the smallest summed difference, since near-equal scores may come out in
another order."""

import math

import numpy as np
import pytest

from cvkit.inference.forms import largest_detection_difference, largest_logit_difference

BOXES = np.array([[10.0, 20.0, 50.0, 60.0], [12.0, 22.0, 48.0, 61.0], [100.0, 5.0, 140.0, 45.0]], np.float32)
LABELS = np.array([1, 1, 2])
SCORES = np.array([0.91, 0.90, 0.55], np.float32)


def detections(order: list[int], boxes=BOXES, labels=LABELS, scores=SCORES) -> tuple[np.ndarray, ...]:
    """One image's (boxes, labels, scores), its detections in `order`."""
    return boxes[order], labels[order], scores[order]


def test_the_same_detections_in_another_order_differ_by_nothing() -> None:
    reference = [detections([0, 1, 2]), detections([2, 0])]
    exported = [detections([1, 2, 0]), detections([0, 2])]
    assert largest_detection_difference(reference, exported) == pytest.approx(0.0, abs=1e-12)


def test_a_shifted_box_differs_by_its_shift() -> None:
    moved = BOXES.copy()
    moved[1, [0, 2]] += 2.5  # 2.5 px to the right
    reference = [detections([0, 1, 2])]
    assert largest_detection_difference(reference, [detections([2, 1, 0], boxes=moved)]) == pytest.approx(2.5)
    lower = SCORES.copy()
    lower[2] -= 0.02
    assert largest_detection_difference(reference, [detections([0, 1, 2], scores=lower)]) == pytest.approx(0.02)


def test_pairs_minimise_the_summed_difference_within_each_class() -> None:
    # Both class-1 boxes moved by 0.5 px, listed the other way round: paired crosswise they would differ by
    # ~2 px; and the class-2 box is not paired with a class-1 box, however close.
    moved = BOXES + np.float32(0.5)
    reference = [detections([0, 1, 2])]
    assert largest_detection_difference(reference, [detections([1, 0, 2], boxes=moved)]) == pytest.approx(0.5)
    # Two boxes 90 px apart whose classes trade places: a pairing blind to classes would find no difference.
    apart = BOXES[[0, 2]]
    reference = [(apart, np.array([1, 2]), np.array([0.9, 0.8], np.float32))]
    traded = [(apart, np.array([2, 1]), np.array([0.9, 0.8], np.float32))]
    assert largest_detection_difference(reference, traded) == pytest.approx(90.0)


def test_other_labels_or_counts_are_an_infinite_difference() -> None:
    reference = [detections([0, 1, 2])]
    other_labels = detections([0, 1, 2], labels=np.array([1, 2, 2]))
    assert largest_detection_difference(reference, [other_labels]) == math.inf
    assert largest_detection_difference(reference, [detections([0, 2])]) == math.inf
    assert (
        largest_detection_difference([detections([0, 1, 2]), detections([2])], [reference[0], detections([])])
        == math.inf
    )


def test_no_detections_on_either_side_differ_by_nothing() -> None:
    empty = detections([])
    assert largest_detection_difference([empty, empty], [detections([]), detections([])]) == 0.0
    assert largest_detection_difference([empty, detections([2])], [empty, detections([2])]) == 0.0


def test_logits_differ_by_their_largest_absolute_difference() -> None:
    reference = [np.zeros((2, 3), np.float32), np.ones((1, 3), np.float32)]
    exported = [np.array([[0.0, -0.25, 0.0], [0.0, 0.0, 0.1]], np.float32), np.ones((1, 3), np.float32)]
    assert largest_logit_difference(reference, exported) == pytest.approx(0.25)
