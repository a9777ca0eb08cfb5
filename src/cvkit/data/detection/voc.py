"""Pascal VOC detection data: ``root/{JPEGImages,Annotations,ImageSets/Main}``."""

from __future__ import annotations

from collections.abc import Sequence
from pathlib import Path
from typing import Any

import numpy as np

from cvkit.data.detection.module import DetectionDataModule, DetectionRecord
from cvkit.data.formats.voc import VOCAnnotation, check_layout, images_by_id, parse_voc_xml, read_split_ids
from cvkit.data.images import DECODE_ERRORS, stored_size
from cvkit.errors import CvkitError

LAYOUT = "ROOT/JPEGImages/<id>.jpg, ROOT/Annotations/<id>.xml and ROOT/ImageSets/Main/<split>.txt (one image id a line)"


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
        check_layout(self.root, ("JPEGImages", "Annotations", "ImageSets/Main"), LAYOUT)
        ids = {split: read_split_ids(self.root, "Main", split, name) for split, name in self.split_names.items()}
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
        images = images_by_id(self.root / "JPEGImages")
        xml_files = sorted((self.root / "Annotations").glob("*.xml"))
        numbering = {xml.stem: number for number, xml in enumerate(xml_files, 1)}
        splits = {
            split: [self._record(annotations[i], images, numbering[i], class_names) for i in found]
            for split, found in ids.items()
        }
        return splits, class_names

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
                width, height = stored_size(images[image_id])
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
