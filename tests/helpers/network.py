"""Local networking for multi-process tests: a free port, and a gloo process group of forked ranks."""

from __future__ import annotations

import contextlib
import faulthandler
import socket
from collections.abc import Iterator

import torch
import torch.distributed as dist


def free_port() -> int:
    """A TCP port on 127.0.0.1 that nothing listens on now (for a gloo process group or a launcher)."""
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        return probe.getsockname()[1]


@contextlib.contextmanager
def gloo_group(rank: int, port: int, world_size: int = 2) -> Iterator[None]:
    """This (forked) process as rank `rank` of a gloo group on 127.0.0.1:`port`, for the ``with`` block."""
    faulthandler.dump_traceback_later(60, exit=True)  # a hung rank fails the test with its traceback
    torch.set_num_threads(1)  # as DataLoader workers do: OpenMP threads the parent used are gone after fork
    dist.init_process_group("gloo", init_method=f"tcp://127.0.0.1:{port}", rank=rank, world_size=world_size)
    try:
        yield
    finally:
        dist.destroy_process_group()
