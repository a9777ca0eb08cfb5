"""train(cfg): build everything from the config, fit, test, and write the run's summaries."""

from __future__ import annotations

import logging
from pathlib import Path
from typing import Any

import pytorch_lightning as pl
from hydra.core.hydra_config import HydraConfig
from omegaconf import DictConfig

from cvkit.builders import build_datamodule, build_trainer, build_training_plan, fit_batch_to_world, task_class
from cvkit.checkpoints import init_weights, resolve_resume, run_checkpoints
from cvkit.config import validate
from cvkit.console import print_table, write_json
from cvkit.distributed import stop_other_ranks
from cvkit.errors import Interrupted, TrainingFailed
from cvkit.summary import run_summary, scalar_metrics, write_report

log = logging.getLogger(__name__)


def recorded_overrides() -> list[str]:
    """The command-line overrides of this Hydra run (empty outside Hydra, e.g. in tests)."""
    return list(HydraConfig.get().overrides.task) if HydraConfig.initialized() else []


def train(cfg: DictConfig) -> tuple[dict[str, float], dict[str, Any]]:
    """Train (and test) as ``cfg`` says. Returns ``(metrics, objects)``; metrics are also written to
    ``metrics.json`` and the start-of-run facts to ``summary.json`` in ``cfg.paths.output_dir``."""
    validate(cfg)
    run_dir = Path(cfg.paths.output_dir)
    pl.seed_everything(cfg.seed, workers=True)
    resume_from = resolve_resume(cfg.ckpt_path, bool(cfg.resume), run_dir)

    datamodule = build_datamodule(cfg)
    trainer = build_trainer(cfg)
    fit_batch_to_world(datamodule, trainer)
    plan = build_training_plan(cfg, datamodule, trainer)
    task = task_class(cfg).from_config(cfg, datamodule, plan, recorded_overrides())
    if cfg.init_from:
        init_weights(task.model, cfg.init_from)
    if cfg.compile:
        task.model.compile()

    summary = {**run_summary(cfg.backbone.name, datamodule, task, plan, trainer, run_dir), "resumed_from": resume_from}
    if trainer.is_global_zero:
        log.info(plan.lr.formula())
        print_table("cvkit run", summary)
        write_json(run_dir / "summary.json", summary)

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
    return metrics, {"cfg": cfg, "datamodule": datamodule, "task": task, "trainer": trainer, "report": report}


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
