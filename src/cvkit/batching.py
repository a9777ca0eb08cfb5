"""Batch and step arithmetic of a distributed run, as pure functions without dependencies: the per-device batch
a global batch gives (:func:`cvkit.builders.fit_batch_to_world`), the optimizer steps per epoch the
schedule counts in (:func:`cvkit.optim.plan_training`), and the loader workers ``data.num_workers=auto`` gives.

Example: 10,000 training images on 4 devices with 64 images each and 2 accumulation steps: each rank
sees ceil(10000 / 4) = 2500 images = 39 full batches (the last partial batch is dropped), which make
ceil(39 / 2) = 20 optimizer steps per epoch.
"""

from __future__ import annotations

import math
import os

from cvkit.errors import CvkitError


def per_device_batch_size(global_batch_size: int, world_size: int, accumulate_grad_batches: int) -> int:
    """The per-device batch that makes `global_batch_size` over the world and the accumulation steps."""
    if global_batch_size <= 0:
        raise CvkitError(f"data.global_batch_size must be > 0, got {global_batch_size}")
    share = world_size * accumulate_grad_batches
    if global_batch_size % share:
        lower = max(share, global_batch_size // share * share)
        raise CvkitError(
            f"data.global_batch_size={global_batch_size} does not divide over {world_size} device(s) x "
            f"{accumulate_grad_batches} accumulation step(s) = {share}; use a multiple of {share}, "
            f"e.g. {lower} or {lower + share}"
        )
    return global_batch_size // share


def optimizer_steps_per_epoch(
    train_samples: int,
    per_device_batch: int,
    world_size: int,
    accumulate_grad_batches: int,
    limit_train_batches: int | float | None = None,
) -> int:
    """Optimizer steps in one epoch, as cvkit's sampler and loader produce batches (see module example)."""
    per_rank = math.ceil(train_samples / world_size)
    batches = per_rank // per_device_batch if per_rank > per_device_batch else 1
    if isinstance(limit_train_batches, float) and limit_train_batches != 1.0:
        batches = max(1, int(batches * limit_train_batches))
    elif limit_train_batches is not None and not isinstance(limit_train_batches, float):
        batches = min(batches, int(limit_train_batches))
    return math.ceil(batches / accumulate_grad_batches)


# data.num_workers=auto on a machine without GPUs: the training itself needs the cores.
CPU_ONLY_WORKERS = 2


def available_cores() -> int:
    """The CPU cores this process may run on (a SLURM or taskset binding counts, not the machine's total)."""
    try:
        return len(os.sched_getaffinity(0))
    except AttributeError:  # not on Linux
        return os.cpu_count() or 1


def loader_workers(setting: int | str, cores: int, local_devices: int, on_gpu: bool) -> int:
    """``data.num_workers``: a number as given; ``auto``: the `cores` per device on a GPU machine (`cores` over
    its `local_devices`), and at most :data:`CPU_ONLY_WORKERS` on one without, where the training computes
    on the same cores. For example 32 cores and 4 GPUs: 8 workers per GPU process; a 2-core laptop: 2."""
    if setting != "auto":
        return setting
    if on_gpu:
        return max(1, cores // max(1, local_devices))
    return min(CPU_ONLY_WORKERS, cores)
