"""train(cfg) on real data at small scale: outcomes, files, resume, warm start."""

import json
import math
import re
from pathlib import Path
from types import SimpleNamespace

import pytest
import torch

from cvkit.checkpoints import init_weights
from cvkit.errors import CvkitError
from cvkit.models import build_classifier
from cvkit.tasks.base import channels_last_for
from cvkit.train import train
from tests.helpers.callbacks import RecordFirstConv, StopAfterEpochs, plug
from tests.helpers.checkpoints import assert_same_weights, final_checkpoint, load_checkpoint
from tests.helpers.configs import compose_train
from tests.helpers.logs import read_metrics, read_report, read_summary, tensorboard_scalars
from tests.helpers.presets import LEARNING_DIGITS
from tests.helpers.tasks import configured_task


def test_digits_run_learns_and_writes_its_files(tmp_path: Path) -> None:
    metrics, objects = train(compose_train(tmp_path, *LEARNING_DIGITS, "trainer.max_epochs=3"))
    assert metrics["val/acc"] > 0.6  # 10 classes: chance is 0.1
    assert metrics["val/loss"] < 2.0
    assert (tmp_path / "checkpoints" / "last.ckpt").is_file()
    assert Path(objects["report"]["best_checkpoint"]).is_file()
    assert list((tmp_path / "tensorboard").glob("events.out.tfevents.*"))
    written = read_report(tmp_path)
    assert written["metrics"]["val/acc"] == pytest.approx(metrics["val/acc"])
    assert len(written["val_confusion_matrix"]) == 10
    assert set(written["val_per_class"]) == {str(d) for d in range(10)}
    summary = read_summary(tmp_path)
    assert summary["global_batch_size"] == 32 and summary["effective_lr"] == pytest.approx(0.8 * 32 / 256)
    assert summary["split_sizes"] == {"train": 1437, "val": 360}


def test_resume_gives_the_same_weights_as_training_straight(tmp_path: Path) -> None:
    # Workers and augmentation on: their randomness must also replay after the resume.
    run = [*LEARNING_DIGITS, "data.num_workers=2", "trainer.max_epochs=2", "seed=7"]
    train(compose_train(tmp_path / "straight", *run))
    interrupted = tmp_path / "interrupted"
    train(compose_train(interrupted, *run, *plug(StopAfterEpochs, "stop", epochs=1)))
    after_one_epoch = final_checkpoint(interrupted)
    assert after_one_epoch["epoch"] == 0 and after_one_epoch["cvkit_best"]["val_acc_best"] > 0
    train(compose_train(interrupted, *run, "resume=true"))
    assert_same_weights(
        final_checkpoint(tmp_path / "straight")["state_dict"], final_checkpoint(interrupted)["state_dict"]
    )
    assert read_summary(interrupted)["resumed_from"].endswith("last.ckpt")
    # The best val accuracy spans the resume: the same as training straight through.
    best = {run: read_metrics(tmp_path / run)["val/acc_best"] for run in ("straight", "interrupted")}
    assert best["interrupted"] == pytest.approx(best["straight"], abs=1e-6)


def test_best_metric_values_are_carried_over(tmp_path: Path) -> None:
    cfg = compose_train(tmp_path, *LEARNING_DIGITS)
    saved_from, restored = (configured_task(cfg) for _ in range(2))
    assert saved_from.best_values() == {}
    saved_from.val_acc_best.update(torch.tensor(0.8))
    saved_from.val_acc_best.update(torch.tensor(0.6))
    restored.restore_best_values(saved_from.best_values())
    assert restored.best_values() == pytest.approx({"val_acc_best": 0.8})


def test_resume_without_a_checkpoint_starts_fresh(tmp_path: Path, caplog: pytest.LogCaptureFixture) -> None:
    train(compose_train(tmp_path, *LEARNING_DIGITS, "trainer.max_epochs=1", "resume=true"))
    assert "starting a fresh run" in caplog.text
    assert (tmp_path / "checkpoints" / "last.ckpt").is_file()


