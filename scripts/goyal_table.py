"""Goyal et al. 2017's large-minibatch table, in miniature, through cvkit's own training code.

Four settings, the same number of epochs, several seeds each (B = small batch, k = batch multiplier):
  (a) batch B at the base LR                       (paper: 256 at 0.1             -> 23.60% top-1 error)
  (b) batch kB at the same LR, no scaling          (paper: 8k at 0.1              -> 41.67%)
  (c) batch kB, LR x k (linear scaling), no warmup (paper: 8k at 3.2, no warmup   -> 24.84%)
  (d) as (c) with gradual warmup from the base LR  (paper: 8k at 3.2, 5-ep warmup -> 23.74%)
Each run is composed from cvkit's configs with Hydra's compose API and trained by ``cvkit.train.train``
into its own folder under ``--out``. The error is 1 - top-1 accuracy of the final weights (no checkpoint
selection) on the test split (for digits, 20% of the images held out by ``data.test_fraction``). Prints a table,
writes ``--json`` (with the date, commit, machine and versions), plots the LR of every step (from each run's
TensorBoard events). See docs/large_batch.md.

    python scripts/goyal_table.py --out outputs/goyal_table --json docs/large_batch.json --plot docs/large_batch_lr.png
    python scripts/goyal_table.py --dataset fashion_mnist --jobs 2 --out outputs/goyal_fashion \
        --json docs/large_batch_fashion_mnist.json --plot docs/large_batch_fashion_mnist_lr.png
    python scripts/goyal_table.py --quick   # the smaller setting of tests/test_goyal_table.py
``--dataset`` (digits, fashion_mnist) picks the data and its default grid; extra arguments are Hydra overrides
for every run, e.g. ``data=imagefolder data.root=../shared/data/bccd_cells``.
"""

from __future__ import annotations

import argparse
import contextlib
import json
import logging
import multiprocessing
import os
import shutil
import statistics
import sys
from collections.abc import Iterator
from concurrent.futures import ProcessPoolExecutor, as_completed
from dataclasses import asdict, dataclass, field, replace
from pathlib import Path
from typing import Any

import torch
from hydra import compose, initialize_config_module
from omegaconf import DictConfig, open_dict
from rich.console import Console
from rich.table import Table

from cvkit.train import train

# The results writer the benchmarks share (scripts/ is no package); the path entry goes again, since tests import
# this script into their own process, where the benchmarks' module names must not shadow others.
sys.path.insert(0, str(Path(__file__).resolve().parent / "benchmarks"))
from common import write_results

sys.path.pop(0)

SETTINGS = {
    "a": "batch B, lr",
    "b": "batch kB, lr (no scaling)",
    "c": "batch kB, k x lr, no warmup",
    "d": "batch kB, k x lr, gradual warmup",
}
# Small and quick on a CPU: a ResNet-10 (timm's resnet18 with one block per stage) of half width, 1.25 M
# parameters; no checkpoints, so that the test split sees the final weights.
BASE_OVERRIDES = [
    "data.num_workers=0",
    "backbone=resnet",
    "backbone.name=resnet18",
    "+backbone.layers=[1,1,1,1]",
    "+backbone.channels=[32,64,128,256]",
    "scheduler=multistep",
    "~callbacks.model_checkpoint",
    "~callbacks.checkpoints",
    "~callbacks.progress_bar",
    "trainer.enable_progress_bar=false",
    "+trainer.enable_checkpointing=false",
]
# The data of each --dataset ("{root}": --data-root). Digits (8x8, at 16 px) has no test split of its own: one is
# held out (stratified, fixed seed). Fashion-MNIST is scored on its official 10k test images.
DATASETS = {
    "digits": ["data=digits", "data.image_size=16", "data.test_fraction=0.2"],
    "fashion_mnist": ["data=fashion_mnist", "data.root={root}", "data.image_size=28"],
}

# Quiet during the runs: Lightning's and cvkit's info messages (each run's tables still go to its run.log).
QUIET_LOGGERS = ("pytorch_lightning", "lightning_fabric", "lightning.pytorch", "lightning.fabric", "cvkit")


