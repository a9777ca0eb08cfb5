"""``data.batch_size=auto``: the largest per-device batch whose training step fits in the device's memory with
a margin, found before training, so that the LR rule scales the LR for the batch that is used.

The search runs real training steps of the run's own task (forward, loss, backward, under the trainer's
precision) on real training samples, at 2, 4, 8, ... images until one does not fit, then bisects between
the last that fitted and the first that did not. "Fits" means the step's peak memory stays within
``batch_search.memory_fraction`` of the memory there is:

- on a GPU, the peak CUDA's allocator reports, with room held for the optimizer's state; a step that runs
  out of memory does not fit;
- on the CPU, where nothing runs out of memory cleanly (the machine swaps, or the kernel kills the process),
  an estimate: the tensors autograd saves for backward, the parameters and their gradients, the
  optimizer's state and the batch, against ``batch_search.cpu_memory_gb`` or the memory available.

The weights, the BatchNorm statistics, the metrics and the random number generators are as they were
before the search, so a run with the batch it finds is the run with that batch given. Under DDP every rank
searches its own device and all take the smallest batch found, agreed before the run is planned.
"""

from __future__ import annotations

import logging
import math
import os
import random
import warnings
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from typing import Any

import numpy as np
import torch
from lightning_utilities.core.apply_func import apply_to_collection
from pytorch_lightning.utilities import move_data_to_device
from torchmetrics import Metric

from cvkit.compat import launches_by_script, start_ranks_now
from cvkit.errors import CvkitError

log = logging.getLogger(__name__)

# Optimizer state kept per parameter element, in parameter-sized tensors (momentum; Adam's two moments).
STATE_TENSORS = {"sgd": 1, "adam": 2, "adamw": 2, "lamb": 2, "lars": 1, "rmsprop": 2}


