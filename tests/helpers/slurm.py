"""SLURM without SLURM: the environment it gives a job's task, and an ``scontrol`` that records the requeue and
ends the job, as SLURM does."""

import stat
from pathlib import Path

SLURM_ENV = {
    "SLURM_JOB_ID": "4242",
    "SLURM_JOB_NAME": "cvkit-test",
    "SLURM_NTASKS": "1",
    "SLURM_NTASKS_PER_NODE": "1",
    "SLURM_NNODES": "1",
    "SLURM_NODELIST": "localhost",
    "SLURM_NODEID": "0",
    "SLURM_PROCID": "0",
    "SLURM_LOCALID": "0",
}


def fake_scontrol(folder: Path) -> Path:
    """An scontrol that logs its arguments and kills the job (its parent), as SLURM ends a requeued job."""
    folder.mkdir()
    script = folder / "scontrol"
    script.write_text('#!/bin/sh\necho "$@" >> "$SCONTROL_LOG"\nkill -9 $PPID\n')
    script.chmod(script.stat().st_mode | stat.S_IEXEC)
    return folder
