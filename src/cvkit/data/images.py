"""Reading image files, and telling a readable image from a corrupt one."""

from __future__ import annotations

import warnings
from pathlib import Path

import numpy as np
from PIL import Image, UnidentifiedImageError

from cvkit.errors import CvkitError

IMAGE_EXTENSIONS = (".jpg", ".jpeg", ".png", ".bmp", ".gif", ".tif", ".tiff", ".webp", ".ppm", ".pgm")
# Decoding failures PIL raises for empty, truncated or non-image files.
DECODE_ERRORS = (OSError, UnidentifiedImageError, ValueError, SyntaxError)


class CorruptImageError(CvkitError):
    """An image file that cannot be decoded: :attr:`path`, and :attr:`reason` (the decoder's words)."""

    def __init__(self, path: Path | str, reason: str) -> None:
        super().__init__(
            f"cannot read image {path}: {reason}. Remove or replace the file, or set data.strict=false "
            "to skip unreadable images with a warning."
        )
        self.path = Path(path)
        self.reason = reason


def is_image_file(path: Path) -> bool:
    return path.suffix.lower() in IMAGE_EXTENSIONS and not path.name.startswith(".")


def read_rgb(path: Path | str) -> np.ndarray:
    """Decode an image file to an HxWx3 uint8 RGB array; raises CorruptImageError if it cannot."""
    try:
        with warnings.catch_warnings():
            warnings.simplefilter("error", Image.DecompressionBombWarning)
            with Image.open(path) as image:
                return np.asarray(image.convert("RGB"))
    except DECODE_ERRORS as err:
        raise CorruptImageError(path, str(err) or type(err).__name__) from err
    except Image.DecompressionBombWarning as err:
        raise CorruptImageError(path, str(err)) from err


def check_image(path: Path, mode: str) -> str | None:
    """Return why `path` is unreadable under check `mode` ("header" or "full"), or None if it reads."""
    try:
        if mode == "full":
            read_rgb(path)
        else:
            with Image.open(path) as image:
                image.verify()
    except CorruptImageError as err:
        return err.reason
    except DECODE_ERRORS as err:
        return str(err) or type(err).__name__
    return None
