"""The one sampler behind every loader: seeded per epoch, sharded per rank, able to start inside an epoch."""

from __future__ import annotations

import math
from collections.abc import Iterator

import torch
from torch.utils.data import Sampler


class EpochSampler(Sampler):
    """Yields this rank's share of the dataset's indices for the current epoch.

    Shuffled: a permutation drawn from ``seed + epoch`` (Lightning calls :meth:`set_epoch`), padded by
    wrap-around so every rank gets the same number of samples, then strided by rank (as
    ``DistributedSampler`` does). Each index is yielded with a per-sample augmentation seed drawn from
    the same generator, so a resumed run replays exactly the batches and augmentations it would have
    seen. :meth:`start_at` makes the next iteration begin further into the epoch (a run resumed from a
    checkpoint saved in its middle: :mod:`cvkit.data.loaders`).

    Not shuffled (evaluation): indices in order, strided by rank, no padding, so every sample is counted
    exactly once across ranks.
    """

    def __init__(self, num_samples: int, *, shuffle: bool, seed: int = 0, rank: int = 0, world_size: int = 1) -> None:
        if not 0 <= rank < world_size:
            raise ValueError(f"rank {rank} is outside world size {world_size}")
        self.num_samples = num_samples
        self.shuffle = shuffle
        self.seed = seed
        self.rank = rank
        self.world_size = world_size
        self.epoch = 0
        self.skip = 0

    def set_epoch(self, epoch: int) -> None:
        self.epoch = epoch

    def start_at(self, samples: int) -> None:
        """Leave out the first `samples` of this rank's share in the next iteration only."""
        self.skip = samples

    def __len__(self) -> int:
        if self.shuffle:
            return math.ceil(self.num_samples / self.world_size)
        return len(range(self.rank, self.num_samples, self.world_size))

    def __iter__(self) -> Iterator[int | tuple[int, int]]:
        skip, self.skip = self.skip, 0
        if not self.shuffle:
            return iter(range(self.rank, self.num_samples, self.world_size)[skip:])
        generator = torch.Generator().manual_seed(self.seed + self.epoch)
        order = torch.randperm(self.num_samples, generator=generator)
        sample_seeds = torch.randint(0, 2**31 - 1, (self.num_samples,), generator=generator).tolist()
        padded = len(self) * self.world_size
        order = torch.cat([order, order[: padded - self.num_samples]]) if padded > self.num_samples else order
        shard = order[self.rank :: self.world_size][skip:].tolist()
        return iter([(index, sample_seeds[index]) for index in shard])
