"""Training throughput of cvkit against a plain PyTorch loop on the same model, data and optimizer.

Both sides are built from one composed cvkit config and run alternately in one process (cvkit, plain,
cvkit, plain, ...). The cvkit side is the real product: cvkit's builders and ``trainer.fit`` with the
configured loggers and callbacks (TensorBoard, checkpoints, per-step LR logging, progress bar). The plain
side is a hand-written loop over the same ``train_dataloader()`` (data, sampler, transforms, batch,
workers), the same timm model and seed, the same optimizer, effective LR and per-step LambdaLR schedule,
and cross-entropy. Validation is off on both sides (``trainer.limit_val_batches=0``).

Two images/s figures per run, over epochs 2..N (epoch 1 is warm-up and not timed):
  epoch: images / wall time inside the epochs (cvkit: on_train_epoch_start .. on_train_epoch_end; plain:
         around the same loop), so what runs between epochs and the last.ckpt saved at the end are outside;
  step:  batch size / the median time from the start of one step to the start of the next (data loading,
         forward, backward, optimizer, logging and callbacks included), which ignores the few steps that
         another process's burst of work slowed down.
Each is reported per repeat, as the median and the best over repeats, and as the ratio cvkit / plain.
Other processes only ever slow a run down, so where they share the CPU for whole runs, compare the best.
The table is printed; everything, with the per-step timings, is written as JSON.

Example:
    python scripts/benchmark_train.py backbone.name=resnet18 data=digits data.image_size=32 \\
        --epochs 3 --repeats 3 --json benchmark_train.json
"""

from __future__ import annotations

import argparse
import itertools
import os
import platform
import statistics
import sys
import tempfile
import time
import warnings
from dataclasses import asdict, dataclass, field
from pathlib import Path
from types import SimpleNamespace
from typing import Any

import pytorch_lightning as pl
import torch
import torch.nn.functional as F
from hydra import compose, initialize_config_module
from omegaconf import DictConfig, OmegaConf
from rich.console import Console
from rich.table import Table

from cvkit.builders import build_datamodule, build_trainer, build_training_plan, fit_batch_to_world, task_class
from cvkit.config import validate
from cvkit.console import write_json
from cvkit.models import build_classifier
from cvkit.optim import build_optimizer
from cvkit.tasks.class_weights import class_weights_from

warnings.filterwarnings("ignore", ".*could not find the monitored key.*")  # no validation, by design
warnings.filterwarnings("ignore", ".*does not have many workers.*")
FIGURES = ("epoch", "step")


@dataclass
class Run:
    """The timings of one training run, and the 1-minute load average of the machine when it started."""

    side: str
    load: float = field(default_factory=lambda: os.getloadavg()[0])
    epochs: list[dict[str, Any]] = field(default_factory=list)  # start, seconds, images, step_starts

    def start_epoch(self) -> None:
        self.epochs.append({"start": time.perf_counter(), "step_starts": []})

    def start_step(self) -> None:
        self.epochs[-1]["step_starts"].append(time.perf_counter())

    def end_epoch(self, images: int) -> None:
        self.epochs[-1].update(seconds=time.perf_counter() - self.epochs[-1]["start"], images=images)

    def throughput(self, figure: str) -> float:
        """Images/s of epochs 2..N by `figure` (one of FIGURES)."""
        timed = self.epochs[1:]
        images = sum(epoch["images"] for epoch in timed)
        if figure == "epoch":
            return images / sum(epoch["seconds"] for epoch in timed)
        steps = [epoch["step_starts"] for epoch in timed]
        batch = images / sum(len(starts) for starts in steps)
        return batch / statistics.median(b - a for starts in steps for a, b in itertools.pairwise(starts))


class EpochTimer(pl.Callback):
    """Fills a :class:`Run` from Lightning's hooks."""

    def __init__(self) -> None:
        self.run = Run("cvkit")
        self.images = 0

    def on_train_epoch_start(self, trainer: pl.Trainer, module: pl.LightningModule) -> None:
        self.images = 0
        self.run.start_epoch()

    def on_train_batch_start(self, trainer: pl.Trainer, module: pl.LightningModule, batch: Any, batch_idx: int) -> None:
        self.run.start_step()

    def on_train_batch_end(
        self, trainer: pl.Trainer, module: pl.LightningModule, outputs: Any, batch: Any, batch_idx: int
    ) -> None:
        self.images += len(batch[1]) if batch is not None else 0

    def on_train_epoch_end(self, trainer: pl.Trainer, module: pl.LightningModule) -> None:
        self.run.end_epoch(self.images)


def run_cvkit(cfg: DictConfig) -> Run:
    """One cvkit training run, built as ``cvkit-train`` builds it (minus the start/end summaries)."""
    pl.seed_everything(cfg.seed, workers=True)
    datamodule = build_datamodule(cfg)
    trainer = build_trainer(cfg)
    timer = EpochTimer()
    trainer.callbacks.append(timer)
    fit_batch_to_world(datamodule, trainer)
    task = task_class(cfg).from_config(cfg, datamodule, build_training_plan(cfg, datamodule, trainer))
    trainer.fit(task, datamodule=datamodule)
    return timer.run


