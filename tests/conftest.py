"""Shared fixtures: where the real datasets are, composing cvkit configs, running the console scripts."""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

import pytest
from hydra import compose, initialize_config_module
from omegaconf import DictConfig, open_dict

REPO = Path(__file__).resolve().parents[1]


def pytest_addoption(parser: pytest.Parser) -> None:
    parser.addoption(
        "--data-root",
        default=os.environ.get("CVKIT_DATA", str(REPO.parent / "shared" / "data")),
        help="folder with the real test datasets (bccd_cells, BCCD, CamVid); env CVKIT_DATA; default ../shared/data",
    )


@pytest.fixture(scope="session")
def data_root(request: pytest.FixtureRequest) -> Path:
    root = Path(request.config.getoption("--data-root")).expanduser().resolve()
    if not root.is_dir():
        pytest.skip(f"real datasets not found at {root}: pass --data-root or set CVKIT_DATA")
    return root


def dataset(data_root: Path, name: str, marker: str, what: str) -> Path:
    """The real dataset `name` under the data root, or a skip that says which is missing."""
    path = data_root / name
    if not (path / marker).is_dir():
        pytest.skip(f"{path} ({what}) not found under the data root")
    return path


@pytest.fixture(scope="session")
def bccd_cells(data_root: Path) -> Path:
    return dataset(data_root, "bccd_cells", "train", "image-folder classification set")


@pytest.fixture(scope="session")
def bccd_voc(data_root: Path) -> Path:
    return dataset(data_root, "BCCD", "Annotations", "Pascal VOC detection set")


def compose_train(output_dir: Path, *overrides: str, config_name: str = "train") -> DictConfig:
    """The composed cvkit config for `overrides`, writing into `output_dir`, on the CPU."""
    with initialize_config_module(config_module="cvkit.configs", version_base="1.3"):
        cfg = compose(config_name=config_name, overrides=["trainer.accelerator=cpu", *overrides])
    with open_dict(cfg):
        cfg.paths.output_dir = str(output_dir)
    return cfg


def console_script(name: str) -> str:
    """The installed console script `name` of the interpreter running the tests."""
    path = Path(sys.executable).parent / name
    assert path.exists(), f"{name} is not installed next to {sys.executable}: pip install -e '.[dev]'"
    return str(path)


def cli_env() -> dict[str, str]:
    """The environment cvkit's console scripts run in under the tests: CPU only, unbuffered output, and
    tests/ importable (runs may plug in test callbacks from tests.helpers through the callbacks group)."""
    python_path = os.pathsep.join(filter(None, [str(REPO), os.environ.get("PYTHONPATH")]))
    return {
        **os.environ,
        "CUDA_VISIBLE_DEVICES": "",
        "PYTHONUNBUFFERED": "1",
        "COLUMNS": "200",
        "PYTHONPATH": python_path,
    }


def run_cli(name: str, *args: str, cwd: Path | None = None, timeout: float = 1200) -> subprocess.CompletedProcess:
    """Run a cvkit console script on the CPU and capture its output (stdout and stderr together)."""
    return subprocess.run(
        [console_script(name), *args],
        cwd=cwd or REPO,
        env=cli_env(),
        timeout=timeout,
        stdout=subprocess.PIPE,
        stderr=subprocess.STDOUT,
        text=True,
        check=False,
    )


def train_into(run_dir: Path, *overrides: str) -> str:
    """``cvkit-train`` with `overrides`, writing into `run_dir`; asserts that it succeeded, returns its output."""
    result = run_cli("cvkit-train", *overrides, f"hydra.run.dir={run_dir}")
    assert result.returncode == 0, result.stdout[-3000:]
    return result.stdout


def evaluate_val(checkpoint: Path, eval_dir: Path, val_batches: int) -> dict[str, float]:
    """``cvkit-eval`` of `checkpoint` on the first `val_batches` val batches into `eval_dir`: its metrics."""
    args = [f"ckpt_path={checkpoint}", f"trainer.limit_val_batches={val_batches}", "splits=[val]"]
    result = run_cli("cvkit-eval", *args, f"hydra.run.dir={eval_dir}")
    assert result.returncode == 0, result.stdout[-3000:]
    return json.loads((eval_dir / "metrics.json").read_text())["metrics"]


def export_cfg(checkpoint: Path, **values: object) -> DictConfig:
    """The composed cvkit-export config of `checkpoint`, with `values` overridden."""
    quoted = {
        key: f"'{value}'" if isinstance(value, str) else "null" if value is None else value
        for key, value in values.items()
    }
    overrides = [f"{key}={value}" for key, value in quoted.items()]
    with initialize_config_module(config_module="cvkit.configs", version_base="1.3"):
        return compose(config_name="export", overrides=[f"ckpt_path={checkpoint}", *overrides])
