"""Checkpoint files: writing them whole, finding a run's, and reading one with errors that name it.

Every checkpoint a run writes is written by :func:`write_atomically` (through
:class:`~cvkit.callbacks.checkpointing.AtomicCheckpointIO`): its tensors' size checked against the free
space, serialised straight into a temporary file beside its destination (:func:`save_streamed`: no copy of
the checkpoint in memory), flushed to disk and renamed over it, so that a file under a checkpoint's name is
always whole. ``resume=true`` takes the newest checkpoint of the run dir
that reads, falling back through older ones with a warning.
"""

from __future__ import annotations

import io
import logging
import os
import pickle
import shutil
import zipfile
from collections.abc import Callable
from pathlib import Path
from types import SimpleNamespace
from typing import Any

import torch

from cvkit.errors import CvkitError, TrainingFailed

log = logging.getLogger(__name__)

CHECKPOINT_DIR = "checkpoints"
LAST = "last.ckpt"  # the state at the end of the latest epoch
PERIODIC_PREFIX = "step-"  # step-NNNNNNNN.ckpt: every N optimizer steps and/or every M minutes
INTERRUPTED = "interrupted.ckpt"  # written when a signal stopped the run
BEST_GLOB = "best-*.ckpt"
# What Lightning saves in the run dir when SLURM signals an imminent preemption or time limit.
PREEMPTION_GLOB = "hpc_ckpt_*.ckpt"
PARTIAL_SUFFIX = ".partial"  # a checkpoint being written (left behind only by a kill during the write)
READ_ERRORS = (RuntimeError, EOFError, OSError, zipfile.BadZipFile, ValueError, pickle.UnpicklingError)


def write_atomically(path: Path, write: Callable[[io.BufferedWriter], object], size: int) -> None:
    """Write a file of about `size` bytes with `write` so that `path` is either its old self or whole: a
    temporary file in the same folder, flushed and fsynced, then renamed over `path`. A lack of space or
    permission raises :class:`TrainingFailed` naming the path, the size and the free space; nothing else
    changes."""
    try:
        path.parent.mkdir(parents=True, exist_ok=True)
    except OSError as err:
        raise TrainingFailed(f"cannot write checkpoint {path}: {err}") from err
    if shutil.disk_usage(path.parent).free < size:
        raise TrainingFailed(cannot_write(path, size, "not enough free space"))
    partial = path.with_name(path.name + PARTIAL_SUFFIX)
    try:
        with open(partial, "wb") as file:
            write(file)
            file.flush()
            os.fsync(file.fileno())
        os.replace(partial, path)
        sync_folder(path.parent)
    except OSError as err:
        partial.unlink(missing_ok=True)
        raise TrainingFailed(cannot_write(path, size, err.strerror or str(err))) from err


def save_streamed(checkpoint: dict[str, Any], file: io.BufferedWriter) -> None:
    """``torch.save`` straight into `file`, without first serialising the checkpoint into memory (which costs
    a copy of every tensor and, here, 0.2 s of a 90 MB checkpoint). torch reports a failed write as its own
    RuntimeError ("unexpected pos ..."): the OSError behind it (no space left, ...) is raised instead."""
    failed: list[OSError] = []

    def write(data: bytes) -> int:
        try:
            return file.write(data)
        except OSError as err:
            failed.append(err)
            raise

    try:
        torch.save(checkpoint, SimpleNamespace(write=write, flush=file.flush))
    except RuntimeError:
        if failed:
            raise failed[0] from None
        raise


def tensor_bytes(value: Any) -> int:
    """The bytes of the tensors in a checkpoint's nested dicts, lists and tuples: most of its file's size."""
    if isinstance(value, torch.Tensor):
        return value.nbytes
    if isinstance(value, dict):
        return sum(tensor_bytes(item) for item in value.values())
    if isinstance(value, list | tuple):
        return sum(tensor_bytes(item) for item in value)
    return 0


