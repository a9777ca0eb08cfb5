"""Inference speed of backbones or trained checkpoints: PyTorch eager, torch.compile and ONNX Runtime.

For each model, backend and batch size: ``--warmup`` untimed runs (torch.compile compiles in the first;
its time is reported apart), then ``--runs`` timed forward passes of one random batch. Reported: the
median and 95th-percentile latency per batch, and images/s = batch size / median latency. On a GPU the
backends also include AMP (autocast) and channels-last eager. The thread count is set once (--threads,
default: torch's) and recorded; ONNX Runtime gets the same number of intra-op threads.

Models: ``--backbone FAMILY`` (the family's default variant from configs/backbone, as a classifier for
1000 classes; ``unet`` as a segmenter for 21 classes) or ``--backbone FAMILY:NAME``; or ``--checkpoint
PATH`` of a cvkit classifier or segmenter at its recorded input size.

Example:
    python scripts/benchmarks/inference.py --backbone resnet mobilenet --batch-sizes 1 8 \\
        --backends eager onnxruntime --json benchmark_inference.json
"""

from __future__ import annotations

import argparse
import statistics
import sys
import tempfile
import time
import warnings
from collections.abc import Callable
from importlib.resources import files
from pathlib import Path
from typing import Any

import numpy as np
import onnxruntime
import torch
from omegaconf import OmegaConf
from rich.console import Console
from rich.table import Table
from torch import nn

sys.path.insert(0, str(Path(__file__).resolve().parent))
from common import cpu_name, write_results

import cvkit
from cvkit.data.transforms import parse_image_size
from cvkit.inference.export import write_onnx
from cvkit.inference.kinds import inference_kind
from cvkit.models import build_network
from cvkit.models.segmenters import UNet

CPU_BACKENDS = ("eager", "compile", "onnxruntime")
GPU_BACKENDS = ("eager", "amp", "channels_last", "compile")


def backbone_model(spec: str, image_size: int) -> tuple[str, nn.Module, tuple[int, int]]:
    """The model of ``FAMILY`` or ``FAMILY:NAME``, untrained and without downloaded weights."""
    family, _, name = spec.partition(":")
    path = files("cvkit.configs") / "backbone" / f"{family}.yaml"
    if not path.is_file():
        raise SystemExit(f"--backbone {spec}: no configs/backbone/{family}.yaml")
    config = OmegaConf.to_container(OmegaConf.load(str(path)))
    config.update(**({"name": name} if name else {}))
    if family == "unet":
        model = UNet(21, depth=config["depth"], base_width=config["base_width"])
        return f"unet d{config['depth']} w{config['base_width']}", model, (image_size, image_size)
    model = build_network("classification", config, {}, 1000, image_size, load_weights=False)
    return config["name"], model, (image_size, image_size)


def checkpoint_model(path: str) -> tuple[str, nn.Module, tuple[int, int]]:
    """The trained network of a cvkit classification or segmentation checkpoint, at its input size."""
    predictor = cvkit.load(path, device="cpu")
    if not inference_kind(predictor.kind).export.batched:
        raise SystemExit("--checkpoint: detectors take lists of images of any size; benchmark their backbone instead")
    return f"{Path(path).name} ({predictor.describe()})", predictor.model, parse_image_size(predictor.image_size)


def forward_function(model: nn.Module, backend: str, example: torch.Tensor, device: torch.device) -> Callable:
    """A function running one batch through `model` with `backend`."""
    if backend == "onnxruntime":
        axes = {"images": {0: "batch"}, "outputs": {0: "batch"}}
        options = onnxruntime.SessionOptions()
        options.intra_op_num_threads = torch.get_num_threads()
        with tempfile.TemporaryDirectory() as folder:  # the session holds the model in memory
            path = Path(folder) / "model.onnx"
            write_onnx(model.cpu(), example.cpu(), path, (["images"], ["outputs"]), axes, opset=17)
            session = onnxruntime.InferenceSession(str(path), options, providers=["CPUExecutionProvider"])
        return lambda batch: session.run(None, {"images": batch.cpu().numpy()})
    model = model.to(device)
    if backend == "channels_last":
        model = model.to(memory_format=torch.channels_last)
    if backend == "compile":
        model = torch.compile(model)
    dtype = torch.bfloat16 if device.type == "cpu" or torch.cuda.is_bf16_supported() else torch.float16

    def run(batch: torch.Tensor) -> Any:
        batch = batch.to(device, memory_format=torch.channels_last if backend == "channels_last" else None)
        with torch.inference_mode(), torch.autocast(device.type, dtype=dtype, enabled=backend == "amp"):
            out = model(batch)
        if device.type == "cuda":
            torch.cuda.synchronize()
        return out

    return run


