"""Reading masks of class indices: single-channel image files (8- or 16-bit grayscale, or palette PNGs
read as their indices), or masks drawn from annotations (a :class:`MaskSource`), checked against the
classes and ``ignore_index``."""

from __future__ import annotations

from pathlib import Path
from typing import Protocol

import numpy as np
from PIL import Image

from cvkit.data.images import DECODE_ERRORS, CorruptImageError
from cvkit.errors import CvkitError, few

# PIL modes that hold one class index per pixel: grayscale (1, 8, 16, 32 bit) and palette images.
INDEX_MODES = ("1", "L", "P", "I;16", "I;16B", "I;16L", "I")


class MaskSource(Protocol):
    """A mask that is not a file, such as one drawn from annotations; ``str()`` names it in messages."""

    def read(self) -> np.ndarray:
        """The HxW class indices."""


def mask_mode_problem(path: Path | MaskSource) -> str | None:
    """Why the mask file at `path` cannot hold class indices, from its header (None: it can, it is
    unreadable, which reading it reports, or it is not a file)."""
    if not isinstance(path, Path):
        return None
    try:
        with Image.open(path) as image:
            mode = image.mode
    except DECODE_ERRORS:
        return None
    if mode in INDEX_MODES:
        return None
    return (
        f"mask {path} is a {mode} image: masks must be single-channel images of class indices (grayscale "
        "or palette PNGs); convert colour-coded masks to class indices"
    )


def read_mask(path: Path | MaskSource) -> np.ndarray:
    """Decode a mask to an HxW array of class indices (uint8, or uint16 when values exceed 255)."""
    if not isinstance(path, Path):
        return compact_mask(path.read())
    try:
        with Image.open(path) as image:
            mode = image.mode
            mask = np.asarray(image) if mode in INDEX_MODES else None
    except DECODE_ERRORS as err:
        raise CorruptImageError(path, str(err) or type(err).__name__) from err
    if mask is None:
        raise CvkitError(mask_mode_problem(path) or f"mask {path} is not a class-index image")
    return compact_mask(mask)


def compact_mask(mask: np.ndarray) -> np.ndarray:
    """`mask` in the smallest of uint8, uint16 and int64 that holds its values."""
    if mask.dtype == bool or (mask.size and mask.max() <= 255 and mask.min() >= 0):
        return mask.astype(np.uint8)
    return mask.astype(np.int64) if mask.min() < 0 or mask.max() > 65535 else mask.astype(np.uint16)


def check_mask_values(mask: np.ndarray, path: Path | MaskSource, num_classes: int, ignore_index: int) -> None:
    """CvkitError naming `path` and the values of `mask` that are neither a class nor `ignore_index`."""
    wrong = ((mask >= num_classes) | (mask < 0)) & (mask != ignore_index)
    if wrong.any():
        values = np.unique(mask[wrong]).tolist()
        raise CvkitError(
            f"mask {path} has values {few([str(v) for v in values], 10)} that are neither classes "
            f"(0..{num_classes - 1}, data.num_classes/data.class_names) nor data.ignore_index={ignore_index}"
        )
