"""GPU training throughput: ResNet-50 (timm, random weights) at 224 px, bf16 autocast, channels-last, SGD with
momentum, batch 256, under three trainers with the same model and settings, in one run. Start it with
``bash scripts/benchmarks/gpu.sh`` (the usage is at the top of that file).

Trainers (each row builds its model afresh; cuDNN benchmark mode on for all three):
  plain  a hand-written loop: torchvision ImageFolder + transforms.v2 in a DataLoader with pinned memory,
         non-blocking copies to the GPU, torch.autocast(bf16), channels-last, torch.optim.SGD; no host sync.
  timm   timm train.py's loop: timm.data.create_dataset + create_loader with its prefetcher (uint8 batches
         copied on a side stream and normalised on the GPU), timm.optim.create_optimizer_v2("momentum"), and
         the loss read on the host every step, as train.py does for its running average.
  cvkit  the real cvkit-train CLI in a subprocess (data=imagefolder ... trainer=gpu trainer.precision=bf16-mixed
         channels_last=true, its default logger and callbacks), timed by a callback plugged in through the
         callbacks group (gpu_plugins.StepTimer): cvkit itself logs no images/s.

Data:
  synthetic  random uint8 images made once on the GPU and normalised there each step (gpu_plugins.DeviceBatches):
             model and training-loop speed without data loading. plain and cvkit (gpu_plugins.SyntheticData as
             data._target_); timm's loop without its loader is the plain loop, so it has no synthetic row.
  jpeg       real JPEGs: an image-folder tree of symlinks, in a temporary folder, to the JPEGs under --jpeg-dir,
             repeated so that every step reads its own files; RandomResizedCrop (scale 0.5-1, cvkit's imagefolder
             default) and a horizontal flip in every loader (timm's colour jitter off), 1000 classes.

Each training row runs `warmup` untimed steps (torch.compile compiles in the first), then times `steps` steps
between two device synchronisations: images/s = images / seconds. Every training row runs with torch.compile off,
then again with it on, except cvkit on JPEGs (compile on: plain and cvkit on synthetic data, plain and timm on
JPEGs). In this process the compiled rows after the first reuse Dynamo's compiled code (same model class and
shapes); cvkit-train compiles in its own process (helped by Inductor's on-disk cache where its graphs match the
plain row's). Loader-only rows time the host batches of each trainer's loader (same workers, batch and
augmentations) without the GPU. A table is printed and everything is written as JSON (after every row).
"""

from __future__ import annotations

import argparse
import gc
import json
import os
import platform
import subprocess
import sys
import time
from collections.abc import Callable, Iterable
from dataclasses import asdict, dataclass, field
from datetime import datetime
from pathlib import Path
from tempfile import TemporaryDirectory
from typing import Any

import timm
import torch
import torch.nn.functional as F
from common import stamped
from gpu_plugins import DeviceBatches, StepTimer, synchronize
from hydra import compose, initialize_config_module
from timm.data import IMAGENET_DEFAULT_MEAN, IMAGENET_DEFAULT_STD, create_dataset, create_loader
from timm.optim import create_optimizer_v2
from torch import nn
from torch.utils.data import DataLoader
from torchvision.datasets import ImageFolder
from torchvision.transforms import v2

import cvkit
from cvkit.builders import build_datamodule

HERE = Path(__file__).resolve().parent
REPO = HERE.parents[1]
CVKIT_TRAIN = "from cvkit.cli import train_main; train_main()"  # what the cvkit-train console script runs
DRY_RUN_BACKENDS = ">=0:aot_eager"  # dry run: torch.compile traces (Dynamo, AOTAutograd) but Inductor generates no code
SCALE = (0.5, 1.0)  # RandomResizedCrop's scale in cvkit's imagefolder config; the other loaders are set to match
LR, MOMENTUM, WEIGHT_DECAY = 0.1, 0.9, 5e-4  # cvkit's optimizer=sgd at batch 256
GOAL_IMAGES_PER_S, GOAL_RATIO = 3000.0, 0.97
Timing = tuple[int, float]  # images, seconds


