"""Metric reductions that are pure functions of accumulated state."""

from cvkit.metrics.classification import per_class_report

__all__ = ["per_class_report"]
