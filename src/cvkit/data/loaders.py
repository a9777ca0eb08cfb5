"""The train loader that a run resumed from a checkpoint saved in the middle of an epoch continues exactly:
it skips the batches that epoch had completed and goes on with the same batches and augmentations.

It works through Lightning's support for loaders with a state (``state_dict``/``load_state_dict``, saved in
every checkpoint and given back before the resumed epoch starts); the position it saves is the number of the
epoch's batches that have completed (Lightning's ``batch_idx`` at ``on_train_batch_end``, recorded by
:class:`RecordTrainPosition`), so that a checkpoint saved while a batch was in progress (Lightning's own
SLURM save runs inside the signal handler) resumes with that batch, as Lightning's counters do.

Lightning creates a resumed run's first iterator before it sets the sampler's epoch, and a loader with
workers draws its indices as soon as it is iterated: the iterator therefore starts the loader's own at its
first ``next``, when the epoch is known.
"""

from __future__ import annotations

from collections.abc import Iterator
from typing import Any

import pytorch_lightning as pl
from torch.utils.data import DataLoader

from cvkit.data.samplers import EpochSampler


class ResumableLoader(DataLoader):
    """A DataLoader over an :class:`EpochSampler` that saves and restores where its epoch stands."""

    sampler: EpochSampler

    def __init__(self, *args: Any, **kwargs: Any) -> None:
        super().__init__(*args, **kwargs)
        self.completed = 0  # batches of the current epoch that have completed
        self._restored: dict[str, int] | None = None

    def state_dict(self) -> dict[str, int]:
        return {
            "epoch": self.sampler.epoch,
            "batches": self.completed,
            "batch_size": int(self.batch_size or 0),
            "world_size": self.sampler.world_size,
        }

    def load_state_dict(self, state_dict: dict[str, int]) -> None:
        self._restored = dict(state_dict)

    def __iter__(self) -> Iterator[Any]:
        return StartOnNext(self)

    def start_epoch(self) -> Iterator[Any]:
        """The loader's own iterator for the epoch the sampler is at, past the batches a restored position
        says were completed (once: later epochs start at their first batch)."""
        restored, self._restored = self._restored, None
        skip = 0
        if restored and self.resumes_from(restored):
            skip = restored["batches"]
        self.sampler.start_at(skip * int(self.batch_size or 1))
        self.completed = skip
        return super().__iter__()

    def resumes_from(self, state: dict[str, int]) -> bool:
        """Whether `state` is a position inside this epoch, saved by a run batching as this one does."""
        same_batching = (state.get("batch_size"), state.get("world_size")) == (self.batch_size, self.sampler.world_size)
        return state.get("epoch") == self.sampler.epoch and 0 < state.get("batches", 0) < len(self) and same_batching


class StartOnNext(Iterator[Any]):
    """An iterator that starts the loader's own at its first ``next`` (see the module docstring)."""

    def __init__(self, loader: ResumableLoader) -> None:
        self.loader = loader
        self.iterator: Iterator[Any] | None = None

    def __next__(self) -> Any:
        if self.iterator is None:
            self.iterator = self.loader.start_epoch()
        return next(self.iterator)

    def __getattr__(self, name: str) -> Any:  # the started iterator's own attributes (its workers, ...)
        if self.iterator is None:
            self.iterator = self.loader.start_epoch()
        return getattr(self.iterator, name)


class RecordTrainPosition(pl.Callback):
    """Tells the train loader how many batches of its epoch have completed, after each one. It must come before
    any callback that may save a checkpoint at that hook (train() gives it to the trainer first)."""

    def on_train_batch_end(self, trainer: pl.Trainer, pl_module: pl.LightningModule, *args: Any) -> None:
        loader = trainer.train_dataloader
        if isinstance(loader, ResumableLoader):
            loader.completed = args[-1] + 1  # the batch's index in the epoch (a resumed epoch's counting on)