@dataclass(frozen=True)
class Settings:
    """Sizes of a run. ``time_limit_s``: a row starts only if the longest row so far would still end before it."""

    device: str
    model: str = "resnet50"
    image_size: int = 224
    batch_size: int = 256
    warmup: int = 30
    steps: int = 100
    loader_warmup: int = 10
    loader_steps: int = 40
    workers: int = 16
    classes: int = 1000
    time_limit_s: float = 450.0
    compile_backends: str = ""  # TORCH_COMPILE_OVERRIDE_BACKENDS; empty: torch.compile's default, Inductor
    threads: int = 0  # torch's intra-op threads in every process; 0: torch's default

    @property
    def train_images(self) -> int:
        """One epoch of the JPEG tree: every batch of a training row reads its own files."""
        return (self.warmup + self.steps) * self.batch_size


REAL = Settings(device="cuda")
DRY_RUN = Settings(
    device="cpu", image_size=32, batch_size=4, warmup=1, steps=2, loader_warmup=1, loader_steps=2, workers=2,
    classes=4, time_limit_s=240.0, compile_backends=DRY_RUN_BACKENDS, threads=1,
)  # fmt: skip
# One thread in the dry run: on a shared 2-core machine, two threads that wait for each other at every operator
# make a tiny step take seconds whenever another process holds a core.


@dataclass
class Row:
    """One measurement. ``wall_s``: the whole row (building, warm-up with any compilation, timed steps; cvkit: the
    cvkit-train process from start to exit)."""

    section: str
    trainer: str
    data: str
    compile: bool
    images: int = 0
    seconds: float = 0.0
    wall_s: float = 0.0
    error: str | None = None
    command: list[str] | None = None

    @property
    def images_per_s(self) -> float | None:
        return self.images / self.seconds if self.images and self.seconds > 0 and not self.error else None

    def as_dict(self) -> dict[str, Any]:
        return {**asdict(self), "images_per_s": self.images_per_s}


@dataclass
class Clock:
    """Elapsed time since the start, and whether a row may still start within the limit."""

    limit_s: float
    start: float = field(default_factory=time.perf_counter)
    longest_row_s: float = 0.0

    def elapsed(self) -> float:
        return time.perf_counter() - self.start

    def allows_row(self) -> bool:
        return self.elapsed() + self.longest_row_s <= self.limit_s


# Measuring.
def time_steps(
    step: Callable[[Any], int], batches: Iterable[Any], warmup: int, steps: int, device: torch.device
) -> Timing:
    """Run `warmup` untimed steps, then time `steps` more between two synchronisations of `device`."""
    batches = iter(batches)
    for _ in range(warmup):
        step(next(batches))
    synchronize(device)
    start = time.perf_counter()
    images = sum(step(next(batches)) for _ in range(steps))
    synchronize(device)
    return images, time.perf_counter() - start


def count_images(batch: Any) -> int:
    """A loader-only step: the batch is ready, count it."""
    return len(batch[1])


def train_step(model: nn.Module, optimizer: torch.optim.Optimizer, device: torch.device, read_loss: bool) -> Callable:
    """One optimizer step on a batch (copied to `device` without blocking, unless it is there); returns its size.
    `read_loss`: read the loss on the host every step (timm's train.py does)."""

    def step(batch: tuple[torch.Tensor, torch.Tensor]) -> int:
        images, labels = batch
        images = images.to(device, non_blocking=True, memory_format=torch.channels_last)
        labels = labels.to(device, non_blocking=True)
        with torch.autocast(device.type, dtype=torch.bfloat16):
            loss = F.cross_entropy(model(images), labels)
        optimizer.zero_grad(set_to_none=True)
        loss.backward()
        optimizer.step()
        if read_loss:
            loss.item()
        return len(labels)

    return step


def build_model(settings: Settings, device: torch.device, compiled: bool) -> nn.Module:
    model = timm.create_model(settings.model, pretrained=False, num_classes=settings.classes)
    model.to(device, memory_format=torch.channels_last).train()
    if compiled:
        model.compile()
    return model


def train_plain(settings: Settings, device: torch.device, batches: Iterable[Any], compiled: bool) -> Timing:
    model = build_model(settings, device, compiled)
    optimizer = torch.optim.SGD(model.parameters(), lr=LR, momentum=MOMENTUM, weight_decay=WEIGHT_DECAY)
    return time_steps(train_step(model, optimizer, device, False), batches, settings.warmup, settings.steps, device)


