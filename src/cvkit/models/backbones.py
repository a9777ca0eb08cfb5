"""timm classifiers by family, with each family's input-size rules checked before training starts."""

from __future__ import annotations

import fnmatch
import math
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import timm
import torch
from torch import nn

from cvkit.errors import CvkitError
from cvkit.models.weights import load_weights_file, pretrained_file


@dataclass(frozen=True)
class Family:
    """A backbone family: which timm names belong to it and the smallest input it accepts."""

    patterns: tuple[str, ...]
    min_size: int = 1
    patch_grid: bool = False  # ViT-style: the input must be a whole number of patches


FAMILIES = {
    "resnet": Family(("resnet*", "resnext*", "wide_resnet*", "seresnet*", "seresnext*", "resnetv2*")),
    "inception": Family(("inception*",), min_size=75),
    "mobilenet": Family(("mobilenet*",)),
    "efficientnet": Family(("efficientnet*", "tf_efficientnet*")),
    "vit": Family(("vit_*", "deit*", "deit3*"), patch_grid=True),
}


def check_name(family: str, name: str) -> Family:
    """The Family of `family`, after checking that timm knows `name` and that it belongs there."""
    if family not in FAMILIES:
        raise CvkitError(f"backbone.family={family!r} is not one of {sorted(FAMILIES)}")
    spec = FAMILIES[family]
    if not timm.is_model(name):
        suggestions = [n for p in spec.patterns for n in timm.list_models(p)][:12]
        raise CvkitError(f"backbone.name={name!r} is not a timm model; {family} models include {suggestions}")
    if not any(fnmatch.fnmatch(name, pattern) for pattern in spec.patterns):
        raise CvkitError(
            f"backbone.name={name!r} is not a {family} model (expected names matching {list(spec.patterns)}); "
            f"choose backbone=<family> to match the model"
        )
    return spec


def input_stride(family: str, name: str) -> int:
    """The number an input's height and width must be a multiple of for timm model `name` of `family`: its
    patch (its patch embedding's whole stride) for a ViT-style family, else 1. Learned from the model built
    on the meta device: no memory, no weights, a tenth of a second."""
    spec = check_name(family, name)
    if not spec.patch_grid:
        return 1
    with torch.device("meta"):
        model = timm.create_model(name, pretrained=False)
    return int(model.patch_embed.feat_ratio(as_scalar=True))


def check_input_sizes(family: str, name: str, sizes: Sequence[int], key: str) -> None:
    """Refuse input sizes (the settings `key`) that `name` of `family` cannot take, before anything is built:
    below the family's smallest, or (ViT) not a whole number of patches; the error gives sizes that work."""
    spec = check_name(family, name)
    for size in sizes:
        if size < spec.min_size:
            raise CvkitError(f"{key}={size} is too small for {name}: it needs at least {spec.min_size} px")
    stride = input_stride(family, name)
    for size in sizes:
        if size % stride:
            low, high = size // stride * stride, math.ceil(size / stride) * stride
            raise CvkitError(
                f"{key}={size} is not a multiple of {name}'s patch size {stride}; use {low or stride} or {high} "
                "(every side of its input must be a whole number of patches)"
            )


def build_classifier(
    *,
    family: str,
    name: str,
    num_classes: int,
    image_size: int,
    pretrained: bool = False,
    weights: str | None = None,
    drop_rate: float = 0.0,
    stem_pool: bool = True,
    **timm_kwargs: Any,
) -> nn.Module:
    """A timm classifier for `num_classes` at `image_size`, checked with one forward pass. ``stem_pool=False``
    removes the stem's max-pool, for small images (see :func:`remove_stem_pool`)."""
    check_input_sizes(family, name, [image_size], "data.image_size")
    spec = FAMILIES[family]
    kwargs = dict(num_classes=num_classes, drop_rate=drop_rate, **timm_kwargs)
    if spec.patch_grid:
        kwargs["img_size"] = image_size
    model, _ = create_timm_model(name, pretrained, weights, f"for {image_size}px inputs", **kwargs)
    if not stem_pool:
        remove_stem_pool(model, name)
    _probe(model, name, image_size)
    return model


def create_timm_model(
    name: str, pretrained: bool, weights: str | None, purpose: str, **kwargs: Any
) -> tuple[nn.Module, bool]:
    """timm's model `name` with ImageNet weights (`pretrained`, through timm), a local `weights` file (any file
    :func:`~cvkit.models.weights.load_weights_file` reads, with its report), or neither; returns it and whether
    weights were loaded. A failure names the backbone and the `purpose`."""
    weights_file = pretrained_file(name, pretrained, weights)
    if pretrained and weights_file:  # the hub's file, from the local cache
        kwargs["pretrained_cfg_overlay"] = {"file": weights_file}
    try:
        model = timm.create_model(name, pretrained=pretrained and not weights, **kwargs)
    except (RuntimeError, AssertionError, ValueError) as err:
        raise CvkitError(f"backbone {name}: could not be built {purpose}: {err}") from err
    if weights:
        load_weights_file(model, Path(weights_file), name)
    return model, pretrained or weights_file is not None


def remove_stem_pool(model: nn.Module, name: str) -> None:
    """Replace the stem's stride-2 max-pool by the identity, so that a 28-32 px image reaches the first
    stage at 1/2 of its size instead of 1/4 (7x7 at 28 px), at about 2.7x the compute. The usual answer
    for small images short of the CIFAR-style stride-1 stem, which costs 8x."""
    if not isinstance(getattr(model, "maxpool", None), nn.MaxPool2d):
        raise CvkitError(
            f"backbone.stem_pool=false: {name} has no stem max-pool to remove; it applies to the resnet family"
        )
    model.maxpool = nn.Identity()


def create_feature_extractor(
    *,
    family: str,
    name: str,
    purpose: str,
    pretrained: bool = False,
    weights: str | None = None,
    stem_pool: bool = True,
    **timm_kwargs: Any,
) -> tuple[nn.Module, bool]:
    """timm's `name` of `family` as a ``features_only`` network (its maps, finest first, described by its
    ``feature_info``); a ViT-style family gives its last map, for any input size that is a whole number of
    patches. Returns it and whether weights were loaded (see :func:`create_timm_model`). The stem's max-pool
    stays: the detectors and decoders rely on the strides timm reports."""
    if not stem_pool:
        raise CvkitError(
            f"backbone.stem_pool=false is for classifiers; {name} {purpose} keeps its stem max-pool, whose "
            "stride the detection and segmentation heads rely on"
        )
    spec = check_name(family, name)
    kwargs: dict[str, Any] = {"features_only": True, **timm_kwargs}
    if spec.patch_grid:
        kwargs.update(dynamic_img_size=True, out_indices=(-1,))
    return create_timm_model(name, pretrained, weights, purpose, **kwargs)


def _probe(model: nn.Module, name: str, image_size: int) -> None:
    """One forward pass at the configured size, so a size problem fails here and not deep in training."""
    was_training = model.training
    model.eval()
    try:
        with torch.no_grad():
            model(torch.zeros(1, 3, image_size, image_size))
    except RuntimeError as err:
        raise CvkitError(f"backbone {name} cannot take {image_size}x{image_size} inputs: {err}") from err
    finally:
        model.train(was_training)


def count_parameters(model: nn.Module) -> int:
    return sum(p.numel() for p in model.parameters())
