"""How a run optimizes, decided once before training from the config and the world it runs in: the
effective LR (the scaling rule), the warmup + main schedule, and the optimizer steps per epoch the schedule
counts in. A pure function of numbers, so that the same plan is logged, checkpointed and trained with.

Example: base LR 0.1 for 256 images, 2 devices x 64 images, 1,437 training images, 10 epochs, 1 warmup
epoch: global batch 128, lr = 0.1 x 128 / 256 = 0.05, ceil(1437 / 2) = 719 images per rank = 11 batches =
11 steps per epoch, 11 warmup steps, 110 steps in all.
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass
from typing import Any

from cvkit.batching import optimizer_steps_per_epoch
from cvkit.optim.factory import build_schedule
from cvkit.optim.scaling import LRPlan
from cvkit.optim.schedules import Schedule


@dataclass(frozen=True)
class TrainingPlan:
    """The optimizer config (``_target_`` + arguments; its ``lr`` is the base LR), how the effective LR was
    derived, the schedule over the run's epochs, and the optimizer steps in one epoch."""

    optimizer: Mapping[str, Any]
    lr: LRPlan
    schedule: Schedule
    steps_per_epoch: int

    @property
    def warmup_steps(self) -> int:
        return round(self.schedule.warmup_epochs * self.steps_per_epoch)

    @property
    def total_steps(self) -> int:
        return round(self.schedule.total_epochs * self.steps_per_epoch)


def plan_training(
    optimizer: Mapping[str, Any],
    scheduler: Mapping[str, Any],
    *,
    train_samples: int,
    per_device_batch_size: int,
    world_size: int,
    accumulate_grad_batches: int,
    max_epochs: int,
    limit_train_batches: int | float | None = None,
) -> TrainingPlan:
    """The :class:`TrainingPlan` of the ``optimizer`` and ``scheduler`` configs for a run of `max_epochs` over
    `train_samples` images in batches of `per_device_batch_size` on `world_size` devices; fails on a schedule
    that cannot be, before anything trains."""
    lr = LRPlan(
        base_lr=float(optimizer["lr"]),
        base_batch_size=int(optimizer["base_batch_size"]),
        per_device_batch_size=per_device_batch_size,
        world_size=world_size,
        accumulate_grad_batches=accumulate_grad_batches,
        lr_scaling=str(optimizer["lr_scaling"]),
    )
    steps = optimizer_steps_per_epoch(
        train_samples, per_device_batch_size, world_size, accumulate_grad_batches, limit_train_batches
    )
    schedule = build_schedule(scheduler, max_epochs, lr.effective_lr)
    return TrainingPlan(dict(optimizer), lr, schedule, steps)