def train_timm(settings: Settings, device: torch.device, tree: Path, compiled: bool) -> Timing:
    model = build_model(settings, device, compiled)
    optimizer = create_optimizer_v2(model, opt="momentum", lr=LR, momentum=MOMENTUM, weight_decay=WEIGHT_DECAY)
    loader = timm_loader(settings, device, tree)
    return time_steps(train_step(model, optimizer, device, True), loader, settings.warmup, settings.steps, device)


def train_cvkit(settings: Settings, data: list[str], compiled: bool, run_dir: Path, row: Row, timeout: float) -> Timing:
    """cvkit-train in a subprocess, timed by :class:`StepTimer`; its command goes into `row`."""
    timer_file = run_dir / "step_timer.json"
    plugged = [f"+callbacks.step_timer._target_={StepTimer.__module__}.{StepTimer.__name__}"]
    plugged += [f"+callbacks.step_timer.warmup={settings.warmup}", f"+callbacks.step_timer.out={timer_file}"]
    row.command = ["cvkit-train", *data, *cvkit_run_overrides(settings, compiled), *plugged, f"hydra.run.dir={run_dir}"]
    log_file = run_dir.with_suffix(".log")
    run_dir.parent.mkdir(parents=True, exist_ok=True)
    with log_file.open("w") as log:
        command = [sys.executable, "-c", CVKIT_TRAIN, *row.command[1:]]
        result = subprocess.run(command, env=child_env(settings), stdout=log, stderr=subprocess.STDOUT, timeout=timeout)
    if result.returncode != 0:
        tail = "".join(log_file.read_text().splitlines(keepends=True)[-25:])
        raise RuntimeError(f"cvkit-train exited with {result.returncode}; the end of its output:\n{tail}")
    timing = json.loads(timer_file.read_text())
    return timing["images"], timing["seconds"]


# Configs and loaders.
def cvkit_data_overrides(settings: Settings, data: str, tree: Path) -> list[str]:
    """cvkit's data overrides for `data` ("jpeg": the symlink tree; "synthetic": gpu_plugins.SyntheticData)."""
    sizes = [f"data.image_size={settings.image_size}", f"data.batch_size={settings.batch_size}"]
    if data == "jpeg":
        folder = ["data=imagefolder", f"data.root={tree}", "data.verify_images=none"]
        return [*folder, *sizes, f"data.num_workers={settings.workers}"]
    synthetic = ["data=_classification", "+data._target_=gpu_plugins.SyntheticData"]
    counts = [f"+data.num_classes={settings.classes}", f"+data.steps={settings.warmup + settings.steps}"]
    return [*synthetic, *counts, *sizes]


def cvkit_run_overrides(settings: Settings, compiled: bool) -> list[str]:
    """The rest of a benchmark run of cvkit-train: model, precision, memory format, compile, one epoch of
    warmup + steps batches, no validation or test."""
    return [
        f"backbone.name={settings.model}",
        "backbone.pretrained=false",
        f"trainer={'gpu' if settings.device == 'cuda' else 'cpu'}",
        "trainer.precision=bf16-mixed",
        "trainer.benchmark=true",
        "trainer.max_epochs=1",
        f"trainer.limit_train_batches={settings.warmup + settings.steps}",
        "trainer.limit_val_batches=0",
        "channels_last=true",
        f"compile={str(compiled).lower()}",
        "test_after_fit=false",
        "scheduler=constant",
    ]


def cvkit_loader(settings: Settings, tree: Path) -> DataLoader:
    """cvkit's train loader of the JPEG tree, from its data module as cvkit-train builds it."""
    with initialize_config_module(config_module="cvkit.configs", version_base="1.3"):
        cfg = compose("train", overrides=cvkit_data_overrides(settings, "jpeg", tree))
    return build_datamodule(cfg).train_dataloader()


def torchvision_loader(settings: Settings, device: torch.device, tree: Path) -> DataLoader:
    """The loader a user writes: ImageFolder (PIL decode) and transforms.v2, pinned memory for the GPU."""
    transform = v2.Compose([
        v2.RandomResizedCrop(settings.image_size, scale=SCALE),
        v2.RandomHorizontalFlip(),
        v2.ToImage(),
        v2.ToDtype(torch.float32, scale=True),
        v2.Normalize(IMAGENET_DEFAULT_MEAN, IMAGENET_DEFAULT_STD),
    ])  # fmt: skip
    return DataLoader(
        ImageFolder(str(tree / "train"), transform),
        batch_size=settings.batch_size,
        shuffle=True,
        num_workers=settings.workers,
        pin_memory=device.type == "cuda",
        drop_last=True,
        persistent_workers=True,
    )


