"""Mask R-CNN (He et al. 2017) on any timm backbone of the families: torchvision's ``MaskRCNN`` over the same
pyramid adapter and FPN as the detectors (:mod:`cvkit.models.detectors`), so every family the detectors take
(ViT through the simple pyramid) segments objects too. A box for each object, and a mask inside it."""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

from torchvision.models.detection import MaskRCNN
from torchvision.ops.feature_pyramid_network import LastLevelMaxPool

from cvkit.errors import CvkitError
from cvkit.models.detectors import TWO_STAGE_BOX_ROI, anchor_generator, build_pyramid_backbone, level_strides, roi_align


def build_instance_segmenter(
    *,
    backbone: dict[str, Any],
    num_classes: int,
    min_size: int,
    max_size: int,
    image_mean: Sequence[float],
    image_std: Sequence[float],
    anchor_sizes: Sequence[float] | None,
    aspect_ratios: Sequence[float],
    score_thresh: float,
    nms_thresh: float,
    detections_per_img: int,
    mask_resolution: int,
    freeze_bn: bool | None,
) -> MaskRCNN:
    """Mask R-CNN for `num_classes` object classes (label 0 is the background) on the timm `backbone` (the
    backbone config group's keys). The knobs are the detectors' (:func:`cvkit.models.detectors.build_detector`,
    Faster R-CNN's levels and anchors), plus `mask_resolution`: the side of the mask predicted in each box
    (torchvision: 28, from a 14 x 14 RoIAlign upsampled twice), pasted into the image at its size."""
    if mask_resolution < 2 or mask_resolution % 2:
        raise CvkitError(
            f"task.model.mask_resolution={mask_resolution}: the mask head doubles its RoIAlign, so give an even "
            "number of pixels, e.g. 28 (torchvision's)"
        )
    anchors = anchor_generator(anchor_sizes, aspect_ratios, level_strides("fasterrcnn"), "Mask R-CNN")
    body = build_pyramid_backbone(**backbone, freeze_bn=freeze_bn, extra_blocks=LastLevelMaxPool())
    return MaskRCNN(
        body,
        num_classes=num_classes + 1,
        min_size=min_size,
        max_size=max_size,
        image_mean=list(image_mean),
        image_std=list(image_std),
        rpn_anchor_generator=anchors,
        box_roi_pool=roi_align(TWO_STAGE_BOX_ROI),
        mask_roi_pool=roi_align(mask_resolution // 2),
        box_score_thresh=score_thresh,
        box_nms_thresh=nms_thresh,
        box_detections_per_img=detections_per_img,
    )
