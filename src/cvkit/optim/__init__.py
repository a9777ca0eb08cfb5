"""Optimization: LR scaling rule, warmup + main schedules, optimizer factory."""

from cvkit.optim.factory import build_optimizer, build_schedule
from cvkit.optim.scaling import LRPlan, scale_lr
from cvkit.optim.schedules import Schedule
from cvkit.optim.steps import optimizer_steps_per_epoch, per_device_batch_size

__all__ = [
    "LRPlan",
    "Schedule",
    "build_optimizer",
    "build_schedule",
    "optimizer_steps_per_epoch",
    "per_device_batch_size",
    "scale_lr",
]
