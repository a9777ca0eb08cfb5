"""Callbacks that tests plug into real runs through the callbacks config group."""

import json
import os
import signal
from pathlib import Path

import pytorch_lightning as pl
import torch


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
