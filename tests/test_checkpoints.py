"""What the checkpoints of a run hold, and how a save fails: last.ckpt against a metric that gets worse,
periodic saves, a full disk, the order resume=true tries checkpoints in."""

import errno
import os
from collections import namedtuple
from pathlib import Path

import pytest
import torch

import cvkit.checkpoints.files
from cvkit.checkpoints import checkpoint_in, newest_readable, run_checkpoints
from cvkit.errors import CvkitError, TrainingFailed
from cvkit.train import train
from tests.helpers.cli import assert_exit, run_cli
from tests.helpers.configs import compose_train
from tests.helpers.logs import csv_column, read_report
from tests.helpers.presets import CHECKPOINTED_DIGITS


def test_last_checkpoint_holds_the_final_epoch_when_the_monitored_metric_gets_worse(tmp_path: Path) -> None:
    # Monitoring val/acc for its *lowest* value: after the first epoch the monitored metric only gets worse,
    # as it does in a real run past its peak. Lightning's save_last=True left last.ckpt at the best epoch here.
    metrics, objects = train(
        compose_train(tmp_path, *CHECKPOINTED_DIGITS, "trainer.max_epochs=3", "task.monitor_mode=min")
    )
    folder = tmp_path / "checkpoints"
    best = torch.load(objects["report"]["best_checkpoint"], weights_only=True)
    last = torch.load(folder / "last.ckpt", weights_only=True)
    assert best["epoch"] < 2 and best["global_step"] < 12  # the best checkpoint stays behind
    assert (last["epoch"], last["global_step"]) == (2, 12)  # last.ckpt is the end of the run
    weights = objects["task"].state_dict()
    assert all(torch.equal(weights[k].cpu(), v) for k, v in last["state_dict"].items())
    assert read_report(tmp_path)["status"] == "completed"
    # val/acc_best is the highest val/acc of the run whatever the checkpoint mode: not the monitored (lowest) one.
    per_epoch = csv_column(tmp_path, "val/acc")
    assert len(per_epoch) == 3 and min(per_epoch) < max(per_epoch)
    assert best["epoch"] == per_epoch.index(min(per_epoch))  # what task.monitor_mode=min picks
    assert metrics["val/acc_best"] == pytest.approx(max(per_epoch))


def test_periodic_saves_keep_the_newest(tmp_path: Path) -> None:
    train(
        compose_train(
            tmp_path, *CHECKPOINTED_DIGITS, "trainer.max_epochs=2", "callbacks.checkpoints.every_n_train_steps=3"
        )
    )
    names = sorted(path.name for path in (tmp_path / "checkpoints").glob("step-*.ckpt"))
    assert names == ["step-00000003.ckpt", "step-00000006.ckpt"]  # steps 3 and 6 of 8; keep_periodic=2
    saved = torch.load(tmp_path / "checkpoints" / "step-00000006.ckpt", weights_only=True)
    assert saved["global_step"] == 6 and saved["epoch"] == 1  # mid-epoch: 2 of epoch 1's 4 steps done


def test_time_based_saves_follow_the_clock(tmp_path: Path) -> None:
    # Every 0.006 s: a save after every step (each step takes longer); the newest three are kept.
    overrides = ["callbacks.checkpoints.every_n_minutes=0.0001", "callbacks.checkpoints.keep_periodic=3"]
    train(compose_train(tmp_path, *CHECKPOINTED_DIGITS, "trainer.max_epochs=2", *overrides))
    names = sorted(path.name for path in (tmp_path / "checkpoints").glob("step-*.ckpt"))
    assert names == ["step-00000006.ckpt", "step-00000007.ckpt", "step-00000008.ckpt"]


def test_bad_save_intervals_are_named(tmp_path: Path) -> None:
    with pytest.raises(CvkitError, match=r"callbacks.checkpoints.every_n_train_steps=0 is not valid: a positive"):
        train(compose_train(tmp_path, *CHECKPOINTED_DIGITS, "callbacks.checkpoints.every_n_train_steps=0"))


Usage = namedtuple("Usage", "total used free")


def test_a_full_disk_stops_the_run_naming_the_file_and_keeps_the_earlier_checkpoints(tmp_path, monkeypatch) -> None:
    fsync = os.fsync

    def fsync_fails_for_step_6(descriptor: int) -> None:  # the disk fills up while step 6 is written
        if "step-00000006" in os.readlink(f"/proc/self/fd/{descriptor}"):
            raise OSError(errno.ENOSPC, os.strerror(errno.ENOSPC))
        fsync(descriptor)

    monkeypatch.setattr(cvkit.checkpoints.files.os, "fsync", fsync_fails_for_step_6)
    cfg = compose_train(
        tmp_path, *CHECKPOINTED_DIGITS, "trainer.max_epochs=3", "callbacks.checkpoints.every_n_train_steps=2"
    )
    with pytest.raises(
        TrainingFailed,
        match=r"cannot write checkpoint .*step-00000006.ckpt: No space left on device "
        r"\(it needs \d+\.\d MiB, .* has \d+\.\d MiB free\); the earlier checkpoints are intact",
    ):
        train(cfg)
    folder = tmp_path / "checkpoints"
    assert not list(folder.glob("*.partial"))
    assert {torch.load(path, weights_only=True)["global_step"] for path in run_checkpoints(tmp_path)} == {2, 4}
    report = read_report(tmp_path)
    assert report["status"] == "failed" and "step-00000006.ckpt" in report["error"]