@dataclass(frozen=True)
class Grid:
    """The experiment: small batch, multiplier k, base LR (for the small batch), epochs, warmup, seeds."""

    batch: int = 16
    k: int = 8
    lr: float = 0.025
    epochs: int = 12
    warmup_epochs: float = 1.0
    seeds: tuple[int, ...] = (0, 1, 2, 3, 4)
    accumulate: bool = True
    dataset: str = "digits"
    data_root: str = os.environ.get("CVKIT_DATA", str(Path(__file__).resolve().parents[2] / "shared" / "data"))
    overrides: tuple[str, ...] = field(default_factory=tuple)

    def milestones(self) -> list[float]:
        """Goyal's x0.1 steps at epochs 30, 60, 80 of 90, scaled to `epochs`."""
        return [round(self.epochs * m / 90, 2) for m in (30, 60, 80)]


# The test's setting: about 1.5-2 minutes on a busy 2-core CPU.
QUICK = Grid(k=4, epochs=6, warmup_epochs=0.5, seeds=(0, 1), accumulate=False)
# Each dataset's default grid. Fashion-MNIST: Goyal's 32 images per worker, k = 8 workers simulated by
# accumulating 8 batches of 32 (BatchNorm over 32, as on 8 GPUs); 211 optimizer steps per epoch at batch 256.
DEFAULT_GRIDS = {
    "digits": Grid(),
    "fashion_mnist": Grid(
        batch=32, k=8, lr=0.025, epochs=12, warmup_epochs=1.0, seeds=(0, 1, 2), dataset="fashion_mnist"
    ),
}


def override_key(override: str) -> str:
    """The config key an override sets: ``+backbone.layers=[1,1]`` -> ``backbone.layers``."""
    return override.split("=", 1)[0].lstrip("+~")


def setting_overrides(grid: Grid, setting: str, seed: int) -> list[str]:
    """Hydra overrides of one run of `setting` ('a'..'d'); the grid's own overrides replace the base ones."""
    big = setting != "a"
    replaced = {override_key(o) for o in grid.overrides}
    data = [] if "data" in replaced else [o.format(root=grid.data_root) for o in DATASETS[grid.dataset]]
    return [
        *(o for o in [*BASE_OVERRIDES, *data] if override_key(o) not in replaced),
        f"seed={seed}",
        f"trainer.max_epochs={grid.epochs}",
        f"scheduler.milestones=[{','.join(map(str, grid.milestones()))}]",
        f"optimizer.lr={grid.lr}",
        f"optimizer.base_batch_size={grid.batch}",
        f"data.batch_size={grid.batch if grid.accumulate or not big else grid.batch * grid.k}",
        f"trainer.accumulate_grad_batches={grid.k if grid.accumulate and big else 1}",
        f"optimizer.lr_scaling={'linear' if setting in 'cd' else 'none'}",
        f"scheduler.warmup_epochs={grid.warmup_epochs if setting == 'd' else 0}",
        f"scheduler.warmup_start_factor={1 / grid.k}",
        *grid.overrides,
    ]


def compose_config(out_dir: Path, overrides: list[str]) -> DictConfig:
    """cvkit's composed training config for `overrides`, writing into `out_dir`, on the CPU."""
    with initialize_config_module(config_module="cvkit.configs", version_base="1.3"):
        cfg = compose(config_name="train", overrides=["trainer.accelerator=cpu", *overrides])
    with open_dict(cfg):
        cfg.paths.output_dir = str(out_dir)
    return cfg


def lr_curve(run_dir: Path) -> tuple[list[float], list[float]]:
    """(epochs, LRs) of every optimizer step, from the run's TensorBoard events (tag ``lr``)."""
    from tensorboard.backend.event_processing.event_accumulator import EventAccumulator

    from cvkit.checkpoints import SCHEDULE_KEY, SavedRun

    events = EventAccumulator(str(run_dir / "tensorboard"), size_guidance={"scalars": 0}).Reload()
    # The optimizer steps an epoch had, as the run's schedule counted them (Lightning's count of the loader's).
    last = SavedRun.read(run_dir / "checkpoints" / "last.ckpt", "run")
    steps_per_epoch = last.content[SCHEDULE_KEY]["steps_per_epoch"]
    scalars = events.Scalars("lr")
    return [s.step / steps_per_epoch for s in scalars], [s.value for s in scalars]


