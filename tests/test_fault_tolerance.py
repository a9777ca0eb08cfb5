"""Faults injected into real runs (digits, 16 px, 2 epochs of 6 steps): kill -9 between and during saves,
SIGTERM and Ctrl-C mid-epoch, a truncated newest checkpoint. Each run is resumed with ``resume=true`` and
must end with exactly the weights of the uninterrupted run, having lost at most the steps since its
last save."""

import os
import random
import signal
import subprocess
import time
from pathlib import Path

import pytest
import torch

from cvkit.builders import build_datamodule
from tests.helpers.callbacks import KillDuringSave, PoisonBatch, SignalAtStep, SignalInTest, SlowStepsFrom, plug
from tests.helpers.checkpoints import assert_same_weights, final_checkpoint, load_checkpoint
from tests.helpers.cli import assert_exit, cli_env, console_script, run_cli
from tests.helpers.configs import compose_train
from tests.helpers.logs import read_report
from tests.helpers.presets import RESUMABLE_DIGITS

EVERY = 2  # callbacks.checkpoints.every_n_train_steps
TOTAL_STEPS = 12
RUN = [*RESUMABLE_DIGITS, f"callbacks.checkpoints.every_n_train_steps={EVERY}"]


def train(run_dir: Path, *overrides: str) -> subprocess.CompletedProcess:
    return run_cli("cvkit-train", *RUN, *overrides, f"hydra.run.dir={run_dir}")


@pytest.fixture(scope="module")
def straight(tmp_path_factory: pytest.TempPathFactory) -> dict[str, torch.Tensor]:
    """The final weights of the run without faults."""
    run_dir = tmp_path_factory.mktemp("straight")
    assert_exit(train(run_dir), 0)
    final = final_checkpoint(run_dir)
    assert final["global_step"] == TOTAL_STEPS
    return final["state_dict"]


def resume_to_the_end(run_dir: Path, straight: dict[str, torch.Tensor]) -> str:
    """Resume `run_dir` to the end; assert it ends with the straight run's weights. Returns its output."""
    result = train(run_dir, "resume=true")
    assert_exit(result, 0)
    final = final_checkpoint(run_dir)
    assert final["global_step"] == TOTAL_STEPS
    assert_same_weights(straight, final["state_dict"])
    return result.stdout


def newest_step(run_dir: Path) -> int:
    """The step of the newest checkpoint in `run_dir` (0: none yet)."""
    return max((load_checkpoint(path)["global_step"] for path in (run_dir / "checkpoints").glob("*.ckpt")), default=0)


@pytest.mark.parametrize("step", sorted(random.Random(10).sample(range(1, TOTAL_STEPS), 2)))
def test_kill_9_between_saves_loses_at_most_the_steps_since_the_last_save(tmp_path: Path, straight, step) -> None:
    killed = train(tmp_path, *plug(SignalAtStep, "fault", signal_name="SIGKILL", step=step))
    assert killed.returncode == -signal.SIGKILL
    assert step - newest_step(tmp_path) < EVERY  # lost: only the steps after the newest save
    output = resume_to_the_end(tmp_path, straight)
    newest = step - step % EVERY  # the newest save before the kill
    assert f"saved at optimizer step {newest}" in output if newest else "starting a fresh run" in output


def test_kill_9_during_a_save_leaves_every_checkpoint_whole(tmp_path: Path, straight) -> None:
    killed = train(tmp_path, *plug(KillDuringSave, "fault", step=8))
    assert killed.returncode == -signal.SIGKILL
    folder = tmp_path / "checkpoints"
    partial = list(folder.glob("*.partial"))
    assert [path.name for path in partial] == ["step-00000008.ckpt.partial"]  # cut short, under another name
    # Every named file reads, and the newest of them is the save before the kill (step 6).
    saved = {path.name: load_checkpoint(path)["global_step"] for path in folder.glob("*.ckpt")}
    assert "last.ckpt" in saved and max(saved.values()) == 6, saved
    output = resume_to_the_end(tmp_path, straight)
    assert "a checkpoint whose writing was cut short" in output
    assert not list(folder.glob("*.partial"))


@pytest.mark.parametrize(("signal_name", "exit_code"), [("SIGTERM", 143), ("SIGUSR1", 138)])
def test_a_signal_mid_epoch_saves_that_step_and_exits_non_zero(tmp_path: Path, straight, signal_name, exit_code):
    stopped = train(tmp_path, *plug(SignalAtStep, "fault", signal_name=signal_name, step=8))
    interrupted = tmp_path / "checkpoints" / "interrupted.ckpt"
    # The step in progress ended, then the run saved it and stopped.
    assert_exit(stopped, exit_code, f"stopped by {signal_name} at optimizer step 9", clean=True)
    assert load_checkpoint(interrupted)["global_step"] == 9
    output = resume_to_the_end(tmp_path, straight)
    assert f"resuming from {interrupted}: saved at optimizer step 9" in output


