"""Tasks: one LightningModule per task (assembled from the config by :func:`cvkit.builders.build_task`)."""

from cvkit.tasks.base import BaseTask
from cvkit.tasks.classification import ClassificationTask
from cvkit.tasks.detection import DetectionTask
from cvkit.tasks.instance_segmentation import InstanceSegmentationTask
from cvkit.tasks.segmentation import SegmentationTask

__all__ = ["BaseTask", "ClassificationTask", "DetectionTask", "InstanceSegmentationTask", "SegmentationTask"]
