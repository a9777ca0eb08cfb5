"""Albumentations pipelines from config: the listed transforms, then Normalize and ToTensorV2."""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

import albumentations as A
from albumentations.pytorch import ToTensorV2
from hydra.utils import instantiate

from cvkit.errors import CvkitError


def build_pipeline(specs: Sequence[Any] | None, mean: Sequence[float], std: Sequence[float], key: str) -> A.Compose:
    """Instantiate each ``{_target_: albumentations.X, ...}`` entry of `specs` and close the pipeline
    with normalisation by `mean`/`std` (of 0..1 pixel values) and conversion to a CHW float tensor."""
    steps = []
    for position, spec in enumerate(specs or []):
        try:
            step = instantiate(spec)
        except Exception as err:  # instantiate wraps the transform's own error; name the entry
            raise CvkitError(f"{key}[{position}] could not be built: {err}") from err
        if not isinstance(step, A.BasicTransform | A.BaseCompose):
            raise CvkitError(f"{key}[{position}] is {type(step).__name__}, not an albumentations transform")
        steps.append(step)
    steps += [A.Normalize(mean=tuple(mean), std=tuple(std), max_pixel_value=255.0), ToTensorV2()]
    return A.Compose(steps)