def run_plain(cfg: DictConfig) -> Run:
    """The same training as a hand-written loop (one process, fp32, no accumulation)."""
    pl.seed_everything(cfg.seed, workers=True)
    datamodule = build_datamodule(cfg)
    model = build_classifier(
        **OmegaConf.to_container(cfg.backbone, resolve=True),
        num_classes=datamodule.num_classes,
        image_size=datamodule.image_size,
    )
    world = SimpleNamespace(
        world_size=1, accumulate_grad_batches=1, max_epochs=cfg.trainer.max_epochs, limit_train_batches=None
    )
    fit_batch_to_world(datamodule, world)
    plan = build_training_plan(cfg, datamodule, world)
    loader = datamodule.train_dataloader()
    optimizer = build_optimizer(model, plan.optimizer, plan.lr.effective_lr)
    epochs = int(cfg.trainer.max_epochs)
    scheduler = torch.optim.lr_scheduler.LambdaLR(optimizer, plan.schedule.per_step(len(loader)))
    weights = class_weights_from(cfg.task.class_weights, datamodule.class_counts("train"))
    run = Run("plain")
    model.train()
    for epoch in range(epochs):
        loader.sampler.set_epoch(epoch)
        run.start_epoch()
        images = 0
        for batch in loader:
            run.start_step()
            if not batch:  # no image of it could be read
                continue
            inputs, labels = batch
            loss = F.cross_entropy(model(inputs), labels, weight=weights, label_smoothing=cfg.task.label_smoothing)
            optimizer.zero_grad(set_to_none=True)
            loss.backward()
            optimizer.step()
            scheduler.step()
            images += len(labels)
        run.end_epoch(images)
    return run


def compose_config(overrides: list[str], epochs: int) -> DictConfig:
    """cvkit's train config with the benchmark's settings, then the user's overrides."""
    fixed = [f"trainer.max_epochs={epochs}", "++trainer.limit_val_batches=0", "paths.output_dir=UNSET"]
    with initialize_config_module(config_module="cvkit.configs", version_base="1.3"):
        cfg = compose("train", overrides=fixed + overrides)
    validate(cfg)
    if cfg.channels_last or cfg.compile or str(cfg.trainer.precision) not in ("32", "32-true"):
        raise SystemExit("the plain loop covers fp32 without channels_last/compile; drop those overrides")
    if cfg.trainer.max_epochs < 2:
        raise SystemExit("needs at least 2 epochs: the first one is warm-up and is not timed")
    return cfg


def summarize(runs: list[Run]) -> dict[str, dict[str, Any]]:
    """Per figure: each side's images/s per repeat, their median and best, and the ratios cvkit / plain."""
    out = {}
    for figure in FIGURES:
        sides = {side: [run.throughput(figure) for run in runs if run.side == side] for side in ("cvkit", "plain")}
        out[figure] = {**sides, "ratio": [c / p for c, p in zip(sides["cvkit"], sides["plain"])]}
        for name, pick in (("median", statistics.median), ("best", max)):
            cvkit, plain = pick(sides["cvkit"]), pick(sides["plain"])
            out[figure][name] = {"cvkit": cvkit, "plain": plain, "ratio": cvkit / plain}
    return out


def print_table(summary: dict[str, dict[str, Any]], repeats: int) -> None:
    """One section per figure: a row per side and one of ratios; a column per repeat, median, best."""
    table = Table(title="Training images/s, epochs 2..N: cvkit vs plain PyTorch")
    for column in ("figure", "", *(f"run {i + 1}" for i in range(repeats)), "median", "best"):
        table.add_column(column, justify="right")
    for figure, values in summary.items():
        for row in ("cvkit", "plain", "ratio"):
            shown = "{:.3f}" if row == "ratio" else "{:.1f}"
            cells = [*values[row], values["median"][row], values["best"][row]]
            table.add_row(
                figure if row == "cvkit" else "", row, *(shown.format(v) for v in cells), end_section=row == "ratio"
            )
    Console(width=max(80, 10 * (repeats + 4))).print(table)


def cpu_model() -> str:
    """The CPU's model name, as lscpu shows it."""
    for line in Path("/proc/cpuinfo").read_text().splitlines() if Path("/proc/cpuinfo").exists() else []:
        if line.startswith("model name"):
            return line.split(":", 1)[1].strip()
    return platform.processor() or platform.machine()


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("overrides", nargs="*", help="cvkit config overrides, e.g. data.image_size=32")
    parser.add_argument("--epochs", type=int, default=3, help="epochs per run; the first is warm-up")
    parser.add_argument("--repeats", type=int, default=3, help="cvkit/plain pairs, alternated")
    parser.add_argument("--json", type=Path, default=Path("benchmark_train.json"))
    parser.add_argument("--threads", type=int, help="torch.set_num_threads for both sides (default: torch's)")
    args = parser.parse_args()
    if args.threads:
        torch.set_num_threads(args.threads)
    cfg = compose_config(args.overrides, args.epochs)
    runs = []
    with tempfile.TemporaryDirectory(prefix="cvkit-bench-") as root:
        for repeat in range(args.repeats):
            run_cfg = cfg.copy()
            run_cfg.paths.output_dir = f"{root}/cvkit-{repeat}"
            runs += [run_cvkit(run_cfg), run_plain(run_cfg)]
    summary = summarize(runs)
    print_table(summary, args.repeats)
    write_json(args.json, {
        "command": ["python", *sys.argv], "config": OmegaConf.to_container(cfg, resolve=True),
        "torch": torch.__version__, "lightning": pl.__version__, "threads": torch.get_num_threads(),
        "cpu_count": os.cpu_count(), "cpu_model": cpu_model(), "runs": [asdict(run) for run in runs],
        "figures": summary,
    })  # fmt: skip
    ratios = ", ".join(f"{figure} {summary[figure]['median']['ratio']:.3f}" for figure in FIGURES)
    print(f"cvkit / plain (medians): {ratios}; target >= 0.95. Wrote {args.json}")


if __name__ == "__main__":
    main()
