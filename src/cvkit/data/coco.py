"""COCO detection data: an image folder and a COCO instances JSON per split."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import numpy as np

from cvkit.data.detection import DetectionDataModule, DetectionRecord
from cvkit.errors import CvkitError

SPLITS = ("train", "val", "test")


def load_coco_json(path: Path, key: str) -> dict[str, Any]:
    """Read a COCO instances file; CvkitError naming `key` and the path when it is missing or malformed."""
    if not path.is_file():
        raise CvkitError(f"{key}: {path} does not exist; expected a COCO instances JSON file")
    try:
        content = json.loads(path.read_text())
    except (json.JSONDecodeError, UnicodeDecodeError) as err:
        raise CvkitError(f"{key}: {path} is not valid JSON ({err})") from err
    wanted = ("images", "annotations", "categories")
    if missing := [name for name in wanted if not isinstance(content, dict) or name not in content]:
        raise CvkitError(f"{key}: {path} has no {missing}; a COCO instances file has the lists {list(wanted)}")
    return content


def _field(entry: dict[str, Any], name: str, where: str) -> Any:
    if name not in entry:
        raise CvkitError(f"{where} has no {name!r}: {json.dumps(entry)[:200]}")
    return entry[name]


class CocoDetectionDataModule(DetectionDataModule):
    """Detection data in COCO format: ``<split>_images`` (a folder; each image's ``file_name`` is relative
    to it) and ``<split>_annotations`` (a COCO instances JSON) for train and val, and optionally test.

    Category ids (any integers, such as COCO's 1..90 with gaps) become labels 1..K in sorted id order, and
    :attr:`label_to_category` maps them back; the class names are the categories' names, from the train
    file. Crowd annotations (``iscrowd=1``) are left out of training and kept in :meth:`ground_truth`;
    images without annotations are kept. Image ids are the file's own.
    """

    def __init__(
        self,
        *,
        train_images: str,
        train_annotations: str,
        val_images: str,
        val_annotations: str,
        test_images: str | None = None,
        test_annotations: str | None = None,
        **common: Any,
    ) -> None:
        super().__init__(**common)
        if (test_images is None) != (test_annotations is None):
            raise CvkitError(
                "data.test_images and data.test_annotations go together: give both for a test split, or neither "
                f"(got test_images={test_images!r}, test_annotations={test_annotations!r})"
            )
        given = {
            "train": (train_images, train_annotations),
            "val": (val_images, val_annotations),
            "test": (test_images, test_annotations),
        }
        self.paths = {split: (Path(i).expanduser(), Path(a).expanduser()) for split, (i, a) in given.items() if i}
        self.name = f"coco {self.paths['train'][1]}"

    def describe(self) -> str:
        return f"COCO detection data ({self.paths['train'][1]})"

    def load_splits(self) -> tuple[dict[str, list[DetectionRecord]], list[str]]:
        contents = {split: load_coco_json(path, f"data.{split}_annotations") for split, (_, path) in self.paths.items()}
        train_file = self.paths["train"][1]
        categories = {}
        for entry in contents["train"]["categories"]:
            categories[int(_field(entry, "id", f"{train_file} category"))] = str(_field(entry, "name", f"{train_file}"))
        if not categories:
            raise CvkitError(f"data.train_annotations: {train_file} lists no categories")
        self.label_to_category = sorted(categories)
        splits = {split: self._records(split, content) for split, content in contents.items()}
        return splits, [categories[category] for category in self.label_to_category]

    def _records(self, split: str, content: dict[str, Any]) -> list[DetectionRecord]:
        images_dir, path = self.paths[split]
        if not images_dir.is_dir():
            raise CvkitError(f"data.{split}_images: {images_dir} does not exist or is not a folder")
        label_of = {category: label for label, category in enumerate(self.label_to_category, 1)}
        own = {int(_field(entry, "id", f"{path} category")) for entry in content["categories"]}
        if unknown := sorted(own - set(label_of)):
            raise CvkitError(
                f"data.{split}_annotations: {path} has categories {unknown} that the train file "
                f"{self.paths['train'][1]} does not (it has {self.label_to_category})"
            )
        images: dict[int, dict[str, Any]] = {}
        for entry in content["images"]:
            image_id = _field(entry, "id", f"{path} image")
            if image_id in images:
                raise CvkitError(f"data.{split}_annotations: {path} lists image id {image_id} twice")
            images[image_id] = entry
        objects: dict[int, list[dict[str, Any]]] = {image_id: [] for image_id in images}
        for entry in content["annotations"]:
            where = f"{path} annotation {entry.get('id', '?')}"
            image_id, category = _field(entry, "image_id", where), _field(entry, "category_id", where)
            if image_id not in images:
                raise CvkitError(f"data.{split}_annotations: {where} refers to image {image_id}, not in its images")
            if category not in label_of:
                raise CvkitError(
                    f"data.{split}_annotations: {where} has category_id {category}; the categories are "
                    f"{self.label_to_category}"
                )
            bbox = _field(entry, "bbox", where)
            if not isinstance(bbox, list) or len(bbox) != 4:
                raise CvkitError(f"data.{split}_annotations: {where} has bbox {bbox!r}; expected [x, y, width, height]")
            objects[image_id].append(entry)
        records = [self._record(path, images_dir, entry, objects[i], label_of) for i, entry in images.items()]
        if missing := [str(record.path) for record in records if not record.path.is_file()][:5]:
            raise CvkitError(f"data.{split}_images: {path} lists images that do not exist, such as {missing}")
        return records

    @staticmethod
    def _record(
        path: Path, images_dir: Path, image: dict[str, Any], objects: list[dict[str, Any]], label_of: dict[int, int]
    ) -> DetectionRecord:
        where = f"{path} image {image.get('id')}"
        boxes = np.array([entry["bbox"] for entry in objects], dtype=np.float64).reshape(-1, 4)
        boxes[:, 2:] += boxes[:, :2]
        crowd = np.array([bool(entry.get("iscrowd", 0)) for entry in objects], dtype=bool)
        areas = [entry.get("area", entry["bbox"][2] * entry["bbox"][3]) for entry in objects]
        return DetectionRecord(
            path=images_dir / _field(image, "file_name", where),
            image_id=image["id"],
            width=int(_field(image, "width", where)),
            height=int(_field(image, "height", where)),
            boxes=boxes,
            labels=[label_of[entry["category_id"]] for entry in objects],
            iscrowd=crowd,
            train=~crowd,
            areas=np.array(areas, dtype=np.float64),
            file_name=image["file_name"],
        )
