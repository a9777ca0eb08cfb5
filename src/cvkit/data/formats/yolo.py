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
``class x1 y1 x2 y2 ...`` (a segmentation label), whose bounding box is used for detection
(:func:`read_labels`). Segmentation datasets (:func:`read_polygons`) have a polygon line for every object, its
points fractions of the image size too. No label file, or an empty one, is an image without objects.
"""

from __future__ import annotations

from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np
import yaml

from cvkit.data.formats.coco import POLYGON_TOLERANCE
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


def label_lines(path: Path, num_classes: int) -> Iterator[tuple[str, int, list[float]]]:
    """``(where, class id, coordinates)`` of each object line of a label file (none if it does not exist),
    `where` being its ``file:line``; a line that is not numbers, or whose class is not 0..K-1, is a CvkitError
    naming it."""
    if not path.is_file():
        return
    for number, line in enumerate(path.read_text().splitlines(), 1):
        fields = line.split()
        if not fields:
            continue
        where = f"{path}:{number}"
        try:
            values = [float(field) for field in fields]
        except ValueError as err:
            raise CvkitError(
                f"{where}: {line.strip()!r} is not numbers ('class cx cy w h' or 'class x1 y1 ...')"
            ) from err
        if not (values[0].is_integer() and 0 <= values[0] < num_classes):
            raise CvkitError(
                f"{where}: class {fields[0]} is not one of the {num_classes} ids 0..{num_classes - 1} of names"
            )
        yield where, int(values[0]), values[1:]


def read_labels(path: Path, num_classes: int, width: int, height: int) -> tuple[np.ndarray, np.ndarray]:
    """(boxes [N, 4] xyxy in pixels, class ids [N] 0..K-1) of a label file (none if it does not exist).

    A line that is not ``class cx cy w h`` or ``class x1 y1 ... `` (numbers, at least 3 points), or whose class
    is not 0..K-1, is a CvkitError naming the file and line."""
    boxes, classes = [], []
    for where, label, coordinates in label_lines(path, num_classes):
        if len(coordinates) == 4:
            cx, cy, w, h = coordinates
            box = (cx - w / 2, cy - h / 2, cx + w / 2, cy + h / 2)
        elif len(coordinates) >= 6 and len(coordinates) % 2 == 0:
            xs, ys = coordinates[0::2], coordinates[1::2]
            box = (min(xs), min(ys), max(xs), max(ys))
        else:
            raise CvkitError(
                f"{where}: {len(coordinates) + 1} values; expected 'class cx cy w h' (5) or a polygon "
                "'class x1 y1 x2 y2 x3 y3 ...'"
            )
        boxes.append(np.array(box) * (width, height, width, height))
        classes.append(label)
    return np.array(boxes).reshape(-1, 4), np.array(classes, np.int64)


def read_polygons(path: Path, num_classes: int, width: int, height: int) -> tuple[list[np.ndarray], np.ndarray]:
    """(polygons, one float64 [P, 2] array of (x, y) pixels per object; class ids [N] 0..K-1) of a segmentation
    label file (none if it does not exist), whose lines are ``class x1 y1 x2 y2 x3 y3 ...``.

    A box line, a polygon of fewer than 3 points, or a point outside 0..1 by more than
    :data:`~cvkit.data.formats.coco.POLYGON_TOLERANCE` pixels is a CvkitError naming the file and line; points
    within the tolerance are moved onto the image's border."""
    polygons, classes = [], []
    tolerance = POLYGON_TOLERANCE / np.array([width, height])
    for where, label, coordinates in label_lines(path, num_classes):
        if len(coordinates) == 4:
            raise CvkitError(
                f"{where}: 'class cx cy w h' is a box, and instance segmentation needs a mask: a polygon "
                "'class x1 y1 x2 y2 x3 y3 ...' (at least 3 points) per object (boxes alone: task=detection data=yolo)"
            )
        if len(coordinates) < 6 or len(coordinates) % 2:
            raise CvkitError(
                f"{where}: {len(coordinates)} coordinate(s) after the class; a polygon is at least 3 (x, y) points, "
                "'class x1 y1 x2 y2 x3 y3 ...'"
            )
        points = np.array(coordinates).reshape(-1, 2)
        if not ((points >= -tolerance) & (points <= 1 + tolerance)).all():
            (x0, y0), (x1, y1) = points.min(axis=0), points.max(axis=0)
            raise CvkitError(
                f"{where}: polygon points reach x {x0:g}..{x1:g}, y {y0:g}..{y1:g}; YOLO coordinates are fractions "
                "of the image's width and height, 0..1"
            )
        polygons.append(points.clip(0, 1) * (width, height))
        classes.append(label)
    return polygons, np.array(classes, np.int64)
