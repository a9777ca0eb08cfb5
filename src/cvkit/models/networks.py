"""The network of each task, from the ``backbone`` config and the task's ``model`` options. Every builder
has one signature, ``(backbone, model, num_classes, image_size, load_weights) -> nn.Module``, and
:data:`NETWORKS` names each task's, with the check of the input sizes it will see (made from the config before
anything is built); :func:`build_network` is what training, evaluation and ``cvkit.load`` call.

Without `load_weights` no pretrained or initial weights are read (no file, no network): the same
architecture, for loading a trained state dict into (:func:`cvkit.inference.loading.load`).
"""

from __future__ import annotations

import inspect
from collections.abc import Callable, Mapping
from dataclasses import dataclass
from typing import Any

from torch import nn

from cvkit.config import FREEZE_KEYS
from cvkit.errors import CvkitError
from cvkit.models.backbones import build_classifier, check_input_sizes, input_stride
from cvkit.models.coco_detectors import build_coco_detector
from cvkit.models.detectors import build_detector
from cvkit.models.detr import DETR_DETECTORS, build_detr
from cvkit.models.instance_segmenters import build_instance_segmenter
from cvkit.models.segmenters import build_segmenter

NetworkBuilder = Callable[[Mapping[str, Any], Mapping[str, Any], int, Any, bool], nn.Module]
DETECTOR_PADDING = 32  # torchvision's detectors pad each batch to a multiple of this
DETR_OPTIONS = ("num_queries", "decoder_layers")  # task.model options of the DETR-family detectors only


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
    """The torchvision or DETR-family detector of ``model`` on `backbone`, or torchvision's COCO-trained one
    (``model.coco_weights``); detectors resize inside, so `image_size` is unused."""
    if model.get("detector") in DETR_DETECTORS:
        return detr_network(backbone, model, num_classes, load_weights)
    model = {key: value for key, value in model.items() if key not in DETR_OPTIONS}
    return pyramid_network(build_detector, backbone, model, num_classes, load_weights)


def detr_network(
    backbone: Mapping[str, Any], model: Mapping[str, Any], num_classes: int, load_weights: bool
) -> nn.Module:
    """RT-DETR v2 or D-FINE (``model.detector``) on `backbone`: the detection options it has (a ``min_size``
    square, no anchors, no NMS) and its own; a set option of the anchor detectors is refused, not ignored."""
    model, backbone = trained_architecture(model, backbone, load_weights)
    detector = model["detector"]
    if model.get("coco_weights"):
        raise CvkitError(f"task.model.coco_weights: torchvision has no COCO-trained {detector}; leave it null")
    if given := [key for key in ("anchor_sizes",) if model.get(key) is not None]:
        raise CvkitError(
            f"task.model.{given[0]} is for anchor-based detectors; {detector} has no anchors: leave it null"
        )
    options = {key: model[key] for key in DETR_OPTIONS if key in model}
    shared = ("image_mean", "image_std", "score_thresh", "detections_per_img", "freeze_bn")
    return with_model_options(
        build_detr,
        {**options, **{key: model[key] for key in shared if key in model}},
        detector=detector,
        backbone=dict(backbone),
        num_classes=num_classes,
        size=model["min_size"],
    )


def instance_segmentation_network(
    backbone: Mapping[str, Any], model: Mapping[str, Any], num_classes: int, image_size: Any, load_weights: bool
) -> nn.Module:
    """Mask R-CNN on `backbone`, or torchvision's COCO-trained one (``model.coco_weights``); it resizes inside."""
    return pyramid_network(
        build_instance_segmenter, backbone, {**model, "detector": "maskrcnn"}, num_classes, load_weights
    )


def pyramid_network(
    build: Callable[..., nn.Module],
    backbone: Mapping[str, Any],
    model: Mapping[str, Any],
    num_classes: int,
    load_weights: bool,
) -> nn.Module:
    """``build`` (a detector of :mod:`cvkit.models.detectors` or Mask R-CNN) on `backbone` with the options of
    ``model``, or torchvision's COCO-trained ``model["detector"]`` with ``model.coco_weights``. Without
    `load_weights`, the architecture of the trained run: BatchNorm frozen as it was when weights were loaded."""
    model, backbone = trained_architecture(model, backbone, load_weights)
    if model.get("coco_weights"):
        return build_coco_detector(model, backbone["name"], num_classes, load_weights=load_weights)
    model.pop("coco_weights", None)
    if build is build_instance_segmenter:
        model.pop("detector")
    return with_model_options(build, model, backbone=dict(backbone), num_classes=num_classes)


def trained_architecture(
    model: Mapping[str, Any], backbone: Mapping[str, Any], load_weights: bool
) -> tuple[dict[str, Any], dict[str, Any]]:
    """(model options, backbone) as given, or without `load_weights` the trained run's architecture without its
    initial weights: BatchNorm frozen as it was when weights were loaded."""
    model, backbone = dict(model), dict(backbone)
    if not load_weights:
        if model.get("freeze_bn") is None:  # frozen when the trained run loaded weights
            model["freeze_bn"] = bool(backbone.get("pretrained") or backbone.get("weights"))
        backbone = architecture_only(backbone)
    return model, backbone


