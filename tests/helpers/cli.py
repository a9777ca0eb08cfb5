"""cvkit's console scripts run as a user runs them: the installed script, in a subprocess, on the CPU."""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

from tests.helpers.paths import REPO


def console_script(name: str) -> str:
    """The installed console script `name` of the interpreter running the tests."""
    path = Path(sys.executable).parent / name
    assert path.exists(), f"{name} is not installed next to {sys.executable}: pip install -e '.[dev]'"
    return str(path)


def cli_env(gpu: bool = False) -> dict[str, str]:
    """The environment cvkit's console scripts run in under the tests: CPU only (unless `gpu`: the GPUs that
    CUDA_VISIBLE_DEVICES shows the tests), unbuffered output, and tests/ importable (runs may plug in the
    callbacks of tests.helpers.callbacks through the callbacks group)."""
    python_path = os.pathsep.join(filter(None, [str(REPO), os.environ.get("PYTHONPATH")]))
    hidden = {} if gpu else {"CUDA_VISIBLE_DEVICES": ""}
    return {**os.environ, **hidden, "PYTHONUNBUFFERED": "1", "COLUMNS": "200", "PYTHONPATH": python_path}


def run_cli(
    name: str,
    *args: str,
    cwd: Path | None = None,
    timeout: float = 1200,
    gpu: bool = False,
    env: dict[str, str] | None = None,
) -> subprocess.CompletedProcess:
    """Run a cvkit console script (on the CPU unless `gpu`; in `env` instead of :func:`cli_env` when given) and
    capture its output (stdout and stderr together)."""
    return subprocess.run(
        [console_script(name), *args],
        cwd=cwd or REPO,
        env=env or cli_env(gpu),
        timeout=timeout,
        stdout=subprocess.PIPE,
        stderr=subprocess.STDOUT,
        text=True,
        check=False,
    )


def assert_exit(result: subprocess.CompletedProcess, code: int, *shown: str, clean: bool = False) -> None:
    """`result` exited with `code` and printed each of `shown`; with `clean`, no traceback either (a user
    error reported in a clear line, not a crash). A failed check shows the end of the output."""
    tail = result.stdout[-3000:]
    assert result.returncode == code, tail
    for text in shown:
        assert text in result.stdout, (text, tail)
    if clean:
        assert "Traceback" not in result.stdout, tail


def train_into(run_dir: Path, *overrides: str) -> str:
    """``cvkit-train`` with `overrides`, writing into `run_dir`; asserts that it succeeded, returns its output."""
    result = run_cli("cvkit-train", *overrides, f"hydra.run.dir={run_dir}")
    assert_exit(result, 0)
    return result.stdout


def evaluate_val(checkpoint: Path, eval_dir: Path, val_batches: int) -> dict[str, float]:
    """``cvkit-eval`` of `checkpoint` on the first `val_batches` val batches into `eval_dir`: its metrics."""
    args = [f"ckpt_path={checkpoint}", f"trainer.limit_val_batches={val_batches}", "splits=[val]"]
    result = run_cli("cvkit-eval", *args, f"hydra.run.dir={eval_dir}")
    assert_exit(result, 0)
    return json.loads((eval_dir / "metrics.json").read_text())["metrics"]
