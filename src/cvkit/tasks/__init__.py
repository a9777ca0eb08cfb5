"""Tasks: one LightningModule per task, each built from the config by its ``from_config``."""

from cvkit.tasks.base import BaseTask
from cvkit.tasks.classification import ClassificationTask
from cvkit.tasks.detection import DetectionTask
from cvkit.tasks.segmentation import SegmentationTask

__all__ = ["BaseTask", "ClassificationTask", "DetectionTask", "SegmentationTask"]
