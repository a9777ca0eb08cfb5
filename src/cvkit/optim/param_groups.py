"""Parameter groups for the optimizer: the head and the backbone at their own LRs, by depth with layer-wise
LR decay, each with or without weight decay.

Example: a ResNet-18 classifier has 10 layers by timm's grouping (the stem, eight residual blocks, the head).
With ``backbone_lr_factor=0.5`` and ``layer_decay=0.8``, block ``layer4.1`` (layer 8) trains at 0.5 x 0.8 of the
LR, the stem (layer 0) at 0.5 x 0.8**9 = 0.067 of it, and the head at the LR.
"""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any

from torch import nn

from cvkit.errors import CvkitError

HEAD = "head"  # the group of every parameter outside the backbone


def lr_factor(layer: int, num_layers: int, backbone_lr_factor: float, layer_decay: float | None) -> float:
    """The LR factor of a backbone parameter in `layer` (0 = the stem) of a network of `num_layers` layers, the
    head the last one (BEiT's layer-wise decay, as timm's ``param_groups_layer_decay`` scales it)."""
    return backbone_lr_factor * (layer_decay ** (num_layers - 1 - layer) if layer_decay is not None else 1.0)


def parameter_groups(
    model: nn.Module,
    weight_decay: float,
    no_bn_bias_decay: bool,
    backbone: Mapping[str, int] | None = None,
    num_layers: int = 0,
    backbone_lr_factor: float = 1.0,
    layer_decay: float | None = None,
    own_schedule: bool = False,
) -> list[dict[str, Any]]:
    """`model`'s trainable parameters in groups, each with its ``name``, ``lr_factor`` (of the run's LR) and
    whether it is ``backbone``: ``head`` (everything outside `backbone`, at the LR), then the `backbone`
    parameters (``{name: layer}`` of a network of `num_layers` layers) at `backbone_lr_factor` of it, one group
    per layer with `layer_decay` (:func:`lr_factor`); the backbone is one with the head when it trains at the LR
    and not on a schedule of its `own_schedule` (unfreezing). With `no_bn_bias_decay` (Goyal et al. 2017, timm's
    rule: 1-d parameters and biases) each group is split by weight decay. The order is that of timm's
    ``param_groups_weight_decay`` (without weight decay first), the backbone before the head, so that the
    checkpoints of earlier cvkit versions resume.

    timm's ``param_groups_layer_decay`` groups a whole timm model only and puts its scale in an ``lr_scale`` key
    that only timm's schedulers apply (timm#2532); cvkit's schedule scales ``lr_factor`` for every task."""
    separate = backbone_lr_factor != 1.0 or layer_decay is not None or own_schedule
    backbone = (backbone or {}) if separate else {}
    if (backbone_lr_factor != 1.0 or layer_decay is not None) and not backbone:
        setting = "layer_decay" if layer_decay is not None else "backbone_lr_factor"
        raise CvkitError(
            f"optimizer.{setting}: this network has no timm backbone to give its own LR (the classic U-Net, "
            "torchvision's COCO-trained detectors); leave optimizer.backbone_lr_factor=1.0 and "
            "optimizer.layer_decay=null"
        )
    if layer_decay is not None and not 0.0 < layer_decay <= 1.0:
        raise CvkitError(f"optimizer.layer_decay={layer_decay} must be in (0, 1] (0.65-0.9 is usual), or null")
    groups: dict[tuple[str, bool], dict[str, Any]] = {}
    for param_name, param in model.named_parameters():
        if not param.requires_grad:
            continue
        layer = backbone.get(param_name)
        if layer is None:
            name, factor = HEAD, 1.0
        else:
            name = f"backbone.layer{layer}" if layer_decay is not None else "backbone"
            factor = lr_factor(layer, num_layers, backbone_lr_factor, layer_decay)
        decays = not (no_bn_bias_decay and (param.ndim <= 1 or param_name.endswith(".bias")))
        group = groups.setdefault(
            (name, decays),
            {
                "params": [],
                "name": name,
                "lr_factor": factor,
                "backbone": layer is not None,
                "weight_decay": weight_decay if decays else 0.0,
            },
        )
        group["params"].append(param)
    # Without weight decay first, the backbone (from the stem up) before the head.
    return sorted(groups.values(), key=lambda g: (g["weight_decay"] > 0, not g["backbone"], g["lr_factor"]))
