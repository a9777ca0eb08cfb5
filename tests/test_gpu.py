"""Checks that need a CUDA GPU (skipped without one): run them on a GPU machine with ``pytest -m gpu``."""

import os
from pathlib import Path

import pytest
import torch

from tests.test_fault_tolerance import RUN, fault, state, train

pytestmark = [
    pytest.mark.gpu,
    pytest.mark.skipif(not torch.cuda.is_available(), reason="needs a CUDA GPU"),
]
ON_GPU = ["trainer.accelerator=gpu", "trainer.precision=16-mixed", "trainer.deterministic=true"]


def test_sigterm_then_resume_under_16_mixed_gives_the_same_weights(tmp_path: Path, monkeypatch) -> None:
    # fp16 autocast with its gradient scaler: the scaler's state must come back with the resume.
    monkeypatch.setenv("CUBLAS_WORKSPACE_CONFIG", ":4096:8")  # deterministic cuBLAS, for bit-equal runs
    monkeypatch.setitem(os.environ, "CUDA_VISIBLE_DEVICES", "0")
    straight = tmp_path / "straight"
    assert train(straight, *ON_GPU).returncode == 0
    job = tmp_path / "job"
    stopped = train(job, *ON_GPU, *fault("SignalAtStep", signal_name="SIGTERM", step=8))
    assert stopped.returncode == 143, stopped.stdout[-3000:]
    assert "native_amp_scaling_state" in state(job / "checkpoints" / "interrupted.ckpt")
    assert train(job, *ON_GPU, "resume=true").returncode == 0
    reference = state(straight / "checkpoints" / "last.ckpt")["state_dict"]
    final = state(job / "checkpoints" / "last.ckpt")["state_dict"]
    assert all(torch.equal(reference[key], final[key]) for key in reference)


assert RUN  # the same workload as the CPU fault suite
