"""BaseTask.continue_schedule: a run resumed on another number of devices (another steps-per-epoch and global
batch) continues its LR schedule at the same position in epochs, at the peak LR of its new global batch.

The task and its optimizer and LambdaLR are cvkit's own (configure_optimizers); the trainer is a stand-in that
only says how many optimizer steps the run has (Lightning's estimated_stepping_batches). (tests/test_train.py
runs the same through real training.)"""

import logging
import math
from types import SimpleNamespace

import pytest
import torch
from torch import nn

from cvkit.checkpoints import SCHEDULE_KEY
from cvkit.tasks import ClassificationTask
from tests.helpers.tasks import plan_of, task_arguments

MAX_EPOCHS, WARMUP_EPOCHS = 6, 1
SCHEDULER = {"name": "cosine", "warmup_epochs": WARMUP_EPOCHS, "warmup_start_factor": 0.1, "min_lr": 0.0}


def cosine_factor(epoch: float) -> float:
    """The configured schedule at `epoch`, written out: linear warmup from 0.1 over 1 epoch, then cosine to 0."""
    if epoch < WARMUP_EPOCHS:
        return 0.1 + 0.9 * epoch / WARMUP_EPOCHS
    return 0.5 * (1 + math.cos(math.pi * (epoch - WARMUP_EPOCHS) / (MAX_EPOCHS - WARMUP_EPOCHS)))


def task_on(devices: int, batches_per_epoch: int) -> tuple[ClassificationTask, torch.optim.lr_scheduler.LambdaLR]:
    """A task planned for `devices` devices of 32 images each (base LR 0.1 for 256) and `batches_per_epoch`
    steps an epoch, on a stand-in trainer; and its scheduler, as Lightning would hold it."""
    optimizer = {"_target_": "torch.optim.SGD", "momentum": 0.9}
    plan = plan_of(
        devices=devices,
        max_epochs=MAX_EPOCHS,
        scheduler=SCHEDULER,
        optimizer=optimizer,
    )
    task = ClassificationTask(
        **task_arguments(nn.Linear(4, 3), ["a", "b", "c"], plan), label_smoothing=0.0, class_weights=None
    )
    trainer = SimpleNamespace(
        max_epochs=MAX_EPOCHS, estimated_stepping_batches=batches_per_epoch * MAX_EPOCHS, current_epoch=0
    )
    task.trainer = trainer
    configured = task.configure_optimizers()
    task.on_train_start()  # where the task takes Lightning's steps an epoch
    trainer.lr_scheduler_configs = [SimpleNamespace(scheduler=configured["lr_scheduler"]["scheduler"])]
    return task, configured["lr_scheduler"]["scheduler"]


def train_steps(scheduler: torch.optim.lr_scheduler.LambdaLR, steps: int) -> None:
    for _ in range(steps):
        scheduler.optimizer.step()  # no gradients: nothing moves but the schedule
        scheduler.step()


def saved_at_step(steps: int) -> tuple[dict, dict]:
    """What a checkpoint of a 1-device run (10 steps an epoch) holds after `steps` steps: the schedule record
    cvkit adds, and the scheduler state Lightning restores."""
    task, scheduler = task_on(devices=1, batches_per_epoch=10)
    train_steps(scheduler, steps)
    checkpoint = {}
    task.on_save_checkpoint(checkpoint)
    return checkpoint[SCHEDULE_KEY], scheduler.state_dict()


def resumed_on(devices: int, batches_per_epoch: int, saved: dict, scheduler_state: dict):
    task, scheduler = task_on(devices, batches_per_epoch)
    scheduler.load_state_dict(scheduler_state)  # as Lightning restores it, before on_train_start
    task.continue_schedule(saved)
    return task, scheduler


def test_the_saved_schedule_record_is_in_steps_of_the_old_run() -> None:
    saved, state = saved_at_step(30)
    assert saved == {"steps_per_epoch": 10, "global_batch_size": 32, "effective_lr": pytest.approx(0.1 * 32 / 256)}
    assert state["last_epoch"] == 30  # epoch 3.0


def test_a_resume_on_two_devices_continues_at_the_same_epoch_with_the_new_peak_lr(caplog) -> None:
    saved, state = saved_at_step(30)  # epoch 3.0 of 10 steps an epoch
    with caplog.at_level(logging.WARNING):
        task, scheduler = resumed_on(2, 5, saved, state)  # twice the global batch: 5 steps an epoch
    new_peak = 0.1 * 64 / 256
    assert task.plan.lr.effective_lr == pytest.approx(new_peak)
    assert scheduler.last_epoch == 15  # epoch 3.0 in the new run's steps
    group = scheduler.optimizer.param_groups[0]
    assert group["lr"] == pytest.approx(new_peak * cosine_factor(3.0))
    assert scheduler.get_last_lr() == pytest.approx([new_peak * cosine_factor(3.0)])
    assert "resumed with another global batch: 32 (peak lr 0.0125) -> 64 (peak lr 0.025)" in caplog.text
    # From there on the curve is followed in the new steps and at the new peak: step 16 is epoch 3.2.
    train_steps(scheduler, 1)
    assert group["lr"] == pytest.approx(new_peak * cosine_factor(16 / 5))


def test_a_resume_on_the_same_devices_changes_nothing(caplog) -> None:
    saved, state = saved_at_step(30)
    before = 0.1 * 32 / 256 * cosine_factor(3.0)
    with caplog.at_level(logging.WARNING):
        _, scheduler = resumed_on(1, 10, saved, state)
    assert scheduler.last_epoch == 30 and scheduler.optimizer.param_groups[0]["lr"] == pytest.approx(before)
    assert "another global batch" not in caplog.text


def test_a_resume_in_the_warmup_keeps_its_fraction_of_an_epoch() -> None:
    saved, state = saved_at_step(4)  # epoch 0.4 of the warmup
    _, scheduler = resumed_on(4, 3, saved, state)  # 4 devices: 3 (rounded up) steps an epoch
    assert scheduler.last_epoch == round(0.4 * 3) == 1
    assert scheduler.optimizer.param_groups[0]["lr"] == pytest.approx(0.1 * 128 / 256 * cosine_factor(1 / 3))
