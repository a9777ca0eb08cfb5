"""Operating-point metrics (precision, recall, F1, best F1, confusion matrix with background, precision-recall
curves): a hand-computed example, then real BCCD boxes against pycocotools run by hand."""

from pathlib import Path

import numpy as np
import pytest
import torch

from cvkit.metrics import CocoEvaluator
from cvkit.metrics.operating_point import ClassCurve, class_best_f1
from tests.helpers.coco import cocoeval, recall_at_iou_50
from tests.metrics.test_detection import CATEGORY_IDS, CLASSES, detections, image_ids, voc_to_coco

CAT, DOG = 5, 9


def box(x: float, y: float, w: float, h: float) -> list[float]:
    return [float(x), float(y), float(w), float(h)]


def annotation(index: int, image_id: int, category: int, xywh: list[float], crowd: int = 0) -> dict:
    return {"id": index, "image_id": image_id, "category_id": category, "bbox": xywh, "area": xywh[2] * xywh[3],
            "iscrowd": crowd}  # fmt: skip


# Image 1: cats a1, a2, a6 and dog a3; image 2: dog a4 and a crowd of cats; image 3: nothing.
TRUTH = {
    "images": [{"id": i, "width": 100, "height": 100, "file_name": f"{i}.jpg"} for i in (1, 2, 3)],
    "annotations": [
        annotation(1, 1, CAT, box(0, 0, 20, 20)),
        annotation(2, 1, CAT, box(50, 50, 20, 20)),
        annotation(3, 1, DOG, box(0, 50, 20, 20)),
        annotation(6, 1, CAT, box(80, 80, 15, 15)),
        annotation(4, 2, DOG, box(10, 10, 30, 30)),
        annotation(5, 2, CAT, box(60, 60, 40, 40), crowd=1),
    ],
    "categories": [{"id": CAT, "name": "cat"}, {"id": DOG, "name": "dog"}],
}
# (image, label, xywh, score): label 1 is cat, 2 is dog.
FOUND = [
    (1, 1, box(0, 0, 20, 20), 0.9),  # d1: a1, right
    (1, 1, box(80, 0, 10, 10), 0.8),  # d2: on nothing
    (1, 1, box(0, 50, 20, 20), 0.7),  # d3: a cat on dog a3
    (1, 1, box(50, 50, 20, 20), 0.6),  # d4: a2, right
    (1, 2, box(0, 52, 20, 20), 0.4),  # d5: a3, IoU 360 / 440
    (2, 2, box(10, 10, 30, 30), 0.5),  # d6: a4, right
    (2, 1, box(60, 60, 20, 20), 0.95),  # d7: inside the crowd of cats: neither right nor wrong
    (3, 2, box(0, 0, 10, 10), 0.3),  # d8: on nothing
]


def hand_example(score_thresh: float) -> dict:
    evaluator = CocoEvaluator(TRUTH, [CAT, DOG])
    for image_id in (1, 2, 3):
        mine = [(label, xywh, score) for image, label, xywh, score in FOUND if image == image_id]
        evaluator.update(
            [image_id],
            [
                {
                    "boxes": torch.tensor([[x, y, x + w, y + h] for _, (x, y, w, h), _ in mine]),
                    "labels": torch.tensor([label for label, _, _ in mine]),
                    "scores": torch.tensor([score for _, _, score in mine], dtype=torch.float64),
                }
            ],
        )
    evaluator.compute()
    return evaluator.operating_point(score_thresh)


