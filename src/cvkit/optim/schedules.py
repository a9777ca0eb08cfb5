"""Per-step LR multipliers: linear warmup, then a main schedule; positions are in (fractional) epochs.

The multiplier of step ``s`` depends only on ``s / steps_per_epoch``, so a run keeps the same curve in
epochs whatever its device count, and a resumed run continues it where it stopped.
"""

from __future__ import annotations

import math
from collections.abc import Sequence
from dataclasses import dataclass, field

from cvkit.errors import CvkitError

SCHEDULES = ("cosine", "multistep", "poly", "constant")


@dataclass(frozen=True)
class Schedule:
    """A warmup + main schedule over `total_epochs`; `min_lr_ratio` is min_lr / peak LR."""

    name: str
    total_epochs: float
    warmup_epochs: float = 0.0
    warmup_start_factor: float = 0.1
    min_lr_ratio: float = 0.0
    milestones: Sequence[float] = field(default_factory=tuple)
    gamma: float = 0.1
    power: float = 2.0

    def __post_init__(self) -> None:
        if self.name not in SCHEDULES:
            raise CvkitError(f"scheduler.name={self.name!r} is not one of {SCHEDULES}")
        if not self.total_epochs or self.total_epochs <= 0:
            raise CvkitError(
                f"trainer.max_epochs must be a positive number of epochs (schedules are set in epochs), "
                f"got {self.total_epochs}"
            )
        if self.warmup_epochs < 0:
            raise CvkitError(f"scheduler.warmup_epochs must be >= 0, got {self.warmup_epochs}")
        if self.warmup_epochs > self.total_epochs:
            raise CvkitError(
                f"scheduler.warmup_epochs={self.warmup_epochs} is longer than training "
                f"({self.total_epochs} epochs); shorten the warmup or train longer"
            )
        if not 0.0 <= self.warmup_start_factor <= 1.0:
            raise CvkitError(f"scheduler.warmup_start_factor must be in [0, 1], got {self.warmup_start_factor}")

    def factor(self, epoch: float) -> float:
        """The LR multiplier (of the peak LR) at fractional `epoch`."""
        if epoch < self.warmup_epochs:
            progress = epoch / self.warmup_epochs
            return self.warmup_start_factor + (1.0 - self.warmup_start_factor) * progress
        if self.name == "constant":
            return 1.0
        if self.name == "multistep":
            return self.gamma ** sum(epoch >= milestone for milestone in self.milestones)
        span = max(self.total_epochs - self.warmup_epochs, 1e-12)
        progress = min(max((epoch - self.warmup_epochs) / span, 0.0), 1.0)
        decay = 0.5 * (1.0 + math.cos(math.pi * progress)) if self.name == "cosine" else (1.0 - progress) ** self.power
        return self.min_lr_ratio + (1.0 - self.min_lr_ratio) * decay
