"""The network of each task, from the ``backbone`` config and the task's ``model`` options. Every builder
has one signature, ``(backbone, model, num_classes, image_size, load_weights) -> nn.Module``; the task table
(:mod:`cvkit.task_kinds`) names each task's builder.

Without `load_weights` no pretrained or initial weights are read (no file, no network): the same
architecture, for loading a trained state dict into (:func:`cvkit.inference.loading.load`).
"""

from __future__ import annotations

import inspect
from collections.abc import Callable, Mapping
from typing import Any

from torch import nn

from cvkit.errors import CvkitError
from cvkit.models.backbones import build_classifier
from cvkit.models.coco_detectors import build_coco_detector
from cvkit.models.detectors import build_detector
from cvkit.models.segmenters import build_segmenter

NetworkBuilder = Callable[[Mapping[str, Any], Mapping[str, Any], int, Any, bool], nn.Module]


def with_model_options(build: Callable[..., nn.Module], model: Mapping[str, Any], **arguments: Any) -> nn.Module:
    """``build(**model, **arguments)``, a config that lacks or adds a ``task.model`` key named in a CvkitError."""
    parameters = inspect.signature(build).parameters.values()
    keywords = {p.name: p for p in parameters if p.kind is inspect.Parameter.KEYWORD_ONLY and p.name not in arguments}
    required = {name for name, p in keywords.items() if p.default is inspect.Parameter.empty}
    if missing := sorted(required - set(model)):
        raise CvkitError(f"task.model has no {missing}: give them (configs/task/*.yaml has every key)")
    takes_any = any(p.kind is inspect.Parameter.VAR_KEYWORD for p in parameters)
    if not takes_any and (unknown := sorted(set(model) - set(keywords))):
        raise CvkitError(
            f"task.model.{unknown[0]} is not an option of this network; its options are {sorted(keywords)}"
        )
    return build(**model, **arguments)


def architecture_only(backbone: Mapping[str, Any]) -> dict[str, Any]:
    """The backbone config without its pretrained or initial weights."""
    return {**backbone, "pretrained": False, "weights": None}


def classification_network(
    backbone: Mapping[str, Any], model: Mapping[str, Any], num_classes: int, image_size: Any, load_weights: bool
) -> nn.Module:
    """The timm classifier of `backbone` with a head for `num_classes` (classification has no model options)."""
    backbone = dict(backbone) if load_weights else architecture_only(backbone)
    return build_classifier(**backbone, num_classes=num_classes, image_size=image_size)


def detection_network(
    backbone: Mapping[str, Any], model: Mapping[str, Any], num_classes: int, image_size: Any, load_weights: bool
) -> nn.Module:
    """The torchvision detector of ``model`` on `backbone`, or torchvision's COCO-trained one
    (``model.coco_weights``); detectors resize inside, so `image_size` is unused."""
    model = dict(model)
    if not load_weights:
        if model.get("freeze_bn") is None:  # frozen when the trained run loaded weights
            model["freeze_bn"] = bool(backbone.get("pretrained") or backbone.get("weights"))
        backbone = architecture_only(backbone)
    if model.get("coco_weights"):
        return build_coco_detector(model, backbone["name"], num_classes, load_weights=load_weights)
    model.pop("coco_weights", None)
    return with_model_options(build_detector, model, backbone=dict(backbone), num_classes=num_classes)


def segmentation_network(
    backbone: Mapping[str, Any], model: Mapping[str, Any], num_classes: int, image_size: Any, load_weights: bool
) -> nn.Module:
    """The U-Net, or the decoder of ``model`` over the timm encoder of `backbone`; any input size."""
    backbone = dict(backbone) if load_weights else architecture_only(backbone)
    return with_model_options(build_segmenter, model, backbone=backbone, num_classes=num_classes)
