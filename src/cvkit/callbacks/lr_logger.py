"""The learning rate of every optimizer step, written to the loggers."""

from __future__ import annotations

import pytorch_lightning as pl
import torch


class StepLRLogger(pl.Callback):
    """Logs ``lr`` (and ``lr/group{i}`` for further parameter groups) right before each optimizer step,
    at that step's index.

    Lightning's LearningRateMonitor writes only every ``log_every_n_steps``; a warmup curve needs them all.
    """

    def on_before_optimizer_step(
        self, trainer: pl.Trainer, pl_module: pl.LightningModule, optimizer: torch.optim.Optimizer
    ) -> None:
        if not trainer.is_global_zero or trainer.sanity_checking:
            return
        groups = enumerate(optimizer.param_groups)
        lrs = {"lr" if index == 0 else f"lr/group{index}": group["lr"] for index, group in groups}
        for logger in trainer.loggers:
            logger.log_metrics(lrs, step=trainer.global_step)
