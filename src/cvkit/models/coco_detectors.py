"""torchvision's COCO-trained detectors, for fine-tuning on other classes from a local weights file.

They exist for torchvision's own ResNet-50 FPN, so cvkit offers them for ``backbone=resnet
backbone.name=resnet50`` with Faster R-CNN, RetinaNet and FCOS, and Mask R-CNN for instance segmentation.
The weights are torchvision's files (e.g.
https://download.pytorch.org/models/fasterrcnn_resnet50_fpn_coco-258fb6c6.pth), given as a path: clusters
without internet keep a copy. Everything but the per-class outputs is loaded; those (the class scores,
Faster R-CNN's per-class box offsets, Mask R-CNN's per-class mask logits) are new, sized for the data's
classes. As torchvision does for fine-tuning, BatchNorm is frozen and the stem and first stage of the ResNet
are not trained.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

import torch
from timm.layers import freeze_batch_norm_2d
from torch import nn
from torchvision.models import detection

from cvkit.errors import CvkitError
from cvkit.models.detectors import ForegroundFCOS, ForegroundRetinaNet

# Sigmoid-classifier detectors rebuilt around torchvision's parts so that label 0 is never output.
FOREGROUND_ONLY = {"retinanet": ForegroundRetinaNet, "fcos": ForegroundFCOS}
# (detector, backbone name) -> (torchvision builder, the state-dict prefixes of its per-class outputs)
COCO_MODELS = {
    ("fasterrcnn", "resnet50"): (detection.fasterrcnn_resnet50_fpn, ("roi_heads.box_predictor.",)),
    ("retinanet", "resnet50"): (detection.retinanet_resnet50_fpn, ("head.classification_head.cls_logits.",)),
    ("fcos", "resnet50"): (detection.fcos_resnet50_fpn, ("head.classification_head.cls_logits.",)),
    ("maskrcnn", "resnet50"): (
        detection.maskrcnn_resnet50_fpn,
        ("roi_heads.box_predictor.", "roi_heads.mask_predictor.mask_fcn_logits."),
    ),
}
COCO_MASK_RESOLUTION = 28  # the masks torchvision's Mask R-CNN was trained to predict
FROZEN_STAGES = ("backbone.body.conv1.", "backbone.body.layer1.")


def detector_knobs(model: dict[str, Any]) -> dict[str, Any]:
    """The ``task.model`` settings as keyword arguments of torchvision's detector classes. The anchors
    stay torchvision's, those the weights were trained with."""
    if model.get("anchor_sizes") is not None:
        raise CvkitError(
            "task.model.anchor_sizes must be null with task.model.coco_weights: the anchors are torchvision's"
        )
    if model.get("mask_resolution", COCO_MASK_RESOLUTION) != COCO_MASK_RESOLUTION:
        raise CvkitError(
            f"task.model.mask_resolution must be {COCO_MASK_RESOLUTION} with task.model.coco_weights: the mask "
            f"head was trained at it (got {model['mask_resolution']})"
        )
    prefix = "box_" if model["detector"] in ("fasterrcnn", "maskrcnn") else ""
    return {
        **{key: model[key] for key in ("min_size", "max_size", "image_mean", "image_std") if key in model},
        **{prefix + key: model[key] for key in ("score_thresh", "nms_thresh", "detections_per_img") if key in model},
    }


def build_coco_detector(
    model: dict[str, Any], backbone_name: str, num_classes: int, *, load_weights: bool = True
) -> nn.Module:
    """torchvision's COCO-trained ``model["detector"]`` on `backbone_name` for `num_classes` object classes
    (plus the background), with the weights of the file ``model["coco_weights"]`` but its per-class outputs
    (none without `load_weights`: the architecture only); the other ``task.model`` settings as in
    :func:`detector_knobs`."""
    detector, weights, knobs = model["detector"], model["coco_weights"], detector_knobs(model)
    if (detector, backbone_name) not in COCO_MODELS:
        options = ", ".join(f"task.model.detector={d} with backbone.name={b}" for d, b in COCO_MODELS)
        raise CvkitError(
            f"task.model.coco_weights: torchvision has no COCO-trained {detector} on {backbone_name}; "
            f"it has: {options} (backbone=resnet)"
        )
    builder, class_scores = COCO_MODELS[(detector, backbone_name)]
    model = builder(weights=None, weights_backbone=None, num_classes=num_classes + 1, **knobs)
    model = freeze_batch_norm_2d(model)
    if load_weights:
        load_coco_weights(model, weights, class_scores, builder.__name__)
    for name, parameter in model.named_parameters():
        if name.startswith(FROZEN_STAGES):
            parameter.requires_grad_(False)
    if detector in FOREGROUND_ONLY:
        parts = {"head": model.head, "anchor_generator": model.anchor_generator}
        return FOREGROUND_ONLY[detector](model.backbone, num_classes + 1, **parts, **knobs)
    return model


def load_coco_weights(model: nn.Module, weights: str, class_scores: tuple[str, ...], builder_name: str) -> None:
    """Load torchvision's weights file `weights` into `model`, all but the per-class outputs (keys that
    start with `class_scores`)."""
    path = Path(weights).expanduser()
    if not path.is_file():
        raise CvkitError(f"task.model.coco_weights={weights!r}: no such file (download torchvision's .pth once)")
    state = torch.load(path, map_location="cpu", weights_only=True)
    kept = {key: value for key, value in state.items() if not key.startswith(class_scores)}
    not_this_model = f"task.model.coco_weights={weights!r} is not torchvision's {builder_name}"
    try:
        missing, unexpected = model.load_state_dict(kept, strict=False)
    except RuntimeError as err:  # shapes that differ
        raise CvkitError(f"{not_this_model}: {str(err).splitlines()[1].strip()}") from err
    wrong = [key for key in missing if not key.startswith(class_scores)] + unexpected
    if wrong:
        raise CvkitError(f"{not_this_model}: keys {wrong[:5]}")