def timm_loader(settings: Settings, device: torch.device, tree: Path) -> Iterable[Any]:
    """timm's loader as train.py makes it (prefetcher on), with cvkit's augmentations: no colour jitter."""
    dataset = create_dataset("", root=str(tree), split="train", is_training=True)
    return create_loader(
        dataset,
        input_size=(3, settings.image_size, settings.image_size),
        batch_size=settings.batch_size,
        is_training=True,
        scale=SCALE,
        color_jitter=None,
        interpolation="bilinear",
        num_workers=settings.workers,
        pin_memory=device.type == "cuda",
        device=device,
        use_prefetcher=True,
    )


# The JPEG tree.
def default_jpeg_dir() -> Path:
    return Path(os.environ.get("CVKIT_DATA", REPO.parent / "shared" / "data")) / "coco128"


def build_tree(jpeg_dir: Path, root: Path, settings: Settings) -> dict[str, Any]:
    """Fill `root` with train/<class>/ and val/<class>/ symlinks to the JPEGs under `jpeg_dir`, each file used
    in turn until the train split holds ``settings.train_images``; classes take the images in turn."""
    files = sorted(p.resolve() for p in jpeg_dir.rglob("*") if p.suffix.lower() in (".jpg", ".jpeg") and p.is_file())
    if not files:
        raise SystemExit(f"--jpeg-dir {jpeg_dir}: no .jpg or .jpeg files in it or below it")
    splits = {"train": settings.train_images, "val": settings.classes}
    for split, count in splits.items():
        for index in range(count):
            source = files[index % len(files)]
            link = root / split / f"class{index % settings.classes:04d}" / f"{index:07d}{source.suffix}"
            link.parent.mkdir(parents=True, exist_ok=True)
            link.symlink_to(source)
    return {"jpeg_dir": str(jpeg_dir), "distinct_files": len(files), **{f"{s}_images": n for s, n in splits.items()}}


# The run.
def child_env(settings: Settings) -> dict[str, str]:
    """The environment of cvkit-train: this folder importable (gpu_plugins); the dry run's compile backends and
    threads."""
    env = {**os.environ, "PYTHONPATH": os.pathsep.join(filter(None, [str(HERE), os.environ.get("PYTHONPATH")]))}
    if settings.compile_backends:
        env["TORCH_COMPILE_OVERRIDE_BACKENDS"] = settings.compile_backends
    if settings.threads:
        env["OMP_NUM_THREADS"] = str(settings.threads)
    return {**env, "PYTHONUNBUFFERED": "1"}


def planned_rows() -> list[Row]:
    """Every row, in the order run: the loaders, the training rows with compile off, then with it on (all but
    cvkit on JPEGs: a fourth cvkit-train process would not fit the dry run's minute)."""
    rows = [Row("loader", trainer, "jpeg", False) for trainer in ("cvkit", "plain", "timm")]
    order = [("plain", "synthetic"), ("cvkit", "synthetic"), ("plain", "jpeg"), ("timm", "jpeg"), ("cvkit", "jpeg")]
    rows += [Row("train", trainer, data, False) for trainer, data in order]
    return rows + [Row("train", trainer, data, True) for trainer, data in order[:-1]]


