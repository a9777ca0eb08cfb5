"""Exporting a trained network to ONNX or TorchScript, and checking the export against PyTorch.

Classifiers and segmenters take ``images``: float32 [N, 3, H, W], RGB, normalised by the recorded mean
and std, N free (dynamic); they give ``logits`` ([N, K], or [N, K, H, W]). Detectors (ONNX only) take one
``image``: float32 [3, H, W], RGB, values 0..1, any size; they give ``boxes`` [D, 4] (xyxy pixels),
``labels`` [D] (class index + 1) and ``scores`` [D]. The expected input is also written into the file's
metadata (ONNX ``metadata_props``; TorchScript extra file ``cvkit.json``).
"""

from __future__ import annotations

import json
import warnings
from collections.abc import Sequence
from pathlib import Path
from typing import Any

import numpy as np
import onnx
import onnxruntime
import torch
from scipy.optimize import linear_sum_assignment
from torch import nn

from cvkit.errors import CvkitError
from cvkit.inference.predictor import Predictor

FORMATS = ("onnx", "torchscript")
SUFFIXES = {"onnx": ".onnx", "torchscript": ".pt"}


class DetectorOutputs(nn.Module):
    """A torchvision detector as a function of one image tensor, returning (boxes, labels, scores)."""

    def __init__(self, detector: nn.Module) -> None:
        super().__init__()
        self.detector = detector

    def forward(self, image: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
        found = self.detector([image])[0]
        return found["boxes"], found["labels"], found["scores"]


def input_description(predictor: Predictor) -> dict[str, Any]:
    """What the exported model expects and gives, for its metadata and for the user."""
    data = predictor.config["data"]
    common = {"task": predictor.kind, "class_names": predictor.class_names, "channel_order": "RGB"}
    if predictor.kind == "detection":
        return {
            **common,
            "input": "image: float32 [3, H, W], values 0..1, any size (the detector resizes and normalises inside)",
            "outputs": "boxes [D, 4] xyxy pixels, labels [D] = class index + 1, scores [D]",
        }
    return {
        **common,
        "input": "images: float32 [N, 3, H, W], (pixel / 255 - mean) / std",
        "image_size": predictor.image_size,
        "mean": data["mean"],
        "std": data["std"],
        "outputs": "logits [N, K]" if predictor.kind == "classification" else "logits [N, K, H, W]",
    }


def check_supported(kind: str, export_format: str) -> None:
    """CvkitError when `export_format` is not one cvkit offers for a `kind` model."""
    if export_format not in FORMATS:
        raise CvkitError(f"format={export_format!r} is not one of {list(FORMATS)}")
    if kind == "detection" and export_format == "torchscript":
        raise CvkitError(
            "format=torchscript is not offered for detectors: cvkit's timm feature pyramid cannot be scripted and "
            "tracing cannot follow a detector's data-dependent steps; use format=onnx"
        )


def write_onnx(
    module: nn.Module,
    example: Any,
    path: Path,
    names: tuple[list[str], list[str]],
    axes: dict[str, dict[int, str]],
    opset: int,
    metadata: dict[str, Any] | None = None,
) -> None:
    """`module` traced with `example` as ONNX at `path`: input and output `names`, dynamic `axes`, and
    `metadata` (JSON for values that are not strings) in its ``metadata_props``."""
    with warnings.catch_warnings():  # the tracer's notes on Python values it records as constants
        warnings.simplefilter("ignore")
        torch.onnx.export(
            module.eval(),
            (example,),
            str(path),
            input_names=names[0],
            output_names=names[1],
            dynamic_axes=axes,
            opset_version=opset,
            dynamo=False,
        )
    if metadata:
        proto = onnx.load(str(path))
        for key, value in metadata.items():
            proto.metadata_props.add(key=key, value=value if isinstance(value, str) else json.dumps(value))
        onnx.save(proto, str(path))


def export_onnx(predictor: Predictor, example: torch.Tensor, path: Path, opset: int) -> None:
    """Write `predictor`'s network as ONNX to `path`, traced with `example` (a batch, or one image for
    detectors), with a dynamic batch axis (detectors: dynamic height and width)."""
    if predictor.kind == "detection":
        module, names = DetectorOutputs(predictor.model), (["image"], ["boxes", "labels", "scores"])
        axes = {"image": {1: "height", 2: "width"}, **{name: {0: "detections"} for name in names[1]}}
    else:
        module, names = predictor.model, (["images"], ["logits"])
        axes = {"images": {0: "batch"}, "logits": {0: "batch"}}
    write_onnx(module, example, path, names, axes, opset, input_description(predictor))


def export_torchscript(predictor: Predictor, example: torch.Tensor, path: Path) -> None:
    """Write `predictor`'s network as TorchScript (traced with `example`) to `path`."""
    check_supported(predictor.kind, "torchscript")
    with warnings.catch_warnings():  # the tracer's notes, and torch.jit's deprecation notice
        warnings.simplefilter("ignore")
        traced = torch.jit.trace(predictor.model.eval(), example, check_trace=False)
        torch.jit.save(traced, str(path), _extra_files={"cvkit.json": json.dumps(input_description(predictor))})


def run_exported(path: Path, export_format: str, inputs: Sequence[torch.Tensor], kind: str) -> list[Any]:
    """The exported model's outputs for `inputs` (a batch per tensor; detectors: one image per tensor),
    as numpy arrays (a tuple of them for detectors)."""
    if export_format == "onnx":
        session = onnxruntime.InferenceSession(str(path), providers=["CPUExecutionProvider"])
        name = session.get_inputs()[0].name
        outputs = [session.run(None, {name: x.numpy()}) for x in inputs]
        return [tuple(out) if kind == "detection" else out[0] for out in outputs]
    with warnings.catch_warnings():  # torch.jit's deprecation notice
        warnings.simplefilter("ignore")
        module = torch.jit.load(str(path), map_location="cpu")
    with torch.inference_mode():
        return [module(x).numpy() for x in inputs]


def run_reference(predictor: Predictor, inputs: Sequence[torch.Tensor]) -> list[Any]:
    """What the PyTorch network gives for `inputs`, in the form of :func:`run_exported`."""
    with torch.inference_mode():
        if predictor.kind == "detection":
            module = DetectorOutputs(predictor.model).eval()
            return [tuple(t.numpy() for t in module(x)) for x in inputs]
        return [predictor.model(x).numpy() for x in inputs]


def largest_difference(kind: str, reference: list[Any], exported: list[Any]) -> float:
    """The largest absolute difference between the outputs: of logits; for detectors, of box coordinates
    (pixels) and scores, after pairing each detection with an exported one of its class so that the summed
    differences are smallest (near-equal scores may come out in another order). A different number of
    detections, or of detections per class, counts as an infinite difference."""
    if kind != "detection":
        return max(float(np.abs(ref - out).max()) for ref, out in zip(reference, exported, strict=True))
    largest = 0.0
    for (boxes, labels, scores), (e_boxes, e_labels, e_scores) in zip(reference, exported, strict=True):
        if sorted(labels.tolist()) != sorted(e_labels.tolist()):
            return float("inf")
        if not len(boxes):
            continue
        ref = np.concatenate([boxes, scores[:, None]], axis=1).astype(np.float64)
        out = np.concatenate([e_boxes, e_scores[:, None]], axis=1).astype(np.float64)
        differences = np.abs(ref[:, None, :] - out[None, :, :])  # [D, D, 5]
        cost = differences.sum(axis=2) + np.where(labels[:, None] == e_labels[None, :], 0.0, 1e12)
        rows, columns = linear_sum_assignment(cost)
        largest = max(largest, float(differences[rows, columns].max()))
    return largest
