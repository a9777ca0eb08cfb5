"""Metric reductions that are pure functions of accumulated state, the pycocotools-backed detection evaluator
and the confusion-matrix segmentation metric."""

from cvkit.metrics.classification import per_class_report
from cvkit.metrics.detection import CocoEvaluator
from cvkit.metrics.segmentation import (
    SegmentationConfusion,
    dice_per_class,
    iou_per_class,
    mean_dice,
    mean_iou,
    pixel_accuracy,
    segmentation_report,
)

__all__ = [
    "CocoEvaluator",
    "SegmentationConfusion",
    "dice_per_class",
    "iou_per_class",
    "mean_dice",
    "mean_iou",
    "per_class_report",
    "pixel_accuracy",
    "segmentation_report",
]
