"""Tasks built without training: from a config as train() builds them, or directly, without a config or data
(a training plan of given numbers and the other arguments every task takes)."""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from typing import Any

import pytorch_lightning as pl
from omegaconf import DictConfig
from torch import nn

from cvkit.builders import (
    build_datamodule,
    build_network,
    build_task,
    build_trainer,
    build_training_plan,
    settle_batch_size,
)
from cvkit.data.base import BaseDataModule
from cvkit.optim import LRPlan, TrainingPlan, build_schedule
from cvkit.tasks import BaseTask

NONFINITE_STOP = {"action": "stop", "max_skipped": 10}  # train.yaml's nonfinite_loss


def plan_of(
    *,
    per_device_batch_size: int = 32,
    devices: int = 1,
    max_epochs: int = 6,
    scheduler: Mapping[str, Any] | None = None,
    optimizer: Mapping[str, Any] | None = None,
) -> TrainingPlan:
    """The plan of a run with base LR 0.1 for 256 images (linear scaling) on `devices` of
    `per_device_batch_size` for `max_epochs` under `scheduler`."""
    lr = LRPlan(0.1, 256, per_device_batch_size, world_size=devices, accumulate_grad_batches=1, lr_scaling="linear")
    schedule = build_schedule(scheduler or {"name": "constant"}, max_epochs, lr.effective_lr)
    return TrainingPlan(dict(optimizer or {"_target_": "torch.optim.SGD"}), lr, schedule)


def task_arguments(model: nn.Module, class_names: Sequence[str], plan: TrainingPlan | None = None) -> dict[str, Any]:
    """The arguments every task takes, for `model` over `class_names` (no run record; fp32 layout)."""
    return {
        "model": model,
        "class_names": list(class_names),
        "plan": plan,
        "record": None,
        "channels_last": False,
        "nonfinite_loss": NONFINITE_STOP,
    }


def configured_task(cfg: DictConfig, datamodule: BaseDataModule | None = None) -> BaseTask:
    """The task ``train(cfg)`` builds (its network, its plan for the configured batch), not trained."""
    datamodule = datamodule or build_datamodule(cfg)
    trainer = build_trainer(cfg, callbacks=[])
    datamodule.batch_size = settle_batch_size(datamodule, trainer, None, None, "")
    batch_size = datamodule.batch_size
    return build_task(cfg, datamodule, build_network(cfg, datamodule), build_training_plan(cfg, trainer, batch_size))


def untrained_val_metrics(cfg: DictConfig) -> dict[str, float]:
    """The val metrics of the network `cfg` builds, before any step (the run's seed: its starting weights)."""
    pl.seed_everything(cfg.seed, workers=True)
    datamodule = build_datamodule(cfg)
    trainer = build_trainer(cfg, callbacks=[], enable_progress_bar=False)
    task = configured_task(cfg, datamodule)
    return trainer.validate(task, datamodule=datamodule, verbose=False)[0]
