"""Parameter groups for the optimizer."""

from __future__ import annotations

from collections.abc import Collection
from typing import Any

from timm.optim import param_groups_weight_decay
from torch import nn


def parameter_groups(
    model: nn.Module,
    weight_decay: float,
    no_bn_bias_decay: bool,
    backbone: Collection[nn.Parameter] = (),
    backbone_lr_factor: float = 1.0,
) -> list[dict[str, Any]]:
    """One group with `weight_decay`, or with `no_bn_bias_decay` (Goyal et al. 2017, as timm does) two:
    normalisation weights and biases (all 1-d parameters) without weight decay, the rest with it. With a
    `backbone_lr_factor` other than 1, each group is split in two, the `backbone` parameters' with
    ``lr_factor`` = `backbone_lr_factor` (the DETR authors' lower LR for a pretrained backbone), the rest's 1."""
    if not no_bn_bias_decay:
        groups = [{"params": [p for p in model.parameters() if p.requires_grad], "weight_decay": weight_decay}]
    else:
        groups = param_groups_weight_decay(model, weight_decay=weight_decay)
    if backbone_lr_factor == 1.0:
        return groups
    taken = {id(p) for p in backbone}
    split = []
    for group in groups:
        for factor, params in (
            (backbone_lr_factor, [p for p in group["params"] if id(p) in taken]),
            (1.0, [p for p in group["params"] if id(p) not in taken]),
        ):
            if params:
                split.append({**group, "params": params, "lr_factor": factor})
    return split