def test_init_from_loads_weights_and_reports_the_resized_head(tmp_path: Path, caplog) -> None:
    train(compose_train(tmp_path, *LEARNING_DIGITS, "trainer.max_epochs=1"))
    checkpoint = tmp_path / "checkpoints" / "last.ckpt"
    model = build_classifier(family="resnet", name="resnet18", num_classes=3, image_size=16)
    missing, unexpected = init_weights(model, str(checkpoint))
    assert missing == ["fc.bias", "fc.weight"] and unexpected == []
    trained = load_checkpoint(checkpoint)["state_dict"]
    assert torch.equal(model.conv1.weight, trained["model.conv1.weight"])


@pytest.mark.parametrize(
    ("override", "message"),
    [
        ("trainer.max_epochs=abc", "trainer.max_epochs='abc' is not valid: it must be an integer"),
        ("data.batch_size=0", "data.batch_size=0 is not valid: it must be above 0, e.g. data.batch_size=64"),
        ("ckpt_path=/nonexistent/run/last.ckpt", "ckpt_path: /nonexistent/run/last.ckpt does not exist"),
        ("task.class_weights=[1,2]", "task.class_weights must be null, 'balanced' or a list of 10 numbers"),
    ],
)
def test_bad_values_are_named(tmp_path: Path, override: str, message: str) -> None:
    with pytest.raises(CvkitError, match=re.escape(message)):
        train(compose_train(tmp_path, *LEARNING_DIGITS, override))


def test_a_file_that_is_not_a_checkpoint_is_refused(tmp_path: Path) -> None:
    fake = tmp_path / "model.ckpt"
    fake.write_text("not a checkpoint")
    with pytest.raises(CvkitError, match="is not a readable PyTorch checkpoint"):
        train(compose_train(tmp_path, *LEARNING_DIGITS, f"ckpt_path={fake}"))
    torch.save({"weights": torch.zeros(1)}, fake)
    with pytest.raises(CvkitError, match="is not a Lightning checkpoint"):
        train(compose_train(tmp_path, *LEARNING_DIGITS, f"init_from={fake}"))


def test_global_batch_size_sets_the_per_device_batch_and_the_step_count(tmp_path: Path) -> None:
    cfg = compose_train(
        tmp_path,
        *LEARNING_DIGITS,
        "data.global_batch_size=64",
        "trainer.accumulate_grad_batches=2",
        "trainer.max_epochs=2",
    )
    _, objects = train(cfg)
    summary = read_summary(tmp_path)
    assert (summary["per_device_batch_size"], summary["global_batch_size"]) == (32, 64)
    assert summary["effective_lr"] == pytest.approx(0.8 * 64 / 256)
    assert objects["task"].steps_per_epoch == 6 and objects["trainer"].global_step == 12  # 12 batches / 2 per step


def test_resume_with_another_global_batch_keeps_the_schedule_in_epochs(tmp_path: Path, caplog) -> None:
    run = [*LEARNING_DIGITS, "trainer.max_epochs=3", "scheduler=cosine", "scheduler.warmup_epochs=0"]
    train(compose_train(tmp_path, *run, *plug(StopAfterEpochs, "stop", epochs=1)))
    train(compose_train(tmp_path, *run, "resume=true", "trainer.accumulate_grad_batches=2"))
    assert "resumed with another global batch: 32 (peak lr 0.1) -> 64 (peak lr 0.2)" in caplog.text
    lrs = tensorboard_scalars(tmp_path, "lr")
    first_after_resume = next(lr for step, lr in lrs if step >= 12)
    # cosine over 3 epochs at epoch 1.0: 0.5 * (1 + cos(pi / 3)) = 0.75 of the new peak LR 0.2
    assert first_after_resume == pytest.approx(0.2 * 0.75, rel=1e-4)
    assert lrs[-1][1] < first_after_resume
    assert [step for step, _ in lrs] == list(range(12 + 2 * 6))  # every optimizer step, 12 then 6 per epoch


