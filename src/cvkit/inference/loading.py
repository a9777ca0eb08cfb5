"""``cvkit.load``: a trained model rebuilt from its checkpoint alone, as the :class:`Predictor` of its task.
Imports no training code (no Lightning trainer, no task module)."""

from __future__ import annotations

from pathlib import Path

import torch
from torch import nn

from cvkit.checkpoints import RunRecord, load_checkpoint, model_weights
from cvkit.errors import CvkitError
from cvkit.inference.predictor import Predictor, recorded_image_size
from cvkit.task_kinds import task_kind


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


def rebuild_network(record: RunRecord, weights: dict[str, torch.Tensor], where: str) -> nn.Module:
    """The recorded run's network with its trained `weights`; no pretrained weights are fetched."""
    config = record.config
    build = task_kind(record.task, where).build_network
    model_options = config["task"].get("model") or {}
    model = build(config["backbone"], model_options, len(record.class_names), recorded_image_size(record), False)
    model.load_state_dict(weights)
    return model


def load(ckpt_path: str | Path, device: str = "auto", *, top_k: int = 5, score_thresh: float = 0.0) -> Predictor:
    """The :class:`Predictor` of a cvkit checkpoint, on `device` (auto: a GPU when there is one).
    ``top_k``: classes listed per image (classification); ``score_thresh``: the lowest score of a box
    kept (detection; the detector's own ``task.model.score_thresh`` applies first)."""
    checkpoint = load_checkpoint(ckpt_path, "ckpt_path")
    record = RunRecord.from_checkpoint(checkpoint, ckpt_path)
    where = f"ckpt_path: {ckpt_path}"
    network = rebuild_network(record, model_weights(checkpoint), where)
    predictor = task_kind(record.task, where).predictor
    return predictor(network, record, resolve_device(device), top_k=top_k, score_thresh=score_thresh)
