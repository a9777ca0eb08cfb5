"""Tasks: one LightningModule per task, sharing optimizer and checkpoint logic."""

from cvkit.tasks.base import CHECKPOINT_KEY, BaseTask
from cvkit.tasks.classification import ClassificationTask
from cvkit.tasks.detection import DetectionTask
from cvkit.tasks.segmentation import SegmentationTask

__all__ = ["CHECKPOINT_KEY", "BaseTask", "ClassificationTask", "DetectionTask", "SegmentationTask"]