@dataclass
class Bench:
    """What every row runs with."""

    settings: Settings
    device: torch.device
    tree: Path
    clock: Clock

    def measure(self, row: Row) -> Timing:
        if row.section == "loader":
            return self.measure_loader(row.trainer)
        if row.trainer == "cvkit":
            return self.measure_cvkit(row)
        if row.trainer == "timm":
            return train_timm(self.settings, self.device, self.tree, row.compile)
        return train_plain(self.settings, self.device, self.plain_batches(row.data), row.compile)

    def measure_loader(self, trainer: str) -> Timing:
        settings, host = self.settings, torch.device("cpu")
        loaders = {
            "cvkit": lambda: cvkit_loader(settings, self.tree),
            "plain": lambda: torchvision_loader(settings, host, self.tree),
            "timm": lambda: timm_loader(settings, host, self.tree).loader,  # its host DataLoader (uint8 batches)
        }
        return time_steps(count_images, loaders[trainer](), settings.loader_warmup, settings.loader_steps, host)

    def measure_cvkit(self, row: Row) -> Timing:
        run_dir = self.tree.parent / "cvkit-runs" / f"{row.data}-compile-{'on' if row.compile else 'off'}"
        timeout = max(self.settings.time_limit_s - self.clock.elapsed(), 30.0)
        data = cvkit_data_overrides(self.settings, row.data, self.tree)
        return train_cvkit(self.settings, data, row.compile, run_dir, row, timeout)

    def plain_batches(self, data: str) -> Iterable[Any]:
        settings = self.settings
        if data == "jpeg":
            return torchvision_loader(settings, self.device, self.tree)
        sizes = (settings.batch_size, settings.image_size, settings.classes, settings.warmup + settings.steps)
        return DeviceBatches(*sizes, self.device, IMAGENET_DEFAULT_MEAN, IMAGENET_DEFAULT_STD)

    def run(self, row: Row) -> Row:
        """Measure `row` unless the time limit forbids; a failure is recorded in the row and the run goes on."""
        if not self.clock.allows_row():
            row.error = f"skipped: the next row could end after the {self.clock.limit_s:.0f} s limit"
            return row
        start = time.perf_counter()
        try:
            row.images, row.seconds = self.measure(row)
        except Exception as err:  # reported in the table and the JSON; the other rows still run
            row.error = f"{type(err).__name__}: {err}"
        row.wall_s = time.perf_counter() - start
        self.clock.longest_row_s = max(self.clock.longest_row_s, row.wall_s)
        gc.collect()
        if self.device.type == "cuda":
            torch.cuda.empty_cache()
        return row


# Reporting.
def describe(row: Row) -> str:
    return f"{row.section} | {row.trainer} | {row.data} | {'on' if row.compile else 'off'}"


def section_of(row: Row) -> str:
    return "loader only" if row.section == "loader" else f"training, compile {'on' if row.compile else 'off'}"


def section_times(rows: list[Row]) -> dict[str, float]:
    """Seconds spent on each section's rows."""
    times: dict[str, float] = {}
    for row in rows:
        times[section_of(row)] = times.get(section_of(row), 0.0) + row.wall_s
    return times


def ratios(rows: list[Row]) -> dict[str, float]:
    """cvkit / plain images/s for each data and compile setting with both measured."""
    speed = {(r.trainer, r.data, r.compile): r.images_per_s for r in rows if r.section == "train"}
    out = {}
    for (trainer, data, compiled), cvkit_speed in speed.items():
        plain_speed = speed.get(("plain", data, compiled))
        if trainer == "cvkit" and cvkit_speed and plain_speed:
            out[f"{data}, compile {'on' if compiled else 'off'}"] = cvkit_speed / plain_speed
    return out


def markdown_table(rows: list[Row]) -> str:
    header = "| section | trainer | data | compile | images | timed s | images/s | row wall s |"
    lines = [header, "| --- | --- | --- | --- | ---: | ---: | ---: | ---: |"]
    for row in rows:
        speed = f"{row.images_per_s:.1f}" if row.images_per_s else (row.error or "-").splitlines()[0][:80]
        lines.append(f"| {describe(row)} | {row.images} | {row.seconds:.2f} | {speed} | {row.wall_s:.1f} |")
    return "\n".join(lines)


def summary_lines(rows: list[Row], dry_run: bool) -> list[str]:
    """Time per section, and the run against the goals."""
    note = " (dry run: tiny sizes on the CPU, not a figure)" if dry_run else ""
    lines = [f"{section}: {seconds:.1f} s" for section, seconds in section_times(rows).items()]
    synthetic = [r.images_per_s for r in rows if r.section == "train" and r.data == "synthetic" and r.images_per_s]
    best = max(synthetic, default=0.0)
    lines.append(
        f"best synthetic training images/s: {best:.1f}; goal >= {GOAL_IMAGES_PER_S:.0f} on an H100-class GPU{note}"
    )
    lines += [
        f"cvkit / plain, {name}: {value:.3f} (goal >= {GOAL_RATIO}){note}" for name, value in ratios(rows).items()
    ]
    return lines


