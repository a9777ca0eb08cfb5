"""Optimizer and per-step LR scheduler from config."""

from __future__ import annotations

from collections.abc import Collection, Mapping
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
)


def build_optimizer(
    model: nn.Module, config: Mapping[str, Any], lr: float, backbone: Collection[nn.Parameter] = ()
) -> torch.optim.Optimizer:
    """Instantiate ``config._target_`` over `model`'s parameter groups with the effective `lr` and the
    config's other arguments; ``backbone_lr_factor`` scales the LR of the `backbone` parameters (the schedule
    then scales every group alike)."""
    optimizer_class = get_class(config["_target_"])
    kwargs = {key: value for key, value in config.items() if key not in CVKIT_KEYS}
    factor = float(config.get("backbone_lr_factor", 1.0))
    if factor != 1.0 and not backbone:
        raise CvkitError(
            f"optimizer.backbone_lr_factor={factor}: this network has no backbone it can tell apart (detectors and "
            "instance segmenters have); leave it at 1.0"
        )
    weight_decay, no_bn_bias_decay = float(config.get("weight_decay", 0.0)), bool(config.get("no_bn_bias_decay"))
    groups = parameter_groups(model, weight_decay, no_bn_bias_decay, backbone, factor)
    for group in groups:  # (the factor stays in the group, where a resumed schedule finds it)
        group["lr"] = lr * group.setdefault("lr_factor", 1.0)
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
