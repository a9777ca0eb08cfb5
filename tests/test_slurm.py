"""SLURM preemption as SLURM does it, without SLURM: its environment, SIGUSR1 before the end, and an
``scontrol`` that records the requeue and ends the job. The requeued job (the same command) resumes."""

import json
import os
import stat
from pathlib import Path

import torch

from tests.conftest import run_cli

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
RUN = [
    "data.image_size=16",
    "data.num_workers=2",  # Lightning starts worker iterators before it restores its loop state
    "trainer.limit_train_batches=6",
    "trainer.limit_val_batches=2",
    "trainer.max_epochs=2",
    "scheduler.warmup_epochs=0",
    "logger=csv",
]


def fake_scontrol(folder: Path) -> Path:
    """An scontrol that logs its arguments and kills the job (its parent), as SLURM ends a requeued job."""
    folder.mkdir()
    script = folder / "scontrol"
    script.write_text('#!/bin/sh\necho "$@" >> "$SCONTROL_LOG"\nkill -9 $PPID\n')
    script.chmod(script.stat().st_mode | stat.S_IEXEC)
    return folder


def test_preempted_job_saves_requeues_and_resumes_where_it_stopped(tmp_path: Path, monkeypatch) -> None:
    straight = tmp_path / "straight"
    assert run_cli("cvkit-train", *RUN, f"hydra.run.dir={straight}").returncode == 0

    bin_dir = fake_scontrol(tmp_path / "bin")
    monkeypatch.setenv("PATH", f"{bin_dir}{os.pathsep}{os.environ['PATH']}")
    monkeypatch.setenv("SCONTROL_LOG", str(tmp_path / "scontrol.log"))
    for key, value in SLURM_ENV.items():
        monkeypatch.setenv(key, value)
    run_dir = tmp_path / "job"
    job = [
        *RUN,
        f"hydra.run.dir={run_dir}",
        "resume=true",
        "+callbacks.preempt._target_=tests.helpers.PreemptAtBatch",
        "+callbacks.preempt.batch=2",
    ]

    first = run_cli("cvkit-train", *job)
    assert first.returncode != 0  # killed after the requeue
    assert (tmp_path / "scontrol.log").read_text().split() == ["requeue", "4242"]
    preemption = run_dir / "hpc_ckpt_1.ckpt"
    assert torch.load(preemption, weights_only=True)["global_step"] == 3

    requeued = run_cli("cvkit-train", *job)
    assert requeued.returncode == 0, requeued.stdout[-3000:]
    assert json.loads((run_dir / "summary.json").read_text())["resumed_from"] == str(preemption)
    final = torch.load(run_dir / "checkpoints" / "last.ckpt", weights_only=True)
    assert final["global_step"] == 12  # 2 epochs x 6 steps: nothing lost, nothing repeated
    reference = torch.load(straight / "checkpoints" / "last.ckpt", weights_only=True)["state_dict"]
    assert all(torch.allclose(reference[k].float(), final["state_dict"][k].float(), atol=1e-6) for k in reference)