def cannot_write(path: Path, size: int, reason: str) -> str:
    free = shutil.disk_usage(path.parent).free
    return (
        f"cannot write checkpoint {path}: {reason} (it needs {size / 2**20:.1f} MiB, {path.parent} has "
        f"{free / 2**20:.1f} MiB free); the earlier checkpoints are intact. Free some space, or write the run "
        "elsewhere (hydra.run.dir=...), then continue with resume=true"
    )


def sync_folder(folder: Path) -> None:
    """Make a rename in `folder` durable (where the platform allows opening a folder)."""
    try:
        descriptor = os.open(folder, os.O_RDONLY)
    except OSError:
        return
    try:
        os.fsync(descriptor)
    finally:
        os.close(descriptor)


def load_checkpoint(path: str | Path, key: str) -> dict[str, Any]:
    """Read a Lightning checkpoint to CPU, or fail naming `key` and what is wrong with the file."""
    path = Path(path).expanduser()
    if not path.is_file():
        raise CvkitError(f"{key}: {path} does not exist (expected a .ckpt file written by cvkit-train)")
    try:
        checkpoint = torch.load(path, map_location="cpu", weights_only=True)
    except READ_ERRORS as err:
        raise CvkitError(f"{key}: {path} is not a readable PyTorch checkpoint ({err})") from err
    if not isinstance(checkpoint, dict) or "state_dict" not in checkpoint:
        raise CvkitError(f"{key}: {path} is not a Lightning checkpoint (it has no 'state_dict')")
    return checkpoint


def run_checkpoints(run_dir: Path) -> list[Path]:
    """The checkpoints of a run dir, newest first: by the optimizer step they hold, and at the same step
    last, periodic, interrupted, SLURM preemption, best. Files that cannot be read come first, so that
    resuming names them before it falls back."""
    folder = run_dir / CHECKPOINT_DIR
    kinds = [
        [folder / LAST],
        sorted(folder.glob(PERIODIC_PREFIX + "*.ckpt")),
        [folder / INTERRUPTED],
        sorted(run_dir.glob(PREEMPTION_GLOB)),
        sorted(folder.glob(BEST_GLOB)),
    ]
    found = [(saved_step(path), rank, path) for rank, paths in enumerate(kinds) for path in paths if path.is_file()]
    return [path for _, _, path in sorted(found, key=lambda item: (item[0] is not None, -(item[0] or 0), item[1]))]


def saved_step(path: Path) -> int | None:
    """The optimizer step a checkpoint was saved at, read without loading its tensors; None if unreadable."""
    try:
        return int(torch.load(path, map_location="cpu", weights_only=True, mmap=True).get("global_step", 0))
    except (*READ_ERRORS, AttributeError):
        return None


def newest_readable(run_dir: Path, key: str = "resume=true") -> tuple[Path, dict[str, Any]] | None:
    """The newest checkpoint of `run_dir` that loads, and its content; each one that does not is named in
    a warning (starting with `key`) that says which one is used instead. None when the run dir has none."""
    broken: list[str] = []
    for path in run_checkpoints(run_dir):
        try:
            checkpoint = load_checkpoint(path, key)
        except CvkitError as err:
            broken.append(str(err))
            log.warning("%s; trying the next newest checkpoint", err)
            continue
        if broken:
            log.warning("%s: %d newer checkpoint(s) could not be read; using %s", key, len(broken), path)
        return path, checkpoint
    if broken:
        raise CvkitError(f"{key}: none of the {len(broken)} checkpoints in {run_dir} can be read: {broken[0]}")
    return None


def checkpoint_in(path: str | Path, key: str = "ckpt_path") -> Path:
    """`path` if it is a file; if it is a run dir, its newest readable checkpoint (named in the log)."""
    path = Path(path).expanduser()
    if not path.is_dir():
        return path
    found = newest_readable(path, key)
    if found is None:
        raise CvkitError(
            f"{key}={path} is a folder without checkpoints: give a .ckpt file, or a run dir with {CHECKPOINT_DIR}/"
        )
    log.info("%s=%s: using its newest checkpoint, %s (optimizer step %d)", key, path, found[0], found[1]["global_step"])
    return found[0]
