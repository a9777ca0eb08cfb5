"""Reading COCO instances files: an image folder and a JSON per split, checked entry by entry, and the
``segmentation`` of an annotation (polygons or RLE) checked and decoded.

Shared by the COCO detection, segmentation and instance-segmentation data modules; each adds the checks of
the annotation field it reads (``bbox``, ``segmentation``).
"""

from __future__ import annotations

import json
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np
from pycocotools import mask as mask_utils

from cvkit.errors import CvkitError


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


def field(entry: dict[str, Any], name: str, where: str) -> Any:
    """``entry[name]``, or a CvkitError saying `where` the entry without it is."""
    if name not in entry:
        raise CvkitError(f"{where} has no {name!r}: {json.dumps(entry)[:200]}")
    return entry[name]


def split_files(
    train: tuple[str, str], val: tuple[str, str], test: tuple[str | None, str | None]
) -> dict[str, tuple[Path, Path]]:
    """The (image folder, annotation file) of each split given; the test split is optional, but its two
    paths go together."""
    if (test[0] is None) != (test[1] is None):
        raise CvkitError(
            "data.test_images and data.test_annotations go together: give both for a test split, or neither "
            f"(got test_images={test[0]!r}, test_annotations={test[1]!r})"
        )
    given = {"train": train, "val": val, "test": test}
    return {split: (Path(i).expanduser(), Path(a).expanduser()) for split, (i, a) in given.items() if i}


def read_categories(content: dict[str, Any], path: Path) -> dict[int, str]:
    """The category names of a COCO file by id, in sorted id order."""
    categories = {}
    for entry in content["categories"]:
        categories[int(field(entry, "id", f"{path} category"))] = str(field(entry, "name", f"{path} category"))
    if not categories:
        raise CvkitError(f"data.train_annotations: {path} lists no categories")
    return dict(sorted(categories.items()))


@dataclass
class CocoImage:
    """One image entry of a COCO file and the annotations that refer to it."""

    path: Path  # the image file: the split's image folder / file_name
    entry: dict[str, Any]
    annotations: list[dict[str, Any]]

    @property
    def id(self) -> Any:
        return self.entry["id"]

    @property
    def size(self) -> tuple[int, int]:
        """(height, width) as the file gives them."""
        where = f"image {self.id}"
        return int(field(self.entry, "height", where)), int(field(self.entry, "width", where))


def read_split(
    split: str, content: dict[str, Any], files: tuple[Path, Path], train_categories: dict[int, str]
) -> list[CocoImage]:
    """The images of one split with their annotations, checked: image ids unique, every annotation on a
    listed image and of a train category, every image file present."""
    images_dir, path = files
    key = f"data.{split}_annotations"
    if not images_dir.is_dir():
        raise CvkitError(f"data.{split}_images: {images_dir} does not exist or is not a folder")
    own = {int(field(entry, "id", f"{path} category")) for entry in content["categories"]}
    if unknown := sorted(own - set(train_categories)):
        raise CvkitError(
            f"{key}: {path} has categories {unknown} that the train file does not (it has {list(train_categories)})"
        )
    images: dict[Any, CocoImage] = {}
    for entry in content["images"]:
        image_id = field(entry, "id", f"{path} image")
        if image_id in images:
            raise CvkitError(f"{key}: {path} lists image id {image_id} twice")
        images[image_id] = CocoImage(images_dir / field(entry, "file_name", f"{path} image {image_id}"), entry, [])
    for entry in content["annotations"]:
        where = f"{path} annotation {entry.get('id', '?')}"
        image_id, category = field(entry, "image_id", where), field(entry, "category_id", where)
        if image_id not in images:
            raise CvkitError(f"{key}: {where} refers to image {image_id}, not in its images")
        if category not in train_categories:
            raise CvkitError(f"{key}: {where} has category_id {category}; the categories are {list(train_categories)}")
        images[image_id].annotations.append(entry)
    if missing := [str(image.path) for image in images.values() if not image.path.is_file()][:5]:
        raise CvkitError(f"data.{split}_images: {path} lists images that do not exist, such as {missing}")
    return list(images.values())


