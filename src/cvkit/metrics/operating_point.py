"""A detector at an operating point: per-class precision, recall and F1 at one score threshold, the threshold
where F1 is best, precision-recall curves, and a confusion matrix with a background row and column.

Two matching rules, each the usual one for its purpose, both at IoU >= 0.5:

- **Precision, recall, F1 and the curves** use COCO's matching, read from pycocotools' own per-image
  evaluation (``COCOeval.evalImgs``, all areas, 100 detections per image): within each class and image,
  detections by falling score each take the unmatched true box they overlap most; a detection on a crowd
  region is neither right nor wrong, and a crowd region is never missed. So each curve's area, interpolated
  at COCO's 101 recall points, is pycocotools' AP50 of that class.
- **The confusion matrix** matches across classes, as Ultralytics draws it: in each image, a detection and a
  true box of any class form a pair at IoU >= 0.5; pairs are taken by falling IoU, each detection and true
  box at most once. A pair counts at (true class, predicted class); a detection left over counts at
  (background, predicted class), unless it lies on a crowd region (COCO's crowd overlap >= 0.5); a true
  box left over counts at (true class, background). Rows are true classes, columns predicted ones.

Example: one class; true boxes A and B; detections 0.9 on A, 0.8 on nothing, 0.6 on B. At threshold 0.7:
precision 1/2, recall 1/2, F1 1/2; the best F1 is 0.8 at threshold 0.6 (precision 2/3, recall 1).
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from typing import Any

import numpy as np
from pycocotools import mask as mask_utils
from pycocotools.cocoeval import COCOeval

IOU_THRESHOLD = 0.5
RECALL_POINTS = np.linspace(0.0, 1.0, 101)  # pycocotools' recThrs
UNDEFINED = -1.0  # pycocotools' value for a class without true boxes


@dataclass(frozen=True)
class ClassCurve:
    """One class's detections over the evaluated images, by falling score: ``true_positives[i]`` and
    ``false_positives[i]`` count those among the first ``i + 1`` (crowd-region detections count as neither)."""

    scores: np.ndarray
    true_positives: np.ndarray
    false_positives: np.ndarray
    num_truth: int

    def counts_at(self, thresholds: np.ndarray | float) -> tuple[np.ndarray, np.ndarray]:
        """(true, false) positives among the detections scoring at least each of `thresholds`."""
        kept = np.searchsorted(-self.scores, -np.asarray(thresholds), side="right")
        return np.append(0, self.true_positives)[kept], np.append(0, self.false_positives)[kept]

    def at(self, score_thresh: float) -> dict[str, float]:
        """Precision, recall and F1 of keeping the detections scoring at least `score_thresh`; all three
        :data:`UNDEFINED` without true boxes, precision 0 without detections."""
        if not self.num_truth:
            return {"precision": UNDEFINED, "recall": UNDEFINED, "f1": UNDEFINED}
        tp, fp = (int(count) for count in self.counts_at(score_thresh))
        precision, recall = tp / max(tp + fp, 1), tp / self.num_truth
        return {"precision": precision, "recall": recall, "f1": float(f1_score(precision, recall))}

    def f1_at(self, thresholds: np.ndarray) -> np.ndarray:
        """F1 at each of `thresholds` (the class has true boxes)."""
        tp, fp = self.counts_at(thresholds)
        return f1_score(tp / np.maximum(tp + fp, 1), tp / self.num_truth)

    def interpolated(self) -> tuple[np.ndarray, np.ndarray]:
        """(precision, score) at :data:`RECALL_POINTS`, as pycocotools' ``accumulate`` interpolates them: the
        best precision at that recall or beyond, and the score where that recall is first reached; 0 where the
        recall is never reached."""
        precision, score = np.zeros(len(RECALL_POINTS)), np.zeros(len(RECALL_POINTS))
        if not self.num_truth or not len(self.scores):
            return precision, score
        recall = self.true_positives / self.num_truth
        ranked = self.true_positives / (self.true_positives + self.false_positives + np.spacing(1))
        envelope = np.maximum.accumulate(ranked[::-1])[::-1]
        first = np.searchsorted(recall, RECALL_POINTS, side="left")
        reached = first < len(recall)
        precision[reached], score[reached] = envelope[first[reached]], self.scores[first[reached]]
        return precision, score


def f1_score(precision: float | np.ndarray, recall: float | np.ndarray) -> float | np.ndarray:
    """The harmonic mean of `precision` and `recall` (0 where both are 0)."""
    total = np.asarray(precision + recall, dtype=np.float64)
    return np.where(total > 0, 2 * precision * recall / np.maximum(total, np.spacing(1)), 0.0)[()]


def class_curves(coco_eval: COCOeval) -> list[ClassCurve]:
    """Each category's :class:`ClassCurve` at IoU 0.5, in ``coco_eval.params.catIds`` order, from a
    ``COCOeval`` whose ``evaluate()`` has run (its ``evalImgs`` are indexed category, area range, image)."""
    params = coco_eval.params
    iou = int(np.argmin(np.abs(np.asarray(params.iouThrs) - IOU_THRESHOLD)))
    areas, images = len(params.areaRng), len(params.imgIds)
    area, max_dets = params.areaRngLbl.index("all"), params.maxDets[-1]
    curves = []
    for k in range(len(params.catIds)):
        start = (k * areas + area) * images
        entries = [entry for entry in coco_eval.evalImgs[start : start + images] if entry is not None]
        scores = np.concatenate([[], *(entry["dtScores"][:max_dets] for entry in entries)])
        order = np.argsort(-scores, kind="mergesort")  # pycocotools' order, ties included
        matched = np.concatenate([[], *(entry["dtMatches"][iou, :max_dets] for entry in entries)])[order] > 0
        ignored = np.concatenate([[], *(entry["dtIgnore"][iou, :max_dets] for entry in entries)])[order] > 0
        num_truth = sum(int(np.count_nonzero(entry["gtIgnore"] == 0)) for entry in entries)
        curves.append(
            ClassCurve(scores[order], np.cumsum(matched & ~ignored), np.cumsum(~matched & ~ignored), num_truth)
        )
    return curves


def best_f1(curves: Sequence[ClassCurve]) -> tuple[float, float]:
    """(F1, score threshold) where the mean F1 of the classes with true boxes is highest, over every
    detection's score as the threshold; (0.0, 1.0) when nothing was detected."""
    scored = [curve for curve in curves if curve.num_truth]
    thresholds = np.unique(np.concatenate([[], *(curve.scores for curve in scored)]))
    if not scored or not len(thresholds):
        return 0.0, 1.0
    mean_f1 = np.mean([curve.f1_at(thresholds) for curve in scored], axis=0)
    best = int(np.argmax(mean_f1[::-1]))  # the highest threshold among equals
    return float(mean_f1[::-1][best]), float(thresholds[::-1][best])


