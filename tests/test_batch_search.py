"""data.batch_size=auto: the search under a fake out-of-memory limit, the LR it feeds, a run that equals the run
given the batch it found, resume and evaluation with the found batch, and the smallest batch over DDP ranks."""

from __future__ import annotations

from pathlib import Path

import pytest
import torch

from cvkit.batch_search import StepProbe, largest_batch
from cvkit.errors import CvkitError
from cvkit.evaluate import evaluate
from cvkit.train import train
from tests.helpers.checkpoints import assert_same_weights, final_checkpoint
from tests.helpers.cli import assert_exit, run_cli, train_into
from tests.helpers.configs import compose_train
from tests.helpers.jobs import ranks_fitting
from tests.helpers.logs import read_summary
from tests.helpers.presets import DDP_CPU, SHORT_DIGITS, short_segmentation, tiny_detection

# 3 steps of one epoch on 16 px digits, no warmup.
AUTO_DIGITS = [*SHORT_DIGITS, "data.batch_size=auto", "trainer.max_epochs=1", "trainer.limit_train_batches=3"]


def out_of_memory_above(monkeypatch: pytest.MonkeyPatch, limit: int) -> list[int]:
    """Make every training step of the search above `limit` images run out of memory, as CUDA says it; the
    others use 1 byte. Returns the batch sizes tried, in order."""
    tried: list[int] = []

    def step_bytes(probe: StepProbe, size: int) -> int:
        tried.append(size)
        if size > limit:
            raise torch.OutOfMemoryError(f"CUDA out of memory. Tried to allocate {size} MiB")
        return 1

    monkeypatch.setattr(StepProbe, "step_bytes", step_bytes)
    return tried


@pytest.mark.parametrize(("limit", "found"), [(2, 2), (5, 5), (13, 8), (40, 40), (527, 520), (5000, 1024)])
def test_the_search_finds_the_largest_batch_below_the_limit(limit: int, found: int) -> None:
    tried = []
    assert largest_batch(lambda size: tried.append(size) or size <= limit, 1024) == found
    assert len(tried) <= 2 * 10 + 1  # doubling to 1024, then at most as many halvings
    assert all(size % 8 == 0 for size in tried if size >= 8 and size != 1024)


def test_a_batch_of_two_that_does_not_fit_is_an_error() -> None:
    with pytest.raises(CvkitError, match="not even a batch of 2 fits in the memory budget"):
        largest_batch(lambda size: False, 1024)


def test_an_error_that_is_not_out_of_memory_is_not_taken_for_one(monkeypatch, tmp_path: Path) -> None:
    def step_bytes(probe: StepProbe, size: int) -> int:
        raise RuntimeError("mat1 and mat2 shapes cannot be multiplied")

    monkeypatch.setattr(StepProbe, "step_bytes", step_bytes)
    with pytest.raises(RuntimeError, match="shapes cannot be multiplied"):
        train(compose_train(tmp_path, *AUTO_DIGITS))


def test_the_found_batch_sets_the_lr_and_is_written_to_the_summary(monkeypatch, tmp_path: Path) -> None:
    tried = out_of_memory_above(monkeypatch, 40)
    train(compose_train(tmp_path, *AUTO_DIGITS, "optimizer.lr=0.2", "optimizer.base_batch_size=80"))
    assert tried == [2, 4, 8, 16, 32, 64, 48, 40]
    summary = read_summary(tmp_path)
    assert summary["per_device_batch_size"] == summary["global_batch_size"] == 40
    assert summary["batch_size"] == "auto: 40 per device"
    assert summary["effective_lr"] == pytest.approx(0.2 * 40 / 80)  # the linear rule, for the batch found


