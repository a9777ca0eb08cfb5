"""A trained network and how to feed it, per task: images in, per-task results out.

``cvkit.load(ckpt_path)`` (:mod:`cvkit.inference.loading`) reads what the checkpoint records (task, class
names, the composed config with the data's evaluation transforms, input size and normalisation), rebuilds
the network without fetching any weights, loads the trained ones and returns the task's :class:`Predictor`::

    model = cvkit.load("outputs/run/checkpoints/best.ckpt")
    results = model.predict(["a.jpg", "b.png"])   # paths, HxWx3 uint8 RGB arrays or PIL images

Images are prepared as the run evaluated them: the recorded ``data.eval_transforms`` (and, for
segmentation, the resize to ``data.image_size``), then the recorded normalisation.
"""

from __future__ import annotations

from collections.abc import Iterable, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import albumentations as A
import numpy as np
import torch
import torch.nn.functional as F
from PIL import Image
from torch import nn

from cvkit.checkpoints import RunRecord
from cvkit.data.images import read_rgb
from cvkit.data.transforms import (
    build_detection_pipeline,
    build_pipeline,
    build_segmentation_eval_pipeline,
    normalised,
    parse_image_size,
    unit_range,
)
from cvkit.errors import CvkitError
from cvkit.metrics.detection import binary_masks

ImageInput = str | Path | np.ndarray | Image.Image


@dataclass
class ClassScores:
    """The `top_k` classes of one image, most likely first, with their softmax probabilities."""

    class_ids: list[int]
    labels: list[str]
    scores: list[float]


@dataclass
class Detections:
    """The objects found in one image, in its pixel coordinates (xyxy), most confident first."""

    boxes: np.ndarray  # float32 [N, 4]
    scores: np.ndarray  # float32 [N]
    class_ids: np.ndarray  # int64 [N], indices into the class names (0..K-1)
    labels: list[str]
    masks: np.ndarray | None = None  # instance segmentation: bool [N, H, W], each object's pixels


@dataclass
class SegmentationMask:
    """The class index of every pixel of one image, at its original size."""

    mask: np.ndarray  # int64 [H, W]


def as_rgb(image: ImageInput) -> np.ndarray:
    """An HxWx3 uint8 RGB array from a path, an array (HxW gray or HxWx3 RGB, uint8) or a PIL image."""
    if isinstance(image, str | Path):
        return read_rgb(image)
    if isinstance(image, Image.Image):
        return np.asarray(image.convert("RGB"))
    array = np.asarray(image)
    if array.dtype != np.uint8 or array.ndim not in (2, 3) or (array.ndim == 3 and array.shape[2] != 3):
        raise CvkitError(
            f"an image array must be HxWx3 RGB (or HxW gray) uint8, got {array.dtype} of shape {array.shape}"
        )
    return np.repeat(array[:, :, None], 3, axis=2) if array.ndim == 2 else array


