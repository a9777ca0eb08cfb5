"""What ``cvkit-train`` loads from the GPU benchmark (``gpu_throughput.py``) through its config groups: a callback
that times the steady-state steps (``+callbacks.<key>._target_=gpu_plugins.StepTimer``) and a data module of
synthetic batches made on the training device (``+data._target_=gpu_plugins.SyntheticData``).

The plain loop of the benchmark draws its synthetic batches from :class:`DeviceBatches` too, so both trainers
see the same input.
"""

from __future__ import annotations

import json
import time
from collections.abc import Iterator, Sequence
from pathlib import Path
from typing import Any

import numpy as np
import pytorch_lightning as pl
import torch

from cvkit.data.classification import ClassificationDataModule, Split
from cvkit.data.classification.datasets import ArrayImages


def synchronize(device: torch.device) -> None:
    """Wait for the work queued on `device` (a no-op on the CPU)."""
    if device.type == "cuda":
        torch.cuda.synchronize(device)


class DeviceBatches:
    """`steps` batches of random uint8 images made once on `device`, each step converted to float and normalised
    there (as timm's prefetcher does with loaded images): training input without any data loading. Without
    `normalise` they stay uint8, for cvkit, whose data module normalises every batch on the device itself."""

    def __init__(
        self,
        batch_size: int,
        image_size: int,
        num_classes: int,
        steps: int,
        device: torch.device,
        mean: Sequence[float],
        std: Sequence[float],
        normalise: bool = True,
    ) -> None:
        self.normalise = normalise
        generator = torch.Generator(device=device).manual_seed(0)
        shape = (batch_size, 3, image_size, image_size)
        self.images = torch.randint(0, 256, shape, dtype=torch.uint8, device=device, generator=generator)
        self.labels = torch.randint(0, num_classes, (batch_size,), device=device, generator=generator)
        self.mean = torch.tensor(mean, device=device).view(1, 3, 1, 1) * 255
        self.std = torch.tensor(std, device=device).view(1, 3, 1, 1) * 255
        self.steps = steps

    def __len__(self) -> int:
        return self.steps

    def __iter__(self) -> Iterator[tuple[torch.Tensor, torch.Tensor]]:
        for _ in range(self.steps):
            yield ((self.images.float() - self.mean) / self.std if self.normalise else self.images), self.labels


class SyntheticData(ClassificationDataModule):
    """A classification data module whose train loader is :class:`DeviceBatches` on the trainer's device: cvkit's
    training loop (Lightning, the task, logging, callbacks) without data loading. Its splits only have sizes
    (``steps`` batches of training images, so that cvkit plans that many steps per epoch); no image is read."""

    name = "synthetic"

    def __init__(self, *, num_classes: int, steps: int, **common: Any) -> None:
        super().__init__(**common)
        self.classes = num_classes
        self.steps = steps

    def load_splits(self) -> tuple[dict[str, Split], list[str]]:
        def split(size: int) -> Split:
            return Split(ArrayImages(np.zeros((size, 1, 1), np.uint8)), np.arange(size) % self.classes)

        names = [f"class{k}" for k in range(self.classes)]
        return {"train": split(self.steps * self.batch_size), "val": split(self.classes)}, names

    def train_dataloader(self) -> DeviceBatches:
        device = self.trainer.strategy.root_device
        return DeviceBatches(
            self.batch_size, self.image_size, self.classes, self.steps, device, self.mean, self.std, normalise=False
        )


class StepTimer(pl.Callback):
    """Times the training steps after the first `warmup` ones (at least one) to the end of the epoch, synchronising
    the device at both ends, and writes ``{"images", "seconds", "steps"}`` to `out` when training ends."""

    def __init__(self, warmup: int, out: str) -> None:
        self.warmup = warmup
        self.out = Path(out)
        self.start = 0.0
        self.seconds = 0.0
        self.images = 0
        self.steps = 0

    def on_train_batch_end(
        self, trainer: pl.Trainer, pl_module: pl.LightningModule, outputs: Any, batch: Any, batch_idx: int
    ) -> None:
        if batch_idx >= self.warmup and batch:
            self.images += len(batch[1])
            self.steps += 1
        if batch_idx == self.warmup - 1:
            synchronize(pl_module.device)
            self.start = time.perf_counter()
        elif batch_idx == trainer.num_training_batches - 1:
            synchronize(pl_module.device)
            self.seconds = time.perf_counter() - self.start

    def on_train_end(self, trainer: pl.Trainer, pl_module: pl.LightningModule) -> None:
        self.out.write_text(json.dumps({"images": self.images, "seconds": self.seconds, "steps": self.steps}))
