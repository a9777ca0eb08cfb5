"""What the user reads at the start and end of a run, and the JSON files written beside the logs."""

from __future__ import annotations

import json
import os
from collections.abc import Mapping
from pathlib import Path
from typing import Any

import pytorch_lightning as pl
import torch
from rich.console import Console
from rich.table import Table

from cvkit.data.base import BaseDataModule
from cvkit.models import count_parameters
from cvkit.optim import LRPlan, optimizer_steps_per_epoch
from cvkit.tasks import BaseTask

console = Console(stderr=False, soft_wrap=True)


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


def print_table(title: str, rows: Mapping[str, Any]) -> None:
    table = Table(title=title, show_header=False, title_justify="left")
    table.add_column(style="bold cyan")
    table.add_column()
    for key, value in rows.items():
        table.add_row(key, f"{value:.4f}" if isinstance(value, float) else str(value))
    console.print(table)


def print_per_class(title: str, report: Mapping[str, Mapping[str, float]]) -> None:
    """A table of per-class values, one row per class, one column per key of the rows (precision,
    recall, F1 and support of a classifier; AP of a detector)."""
    if not report:
        return
    table = Table(title=title, title_justify="left")
    columns = list(next(iter(report.values())))
    for column in ("class", *columns):
        table.add_column(column, justify="left" if column == "class" else "right")
    for name, row in report.items():
        table.add_row(name, *(f"{row[k]:.4f}" if isinstance(row[k], float) else str(row[k]) for k in columns))
    console.print(table)


def image_counts(report: Mapping[str, Any]) -> dict[str, Mapping[str, Any]]:
    """The ``{split}_images`` entries of a task's report (see :mod:`cvkit.tasks.mixins`), by split."""
    return {key.removesuffix("_images"): value for key, value in report.items() if key.endswith("_images")}


def image_count_rows(report: Mapping[str, Any]) -> dict[str, str]:
    """End-of-run table rows for the splits not scored whole: ``{"val images": "32 of 33 (1 unreadable)"}``."""
    rows = {}
    for split, count in image_counts(report).items():
        if count["scored"] != count["total"]:
            unreadable = f" ({len(count['unreadable'])} unreadable)" if count["unreadable"] else ""
            rows[f"{split} images"] = f"{count['scored']} of {count['total']}{unreadable}"
    return rows


def print_image_counts(report: Mapping[str, Any], shown: int = 10) -> None:
    """One line per split not scored whole, and its unreadable files (the first `shown`)."""
    for split, count in image_counts(report).items():
        if count["scored"] == count["total"]:
            continue
        files = count["unreadable"]
        more = f", ... ({len(files) - shown} more)" if len(files) > shown else ""
        listed = f"; unreadable: {', '.join(files[:shown])}{more}" if files else ""
        console.print(f"{split}: scored {count['scored']} of {count['total']} images{listed}", markup=False)


def write_json(path: Path, data: Mapping[str, Any]) -> None:
    """Write `data` as JSON atomically (a temporary file renamed over `path`)."""
    path.parent.mkdir(parents=True, exist_ok=True)
    temporary = path.with_suffix(path.suffix + ".tmp")
    temporary.write_text(json.dumps(data, indent=2, sort_keys=True, default=str) + "\n")
    os.replace(temporary, path)


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
