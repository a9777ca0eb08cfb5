"""Lightning callbacks that tests plug into real runs (in the test process or a console script) through the
callbacks config group: :func:`plug` gives the overrides. They inject faults (signals, kills, NaN batches, a
full disk, slow steps) or record what the run did (its shard, what the first convolution sees)."""

from __future__ import annotations

import json
import os
import signal
import time
from pathlib import Path

import pytorch_lightning as pl
import torch


def plug(callback: type[pl.Callback], key: str | None = None, **arguments: object) -> list[str]:
    """The overrides that add `callback` (a class of this module) with `arguments` to a run's callbacks, as
    ``callbacks.<key>`` (default: the class name, so that several callbacks can be plugged in at once)."""
    key = key or callback.__name__
    target = f"{callback.__module__}.{callback.__qualname__}"
    return [f"+callbacks.{key}._target_={target}", *(f"+callbacks.{key}.{name}={v}" for name, v in arguments.items())]


class StopAfterEpochs(pl.Callback):
    """Ends training after `epochs` epochs, as a preempted job would: the run's config is unchanged."""

    def __init__(self, epochs: int) -> None:
        self.epochs = epochs

    def on_train_epoch_end(self, trainer: pl.Trainer, pl_module: pl.LightningModule) -> None:
        if trainer.current_epoch + 1 >= self.epochs:
            trainer.should_stop = True


class RecordShard(pl.Callback):
    """Writes the training sample indices this rank is given in the first epoch to shard_rank<R>.json."""

    def on_train_epoch_start(self, trainer: pl.Trainer, pl_module: pl.LightningModule) -> None:
        indices = [item[0] for item in trainer.train_dataloader.sampler]
        path = Path(trainer.default_root_dir) / f"shard_rank{trainer.global_rank}.json"
        path.write_text(json.dumps(indices))


class RecordShardReads(pl.Callback):
    """Writes the indices of the samples this rank reads from its training shards in the first epoch, in order,
    to shard_reads_rank<R>.json (a run from shards, data.num_workers=0: the reads happen in this process)."""

    def on_train_start(self, trainer: pl.Trainer, pl_module: pl.LightningModule) -> None:
        reader = trainer.datamodule.splits["train"].images.paths[0].reader
        read = reader.sample
        self.reads: list[int] = []
        reader.sample = lambda index: self.reads.append(index) or read(index)

    def on_train_epoch_end(self, trainer: pl.Trainer, pl_module: pl.LightningModule) -> None:
        if trainer.current_epoch == 0:
            path = Path(trainer.default_root_dir) / f"shard_reads_rank{trainer.global_rank}.json"
            path.write_text(json.dumps(self.reads))


class RecordWeights(pl.Callback):
    """Saves this rank's network weights at the end of each training epoch, as weights_epoch<E>_rank<R>.pt."""

    def on_train_epoch_end(self, trainer: pl.Trainer, pl_module: pl.LightningModule) -> None:
        path = Path(trainer.default_root_dir) / f"weights_epoch{trainer.current_epoch}_rank{trainer.global_rank}.pt"
        torch.save(pl_module.model.state_dict(), path)


class PreemptAtBatch(pl.Callback):
    """Sends this process SIGUSR1 (SLURM's warning before a time limit or preemption) after training
    batch `batch` of the first epoch, unless the run dir already holds a preemption checkpoint."""

    def __init__(self, batch: int) -> None:
        self.batch = batch

    def on_train_batch_end(self, trainer: pl.Trainer, pl_module: pl.LightningModule, *args: object) -> None:
        batch_idx = args[-1]
        already = list(Path(trainer.default_root_dir).glob("hpc_ckpt_*.ckpt"))
        if trainer.current_epoch == 0 and batch_idx == self.batch and not already:
            os.kill(os.getpid(), signal.SIGUSR1)


