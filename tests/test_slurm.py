"""SLURM preemption as SLURM does it, without SLURM: its environment, SIGUSR1 before the end, and an
``scontrol`` that records the requeue and ends the job. The requeued job (the same command) resumes."""

import os
from pathlib import Path

from tests.helpers.callbacks import PreemptAtBatch, plug
from tests.helpers.checkpoints import assert_same_weights, final_checkpoint, load_checkpoint
from tests.helpers.cli import assert_exit, run_cli
from tests.helpers.logs import read_summary
from tests.helpers.presets import RESUMABLE_DIGITS
from tests.helpers.slurm import SLURM_ENV, fake_scontrol

RUN = RESUMABLE_DIGITS  # its 2 loader workers: Lightning starts worker iterators before it restores its loop state


def test_preempted_job_saves_requeues_and_resumes_where_it_stopped(tmp_path: Path, monkeypatch) -> None:
    straight = tmp_path / "straight"
    assert_exit(run_cli("cvkit-train", *RUN, f"hydra.run.dir={straight}"), 0)

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
        *plug(PreemptAtBatch, "preempt", batch=2),
    ]

    first = run_cli("cvkit-train", *job)
    assert first.returncode != 0  # killed after the requeue
    assert (tmp_path / "scontrol.log").read_text().split() == ["requeue", "4242"]
    preemption = run_dir / "hpc_ckpt_1.ckpt"
    assert load_checkpoint(preemption)["global_step"] == 3

    assert_exit(run_cli("cvkit-train", *job), 0)
    assert read_summary(run_dir)["resumed_from"] == str(preemption)
    final = final_checkpoint(run_dir)
    assert final["global_step"] == 12  # 2 epochs x 6 steps: nothing lost, nothing repeated
    assert_same_weights(final_checkpoint(straight)["state_dict"], final["state_dict"], atol=1e-6)
