"""Albumentations pipelines from config: the listed transforms, then conversion to a CHW float tensor.

Classification and segmentation pipelines normalise (``Normalize``; segmentation masks follow every
geometric step); detection pipelines carry boxes along and stop at 0..1 pixel values, since torchvision
detectors normalise and resize inside their own transform.
"""

from __future__ import annotations

import warnings
from collections.abc import Sequence
from typing import Any

import albumentations as A
from albumentations.pytorch import ToTensorV2
from hydra.utils import instantiate

from cvkit.errors import CvkitError


def build_steps(specs: Sequence[Any] | None, key: str) -> list[A.BasicTransform | A.BaseCompose]:
    """Instantiate each ``{_target_: albumentations.X, ...}`` entry of `specs` (config key `key`)."""
    steps = []
    for position, spec in enumerate(specs or []):
        try:
            step = instantiate(spec)
        except Exception as err:  # instantiate wraps the transform's own error; name the entry
            raise CvkitError(f"{key}[{position}] could not be built: {err}") from err
        if not isinstance(step, A.BasicTransform | A.BaseCompose):
            raise CvkitError(f"{key}[{position}] is {type(step).__name__}, not an albumentations transform")
        steps.append(step)
    return steps


def normalised_tensor(mean: Sequence[float], std: Sequence[float]) -> list[A.BasicTransform]:
    """The closing steps of a pipeline: normalisation by `mean`/`std` (of 0..1 pixel values) and conversion
    to a CHW float tensor (a mask passed along becomes an HxW tensor, its values unchanged)."""
    return [A.Normalize(mean=tuple(mean), std=tuple(std), max_pixel_value=255.0), ToTensorV2()]


def build_pipeline(specs: Sequence[Any] | None, mean: Sequence[float], std: Sequence[float], key: str) -> A.Compose:
    """The transforms of `specs`, then normalisation by `mean`/`std` (of 0..1 pixel values) and conversion
    to a CHW float tensor."""
    return A.Compose([*build_steps(specs, key), *normalised_tensor(mean, std)])


def build_detection_pipeline(specs: Sequence[Any] | None, min_visibility: float, key: str) -> A.Compose:
    """The transforms of `specs` applied to an image and its ``pascal_voc`` boxes (absolute xyxy pixels,
    passed as ``bboxes=`` with ``labels=``), then conversion to a CHW float tensor of 0..1 values.

    Boxes are clipped to the image after every transform; a box that keeps less than `min_visibility` of
    its area inside the image, or ends with no width or height, is dropped together with its label. For
    example, a 100x50 box half pushed out of the image by a shift stays (clipped) at ``min_visibility=0.3``
    and is dropped at 0.6."""
    if not 0.0 <= min_visibility <= 1.0:
        raise CvkitError(f"data.min_box_visibility must be between 0 and 1, got {min_visibility!r}")
    steps = [*build_steps(specs, key), A.ToFloat(max_value=255.0), ToTensorV2()]
    boxes = A.BboxParams(
        format="pascal_voc",
        label_fields=["labels"],
        min_visibility=min_visibility,
        min_width=1e-3,
        min_height=1e-3,
        clip=True,
        filter_invalid_bboxes=True,
    )
    with warnings.catch_warnings():  # an evaluation pipeline may have no box-moving step: that's fine
        warnings.filterwarnings("ignore", message="Got processor for bboxes, but no transform to process it")
        return A.Compose(steps, bbox_params=boxes)


def parse_image_size(image_size: int | Sequence[int]) -> tuple[int, int]:
    """``data.image_size`` as (height, width): an int is a square, a pair is [height, width]."""
    size = [image_size] if isinstance(image_size, int) else list(image_size)
    if len(size) == 1:
        size *= 2
    if len(size) != 2 or not all(isinstance(v, int) and not isinstance(v, bool) and v > 0 for v in size):
        raise CvkitError(f"data.image_size must be [height, width] in pixels (or one int), got {image_size!r}")
    return size[0], size[1]


def build_segmentation_eval_pipeline(
    specs: Sequence[Any] | None, size: tuple[int, int], mean: Sequence[float], std: Sequence[float]
) -> A.Compose:
    """The pixel-level steps of ``data.eval_transforms``, a resize to `size` (height, width), then
    normalisation and conversion to a tensor. Steps that move pixels (flips, crops, resizes) are refused:
    predictions are compared with the original masks."""
    steps = build_steps(specs, "data.eval_transforms")
    for position, step in enumerate(steps):
        inner = step.transforms if isinstance(step, A.BaseCompose) else [step]
        if not all(isinstance(t, A.ImageOnlyTransform) for t in inner):
            raise CvkitError(
                f"data.eval_transforms[{position}] ({type(step).__name__}) moves pixels; evaluation compares "
                "predictions with the original masks, so only pixel-level steps are allowed there (the image "
                "is resized to data.image_size by the data module)"
            )
    return A.Compose([*steps, A.Resize(*size), *normalised_tensor(mean, std)])
