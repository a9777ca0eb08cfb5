"""evaluate(cfg): a checkpoint's metrics on the val (and test) split, printed and written as metrics.json."""

from __future__ import annotations

from pathlib import Path
from typing import Any

from omegaconf import DictConfig

from cvkit.builders import build_datamodule, build_trainer, fit_batch_to_world, task_class
from cvkit.callbacks import ExitOnSignal, progress_bar
from cvkit.checkpoints import RunRecord, load_checkpoint
from cvkit.config import validate
from cvkit.errors import CvkitError
from cvkit.summary import scalar_metrics, write_report


def evaluate(cfg: DictConfig) -> tuple[dict[str, float], dict[str, Any]]:
    """Run validation and test (where present) of ``cfg.ckpt_path`` on ``cfg.data``."""
    validate(cfg)
    run_dir = Path(cfg.paths.output_dir)
    record = RunRecord.in_checkpoint(load_checkpoint(cfg.ckpt_path, "ckpt_path"))
    if record is not None:
        record.check_task(task_class(cfg).kind, "ckpt_path", cfg.ckpt_path)
    datamodule = build_datamodule(cfg)
    if record is not None:
        record.check_classes(datamodule.class_names, datamodule.describe())
    trainer = build_trainer(cfg, callbacks=[progress_bar(), ExitOnSignal()])
    fit_batch_to_world(datamodule, trainer)
    if datamodule.batch_size == "auto":  # evaluate with the batch the training run's search found
        found = record.lr_plan.get("per_device_batch_size") if record else None
        if not found:
            raise CvkitError(f"data.batch_size=auto: {cfg.ckpt_path} records no batch size; give data.batch_size=N")
        datamodule.batch_size = found
    task = task_class(cfg).from_config(cfg, datamodule)
    metrics: dict[str, float] = {}
    for split in cfg.splits:
        if not datamodule.has_split(split):
            continue
        run = trainer.validate if split == "val" else trainer.test
        run(task, datamodule=datamodule, ckpt_path=cfg.ckpt_path, verbose=False)
        metrics.update(scalar_metrics(trainer.callback_metrics))
    report = {"metrics": metrics, "checkpoint": str(cfg.ckpt_path), **task.report()}
    if trainer.is_global_zero:
        write_report(run_dir, report, task, f"cvkit eval: {cfg.ckpt_path}", metrics)
    return metrics, {"task": task, "datamodule": datamodule, "trainer": trainer, "report": report}