class Predictor:
    """A trained network and how to feed it: :meth:`prepare` one image (an HxWx3 uint8 RGB array) into
    its input tensor, :meth:`predict_batch` a list of them into per-image results. Subclasses are per task
    (:mod:`cvkit.inference.kinds` names each task's)."""

    def __init__(
        self,
        model: nn.Module,
        record: RunRecord,
        device: str | torch.device = "cpu",
        *,
        top_k: int = 5,
        score_thresh: float = 0.0,
    ) -> None:
        self.record = record
        self.kind = record.task
        self.top_k = top_k  # classification: the classes listed per image
        self.score_thresh = score_thresh  # detection: the boxes kept (the detector's own threshold applies first)
        self.class_names: list[str] = list(record.class_names)
        self.config = record.config
        self.device = torch.device(device)
        self.model = model.eval().to(self.device)
        self.transform = self.build_transform(self.config["data"])

    @staticmethod
    def build_transform(data: dict[str, Any]) -> A.Compose:
        raise NotImplementedError

    def prepare(self, image: np.ndarray) -> torch.Tensor:
        """The model input of one HxWx3 uint8 RGB image (CHW float, normalised by the run's mean and std)."""
        data = self.config["data"]
        return normalised(self.transform(image=image)["image"], data["mean"], data["std"])

    @torch.inference_mode()
    def predict_batch(self, inputs: Sequence[torch.Tensor], sizes: Sequence[tuple[int, int]]) -> list[Any]:
        """Results for prepared `inputs` of images whose original (height, width) are `sizes`."""
        return self.run(inputs, sizes)

    def run(self, inputs: Sequence[torch.Tensor], sizes: Sequence[tuple[int, int]]) -> list[Any]:
        raise NotImplementedError

    def predict(self, images: Iterable[ImageInput], batch_size: int = 8) -> list[Any]:
        """One result per image, in order; see the task's result class."""
        results: list[Any] = []
        chunk: list[np.ndarray] = []
        for image in images:
            chunk.append(as_rgb(image))
            if len(chunk) == batch_size:
                results += self._predict_arrays(chunk)
                chunk = []
        return results + (self._predict_arrays(chunk) if chunk else [])

    def _predict_arrays(self, arrays: list[np.ndarray]) -> list[Any]:
        return self.predict_batch([self.prepare(a) for a in arrays], [a.shape[:2] for a in arrays])

    @property
    def image_size(self) -> Any:
        """The network's input size as the run's data config gave it (an int, or [height, width])."""
        return self.record.input_size

    def describe(self) -> str:
        backbone = self.config.get("backbone", {}).get("name", "?")
        return f"{self.kind} model ({backbone}, {len(self.class_names)} classes)"

    def forward_stacked(self, inputs: Sequence[torch.Tensor]) -> list[torch.Tensor]:
        """The model's output per input: in one batch when the inputs share a size, else one by one."""
        if len({tuple(x.shape) for x in inputs}) == 1:
            return list(self.model(torch.stack(list(inputs)).to(self.device)))
        return [self.model(x[None].to(self.device))[0] for x in inputs]


class ClassifierPredictor(Predictor):
    @staticmethod
    def build_transform(data: dict[str, Any]) -> A.Compose:
        return build_pipeline(data.get("eval_transforms"), "data.eval_transforms")

    def run(self, inputs: Sequence[torch.Tensor], sizes: Sequence[tuple[int, int]]) -> list[ClassScores]:
        results = []
        for logits in self.forward_stacked(inputs):
            scores, indices = logits.float().softmax(dim=-1).topk(min(self.top_k, len(self.class_names)))
            ids = indices.tolist()
            results.append(ClassScores(ids, [self.class_names[i] for i in ids], scores.tolist()))
        return results


class DetectorPredictor(Predictor):
    """Detectors and instance segmenters (whose results carry masks, binarised as evaluation binarises them)."""

    @staticmethod
    def build_transform(data: dict[str, Any]) -> A.Compose:
        return build_detection_pipeline(data.get("eval_transforms"), 0.0, "data.eval_transforms")

    def prepare(self, image: np.ndarray) -> torch.Tensor:
        return unit_range(self.transform(image=image, bboxes=np.zeros((0, 4), np.float32), labels=[])["image"])

    def run(self, inputs: Sequence[torch.Tensor], sizes: Sequence[tuple[int, int]]) -> list[Detections]:
        results = []
        for found in self.model([x.to(self.device) for x in inputs]):
            keep = found["scores"] >= self.score_thresh
            ids = (found["labels"][keep] - 1).cpu().numpy()
            results.append(
                Detections(
                    boxes=found["boxes"][keep].float().cpu().numpy(),
                    scores=found["scores"][keep].float().cpu().numpy(),
                    class_ids=ids,
                    labels=[self.class_names[i] for i in ids],
                    masks=binary_masks(found["masks"][keep]) if "masks" in found else None,
                )
            )
        return results


class SegmenterPredictor(Predictor):
    @staticmethod
    def build_transform(data: dict[str, Any]) -> A.Compose:
        size = parse_image_size(data["image_size"])
        return build_segmentation_eval_pipeline(data.get("eval_transforms"), size)

    def run(self, inputs: Sequence[torch.Tensor], sizes: Sequence[tuple[int, int]]) -> list[SegmentationMask]:
        results = []
        for logits, size in zip(self.forward_stacked(inputs), sizes, strict=True):
            resized = F.interpolate(logits[None].float(), size=tuple(size), mode="bilinear", align_corners=False)
            results.append(SegmentationMask(resized[0].argmax(dim=0).cpu().numpy()))
        return results
