"""train(cfg): build everything from the config, fit, test, and write the run's summaries."""

from __future__ import annotations

import logging
from functools import partial
from pathlib import Path
from typing import Any

import pytorch_lightning as pl
from hydra.core.hydra_config import HydraConfig
from omegaconf import DictConfig

from cvkit.builders import (
    build_datamodule,
    build_trainer,
    fit_batch_to_world,
    search_batch_size,
    settle_batch,
    task_class,
)
from cvkit.callbacks.batch_size import SmallestBatchOfRanks
from cvkit.callbacks.pruning import TrialPruning, in_sweep_trial
from cvkit.checkpoints import RunRecord, init_weights, resolve_resume, run_checkpoints
from cvkit.config import validate
from cvkit.console import print_table, write_json
from cvkit.distributed import stop_other_ranks
from cvkit.errors import Interrupted, TrainingFailed
from cvkit.summary import run_summary, scalar_metrics, write_report
from cvkit.trackers import TrackerRuns, continue_tracker_runs, log_run_end, log_run_start

log = logging.getLogger(__name__)


def recorded_overrides() -> list[str]:
    """The command-line overrides of this Hydra run (empty outside Hydra, e.g. in tests)."""
    return list(HydraConfig.get().overrides.task) if HydraConfig.initialized() else []


def recorded_batch_size(checkpoint: dict[str, Any] | None) -> int | None:
    """The per-device batch of the run `checkpoint` continues (None for a new run), so that a resumed
    ``data.batch_size=auto`` run goes on with the batch its search found, on the same schedule."""
    record = RunRecord.in_checkpoint(checkpoint) if checkpoint else None
    return record.lr_plan.get("per_device_batch_size") if record else None


def train(cfg: DictConfig) -> tuple[dict[str, float], dict[str, Any]]:
    """Train (and test) as ``cfg`` says. Returns ``(metrics, objects)``; metrics are also written to
    ``metrics.json`` and the start-of-run facts to ``summary.json`` in ``cfg.paths.output_dir``."""
    validate(cfg)
    run_dir = Path(cfg.paths.output_dir)
    pl.seed_everything(cfg.seed, workers=True)
    resume_from, resumed = resolve_resume(cfg.ckpt_path, bool(cfg.resume), run_dir)
    if resumed:
        continue_tracker_runs(cfg, resumed)
    resumed_batch_size = recorded_batch_size(resumed)
    del resumed  # Lightning loads the file itself to restore it: not held in memory through the run

    datamodule = build_datamodule(cfg)
    trainer = build_trainer(cfg)
    trainer.callbacks.append(TrackerRuns())
    if in_sweep_trial():
        trainer.callbacks.append(TrialPruning(cfg.task.monitor))
    fit_batch_to_world(datamodule, trainer)
    task = task_class(cfg).from_config(cfg, datamodule, None, recorded_overrides())
    if cfg.init_from:
        init_weights(task.model, cfg.init_from)
    if datamodule.batch_size == "auto":
        datamodule.batch_size = resumed_batch_size or search_batch_size(cfg, task, datamodule, trainer)
        trainer.callbacks.append(
            SmallestBatchOfRanks(partial(start, cfg, datamodule, task, trainer, resumed_from=resume_from))
        )
    if cfg.compile:
        task.model.compile()
    start(cfg, datamodule, task, trainer, datamodule.batch_size, resume_from)

    try:
        trainer.fit(task, datamodule=datamodule, ckpt_path=resume_from)
    except (TrainingFailed, Interrupted) as err:
        stopped(err, trainer, run_dir)
        raise
    metrics = scalar_metrics(trainer.callback_metrics)
    best_path = trainer.checkpoint_callback.best_model_path if trainer.checkpoint_callback else ""
    if datamodule.has_split("test") and cfg.test_after_fit:
        trainer.test(task, datamodule=datamodule, ckpt_path="best" if best_path else None, verbose=False)
        metrics.update(scalar_metrics(trainer.callback_metrics))

    report = {"status": "completed", "metrics": metrics, "best_checkpoint": best_path or None, **task.report()}
    if trainer.is_global_zero:
        write_report(run_dir, report, task, "cvkit results", {**metrics, "best checkpoint": best_path or "-"})
        log_run_end(trainer, report)
    return metrics, {"cfg": cfg, "datamodule": datamodule, "task": task, "trainer": trainer, "report": report}


def start(
    cfg: DictConfig, datamodule: Any, task: Any, trainer: pl.Trainer, batch_size: int, resumed_from: str | None
) -> None:
    """Settle the per-device batch (the data's, and the task's plan for it), then print the run's summary
    and write summary.json."""
    plan = settle_batch(cfg, datamodule, task, trainer, batch_size)
    run_dir = Path(cfg.paths.output_dir)
    summary = run_summary(cfg.backbone.name, datamodule, task, plan, trainer, run_dir)
    if cfg.data.batch_size == "auto":
        summary["batch_size"] = f"auto: {batch_size} per device"
    summary["resumed_from"] = resumed_from
    if trainer.is_global_zero:
        log.info(plan.lr.formula())
        print_table("cvkit run", summary)
        write_json(run_dir / "summary.json", summary)
        log_run_start(trainer, cfg, summary, resumed=resumed_from is not None)


def stopped(err: TrainingFailed | Interrupted, trainer: pl.Trainer, run_dir: Path) -> None:
    """Record a run that did not complete in metrics.json (``status`` failed or interrupted, no metrics of
    its last weights) and, when it failed on this rank alone, end the other ranks waiting for it."""
    if isinstance(err, TrainingFailed):
        stop_other_ranks(trainer)
    if not trainer.is_global_zero:
        return
    saved = run_checkpoints(run_dir)
    report = {
        "status": "interrupted" if isinstance(err, Interrupted) else "failed",
        "error": str(err),
        "metrics": {},
        "global_step": trainer.global_step,
        "last_checkpoint": str(saved[0]) if saved else None,
    }
    try:
        write_json(run_dir / "metrics.json", report)
    except OSError as write_error:  # e.g. the disk that failed the checkpoint is still full
        log.warning("could not write %s: %s", run_dir / "metrics.json", write_error)