class FillsUpAfter:
    """A file whose writes fail with "no space left on device" after `limit` bytes (a disk that fills up
    while a checkpoint is written)."""

    def __init__(self, file, limit: int) -> None:
        self.file, self.limit, self.written = file, limit, 0

    def write(self, data) -> int:
        self.written += memoryview(data).nbytes
        if self.written > self.limit:
            raise OSError(errno.ENOSPC, os.strerror(errno.ENOSPC))
        return self.file.write(data)

    def __getattr__(self, name: str):
        return getattr(self.file, name)

    def __enter__(self) -> "FillsUpAfter":
        return self

    def __exit__(self, *exc) -> None:
        self.file.close()


def test_a_disk_filling_up_mid_write_is_named_not_reported_as_torchs_own_error(tmp_path, monkeypatch) -> None:
    def open_filling_up_at_step_6(path, mode):  # torch.save writes into this file itself: its error is torch's
        file = open(path, mode)  # noqa: SIM115 (closed by write_atomically)
        return FillsUpAfter(file, 2**20) if "step-00000006" in str(path) else file

    monkeypatch.setattr(cvkit.checkpoints.files, "open", open_filling_up_at_step_6, raising=False)
    cfg = compose_train(
        tmp_path, *CHECKPOINTED_DIGITS, "trainer.max_epochs=3", "callbacks.checkpoints.every_n_train_steps=2"
    )
    with pytest.raises(
        TrainingFailed, match=r"cannot write checkpoint .*step-00000006.ckpt: No space left on device \(it needs"
    ):
        train(cfg)
    assert not list((tmp_path / "checkpoints").glob("*.partial"))
    assert {torch.load(path, weights_only=True)["global_step"] for path in run_checkpoints(tmp_path)} == {2, 4}


def test_too_little_free_space_is_found_before_writing(tmp_path: Path, monkeypatch) -> None:
    monkeypatch.setattr(
        cvkit.checkpoints.files.shutil, "disk_usage", lambda path: Usage(10**9, 10**9 - 5 * 2**20, 5 * 2**20)
    )
    with pytest.raises(
        TrainingFailed, match=r"best-epoch000.ckpt: not enough free space \(it needs [1-9]\d+\.\d MiB, .* 5.0 MiB"
    ):
        train(compose_train(tmp_path, *CHECKPOINTED_DIGITS, "trainer.max_epochs=1"))
    assert not list((tmp_path / "checkpoints").glob("*"))


def test_resume_tries_the_newest_first_and_names_each_unreadable_one(tmp_path: Path, caplog) -> None:
    folder = tmp_path / "checkpoints"
    folder.mkdir()
    for age, name in enumerate(["interrupted.ckpt", "step-00000004.ckpt", "last.ckpt", "best-epoch000.ckpt"]):
        torch.save({"state_dict": {}, "global_step": 10 - age}, folder / name)
        os.utime(folder / name, (1_000_000 - age, 1_000_000 - age))
    (folder / "interrupted.ckpt").write_bytes(b"cut short")
    path, checkpoint = newest_readable(tmp_path)
    assert path.name == "step-00000004.ckpt" and checkpoint["global_step"] == 9
    assert f"{folder / 'interrupted.ckpt'} is not a readable PyTorch checkpoint" in caplog.text
    assert f"1 newer checkpoint(s) could not be read; using {path}" in caplog.text


def test_a_run_dir_as_ckpt_path_means_its_newest_readable_checkpoint(tmp_path: Path) -> None:
    folder = tmp_path / "checkpoints"
    folder.mkdir()
    torch.save({"state_dict": {}, "global_step": 12}, folder / "last.ckpt")
    torch.save({"state_dict": {}, "global_step": 8}, folder / "best-epoch001.ckpt")
    assert checkpoint_in(tmp_path) == folder / "last.ckpt"
    assert checkpoint_in(folder / "best-epoch001.ckpt") == folder / "best-epoch001.ckpt"
    (folder / "last.ckpt").write_bytes(b"cut short")
    assert checkpoint_in(tmp_path) == folder / "best-epoch001.ckpt"


def test_the_commands_name_a_run_dir_without_checkpoints(tmp_path: Path) -> None:
    result = run_cli("cvkit-export", f"ckpt_path={tmp_path}", "format=onnx")
    assert_exit(result, 2, f"cvkit: ckpt_path={tmp_path} is a folder without checkpoints", clean=True)


def test_last_is_a_link_to_the_best_written_at_the_same_step(tmp_path: Path) -> None:
    train(compose_train(tmp_path, *CHECKPOINTED_DIGITS, "trainer.max_epochs=1"))
    folder = tmp_path / "checkpoints"
    assert (folder / "last.ckpt").samefile(folder / "best-epoch000.ckpt")  # one write for both
    last = torch.load(folder / "last.ckpt", weights_only=True)
    assert last["global_step"] > 0 and "optimizer_states" in last and not list(folder.glob("*.partial"))
