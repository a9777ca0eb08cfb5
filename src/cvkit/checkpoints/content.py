"""What a cvkit checkpoint holds beside Lightning's own state, written and read here alone.

``"cvkit"``: the :class:`RunRecord` (what it takes to evaluate and use the model without the run's config
files); ``"cvkit_rng_states"``: the Python, NumPy and torch RNG states; ``"cvkit_schedule"``: the steps per
epoch, global batch and peak LR the schedule ran at; ``"cvkit_best"``: the best values so far of the task's
``val/*_best`` metrics; ``"cvkit_tracker_runs"``: the MLflow and W&B run ids a resume continues. The task
writes the first four (``on_save_checkpoint``), the tracker callback the last. A checkpoint is read once, as a
:class:`SavedRun`.
"""

from __future__ import annotations

import logging
import random
from collections.abc import Mapping, Sequence
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any

import numpy as np
import torch
from torch import nn

from cvkit.checkpoints.files import load_checkpoint, newest_readable
from cvkit.errors import CvkitError

log = logging.getLogger(__name__)

RECORD_KEY = "cvkit"
RNG_KEY = "cvkit_rng_states"
SCHEDULE_KEY = "cvkit_schedule"
BEST_KEY = "cvkit_best"
TRACKER_RUNS_KEY = "cvkit_tracker_runs"
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

    @property
    def input_size(self) -> Any:
        """The input size the run trained at (None for detectors, which resize inside)."""
        return self.image_size if self.image_size is not None else self.config["data"].get("image_size")

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


@dataclass(frozen=True)
class SavedRun:
    """One checkpoint, read once: where it is, what Lightning saved (:attr:`content`) and cvkit's entries."""

    path: Path
    content: dict[str, Any]

    @classmethod
    def read(cls, path: str | Path, key: str) -> SavedRun:
        """The checkpoint at `path` (config key `key`, named in errors)."""
        return cls(Path(path).expanduser(), load_checkpoint(path, key))

    @property
    def global_step(self) -> int:
        return int(self.content.get("global_step", 0))

    @property
    def epoch(self) -> int:
        return int(self.content.get("epoch", 0))

    @property
    def record(self) -> RunRecord | None:
        return RunRecord.in_checkpoint(self.content)

    def require_record(self, key: str) -> RunRecord:
        """The run record, or a CvkitError (naming config `key`) saying the file has none."""
        record = self.record
        if record is None:
            raise CvkitError(
                f"{key}: {self.path} has no cvkit run record (task, class names, config): it was not written by "
                "cvkit-train"
            )
        return record

    @property
    def per_device_batch_size(self) -> int | None:
        """The per-device batch the run trained with (so that ``data.batch_size=auto`` keeps it)."""
        record = self.record
        return record.lr_plan.get("per_device_batch_size") if record else None

    @property
    def tracker_runs(self) -> dict[str, str]:
        """``{"mlflow": run id, "wandb": run id}`` of the run that saved it."""
        return dict(self.content.get(TRACKER_RUNS_KEY) or {})

    def model_weights(self) -> dict[str, torch.Tensor]:
        """The network's weights, named as in the network itself (without the task's prefix)."""
        state = self.content["state_dict"]
        return {key[len(MODEL_PREFIX) :]: value for key, value in state.items() if key.startswith(MODEL_PREFIX)}


def resume_point(ckpt_path: str | None, resume: bool, run_dir: Path) -> SavedRun | None:
    """The checkpoint to resume full training state from: ``ckpt_path``, else with ``resume`` the newest
    readable checkpoint of the run dir (None, with a notice, when there is none yet). Logs where the run
    continues: the file, its step and its epoch."""
    if ckpt_path:
        saved = SavedRun.read(ckpt_path, "ckpt_path")
    elif resume:
        found = newest_readable(run_dir)
        if found is None:
            log.warning("resume=true but %s holds no checkpoint yet: starting a fresh run", run_dir / "checkpoints")
            return None
        saved = SavedRun(*found)
    else:
        return None
    log.info(
        "resuming from %s: saved at optimizer step %d, in epoch %d (counting from 0)",
        saved.path, saved.global_step, saved.epoch,
    )  # fmt: skip
    return saved


def init_weights(model: nn.Module, path: str) -> tuple[list[str], list[str]]:
    """Load the model weights of a cvkit checkpoint into `model`, keeping what matches.

    Tensors whose shape differs (e.g. a classifier for another number of classes) are left out and
    reported with the missing keys. Returns (missing, unexpected) key lists.
    """
    source = SavedRun.read(path, "init_from").model_weights()
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


# The task's entries (written in its on_save_checkpoint, read in its on_load_checkpoint).
def save_task_state(
    checkpoint: dict[str, Any], record: RunRecord | None, schedule: Mapping[str, Any] | None, best: Mapping[str, float]
) -> None:
    """Add the task's entries to a checkpoint Lightning is saving: its record, the RNG states, where the
    schedule stands (``steps_per_epoch``, ``global_batch_size``, ``effective_lr``) and the best values so far."""
    if record is not None:
        checkpoint[RECORD_KEY] = record.as_dict()
    checkpoint[RNG_KEY] = rng_states()
    if schedule is not None:
        checkpoint[SCHEDULE_KEY] = dict(schedule)
    checkpoint[BEST_KEY] = dict(best)


@dataclass(frozen=True)
class TaskState:
    """The task's entries of a checkpoint being loaded (see :func:`save_task_state`)."""

    record: RunRecord | None
    schedule: Mapping[str, Any] | None
    best: Mapping[str, float]

    @classmethod
    def restored_from(cls, checkpoint: Mapping[str, Any]) -> TaskState:
        """The task's entries of `checkpoint`; its RNG states are restored on the way, so that dropout and other
        global randomness replay after a resume."""
        if RNG_KEY in checkpoint:
            restore_rng_states(checkpoint[RNG_KEY])
        return cls(RunRecord.in_checkpoint(checkpoint), checkpoint.get(SCHEDULE_KEY), checkpoint.get(BEST_KEY, {}))


def save_tracker_runs(checkpoint: dict[str, Any], run_ids: Mapping[str, str]) -> None:
    """Add the trackers' run ids to a checkpoint Lightning is saving (read back as ``SavedRun.tracker_runs``)."""
    checkpoint[TRACKER_RUNS_KEY] = dict(run_ids)


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
    """Undo :func:`rng_states`."""
    version, internal, gauss = states["python"]
    random.setstate((version, tuple(internal), gauss))
    name, keys, position, has_gauss, cached = states["numpy"]
    np.random.set_state((name, np.asarray(keys, dtype=np.uint32), position, has_gauss, cached))
    torch.set_rng_state(states["torch"])
    if states["cuda"] and torch.cuda.is_available():
        torch.cuda.set_rng_state_all(states["cuda"])