def test_logged_lr_has_the_warmup_shape(tmp_path: Path) -> None:
    train(
        compose_train(
            tmp_path,
            *LEARNING_DIGITS,
            "trainer.max_epochs=2",
            "scheduler=constant",
            "scheduler.warmup_epochs=1",
            "scheduler.warmup_start_factor=0.25",
        )
    )
    lrs = [lr for _, lr in tensorboard_scalars(tmp_path, "lr")]
    peak = 0.8 * 32 / 256
    expected = [peak * (0.25 + 0.75 * step / 12) for step in range(12)] + [peak] * 12
    assert lrs == pytest.approx(expected)


@pytest.mark.parametrize(
    ("precision", "channels_last", "dtype", "laid_out"),
    [
        ("32-true", True, "torch.float32", True),
        ("bf16-mixed", False, "torch.bfloat16", False),
        ("16-mixed", True, "torch.bfloat16", True),
        ("32-true", "auto", "torch.float32", False),  # auto: the default layout on the CPU
    ],
)
def test_precision_and_channels_last_reach_the_model(tmp_path: Path, precision, channels_last, dtype, laid_out) -> None:
    # On a CPU Lightning runs 16-mixed as bf16-mixed (fp16 autocast is GPU-only). Few steps: bf16
    # convolutions are slow on CPUs without bf16 instructions.
    record = plug(RecordFirstConv, "record")
    options = [f"trainer.precision={precision}", f"channels_last={channels_last}", "trainer.max_epochs=1"]
    few = ["trainer.limit_train_batches=4", "trainer.limit_val_batches=2"]
    metrics, _ = train(compose_train(tmp_path, *LEARNING_DIGITS, *options, *few, *record))
    seen = json.loads((tmp_path / "first_conv.json").read_text())
    assert seen == {"output_dtype": dtype, "channels_last_input": laid_out}
    assert read_summary(tmp_path)["channels_last"] is laid_out
    assert math.isfinite(metrics["train/loss"]) and math.isfinite(metrics["val/loss"])
    ran_as = "bf16-mixed" if precision == "16-mixed" else precision
    assert read_summary(tmp_path)["precision"] == ran_as


@pytest.mark.parametrize(("limit", "accumulate"), [(1.0, 3), (0.3, 2), (7, 1)])
def test_the_schedule_runs_over_the_steps_the_loader_gives(tmp_path: Path, limit, accumulate) -> None:
    # The schedule takes Lightning's count of the optimizer steps: with a cosine to 0 over the run, the LR of
    # the last step is the schedule's at (steps - 1) / steps of the run, whatever the loader's length.
    options = [f"trainer.limit_train_batches={limit}", f"trainer.accumulate_grad_batches={accumulate}"]
    run = [*options, "trainer.max_epochs=1", "trainer.limit_val_batches=1", "scheduler.warmup_epochs=0"]
    _, objects = train(compose_train(tmp_path, *LEARNING_DIGITS, *run))
    trainer, task = objects["trainer"], objects["task"]
    steps = math.ceil(trainer.num_training_batches / accumulate)
    assert task.steps_per_epoch == steps == trainer.global_step
    lrs = tensorboard_scalars(tmp_path, "lr")
    assert [step for step, _ in lrs] == list(range(steps))
    peak = 0.8 * 32 * accumulate / 256
    assert lrs[-1][1] == pytest.approx(peak * 0.5 * (1 + math.cos(math.pi * (steps - 1) / steps)), rel=1e-5)


def test_auto_channels_last_is_on_for_mixed_precision_on_cuda_only() -> None:
    def trainer(device: str, precision: str) -> SimpleNamespace:
        return SimpleNamespace(strategy=SimpleNamespace(root_device=torch.device(device)), precision=precision)

    assert channels_last_for("auto", trainer("cuda", "bf16-mixed")) is True
    assert channels_last_for("auto", trainer("cuda", "16-mixed")) is True
    assert channels_last_for("auto", trainer("cuda", "32-true")) is False
    assert channels_last_for("auto", trainer("cpu", "32-true")) is False  # faster on one CPU, slower on another
    assert channels_last_for("auto", trainer("mps", "32-true")) is False
    assert channels_last_for(False, trainer("cpu", "32-true")) is False
