"""The exported form of each task's network: its input and outputs, the formats it can be written in, and
how an export is compared with PyTorch. :mod:`cvkit.inference.kinds` names each task's.

Classifiers and segmenters take ``images``: float32 [N, 3, H, W], RGB, normalised by the recorded mean and
std, N free (dynamic); they give ``logits`` ([N, K], or [N, K, H, W]). Detectors (ONNX only) take one
``image``: float32 [3, H, W], RGB, values 0..1, any size; they give ``boxes`` [D, 4] (xyxy pixels),
``labels`` [D] (class index + 1) and ``scores`` [D]; instance segmenters also ``masks`` [D, 1, H, W]
(probabilities at the image's size; an object's pixels are those at or above 0.5).
"""

from __future__ import annotations

from collections.abc import Callable, Sequence
from dataclasses import dataclass, field, replace
from typing import Any

import numpy as np
import torch
from torch import nn

Outputs = Any  # one array, or a tuple of arrays (detectors)
FORMATS = ("onnx", "torchscript")  # every format cvkit exports to; a form offers all or some of them


class DetectorOutputs(nn.Module):
    """A torchvision detector as a function of one image tensor, returning (boxes, labels, scores), and masks
    after them for Mask R-CNN."""

    def __init__(self, detector: nn.Module) -> None:
        super().__init__()
        self.detector = detector

    def forward(self, image: torch.Tensor) -> tuple[torch.Tensor, ...]:
        found = self.detector([image])[0]
        return found["boxes"], found["labels"], found["scores"], *([found["masks"]] if "masks" in found else [])


def largest_logit_difference(reference: Sequence[np.ndarray], exported: Sequence[np.ndarray]) -> float:
    """The largest absolute difference between logits."""
    return max(float(np.abs(ref - out).max()) for ref, out in zip(reference, exported, strict=True))


def largest_detection_difference(reference: Sequence[Outputs], exported: Sequence[Outputs]) -> float:
    """The largest absolute difference of box coordinates (pixels) and scores, after pairing each detection
    with an exported one of its class so that the summed differences are smallest (near-equal scores may
    come out in another order), and with masks the largest :func:`largest_mask_disagreement` of the pairs. A
    different number of detections, or of detections per class, counts as an infinite difference."""
    from scipy.optimize import linear_sum_assignment

    largest = 0.0
    for ours, theirs in zip(reference, exported, strict=True):
        (boxes, labels, scores, *masks), (e_boxes, e_labels, e_scores, *e_masks) = ours, theirs
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
        if masks:
            largest = max(largest, largest_mask_disagreement(masks[0][rows], e_masks[0][columns]))
    return largest


def largest_mask_disagreement(masks: np.ndarray, exported: np.ndarray) -> float:
    """The largest ``1 - IoU`` of paired masks ``[D, 1, H, W]`` binarised at 0.5 (two empty masks agree): a
    probability a hair either side of 0.5 flips a pixel, so masks are compared as regions, not values."""
    ours, theirs = (masks >= 0.5).reshape(len(masks), -1), (exported >= 0.5).reshape(len(exported), -1)
    union = (ours | theirs).sum(axis=1)
    iou = np.where(union > 0, (ours & theirs).sum(axis=1) / np.maximum(union, 1), 1.0)
    return float(1.0 - iou.min())


@dataclass(frozen=True)
class ExportForm:
    """How one task's network is exported and checked.

    `batched`: the input is a normalised batch [N, 3, H, W] at the recorded size (the description then
    names the size, mean and std); otherwise one 0..1 image [3, H, W] of any size per call, which the
    network resizes and normalises inside. `wrap` turns the network into the exported function;
    `difference` compares its outputs with PyTorch's, and `tolerance` is the largest difference accepted
    by default. `formats` are those offered; `not_offered` says for what and why the others are not.
    """

    input_name: str
    output_names: tuple[str, ...]
    dynamic_axes: dict[str, dict[int, str]]
    input_text: str
    output_text: str
    batched: bool
    tolerance: float
    difference: Callable[[Sequence[Outputs], Sequence[Outputs]], float]
    wrap: Callable[[nn.Module], nn.Module] = field(default=lambda model: model)
    formats: tuple[str, ...] = FORMATS
    not_offered: str = ""


def logits_form(output_text: str) -> ExportForm:
    """The form of a network that maps a normalised batch to logits."""
    return ExportForm(
        input_name="images",
        output_names=("logits",),
        dynamic_axes={"images": {0: "batch"}, "logits": {0: "batch"}},
        input_text="images: float32 [N, 3, H, W], (pixel / 255 - mean) / std",
        output_text=output_text,
        batched=True,
        tolerance=1e-4,
        difference=largest_logit_difference,
    )


CLASSIFIER_FORM = logits_form("logits [N, K]")
SEGMENTER_FORM = logits_form("logits [N, K, H, W]")
DETECTOR_FORM = ExportForm(
    input_name="image",
    output_names=("boxes", "labels", "scores"),
    dynamic_axes={
        "image": {1: "height", 2: "width"},
        **{name: {0: "detections"} for name in ("boxes", "labels", "scores")},
    },
    input_text="image: float32 [3, H, W], values 0..1, any size (the detector resizes and normalises inside)",
    output_text="boxes [D, 4] xyxy pixels, labels [D] = class index + 1, scores [D]",
    batched=False,
    tolerance=1e-3,
    difference=largest_detection_difference,
    wrap=DetectorOutputs,
    formats=("onnx",),
    not_offered=(
        "for detectors: cvkit's timm feature pyramid cannot be scripted and tracing cannot follow a detector's "
        "data-dependent steps; use format=onnx"
    ),
)
# Mask R-CNN: the detector's form with masks; one tolerance, 1e-2, for box pixels, scores and 1 - IoU of mask pairs.
INSTANCE_SEGMENTER_FORM = replace(
    DETECTOR_FORM,
    output_names=("boxes", "labels", "scores", "masks"),
    dynamic_axes={**DETECTOR_FORM.dynamic_axes, "masks": {0: "detections", 2: "height", 3: "width"}},
    output_text=f"{DETECTOR_FORM.output_text}, masks [D, 1, H, W] probabilities (an object's pixels: >= 0.5)",
    tolerance=1e-2,
)
