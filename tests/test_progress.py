"""Progress in log files (not a terminal): timed lines, epoch lines, and one notice when an epoch will be long."""

from __future__ import annotations

import logging
from pathlib import Path

import pytest
import pytorch_lightning as pl

from cvkit.builders import build_datamodule, build_trainer
from cvkit.callbacks.progress import TimedProgress, duration
from tests.helpers.cli import train_into
from tests.helpers.configs import compose_train
from tests.helpers.presets import SHORT_DIGITS, TINY_CLASSIFICATION
from tests.helpers.tasks import configured_task

STEP_S = 20.0  # what the fake clock advances per training step


class StepClock(pl.Callback):
    """A clock that moves `STEP_S` seconds at the start of every training batch (and, with `in_validation`, every
    validation batch) and stands still otherwise."""

    def __init__(self, in_validation: bool = False) -> None:
        self.now = 0.0
        self.in_validation = in_validation

    def __call__(self) -> float:
        return self.now

    def on_train_batch_start(self, *args: object) -> None:
        self.now += STEP_S

    def on_validation_batch_start(self, *args: object) -> None:
        self.now += STEP_S if self.in_validation else 0.0


def fit_with(cfg, *callbacks: pl.Callback) -> None:
    pl.seed_everything(cfg.seed, workers=True)
    datamodule = build_datamodule(cfg)
    trainer = build_trainer(cfg, callbacks=list(callbacks))
    task = configured_task(cfg, datamodule)
    trainer.fit(task, datamodule=datamodule)


def test_lines_come_by_time_with_rate_loss_and_eta_and_one_long_epoch_notice(
    tmp_path: Path, caplog: pytest.LogCaptureFixture
) -> None:
    """Steps of 20 s (fake clock), a line every 30 s: after steps 2, 4 and 6 of each 6-step epoch of 32 images."""
    cfg = compose_train(
        tmp_path, *SHORT_DIGITS, "data.batch_size=32", "trainer.max_epochs=2", "trainer.limit_train_batches=6"
    )
    clock = StepClock()
    with caplog.at_level(logging.INFO, logger="cvkit.callbacks.progress"):
        fit_with(cfg, clock, TimedProgress(log_interval_s=30, long_epoch_s=100, clock=clock))
    lines = [r.getMessage() for r in caplog.records if r.name == "cvkit.callbacks.progress"]

    steps = [line for line in lines if " images/s" in line]
    assert [line.split("  ")[:2] for line in steps] == [
        [f"epoch {epoch}/2", f"step {step}/6"] for epoch in (1, 2) for step in (2, 4, 6)
    ]
    # 64 images in 40 s; 4 steps of 20 s left in the epoch, then one more epoch of 6.
    assert "1.6 images/s" in steps[0] and "loss " in steps[0]
    assert steps[0].endswith("epoch ETA 1m20s, training ETA 3m20s")
    assert steps[-1].endswith("epoch ETA 0s, training ETA 0s")

    ends = [line for line in lines if " done in " in line]
    assert [line.split(":")[0] for line in ends] == ["epoch 1/2 done in 2m00s", "epoch 2/2 done in 2m00s"]
    assert "val/acc " in ends[0] and "train/loss_epoch " in ends[0]

    # After 5 steps, 6 x 20 s > 100 s: said once, with what would shorten it.
    notices = [r.getMessage() for r in caplog.records if r.levelno == logging.WARNING]
    assert len(notices) == 1, notices
    assert "one training epoch will take about 2m00s (6 steps on the CPU)" in notices[0]
    assert "trainer.limit_train_batches=0.1" in notices[0] and "data.image_size" in notices[0]


def test_no_notice_for_an_epoch_within_the_limit(tmp_path: Path, caplog: pytest.LogCaptureFixture) -> None:
    cfg = compose_train(tmp_path, *SHORT_DIGITS, "trainer.max_epochs=1", "trainer.limit_train_batches=6")
    clock = StepClock()
    with caplog.at_level(logging.INFO, logger="cvkit.callbacks.progress"):
        fit_with(cfg, clock, TimedProgress(log_interval_s=1000, long_epoch_s=121, clock=clock))
    messages = [r.getMessage() for r in caplog.records if r.name == "cvkit.callbacks.progress"]
    assert not [m for m in messages if "images/s" in m or "will take" in m], messages
    assert len([m for m in messages if " done in 2m00s" in m]) == 1


def test_a_long_validation_shows_its_batches_and_eta(tmp_path: Path, caplog: pytest.LogCaptureFixture) -> None:
    cfg = compose_train(
        tmp_path, *SHORT_DIGITS, "trainer.max_epochs=1", "trainer.limit_train_batches=1", "trainer.limit_val_batches=4"
    )
    clock = StepClock(in_validation=True)
    with caplog.at_level(logging.INFO, logger="cvkit.callbacks.progress"):
        fit_with(cfg, clock, TimedProgress(log_interval_s=30, clock=clock))
    lines = [r.getMessage() for r in caplog.records if r.getMessage().startswith("validating")]
    assert lines == ["validating: batch 1/4, ETA 1m00s", "validating: batch 3/4, ETA 20s"]  # not the sanity check's


def test_cvkit_train_in_a_log_file_prints_epoch_lines_not_a_line_per_step(tmp_path: Path) -> None:
    """The CLI's output is a pipe here, as in a SLURM log: the timed progress, not a bar redrawn per step."""
    run_dir = tmp_path / "run"
    stdout = train_into(run_dir, *TINY_CLASSIFICATION)
    assert "epoch 1/1 done in " in stdout and "val/acc " in stdout
    assert "it/s" not in stdout  # no TQDM or rich bar
    assert "epoch 1/1 done in " in (run_dir / "train.log").read_text()


@pytest.mark.parametrize(("seconds", "shown"), [(0.4, "0s"), (59, "59s"), (75, "1m15s"), (5400, "1h30m")])
def test_durations_read_as_hours_minutes_seconds(seconds: float, shown: str) -> None:
    assert duration(seconds) == shown
