"""Tasks built directly, without a config or data: a training plan of given numbers and the other arguments
every task takes."""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from typing import Any

from torch import nn

from cvkit.optim import LRPlan, TrainingPlan, build_schedule

NONFINITE_STOP = {"action": "stop", "max_skipped": 10}  # train.yaml's nonfinite_loss


def plan_of(
    *,
    per_device_batch_size: int = 32,
    devices: int = 1,
    steps_per_epoch: int = 10,
    max_epochs: int = 6,
    scheduler: Mapping[str, Any] | None = None,
    optimizer: Mapping[str, Any] | None = None,
) -> TrainingPlan:
    """The plan of a run with base LR 0.1 for 256 images (linear scaling) on `devices` of
    `per_device_batch_size`, `steps_per_epoch` steps an epoch for `max_epochs` under `scheduler`."""
    lr = LRPlan(0.1, 256, per_device_batch_size, world_size=devices, accumulate_grad_batches=1, lr_scaling="linear")
    schedule = build_schedule(scheduler or {"name": "constant"}, max_epochs, lr.effective_lr)
    return TrainingPlan(dict(optimizer or {"_target_": "torch.optim.SGD"}), lr, schedule, steps_per_epoch)


def task_arguments(model: nn.Module, class_names: Sequence[str], plan: TrainingPlan | None = None) -> dict[str, Any]:
    """The arguments every task takes, for `model` over `class_names` (no run record; fp32 layout)."""
    return {
        "model": model,
        "class_names": list(class_names),
        "plan": plan,
        "record": None,
        "channels_last": False,
        "nonfinite_loss": NONFINITE_STOP,
    }
