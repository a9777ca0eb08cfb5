"""Console and JSON output: the tables a run prints, the JSON files it writes. A leaf module: it imports
nothing of cvkit, so that every layer can report through it."""

from __future__ import annotations

import json
import os
from collections.abc import Mapping
from pathlib import Path
from typing import Any

from rich.console import Console
from rich.table import Table

console = Console(stderr=False, soft_wrap=True)


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
    """The ``{split}_images`` entries of a task's report (see :mod:`cvkit.tasks.image_counts`), by split."""
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
