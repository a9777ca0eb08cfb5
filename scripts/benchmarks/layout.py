"""Channels-last against the default (contiguous NCHW) layout: a train step and an eval forward of cvkit's networks.

For each workload, builds the network cvkit trains (from the composed config: ``task`` and ``backbone`` as given),
and times a train step (forward, cross-entropy or the detector's losses, backward, SGD step) and an eval forward on
a fixed random batch, in each layout, alternately, ``--repeats`` times. Prints the median milliseconds and the speed-up
of channels-last (default / channels-last: above 1 is faster), and writes JSON. This is the figure behind
``channels_last=auto`` turning the layout on for CPU training.

    python scripts/benchmarks/layout.py --json docs/benchmarks_layout.json
    python scripts/benchmarks/layout.py --workloads resnet18 --steps 1 --repeats 1    # a quick check
"""

from __future__ import annotations

import argparse
import statistics
import sys
import time
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path

import torch
import torch.nn.functional as F
from omegaconf import OmegaConf
from torch import nn

sys.path.insert(0, str(Path(__file__).resolve().parent))
from common import cvkit_config, print_table, write_results

from cvkit.models.networks import build_network


@dataclass(frozen=True)
class Workload:
    """A network of cvkit's (its config overrides), its input batch (N, H, W) and its number of classes."""

    overrides: tuple[str, ...]
    batch: tuple[int, int, int]
    classes: int = 3


WORKLOADS = {
    "resnet18": Workload(("backbone=resnet",), (64, 64, 64)),
    "resnet50": Workload(("backbone=resnet", "backbone.name=resnet50"), (32, 64, 64)),
    "mobilenetv3_large_100": Workload(("backbone=mobilenet", "backbone.name=mobilenetv3_large_100"), (64, 64, 64)),
    "efficientnet_b0": Workload(("backbone=efficientnet",), (64, 64, 64)),
    "inception_v3": Workload(("backbone=inception",), (16, 96, 96)),
    "vit_tiny_patch16_224": Workload(("backbone=vit",), (16, 224, 224)),
    "unet_resnet18 (segmentation)": Workload(("task=segmentation", "backbone=resnet"), (8, 96, 128), classes=12),
    "fasterrcnn_resnet18_fpn (detection)": Workload(
        ("task=detection", "backbone=resnet", "task.model.min_size=256", "task.model.max_size=352"), (4, 480, 640)
    ),
}


def network(workload: Workload) -> tuple[nn.Module, str]:
    """The network cvkit builds for `workload`, and its task."""
    cfg = cvkit_config(*workload.overrides)
    task = cfg.task._target_.rsplit(".", 1)[-1].removesuffix("Task").lower()
    backbone, options = (OmegaConf.to_container(cfg[key], resolve=True) for key in ("backbone", "task"))
    height, width = workload.batch[1:]
    size = height if height == width else [height, width]
    return build_network(task, backbone, options.get("model", {}), workload.classes, size, False), task


def step_functions(net: nn.Module, task: str, workload: Workload, channels_last: bool) -> dict[str, Callable]:
    """A train step and an eval forward of `net` on a fixed batch, in the layout asked for."""
    torch.manual_seed(0)
    count, height, width = workload.batch
    images = torch.rand(count, 3, height, width)
    if channels_last:
        net = net.to(memory_format=torch.channels_last)
        images = images.contiguous(memory_format=torch.channels_last)
    optimizer = torch.optim.SGD(net.parameters(), lr=1e-3, momentum=0.9)
    if task == "detection":
        box = torch.tensor([[40.0, 60.0, 200.0, 220.0], [300.0, 200.0, 420.0, 330.0]])
        targets = [{"boxes": box, "labels": torch.tensor([1, 2])} for _ in range(count)]
        inputs = list(images)

        def loss() -> torch.Tensor:
            return sum(net(inputs, targets).values())
    else:
        shape = (count,) if task == "classification" else (count, height, width)
        labels = torch.randint(0, workload.classes, shape)

        def loss() -> torch.Tensor:
            return F.cross_entropy(net(images), labels)

    def train_step() -> None:
        net.train()
        optimizer.zero_grad(set_to_none=True)
        loss().backward()
        optimizer.step()

    def eval_forward() -> None:
        net.eval()
        with torch.no_grad():
            net(inputs if task == "detection" else images)

    return {"train step": train_step, "eval forward": eval_forward}


def milliseconds(run: Callable[[], None], steps: int) -> float:
    """The mean milliseconds of `run` over `steps` calls, after one warm-up call."""
    run()
    start = time.perf_counter()
    for _ in range(steps):
        run()
    return (time.perf_counter() - start) / steps * 1e3


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--workloads", nargs="+", choices=sorted(WORKLOADS), default=list(WORKLOADS))
    parser.add_argument("--steps", type=int, default=4, help="timed calls per measurement")
    parser.add_argument("--repeats", type=int, default=3)
    parser.add_argument("--json", type=Path, default=None)
    args = parser.parse_args()
    rows = []
    for name in args.workloads:
        workload = WORKLOADS[name]
        runs: dict[tuple[str, bool], list[float]] = {}
        for _ in range(args.repeats):
            for channels_last in (False, True):
                net, task = network(workload)
                for figure, run in step_functions(net, task, workload, channels_last).items():
                    runs.setdefault((figure, channels_last), []).append(milliseconds(run, args.steps))
        for figure in ("train step", "eval forward"):
            default, last = (statistics.median(runs[(figure, layout)]) for layout in (False, True))
            batch = "x".join(map(str, workload.batch))
            rows.append({"workload": name, "batch": batch, "figure": figure, "default_ms": default,
                         "channels_last_ms": last, "speedup": default / last})  # fmt: skip
    headers = ["network", "batch (N x H x W)", "figure", "default ms", "channels-last ms", "speed-up"]
    table = [
        [r["workload"], r["batch"], r["figure"], f"{r['default_ms']:.1f}", f"{r['channels_last_ms']:.1f}",
         f"{r['speedup']:.2f}"]
        for r in rows
    ]  # fmt: skip
    print_table(f"Channels-last against the default layout, {torch.get_num_threads()} threads", headers, table)
    write_results(args.json, {"machine": {"threads": torch.get_num_threads()}, "settings": vars(args), "rows": rows})


if __name__ == "__main__":
    main()
