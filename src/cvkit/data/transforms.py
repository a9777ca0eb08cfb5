"""Albumentations pipelines from config, and what finishes their images on the training device.

A pipeline is the listed transforms, then conversion to a CHW **uint8** tensor (a mask passed along becomes an
HxW tensor, detection boxes are carried along). The batch is then finished: :func:`normalised` for
classification and segmentation, by ``data.mean``/``data.std``, and :func:`unit_range` for detection, whose
torchvision detectors normalise and resize inside. For a GPU run that happens on the GPU
(``on_after_batch_transfer``): workers do no float work and a batch crosses to the device at a quarter of
the bytes of float32, as timm's prefetcher does. For a CPU run the loader's workers finish each batch, one
batch-wide operation instead of albumentations' per-image ``Normalize``. Predictors finish their images the
same way.
"""

from __future__ import annotations

import random
import warnings
from collections.abc import Sequence
from typing import Any

import albumentations as A
import numpy as np
import torch
from albumentations.pytorch import ToTensorV2
from hydra.utils import instantiate

from cvkit.compat import shared_float_storage_tensor
from cvkit.errors import CvkitError

# Steps that make float images: cvkit's pipelines end in uint8, finished on the device.
FINISHING_STEPS = (A.Normalize, A.ToFloat)


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
        if any(isinstance(inner, FINISHING_STEPS) for inner in (step, *getattr(step, "transforms", ()))):
            raise CvkitError(
                f"{key}[{position}] is {type(step).__name__}: cvkit turns the uint8 images into floats itself, on "
                "the device (normalised by data.mean/data.std); remove it and set data.mean/data.std instead"
            )
        steps.append(step)
    return steps


def build_pipeline(specs: Sequence[Any] | None, key: str) -> A.Compose:
    """The transforms of `specs`, then conversion to a CHW uint8 tensor."""
    return A.Compose([*build_steps(specs, key), ToTensorV2()])


def normalised(images: torch.Tensor, mean: Sequence[float], std: Sequence[float]) -> torch.Tensor:
    """uint8 images ``[..., 3, H, W]`` as float32 ``(pixel / 255 - mean) / std``, on their device (the values
    albumentations' ``Normalize`` gives)."""
    scale = torch.tensor([255.0 * value for value in std], device=images.device).view(3, 1, 1)
    shift = torch.tensor([255.0 * value for value in mean], device=images.device).view(3, 1, 1)
    return float_copy(images).sub_(shift).div_(scale)


def unit_range(image: torch.Tensor) -> torch.Tensor:
    """A uint8 image as float32 values 0..1."""
    return float_copy(image).div_(255.0)


def float_copy(images: torch.Tensor) -> torch.Tensor:
    """`images` as float32, converted before any arithmetic (uint8-with-float operations are about 2x slower);
    in a loader worker the copy is made in shared memory, as ``default_collate`` allocates its batches, so that
    handing it to the main process copies it no further (at 224 px, 1.25x the images/s)."""
    if torch.utils.data.get_worker_info() is None or images.device.type != "cpu":
        return images.float()
    return shared_float_storage_tensor(images.shape).copy_(images)


def build_detection_pipeline(specs: Sequence[Any] | None, min_visibility: float, key: str) -> A.Compose:
    """The transforms of `specs` applied to an image and its ``pascal_voc`` boxes (absolute xyxy pixels,
    passed as ``bboxes=`` with ``labels=``), then conversion to a CHW uint8 tensor.

    Boxes are clipped to the image after every transform; a box that keeps less than `min_visibility` of
    its area inside the image, or ends with no width or height, is dropped together with its label. For
    example, a 100x50 box half pushed out of the image by a shift stays (clipped) at ``min_visibility=0.3``
    and is dropped at 0.6."""
    if not 0.0 <= min_visibility <= 1.0:
        raise CvkitError(f"data.min_box_visibility must be between 0 and 1, got {min_visibility!r}")
    steps = [*build_steps(specs, key), ToTensorV2()]
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


def seed_pipeline(pipeline: A.Compose, seed: int) -> None:
    """Make `pipeline`'s next call draw its augmentations from `seed` alone (about 14 us): one NumPy and one
    Python generator, shared by every step, which draw from them in turn. Not ``Compose.set_random_seed``:
    that gives every step a generator of the same seed, so that steps of the same probability decide alike (a
    horizontal and a vertical flip at p=0.5 always flip together: tests/data/test_images.py shows it)."""
    pipeline.set_random_state(np.random.default_rng(seed), random.Random(seed))


def parse_image_size(image_size: int | Sequence[int]) -> tuple[int, int]:
    """``data.image_size`` as (height, width): an int is a square, a pair is [height, width]."""
    size = [image_size] if isinstance(image_size, int) else list(image_size)
    if len(size) == 1:
        size *= 2
    if len(size) != 2 or not all(isinstance(v, int) and not isinstance(v, bool) and v > 0 for v in size):
        raise CvkitError(f"data.image_size must be [height, width] in pixels (or one int), got {image_size!r}")
    return size[0], size[1]


def build_segmentation_eval_pipeline(specs: Sequence[Any] | None, size: tuple[int, int]) -> A.Compose:
    """The pixel-level steps of ``data.eval_transforms``, a resize to `size` (height, width), then conversion
    to a uint8 tensor. Steps that move pixels (flips, crops, resizes) are refused:
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
    return A.Compose([*steps, A.Resize(*size), ToTensorV2()])
