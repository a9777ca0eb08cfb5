"""Faults under DDP (2 CPU processes, gloo) that reach one rank only: both ranks must decide together,
stop at the same step, save once and exit non-zero, instead of one rank waiting for the other forever."""

import json
import signal
from pathlib import Path

import pytest
import torch

from tests.conftest import run_cli
from tests.test_fault_tolerance import fault

RUN = [
    "trainer=ddp",
    "trainer.accelerator=cpu",
    "trainer.devices=2",
    "data.image_size=16",
    "data.num_workers=0",
    "trainer.limit_train_batches=4",
    "trainer.limit_val_batches=2",
    "trainer.max_epochs=2",
    "scheduler.warmup_epochs=0",
    "logger=csv",
]


def train(run_dir: Path, *overrides: str):
    return run_cli("cvkit-train", *RUN, *overrides, f"hydra.run.dir={run_dir}", timeout=600)


def final_state(run_dir: Path) -> dict:
    return torch.load(run_dir / "checkpoints" / "last.ckpt", map_location="cpu", weights_only=True)


def test_sigterm_to_rank_0_alone_stops_both_ranks_at_one_step_and_resumes_exactly(tmp_path: Path) -> None:
    straight = tmp_path / "straight"
    assert train(straight).returncode == 0
    run_dir = tmp_path / "job"
    stopped = train(run_dir, *fault("SignalAtStep", signal_name="SIGTERM", step=2, rank=0))
    assert stopped.returncode == 128 + signal.SIGTERM, stopped.stdout[-3000:]
    assert torch.load(run_dir / "checkpoints" / "interrupted.ckpt", weights_only=True)["global_step"] == 3
    assert json.loads((run_dir / "metrics.json").read_text())["status"] == "interrupted"
    resumed = train(run_dir, "resume=true")
    assert resumed.returncode == 0, resumed.stdout[-3000:]
    reference, final = final_state(straight), final_state(run_dir)
    assert final["global_step"] == reference["global_step"] == 8
    different = [
        k for k in reference["state_dict"] if not torch.equal(reference["state_dict"][k], final["state_dict"][k])
    ]
    assert not different, f"weights differ from the uninterrupted DDP run: {different[:5]}"


@pytest.mark.parametrize("rank", [0, 1])
def test_a_nan_loss_on_one_rank_stops_both(tmp_path: Path, rank: int) -> None:
    result = train(tmp_path, *fault("PoisonBatch", batch=1, rank=rank))
    assert result.returncode == 3, result.stdout[-3000:]
    assert "train/loss is" in result.stdout and "at optimizer step 1" in result.stdout
    assert json.loads((tmp_path / "metrics.json").read_text())["status"] == "failed"


def test_a_full_disk_on_rank_0_ends_both_ranks(tmp_path: Path) -> None:
    # Only rank 0 writes, so only rank 0 fails; the other must end too, not wait at the save's barrier. (On gloo
    # it also ends when rank 0's connection closes; under NCCL it would wait for its timeout, hence cvkit's
    # stop_other_ranks, which this CPU test cannot tell apart.)
    result = train(tmp_path, *fault("DiskFullFromStep", step=4))
    assert result.returncode == 3, result.stdout[-3000:]
    assert f"cannot write checkpoint {tmp_path / 'checkpoints'}" in result.stdout
    assert "not enough free space" in result.stdout and "Traceback" not in result.stdout
