"""The learning rate of every optimizer step, written to the loggers."""

from __future__ import annotations

import pytorch_lightning as pl
import torch

from cvkit.optim.param_groups import HEAD


class StepLRLogger(pl.Callback):
    """Logs the LR of each named parameter group right before each optimizer step, at that step's index: the
    head's as ``lr``, the backbone's as ``lr/backbone`` (``lr/backbone.layer{i}`` with layer-wise decay); a
    group's split by weight decay has the same LR.

    Lightning's LearningRateMonitor writes only every ``log_every_n_steps``; a warmup curve needs them all.
    """

    def on_before_optimizer_step(
        self, trainer: pl.Trainer, pl_module: pl.LightningModule, optimizer: torch.optim.Optimizer
    ) -> None:
        if not trainer.is_global_zero or trainer.sanity_checking:
            return
        lrs: dict[str, float] = {}
        for group in optimizer.param_groups:
            name = group.get("name", HEAD)
            lrs.setdefault("lr" if name == HEAD else f"lr/{name}", group["lr"])
        for logger in trainer.loggers:
            logger.log_metrics(lrs, step=trainer.global_step)
