"""``cvkit-data convert``: a detection dataset, as any cvkit data module reads it, written in the COCO, VOC or
YOLO layout, images included, so that the written folder reads back through ``data=coco|voc|yolo``.

The folder is written beside its destination and renamed into place when complete: a failed conversion
leaves nothing half-written. What a layout cannot hold is said, not lost silently: YOLO has no crowd or
difficult flag (such boxes are left out) and no box beyond the image (boxes are clipped to it; a box with
no area inside is left out).
"""

from __future__ import annotations

import json
import os
import shutil
import xml.etree.ElementTree as ET
from collections.abc import Callable
from pathlib import Path

import numpy as np

from cvkit.data.detection.module import DetectionDataModule, DetectionRecord, clip_boxes
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
    source's category ids, crowd and difficult boxes as ``iscrowd=1``)."""
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
    """``out/JPEGImages/``, ``out/Annotations/<id>.xml`` and ``out/ImageSets/Main/<split>.txt``."""
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
    trained = sorted({datamodule.class_names[label - 1] for r in datamodule.splits["train"] for label in r.labels})
    if trained == datamodule.class_names:
        return []
    return [
        "VOC files name their classes, not their order (cvkit reads the train split's names, sorted): read it back "
        f"with data.class_names='{json.dumps(datamodule.class_names)}' to keep the labels and every class"
    ]


def yolo_lines(record: DetectionRecord) -> tuple[list[str], int, int]:
    """The label lines of `record` (``class cx cy w h``, fractions of the image size, boxes clipped to the
    image), and how many crowd boxes and boxes with no area inside the image were left out."""
    keep = ~record.iscrowd
    boxes, inside = clip_boxes(record.boxes[keep], record.width, record.height)
    scale = np.array([record.width, record.height] * 2, dtype=np.float64)
    lines = []
    for (x0, y0, x1, y1), label in zip(boxes[inside] / scale, record.labels[keep][inside]):
        lines.append(f"{label - 1} {(x0 + x1) / 2:.6f} {(y0 + y1) / 2:.6f} {x1 - x0:.6f} {y1 - y0:.6f}")
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
        notes.append(f"{outside} box(es) with no area inside their image left out")
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
