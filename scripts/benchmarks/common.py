"""What the scripts that measure share: the provenance every JSON results file records (`stamped`: the date, the
commit, the machine and the versions; the benchmarks, scripts/goyal_table.py), cvkit's composed config and a
markdown table."""

from __future__ import annotations

import datetime
import os
import platform
import subprocess
import sys
from collections.abc import Mapping, Sequence
from importlib.metadata import PackageNotFoundError, packages_distributions, version
from pathlib import Path
from typing import Any

# The packages whose versions decide the figures; cvkit's own is recorded too, under its distribution's name.
PACKAGES = (
    "torch",
    "torchvision",
    "pytorch-lightning",
    "torchmetrics",
    "timm",
    "albumentations",
    "opencv-python-headless",
    "pillow",
    "numpy",
    "onnxruntime",
    "transformers",
)


def cpu_name() -> str:
    """The CPU model, as /proc/cpuinfo names it (Linux), else what the platform module says."""
    cpuinfo = Path("/proc/cpuinfo")
    if cpuinfo.is_file():
        for line in cpuinfo.read_text().splitlines():
            if line.startswith("model name"):
                return line.split(":", 1)[1].strip()
    return platform.processor() or "cpu"


def gpus() -> list[str]:
    """The NVIDIA GPUs of the machine with their driver, as nvidia-smi lists them (none without it); CUDA is not
    initialised, so a script that forks loader workers afterwards is unaffected."""
    query = ["nvidia-smi", "--query-gpu=name,memory.total,driver_version", "--format=csv,noheader"]
    try:
        listed = subprocess.run(query, capture_output=True, text=True, timeout=30, check=True).stdout
    except (OSError, subprocess.SubprocessError):
        return []
    return [", ".join(field.strip() for field in line.split(",")) for line in listed.splitlines() if line.strip()]


def machine() -> dict[str, Any]:
    """The CPU, its core count and the cores this process may use, the GPUs and the operating system."""
    usable = len(os.sched_getaffinity(0)) if hasattr(os, "sched_getaffinity") else os.cpu_count()
    return {
        "cpu": cpu_name(),
        "cpu_count": os.cpu_count(),
        "usable_cpus": usable,
        "gpus": gpus(),
        "os": platform.platform(),
    }


def versions() -> dict[str, str | None]:
    """Python's version, cvkit's (its distribution found by the import name) and those of PACKAGES (None: not
    installed)."""
    found: dict[str, str | None] = {"python": platform.python_version()}
    for package in [*packages_distributions().get("cvkit", ["cvkit"])[:1], *PACKAGES]:
        try:
            found[package] = version(package)
        except PackageNotFoundError:
            found[package] = None
    return found


def cvkit_config(*overrides: str) -> Any:
    """cvkit's training config composed with `overrides`, as ``cvkit-train`` composes it (without Hydra's run
    folder)."""
    from hydra import compose, initialize_config_module

    with initialize_config_module(config_module="cvkit.configs", version_base="1.3"):
        return compose("train", overrides=["paths.output_dir=.", *overrides])


def write_shards(root: Path, out: Path, *options: str) -> Path:
    """The image folder at `root` written as shards at `out` by ``cvkit-data convert`` (with `options`, e.g.
    ``--chunk-bytes 256KB``), as a user writes them."""
    command = str(Path(sys.executable).with_name("cvkit-data"))  # the console script of this environment
    data = ["data=imagefolder", f"data.root={root}", "--to", "shards", "--out", str(out), *options]
    subprocess.run([command, "convert", *data], check=True, capture_output=True)
    return out


def print_table(title: str, headers: Sequence[str], rows: Sequence[Sequence[Any]]) -> None:
    """Print `rows` as a markdown table under `title` (as docs/benchmarks.md quotes them)."""
    print(f"\n{title}\n")
    print("| " + " | ".join(headers) + " |")
    print("| " + " | ".join("---" if i == 0 else "---:" for i in range(len(headers))) + " |")
    for row in rows:
        print("| " + " | ".join(str(cell) for cell in row) + " |")
    print(flush=True)


def commit() -> str:
    """The repository's commit, with ``+changes`` when the working tree differs from it (unknown outside git)."""
    repo = Path(__file__).resolve().parents[2]
    try:
        head = subprocess.run(["git", "rev-parse", "HEAD"], cwd=repo, capture_output=True, text=True, check=True)
        changed = subprocess.run(["git", "status", "--porcelain", "--untracked-files=no"], cwd=repo,
                                 capture_output=True, text=True, check=True)  # fmt: skip
    except (OSError, subprocess.CalledProcessError):
        return "unknown"
    return head.stdout.strip() + ("+changes" if changed.stdout.strip() else "")


def stamped(results: Mapping[str, Any]) -> dict[str, Any]:
    """`results` after what every results file records: ``date`` (local time, with its UTC offset), ``commit``,
    ``machine`` and ``versions``. A ``machine`` or ``versions`` dict in `results` adds to those recorded (the device
    or thread count a script used, torch's CUDA version)."""
    stamp = {
        "date": datetime.datetime.now().astimezone().isoformat(timespec="seconds"),
        "commit": commit(),
        "machine": machine() | dict(results.get("machine", {})),
        "versions": versions() | dict(results.get("versions", {})),
    }
    return stamp | {key: value for key, value in results.items() if key not in stamp}


def write_results(path: Path | None, results: Mapping[str, Any]) -> None:
    """Write `results`, `stamped`, as JSON to `path` (nothing when None), and say where."""
    if path is None:
        return
    from cvkit.console import write_json

    write_json(path, stamped(results))
    print(f"written: {path}")
