"""How a run optimizes, decided once before training from the config and the world it runs in: the optimizer,
the effective LR (the scaling rule) and the warmup + main schedule, set in epochs. A pure function of
numbers, so that the same plan is logged, checkpointed and trained with. The optimizer steps an epoch has
are Lightning's count (``trainer.estimated_stepping_batches``), taken when training starts.

Example: base LR 0.1 for 256 images, 2 devices x 64 images, 10 epochs, 1 warmup epoch: global batch 128,
lr = 0.1 x 128 / 256 = 0.05, rising linearly over the first epoch, then a cosine over the other nine.
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass, field
from typing import Any

from cvkit.optim.factory import build_schedule
from cvkit.optim.freezing import Freezing
from cvkit.optim.scaling import LRPlan
from cvkit.optim.schedules import Schedule


@dataclass(frozen=True)
class TrainingPlan:
    """The optimizer config (``_target_`` + arguments; its ``lr`` is the base LR), how the effective LR was
    derived, the schedule over the run's epochs, and when the backbone trains."""

    optimizer: Mapping[str, Any]
    lr: LRPlan
    schedule: Schedule
    freezing: Freezing = field(default_factory=Freezing)


def plan_training(
    optimizer: Mapping[str, Any],
    scheduler: Mapping[str, Any],
    backbone: Mapping[str, Any] | None = None,
    *,
    per_device_batch_size: int,
    world_size: int,
    accumulate_grad_batches: int,
    max_epochs: int,
) -> TrainingPlan:
    """The :class:`TrainingPlan` of the ``optimizer``, ``scheduler`` and ``backbone`` configs (its freezing
    settings) for a run of `max_epochs` in batches of `per_device_batch_size` on `world_size` devices; fails
    on a schedule that cannot be, before anything trains."""
    lr = LRPlan(
        base_lr=float(optimizer["lr"]),
        base_batch_size=int(optimizer["base_batch_size"]),
        per_device_batch_size=per_device_batch_size,
        world_size=world_size,
        accumulate_grad_batches=accumulate_grad_batches,
        lr_scaling=str(optimizer["lr_scaling"]),
    )
    schedule = build_schedule(scheduler, max_epochs, lr.effective_lr)
    return TrainingPlan(dict(optimizer), lr, schedule, Freezing.from_config(backbone or {}, max_epochs))