def class_best_f1(curve: ClassCurve) -> dict[str, float | None]:
    """One class's best F1 over every detection's score as the threshold, and that threshold (None when the
    class has no detection); :data:`UNDEFINED` F1 without true boxes."""
    if not curve.num_truth:
        return {"best_f1": UNDEFINED, "best_f1_score_thresh": None}
    if not len(curve.scores):
        return {"best_f1": 0.0, "best_f1_score_thresh": None}
    thresholds = np.unique(curve.scores)[::-1]
    f1 = curve.f1_at(thresholds)
    best = int(np.argmax(f1))
    return {"best_f1": float(f1[best]), "best_f1_score_thresh": float(thresholds[best])}


def confusion_matrix(
    ground_truth: Mapping[int, Sequence[Mapping[str, Any]]],
    results: Mapping[int, Sequence[Mapping[str, Any]]],
    class_of_category: Mapping[int, int],
    score_thresh: float,
) -> np.ndarray:
    """The ``[K + 1, K + 1]`` counts (rows true, columns predicted, index K the background) of the images in
    `results`, each ``{image id: COCO results}`` matched to ``{image id: COCO annotations}`` across classes
    (the module's rule); category ids become class indices by `class_of_category`."""
    background = len(set(class_of_category.values()))
    counts = np.zeros((background + 1, background + 1), dtype=np.int64)
    for image_id, found in results.items():
        found = [result for result in found if result["score"] >= score_thresh]
        truth = [a for a in ground_truth.get(image_id, ()) if not a.get("iscrowd", 0)]
        crowds = [a["bbox"] for a in ground_truth.get(image_id, ()) if a.get("iscrowd", 0)]
        overlap = box_iou([r["bbox"] for r in found], [a["bbox"] for a in truth], crowd=False)
        pairs = [(i, j) for i, j in np.argwhere(overlap >= IOU_THRESHOLD)]
        pairs.sort(key=lambda pair: -overlap[pair])
        used_found, used_truth = set(), set()
        for i, j in pairs:
            if i not in used_found and j not in used_truth:
                used_found.add(i)
                used_truth.add(j)
                counts[class_of_category[truth[j]["category_id"]], class_of_category[found[i]["category_id"]]] += 1
        on_crowd = box_iou([r["bbox"] for r in found], crowds, crowd=True).max(axis=1, initial=0) >= IOU_THRESHOLD
        for i, result in enumerate(found):
            if i not in used_found and not on_crowd[i]:
                counts[background, class_of_category[result["category_id"]]] += 1
        for j, annotation in enumerate(truth):
            if j not in used_truth:
                counts[class_of_category[annotation["category_id"]], background] += 1
    return counts


