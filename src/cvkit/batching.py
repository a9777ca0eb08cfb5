"""Batch arithmetic of a distributed run, as pure functions without dependencies: the per-device batch a
global batch gives (:func:`cvkit.builders.settle_batch_size`), and the loader workers ``data.num_workers=auto``
gives.

Example: a global batch of 1024 on 8 devices with 2 accumulation steps is 1024 / (8 x 2) = 64 images per
device and step.
"""

from __future__ import annotations

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
