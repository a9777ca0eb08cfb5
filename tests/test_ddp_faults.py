"""Faults under DDP (2 CPU processes, gloo) that reach one rank only: both ranks must decide together,
stop at the same step, save once and exit non-zero, instead of one rank waiting for the other forever."""

import signal
from pathlib import Path

import pytest

from tests.helpers.callbacks import DiskFullFromStep, PoisonBatch, SignalAtStep, plug
from tests.helpers.checkpoints import assert_same_weights, final_checkpoint, load_checkpoint
from tests.helpers.cli import assert_exit, run_cli
from tests.helpers.logs import read_report
from tests.helpers.presets import RESUMABLE_DDP_DIGITS


def train(run_dir: Path, *overrides: str):
    return run_cli("cvkit-train", *RESUMABLE_DDP_DIGITS, *overrides, f"hydra.run.dir={run_dir}", timeout=600)


def test_sigterm_to_rank_0_alone_stops_both_ranks_at_one_step_and_resumes_exactly(tmp_path: Path) -> None:
    straight = tmp_path / "straight"
    assert_exit(train(straight), 0)
    run_dir = tmp_path / "job"
    stopped = train(run_dir, *plug(SignalAtStep, "fault", signal_name="SIGTERM", step=2, rank=0))
    assert_exit(stopped, 128 + signal.SIGTERM)
    assert load_checkpoint(run_dir / "checkpoints" / "interrupted.ckpt")["global_step"] == 3
    assert read_report(run_dir)["status"] == "interrupted"
    assert_exit(train(run_dir, "resume=true"), 0)
    reference, final = final_checkpoint(straight), final_checkpoint(run_dir)
    assert final["global_step"] == reference["global_step"] == 8
    assert_same_weights(reference["state_dict"], final["state_dict"])


@pytest.mark.parametrize("rank", [0, 1])
def test_a_nan_loss_on_one_rank_stops_both(tmp_path: Path, rank: int) -> None:
    result = train(tmp_path, *plug(PoisonBatch, "fault", batch=1, rank=rank))
    assert_exit(result, 3, "train/loss is", "at optimizer step 1")
    assert read_report(tmp_path)["status"] == "failed"


def test_a_full_disk_on_rank_0_ends_both_ranks(tmp_path: Path) -> None:
    # Only rank 0 writes, so only rank 0 fails; the other must end too, not wait at the save's barrier. (On gloo
    # it also ends when rank 0's connection closes; under NCCL it would wait for its timeout, hence cvkit's
    # stop_other_ranks, which this CPU test cannot tell apart.)
    result = train(tmp_path, *plug(DiskFullFromStep, "fault", step=4))
    assert_exit(result, 3, f"cannot write checkpoint {tmp_path / 'checkpoints'}", "not enough free space", clean=True)
