"""The learning-rate scaling rule for large minibatches (Goyal et al., 2017), as pure functions.

Example: base LR 0.1 for 256 images; 8 GPUs x 64 images x 2 accumulation steps = 1024 images per
optimizer step, so the linear rule gives 0.1 * 1024 / 256 = 0.4 (the sqrt rule gives 0.2).
"""

from __future__ import annotations

import math
from dataclasses import asdict, dataclass

from cvkit.errors import CvkitError

SCALING_RULES = ("linear", "sqrt", "none")


def scale_lr(base_lr: float, base_batch_size: int, global_batch_size: int, rule: str) -> float:
    """The peak LR for `global_batch_size` given `base_lr` tuned for `base_batch_size`."""
    if rule not in SCALING_RULES:
        raise CvkitError(f"optimizer.lr_scaling={rule!r} is not one of {SCALING_RULES}")
    if base_batch_size <= 0:
        raise CvkitError(f"optimizer.base_batch_size must be > 0, got {base_batch_size}")
    if base_lr <= 0:
        raise CvkitError(f"optimizer.lr must be > 0, got {base_lr}")
    ratio = global_batch_size / base_batch_size
    return base_lr * {"linear": ratio, "sqrt": math.sqrt(ratio), "none": 1.0}[rule]


@dataclass(frozen=True)
class LRPlan:
    """How the effective LR of a run was derived; logged at start and written to summary.json."""

    base_lr: float
    base_batch_size: int
    per_device_batch_size: int
    world_size: int
    accumulate_grad_batches: int
    lr_scaling: str

    @property
    def global_batch_size(self) -> int:
        return self.per_device_batch_size * self.world_size * self.accumulate_grad_batches

    @property
    def effective_lr(self) -> float:
        return scale_lr(self.base_lr, self.base_batch_size, self.global_batch_size, self.lr_scaling)

    def formula(self) -> str:
        factor = {"linear": "{g} / {b}", "sqrt": "sqrt({g} / {b})", "none": "1"}[self.lr_scaling]
        factor = factor.format(g=self.global_batch_size, b=self.base_batch_size)
        return f"lr = {self.base_lr:g} x {factor} = {self.effective_lr:.6g} ({self.lr_scaling} scaling)"

    def as_dict(self) -> dict:
        return {**asdict(self), "global_batch_size": self.global_batch_size, "effective_lr": self.effective_lr}
