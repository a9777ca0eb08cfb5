"""Optimizer and per-step LR scheduler from config."""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any

import torch
from hydra.utils import get_class
from torch import nn

from cvkit.errors import CvkitError
from cvkit.optim.param_groups import parameter_groups
from cvkit.optim.schedules import Schedule

# Keys of the optimizer config that cvkit reads; the rest are the optimizer class's own arguments.
CVKIT_KEYS = (
    "_target_",
    "lr",
    "base_batch_size",
    "lr_scaling",
    "no_bn_bias_decay",
    "weight_decay",
    "backbone_lr_factor",
    "layer_decay",
)


def optimizer_groups(
    model: nn.Module,
    config: Mapping[str, Any],
    backbone: Mapping[str, int] | None = None,
    num_layers: int = 0,
    own_schedule: bool = False,
) -> list[dict[str, Any]]:
    """`model`'s parameter groups (:func:`parameter_groups`) under the optimizer `config` (its weight decay,
    ``no_bn_bias_decay``, ``backbone_lr_factor`` and ``layer_decay``); the `backbone` parameters are
    ``{name: layer}`` of a network of `num_layers` layers, on a schedule of their `own_schedule` or not."""
    return parameter_groups(
        model,
        float(config.get("weight_decay", 0.0)),
        bool(config.get("no_bn_bias_decay")),
        backbone,
        num_layers,
        float(config.get("backbone_lr_factor", 1.0)),
        None if config.get("layer_decay") is None else float(config["layer_decay"]),
        own_schedule,
    )


def build_optimizer(groups: list[dict[str, Any]], config: Mapping[str, Any], lr: float) -> torch.optim.Optimizer:
    """Instantiate ``config._target_`` over the parameter `groups` (:func:`optimizer_groups`) with the effective
    `lr` and the config's other arguments; each group's LR is `lr` x its ``lr_factor`` (the schedule then scales
    every group alike)."""
    optimizer_class = get_class(config["_target_"])
    kwargs = {key: value for key, value in config.items() if key not in CVKIT_KEYS}
    for group in groups:  # (the factor stays in the group, where a resumed schedule finds it)
        group["lr"] = lr * group["lr_factor"]
    try:
        return optimizer_class(groups, lr=lr, **kwargs)
    except TypeError as err:
        raise CvkitError(f"optimizer: {config['_target_']} rejected its arguments {sorted(kwargs)}: {err}") from err


def build_schedule(config: Mapping[str, Any], total_epochs: float, peak_lr: float) -> Schedule:
    """The Schedule described by the scheduler config over `total_epochs`."""
    config = dict(config)
    name = config.pop("name", None)
    min_lr = float(config.pop("min_lr", 0.0))
    try:
        return Schedule(name=name, total_epochs=total_epochs, min_lr_ratio=min_lr / peak_lr, **config)
    except TypeError as err:
        raise CvkitError(f"scheduler: unknown option in {sorted(config)}: {err}") from err
