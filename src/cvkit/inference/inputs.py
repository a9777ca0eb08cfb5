"""The images a prediction runs on: a file, a folder (recursively) or a glob, read in loader workers."""

from __future__ import annotations

import glob
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import torch
from torch.utils.data import Dataset

from cvkit.data.images import IMAGE_EXTENSIONS, CorruptImageError, is_image_file, read_rgb
from cvkit.errors import CvkitError


def find_images(spec: str) -> tuple[list[Path], Path]:
    """The image files `spec` names, sorted, and the folder their output names are relative to: an image
    file (its folder), a folder searched recursively (the folder), or a glob pattern such as
    ``photos/**/*.jpg`` (the folder before its first wildcard)."""
    path = Path(spec).expanduser()
    if path.is_file():
        return [path], path.parent
    if path.is_dir():
        files, base = [p for p in path.rglob("*") if p.is_file() and is_image_file(p)], path
    elif glob.has_magic(spec):
        files = [Path(p) for p in glob.glob(str(path), recursive=True) if is_image_file(Path(p)) and Path(p).is_file()]
        first_wildcard = next(i for i, part in enumerate(path.parts) if glob.has_magic(part))
        base = Path(*path.parts[:first_wildcard])
    else:
        raise CvkitError(f"input={spec}: no such file or folder (give an image, a folder or a glob pattern)")
    if not files:
        raise CvkitError(f"input={spec}: no image files found (looked for {', '.join(IMAGE_EXTENSIONS)})")
    return sorted(files), base


@dataclass
class PreparedImage:
    """One input file: the model input and original (height, width), or why it could not be read."""

    index: int
    tensor: torch.Tensor | None
    size: tuple[int, int] | None
    image: np.ndarray | None  # the decoded RGB image, when kept for drawing
    problem: str | None = None


class PreparedImages(Dataset):
    """Files decoded and prepared for the model (in loader workers); unreadable ones are reported, not raised."""

    def __init__(self, paths: list[Path], prepare: Callable[[np.ndarray], torch.Tensor], keep_image: bool) -> None:
        self.paths = paths
        self.prepare = prepare
        self.keep_image = keep_image

    def __len__(self) -> int:
        return len(self.paths)

    def __getitem__(self, index: int) -> PreparedImage:
        try:
            image = read_rgb(self.paths[index])
        except CorruptImageError as err:
            return PreparedImage(index, None, None, None, err.reason)
        kept = image if self.keep_image else None
        return PreparedImage(index, self.prepare(image), image.shape[:2], kept)