def test_a_run_with_the_found_batch_is_the_run_given_that_batch(tmp_path: Path) -> None:
    """The search runs real training steps (CPU estimate, 0.25 GB); it leaves weights, BatchNorm statistics,
    metrics and random state as they were, so the run ends with the weights of a run given the batch."""
    train(compose_train(tmp_path / "auto", *AUTO_DIGITS, "batch_search.cpu_memory_gb=0.25"))
    found = read_summary(tmp_path / "auto")["per_device_batch_size"]
    assert 8 <= found < 1024
    train(compose_train(tmp_path / "given", *AUTO_DIGITS, f"data.batch_size={found}"))
    assert_same_weights(
        final_checkpoint(tmp_path / "given")["state_dict"], final_checkpoint(tmp_path / "auto")["state_dict"]
    )


def test_resume_and_evaluation_keep_the_batch_the_search_found(monkeypatch, tmp_path: Path) -> None:
    out_of_memory_above(monkeypatch, 24)
    train(compose_train(tmp_path, *AUTO_DIGITS))
    assert read_summary(tmp_path)["per_device_batch_size"] == 24
    tried = out_of_memory_above(monkeypatch, 1000)  # a new search would find another batch
    last = tmp_path / "checkpoints" / "last.ckpt"
    train(compose_train(tmp_path, *AUTO_DIGITS, "trainer.max_epochs=2", f"ckpt_path={last}"))
    assert tried == [] and read_summary(tmp_path)["per_device_batch_size"] == 24
    _, objects = evaluate(compose_train(tmp_path / "eval", *AUTO_DIGITS, f"ckpt_path={last}", config_name="eval"))
    assert objects["datamodule"].batch_size == 24 and tried == []


@pytest.mark.parametrize("task", ["detection", "segmentation"])
def test_detection_and_segmentation_search_with_their_own_batches(task: str, bccd_voc, camvid, tmp_path) -> None:
    """Real training steps of a detector (lists of images and targets) and a segmenter (masks), searched up to 4."""
    preset = tiny_detection(bccd_voc) if task == "detection" else short_segmentation(camvid)
    search = ["data.batch_size=auto", "batch_search.max_batch_size=4", "batch_search.cpu_memory_gb=16"]
    train(compose_train(tmp_path, *preset, *search, "trainer.limit_train_batches=2", "trainer.limit_val_batches=1"))
    summary = read_summary(tmp_path)
    assert summary["per_device_batch_size"] == 4 and summary["batch_size"] == "auto: 4 per device"


def test_a_batch_search_beside_a_global_batch_is_refused(tmp_path: Path) -> None:
    with pytest.raises(CvkitError, match="data.batch_size=auto and data.global_batch_size=64 both set the batch"):
        train(compose_train(tmp_path, *AUTO_DIGITS, "+data.global_batch_size=64"))


def test_ranks_that_found_different_batches_plan_once_for_the_smallest(tmp_path: Path) -> None:
    """Two gloo processes whose devices fit 40 and 24 images: both train on 24, the LR is planned for 2 x 24,
    and the run's summary is made, printed and written once."""
    env = ranks_fitting(tmp_path / "site", 40, 24)
    result = run_cli("cvkit-train", *DDP_CPU, *AUTO_DIGITS, f"hydra.run.dir={tmp_path / 'run'}", env=env)
    assert_exit(result, 0, "rank 0 found 40, another rank 24: all train on 24")
    assert result.stdout.count("cvkit run") == 1
    summary = read_summary(tmp_path / "run")
    assert (summary["per_device_batch_size"], summary["global_batch_size"]) == (24, 48)
    assert summary["effective_lr"] == pytest.approx(summary["base_lr"] * 48 / summary["base_batch_size"])
    assert summary["batch_size"] == "auto: 24 per device"


def test_ddp_ranks_train_on_the_batch_they_agreed_on(tmp_path: Path) -> None:
    """Two gloo processes each search (CPU estimate), agree, and the LR follows the global batch of both."""
    train_into(tmp_path, *DDP_CPU, *AUTO_DIGITS, "batch_search.cpu_memory_gb=0.25")
    summary = read_summary(tmp_path)
    found = summary["per_device_batch_size"]
    assert summary["global_batch_size"] == 2 * found and summary["devices"] == 2
    assert summary["effective_lr"] == pytest.approx(summary["base_lr"] * 2 * found / summary["base_batch_size"])
