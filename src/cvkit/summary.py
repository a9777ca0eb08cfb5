"""The facts of a run, for its start table and summary.json, and its metrics as plain numbers."""

from __future__ import annotations

from collections.abc import Mapping
from pathlib import Path
from typing import TYPE_CHECKING, Any

import pytorch_lightning as pl
import torch

from cvkit.data.base import BaseDataModule
from cvkit.models import count_parameters
from cvkit.optim import LRPlan, optimizer_steps_per_epoch

if TYPE_CHECKING:  # for type hints only: the tasks do not depend on this module
    from cvkit.tasks import BaseTask


def run_summary(
    cfg_backbone: Mapping[str, Any],
    datamodule: BaseDataModule,
    task: BaseTask,
    trainer: pl.Trainer,
    run_dir: Path,
    schedule: Mapping[str, Any],
) -> dict[str, Any]:
    """The facts of a run as one flat dict (printed at start, written as summary.json)."""
    plan = task.lr_plan
    return {
        "task": task.metadata.get("task"),
        "backbone": cfg_backbone["name"],
        "parameters": f"{count_parameters(task.model) / 1e6:.2f} M",
        "data": datamodule.describe(),
        "classes": datamodule.num_classes,
        "split_sizes": datamodule.split_sizes(),
        **plan.as_dict(),
        "lr_rule": plan.formula(),
        "scheduler": schedule.get("name"),
        "warmup_epochs": schedule.get("warmup_epochs", 0),
        "max_epochs": trainer.max_epochs,
        **step_counts(datamodule, trainer, plan, schedule.get("warmup_epochs", 0)),
        "accelerator": type(trainer.accelerator).__name__.replace("Accelerator", "").lower(),
        "devices": trainer.num_devices,
        "num_nodes": trainer.num_nodes,
        "precision": str(trainer.precision),
        "torch": torch.__version__,
        "output_dir": str(run_dir),
    }


def step_counts(datamodule: BaseDataModule, trainer: pl.Trainer, plan: LRPlan, warmup_epochs: float) -> dict[str, int]:
    """Optimizer steps per epoch, of the warmup, and in all."""
    per_epoch = optimizer_steps_per_epoch(
        datamodule.split_sizes()["train"],
        plan.per_device_batch_size,
        plan.world_size,
        plan.accumulate_grad_batches,
        trainer.limit_train_batches,
    )
    return {
        "steps_per_epoch": per_epoch,
        "warmup_steps": round(warmup_epochs * per_epoch),
        "total_steps": per_epoch * trainer.max_epochs,
    }


def scalar_metrics(metrics: Mapping[str, Any]) -> dict[str, float]:
    """Lightning's logged metrics as plain floats (tensors of one element only), without the
    ``_step``/``_epoch`` copies Lightning adds for values logged both per step and per epoch."""
    out = {}
    for key, value in metrics.items():
        if key.endswith(("_step", "_epoch")) and key.rsplit("_", 1)[0] in metrics:
            continue
        if (isinstance(value, torch.Tensor) and value.numel() == 1) or isinstance(value, int | float):
            out[key] = float(value)
    return dict(sorted(out.items()))