def test_ctrl_c_to_the_process_group_saves_and_exits_130(tmp_path: Path, straight) -> None:
    # As a terminal sends it: SIGINT to the whole foreground process group, loader workers included.
    command = [console_script("cvkit-train"), *RUN, f"hydra.run.dir={tmp_path}"]
    with subprocess.Popen(
        command, env=cli_env(), stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True, start_new_session=True
    ) as process:
        first_save = tmp_path / "checkpoints" / f"step-{EVERY:08d}.ckpt"
        deadline = time.monotonic() + 300
        while not first_save.exists() and process.poll() is None and time.monotonic() < deadline:
            time.sleep(0.05)
        os.killpg(process.pid, signal.SIGINT)
        output, _ = process.communicate(timeout=120)
    assert process.returncode == 130, output[-3000:]
    assert "stopped by SIGINT" in output and "Traceback" not in output
    saved = load_checkpoint(tmp_path / "checkpoints" / "interrupted.ckpt")["global_step"]
    assert EVERY <= saved < TOTAL_STEPS
    resume_to_the_end(tmp_path, straight)


def test_a_truncated_newest_checkpoint_falls_back_to_the_next_newest(tmp_path: Path, straight) -> None:
    assert_exit(train(tmp_path, *plug(SignalAtStep, "fault", signal_name="SIGTERM", step=8)), 143)
    interrupted = tmp_path / "checkpoints" / "interrupted.ckpt"
    data = interrupted.read_bytes()
    interrupted.write_bytes(data[: len(data) // 2])  # a copy cut short, a power loss
    output = resume_to_the_end(tmp_path, straight)
    assert f"{interrupted} is not a readable PyTorch checkpoint" in output
    assert "step-00000008.ckpt" in output.split("could not be read; using")[1].splitlines()[0]


def test_a_non_finite_loss_stops_at_that_step_with_exit_3(tmp_path: Path) -> None:
    result = train(tmp_path, *plug(PoisonBatch, "fault", batch=3), "data.num_workers=0")
    assert_exit(
        result,
        3,
        "train/loss is nan at optimizer step 3 (epoch 0 counting from 0, batch 3)",
        f"the last checkpoint written before it is {tmp_path / 'checkpoints' / 'step-00000002.ckpt'}",
        clean=True,
    )
    report = read_report(tmp_path)
    assert report["status"] == "failed" and report["metrics"] == {}
    assert not (tmp_path / "checkpoints" / "last.ckpt").exists()  # nothing saved after the NaN


def test_sigterm_while_testing_after_training_exits_143(tmp_path: Path) -> None:
    # Lightning's own SIGTERM handler exits with status 0 here, as if the job had succeeded.
    result = train(tmp_path, *plug(SignalInTest, "fault"), "data.test_fraction=0.2", "trainer.max_epochs=1")
    assert_exit(result, 143, "stopped by SIGTERM during evaluation", clean=True)
    assert final_checkpoint(tmp_path)["global_step"] == 6  # training itself is complete


def test_a_non_finite_loss_is_skipped_when_configured(tmp_path: Path) -> None:
    result = train(tmp_path, *plug(PoisonBatch, "fault", batch=3), "data.num_workers=0", "nonfinite_loss.action=skip")
    skipped = "train/loss is nan at optimizer step 3 (epoch 0 counting from 0, batch 3): step skipped (1 of at most 10"
    assert_exit(result, 0, skipped)
    final = final_checkpoint(tmp_path)
    assert final["global_step"] == TOTAL_STEPS  # Lightning counts the skipped step; it had no gradients
    assert all(torch.isfinite(tensor).all() for tensor in final["state_dict"].values())  # no NaN update
    assert read_report(tmp_path)["metrics"]["train/nonfinite_skipped"] == 1


def test_a_step_longer_than_the_grace_period_exits_naming_the_newest_checkpoint(tmp_path: Path) -> None:
    slow = plug(SlowStepsFrom, "slow", step=5, seconds=5)
    grace = ["callbacks.checkpoints.grace_period_s=1", "data.num_workers=0"]
    result = train(tmp_path, *plug(SignalAtStep, "fault", signal_name="SIGTERM", step=5), *slow, *grace)
    newest = tmp_path / "checkpoints" / "step-00000004.ckpt"
    assert_exit(
        result,
        143,
        "no optimizer step ended within 1 s of SIGTERM: exiting without a new checkpoint; ",
        f"resume=true continues from {newest}",
    )
    assert not (tmp_path / "checkpoints" / "interrupted.ckpt").exists()


@pytest.mark.parametrize("signal_name", ["SIGINT", "SIGTERM", "SIGUSR1"])
def test_loader_workers_leave_stop_signals_to_the_main_process(tmp_path: Path, signal_name: str) -> None:
    # Ctrl-C reaches every process of the terminal's group, SLURM signals every process of the step: a worker
    # that died of it would fail the step the main process is finishing before it saves.
    loader = build_datamodule(compose_train(tmp_path, "data.image_size=16", "data.num_workers=1")).train_dataloader()
    batches = iter(loader)
    next(batches)
    for worker in batches._workers:  # the loader's worker processes (torch keeps them in this private list)
        os.kill(worker.pid, getattr(signal, signal_name))
    time.sleep(0.5)
    assert sum(1 for _ in batches) == len(loader) - 1
