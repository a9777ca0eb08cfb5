"""Under DDP, ``data.batch_size=auto`` trains every rank on the smallest batch the ranks' searches found."""

from __future__ import annotations

import logging
from collections.abc import Callable

import pytorch_lightning as pl
import torch

log = logging.getLogger(__name__)


class SmallestBatchOfRanks(pl.Callback):
    """Each rank searched its own device before fit; once the ranks can talk (Lightning's ``setup`` hook,
    after the process group starts and before the optimizer and the loaders are built), they take the
    smallest of their batches, and a rank that found more calls `settle(smallest)` (the data's batch and the
    task's plan for it)."""

    def __init__(self, settle: Callable[[int], object]) -> None:
        self.settle = settle

    def setup(self, trainer: pl.Trainer, pl_module: pl.LightningModule, stage: str) -> None:
        datamodule = trainer.datamodule
        if stage != "fit" or trainer.world_size == 1 or datamodule is None:
            return
        own = int(datamodule.batch_size)
        found = torch.tensor(own, device=trainer.strategy.root_device)
        smallest = int(trainer.strategy.reduce(found, reduce_op="min"))
        if smallest != own:
            log.warning("data.batch_size=auto: rank %d found %d, another rank %d: all train on %d",
                        trainer.global_rank, own, smallest, smallest)  # fmt: skip
            self.settle(smallest)
