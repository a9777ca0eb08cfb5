"""What a checkpoint holds, and writing, finding, checking and reading checkpoints: resume, warm start
(init_from), evaluation and inference.

Beside Lightning's own state, a cvkit checkpoint holds its :class:`RunRecord` (under ``"cvkit"``: what it
takes to evaluate and use the model without the run's config files), the RNG states, the schedule's
position and the best metric values so far. Every checkpoint a run writes is written by
:func:`write_atomically` (through :class:`~cvkit.callbacks.checkpointing.AtomicCheckpointIO`): serialised in
memory, checked against the free space, written to a temporary file beside its destination, flushed to
disk and renamed over it, so that a file under a checkpoint's name is always whole. ``resume=true`` takes
the newest checkpoint of the run dir that reads, falling back through older ones with a warning.
"""

from __future__ import annotations

import io
import logging
import os
import pickle
import random
import shutil
import zipfile
from collections.abc import Callable, Mapping, Sequence
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any

import numpy as np
import torch
from torch import nn

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
# cvkit's entries in a checkpoint, beside Lightning's.
RECORD_KEY = "cvkit"  # the RunRecord
RNG_KEY = "cvkit_rng_states"
SCHEDULE_KEY = "cvkit_schedule"  # steps per epoch, global batch and peak LR of the run that saved it
BEST_KEY = "cvkit_best"  # the best values so far of the task's MaxMetrics (val/acc_best, ...)
MODEL_PREFIX = "model."  # the network's weights in the state dict: the task's ``model`` attribute


@dataclass(frozen=True)
class RunRecord:
    """What a checkpoint records of its run, so that it can be evaluated and used without the run's config
    files: the task, the class names in label order, the composed config (with the data's evaluation
    transforms), the command-line overrides, how the LR was derived, and the network's input: size and
    normalisation (None where the task has none: detectors resize and normalise inside)."""

    task: str
    class_names: list[str]
    config: dict[str, Any]
    overrides: list[str] = field(default_factory=list)
    lr_plan: dict[str, Any] = field(default_factory=dict)  # LRPlan.as_dict(): how the effective LR was derived
    image_size: Any = None
    mean: list[float] | None = None
    std: list[float] | None = None

    def as_dict(self) -> dict[str, Any]:
        """The record as a checkpoint stores it (plain types, which ``torch.load(weights_only=True)`` reads)."""
        return asdict(self)

    @classmethod
    def in_checkpoint(cls, checkpoint: Mapping[str, Any]) -> RunRecord | None:
        """The record of a loaded checkpoint; None when it has none (not written by cvkit-train)."""
        stored = checkpoint.get(RECORD_KEY)
        if not stored or not {"task", "class_names", "config"} <= stored.keys():
            return None
        known = {name: stored[name] for name in cls.__dataclass_fields__ if name in stored}
        return cls(**{**known, "class_names": list(stored["class_names"])})

    @classmethod
    def from_checkpoint(cls, checkpoint: Mapping[str, Any], path: str | Path, key: str = "ckpt_path") -> RunRecord:
        """The record of the checkpoint loaded from `path` (config key `key`), or a CvkitError saying it has none."""
        record = cls.in_checkpoint(checkpoint)
        if record is None:
            raise CvkitError(
                f"{key}: {path} has no cvkit run record (task, class names, config): it was not written by cvkit-train"
            )
        return record

    def check_task(self, kind: str, key: str, path: str | Path) -> None:
        """Refuse this checkpoint (at `path`, config `key`) for a run of task `kind` when it was trained for
        another task."""
        if self.task != kind:
            raise CvkitError(
                f"{key}: {path} is a {self.task} checkpoint, but task={kind}: use a {kind} checkpoint, or "
                f"task={self.task} with {self.task} data"
            )

    def check_classes(self, class_names: Sequence[str], data: str) -> None:
        """Refuse data (described by `data`) whose classes are not those this checkpoint was trained on."""
        if list(class_names) != self.class_names:
            raise CvkitError(
                f"ckpt_path: the checkpoint was trained on classes {self.class_names}, but {data} has "
                f"{list(class_names)}"
            )


