"""Metric reductions that are pure functions of accumulated state, the pycocotools-backed detection evaluator
and the confusion-matrix segmentation metric."""

from cvkit.metrics.classification import per_class_report
from cvkit.metrics.detection import CocoEvaluator
from cvkit.metrics.segmentation import (
    dice_per_class,
    iou_per_class,
    mean_dice,
    mean_iou,
    pixel_accuracy,
    pixel_confusion,
    segmentation_report,
    segmentation_scores,
)

__all__ = [
    "CocoEvaluator",
    "dice_per_class",
    "iou_per_class",
    "mean_dice",
    "mean_iou",
    "per_class_report",
    "pixel_accuracy",
    "pixel_confusion",
    "segmentation_report",
    "segmentation_scores",
]
