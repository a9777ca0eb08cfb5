"""The real datasets under the data root (``--data-root`` / CVKIT_DATA), what the tests know of them, and small
copies of them that tests build (and damage) in their temporary folders."""

from __future__ import annotations

import json
import shutil
from pathlib import Path

import pytest


def dataset(data_root: Path, name: str, marker: str, what: str) -> Path:
    """The real dataset `name` under the data root, or a skip that says which is missing."""
    path = data_root / name
    if not (path / marker).is_dir():
        pytest.skip(f"{path} ({what}) not found under the data root")
    return path


# CamVid (SegNet's copy): 11 classes; its masks mark unlabelled pixels with 11.
CAMVID_CLASSES = [
    "Sky", "Building", "Pole", "Road", "Pavement", "Tree", "SignSymbol", "Fence", "Car", "Pedestrian", "Bicyclist",
]  # fmt: skip
CAMVID_IGNORE = 11
IMAGENET_MEAN, IMAGENET_STD = [0.485, 0.456, 0.406], [0.229, 0.224, 0.225]
# The training size of the segmentation data-module tests ([height, width]), and the transform to it.
SEGMENTATION_TEST_SIZE = [48, 64]
RESIZE_TO_TEST_SIZE = [
    {"_target_": "albumentations.Resize", "height": SEGMENTATION_TEST_SIZE[0], "width": SEGMENTATION_TEST_SIZE[1]}
]


def make_folder(bccd_cells: Path, root: Path, per_class: int = 6, splits=("train", "val")) -> Path:
    """A small image folder (``root/split/class/*.jpg``) of the first `per_class` real BCCD cell crops."""
    for split in splits:
        for class_dir in sorted((bccd_cells / split).iterdir()):
            target = root / split / class_dir.name
            target.mkdir(parents=True)
            for image in sorted(class_dir.iterdir())[:per_class]:
                shutil.copy(image, target / image.name)
    return root


def corrupt_files(folder: Path, real: Path) -> dict[str, Path]:
    """Three unreadable images in `folder`: an empty file, a text file and `real` cut to a third."""
    files = {"empty": folder / "empty.jpg", "text": folder / "notes.png", "truncated": folder / "cut.jpg"}
    files["empty"].write_bytes(b"")
    files["text"].write_text("not an image")
    files["truncated"].write_bytes(real.read_bytes()[: real.stat().st_size // 3])
    return files


def voc_subset(bccd_voc: Path, root: Path, ids: list[str], splits=("train", "val")) -> Path:
    """A VOC folder at `root` whose `splits` all list `ids`; its images and annotations are links to the real
    set's folders (read, never written)."""
    (root / "ImageSets" / "Main").mkdir(parents=True)
    for folder in ("JPEGImages", "Annotations"):
        (root / folder).symlink_to(bccd_voc / folder, target_is_directory=True)
    for split in splits:
        (root / "ImageSets" / "Main" / f"{split}.txt").write_text("".join(f"{image_id}\n" for image_id in ids))
    return root


def coco_subset(coco128: Path, path: Path, image_ids: list[int], all_categories: bool = True) -> Path:
    """A COCO instances file at `path` with the real coco128 file's entries of `image_ids` (in that order), the
    annotations of those images and all its categories (or only theirs); its images stay in the real folder."""
    content = json.loads((coco128 / "annotations" / "instances_train2017.json").read_text())
    images = {image["id"]: image for image in content["images"]}
    chosen = set(image_ids)
    subset = {
        **content,
        "images": [images[image_id] for image_id in image_ids],
        "annotations": [a for a in content["annotations"] if a["image_id"] in chosen],
    }
    if not all_categories:
        used = {a["category_id"] for a in subset["annotations"]}
        subset["categories"] = [c for c in content["categories"] if c["id"] in used]
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text(json.dumps(subset))
    return path
