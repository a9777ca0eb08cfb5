"""Finding, checking and reading checkpoints: resume, warm start (init_from) and evaluation."""

from __future__ import annotations

import logging
import pickle
import zipfile
from pathlib import Path
from typing import Any

import torch
from torch import nn

from cvkit.errors import CvkitError

log = logging.getLogger(__name__)

LAST = "checkpoints/last.ckpt"
# What Lightning saves in the run dir when SLURM signals an imminent preemption or time limit.
PREEMPTION_GLOB = "hpc_ckpt_*.ckpt"


def load_checkpoint(path: str | Path, key: str) -> dict[str, Any]:
    """Read a Lightning checkpoint to CPU, or fail naming `key` and what is wrong with the file."""
    path = Path(path).expanduser()
    if not path.is_file():
        raise CvkitError(f"{key}: {path} does not exist (expected a .ckpt file written by cvkit-train)")
    try:
        checkpoint = torch.load(path, map_location="cpu", weights_only=True)
    except (RuntimeError, EOFError, OSError, zipfile.BadZipFile, ValueError, pickle.UnpicklingError) as err:
        raise CvkitError(f"{key}: {path} is not a readable PyTorch checkpoint ({err})") from err
    if not isinstance(checkpoint, dict) or "state_dict" not in checkpoint:
        raise CvkitError(f"{key}: {path} is not a Lightning checkpoint (it has no 'state_dict')")
    return checkpoint


def resolve_resume(ckpt_path: str | None, resume: bool, run_dir: Path) -> str | None:
    """The checkpoint to resume full training state from: ``ckpt_path``, else with ``resume`` the newest
    of the run dir's ``checkpoints/last.ckpt`` and preemption checkpoints (None, with a notice, when
    there is none yet)."""
    if ckpt_path:
        load_checkpoint(ckpt_path, "ckpt_path")
        return str(Path(ckpt_path).expanduser())
    if not resume:
        return None
    candidates = [path for path in [run_dir / LAST, *run_dir.glob(PREEMPTION_GLOB)] if path.is_file()]
    if candidates:
        newest = max(candidates, key=lambda path: path.stat().st_mtime)
        load_checkpoint(newest, "resume")
        log.info("resume=true: continuing from %s", newest)
        return str(newest)
    log.warning("resume=true but %s does not exist yet: starting a fresh run in %s", run_dir / LAST, run_dir)
    return None


def init_weights(model: nn.Module, path: str) -> tuple[list[str], list[str]]:
    """Load the model weights of a cvkit checkpoint into `model`, keeping what matches.

    Tensors whose shape differs (e.g. a classifier for another number of classes) are left out and
    reported with the missing keys. Returns (missing, unexpected) key lists.
    """
    checkpoint = load_checkpoint(path, "init_from")
    prefix = "model."
    source = {k[len(prefix) :]: v for k, v in checkpoint["state_dict"].items() if k.startswith(prefix)}
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