def segmentation_network(
    backbone: Mapping[str, Any], model: Mapping[str, Any], num_classes: int, image_size: Any, load_weights: bool
) -> nn.Module:
    """The U-Net, or the decoder of ``model`` over the timm encoder of `backbone`; any input size."""
    backbone = dict(backbone) if load_weights else architecture_only(backbone)
    return with_model_options(build_segmenter, model, backbone=backbone, num_classes=num_classes)


def classifier_input(backbone: Mapping[str, Any], model: Mapping[str, Any], image_size: Any) -> None:
    """A classifier sees ``data.image_size`` squares (none: not classification data, refused with the data)."""
    if image_size is not None:
        check_input_sizes(backbone["family"], backbone["name"], [image_size], "data.image_size")


def detector_input(backbone: Mapping[str, Any], model: Mapping[str, Any], image_size: Any) -> None:
    """A detector resizes inside: SSDlite to a ``min_size`` square, RT-DETR and D-FINE to a ``min_size`` square
    that is a multiple of 32 (their coarsest level), the others to any size padded to a multiple of 32
    (torchvision's ``size_divisible``)."""
    if model.get("coco_weights"):
        return  # torchvision's own ResNet-50
    if model.get("detector") in DETR_DETECTORS and model["min_size"] % DETECTOR_PADDING:
        raise CvkitError(
            f"task.model.min_size={model['min_size']}: {model['detector']} sees min_size x min_size squares, which "
            f"must be a multiple of {DETECTOR_PADDING} (its coarsest level); try {model['min_size'] // 32 * 32 or 32}"
        )
    if model.get("detector") in ("ssdlite", *DETR_DETECTORS):
        check_input_sizes(backbone["family"], backbone["name"], [model["min_size"]], "task.model.min_size")
    elif DETECTOR_PADDING % (stride := input_stride(backbone["family"], backbone["name"])):
        raise CvkitError(
            f"backbone.name={backbone['name']}: its patch size {stride} does not divide the multiples of "
            f"{DETECTOR_PADDING} px that task.model.detector={model.get('detector')} pads images to; choose a "
            f"ViT of patch 8, 16 or 32, or task.model.detector=ssdlite with a task.model.min_size that is a "
            f"multiple of {stride}"
        )


def segmenter_input(backbone: Mapping[str, Any], model: Mapping[str, Any], image_size: Any) -> None:
    """A segmenter sees ``data.image_size`` ([height, width]); the classic U-Net pads to what it needs."""
    if backbone.get("family") != "unet" and image_size is not None:
        sizes = [image_size] if isinstance(image_size, int) else list(image_size)
        check_input_sizes(backbone["family"], backbone["name"], sizes, "data.image_size")


@dataclass(frozen=True)
class TaskNetwork:
    """A task's network: how it is built, and which input sizes it sees (checked before anything is built)."""

    build: NetworkBuilder
    check_input: Callable[[Mapping[str, Any], Mapping[str, Any], Any], None]


NETWORKS: dict[str, TaskNetwork] = {
    "classification": TaskNetwork(classification_network, classifier_input),
    "detection": TaskNetwork(detection_network, detector_input),
    "instance_segmentation": TaskNetwork(instance_segmentation_network, detector_input),
    "segmentation": TaskNetwork(segmentation_network, segmenter_input),
}


def task_network(task: str, where: str = "task") -> TaskNetwork:
    """The network of `task` (a key of :data:`NETWORKS`); otherwise a CvkitError starting with `where`."""
    if task not in NETWORKS:
        raise CvkitError(f"{where} is a {task!r} model; cvkit knows the tasks {list(NETWORKS)}")
    return NETWORKS[task]


def build_network(
    task: str,
    backbone: Mapping[str, Any],
    model: Mapping[str, Any],
    num_classes: int,
    image_size: Any,
    load_weights: bool,
    where: str = "task",
) -> nn.Module:
    """The network of `task` (see :func:`task_network`); the backbone's freezing settings are the training's."""
    backbone = {key: value for key, value in backbone.items() if key not in FREEZE_KEYS}
    return task_network(task, where).build(backbone, model, num_classes, image_size, load_weights)


def trained_network(
    task: str,
    config: Mapping[str, Any],
    num_classes: int,
    image_size: Any,
    weights: Mapping[str, Any],
    where: str = "task",
) -> nn.Module:
    """The network of a recorded run (its composed `config`) with its trained `weights`: built without any
    initial weights (no pretrained file or hub download: the trained ones replace every tensor)."""
    model_options = config["task"].get("model") or {}
    network = build_network(task, config["backbone"], model_options, num_classes, image_size, False, where)
    network.load_state_dict(weights)
    return network
