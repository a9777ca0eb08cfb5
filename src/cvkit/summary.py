"""What a run reports: the facts at its start (printed, and written as summary.json), its metrics as plain
numbers, and its results at the end (metrics.json, the task's own files, per-class tables, the end
table), the same for training and evaluation."""

from __future__ import annotations

from collections.abc import Mapping
from pathlib import Path
from typing import TYPE_CHECKING, Any

import numpy as np
import pytorch_lightning as pl
import torch
from omegaconf import DictConfig
from PIL import Image

from cvkit.console import image_count_rows, print_image_counts, print_per_class, print_table, write_json
from cvkit.data.base import BaseDataModule
from cvkit.models import count_parameters
from cvkit.optim import TrainingPlan
from cvkit.optim.param_groups import HEAD

if TYPE_CHECKING:  # for type hints only: the tasks do not depend on this module
    from cvkit.tasks import BaseTask


def run_summary(
    cfg: DictConfig,
    datamodule: BaseDataModule,
    task: BaseTask,
    plan: TrainingPlan,
    trainer: pl.Trainer,
    resumed_from: str | None,
) -> dict[str, Any]:
    """The facts of a run as one flat dict (printed at start, written as summary.json)."""
    searched = cfg.data.batch_size == "auto" and cfg.data.get("global_batch_size") is None
    return {
        "task": task.kind,
        "backbone": cfg.backbone.name,
        "parameters": f"{count_parameters(task.model) / 1e6:.2f} M",
        "data": datamodule.describe(),
        "classes": datamodule.num_classes,
        "split_sizes": datamodule.split_sizes(),
        "loader_workers": datamodule.loader_workers(trainer),
        **plan.lr.as_dict(),
        "lr_rule": plan.lr.formula(),
        "lr_groups": lr_groups(task, plan),
        **({"backbone_training": plan.freezing.describe()} if plan.freezing.active else {}),
        "scheduler": plan.schedule.name,
        "warmup_epochs": plan.schedule.warmup_epochs,
        "max_epochs": trainer.max_epochs,
        "accelerator": type(trainer.accelerator).__name__.replace("Accelerator", "").lower(),
        "devices": trainer.num_devices,
        "num_nodes": trainer.num_nodes,
        "precision": str(trainer.precision),
        "channels_last": task.channels_last_under(trainer),
        "torch": torch.__version__,
        "output_dir": str(cfg.paths.output_dir),
        **({"batch_size": f"auto: {plan.lr.per_device_batch_size} per device"} if searched else {}),
        "resumed_from": resumed_from,
    }


def lr_groups(task: BaseTask, plan: TrainingPlan) -> str:
    """The optimizer's parameter groups by name, with the modules of each layer of the backbone, their tensors
    and peak LR (weight-decay splits merged): ``head: 2 tensors, peak lr 0.1; backbone.layer8 (layer4.1): 6
    tensors, peak lr 0.05; ...``."""
    groups: dict[str, list] = {}
    for group in task.parameter_groups():
        entry = groups.setdefault(group["name"], [0, group["lr_factor"]])
        entry[0] += len(group["params"])

    def label(name: str) -> str:
        layer = name.removeprefix("backbone.layer")
        return f"{name} ({task.backbone_training.layers.modules_in(int(layer))})" if layer.isdigit() else name

    peak = plan.lr.effective_lr
    shown = sorted(groups.items(), key=lambda item: (item[0] != HEAD, item[1][1]))  # the head, then from the stem up
    return "; ".join(f"{label(name)}: {count} tensors, peak lr {peak * f:.4g}" for name, (count, f) in shown)


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


def write_report(run_dir: Path, report: Mapping[str, Any], task: BaseTask, title: str, rows: Mapping[str, Any]) -> None:
    """The end of a run (training or evaluation), on rank 0: `report` as metrics.json, the task's own files
    beside it, its per-class tables and the splits not scored whole on the console, then the table
    `title` of `rows` with the image counts and the run dir."""
    write_json(run_dir / "metrics.json", report)
    for name, content in task.report_files().items():
        if isinstance(content, np.ndarray):  # a picture, HxWx3 uint8
            Image.fromarray(content).save(run_dir / name)
        else:
            write_json(run_dir / name, content)
    for table, per_class in task.per_class_tables().items():
        print_per_class(table, per_class)
    print_image_counts(report)
    print_table(title, {**rows, **image_count_rows(report), "run dir": run_dir})
