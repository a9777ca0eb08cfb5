"""``cvkit-data convert``: a detection dataset, as any cvkit data module reads it, written in the COCO, VOC or
YOLO layout, images included, so that the written folder reads back through ``data=coco|voc|yolo``; instance
segmentation data, written in the COCO or YOLO layout, reads back through ``data=coco_instances|yolo_seg``.

The folder is written beside its destination and renamed into place when complete: a failed conversion
leaves nothing half-written. What a layout cannot hold is said, not lost silently: YOLO has no crowd or
difficult flag (such boxes are left out), no box beyond the image (boxes are clipped to it; a box with
no area inside is left out) and one polygon per object (:func:`yolo_polygon`); VOC holds no masks.
"""

from __future__ import annotations

import json
import os
import shutil
import xml.etree.ElementTree as ET
from collections.abc import Callable
from pathlib import Path

import cv2
import numpy as np
from scipy.spatial import cKDTree

from cvkit.data.detection.module import DetectionDataModule, DetectionRecord, clip_boxes
from cvkit.data.formats.coco import Segmentation, decode_segmentation
from cvkit.errors import CvkitError


def unique_names(datamodule: DetectionDataModule) -> dict[Path, str]:
    """A file name for each image of every split, unique by stem (VOC names an image by its stem): the
    source name, or ``<stem>_<n><suffix>`` where two different images share a stem."""
    names: dict[Path, str] = {}
    taken: set[str] = set()
    for records in datamodule.splits.values():
        for record in records:
            if record.path in names:
                continue
            stem, number = record.path.stem, 1
            while stem in taken:
                stem, number = f"{record.path.stem}_{number}", number + 1
            taken.add(stem)
            names[record.path] = stem + record.path.suffix
    return names


def number(value: float) -> str:
    """`value` as written in a VOC file: an integer when it is one, otherwise exactly (repr)."""
    return str(int(value)) if float(value).is_integer() else repr(float(value))


def write_coco(
    datamodule: DetectionDataModule, out: Path, place: Callable[[Path, Path], None], final: Path
) -> list[str]:
    """``out/images/<split>/`` and ``out/annotations/instances_<split>.json`` (COCO instances files with the
    source's category ids, crowd and difficult boxes as ``iscrowd=1``; for instance data, each object's
    ``segmentation`` as read and its mask ``area``, those of :meth:`~DetectionDataModule.ground_truth`)."""
    names = unique_names(datamodule)
    (out / "annotations").mkdir(parents=True)
    for split, records in datamodule.splits.items():
        (out / "images" / split).mkdir(parents=True)
        for record in records:
            place(record.path, out / "images" / split / names[record.path])
        content = datamodule.ground_truth(split)
        for entry, record in zip(content["images"], records):
            entry["file_name"] = names[record.path]
        (out / "annotations" / f"instances_{split}.json").write_text(json.dumps(content))
    return []


def voc_xml(record: DetectionRecord, file_name: str, class_names: list[str]) -> ET.ElementTree:
    """The VOC annotation of `record`: 1-based inclusive boxes (``xmin + 1``, as cvkit's reader subtracts 1),
    crowd boxes marked difficult."""
    root = ET.Element("annotation")
    ET.SubElement(root, "filename").text = file_name
    size = ET.SubElement(root, "size")
    for tag, value in (("width", record.width), ("height", record.height), ("depth", 3)):
        ET.SubElement(size, tag).text = str(value)
    for box, label, crowd in zip(record.boxes, record.labels, record.iscrowd):
        element = ET.SubElement(root, "object")
        ET.SubElement(element, "name").text = class_names[label - 1]
        ET.SubElement(element, "difficult").text = str(int(crowd))
        bndbox = ET.SubElement(element, "bndbox")
        for tag, value in zip(("xmin", "ymin", "xmax", "ymax"), (box[0] + 1, box[1] + 1, box[2], box[3])):
            ET.SubElement(bndbox, tag).text = number(value)
    ET.indent(root)
    return ET.ElementTree(root)