def box_iou(boxes: Sequence[Sequence[float]], others: Sequence[Sequence[float]], crowd: bool) -> np.ndarray:
    """``[len(boxes), len(others)]`` IoU of xywh boxes, by pycocotools (``crowd``: the overlap over each of
    `boxes`' own area, COCO's measure against crowd regions)."""
    if not len(boxes) or not len(others):
        return np.zeros((len(boxes), len(others)))
    return np.asarray(mask_utils.iou(list(boxes), list(others), [int(crowd)] * len(others))).reshape(
        len(boxes), len(others)
    )


def operating_point(
    coco_eval: COCOeval,
    ground_truth: Mapping[int, Sequence[Mapping[str, Any]]],
    results: Mapping[int, Sequence[Mapping[str, Any]]],
    category_names: Sequence[tuple[int, str]],
    score_thresh: float,
) -> dict[str, Any]:
    """Everything the module computes for a box evaluation `coco_eval` (``evaluate()`` run) of `results`
    against `ground_truth` (both by image id), classes `category_names` as ``(category id, name)`` in label
    order:

    - ``metrics``: ``precision``, ``recall``, ``f1`` at `score_thresh` and ``best_f1`` with its
      ``best_f1_score_thresh``, each the mean over the classes with true boxes;
    - ``per_class``: per class name, ``true_boxes``, the same three at `score_thresh` and its own best F1;
    - ``confusion_matrix``: ``classes`` (the names, then ``background``), ``counts`` (rows true), the thresholds;
    - ``pr_curves``: ``recall`` (COCO's 101 points) and, in ``classes`` by name, the interpolated
      ``precision`` there and the ``score`` where each recall is first reached.
    """
    names = dict(category_names)
    curves = dict(zip(coco_eval.params.catIds, class_curves(coco_eval), strict=True))
    ordered = [(names[category], curves[category]) for category, _ in category_names]
    per_class = {
        name: {"true_boxes": curve.num_truth, **curve.at(score_thresh), **class_best_f1(curve)}
        for name, curve in ordered
    }
    scored = [row for row in per_class.values() if row["true_boxes"]]
    at_thresh = {
        key: float(np.mean([row[key] for row in scored])) if scored else UNDEFINED
        for key in ("precision", "recall", "f1")
    }
    best, best_thresh = best_f1([curve for _, curve in ordered])
    class_of_category = {category: i for i, (category, _) in enumerate(category_names)}
    counts = confusion_matrix(ground_truth, results, class_of_category, score_thresh)
    return {
        "metrics": {**at_thresh, "best_f1": best, "best_f1_score_thresh": best_thresh},
        "per_class": per_class,
        "confusion_matrix": {
            "classes": [*names.values(), "background"],
            "score_thresh": score_thresh,
            "iou_thresh": IOU_THRESHOLD,
            "counts": counts.tolist(),
        },
        "pr_curves": {
            "recall": RECALL_POINTS.round(2).tolist(),
            "classes": {
                name: dict(zip(("precision", "score"), (v.round(4).tolist() for v in curve.interpolated())))
                for name, curve in ordered
            },
        },
    }
