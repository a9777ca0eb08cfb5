"""Optimization: the LR scaling rule, warmup + main schedules, the optimizer and its parameter groups, and
the plan that puts them together for a run."""

from cvkit.optim.factory import build_optimizer, build_schedule, optimizer_groups
from cvkit.optim.freezing import Freezing
from cvkit.optim.plan import TrainingPlan, plan_training
from cvkit.optim.scaling import LRPlan, scale_lr
from cvkit.optim.schedules import Schedule

__all__ = [
    "Freezing",
    "LRPlan",
    "Schedule",
    "TrainingPlan",
    "build_optimizer",
    "build_schedule",
    "optimizer_groups",
    "plan_training",
    "scale_lr",
]
