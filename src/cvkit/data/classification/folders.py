"""Image-folder classification data: ``root/{train,val[,test]}/<class>/<image>``."""

from __future__ import annotations

import logging
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path
from typing import Any

import numpy as np
from rich.progress import track

from cvkit.data.classification.datasets import FileImages
from cvkit.data.classification.module import ClassificationDataModule, Split
from cvkit.data.images import check_image, is_image_file
from cvkit.errors import CvkitError

log = logging.getLogger(__name__)

LAYOUT = "ROOT/train/<class>/<image>, ROOT/val/<class>/<image> and optionally ROOT/test/<class>/<image>"
VERIFY_MODES = ("none", "header", "full")


def scan_split(split_dir: Path, class_names: list[str] | None = None) -> tuple[list[Path], np.ndarray, list[str]]:
    """List the images of one split folder; class names come from its sub-folders unless given."""
    found = sorted(entry.name for entry in split_dir.iterdir() if entry.is_dir() and not entry.name.startswith("."))
    if not found:
        loose = sum(1 for entry in split_dir.iterdir() if entry.is_file() and is_image_file(entry))
        hint = f" ({loose} images lie directly in it)" if loose else ""
        raise CvkitError(f"data.root: {split_dir} has no class sub-folders{hint}; expected {LAYOUT}")
    if class_names is None:
        class_names = found
    elif unknown := sorted(set(found) - set(class_names)):
        raise CvkitError(
            f"data.root: {split_dir} has classes {unknown} that the train split does not have "
            f"(train classes: {class_names})"
        )
    paths, labels = [], []
    for label, name in enumerate(class_names):
        class_dir = split_dir / name
        files = (
            sorted(p for p in class_dir.rglob("*") if p.is_file() and is_image_file(p)) if class_dir.is_dir() else []
        )
        if not files:
            log.warning("%s: class %r has no images", split_dir, name)
        paths += files
        labels += [label] * len(files)
    return paths, np.asarray(labels, dtype=np.int64), class_names


def find_unreadable(paths: list[Path], mode: str, workers: int = 8) -> dict[Path, str]:
    """Check every file under `mode` ("header" or "full"); return the unreadable ones with the reason."""
    with ThreadPoolExecutor(max_workers=workers) as pool:
        results = track(
            pool.map(lambda path: check_image(path, mode), paths),
            total=len(paths),
            description=f"checking {len(paths)} images ({mode})",
            transient=True,
        )
        reasons = list(results)
    return {path: reason for path, reason in zip(paths, reasons) if reason is not None}


class ImageFolderDataModule(ClassificationDataModule):
    """Your own images in class folders, checked before training (``verify_images``)."""

    def __init__(
        self, *, root: str, verify_images: str = "header", decode_min_side: int | None = None, **common: Any
    ) -> None:
        super().__init__(**common)
        if verify_images not in VERIFY_MODES:
            raise CvkitError(f"data.verify_images={verify_images!r} is not one of {VERIFY_MODES}")
        if decode_min_side is not None and (not isinstance(decode_min_side, int) or decode_min_side <= 0):
            raise CvkitError(
                f"data.decode_min_side must be a positive number of pixels or null, got {decode_min_side!r}"
            )
        self.decode_min_side = decode_min_side
        self.root = Path(root).expanduser()
        self.verify_images = verify_images
        self.name = f"imagefolder {self.root}"
        self.skipped: dict[str, dict[Path, str]] = {}  # per split: the unreadable files left out, and why

    def describe(self) -> str:
        return f"imagefolder at {self.root}"

    def unreadable_at_load(self, split: str) -> list[str]:
        return [str(path) for path in self.skipped.get(split, {})]

    def load_splits(self) -> tuple[dict[str, Split], list[str]]:
        if not self.root.is_dir():
            raise CvkitError(f"data.root: {self.root} does not exist or is not a folder; expected {LAYOUT}")
        for required in ("train", "val"):
            if not (self.root / required).is_dir():
                present = sorted(p.name for p in self.root.iterdir() if p.is_dir())
                raise CvkitError(
                    f"data.root: {self.root / required} is missing (found folders {present}); expected {LAYOUT}"
                )
        splits: dict[str, Split] = {}
        class_names = None
        for split in ("train", "val", "test"):
            if split == "test" and not (self.root / split).is_dir():
                continue
            paths, labels, class_names = scan_split(self.root / split, class_names)
            if not paths:
                raise CvkitError(f"data.root: {self.root / split} contains no image files; expected {LAYOUT}")
            paths, labels = self._drop_unreadable(split, paths, labels)
            splits[split] = Split(FileImages(paths, self.decode_min_side), labels)
        return splits, class_names

    def _drop_unreadable(self, split: str, paths: list[Path], labels: np.ndarray) -> tuple[list[Path], np.ndarray]:
        if self.verify_images == "none":
            return paths, labels
        bad = find_unreadable(paths, self.verify_images)
        if not bad:
            return paths, labels
        listing = "\n".join(f"  {path}: {reason}" for path, reason in list(bad.items())[:20])
        more = f"\n  ... and {len(bad) - 20} more" if len(bad) > 20 else ""
        if self.strict:
            raise CvkitError(
                f"data: {len(bad)} unreadable image(s) and data.strict=true:\n{listing}{more}\n"
                "Remove or replace them, or set data.strict=false to skip them."
            )
        log.warning("skipping %d unreadable image(s) (data.strict=false):\n%s%s", len(bad), listing, more)
        self.skipped[split] = bad
        keep = [i for i, path in enumerate(paths) if path not in bad]
        return [paths[i] for i in keep], labels[keep]
