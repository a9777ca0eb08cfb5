"""What the benchmark scripts share: the machine they ran on, cvkit's composed config, a markdown table and
the JSON results file."""

from __future__ import annotations

import datetime
import os
import platform
import subprocess
from collections.abc import Sequence
from importlib.metadata import version
from pathlib import Path
from typing import Any


def cpu_name() -> str:
    """The CPU model, as /proc/cpuinfo names it (Linux), else what the platform module says."""
    cpuinfo = Path("/proc/cpuinfo")
    if cpuinfo.is_file():
        for line in cpuinfo.read_text().splitlines():
            if line.startswith("model name"):
                return line.split(":", 1)[1].strip()
    return platform.processor() or "cpu"


def machine() -> dict[str, Any]:
    """The CPU, its core count and the versions that decide the figures."""
    packages = ("torch", "torchvision", "timm", "pytorch-lightning", "albumentations", "opencv-python-headless")
    versions = {}
    for package in packages:
        try:
            versions[package] = version(package)
        except Exception:  # a package not installed under that name
            versions[package] = None
    return {"cpu": cpu_name(), "cpu_count": os.cpu_count(), "python": platform.python_version(), **versions}


def cvkit_config(*overrides: str) -> Any:
    """cvkit's training config composed with `overrides`, as ``cvkit-train`` composes it (without Hydra's run
    folder)."""
    from hydra import compose, initialize_config_module

    with initialize_config_module(config_module="cvkit.configs", version_base="1.3"):
        return compose("train", overrides=["paths.output_dir=.", *overrides])


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


def write_results(path: Path | None, results: dict[str, Any]) -> None:
    """Write `results` as JSON to `path` (nothing when None), with the date and the commit, and say where."""
    if path is None:
        return
    from cvkit.console import write_json

    stamped = {"date": datetime.datetime.now().isoformat(timespec="seconds"), "commit": commit(), **results}
    write_json(path, stamped)
    print(f"written: {path}")
