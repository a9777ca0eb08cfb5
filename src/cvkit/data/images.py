"""Reading image files, and telling a readable image from a corrupt one.

Complete JPEG and PNG files are decoded by OpenCV, which gives the same pixels as PIL (both use
libjpeg-turbo and libpng) in a third to a half of the time; every other file, and any file OpenCV
refuses or that looks cut short, is decoded by PIL, whose errors say what is wrong. Files are read as
stored: EXIF orientation is not applied, by either decoder.
"""

from __future__ import annotations

import io
import math
import os
import warnings
from pathlib import Path
from typing import Protocol

import cv2
import numpy as np
from PIL import Image, UnidentifiedImageError

from cvkit.errors import CvkitError

IMAGE_EXTENSIONS = (".jpg", ".jpeg", ".png", ".bmp", ".gif", ".tif", ".tiff", ".webp", ".ppm", ".pgm")
# Decoding failures PIL raises for empty, truncated, non-image or too large files.
DECODE_ERRORS = (OSError, UnidentifiedImageError, ValueError, SyntaxError, Image.DecompressionBombError)
# The first and last bytes of a complete JPEG (SOI ... EOI) and PNG (signature ... IEND chunk).
COMPLETE_FILES = ((b"\xff\xd8", b"\xff\xd9"), (b"\x89PNG\r\n\x1a\n", b"IEND\xaeB`\x82"))
RGB_AS_STORED = cv2.IMREAD_COLOR_RGB | cv2.IMREAD_IGNORE_ORIENTATION
# OpenCV's JPEG decode at 1/2, 1/4, 1/8 scale (in the DCT, so 2-8x less work), largest first.
REDUCED_JPEG = (
    (8, cv2.IMREAD_REDUCED_GRAYSCALE_8),
    (4, cv2.IMREAD_REDUCED_GRAYSCALE_4),
    (2, cv2.IMREAD_REDUCED_GRAYSCALE_2),
)


class StoredBytes(Protocol):
    """An encoded image kept somewhere other than in a file of its own (a shard: :mod:`cvkit.data.streaming`);
    ``str()`` names it in messages."""

    def read_bytes(self) -> bytes: ...


class CorruptImageError(CvkitError):
    """An image file that cannot be decoded: :attr:`path`, and :attr:`reason` (the decoder's words)."""

    def __init__(self, path: Path | str | StoredBytes, reason: str) -> None:
        super().__init__(
            f"cannot read image {path}: {reason}. Remove or replace the file, or set data.strict=false "
            "to skip unreadable images with a warning."
        )
        self.path = Path(str(path))
        self.reason = reason


def is_image_file(path: Path) -> bool:
    return path.suffix.lower() in IMAGE_EXTENSIONS and not path.name.startswith(".")


def stored_size(path: Path | str) -> tuple[int, int]:
    """``(width, height)`` of an image file from its header, as :func:`read_rgb` decodes it (EXIF orientation
    not applied). Raises what PIL raises for a file it cannot open (one of DECODE_ERRORS)."""
    with Image.open(path) as image:
        return image.size


def read_rgb(path: Path | str | StoredBytes, min_side: int | None = None) -> np.ndarray:
    """Decode an image file (or `path`'s stored bytes) to an HxWx3 uint8 RGB array; raises CorruptImageError if
    it cannot.

    With `min_side`, a JPEG whose shorter side is at least twice `min_side` is decoded at the smallest of
    1/2, 1/4 or 1/8 scale that keeps its shorter side at least `min_side` pixels (other files at full size).
    """
    try:
        # not isinstance(path, StoredBytes): a runtime Protocol check costs about 9 us, 5% of a small image's read
        data = Path(path).read_bytes() if isinstance(path, (str, os.PathLike)) else path.read_bytes()
    except OSError as err:
        raise CorruptImageError(path, str(err) or type(err).__name__) from err
    if looks_complete(data[:8], data[-8:]):
        try:
            image = cv2.imdecode(np.frombuffer(data, dtype=np.uint8), RGB_AS_STORED | reduction(data, min_side))
        except (cv2.error, *DECODE_ERRORS):  # e.g. over the pixel limit: PIL names the fault
            image = None
        # An image over PIL's decompression-bomb limit goes to PIL, which refuses it naming the limit (OpenCV's
        # own limit, 2**30 pixels, is far higher; its setting is process-wide, so cvkit leaves it to the host).
        if image is not None and image.shape[0] * image.shape[1] <= (Image.MAX_IMAGE_PIXELS or math.inf):
            return image
    return read_with_pil(path, data, min_side)


def looks_complete(head: bytes, tail: bytes) -> bool:
    """Whether a file that starts with `head` and ends with `tail` (8 bytes each) is whole as a JPEG or PNG file
    is (OpenCV decodes a cut-off JPEG without an error, filling the missing part with grey)."""
    return any(head.startswith(start) and tail.endswith(end) for start, end in COMPLETE_FILES)


def has_complete_ends(path: Path) -> bool:
    """Whether the first and last 8 bytes of `path` are those of a complete JPEG or PNG file."""
    with open(path, "rb") as file:
        head = file.read(8)
        file.seek(max(file.seek(0, os.SEEK_END) - 8, 0))
        return looks_complete(head, file.read(8))


def reduction(data: bytes, min_side: int | None) -> int:
    """OpenCV's flag for the reduced-size decode of JPEG `data` that `min_side` allows (0: full size)."""
    if min_side is None or not data.startswith(b"\xff\xd8"):
        return 0
    with Image.open(io.BytesIO(data)) as image:  # reads the header only
        shorter = min(image.size)
    return next((flag for scale, flag in REDUCED_JPEG if shorter // scale >= min_side), 0)


def read_with_pil(path: Path | str | StoredBytes, data: bytes, min_side: int | None) -> np.ndarray:
    """Decode `data` (the bytes of `path`) with PIL: any format it reads, and an error that names the fault."""
    try:
        with warnings.catch_warnings():
            warnings.simplefilter("error", Image.DecompressionBombWarning)
            with Image.open(io.BytesIO(data)) as image:
                if min_side is not None:
                    image.draft("RGB", (min_side, min_side))
                return np.asarray(image.convert("RGB"))
    except DECODE_ERRORS as err:
        raise CorruptImageError(path, str(err) or type(err).__name__) from err
    except Image.DecompressionBombWarning as err:
        raise CorruptImageError(path, str(err)) from err


def check_image(path: Path, mode: str) -> str | None:
    """Return why `path` is unreadable under check `mode` ("header" or "full"), or None if it reads.

    "header" passes a file that starts and ends as a complete JPEG or PNG does (16 bytes read); any other
    file must pass PIL's ``verify``."""
    try:
        if mode == "full":
            read_rgb(path)
        elif not has_complete_ends(path):
            with Image.open(path) as image:
                image.verify()
    except CorruptImageError as err:
        return err.reason
    except DECODE_ERRORS as err:
        return str(err) or type(err).__name__
    return None
