"""The YOLO (Ultralytics) detection layout: a dataset YAML, image folders or lists, and one label file per image.

The dataset YAML, as Ultralytics users have it::

    path: ../datasets/cells   # root of the relative paths below (default: the YAML's folder)
    train: images/train       # a folder of images, a .txt file listing images (one a line), or a list of these
    val: images/val
    test: images/test         # optional
    names: {0: RBC, 1: WBC}   # or a list: [RBC, WBC]

Each image ``.../images/<sub>/<stem>.jpg`` has its labels in ``.../labels/<sub>/<stem>.txt`` (the last
``images`` folder of its path replaced by ``labels``): one object a line, ``class cx cy w h`` with the
centre and size as fractions of the image's width and height; a line of more values is a polygon
``class x1 y1 x2 y2 ...`` (a segmentation label), whose bounding box is used. No label file, or an empty
one, is an image without objects.
"""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np
import yaml

from cvkit.data.images import is_image_file
from cvkit.errors import CvkitError


@dataclass
class YOLODataset:
    """A parsed dataset YAML: the image files of each split and the class names (id order)."""

    yaml_path: Path
    root: Path
    splits: dict[str, list[Path]]
    names: list[str]


def class_names_of(names: Any, where: Path) -> list[str]:
    """``names`` as a list in id order: a list, or a mapping ``{0: a, 1: b}`` whose ids are 0..K-1."""
    if isinstance(names, list) and names:
        return [str(name) for name in names]
    if isinstance(names, dict) and names:
        try:
            ids = sorted(int(key) for key in names)
        except (TypeError, ValueError) as err:
            raise CvkitError(f"{where}: names has a key that is not a class id: {sorted(names, key=str)}") from err
        if ids != list(range(len(ids))):
            raise CvkitError(f"{where}: names must number the classes 0..{len(ids) - 1}, got ids {ids}")
        return [str(names[key]) for key in sorted(names, key=int)]
    raise CvkitError(f"{where}: names must list the classes (a list, or a mapping 0: name, 1: name, ...)")


def split_images(entry: Any, root: Path, where: str) -> list[Path]:
    """The image files an entry names: a folder (searched recursively), a .txt list, or a list of these."""
    if isinstance(entry, list):
        return [path for item in entry for path in split_images(item, root, where)]
    path = Path(str(entry)).expanduser()
    path = path if path.is_absolute() else root / path
    if path.is_dir():
        return sorted(p for p in path.rglob("*") if p.is_file() and is_image_file(p))
    if path.suffix == ".txt" and path.is_file():
        lines = [line.strip() for line in path.read_text().splitlines() if line.strip()]
        return [Path(line) if Path(line).is_absolute() else (root / line).resolve() for line in lines]
    raise CvkitError(f"{where}: {path} is neither a folder of images nor a .txt list of them")


def read_dataset_yaml(path: Path) -> YOLODataset:
    """Parse an Ultralytics dataset YAML; CvkitError naming the file and key for what is missing or wrong."""
    if not path.is_file():
        raise CvkitError(f"data.dataset: {path} does not exist (expected an Ultralytics dataset YAML)")
    try:
        spec = yaml.safe_load(path.read_text())
    except yaml.YAMLError as err:
        raise CvkitError(f"data.dataset: {path} is not valid YAML ({err})") from err
    if not isinstance(spec, dict):
        raise CvkitError(f"data.dataset: {path} must be a mapping with train, val and names")
    root = Path(str(spec.get("path") or "")).expanduser()
    root = root if root.is_absolute() else (path.parent / root).resolve()
    missing = [key for key in ("train", "val", "names") if not spec.get(key)]
    if missing:
        raise CvkitError(f"data.dataset: {path} has no {', '.join(missing)} (an Ultralytics dataset YAML needs them)")
    names = class_names_of(spec["names"], path)
    splits = {
        split: split_images(spec[split], root, f"{path}: {split}")
        for split in ("train", "val", "test")
        if spec.get(split)
    }
    return YOLODataset(path, root, splits, names)


def label_path(image: Path) -> Path:
    """Where an image's label file is: its path with the last ``images`` folder as ``labels``, suffix .txt."""
    parts = list(image.parts)
    if "images" in parts:
        position = len(parts) - 1 - parts[::-1].index("images")
        parts[position] = "labels"
    return Path(*parts).with_suffix(".txt")


def read_labels(path: Path, num_classes: int, width: int, height: int) -> tuple[np.ndarray, np.ndarray]:
    """(boxes [N, 4] xyxy in pixels, class ids [N] 0..K-1) of a label file (none if it does not exist).

    A line that is not ``class cx cy w h`` or ``class x1 y1 ... `` (numbers, at least 3 points), or whose class
    is not 0..K-1, is a CvkitError naming the file and line."""
    if not path.is_file():
        return np.zeros((0, 4)), np.zeros(0, np.int64)
    boxes, classes = [], []
    for number, line in enumerate(path.read_text().splitlines(), 1):
        fields = line.split()
        if not fields:
            continue
        try:
            values = [float(field) for field in fields]
        except ValueError as err:
            raise CvkitError(f"{path}:{number}: {line.strip()!r} is not numbers ('class cx cy w h')") from err
        if not (len(values) == 5 or (len(values) >= 7 and len(values) % 2 == 1)):
            raise CvkitError(
                f"{path}:{number}: {len(values)} values; expected 'class cx cy w h' (5) or a polygon "
                "'class x1 y1 x2 y2 x3 y3 ...'"
            )
        label = values[0]
        if label != int(label) or not 0 <= label < num_classes:
            raise CvkitError(
                f"{path}:{number}: class {fields[0]} is not one of the {num_classes} ids 0..{num_classes - 1} of names"
            )
        if len(values) == 5:
            cx, cy, w, h = values[1:]
            box = (cx - w / 2, cy - h / 2, cx + w / 2, cy + h / 2)
        else:
            xs, ys = values[1::2], values[2::2]
            box = (min(xs), min(ys), max(xs), max(ys))
        boxes.append(np.array(box) * (width, height, width, height))
        classes.append(int(label))
    return np.array(boxes).reshape(-1, 4), np.array(classes, np.int64)
