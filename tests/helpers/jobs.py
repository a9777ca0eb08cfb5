"""Faults given to every process of a console-script run, DDP children included (they inherit the
environment): a ``sitecustomize`` module on the ``PYTHONPATH`` that Python imports at start-up."""

from __future__ import annotations

import os
import textwrap
from pathlib import Path

from tests.helpers.cli import cli_env

SEARCH_OUT_OF_MEMORY = """
    import os

    import torch

    from cvkit.batch_search import StepProbe

    LIMITS = [int(limit) for limit in os.environ["CVKIT_TEST_FITS"].split(",")]


    def step_bytes(probe, size):
        if size > LIMITS[int(os.environ.get("LOCAL_RANK", 0))]:
            raise torch.OutOfMemoryError(f"CUDA out of memory. Tried to allocate {size} MiB")
        return 1


    StepProbe.step_bytes = step_bytes
"""


def ranks_fitting(folder: Path, *limits: int) -> dict[str, str]:
    """The environment of a run in which ``data.batch_size=auto`` finds that the device of rank R fits
    ``limits[R]`` images (ranks with unequal free memory)."""
    folder.mkdir(parents=True, exist_ok=True)
    (folder / "sitecustomize.py").write_text(textwrap.dedent(SEARCH_OUT_OF_MEMORY))
    env = cli_env()
    env["PYTHONPATH"] = os.pathsep.join([str(folder), env["PYTHONPATH"]])
    return {**env, "CVKIT_TEST_FITS": ",".join(map(str, limits))}
