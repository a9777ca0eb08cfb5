"""Pruning of hyper-parameter search trials (``-m hydra/sweeper=optuna``): the Optuna trial a sweep job runs
for, and the callback that reports the monitored metric to it after each validation and stops the job when
Optuna says the trial is worse than the others were at that epoch."""

from __future__ import annotations

import os
from typing import Any

import pytorch_lightning as pl

# Set while the sweeper runs a trial, so that the job's DDP child processes (which inherit it) take part in
# the pruning decision of rank 0, which alone holds the trial.
TRIAL_ENV = "CVKIT_SWEEP_TRIAL"
_active: dict[str, Any] = {"trial": None}


def use_trial(trial: Any | None) -> None:
    """Make `trial` (an ``optuna.Trial``, or None after the job) the one the next job reports to."""
    _active["trial"] = trial
    if trial is None:
        os.environ.pop(TRIAL_ENV, None)
    else:
        os.environ[TRIAL_ENV] = str(trial.number)


def in_sweep_trial() -> bool:
    return TRIAL_ENV in os.environ


class TrialPruning(pl.Callback):
    """After each validation, rank 0 reports `monitor` to the trial and asks whether to prune; every rank gets
    the answer (a broadcast), and all stop together with ``optuna.TrialPruned``."""

    def __init__(self, monitor: str) -> None:
        self.monitor = monitor

    def on_validation_end(self, trainer: pl.Trainer, pl_module: pl.LightningModule) -> None:
        if trainer.sanity_checking:
            return
        trial, prune, value = _active["trial"], False, trainer.callback_metrics.get(self.monitor)
        if trainer.is_global_zero and trial is not None and value is not None:
            trial.report(float(value), step=trainer.current_epoch)
            prune = trial.should_prune()
        if trainer.strategy.broadcast(prune):
            import optuna

            raise optuna.TrialPruned(f"{self.monitor}={float(value):.4g} after epoch {trainer.current_epoch + 1}")
