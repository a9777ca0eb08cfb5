"""Per-class precision, recall and F1 from a confusion matrix (rows: true class, columns: predicted)."""

from __future__ import annotations

from collections.abc import Sequence

import numpy as np


def per_class_report(confusion: Sequence[Sequence[int]], class_names: Sequence[str]) -> dict[str, dict[str, float]]:
    """``{class: {precision, recall, f1, support}}``; a ratio with a zero denominator is 0, as in
    scikit-learn's ``zero_division=0``."""
    matrix = np.asarray(confusion, dtype=np.float64)
    true_positives = np.diag(matrix)
    support, predicted = matrix.sum(axis=1), matrix.sum(axis=0)
    precision = np.divide(true_positives, predicted, out=np.zeros_like(true_positives), where=predicted > 0)
    recall = np.divide(true_positives, support, out=np.zeros_like(true_positives), where=support > 0)
    denominator = precision + recall
    f1 = np.divide(2 * precision * recall, denominator, out=np.zeros_like(denominator), where=denominator > 0)
    return {
        name: {"precision": float(p), "recall": float(r), "f1": float(f), "support": int(s)}
        for name, p, r, f, s in zip(class_names, precision, recall, f1, support)
    }