def run_one(grid: Grid, setting: str, seed: int, out: Path) -> dict[str, Any]:
    """Train one run (its output, Lightning's included, goes to ``run.log`` in its folder); its result."""
    run_dir = out / f"{setting}_seed{seed}"
    shutil.rmtree(run_dir, ignore_errors=True)  # a fresh run: no event files of an earlier one
    run_dir.mkdir(parents=True)
    cfg = compose_config(run_dir, setting_overrides(grid, setting, seed))
    with open(run_dir / "run.log", "w") as log, contextlib.redirect_stdout(log), contextlib.redirect_stderr(log):
        metrics, _ = train(cfg)
    split = "test" if "test/acc" in metrics else "val"  # data given by overrides may lack a test split
    summary = json.loads((run_dir / "summary.json").read_text())
    epochs, lrs = lr_curve(run_dir)
    return {
        "setting": setting,
        "seed": seed,
        "split": split,
        "error": 1.0 - float(metrics[f"{split}/acc"]),
        "global_batch": summary["global_batch_size"],
        "peak_lr": summary["effective_lr"],
        "run_dir": str(run_dir),
        "lr_curve": {"epoch": epochs, "lr": lrs},
    }


@contextlib.contextmanager
def quiet(threads: int) -> Iterator[None]:
    """`threads` torch threads and quiet loggers, both restored afterwards."""
    previous = torch.get_num_threads()
    torch.set_num_threads(threads)
    loggers = [logging.getLogger(name) for name in QUIET_LOGGERS]
    levels = [logger.level for logger in loggers]
    for logger in loggers:
        logger.setLevel(logging.WARNING)
    try:
        yield
    finally:
        torch.set_num_threads(previous)
        for logger, level in zip(loggers, levels):
            logger.setLevel(level)


def run_quietly(grid: Grid, setting: str, seed: int, out: Path, threads: int) -> dict[str, Any]:
    """`run_one` under `quiet` (the unit of work of a parallel job)."""
    with quiet(threads):
        return run_one(grid, setting, seed, out)


def run_grid(grid: Grid, out: Path, threads: int = 1, jobs: int = 1) -> list[dict[str, Any]]:
    """All settings x seeds, `jobs` at a time (each in its own process when more than one), each with `threads`
    torch threads; the runs in (seed, setting) order."""
    work = [(setting, seed) for seed in grid.seeds for setting in SETTINGS]
    runs = []

    def report(run: dict[str, Any]) -> None:
        print(
            f"({run['setting']}) seed {run['seed']}: batch {run['global_batch']}, peak lr {run['peak_lr']:.4g}, "
            f"{run['split']} error {100 * run['error']:.2f}%",
            flush=True,
        )
        runs.append(run)

    if jobs == 1:
        for setting, seed in work:
            report(run_quietly(grid, setting, seed, out, threads))
    else:  # spawned, not forked: each run starts from a clean interpreter, as one cvkit-train would
        with ProcessPoolExecutor(jobs, mp_context=multiprocessing.get_context("spawn")) as pool:
            futures = [pool.submit(run_quietly, grid, setting, seed, out, threads) for setting, seed in work]
            for future in as_completed(futures):
                report(future.result())
    return sorted(runs, key=lambda run: work.index((run["setting"], run["seed"])))


def aggregate(runs: list[dict[str, Any]]) -> dict[str, dict[str, Any]]:
    """Per setting: mean and standard deviation (over seeds) of the error, batch and peak LR."""
    table = {}
    for setting, label in SETTINGS.items():
        mine = [r for r in runs if r["setting"] == setting]
        errors = [r["error"] for r in mine]
        table[setting] = {
            "label": label,
            "global_batch": mine[0]["global_batch"],
            "peak_lr": mine[0]["peak_lr"],
            "error_mean": statistics.fmean(errors),
            "error_std": statistics.stdev(errors) if len(errors) > 1 else 0.0,
            "errors": errors,
        }
    return table


def print_table(table: dict[str, dict[str, Any]], grid: Grid, split: str) -> None:
    """The aggregated table, with rich."""
    title = f"k={grid.k}, {grid.epochs} epochs, {len(grid.seeds)} seeds: {split} error (final weights)"
    out = Table(title=title)
    for column in ("", "setting", "global batch", "peak lr", "error % (mean ± std)", "per seed %"):
        out.add_column(column)
    for setting, row in table.items():
        spread = f"{100 * row['error_mean']:.2f} ± {100 * row['error_std']:.2f}"
        seeds = ", ".join(f"{100 * e:.2f}" for e in row["errors"])
        out.add_row(f"({setting})", row["label"], str(row["global_batch"]), f"{row['peak_lr']:.4g}", spread, seeds)
    Console().print(out)


