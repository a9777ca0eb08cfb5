"""The console commands end their process without the interpreter's teardown, and lose nothing by it."""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

import pytest

from tests.helpers.cli import assert_exit, cli_env, console_script
from tests.helpers.logs import tensorboard_scalars
from tests.helpers.presets import TINY_CLASSIFICATION

# A command whose main starts a thread that is not a daemon, leaves a thread pool running, registers an exit
# handler and writes to a buffered stdout, then ends as `ending` says. An object left to the interpreter's
# teardown marks whether that ran.
PROGRAM = """
import atexit, sys, threading, time
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path
from cvkit.process_exit import ends_process

out = Path(sys.argv[1])

class LeftToTeardown:
    def __init__(self, path, opener):
        self.path, self.opener = path, opener  # module globals may be gone when the teardown deletes it

    def __del__(self):
        self.opener(self.path, "w").close()

kept = LeftToTeardown(str(out / "teardown"), open)
pools = []

def main():
    atexit.register(lambda: (out / "atexit").write_text("ran"))
    threading.Thread(target=lambda: (time.sleep(0.3), (out / "thread").write_text("done"))).start()
    pools.append(ThreadPoolExecutor(1))  # kept and left running: its worker ends by threading's exit callback
    pools[0].submit(time.sleep, 0.01)
    sys.stdout.write("buffered, no newline")
    {ending}

ends_process(main)()
"""


def run_program(tmp_path: Path, ending: str, **env: str) -> subprocess.CompletedProcess:
    script = tmp_path / "program.py"
    script.write_text(PROGRAM.format(ending=ending))
    environment = {key: value for key, value in os.environ.items() if key != "PYTHONUNBUFFERED"}
    return subprocess.run(
        [sys.executable, str(script), str(tmp_path)],
        env={**environment, **env},
        capture_output=True,
        text=True,
        timeout=60,
        check=False,
    )


@pytest.mark.parametrize(
    ("ending", "status", "stderr"),
    [("return", 0, ""), ("raise SystemExit(3)", 3, ""), ("sys.exit('cvkit: bad input')", 1, "cvkit: bad input")],
)
def test_the_process_ends_with_the_status_after_the_exit_work_without_teardown(
    tmp_path: Path, ending: str, status: int, stderr: str
) -> None:
    result = run_program(tmp_path, ending)
    assert result.returncode == status, result.stderr
    assert result.stdout == "buffered, no newline" and result.stderr.strip() == stderr
    assert (tmp_path / "atexit").read_text() == "ran" and (tmp_path / "thread").read_text() == "done"
    assert not (tmp_path / "teardown").exists()  # the interpreter's teardown was skipped


def test_full_teardown_on_request(tmp_path: Path) -> None:
    result = run_program(tmp_path, "raise SystemExit(3)", CVKIT_FULL_TEARDOWN="1")
    assert result.returncode == 3 and result.stdout == "buffered, no newline"
    assert (tmp_path / "atexit").exists() and (tmp_path / "teardown").exists()


@pytest.mark.skipif(not Path("/proc/self/cmdline").exists(), reason="reads the processes' command lines in /proc")
def test_a_training_command_leaves_complete_logs_and_no_worker_behind(tmp_path: Path) -> None:
    # What a real run leaves after the quick exit: its end table on a buffered stdout, TensorBoard's last
    # scalar (written by a writer thread), the job log's last line, and no loader worker still running.
    overrides = [o for o in TINY_CLASSIFICATION if not o.startswith(("data.num_workers", "logger"))]
    command = [console_script("cvkit-train"), *overrides, "data.num_workers=2", "logger=tensorboard"]
    environment = {key: value for key, value in cli_env().items() if key != "PYTHONUNBUFFERED"}
    result = subprocess.run(
        [*command, f"hydra.run.dir={tmp_path}"], env=environment, capture_output=True, text=True, timeout=600
    )
    assert_exit(subprocess.CompletedProcess(result.args, result.returncode, result.stdout + result.stderr), 0)
    assert "best checkpoint" in result.stdout  # the end table, printed last, was flushed
    assert [step for step, _ in tensorboard_scalars(tmp_path, "val/acc")] == [1]
    assert "`Trainer.fit` stopped" in (tmp_path / "train.log").read_text().splitlines()[-1]
    left = [pid for pid in os.listdir("/proc") if pid.isdigit() and str(tmp_path) in _command_line(pid)]
    assert left == [], "loader workers outlived the command"


def _command_line(pid: str) -> str:
    try:
        return Path(f"/proc/{pid}/cmdline").read_bytes().decode(errors="replace")
    except OSError:  # ended meanwhile
        return ""
