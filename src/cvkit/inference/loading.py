"""``cvkit.load``: a trained model rebuilt from its checkpoint alone, as the :class:`Predictor` of its task.
Imports no training code (no Lightning trainer, no task module)."""

from __future__ import annotations

from pathlib import Path

import torch

from cvkit.checkpoints import SavedRun
from cvkit.errors import CvkitError
from cvkit.inference.kinds import inference_kind
from cvkit.inference.predictor import Predictor
from cvkit.models.networks import trained_network


def resolve_device(device: str) -> torch.device:
    """``auto``: the first GPU when there is one, else the CPU; otherwise the named device, checked."""
    if device == "auto":
        return torch.device("cuda" if torch.cuda.is_available() else "cpu")
    try:
        resolved = torch.device(device)
    except RuntimeError as err:
        raise CvkitError(f"device={device!r} is not a device: use auto, cpu, cuda or cuda:N") from err
    if resolved.type == "cuda" and not torch.cuda.is_available():
        raise CvkitError(f"device={device!r} but this machine has no CUDA GPU: use device=cpu")
    return resolved


def load(ckpt_path: str | Path, device: str = "auto", *, top_k: int = 5, score_thresh: float = 0.0) -> Predictor:
    """The :class:`Predictor` of a cvkit checkpoint, on `device` (auto: a GPU when there is one).
    ``top_k``: classes listed per image (classification); ``score_thresh``: the lowest score of a box
    kept (detection; the detector's own ``task.model.score_thresh`` applies first)."""
    saved = SavedRun.read(ckpt_path, "ckpt_path")
    record = saved.require_record("ckpt_path")
    where = f"ckpt_path: {ckpt_path}"
    predictor = inference_kind(record.task, where).predictor
    classes = len(record.class_names)
    network = trained_network(record.task, record.config, classes, record.input_size, saved.model_weights(), where)
    return predictor(network, record, resolve_device(device), top_k=top_k, score_thresh=score_thresh)
