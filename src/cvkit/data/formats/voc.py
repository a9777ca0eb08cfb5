"""The Pascal VOC layout, shared by VOC detection and VOC segmentation: the annotation XML files, the
split files listing image ids, the image folder, and the check that the layout's folders exist.

A VOC root holds ``JPEGImages/<id>.jpg``, ``ImageSets/<task>/<split>.txt`` (one image id a line) and, per
task, ``Annotations/<id>.xml`` (detection) or ``SegmentationClass/<id>.png`` (segmentation).
"""

from __future__ import annotations

import logging
import xml.etree.ElementTree as ET
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path

from cvkit.data.images import is_image_file
from cvkit.errors import CvkitError

log = logging.getLogger(__name__)


@dataclass
class VOCObject:
    name: str
    box: tuple[float, float, float, float]  # xmin, ymin, xmax, ymax as written (1-based, inclusive)
    difficult: bool


@dataclass
class VOCAnnotation:
    path: Path
    width: int  # 0 when the file does not say
    height: int
    objects: list[VOCObject]


def _text(element: ET.Element, tag: str, where: str) -> str:
    child = element.find(tag)
    if child is None or child.text is None or not child.text.strip():
        raise CvkitError(f"{where} has no <{tag}>")
    return child.text.strip()


def _number(element: ET.Element, tag: str, where: str) -> float:
    text = _text(element, tag, where)
    try:
        return float(text)
    except ValueError as err:
        raise CvkitError(f"{where}: <{tag}> is {text!r}, not a number") from err


def parse_voc_xml(path: Path) -> VOCAnnotation:
    """Read one VOC annotation file; CvkitError naming the file and element if it is malformed."""
    try:
        root = ET.parse(path).getroot()
    except ET.ParseError as err:
        raise CvkitError(f"{path}: malformed XML ({err}); expected a VOC <annotation> file") from err
    size = root.find("size")
    width = height = 0
    if size is not None and size.find("width") is not None:
        width, height = int(_number(size, "width", f"{path} <size>")), int(_number(size, "height", f"{path} <size>"))
    objects = []
    for position, element in enumerate(root.findall("object")):
        where = f"{path} <object> #{position}"
        box_element = element.find("bndbox")
        if box_element is None:
            raise CvkitError(f"{where} has no <bndbox>")
        box = tuple(_number(box_element, tag, f"{where} <bndbox>") for tag in ("xmin", "ymin", "xmax", "ymax"))
        difficult = element.find("difficult")
        is_difficult = difficult is not None and (difficult.text or "0").strip() not in ("0", "")
        objects.append(VOCObject(_text(element, "name", where), box, is_difficult))
    return VOCAnnotation(path, width, height, objects)


def read_split_file(path: Path, split: str) -> list[str] | None:
    """The image ids listed in a VOC split file (``ImageSets/<task>/<name>.txt``), one a line; None for
    a test split without its file (the test split is optional), an error naming the others otherwise."""
    if not path.is_file():
        if split == "test":
            log.info("no test split (%s does not exist)", path)
            return None
        available = sorted(p.stem for p in path.parent.glob("*.txt"))
        raise CvkitError(f"data.{split}_split: {path} does not exist; split files there: {available}")
    # a line may carry a second column (VOC's per-class files: "<id> 1"); the id is the first word
    return [line.split()[0] for line in path.read_text().splitlines() if line.strip()]


def check_layout(root: Path, folders: Sequence[str], layout: str) -> None:
    """CvkitError naming ``data.root`` when `root` or one of its `folders` is missing; `layout` says what is
    expected."""
    if not root.is_dir():
        raise CvkitError(f"data.root: {root} does not exist or is not a folder; expected {layout}")
    for folder in folders:
        if not (root / folder).is_dir():
            present = sorted(p.name for p in root.iterdir() if p.is_dir())
            raise CvkitError(f"data.root: {root / folder} is missing (found folders {present}); expected {layout}")


def images_by_id(folder: Path) -> dict[str, Path]:
    """The image files of a ``JPEGImages`` folder by image id (the file stem; the first extension in sorted
    order wins)."""
    found: dict[str, Path] = {}
    for path in sorted(folder.iterdir()):
        if is_image_file(path):
            found.setdefault(path.stem, path)
    return found


def read_split_ids(root: Path, task_folder: str, split: str, name: str | None) -> list[str] | None:
    """The ids of split file `name` (config ``data.<split>_split``) under ``ImageSets/<task_folder>``; None
    for no file name, or a test split without its file."""
    return None if name is None else read_split_file(root / "ImageSets" / task_folder / f"{name}.txt", split)