def plot_lr(runs: list[dict[str, Any]], path: Path) -> None:
    """The LR of every step against epochs, one curve per setting (its first seed's run), to a PNG."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    fig, ax = plt.subplots(figsize=(6.4, 3.6), dpi=100)
    styles = {"a": ("C0", "-", 3.0), "b": ("C1", "--", 1.5), "c": ("C2", "-", 3.0), "d": ("C3", "--", 1.5)}
    for setting in SETTINGS:
        run = next(r for r in runs if r["setting"] == setting)
        color, style, width = styles[setting]
        warmup = " after gradual warmup" if setting == "d" else ""
        name = f"({setting}) batch {run['global_batch']}, lr {run['peak_lr']:.3g}{warmup}"
        ax.step(
            run["lr_curve"]["epoch"], run["lr_curve"]["lr"], where="post", color=color, ls=style, lw=width, label=name
        )
    ax.set(xlabel="epoch", ylabel="learning rate", yscale="log", title="LR of every optimizer step")
    ax.grid(alpha=0.3)
    ax.legend(fontsize=8)
    fig.tight_layout()
    path.parent.mkdir(parents=True, exist_ok=True)
    fig.savefig(path)
    plt.close(fig)


def parse_args(argv: list[str] | None) -> tuple[argparse.Namespace, Grid]:
    """The command line and the Grid it describes (``--quick`` starts from QUICK)."""
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("overrides", nargs="*", help="Hydra overrides for every run")
    parser.add_argument("--dataset", choices=sorted(DATASETS), default="digits", help="its default grid and data")
    parser.add_argument("--data-root", help="the folder holding FashionMNIST/ (default $CVKIT_DATA or ../shared/data)")
    parser.add_argument("--quick", action="store_true", help=f"smaller setting (digits): {QUICK}")
    parser.add_argument("--batch", type=int, help="small batch B (also optimizer.base_batch_size)")
    parser.add_argument("--k", type=int, help="batch multiplier k")
    parser.add_argument("--lr", type=float, help="base LR for batch B")
    parser.add_argument("--epochs", type=int)
    parser.add_argument("--warmup-epochs", type=float, help="gradual warmup of (d)")
    parser.add_argument("--seeds", type=int, help="number of seeds (0, 1, ...)")
    no_accumulate = "the big batch as one batch of kB (BatchNorm over kB), not k accumulated batches of B"
    parser.add_argument("--no-accumulate", dest="accumulate", action="store_false", default=None, help=no_accumulate)
    parser.add_argument("--threads", type=int, default=1, help="torch threads per run (1 is fastest on 2 cores)")
    parser.add_argument("--jobs", type=int, default=1, help="runs at a time, each in its own process")
    parser.add_argument("--out", type=Path, default=Path("outputs/goyal_table"), help="run folders go here")
    parser.add_argument("--json", type=Path, help="write runs and table here")
    parser.add_argument("--plot", type=Path, help="LR curves PNG (default OUT/lr_curves.png)")
    args = parser.parse_args(argv)
    if args.quick and args.dataset != "digits":
        parser.error("--quick is a digits setting; leave out --dataset or --quick")
    grid = QUICK if args.quick else DEFAULT_GRIDS[args.dataset]
    names = ("batch", "k", "lr", "epochs", "warmup_epochs", "accumulate", "data_root")
    given = {name: getattr(args, name) for name in names}
    given["seeds"] = tuple(range(args.seeds)) if args.seeds else None
    grid = replace(grid, overrides=tuple(args.overrides), **{k: v for k, v in given.items() if v is not None})
    return args, grid


def main(argv: list[str] | None = None) -> dict[str, Any]:
    """Run the grid, print the table, write the JSON and the plot; returns what the JSON holds."""
    args, grid = parse_args(argv)
    runs = run_grid(grid, args.out, args.threads, args.jobs)
    table = aggregate(runs)
    split = runs[0]["split"]
    print_table(table, grid, split)
    plot_lr(runs, args.plot or args.out / "lr_curves.png")
    result = {"grid": asdict(grid), "split": split, "table": table, "runs": runs}
    # The LR curves stay in the runs' event files; the JSON records the date, commit, machine and versions too.
    machine = {"torch_threads_per_run": args.threads, "runs_at_a_time": args.jobs}
    written = {**result, "runs": [{k: v for k, v in r.items() if k != "lr_curve"} for r in runs]}
    write_results(args.json, {**written, "machine": machine})
    return result


if __name__ == "__main__":
    main(sys.argv[1:])