def time_backend(run: Callable, batch: torch.Tensor, warmup: int, runs: int) -> dict[str, float]:
    """Latencies of `runs` calls after `warmup` untimed ones (the first one's time kept as 'first_s')."""
    start = time.perf_counter()
    run(batch)
    first = time.perf_counter() - start
    for _ in range(warmup - 1):
        run(batch)
    latencies = []
    for _ in range(runs):
        start = time.perf_counter()
        run(batch)
        latencies.append(time.perf_counter() - start)
    median = statistics.median(latencies)
    return {
        "first_s": first,
        "median_ms": 1e3 * median,
        "p95_ms": 1e3 * float(np.percentile(latencies, 95)),
        "images_per_s": len(batch) / median,
        "latencies_ms": [1e3 * t for t in latencies],
    }


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--backbone", nargs="*", default=None, help="FAMILY or FAMILY:NAME (default: every family)")
    parser.add_argument("--checkpoint", nargs="*", default=[], help="cvkit classification/segmentation .ckpt")
    parser.add_argument("--image-size", type=int, default=224, help="input size of --backbone models")
    parser.add_argument("--batch-sizes", type=int, nargs="+", default=[1, 8])
    parser.add_argument("--backends", nargs="+", default=None, help=f"CPU: {CPU_BACKENDS}; GPU: {GPU_BACKENDS}")
    parser.add_argument("--device", default="cpu")
    parser.add_argument("--threads", type=int, default=None)
    parser.add_argument("--warmup", type=int, default=3)
    parser.add_argument("--runs", type=int, default=20)
    parser.add_argument("--json", type=Path, default=Path("benchmark_inference.json"))
    args = parser.parse_args()
    warnings.filterwarnings("ignore")
    if args.threads:
        torch.set_num_threads(args.threads)
    device = torch.device(args.device)
    backends = args.backends or (GPU_BACKENDS if device.type == "cuda" else CPU_BACKENDS)
    families = args.backbone if args.backbone is not None else ([] if args.checkpoint else None)
    if families is None:
        families = sorted(p.name.removesuffix(".yaml") for p in (files("cvkit.configs") / "backbone").iterdir())
        families = [family for family in families if family.isidentifier()]
    models = [backbone_model(spec, args.image_size) for spec in families]
    models += [checkpoint_model(path) for path in args.checkpoint]

    rows = []
    for name, model, (height, width) in models:
        model.eval()
        for batch_size in args.batch_sizes:
            batch = torch.randn(batch_size, 3, height, width)
            for backend in backends:
                run = forward_function(model, backend, batch, device)
                result = time_backend(run, batch, args.warmup, args.runs)
                rows.append(
                    {"model": name, "input": f"{height}x{width}", "batch": batch_size, "backend": backend, **result}
                )
                print(f"{name} {backend} batch {batch_size}: {result['median_ms']:.1f} ms", flush=True)

    machine = {
        "device": torch.cuda.get_device_name(device) if device.type == "cuda" else cpu_name(),
        "threads": torch.get_num_threads(),
    }
    table = Table(title=f"inference on {machine['device']} ({machine['threads']} threads)")
    for column in ("model", "input", "batch", "backend", "median ms", "p95 ms", "images/s", "first run s"):
        table.add_column(column, justify="left" if column in ("model", "backend") else "right")
    for row in rows:
        cells = (row["median_ms"], row["p95_ms"], row["images_per_s"], row["first_s"])
        table.add_row(row["model"], row["input"], str(row["batch"]), row["backend"], *(f"{v:.1f}" for v in cells))
    Console(width=140).print(table)
    settings = vars(args) | {"json": str(args.json)}
    cuda = {"torch_cuda": torch.version.cuda, "cudnn": torch.backends.cudnn.version()}
    write_results(args.json, {"machine": machine, "versions": cuda, "settings": settings, "rows": rows})


if __name__ == "__main__":
    main()
