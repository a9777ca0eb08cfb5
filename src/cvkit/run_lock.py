"""One training job per run dir: a second ``cvkit-train`` on a run dir that a live job trains in (a scheduler's
requeue while the old job still runs, a command started twice) is refused at once, naming the first.

The lock is a POSIX record lock on ``<run dir>/.cvkit.lock``, held by rank 0 for the whole job: the operating
system releases it when the process ends, however it ends (kill -9 included), so a job that died never
blocks ``resume=true``. Such a lock is not inherited by forked processes (loader workers), which can
outlive their parent by a few seconds. The file says who holds it.
"""

from __future__ import annotations

import os
import socket
import time
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path

from cvkit.errors import CvkitError

LOCK_FILE = ".cvkit.lock"

try:
    import fcntl
except ImportError:  # not a POSIX system: no lock
    fcntl = None


@contextmanager
def run_dir_lock(run_dir: Path) -> Iterator[None]:
    """Hold the run dir's lock inside the block, or raise a CvkitError naming the job that holds it."""
    run_dir.mkdir(parents=True, exist_ok=True)
    if fcntl is None:
        yield
        return
    with open(run_dir / LOCK_FILE, "a+") as file:  # a+: the holder's note stays until the lock is taken
        try:
            fcntl.lockf(file, fcntl.LOCK_EX | fcntl.LOCK_NB)
        except OSError as err:
            file.seek(0)
            holder = file.read().strip() or "another process"
            raise CvkitError(
                f"{run_dir} is the run dir of a job that is still running ({holder}): wait for it to end or stop "
                "it, then resume=true continues the run; or train elsewhere with hydra.run.dir=..."
            ) from err
        file.seek(0)
        file.truncate()
        file.write(f"host {socket.gethostname()}, pid {os.getpid()}, since {time.strftime('%Y-%m-%d %H:%M:%S')}\n")
        file.flush()
        try:
            yield
        finally:
            fcntl.lockf(file, fcntl.LOCK_UN)
