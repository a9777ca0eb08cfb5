"""Reading what a run wrote into its run dir: metrics.json, summary.json, TensorBoard and CSV logs."""

from __future__ import annotations

import csv
import json
from pathlib import Path

from tensorboard.backend.event_processing.event_accumulator import EventAccumulator


def read_report(run_dir: Path) -> dict:
    """The whole of metrics.json: metrics, status, per-class reports, image counts, ..."""
    return json.loads((run_dir / "metrics.json").read_text())


def read_metrics(run_dir: Path) -> dict[str, float]:
    """The final metrics of metrics.json (``val/acc``, ``test/map``, ...)."""
    return read_report(run_dir)["metrics"]


def read_summary(run_dir: Path) -> dict:
    """summary.json: the run's settings as it ran (LR plan, batch sizes, world size, resumed_from, ...)."""
    return json.loads((run_dir / "summary.json").read_text())


def tensorboard_events(run_dir: Path) -> EventAccumulator:
    """The run's TensorBoard event files (logger=tensorboard), loaded."""
    events = EventAccumulator(str(run_dir / "tensorboard"))
    events.Reload()
    return events


def tensorboard_tags(run_dir: Path) -> dict:
    """The TensorBoard tags of the run, by kind: ``{"scalars": [...], "images": [...], ...}``."""
    return tensorboard_events(run_dir).Tags()


def tensorboard_scalars(run_dir: Path, tag: str) -> list[tuple[int, float]]:
    """Every ``(step, value)`` logged to TensorBoard under `tag`, in order."""
    return [(event.step, event.value) for event in tensorboard_events(run_dir).Scalars(tag)]


def csv_column(run_dir: Path, name: str) -> list[float]:
    """The values of column `name` in the CSV log (logger=csv), in the order logged, rows without it left out."""
    with open(run_dir / "csv" / "metrics.csv", newline="") as file:
        return [float(row[name]) for row in csv.DictReader(file) if row.get(name)]