class CocoFiles:
    """Mixin of the COCO data modules: the ``<split>_images`` folder and ``<split>_annotations`` file of
    train, val and optionally test (as :attr:`paths`), read and checked by :meth:`read_files`."""

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
        self.paths = split_files(
            (train_images, train_annotations), (val_images, val_annotations), (test_images, test_annotations)
        )

    def read_files(self) -> tuple[dict[str, list[CocoImage]], dict[int, str]]:
        """The images of each split with their annotations, and the train file's categories by id."""
        contents = {split: load_coco_json(path, f"data.{split}_annotations") for split, (_, path) in self.paths.items()}
        categories = read_categories(contents["train"], self.paths["train"][1])
        images = {
            split: read_split(split, content, self.paths[split], categories) for split, content in contents.items()
        }
        return images, categories


Segmentation = list[list[float]] | dict[str, Any]  # polygons, or an RLE (counts a list or a string)
# How far (pixels) a polygon point may lie outside its image: annotation tools round, COCO's own files do not.
POLYGON_TOLERANCE = 1.0


def check_segmentation(segmentation: Any, height: int, width: int, where: str, needed_by: str, boxes_only: str) -> None:
    """CvkitError saying `where` when `segmentation` is not COCO polygons of at least 3 points inside the image
    (give or take :data:`POLYGON_TOLERANCE` pixels) nor an RLE of the image's size; `needed_by` (e.g.
    ``data=coco_seg``) is what needs it, `boxes_only` what reads boxes alone."""
    expected = 'polygons [[x1, y1, x2, y2, x3, y3, ...], ...] or an RLE {"counts": ..., "size": [height, width]}'
    if segmentation is None or segmentation == []:
        raise CvkitError(f"{where} has no segmentation; {needed_by} needs {expected} (boxes alone: {boxes_only})")
    if isinstance(segmentation, list):
        for polygon in segmentation:
            check_polygon(polygon, height, width, where, expected)
    elif isinstance(segmentation, dict) and {"counts", "size"} <= segmentation.keys():
        if list(segmentation["size"]) != [height, width]:
            raise CvkitError(
                f"{where} has an RLE of size {segmentation['size']}, but its image is {height}x{width} "
                "(height x width) in the file's images"
            )
    else:
        raise CvkitError(f"{where} has segmentation {json.dumps(segmentation)[:80]}; expected {expected}")


def check_polygon(polygon: Any, height: int, width: int, where: str, expected: str) -> None:
    """CvkitError saying `where` when `polygon` is not a flat list of at least 3 (x, y) points inside the
    `width` x `height` image."""
    numbers = isinstance(polygon, list) and all(isinstance(v, int | float) for v in polygon)
    if not numbers or len(polygon) % 2:
        raise CvkitError(f"{where} has a polygon {json.dumps(polygon)[:80]}; expected {expected}")
    if len(polygon) < 6:
        raise CvkitError(
            f"{where} has a polygon of {len(polygon) // 2} point(s) {json.dumps(polygon)[:80]}; a polygon needs "
            "at least 3 (x, y) points"
        )
    xs, ys = polygon[0::2], polygon[1::2]
    if (
        min(xs) < -POLYGON_TOLERANCE
        or min(ys) < -POLYGON_TOLERANCE
        or max(xs) > width + POLYGON_TOLERANCE
        or (max(ys) > height + POLYGON_TOLERANCE)
    ):
        raise CvkitError(
            f"{where} has a polygon reaching ({min(xs):g}..{max(xs):g}, {min(ys):g}..{max(ys):g}) in x and y, "
            f"outside its {width}x{height} image (width x height); polygon points are pixels of the image"
        )


def decode_segmentation(segmentation: Segmentation, height: int, width: int) -> np.ndarray:
    """The region of one annotation as a bool [height, width] array (what pycocotools' annToMask does)."""
    if isinstance(segmentation, list):
        if not segmentation:
            return np.zeros((height, width), dtype=bool)
        rle = mask_utils.merge(mask_utils.frPyObjects(segmentation, height, width))
    elif isinstance(segmentation["counts"], list):
        rle = mask_utils.frPyObjects(segmentation, height, width)
    else:
        rle = segmentation
    return mask_utils.decode(rle).astype(bool)