def write_voc(
    datamodule: DetectionDataModule, out: Path, place: Callable[[Path, Path], None], final: Path
) -> list[str]:
    """``out/JPEGImages/``, ``out/Annotations/<id>.xml`` and ``out/ImageSets/Main/<split>.txt``; VOC
    detection annotations hold boxes alone (instance data's masks are not written, and the notes say so)."""
    names = unique_names(datamodule)
    for folder in ("JPEGImages", "Annotations", "ImageSets/Main"):
        (out / folder).mkdir(parents=True)
    for split, records in datamodule.splits.items():
        for record in records:
            name = names[record.path]
            if not (out / "JPEGImages" / name).exists():
                place(record.path, out / "JPEGImages" / name)
                annotation = voc_xml(record, name, datamodule.class_names)
                annotation.write(out / "Annotations" / f"{Path(name).stem}.xml", encoding="unicode")
        ids = "".join(f"{Path(names[record.path]).stem}\n" for record in records)
        (out / "ImageSets" / "Main" / f"{split}.txt").write_text(ids)
    notes = []
    if masks := sum(len(r.segmentations) for records in datamodule.splits.values() for r in records if r.segmentations):
        notes.append(f"{masks} object mask(s) not written: VOC detection annotations hold boxes alone")
    trained = sorted({datamodule.class_names[label - 1] for r in datamodule.splits["train"] for label in r.labels})
    if trained != datamodule.class_names:
        notes.append(
            "VOC files name their classes, not their order (cvkit reads the train split's names, sorted): read it "
            f"back with data.class_names='{json.dumps(datamodule.class_names)}' to keep the labels and every class"
        )
    return notes


def traced_parts(mask: np.ndarray) -> list[np.ndarray]:
    """The outer boundary of each connected part of a bool [H, W] mask as a [P, 2] polygon of (x, y) pixels.
    cv2.findContours traces the mask enlarged 2x, mapped back, so that a boundary runs round its pixels' outer
    edges (within a quarter pixel) rather than through their centres, which would lose half a pixel all round
    (a third of a 3x3 object). Holes are not traced: they are filled."""
    enlarged = mask.astype(np.uint8).repeat(2, axis=0).repeat(2, axis=1)
    contours, _ = cv2.findContours(enlarged, cv2.RETR_EXTERNAL, cv2.CHAIN_APPROX_SIMPLE)
    return [(contour.reshape(-1, 2) + 0.5) / 2 for contour in contours]


def join_parts(parts: list[np.ndarray]) -> np.ndarray:
    """One polygon through all of `parts` ([P, 2] polygons), as Ultralytics' COCO converter merges the parts of
    an object: each next part is entered from the point of the polygon so far nearest to it, walked round, and
    left by the same zero-width bridge, which encloses no area."""
    joined = parts[0]
    for part in parts[1:]:
        distances, nearest = cKDTree(joined).query(part)
        entry = int(np.argmin(distances))
        leave = int(nearest[entry])
        walk_round = np.concatenate([np.roll(part, -entry, axis=0), part[entry : entry + 1]])
        joined = np.concatenate([joined[: leave + 1], walk_round, joined[leave:]])
    return joined


def yolo_polygon(region: Segmentation, width: int, height: int) -> np.ndarray:
    """An object's region as the one polygon its YOLO label line holds: [P, 2] (x, y) fractions of the
    `width` x `height` image, clipped to it; [0, 2] for an empty mask. COCO polygons are taken as they are, an
    RLE is traced (:func:`traced_parts`). An object in several parts (several polygons, or a mask in pieces)
    has them joined into one polygon (:func:`join_parts`), so that no part is lost (its largest part alone
    would leave 47 of coco128's 939 masks below 0.8 IoU with their original)."""
    if isinstance(region, list):
        parts = [np.reshape(polygon, (-1, 2)) for polygon in region]
    else:
        parts = traced_parts(decode_segmentation(region, height, width))
    if not parts:
        return np.zeros((0, 2))
    return (join_parts(parts) / (width, height)).clip(0, 1)


