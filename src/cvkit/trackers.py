"""Experiment trackers (``logger=mlflow``, ``logger=wandb``, Lightning's loggers): the run's config, summary
and best checkpoint logged to them, and their run ids kept in every checkpoint, so that a resumed run
continues the same tracker run instead of starting another.

Lightning creates a tracker run on rank 0 only, so a DDP job is one tracker run.
"""

from __future__ import annotations

from collections.abc import Callable, Mapping
from dataclasses import dataclass
from typing import Any

import pytorch_lightning as pl
from omegaconf import DictConfig, OmegaConf, open_dict

from cvkit.checkpoints import save_tracker_runs


def _mlflow_start(logger: Any, config: dict, summary: dict) -> None:
    logger.experiment.log_dict(logger.run_id, config, "config.yaml")
    logger.experiment.log_dict(logger.run_id, summary, "summary.json")


def _mlflow_end(logger: Any, report: dict) -> None:
    logger.experiment.set_tag(logger.run_id, "best_checkpoint", report.get("best_checkpoint") or "")
    logger.experiment.log_dict(logger.run_id, report, "metrics.json")


def _wandb_start(logger: Any, config: dict, summary: dict) -> None:
    logger.experiment.summary.update({"run_summary": summary})


def _wandb_end(logger: Any, report: dict) -> None:
    logger.experiment.summary.update({"best_checkpoint": report.get("best_checkpoint") or ""})


@dataclass(frozen=True)
class Tracker:
    """How cvkit talks to one tracker's Lightning logger: the config key naming its run, the run's id, and
    what it logs at the start (besides the config as parameters) and at the end of a run."""

    name: str  # the logger config's key: logger.<name>
    run_key: str  # logger.<name>.<run_key> continues a run
    run_id: Callable[[Any], str | None]
    on_start: Callable[[Any, dict, dict], None]
    on_end: Callable[[Any, dict], None]


# By Lightning logger class name, so that neither library is imported for a run that does not use it.
TRACKERS = {
    "MLFlowLogger": Tracker("mlflow", "run_id", lambda logger: logger.run_id, _mlflow_start, _mlflow_end),
    "WandbLogger": Tracker("wandb", "id", lambda logger: logger.version, _wandb_start, _wandb_end),
}


def trackers_of(trainer: pl.Trainer) -> list[tuple[Tracker, Any]]:
    """The trainer's tracker loggers, each with how to talk to it."""
    found = ((TRACKERS.get(type(logger).__name__), logger) for logger in trainer.loggers)
    return [(tracker, logger) for tracker, logger in found if tracker is not None]


def tracker_run_ids(trainer: pl.Trainer) -> dict[str, str]:
    """The run id of each tracker of `trainer` (rank 0: the others have none)."""
    ids = {tracker.name: tracker.run_id(logger) for tracker, logger in trackers_of(trainer)}
    return {name: str(run_id) for name, run_id in ids.items() if run_id}


def continue_tracker_runs(cfg: DictConfig, recorded: Mapping[str, str]) -> None:
    """Point the configured trackers at the runs `recorded` in the checkpoint a run resumes from (``{"mlflow":
    run id, ...}``), unless the config names a run itself."""
    run_keys = {tracker.name: tracker.run_key for tracker in TRACKERS.values()}
    with open_dict(cfg):
        for name, run_id in recorded.items():
            node = (cfg.get("logger") or {}).get(name)
            if node is not None and name in run_keys and not node.get(run_keys[name]):
                node[run_keys[name]] = run_id


class TrackerRuns(pl.Callback):
    """Write the trackers' run ids into every checkpoint (see :func:`continue_tracker_runs`)."""

    def on_save_checkpoint(self, trainer: pl.Trainer, pl_module: pl.LightningModule, checkpoint: dict) -> None:
        save_tracker_runs(checkpoint, tracker_run_ids(trainer))


def log_run_start(trainer: pl.Trainer, cfg: DictConfig, summary: Mapping[str, Any], resumed: bool) -> None:
    """Give each tracker the composed config (as its parameters, on a new run only: MLflow's parameters
    cannot change) and the config and the run's summary (MLflow: as files; W&B: in its summary)."""
    config = OmegaConf.to_container(cfg, resolve=True)
    for tracker, logger in trackers_of(trainer):
        if not resumed:
            logger.log_hyperparams(config)
        tracker.on_start(logger, config, dict(summary))


def log_run_end(trainer: pl.Trainer, report: Mapping[str, Any]) -> None:
    """Give each tracker the best checkpoint's path (and MLflow the run's metrics.json)."""
    for tracker, logger in trackers_of(trainer):
        tracker.on_end(logger, dict(report))
