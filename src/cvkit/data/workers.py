"""How the loader workers of cvkit's data modules start, and how they are stopped when the main process exits.

A worker ignores the stop signals (:func:`start_worker`), so it cannot be ended by the SIGTERM with which
``multiprocessing`` ends child processes at exit; :func:`stop_workers_at_exit` shuts the workers of every
loader still alive then down through their queues, as the loader itself does when it is deleted. It is
registered when a loader with workers is made, after ``multiprocessing``'s own exit handler (which would wait
for such a worker forever), so that it runs before it: exit handlers run last registered, first.
"""

from __future__ import annotations

import atexit
import os
import signal
import weakref

import cv2
from lightning_fabric.utilities.seed import pl_worker_init_function
from torch.utils.data import DataLoader

from cvkit.compat import shutdown_loader_workers
from cvkit.signals import STOP_SIGNALS

LOADERS: weakref.WeakSet[DataLoader] = weakref.WeakSet()


def start_worker(worker_id: int, rank: int) -> None:
    """Start a loader worker: it leaves SIGINT, SIGTERM and SIGUSR1 to the main process, which stops at the end
    of a step, saves and then shuts the workers down (a terminal's Ctrl-C and a SLURM signal reach every
    process; by default a worker would die of them mid-step). Then Lightning's own worker seeding, which it
    adds only to loaders without a ``worker_init_fn``."""
    for signum in STOP_SIGNALS:
        signal.signal(signum, signal.SIG_IGN)
    cv2.setNumThreads(0)  # the workers decode in parallel already; OpenCV's own threads would oversubscribe
    if int(os.environ.get("PL_SEED_WORKERS", 0)):
        pl_worker_init_function(worker_id, rank=rank)


def stopped_at_exit(loader: DataLoader) -> DataLoader:
    """`loader`, whose workers :func:`stop_workers_at_exit` shuts down if it is still alive when Python exits."""
    if loader.num_workers:  # (re-)registered now: after multiprocessing's exit handler, so it runs first
        atexit.unregister(stop_workers_at_exit)
        atexit.register(stop_workers_at_exit)
    LOADERS.add(loader)
    return loader


def stop_workers_at_exit() -> None:
    """Shut down the persistent workers of the loaders still alive (held by a script or a notebook until its
    end): otherwise the process would wait for them forever."""
    for loader in list(LOADERS):
        shutdown_loader_workers(loader)
