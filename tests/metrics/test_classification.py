import numpy as np
import pytest
from sklearn.metrics import confusion_matrix, precision_recall_fscore_support

from cvkit.metrics import per_class_report


def test_per_class_report_equals_scikit_learn() -> None:
    rng = np.random.default_rng(0)
    truth = rng.choice(4, size=500, p=[0.7, 0.2, 0.1, 0.0])  # class 3 never occurs
    predicted = np.where(rng.random(500) < 0.8, truth, rng.integers(0, 4, size=500))
    report = per_class_report(confusion_matrix(truth, predicted, labels=range(4)), ["a", "b", "c", "d"])
    precision, recall, f1, support = precision_recall_fscore_support(truth, predicted, labels=range(4), zero_division=0)
    for i, name in enumerate("abcd"):
        assert report[name]["precision"] == pytest.approx(precision[i])
        assert report[name]["recall"] == pytest.approx(recall[i])
        assert report[name]["f1"] == pytest.approx(f1[i])
        assert report[name]["support"] == support[i]
