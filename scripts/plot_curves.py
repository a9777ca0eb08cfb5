"""A run's learning curves as one PNG: per-epoch metrics from its CSV log (``logger=csv``, or a list that
includes csv), one panel for the losses and one for the other metrics.

    python scripts/plot_curves.py outputs/run --metrics train/loss_epoch val/map_50 val/segm_map_50 \
      --title "Mask R-CNN, 4 coco128 images" --out docs/instance_segmentation_curve.png
"""

from __future__ import annotations

import argparse
import csv
from pathlib import Path

from matplotlib.backends.backend_agg import FigureCanvasAgg
from matplotlib.figure import Figure


def epoch_values(metrics_csv: Path, name: str) -> tuple[list[int], list[float]]:
    """(epochs counted from 1, values) of the column `name`, rows without it left out."""
    with metrics_csv.open(newline="") as file:
        rows = [row for row in csv.DictReader(file) if row.get(name)]
    if not rows:
        raise SystemExit(f"{metrics_csv} has no values of {name!r}")
    return [int(row["epoch"]) + 1 for row in rows], [float(row[name]) for row in rows]


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("run_dir", type=Path, help="a run dir with csv/metrics.csv")
    parser.add_argument("--metrics", nargs="+", required=True, help="columns to draw; names with 'loss' go left")
    parser.add_argument("--title", default="")
    parser.add_argument("--out", type=Path, required=True)
    args = parser.parse_args()
    metrics_csv = args.run_dir / "csv" / "metrics.csv"
    figure = Figure(figsize=(10, 4), dpi=100)
    canvas = FigureCanvasAgg(figure)
    losses, scores = figure.subplots(1, 2)
    for name in args.metrics:
        axes = losses if "loss" in name else scores
        axes.plot(*epoch_values(metrics_csv, name), marker=".", label=name)
    for axes, label in ((losses, "loss"), (scores, "metric")):
        axes.set(xlabel="epoch", ylabel=label)
        axes.grid(alpha=0.3)
        axes.legend()
    figure.suptitle(args.title)
    figure.tight_layout()
    canvas.print_png(str(args.out))
    print(f"wrote {args.out}")


if __name__ == "__main__":
    main()
