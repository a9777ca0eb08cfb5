"""Instance segmentation: Mask R-CNN's own losses, COCO mask and box metrics of the whole split (pycocotools)."""

from __future__ import annotations

from cvkit.data.instances.module import InstanceSegmentationDataModule
from cvkit.tasks.detection import DetectionTask


class InstanceSegmentationTask(DetectionTask):
    """Detection (:class:`~cvkit.tasks.detection.DetectionTask`: losses, val loss, gathering across ranks,
    unreadable images counted as images without detections) with a mask per object: ``train/loss_mask``
    among the losses, COCO mask metrics ``{val,test}/segm_map``, ``segm_map_50``, ``segm_map_75``, ...
    beside the box metrics ``{val,test}/map``, ..., ``val/segm_map_best``, and val images drawn with their
    true (green) and predicted (red) masks and boxes."""

    kind = "instance_segmentation"
    data_module = InstanceSegmentationDataModule
    iou_types = ("bbox", "segm")
    best_metric = "segm_map"