def largest_batch(fits: Callable[[int], bool], limit: int, smallest: int = 2) -> int:
    """The largest batch in `smallest`..`limit` for which `fits` holds, assuming that a batch fits when a
    larger one does: `smallest`, twice that, ... up to the first that does not fit (or `limit`), then
    bisection in between, in steps of 8 from 8 on. The smallest is 2: BatchNorm cannot train on a batch of 1."""
    if not fits(smallest):
        raise CvkitError(
            f"data.batch_size=auto: not even a batch of {smallest} fits in the memory budget; lower "
            "data.image_size, use a smaller backbone, or raise batch_search.memory_fraction / cpu_memory_gb"
        )
    fitted, failed = smallest, None
    while failed is None and fitted < limit:
        candidate = min(2 * fitted, limit)
        if fits(candidate):
            fitted = candidate
        else:
            failed = candidate
    while failed is not None and (middle := rounded((fitted + failed) // 2)) > fitted:
        if fits(middle):
            fitted = middle
        else:
            failed = middle
    return fitted


def rounded(batch: int) -> int:
    """`batch` rounded down to a multiple of 8 when it is at least 8 (the tensor cores' unit)."""
    return batch // 8 * 8 if batch >= 8 else batch


def is_out_of_memory(err: BaseException) -> bool:
    return isinstance(err, torch.OutOfMemoryError) or "out of memory" in str(err).lower()


@dataclass
class MemoryBudget:
    """The bytes a training step may use on `device`: `fraction` of the free memory (GPU) or of
    `cpu_bytes` (the configured budget, or the memory available)."""

    device: torch.device
    fraction: float
    cpu_bytes: int | None = None

    def bytes(self) -> int:
        if self.device.type == "cuda":
            free, _ = torch.cuda.mem_get_info(self.device)
            return int(self.fraction * (free + torch.cuda.memory_allocated(self.device)))
        return int(self.fraction * (self.cpu_bytes or available_memory()))


def available_memory() -> int:
    """The memory the kernel says is available (``MemAvailable`` of /proc/meminfo), or all of it."""
    try:
        with open("/proc/meminfo") as meminfo:
            for line in meminfo:
                if line.startswith("MemAvailable:"):
                    return int(line.split()[1]) * 1024
    except OSError:
        pass
    return os.sysconf("SC_PAGE_SIZE") * os.sysconf("SC_PHYS_PAGES")


@contextmanager
def saved_tensor_bytes() -> Iterator[list[int]]:
    """Count the bytes of the distinct storages autograd saves for backward inside the block (one list
    element, the total, filled as they are saved)."""
    total, seen = [0], set()

    def pack(tensor: torch.Tensor) -> torch.Tensor:
        storage = tensor.untyped_storage()
        if storage.data_ptr() not in seen:
            seen.add(storage.data_ptr())
            total[0] += storage.nbytes()
        return tensor

    with torch.autograd.graph.saved_tensors_hooks(pack, lambda tensor: tensor):
        yield total


def batch_bytes(batch: Any) -> int:
    """The bytes of the tensors in a (nested) batch."""
    sizes: list[int] = []
    apply_to_collection(batch, torch.Tensor, lambda tensor: sizes.append(tensor.numel() * tensor.element_size()))
    return sum(sizes)


class StepProbe:
    """Whether a training step of `task` at a batch of b samples of `datamodule`'s train split fits the
    `budget`; `states` parameter-sized tensors of optimizer state are counted (held, on a GPU)."""

    def __init__(self, task: Any, datamodule: Any, budget: MemoryBudget, states: int, forward_context: Any) -> None:
        self.task, self.datamodule, self.budget, self.states = task, datamodule, budget, states
        self.forward_context = forward_context
        self.dataset = datamodule.make_dataset("train", train=True)
        self.samples: list[Any] = []
        self.limit = self.budget.bytes()
        self.parameter_bytes = sum(p.numel() * p.element_size() for p in task.parameters() if p.requires_grad)

    def batch(self, size: int) -> Any:
        """`size` training samples (cycling through the split), augmented with fixed seeds, as the device gets them."""
        while len(self.samples) < size:
            index = len(self.samples)
            self.samples.append(self.dataset[(index % len(self.dataset), index)])
        collated = self.datamodule.collate(self.samples[:size])
        return self.datamodule.on_after_batch_transfer(move_data_to_device(collated, self.budget.device), 0)

    def __call__(self, size: int) -> bool:
        try:
            peak = self.step_bytes(size)
        except (RuntimeError, torch.OutOfMemoryError) as err:
            if not is_out_of_memory(err):
                raise
            peak = math.inf
        finally:
            self.task.zero_grad(set_to_none=True)
            if self.budget.device.type == "cuda":
                torch.cuda.empty_cache()
        log.info("batch search: %d per device: %s of %.2f GB", size, gigabytes(peak), self.limit / 1e9)
        return peak <= self.limit

    def step_bytes(self, size: int) -> int:
        batch = self.batch(size)
        state_bytes = self.states * self.parameter_bytes
        if self.budget.device.type == "cuda":
            torch.cuda.reset_peak_memory_stats(self.budget.device)
            held = torch.empty(state_bytes, dtype=torch.uint8, device=self.budget.device)
            with self.forward_context():
                loss = self.task.training_loss(batch, 0)
            loss.backward()
            del held
            return torch.cuda.max_memory_allocated(self.budget.device)
        with saved_tensor_bytes() as saved, self.forward_context():
            loss = self.task.training_loss(batch, 0)
        loss.backward()
        return saved[0] + 2 * self.parameter_bytes + state_bytes + batch_bytes(batch)


@contextmanager
def probing(task: Any, device: torch.device) -> Iterator[None]:
    """Training steps of `task` that leave no trace: on `device`, in training mode, nothing logged (the task
    is not attached to a trainer yet: Lightning's notice of that is silenced); afterwards the weights are back
    where they were, and the buffers (BatchNorm statistics), the metrics and the random number generators as
    they were before."""
    home, was_training = next(task.parameters()).device, task.training
    buffers = {name: buffer.detach().clone() for name, buffer in task.named_buffers()}
    python_state, numpy_state = random.getstate(), np.random.get_state()
    with torch.random.fork_rng(devices=[device] if device.type == "cuda" else []), warnings.catch_warnings():
        warnings.filterwarnings("ignore", message=r".*self\.log\(\)")
        try:
            task.to(device).train()
            yield
        finally:
            task.zero_grad(set_to_none=True)
            task.to(home).train(was_training)
            for name, buffer in task.named_buffers():
                buffer.copy_(buffers[name])
            for metric in task.modules():
                if isinstance(metric, Metric):
                    metric.reset()
            random.setstate(python_state)
            np.random.set_state(numpy_state)


def gigabytes(value: float) -> str:
    return "out of memory" if value == math.inf else f"{value / 1e9:.2f} GB"


def find_batch_size(
    task: Any, datamodule: Any, device: torch.device, settings: dict[str, Any], optimizer: str, forward_context: Any
) -> int:
    """The per-device batch for ``data.batch_size=auto`` (see the module docstring): `settings` is the
    ``batch_search`` config (``memory_fraction``, ``cpu_memory_gb``, ``max_batch_size``), `optimizer` the
    optimizer's name, whose state is counted."""
    cpu_bytes = int(settings["cpu_memory_gb"] * 1e9) if settings.get("cpu_memory_gb") else None
    budget = MemoryBudget(device, float(settings["memory_fraction"]), cpu_bytes)
    limit = min(int(settings["max_batch_size"]), datamodule.split_sizes()["train"])
    with probing(task, device):
        probe = StepProbe(task, datamodule, budget, STATE_TENSORS.get(optimizer.lower(), 2), forward_context)
        found = largest_batch(probe, limit)
    log.info("data.batch_size=auto: %d per device (the largest found within %.2f GB)", found, probe.limit / 1e9)
    return found


def search_batch_size(task: Any, datamodule: Any, trainer: Any, settings: dict[str, Any], optimizer: str) -> int:
    """The per-device batch of ``data.batch_size=auto`` for `task` under `trainer`: found on this rank's device
    (:func:`find_batch_size`) and, under DDP, the smallest any rank found. The ranks are started for this
    before training (:func:`cvkit.compat.start_ranks_now`), so that the run is planned for the agreed batch."""
    if trainer.world_size > 1:
        if not launches_by_script(trainer):
            raise CvkitError(
                f"data.batch_size=auto under trainer.strategy={type(trainer.strategy).__name__} started by "
                f"{type(trainer.strategy.launcher).__name__}: the search needs the DDP processes before training, "
                "which trainer.strategy=ddp (and torchrun, srun) gives; or give data.batch_size=N"
            )
        start_ranks_now(trainer)
    device = trainer.strategy.root_device
    found = find_batch_size(task, datamodule, device, settings, optimizer, trainer.precision_plugin.forward_context)
    if trainer.world_size == 1:
        return found
    smallest = int(trainer.strategy.reduce(torch.tensor(found, device=device), reduce_op="min"))
    if smallest != found:
        log.warning("data.batch_size=auto: rank %d found %d, another rank %d: all train on %d",
                    trainer.global_rank, found, smallest, smallest)  # fmt: skip
    return smallest
