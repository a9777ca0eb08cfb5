"""Metric reductions that are pure functions of accumulated state, and the pycocotools-backed detection evaluator."""

from cvkit.metrics.classification import per_class_report
from cvkit.metrics.detection import CocoEvaluator

__all__ = ["CocoEvaluator", "per_class_report"]
