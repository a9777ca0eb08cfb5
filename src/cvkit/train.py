"""train(cfg): build the run from the config, each object once and complete, fit, test, and report.

In order: check the config; take the run dir's lock; find the checkpoint a resumed run continues; the
trainer; the data; the network; the per-device batch (given, fitted to the world, resumed, or searched and
agreed over the ranks); the plan (LR and schedule) for it; the task with that plan; the summary, printed and
written once; then fit and test. Nothing called from inside ``fit`` reaches back here.
"""

from __future__ import annotations

import logging
from pathlib import Path
from typing import Any

import pytorch_lightning as pl
from hydra.core.hydra_config import HydraConfig
from omegaconf import DictConfig, OmegaConf

from cvkit.batch_search import search_batch_size
from cvkit.builders import (
    build_datamodule,
    build_network,
    build_task,
    build_trainer,
    build_training_plan,
    check_network_input,
    settle_batch_size,
)
from cvkit.callbacks.pruning import TrialPruning, in_sweep_trial
from cvkit.checkpoints import init_weights, resume_point, run_checkpoints
from cvkit.config import validate
from cvkit.console import print_table, write_json
from cvkit.data.loaders import RecordTrainPosition
from cvkit.distributed import is_first_process, stop_other_ranks
from cvkit.errors import Interrupted, TrainingFailed
from cvkit.run_lock import run_dir_lock
from cvkit.summary import run_summary, scalar_metrics, write_report
from cvkit.trackers import TrackerRuns, continue_tracker_runs, log_run_end, log_run_start

log = logging.getLogger(__name__)


def recorded_overrides() -> list[str]:
    """The command-line overrides of this Hydra run (empty outside Hydra, e.g. in tests)."""
    return list(HydraConfig.get().overrides.task) if HydraConfig.initialized() else []


def train(cfg: DictConfig) -> tuple[dict[str, float], dict[str, Any]]:
    """Train (and test) as ``cfg`` says. Returns ``(metrics, objects)``; metrics are also written to
    ``metrics.json`` and the start-of-run facts to ``summary.json`` in ``cfg.paths.output_dir``."""
    validate(cfg)
    check_network_input(cfg)
    run_dir = Path(cfg.paths.output_dir)
    if not is_first_process():  # ranks > 0 share rank 0's run dir, whose lock rank 0 holds
        return run(cfg, run_dir)
    with run_dir_lock(run_dir):
        return run(cfg, run_dir)


def run(cfg: DictConfig, run_dir: Path) -> tuple[dict[str, float], dict[str, Any]]:
    """:func:`train`'s work, in the run dir."""
    pl.seed_everything(cfg.seed, workers=True)
    resumed = resume_point(cfg.ckpt_path, bool(cfg.resume), run_dir)
    if resumed:
        continue_tracker_runs(cfg, resumed.tracker_runs)
    pruning = [TrialPruning(cfg.task.monitor)] if in_sweep_trial() else []
    trainer = build_trainer(cfg, extra_callbacks=[TrackerRuns(), RecordTrainPosition(), *pruning])
    datamodule = build_datamodule(cfg)
    network = build_network(cfg, datamodule)
    if cfg.init_from:
        init_weights(network, cfg.init_from)

    def search() -> int:
        settings = OmegaConf.to_container(cfg.batch_search, resolve=True)
        probe = build_task(cfg, datamodule, network, plan=None)  # the network with the task's training loss
        return search_batch_size(probe, datamodule, trainer, settings, str(cfg.optimizer._target_).rsplit(".")[-1])

    recorded_batch = resumed.per_device_batch_size if resumed else None
    batch_size = settle_batch_size(datamodule, trainer, recorded_batch, search, "the resumed checkpoint")
    datamodule.batch_size = batch_size
    plan = build_training_plan(cfg, trainer, batch_size)
    task = build_task(cfg, datamodule, network, plan, recorded_overrides())
    if cfg.compile:
        task.model.compile()
    resume_from = str(resumed.path) if resumed else None
    del resumed  # Lightning loads the file itself to restore it: not held in memory through the run
    if trainer.is_global_zero:
        summary = run_summary(cfg, datamodule, task, plan, trainer, resume_from)
        log.info(plan.lr.formula())
        print_table("cvkit run", summary)
        write_json(run_dir / "summary.json", summary)
        log_run_start(trainer, cfg, summary, resumed=resume_from is not None)

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
