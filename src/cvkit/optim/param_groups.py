"""Parameter groups for the optimizer."""

from __future__ import annotations

from typing import Any

from timm.optim import param_groups_weight_decay
from torch import nn


def parameter_groups(model: nn.Module, weight_decay: float, no_bn_bias_decay: bool) -> list[dict[str, Any]]:
    """One group with `weight_decay`, or with `no_bn_bias_decay` (Goyal et al. 2017, as timm does) two:
    normalisation weights and biases (all 1-d parameters) without weight decay, the rest with it."""
    if not no_bn_bias_decay:
        return [{"params": [p for p in model.parameters() if p.requires_grad], "weight_decay": weight_decay}]
    return param_groups_weight_decay(model, weight_decay=weight_decay)