def device_name(device: torch.device) -> str:
    if device.type == "cuda":
        return torch.cuda.get_device_name(device)
    return f"CPU ({platform.machine()}, {os.cpu_count()} cores)"


def run_facts(args: argparse.Namespace, settings: Settings, device: torch.device, jpeg: dict[str, Any]) -> dict:
    """What the JSON says besides the rows: the date, commit, machine (and the device used), versions (and torch's
    CUDA and cuDNN), settings and what is measured."""
    facts = {
        "dry_run": args.dry_run,
        "machine": {"device": device_name(device)},
        "versions": {"torch_cuda": torch.version.cuda, "cudnn": torch.backends.cudnn.version()},
        "cvkit": str(Path(cvkit.__file__).parent),
        "settings": asdict(settings),
        "jpeg": jpeg,
        "measures": "images/s = images / seconds of the timed steps after the warm-up steps, between two device "
        "synchronisations; cvkit rows are timed inside the cvkit-train process by a callback (gpu_plugins.StepTimer), "
        "their wall_s is the whole process (start-up, warm-up, compile, steps, checkpoint)",
    }
    return stamped(facts)


def write_json(path: Path, facts: dict[str, Any], rows: list[Row], clock: Clock) -> None:
    path.parent.mkdir(parents=True, exist_ok=True)
    content = {**facts, "rows": [r.as_dict() for r in rows], "ratios": ratios(rows), "sections_s": section_times(rows)}
    path.write_text(json.dumps({**content, "elapsed_s": clock.elapsed()}, indent=2) + "\n")


def parse_args() -> argparse.Namespace:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--dry-run", action="store_true", help="tiny sizes on the CPU: checks every path, no figures")
    parser.add_argument("--jpeg-dir", type=Path, default=default_jpeg_dir(), help="any folder of JPEGs (recursive)")
    parser.add_argument("--json", type=Path, help="results file (default: outputs/benchmarks/gpu-<time>.json)")
    return parser.parse_args()


def main() -> None:
    args = parse_args()
    settings = DRY_RUN if args.dry_run else REAL
    if not args.dry_run and not torch.cuda.is_available():
        raise SystemExit("gpu benchmark: torch sees no CUDA device; check it on the CPU with --dry-run")
    if not args.jpeg_dir.is_dir():
        raise SystemExit(f"--jpeg-dir {args.jpeg_dir} is not a folder: pass any folder of JPEGs, or set CVKIT_DATA")
    kind = "gpu-dry-run" if args.dry_run else "gpu"
    json_path = args.json or REPO / "outputs" / "benchmarks" / f"{kind}-{datetime.now():%Y%m%d-%H%M%S}.json"
    if settings.compile_backends:  # a debug setting of recent torch only: left alone in the real run
        torch._dynamo.config.debug_backend_override = settings.compile_backends
    if settings.threads:
        torch.set_num_threads(settings.threads)
    torch.backends.cudnn.benchmark = True
    device, clock = torch.device(settings.device), Clock(settings.time_limit_s)
    rows: list[Row] = []
    with TemporaryDirectory(prefix="cvkit-gpu-bench-") as work:
        tree = Path(work) / "jpeg-tree"
        facts = run_facts(args, settings, device, build_tree(args.jpeg_dir, tree, settings))
        versions = ", ".join(f"{name} {facts['versions'][name]}" for name in ("torch", "torch_cuda", "timm"))
        used = facts["machine"]["device"]
        print(f"[{clock.elapsed():6.1f} s] {used}; {versions}; {facts['jpeg']}; writing {json_path}")
        bench = Bench(settings, device, tree, clock)
        for row in planned_rows():
            rows.append(bench.run(row))
            shown = f"{row.images_per_s:.1f} images/s" if row.images_per_s else row.error
            print(f"[{clock.elapsed():6.1f} s] {describe(row)}: {shown} (row {row.wall_s:.1f} s)", flush=True)
            write_json(json_path, facts, rows, clock)
    print("\n" + markdown_table(rows) + "\n")
    print("\n".join(summary_lines(rows, args.dry_run)))
    print(f"elapsed {clock.elapsed():.1f} s; wrote {json_path}")
    if any(row.error for row in rows):
        sys.exit(1)


if __name__ == "__main__":
    main()