def model_weights(checkpoint: Mapping[str, Any]) -> dict[str, torch.Tensor]:
    """The network's weights of a loaded checkpoint, named as in the network itself (without the task's prefix)."""
    prefix = MODEL_PREFIX
    return {key[len(prefix) :]: value for key, value in checkpoint["state_dict"].items() if key.startswith(prefix)}


def rng_states() -> dict[str, Any]:
    """Python, NumPy and torch RNG states in types that ``torch.load(weights_only=True)`` accepts."""
    name, keys, position, has_gauss, gauss = np.random.get_state()
    return {
        "python": random.getstate(),
        "numpy": [name, keys.tolist(), position, has_gauss, gauss],
        "torch": torch.get_rng_state(),
        "cuda": torch.cuda.get_rng_state_all() if torch.cuda.is_available() else [],
    }


def restore_rng_states(states: dict[str, Any]) -> None:
    """Undo :func:`rng_states`, so dropout and other global randomness replay after a resume."""
    version, internal, gauss = states["python"]
    random.setstate((version, tuple(internal), gauss))
    name, keys, position, has_gauss, cached = states["numpy"]
    np.random.set_state((name, np.asarray(keys, dtype=np.uint32), position, has_gauss, cached))
    torch.set_rng_state(states["torch"])
    if states["cuda"] and torch.cuda.is_available():
        torch.cuda.set_rng_state_all(states["cuda"])


def write_atomically(path: Path, write: Callable[[io.BufferedWriter], object], size: int) -> None:
    """Write a file of `size` bytes with `write` so that `path` is either its old self or whole: a temporary
    file in the same folder, flushed and fsynced, then renamed over `path`. A lack of space or permission
    raises :class:`TrainingFailed` naming the path, the size and the free space; nothing else changes."""
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


def resolve_resume(ckpt_path: str | None, resume: bool, run_dir: Path) -> tuple[str | None, dict[str, Any] | None]:
    """The checkpoint to resume full training state from, as (path, loaded checkpoint): ``ckpt_path``, else with
    ``resume`` the newest readable checkpoint of the run dir ((None, None), with a notice, when there is none
    yet). Logs where the run continues: the file, its epoch and its step."""
    if ckpt_path:
        path, checkpoint = Path(ckpt_path).expanduser(), load_checkpoint(ckpt_path, "ckpt_path")
    elif resume:
        found = newest_readable(run_dir)
        if found is None:
            log.warning("resume=true but %s holds no checkpoint yet: starting a fresh run", run_dir / CHECKPOINT_DIR)
            return None, None
        path, checkpoint = found
    else:
        return None, None
    step, epoch = checkpoint.get("global_step", 0), checkpoint.get("epoch", 0)
    log.info("resuming from %s: saved at optimizer step %d, in epoch %d (counting from 0)", path, step, epoch)
    return str(path), checkpoint


def init_weights(model: nn.Module, path: str) -> tuple[list[str], list[str]]:
    """Load the model weights of a cvkit checkpoint into `model`, keeping what matches.

    Tensors whose shape differs (e.g. a classifier for another number of classes) are left out and
    reported with the missing keys. Returns (missing, unexpected) key lists.
    """
    source = model_weights(load_checkpoint(path, "init_from"))
    own = model.state_dict()
    mismatched = [k for k, v in source.items() if k in own and own[k].shape != v.shape]
    result = model.load_state_dict({k: v for k, v in source.items() if k not in mismatched}, strict=False)
    missing = sorted(set(result.missing_keys) | set(mismatched))
    log.info(
        "init_from=%s: loaded %d tensors; missing %d %s; unexpected %d %s",
        path,
        len(source) - len(mismatched) - len(result.unexpected_keys),
        len(missing),
        missing[:10],
        len(result.unexpected_keys),
        result.unexpected_keys[:10],
    )
    return missing, list(result.unexpected_keys)