def test_the_hand_computed_example() -> None:
    """At 0.5, cat keeps d7 (ignored), d1, d2, d3, d4: 2 right of 4 counted, 2 of its 3 boxes found; dog keeps
    d6: 1 right, 1 of 2 found. Best F1 per class: cat 4/7 at 0.6 (2 of 4, 2 of 3), dog 1 at 0.4; of the mean,
    (4/7 + 1) / 2 at 0.4."""
    point = hand_example(score_thresh=0.5)
    cat, dog = point["per_class"]["cat"], point["per_class"]["dog"]
    assert (cat["true_boxes"], dog["true_boxes"]) == (3, 2)
    assert [cat["precision"], cat["recall"], cat["f1"]] == pytest.approx([1 / 2, 2 / 3, 4 / 7])
    assert [dog["precision"], dog["recall"], dog["f1"]] == pytest.approx([1, 1 / 2, 2 / 3])
    assert [cat["best_f1"], cat["best_f1_score_thresh"]] == pytest.approx([4 / 7, 0.6])
    assert [dog["best_f1"], dog["best_f1_score_thresh"]] == pytest.approx([1, 0.4])
    metrics = point["metrics"]
    assert [metrics["precision"], metrics["recall"], metrics["f1"]] == pytest.approx(
        [3 / 4, 7 / 12, (4 / 7 + 2 / 3) / 2]
    )
    assert [metrics["best_f1"], metrics["best_f1_score_thresh"]] == pytest.approx([(4 / 7 + 1) / 2, 0.4])
    # Across classes at 0.5: d1-a1 and d4-a2 cat as cat, d3-a3 dog taken for a cat, d6-a4 dog as dog; d2 a cat
    # on background, cat a6 missed; d7 on the crowd is not counted, d5 and d8 score under 0.5.
    confusion = point["confusion_matrix"]
    assert confusion["classes"] == ["cat", "dog", "background"]
    assert confusion["counts"] == [[2, 0, 1], [1, 1, 0], [1, 0, 0]]


def test_a_lower_threshold_moves_detections_into_the_matrix() -> None:
    """At 0.3, d5 (dog) and d8 (dog on nothing) count too: a3 is still taken by the cat d3 (same IoU 1 ranks
    first), so d5 is a dog on background, as is d8."""
    counts = hand_example(score_thresh=0.3)["confusion_matrix"]["counts"]
    assert counts == [[2, 0, 1], [1, 1, 0], [1, 2, 0]]


@pytest.fixture(scope="module")
def bccd_truth(bccd_voc: Path) -> dict:
    return voc_to_coco(sorted((bccd_voc / "Annotations").glob("*.xml"))[:20])


def test_curves_and_recall_agree_with_pycocotools_on_real_boxes(bccd_truth: dict) -> None:
    """BCCD's true boxes moved by a fifth of their width (IoU 2/3, above 0.5) with every third left out:
    each class's curve averages to pycocotools' AP50, and its recall with every detection kept is
    pycocotools' recall at IoU 0.5."""
    ids = image_ids(bccd_truth)
    evaluator = CocoEvaluator(bccd_truth, CATEGORY_IDS)
    evaluator.update(ids, detections(bccd_truth, ids, shift=0.2, drop_every=3))
    evaluator.compute()
    point = evaluator.operating_point(score_thresh=0.0)
    by_hand = cocoeval(bccd_truth, evaluator.results())
    iou_50 = int(np.argmin(np.abs(by_hand.params.iouThrs - 0.5)))
    for k, category in enumerate(by_hand.params.catIds):
        name = CLASSES[CATEGORY_IDS.index(category)]
        ap_50 = by_hand.eval["precision"][iou_50, :, k, 0, -1].mean()
        assert np.mean(point["pr_curves"]["classes"][name]["precision"]) == pytest.approx(ap_50, abs=1e-4), name
        assert point["per_class"][name]["recall"] == pytest.approx(recall_at_iou_50(by_hand)[category]), name
    assert 0 < point["metrics"]["recall"] < 1  # the left-out third is missed
    counts = np.array(point["confusion_matrix"]["counts"])
    assert counts[:-1, :-1].trace() == counts[:-1, :-1].sum()  # every match of its own class
    assert counts[:-1, -1].sum() == sum(a["iscrowd"] == 0 for a in bccd_truth["annotations"]) - counts.trace()


def test_the_documented_example() -> None:
    """docs/detection.md and the module's docstring: true boxes A and B; detections 0.9 on A, 0.8 on nothing,
    0.6 on B."""
    curve = ClassCurve(np.array([0.9, 0.8, 0.6]), np.array([1, 1, 2]), np.array([0, 1, 1]), num_truth=2)
    assert curve.at(0.7) == pytest.approx({"precision": 1 / 2, "recall": 1 / 2, "f1": 1 / 2})
    assert class_best_f1(curve) == pytest.approx({"best_f1": 0.8, "best_f1_score_thresh": 0.6})
    assert curve.at(0.6) == pytest.approx({"precision": 2 / 3, "recall": 1, "f1": 0.8})