def yolo_lines(record: DetectionRecord) -> tuple[list[str], int, int]:
    """The label lines of `record`, fractions of the image size: ``class cx cy w h`` (boxes clipped to the
    image) or, for instance data, ``class x1 y1 x2 y2 ...`` (:func:`yolo_polygon`); and how many crowd objects,
    and objects with no area inside the image (or an empty mask), were left out."""
    keep = ~record.iscrowd
    if record.segmentations is None:
        boxes, inside = clip_boxes(record.boxes[keep], record.width, record.height)
        x0, y0, x1, y1 = (boxes[inside] / np.array([record.width, record.height] * 2)).T
        rows = list(np.stack([(x0 + x1) / 2, (y0 + y1) / 2, x1 - x0, y1 - y0], axis=1))
    else:
        kept = [region for region, wanted in zip(record.segmentations, keep) if wanted]
        polygons = [yolo_polygon(region, record.width, record.height) for region in kept]
        inside = np.array([len(polygon) > 0 for polygon in polygons], dtype=bool)
        rows = [polygon.ravel() for polygon in polygons if len(polygon)]
    labels = record.labels[keep][inside]
    lines = [" ".join([str(label - 1), *(f"{value:.6f}" for value in row)]) for label, row in zip(labels, rows)]
    return lines, int(record.iscrowd.sum()), int((~inside).sum())


def write_yolo(
    datamodule: DetectionDataModule, out: Path, place: Callable[[Path, Path], None], final: Path
) -> list[str]:
    """``out/images/<split>/``, ``out/labels/<split>/<stem>.txt`` and ``out/data.yaml`` (Ultralytics'
    dataset YAML, its ``path`` the `final` folder, where Ultralytics looks for it); images without objects
    get no label file, as Ultralytics writes them."""
    names = unique_names(datamodule)
    crowd = outside = 0
    for split, records in datamodule.splits.items():
        (out / "images" / split).mkdir(parents=True)
        (out / "labels" / split).mkdir(parents=True)
        for record in records:
            name = names[record.path]
            place(record.path, out / "images" / split / name)
            lines, left_crowd, left_outside = yolo_lines(record)
            crowd, outside = crowd + left_crowd, outside + left_outside
            if lines:
                (out / "labels" / split / f"{Path(name).stem}.txt").write_text("\n".join(lines) + "\n")
    splits = "".join(f"{split}: images/{split}\n" for split in datamodule.splits)
    classes = "".join(f"  {index}: {json.dumps(name)}\n" for index, name in enumerate(datamodule.class_names))
    root = f"path: {json.dumps(str(final.resolve()))}  # the folder the paths below are in\n"
    (out / "data.yaml").write_text(f"{root}{splits}names:\n{classes}")
    notes = [f"{crowd} crowd or difficult box(es) left out: YOLO labels cannot mark them"] if crowd else []
    if outside:
        notes.append(f"{outside} object(s) with no area inside their image (or an empty mask) left out")
    return notes


WRITERS = {"coco": write_coco, "voc": write_voc, "yolo": write_yolo}


def copy_image(source: Path, target: Path) -> None:
    shutil.copy2(source, target)


def link_image(source: Path, target: Path) -> None:
    target.symlink_to(source.resolve())


def convert(datamodule: DetectionDataModule, to: str, out: Path, symlink: bool = False) -> list[str]:
    """Write the set-up `datamodule` in layout `to` at `out` (which must not exist yet), images copied or,
    with `symlink`, linked; returns notes on what the layout could not hold."""
    if to not in WRITERS:
        raise CvkitError(f"--to {to!r} is not one of {list(WRITERS)}")
    if out.exists():
        raise CvkitError(f"--out {out} exists already: give a new folder, so that nothing in it is overwritten")
    assert datamodule.splits is not None, "call datamodule.setup() first"
    partial = out.with_name(f".{out.name}.partial-{os.getpid()}")
    try:
        notes = WRITERS[to](datamodule, partial, link_image if symlink else copy_image, out)
        partial.rename(out)
    finally:
        shutil.rmtree(partial, ignore_errors=True)
    return notes
