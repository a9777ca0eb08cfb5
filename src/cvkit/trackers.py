"""Experiment trackers (``logger=mlflow``, ``logger=wandb``, Lightning's loggers): the run's config, summary
and best checkpoint logged to them, and their run ids kept in every checkpoint, so that a resumed run
continues the same tracker run instead of starting another.

Lightning creates a tracker run on rank 0 only, so a DDP job is one tracker run.
"""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any

import pytorch_lightning as pl
from omegaconf import DictConfig, OmegaConf, open_dict

# The checkpoint key holding {"mlflow": run id, "wandb": run id} of the run that wrote it.
TRACKER_RUNS_KEY = "cvkit_tracker_runs"


def tracker_kind(logger: Any) -> str | None:
    """``mlflow`` or ``wandb`` for Lightning's loggers of those trackers (checked by class name, so that
    neither library is imported for a run that does not use it), else None."""
    return {"MLFlowLogger": "mlflow", "WandbLogger": "wandb"}.get(type(logger).__name__)


def tracker_run_ids(trainer: pl.Trainer) -> dict[str, str]:
    """The run id of each tracker of `trainer` (rank 0: the others have none)."""
    ids = {}
    for logger in trainer.loggers:
        kind = tracker_kind(logger)
        run_id = logger.run_id if kind == "mlflow" else logger.version if kind == "wandb" else None
        if run_id:
            ids[kind] = str(run_id)
    return ids


def continue_tracker_runs(cfg: DictConfig, checkpoint: Mapping[str, Any]) -> None:
    """Point the configured trackers at the runs recorded in `checkpoint` (a resume), unless the config names
    a run itself."""
    recorded = checkpoint.get(TRACKER_RUNS_KEY) or {}
    keys = {"mlflow": "run_id", "wandb": "id"}
    with open_dict(cfg):
        for kind, run_id in recorded.items():
            node = (cfg.get("logger") or {}).get(kind)
            if node is not None and not node.get(keys[kind]):
                node[keys[kind]] = run_id


class TrackerRuns(pl.Callback):
    """Write the trackers' run ids into every checkpoint (see :func:`continue_tracker_runs`)."""

    def on_save_checkpoint(self, trainer: pl.Trainer, pl_module: pl.LightningModule, checkpoint: dict) -> None:
        checkpoint[TRACKER_RUNS_KEY] = tracker_run_ids(trainer)


def log_run_start(trainer: pl.Trainer, cfg: DictConfig, summary: Mapping[str, Any], resumed: bool) -> None:
    """Give each tracker the composed config (as its parameters, on a new run only: MLflow's parameters
    cannot change) and, as files, the config and the run's summary."""
    config = OmegaConf.to_container(cfg, resolve=True)
    for logger in trainer.loggers:
        kind = tracker_kind(logger)
        if kind is None:
            continue
        if not resumed:
            logger.log_hyperparams(config)
        if kind == "mlflow":
            logger.experiment.log_dict(logger.run_id, config, "config.yaml")
            logger.experiment.log_dict(logger.run_id, dict(summary), "summary.json")
        else:
            logger.experiment.summary.update({"run_summary": dict(summary)})


def log_run_end(trainer: pl.Trainer, report: Mapping[str, Any]) -> None:
    """Give each tracker the best checkpoint's path and the run's report (metrics.json)."""
    best = report.get("best_checkpoint") or ""
    for logger in trainer.loggers:
        kind = tracker_kind(logger)
        if kind == "mlflow":
            logger.experiment.set_tag(logger.run_id, "best_checkpoint", best)
            logger.experiment.log_dict(logger.run_id, dict(report), "metrics.json")
        elif kind == "wandb":
            logger.experiment.summary.update({"best_checkpoint": best})
