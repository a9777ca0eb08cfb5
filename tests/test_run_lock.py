"""One training job per run dir: a second cvkit-train on the run dir of a live job is refused at once, naming
the first; after the first is killed (kill -9: nothing of it runs to release anything), resume=true goes on."""

from __future__ import annotations

import os
import signal
import subprocess
import time
from pathlib import Path

from tests.helpers.cli import assert_exit, cli_env, console_script, run_cli
from tests.helpers.presets import TINY_CLASSIFICATION

# A run slow enough to be caught while it trains: its steps sleep (the test's callback), with loader workers.
SLOW = [*TINY_CLASSIFICATION, "data.num_workers=2", "trainer.max_epochs=3", "trainer.limit_train_batches=4"]
SLOW_STEPS = ["+callbacks.slow._target_=tests.helpers.callbacks.SlowStepsFrom", "+callbacks.slow.step=0",
              "+callbacks.slow.seconds=2"]  # fmt: skip


def start_training(run_dir: Path) -> subprocess.Popen:
    """cvkit-train of a slow run into `run_dir`, started in the background; returns once it trains."""
    command = [console_script("cvkit-train"), *SLOW, *SLOW_STEPS, f"hydra.run.dir={run_dir}"]
    process = subprocess.Popen(command, env=cli_env(), stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True)
    deadline = time.monotonic() + 300
    while not (run_dir / "summary.json").exists():
        assert process.poll() is None and time.monotonic() < deadline, "the first run did not start training"
        time.sleep(0.1)
    return process


def test_a_second_job_on_a_live_run_dir_is_refused_and_a_dead_ones_is_resumed(tmp_path: Path) -> None:
    first = start_training(tmp_path)
    try:
        started = time.monotonic()
        second = run_cli("cvkit-train", *TINY_CLASSIFICATION, "resume=true", f"hydra.run.dir={tmp_path}")
        took = time.monotonic() - started
        assert_exit(second, 2, f"{tmp_path} is the run dir of a job that is still running", f"pid {first.pid}",
                    clean=True)  # fmt: skip
        assert took < 30, took  # at once: before the data, the network or torch's heavy start-up
        assert first.poll() is None  # the first trains on, untouched
    finally:
        os.kill(first.pid, signal.SIGKILL)
        first.communicate(timeout=60)
    resumed = run_cli("cvkit-train", *TINY_CLASSIFICATION, "resume=true", f"hydra.run.dir={tmp_path}")
    assert_exit(resumed, 0)
