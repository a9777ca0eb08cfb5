"""Checks that need a CUDA GPU (skipped without one): run them on a GPU machine with ``pytest -m gpu``."""

import json
import math
from pathlib import Path

import pytest
import torch

from tests.helpers.callbacks import RecordFirstConv, SignalAtStep, plug
from tests.helpers.checkpoints import assert_same_weights, final_checkpoint, load_checkpoint
from tests.helpers.cli import assert_exit, run_cli
from tests.helpers.logs import read_metrics, read_summary
from tests.helpers.presets import RESUMABLE_DIGITS

pytestmark = [
    pytest.mark.gpu,
    pytest.mark.skipif(not torch.cuda.is_available(), reason="needs a CUDA GPU"),
]
ON_GPU = ["trainer.accelerator=gpu", "trainer.precision=16-mixed", "trainer.deterministic=true"]
# The workload of the CPU fault suite (tests/test_fault_tolerance.py), with a save every 2 steps.
RUN = [*RESUMABLE_DIGITS, "callbacks.checkpoints.every_n_train_steps=2"]


def train(run_dir: Path, *overrides: str):
    return run_cli("cvkit-train", *RUN, *overrides, f"hydra.run.dir={run_dir}", gpu=True)


def test_sigterm_then_resume_under_16_mixed_gives_the_same_weights(tmp_path: Path, monkeypatch) -> None:
    # fp16 autocast with its gradient scaler: the scaler's state must come back with the resume.
    monkeypatch.setenv("CUBLAS_WORKSPACE_CONFIG", ":4096:8")  # deterministic cuBLAS, for bit-equal runs
    monkeypatch.setenv("CUDA_VISIBLE_DEVICES", "0")  # one GPU, shown to the run (run_cli hides them otherwise)
    straight = tmp_path / "straight"
    assert_exit(train(straight, *ON_GPU), 0)
    job = tmp_path / "job"
    stopped = train(job, *ON_GPU, *plug(SignalAtStep, "fault", signal_name="SIGTERM", step=8))
    assert_exit(stopped, 143)
    assert "native_amp_scaling_state" in load_checkpoint(job / "checkpoints" / "interrupted.ckpt")
    assert_exit(train(job, *ON_GPU, "resume=true"), 0)
    assert_same_weights(final_checkpoint(straight)["state_dict"], final_checkpoint(job)["state_dict"])


def test_auto_channels_last_and_uint8_batches_finished_on_the_gpu(tmp_path: Path, monkeypatch) -> None:
    # The loader's pinned uint8 batches are normalised on the GPU; bf16-mixed on CUDA turns channels-last on.
    monkeypatch.setenv("CUDA_VISIBLE_DEVICES", "0")
    run = tmp_path / "run"
    overrides = [
        "trainer.accelerator=gpu",
        "trainer.precision=bf16-mixed",
        "channels_last=auto",
        "data.num_workers=auto",
    ]
    assert_exit(train(run, *overrides, "trainer.max_epochs=1", *plug(RecordFirstConv, "record")), 0)
    seen = json.loads((run / "first_conv.json").read_text())
    assert seen == {"output_dtype": "torch.bfloat16", "channels_last_input": True}
    summary = read_summary(run)
    assert summary["channels_last"] is True and summary["loader_workers"] >= 1
    assert math.isfinite(read_metrics(run)["val/loss"])


def test_compiled_model_trains_on_the_gpu(tmp_path: Path, monkeypatch) -> None:
    monkeypatch.setenv("CUDA_VISIBLE_DEVICES", "0")
    run = tmp_path / "run"
    assert_exit(
        train(run, "trainer.accelerator=gpu", "trainer.precision=bf16-mixed", "compile=true", "trainer.max_epochs=1"), 0
    )
    assert math.isfinite(read_metrics(run)["train/loss"]) and math.isfinite(read_metrics(run)["val/loss"])


def test_the_batch_search_measures_the_gpu_and_the_lr_follows(tmp_path: Path, monkeypatch) -> None:
    # data.batch_size=auto on CUDA: the allocator's peak against memory_fraction of the free memory; a run at
    # 64 px takes more than the CPU default (64) and the LR follows the batch found.
    monkeypatch.setenv("CUDA_VISIBLE_DEVICES", "0")
    run = tmp_path / "run"
    overrides = ["trainer.accelerator=gpu", "trainer.precision=bf16-mixed", "data.image_size=64"]
    result = train(run, *overrides, "data.batch_size=auto", "batch_search.max_batch_size=512", "trainer.max_epochs=1")
    assert_exit(result, 0, "data.batch_size=auto:")
    summary = read_summary(run)
    found = summary["per_device_batch_size"]
    assert 64 < found <= 512 and summary["batch_size"] == f"auto: {found} per device"
    assert summary["effective_lr"] == pytest.approx(summary["base_lr"] * found / summary["base_batch_size"])
