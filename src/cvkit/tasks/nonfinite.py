"""What a NaN or infinite training loss does (``nonfinite_loss``): stop the run at that step, before its
update, naming the step and the last checkpoint written before it; or skip the step, a limited number of
times. Every DDP rank decides the same, from one all-reduce of "finite here" per step."""

from __future__ import annotations

import logging
import math
from collections.abc import Mapping
from pathlib import Path
from typing import Any

import pytorch_lightning as pl
import torch
from torch import nn

from cvkit.checkpoints import run_checkpoints
from cvkit.errors import CvkitError, TrainingFailed

log = logging.getLogger(__name__)
ACTIONS = ("stop", "skip")


class NonfiniteLossGuard:
    """``action`` "stop" ends the run with :class:`~cvkit.errors.TrainingFailed`; "skip" skips such steps (no
    backward, no update, BatchNorm's running statistics restored), at most ``max_skipped`` times in a run."""

    def __init__(self, action: str, max_skipped: int) -> None:
        if action not in ACTIONS:
            raise CvkitError(f"nonfinite_loss.action={action!r} is not valid: one of {list(ACTIONS)}")
        self.action = action
        self.max_skipped = int(max_skipped)
        self.skipped = 0

    @classmethod
    def from_config(cls, config: Mapping[str, Any] | None) -> NonfiniteLossGuard:
        """The guard of the ``nonfinite_loss`` config (``{action, max_skipped}``), or a CvkitError naming its keys."""
        if not isinstance(config, Mapping) or set(config) != {"action", "max_skipped"}:
            raise CvkitError(
                f"nonfinite_loss must be {{action: stop|skip, max_skipped: N}}, got {config!r} (see configs/train.yaml)"
            )
        return cls(config["action"], config["max_skipped"])

    def snapshot(self, model: nn.Module) -> dict[str, torch.Tensor]:
        """Copies of `model`'s floating-point buffers (BatchNorm's running mean and variance) when steps may be
        skipped: the forward pass of a skipped step must leave them as they were."""
        if self.action != "skip":
            return {}
        return {name: buffer.detach().clone() for name, buffer in model.named_buffers() if buffer.is_floating_point()}

    def check(self, task: pl.LightningModule, loss: torch.Tensor, batch_idx: int, saved: dict) -> torch.Tensor | None:
        """`loss` when it is finite on every rank; otherwise restore the `saved` buffers of ``task.model`` and
        skip the step (None) or end the run."""
        trainer = task.trainer
        finite = torch.isfinite(loss.detach()).all().to(torch.int32)
        if trainer.world_size > 1:
            finite = trainer.strategy.reduce(finite, reduce_op="min")
        if bool(finite):
            return loss
        for name, buffer in task.model.named_buffers():
            if name in saved:
                buffer.copy_(saved[name])
        where = (
            f"optimizer step {trainer.global_step} (epoch {trainer.current_epoch} counting from 0, batch {batch_idx})"
        )
        value: float | str = float(loss.detach().float())
        if math.isfinite(value):  # under DDP, another rank's loss was not finite
            value = f"not finite on another rank (here {value:.4g})"
        if self.action == "skip" and self.skipped < self.max_skipped:
            self.skipped += 1
            log.warning(
                "train/loss is %s at %s: step skipped (%d of at most %d, nonfinite_loss.max_skipped)",
                value, where, self.skipped, self.max_skipped,
            )  # fmt: skip
            return None
        saved_checkpoints = run_checkpoints(Path(trainer.default_root_dir))
        last_good = (
            f"the last checkpoint written before it is {saved_checkpoints[0]}"
            if saved_checkpoints
            else "no checkpoint was written"
        )
        skipped = f" after skipping {self.skipped} such steps" if self.skipped else ""
        raise TrainingFailed(
            f"train/loss is {value} at {where}{skipped}: training stopped; {last_good}. Lower optimizer.lr "
            "(or clip gradients: trainer.gradient_clip_val), or set nonfinite_loss.action=skip to skip such steps"
        )
