"""What every data module shares: argument checks, splits, seeded sharded loaders that resume mid-epoch."""

from __future__ import annotations

import functools
from collections.abc import Callable
from typing import Any

import pytorch_lightning as pl
from torch.utils.data import DataLoader, Dataset

from cvkit.batching import available_cores, loader_workers
from cvkit.data.batches import FinishingCollate, finish_batch
from cvkit.data.loaders import ResumableLoader
from cvkit.data.samplers import EpochSampler
from cvkit.data.transforms import normalised
from cvkit.data.workers import start_worker, stopped_at_exit
from cvkit.errors import CvkitError


def trains_on_cuda(trainer: pl.Trainer | None) -> bool:
    """Whether `trainer` (None: no trainer yet) runs on CUDA devices."""
    return trainer is not None and trainer.strategy.root_device.type == "cuda"


class BaseDataModule(pl.LightningDataModule):
    """Base of every data module (classification, detection, segmentation).

    Subclasses implement :meth:`load_splits` (what the splits are), :meth:`make_dataset` (how one split
    becomes samples) and :attr:`collate` (how samples become a batch of uint8 images, finished on the
    device, or in the workers for a CPU run, by :meth:`image_finisher`). Splits are loaded once, on the first
    :meth:`setup`; ``train`` and ``val`` are required and non-empty, ``test`` is optional. Every loader
    draws its indices from an :class:`EpochSampler`, so batches and augmentations depend only on (seed,
    epoch, index), and a run resumed from a mid-epoch checkpoint continues where it stopped
    (:mod:`cvkit.data.loaders`).

    ``batch_size`` is per device: a run sets it once before training, from ``data.batch_size``, from
    ``global_batch_size`` for the world it runs in, or (``auto``) by a search
    (:func:`cvkit.builders.settle_batch_size`).
    """

    name = "data"

    def __init__(
        self,
        *,
        batch_size: int | str,
        num_workers: int | str,
        strict: bool = False,
        seed: int = 0,
        global_batch_size: int | None = None,
    ) -> None:
        super().__init__()
        if batch_size != "auto" and (not isinstance(batch_size, int) or batch_size <= 0):
            raise CvkitError(f"data.batch_size must be a positive integer or auto, got {batch_size!r}")
        if num_workers != "auto" and (not isinstance(num_workers, int) or num_workers < 0):
            raise CvkitError(f"data.num_workers must be an integer >= 0 or auto, got {num_workers!r}")
        self.batch_size = batch_size
        self.global_batch_size = global_batch_size
        self.num_workers = num_workers
        self.strict = strict
        self.seed = seed
        self.splits: dict[str, Any] | None = None
        self.class_names: list[str] = []

    # What subclasses provide.
    def load_splits(self) -> tuple[dict[str, Any], list[str]]:
        """Return ``({"train": split, "val": split[, "test": split]}, class_names)``; a split has a length."""
        raise NotImplementedError

    def make_dataset(self, split: str, train: bool) -> Dataset:
        """The dataset of `split`, augmented for training when `train`."""
        raise NotImplementedError

    collate: Callable[[list[Any]], Any]

    def image_finisher(self) -> Callable[[Any], Any]:
        """What makes a batch's uint8 images what the network takes: normalisation by ``mean``/``std`` here
        (classification, segmentation); detection modules give 0..1 values. Picklable, for loader workers."""
        return functools.partial(normalised, mean=self.mean, std=self.std)

    def on_after_batch_transfer(self, batch: Any, dataloader_idx: int) -> Any:
        """Finish the uint8 images of a batch once it is on a GPU: there, workers do no float work and a batch
        crosses to the device at a quarter of the bytes. On a CPU the loader's workers have finished it
        already (in the main process it would compete with the training for the cores)."""
        return finish_batch(batch, self.image_finisher())

    # Splits.
    def setup(self, stage: str | None = None) -> None:
        if self.splits is not None:
            return
        splits, class_names = self.load_splits()
        for required in ("train", "val"):
            if required not in splits or len(splits[required]) == 0:
                raise CvkitError(f"data: the {required} split of {self.describe()} is empty")
        self.splits, self.class_names = splits, list(class_names)

    def describe(self) -> str:
        """One line naming the data for summaries and errors."""
        return self.name

    @property
    def num_classes(self) -> int:
        return len(self.class_names)

    def split_sizes(self) -> dict[str, int]:
        return {name: len(split) for name, split in (self.splits or {}).items()}

    def has_split(self, split: str) -> bool:
        return split in (self.splits or {})

    def unreadable_at_load(self, split: str) -> list[str]:
        """Files of `split` left out while loading because they could not be read (only modules that check
        their files up front leave any out; the others skip them when the loader reads them)."""
        return []

    def _split(self, split: str) -> Any:
        if self.splits is None:
            self.setup()
        if split not in self.splits:
            raise CvkitError(f"data: {self.describe()} has no {split} split (it has {sorted(self.splits)})")
        return self.splits[split]

    # Loaders.
    def train_dataloader(self) -> DataLoader:
        return self._loader("train", shuffle=True)

    def val_dataloader(self) -> DataLoader:
        return self._loader("val", shuffle=False)

    def test_dataloader(self) -> DataLoader:
        return self._loader("test", shuffle=False)

    def _loader(self, split: str, shuffle: bool) -> DataLoader:
        """The loader of `split`: shuffled and resumable mid-epoch for training (:mod:`cvkit.data.loaders`)."""
        self._split(split)
        dataset = self.make_dataset(split, train=shuffle)
        rank, world_size = (self.trainer.global_rank, self.trainer.world_size) if self.trainer else (0, 1)
        sampler = EpochSampler(len(dataset), shuffle=shuffle, seed=self.seed, rank=rank, world_size=world_size)
        on_gpu = trains_on_cuda(self.trainer)
        workers = self.loader_workers()
        loader_class = ResumableLoader if shuffle else DataLoader
        loader = loader_class(
            dataset,
            batch_size=self.batch_size,
            sampler=sampler,
            num_workers=workers,
            collate_fn=self.collate if on_gpu else FinishingCollate(self.collate, self.image_finisher()),
            pin_memory=on_gpu,
            persistent_workers=workers > 0,
            drop_last=shuffle and len(sampler) > self.batch_size,
            worker_init_fn=functools.partial(start_worker, rank=rank),
        )
        return stopped_at_exit(loader)

    def loader_workers(self, trainer: pl.Trainer | None = None) -> int:
        """The worker processes of each loader: ``data.num_workers``, or for ``auto`` the CPU cores per device
        of this machine (:func:`cvkit.batching.loader_workers`) under `trainer` (default: the one this module
        is attached to; none: a CPU-only machine)."""
        trainer = trainer or self.trainer
        local_devices = trainer.num_devices if trainer is not None else 1
        return loader_workers(self.num_workers, available_cores(), local_devices, trains_on_cuda(trainer))