class RecordFirstConv(pl.Callback):
    """Writes what the model's first convolution sees during training to first_conv.json: the dtype of its
    output (autocast at work) and whether its input is channels-last."""

    def on_train_start(self, trainer: pl.Trainer, pl_module: pl.LightningModule) -> None:
        conv = next(m for m in pl_module.modules() if isinstance(m, torch.nn.Conv2d))
        path = Path(trainer.default_root_dir) / "first_conv.json"

        def record(module: torch.nn.Module, inputs: tuple[torch.Tensor], output: torch.Tensor) -> None:
            if module.training:
                seen = {
                    "output_dtype": str(output.dtype),
                    "channels_last_input": inputs[0].is_contiguous(memory_format=torch.channels_last),
                }
                path.write_text(json.dumps(seen))

        conv.register_forward_hook(record)


class SignalAtStep(pl.Callback):
    """Sends this process `signal_name` once, when optimizer step `step` has ended: at the start of the next
    batch, after any checkpoint of that step was written (SIGKILL then acts as kill -9 between saves)."""

    def __init__(self, signal_name: str, step: int, rank: int | None = None) -> None:
        self.signum = getattr(signal, signal_name)
        self.step = step
        self.rank = rank  # only the process of this global rank (None: every process)
        self.sent = False

    def on_train_batch_start(self, trainer: pl.Trainer, pl_module: pl.LightningModule, *args: object) -> None:
        if self.rank not in (None, trainer.global_rank):
            return
        if trainer.global_step == self.step and not self.sent:
            self.sent = True
            os.kill(os.getpid(), self.signum)


class KillDuringSave(pl.Callback):
    """kill -9 of this process half-way through writing the first checkpoint at or after optimizer step `step`."""

    def __init__(self, step: int) -> None:
        self.step = step

    def setup(self, trainer: pl.Trainer, pl_module: pl.LightningModule, stage: str) -> None:
        import cvkit.callbacks.checkpointing  # the checkpoint writer's module, where it looks the function up

        write_whole = cvkit.callbacks.checkpointing.write_atomically

        def write(path: Path, writer: object, size: int) -> None:
            if trainer.global_step < self.step:
                return write_whole(path, writer, size)

            def half_then_die(file: object) -> None:
                file.write(b"\0" * (size // 2))
                file.flush()
                os.kill(os.getpid(), signal.SIGKILL)

            return write_whole(path, half_then_die, size)

        cvkit.callbacks.checkpointing.write_atomically = write


class PoisonBatch(pl.Callback):
    """Turns the images of training batch `batch` of epoch 0 into NaN, as a corrupt sample or overflow would."""

    def __init__(self, batch: int, rank: int | None = None) -> None:
        self.batch = batch
        self.rank = rank  # only on the process of this global rank (None: every process)

    def on_train_batch_start(self, trainer: pl.Trainer, pl_module: pl.LightningModule, batch, batch_idx) -> None:
        if self.rank in (None, trainer.global_rank) and trainer.current_epoch == 0 and batch_idx == self.batch:
            batch[0].fill_(float("nan"))


class SignalInTest(pl.Callback):
    """Sends this process SIGTERM at the first test batch (the evaluation of the test split after training)."""

    def on_test_batch_start(self, trainer: pl.Trainer, pl_module: pl.LightningModule, *args: object) -> None:
        os.kill(os.getpid(), signal.SIGTERM)


class DiskFullFromStep(pl.Callback):
    """From optimizer step `step` on, the checkpoint folder of this process reports no free space (a disk that
    fills up during the run)."""

    def __init__(self, step: int) -> None:
        self.step = step

    def setup(self, trainer: pl.Trainer, pl_module: pl.LightningModule, stage: str) -> None:
        import shutil

        import cvkit.checkpoints.files

        real = shutil.disk_usage

        def disk_usage(path: object) -> object:
            usage = real(path)
            return usage._replace(free=0) if trainer.global_step >= self.step else usage

        cvkit.checkpoints.files.shutil = type("FullDisk", (), {"disk_usage": staticmethod(disk_usage)})


class SlowStepsFrom(pl.Callback):
    """From optimizer step `step` on, every training batch takes `seconds` longer (a step that outlasts the
    grace period after a signal)."""

    def __init__(self, step: int, seconds: float) -> None:
        self.step = step
        self.seconds = seconds

    def on_train_batch_start(self, trainer: pl.Trainer, pl_module: pl.LightningModule, *args: object) -> None:
        if trainer.global_step >= self.step:
            time.sleep(self.seconds)
