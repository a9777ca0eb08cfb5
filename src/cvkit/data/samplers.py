"""The one sampler behind every loader: seeded per epoch, sharded per rank, checkpoint-free."""

from __future__ import annotations

import math
from collections.abc import Callable, Iterator

import torch
from torch.utils.data import Sampler


class EpochSampler(Sampler):
    """Yields this rank's share of the dataset's indices for the current epoch.

    Shuffled: a permutation drawn from ``seed + epoch`` (Lightning calls :meth:`set_epoch`), padded by
    wrap-around so every rank gets the same number of samples, then strided by rank (as
    ``DistributedSampler`` does). Each index is yielded with a per-sample augmentation seed drawn from
    the same generator, so a resumed run replays exactly the batches and augmentations it would have
    seen. The epoch is read from `epoch_source` (the trainer's epoch in progress) when iteration starts:
    Lightning may create a resumed run's first iterator before it calls ``set_epoch``. A run resumed in
    the middle of an epoch (a preemption checkpoint) skips the samples of the batches that epoch had
    completed, which `skip_source` counts.

    Not shuffled (evaluation): indices in order, strided by rank, no padding, so every sample is counted
    exactly once across ranks.
    """

    def __init__(
        self,
        num_samples: int,
        *,
        shuffle: bool,
        seed: int = 0,
        rank: int = 0,
        world_size: int = 1,
        epoch_source: Callable[[], int] | None = None,
        skip_source: Callable[[], int] | None = None,
    ) -> None:
        if not 0 <= rank < world_size:
            raise ValueError(f"rank {rank} is outside world size {world_size}")
        self.num_samples = num_samples
        self.shuffle = shuffle
        self.seed = seed
        self.rank = rank
        self.world_size = world_size
        self.epoch = 0
        self.epoch_source = epoch_source
        self.skip_source = skip_source

    def set_epoch(self, epoch: int) -> None:
        self.epoch = epoch

    def __len__(self) -> int:
        if self.shuffle:
            return math.ceil(self.num_samples / self.world_size)
        return len(range(self.rank, self.num_samples, self.world_size))

    def __iter__(self) -> Iterator[int | tuple[int, int]]:
        if not self.shuffle:
            return iter(range(self.rank, self.num_samples, self.world_size))
        epoch = self.epoch_source() if self.epoch_source else self.epoch
        generator = torch.Generator().manual_seed(self.seed + epoch)
        order = torch.randperm(self.num_samples, generator=generator)
        sample_seeds = torch.randint(0, 2**31 - 1, (self.num_samples,), generator=generator).tolist()
        padded = len(self) * self.world_size
        order = torch.cat([order, order[: padded - self.num_samples]]) if padded > self.num_samples else order
        skip = self.skip_source() if self.skip_source else 0
        shard = order[self.rank :: self.world_size][skip:].tolist()
        return iter([(index, sample_seeds[index]) for index in shard])
