"""How the extra DDP processes of a Hydra job are started.

Lightning starts ranks 1..N-1 of a one-node DDP run by running the command line again. Under Hydra it
re-runs ``sys.argv`` with ``hydra.run.dir`` set to the run-dir *pattern*: in a ``-m`` sweep that starts a
whole new sweep in every child process, writing to other folders. cvkit replaces that command with the
current job's own overrides, in single-run mode, into the job's own output dir, so that every process of
a job, in a sweep or not, works in the one run dir.

torch and Lightning are imported inside the functions that use them: the CLI imports this module before
Hydra has parsed the command line, and ``--help`` or a config error must not wait for them.
"""

from __future__ import annotations

import os
import signal
import sys
from collections.abc import Iterator, Sequence
from contextlib import contextmanager
from typing import TYPE_CHECKING

from hydra.core.hydra_config import HydraConfig
from hydra.utils import get_original_cwd

import __main__

if TYPE_CHECKING:
    import pytorch_lightning as pl


def child_command(local_rank: int) -> tuple[Sequence[str], str]:
    """The command and working dir that start DDP process `local_rank` of the current Hydra job."""
    hydra = HydraConfig.get()
    if __main__.__spec__ is None:
        program = [sys.executable, sys.argv[0]]
    else:
        program = [sys.executable, "-m", __main__.__spec__.name]
    job = [
        *config_flags(sys.argv[1:]),
        *hydra.overrides.task,
        f'hydra.run.dir="{hydra.runtime.output_dir}"',
        f"hydra.job.name={hydra.job.name}_rank{local_rank}",
        "hydra.output_subdir=null",
    ]
    return [*program, *job], get_original_cwd()


CONFIG_FLAGS = ("--config-dir", "-cd", "--config-path", "-cp", "--config-name", "-cn")


def config_flags(argv: Sequence[str]) -> list[str]:
    """Hydra's config-location flags in `argv`, with their values (``--config-dir DIR``, ``-cd=DIR``)."""
    kept: list[str] = []
    for position, arg in enumerate(argv):
        flag = arg.split("=", 1)[0]
        if flag in CONFIG_FLAGS:
            kept += [arg] if "=" in arg else [arg, *argv[position + 1 : position + 2]]
    return kept


# What Lightning's launcher sets in the environment of the process that starts the others.
LAUNCH_VARIABLES = ("MASTER_ADDR", "MASTER_PORT", "NODE_RANK", "LOCAL_RANK", "WORLD_SIZE")


@contextmanager
def job_scope() -> Iterator[None]:
    """Run one job so that the next job of a sweep in this process starts its own DDP world: the
    process group is destroyed and the launch variables Lightning set are removed afterwards."""
    before = {name: os.environ.get(name) for name in LAUNCH_VARIABLES}
    try:
        yield
    finally:
        import torch

        if torch.distributed.is_available() and torch.distributed.is_initialized():
            torch.distributed.destroy_process_group()
        for name, value in before.items():
            if value is None:
                os.environ.pop(name, None)
            else:
                os.environ[name] = value


def launcher_rank() -> int:
    """This process's global rank when an external launcher started every process of the job (torchrun:
    ``RANK``; srun with several tasks: ``SLURM_PROCID``); 0 otherwise."""
    if "TORCHELASTIC_RUN_ID" in os.environ:
        return int(os.environ.get("RANK", 0))
    if int(os.environ.get("SLURM_NTASKS", 1)) > 1:
        return int(os.environ.get("SLURM_PROCID", 0))
    return 0


def is_first_process() -> bool:
    """Whether this process is rank 0 of its job, as the launchers' environment says before a trainer exists:
    not a DDP child that Lightning's rank 0 started (``LOCAL_RANK`` > 0), not another node's process
    (``NODE_RANK`` > 0), nor a torchrun or srun process of rank > 0."""
    local, node = int(os.environ.get("LOCAL_RANK", 0)), int(os.environ.get("NODE_RANK", 0))
    return launcher_rank() == 0 and local == 0 and node == 0


def rank_overrides(argv: Sequence[str]) -> list[str]:
    """`argv` plus, in a process of rank > 0 started by torchrun or srun, the overrides that make it log
    to ``train_rank<R>.log`` of the shared run dir and leave ``.hydra/`` to rank 0."""
    rank = launcher_rank()
    return [*argv, f"hydra.job.name=train_rank{rank}", "hydra.output_subdir=null"] if rank > 0 else list(argv)


def use_job_command_for_ddp_children() -> None:
    """Make Lightning start DDP child processes with :func:`child_command`."""
    from cvkit.compat import use_job_command_for_ddp_children as use_command

    use_command(child_command)


def stop_other_ranks(trainer: pl.Trainer) -> None:
    """End the DDP processes this process started (one-node runs, where cvkit's rank 0 launches the others):
    after an error on this rank alone they would wait at the next collective until its timeout. Lightning
    does this itself only for Ctrl-C. Under torchrun or srun the launcher started none, and ends the others."""
    launcher = trainer.strategy.launcher
    if launcher is not None and trainer.is_global_zero:
        launcher.kill(getattr(signal, "SIGKILL", signal.SIGTERM))
