"""Pascal VOC detection data: ``root/{JPEGImages,Annotations,ImageSets/Main}``."""

from __future__ import annotations

import logging
import xml.etree.ElementTree as ET
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np
from PIL import Image

from cvkit.data.detection import DetectionDataModule, DetectionRecord
from cvkit.data.images import DECODE_ERRORS, is_image_file
from cvkit.errors import CvkitError

log = logging.getLogger(__name__)

LAYOUT = "ROOT/JPEGImages/<id>.jpg, ROOT/Annotations/<id>.xml and ROOT/ImageSets/Main/<split>.txt (one image id a line)"


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


class VOCDetectionDataModule(DetectionDataModule):
    """Detection data in the Pascal VOC layout (``root``: JPEGImages/, Annotations/*.xml and
    ImageSets/Main/<split>.txt listing image ids).

    ``train_split``/``val_split``/``test_split`` name the split files; the test split is optional (null,
    or no such file). ``class_names`` lists the classes in label order (label i is ``class_names[i - 1]``);
    when null they are the names found in the train split's annotations, sorted. An image's id is its
    position (1, 2, ...) among the sorted Annotations/*.xml names, the same in every split. VOC boxes are
    1-based and inclusive: as torchvision and detectron2 do, 1 is subtracted from xmin and ymin, so a box
    written ``xmin=1 xmax=640`` spans pixels 0..640. Boxes written with ``xmax <= xmin`` or
    ``ymax <= ymin`` are left out of training with a warning naming the file (they stay in ground truth).
    Difficult boxes are left out of training unless ``use_difficult``, and are ``iscrowd=1`` in ground
    truth, so evaluation ignores them as the VOC protocol does.
    """

    def __init__(
        self,
        *,
        root: str,
        class_names: Sequence[str] | None = None,
        train_split: str = "train",
        val_split: str = "val",
        test_split: str | None = "test",
        use_difficult: bool = False,
        **common: Any,
    ) -> None:
        super().__init__(**common)
        self.root = Path(root).expanduser()
        self.given_class_names = [str(name) for name in class_names] if class_names is not None else None
        if self.given_class_names is not None and len(set(self.given_class_names)) != len(self.given_class_names):
            raise CvkitError(f"data.class_names lists a class twice: {self.given_class_names}")
        self.split_names = {"train": train_split, "val": val_split, "test": test_split}
        self.use_difficult = use_difficult
        self.name = f"voc {self.root}"

    def describe(self) -> str:
        return f"VOC detection data at {self.root}"

    def load_splits(self) -> tuple[dict[str, list[DetectionRecord]], list[str]]:
        self._check_layout()
        ids = {split: self._read_split_file(split) for split in ("train", "val", "test")}
        ids = {split: found for split, found in ids.items() if found is not None}
        annotations = {}
        for image_id in sorted({image_id for found in ids.values() for image_id in found}):
            path = self.root / "Annotations" / f"{image_id}.xml"
            if not path.is_file():
                raise CvkitError(f"data.root: {path} is missing: the split files list image id {image_id!r}")
            annotations[image_id] = parse_voc_xml(path)
        class_names = self.given_class_names
        if class_names is None:
            class_names = sorted({obj.name for image_id in ids["train"] for obj in annotations[image_id].objects})
        images = self._image_paths()
        xml_files = sorted((self.root / "Annotations").glob("*.xml"))
        numbering = {xml.stem: number for number, xml in enumerate(xml_files, 1)}
        splits = {
            split: [self._record(annotations[i], images, numbering[i], class_names) for i in found]
            for split, found in ids.items()
        }
        return splits, class_names

    def _check_layout(self) -> None:
        if not self.root.is_dir():
            raise CvkitError(f"data.root: {self.root} does not exist or is not a folder; expected {LAYOUT}")
        for folder in ("JPEGImages", "Annotations", "ImageSets/Main"):
            if not (self.root / folder).is_dir():
                present = sorted(p.name for p in self.root.iterdir() if p.is_dir())
                raise CvkitError(
                    f"data.root: {self.root / folder} is missing (found folders {present}); expected {LAYOUT}"
                )

    def _read_split_file(self, split: str) -> list[str] | None:
        name = self.split_names[split]
        return None if name is None else read_split_file(self.root / "ImageSets" / "Main" / f"{name}.txt", split)

    def _image_paths(self) -> dict[str, Path]:
        found = {}
        for path in sorted((self.root / "JPEGImages").iterdir()):
            if is_image_file(path):
                found.setdefault(path.stem, path)
        return found

    def _record(
        self, annotation: VOCAnnotation, images: dict[str, Path], number: int, class_names: list[str]
    ) -> DetectionRecord:
        image_id = annotation.path.stem
        if image_id not in images:
            raise CvkitError(
                f"data.root: no image for id {image_id!r} in {self.root / 'JPEGImages'} "
                f"(expected {image_id}.jpg or another image extension); {annotation.path} exists"
            )
        width, height = annotation.width, annotation.height
        if width <= 0 or height <= 0:  # some VOC files say 0x0: ask the image header
            try:
                with Image.open(images[image_id]) as image:
                    width, height = image.size
            except DECODE_ERRORS as err:
                raise CvkitError(f"cannot read the size of {images[image_id]}: {err}") from err
        labels, boxes, train = [], [], []
        for obj in annotation.objects:
            if obj.name not in class_names:
                origin = "data.class_names" if self.given_class_names else "the train split's annotations"
                raise CvkitError(
                    f"{annotation.path}: class {obj.name!r} is not in {origin} {class_names}; "
                    "list every class in data.class_names"
                )
            xmin, ymin, xmax, ymax = obj.box
            empty = xmax <= xmin or ymax <= ymin
            if empty:
                self.box_problems.append(
                    f"{annotation.path}: {obj.name} box xmin={xmin:g} ymin={ymin:g} xmax={xmax:g} ymax={ymax:g} "
                    "is empty"
                )
            labels.append(class_names.index(obj.name) + 1)
            boxes.append((xmin - 1, ymin - 1, xmax, ymax))
            train.append(not empty and (self.use_difficult or not obj.difficult))
        difficult = [obj.difficult for obj in annotation.objects]
        return DetectionRecord(
            images[image_id], number, width, height, np.array(boxes), labels, difficult, np.array(train, bool)
        )


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
