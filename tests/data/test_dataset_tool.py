"""cvkit-data: `check` on real BCCD and on a damaged copy of it, `convert` between COCO, VOC and YOLO read back
through the data modules (BCCD from VOC, coco128 with its 80 non-contiguous categories and crowd boxes)."""

from __future__ import annotations

import json
import shutil
import subprocess
import sys
import xml.etree.ElementTree as ET
from collections import Counter
from pathlib import Path

import numpy as np
import pytest

from cvkit.builders import build_datamodule
from cvkit.data.detection import convert as conversion
from cvkit.data.detection.module import clip_boxes
from cvkit.data_cli import main
from cvkit.errors import CvkitError
from tests.helpers.configs import compose_train


def exit_status(*arguments: str) -> int:
    with pytest.raises(SystemExit) as exited:
        main(list(arguments))
    return exited.value.code


def module(tmp_path: Path, *overrides: str):
    return build_datamodule(compose_train(tmp_path / "run", "task=detection", *overrides))


def coco_overrides(images: Path, annotations: Path) -> list[str]:
    """COCO data whose train and val splits are both the given file (coco128 has one)."""
    return [
        "data=coco",
        *(f"data.{split}_images={images}" for split in ("train", "val")),
        *(f"data.{split}_annotations={annotations}" for split in ("train", "val")),
    ]


def read_back(fmt: str, out: Path, tmp_path: Path, class_names: list[str]):
    """The converted folder `out`, read by the data module of its layout."""
    if fmt == "yolo":
        return module(tmp_path, "data=yolo", f"data.dataset={out / 'data.yaml'}")
    if fmt == "voc":
        return module(tmp_path, "data=voc", f"data.root={out}", f"data.class_names={json.dumps(class_names)}")
    splits = [p.stem.removeprefix("instances_") for p in (out / "annotations").iterdir()]
    overrides = [f"data.{s}_images={out / 'images' / s}" for s in splits]
    overrides += [f"data.{s}_annotations={out / 'annotations' / f'instances_{s}.json'}" for s in splits]
    return module(tmp_path, "data=coco", *overrides)


def voc_objects(bccd_voc: Path, split: str) -> Counter:
    """Objects per class in a VOC split, counted from the XML files directly."""
    ids = (bccd_voc / "ImageSets" / "Main" / f"{split}.txt").read_text().split()
    names = Counter()
    for image_id in ids:
        root = ET.parse(bccd_voc / "Annotations" / f"{image_id}.xml").getroot()
        names.update(element.findtext("name") for element in root.iter("object"))
    return names


def test_check_counts_bccd_as_its_xml_files_say(bccd_voc: Path, tmp_path: Path) -> None:
    report_path = tmp_path / "report.json"
    assert exit_status("check", "data=voc", f"data.root={bccd_voc}", "--json", str(report_path)) == 1
    report = json.loads(report_path.read_text())
    for split in ("train", "val", "test"):
        assert report["splits"][split]["objects_per_class"] == dict(sorted(voc_objects(bccd_voc, split).items()))
        assert report["splits"][split]["image_sizes"] == {"640x480": report["splits"][split]["images"]}
    assert [report["splits"][s]["images"] for s in ("train", "val", "test")] == [205, 87, 72]
    # BCCD's one real fault: two boxes written xmin == xmax, left out of training.
    left_out = report["problems"].pop("boxes_left_out_of_training")
    assert len(left_out) == 2 and all("is empty" in line for line in left_out)
    assert not any(report["problems"].values()) and report["ok"] is False


def damaged_voc(bccd_voc: Path, root: Path) -> Path:
    """A 4-image copy of BCCD with one fault of each kind the check names."""
    ids = ["BloodImage_00000", "BloodImage_00001", "BloodImage_00002", "BloodImage_00003"]
    for folder in ("JPEGImages", "Annotations", "ImageSets/Main"):
        (root / folder).mkdir(parents=True)
    for image_id in ids:
        shutil.copy(bccd_voc / "JPEGImages" / f"{image_id}.jpg", root / "JPEGImages")
        shutil.copy(bccd_voc / "Annotations" / f"{image_id}.xml", root / "Annotations")
    cut = root / "JPEGImages" / f"{ids[0]}.jpg"
    cut.write_bytes(cut.read_bytes()[:4000])
    tree = ET.parse(root / "Annotations" / f"{ids[1]}.xml")
    boxes = tree.getroot().findall("object/bndbox")
    boxes[0].find("xmax").text = "700"  # past the 640 px border
    boxes[1].find("xmin").text, boxes[1].find("xmax").text = "650", "660"  # wholly outside
    tree.write(root / "Annotations" / f"{ids[1]}.xml")
    tree = ET.parse(root / "Annotations" / f"{ids[3]}.xml")
    tree.getroot().find("size/width").text = "1280"  # the image is 640 wide
    tree.write(root / "Annotations" / f"{ids[3]}.xml")
    (root / "ImageSets" / "Main" / "train.txt").write_text("\n".join(ids[:3]) + "\n")
    (root / "ImageSets" / "Main" / "val.txt").write_text(f"{ids[2]}\n{ids[3]}\n")
    return root


def test_check_names_each_damaged_file(bccd_voc: Path, tmp_path: Path) -> None:
    root = damaged_voc(bccd_voc, tmp_path / "voc")
    report_path = tmp_path / "report.json"
    classes = "data.class_names=[Platelets,RBC,WBC]"
    assert exit_status("check", "data=voc", f"data.root={root}", classes, "--json", str(report_path)) == 1
    problems = json.loads(report_path.read_text())["problems"]
    assert [line.split(":")[0] for line in problems["unreadable_images"]] == [
        str(root / "JPEGImages/BloodImage_00000.jpg")
    ]
    assert problems["size_differs_from_annotation"] == [
        f"{root / 'JPEGImages/BloodImage_00003.jpg'}: 640x480, its annotation says 1280x480"
    ]
    assert (
        len(problems["boxes_left_out_of_training"]) == 1
        and "BloodImage_00001" in problems["boxes_left_out_of_training"][0]
    )
    assert len(problems["boxes_partly_outside_image"]) == 1 and ", 700, " in problems["boxes_partly_outside_image"][0]
    assert problems["images_in_several_splits"] == [f"{root / 'JPEGImages/BloodImage_00002.jpg'}: in train and val"]


@pytest.mark.parametrize("fmt", ["coco", "voc", "yolo"])
def test_bccd_converted_reads_back_with_the_same_boxes(bccd_voc: Path, tmp_path: Path, fmt: str) -> None:
    source = module(tmp_path, "data=voc", f"data.root={bccd_voc}")
    out = tmp_path / f"bccd_{fmt}"
    arguments = ["convert", "data=voc", f"data.root={bccd_voc}", "--to", fmt, "--out", str(out), "--symlink"]
    assert exit_status(*arguments) == 0
    converted = read_back(fmt, out, tmp_path, source.class_names)
    assert converted.class_names == source.class_names and converted.split_sizes() == source.split_sizes()
    for split, records in source.splits.items():
        for expected, record in zip(records, converted.splits[split], strict=True):
            assert record.path.name == expected.path.name and (record.width, record.height) == (640, 480)
            assert np.array_equal(record.labels, expected.labels)
            assert np.allclose(record.boxes, expected.boxes, atol=1e-3 if fmt == "yolo" else 0)
            assert record.path.resolve() == expected.path.resolve()  # --symlink: linked, not copied


def test_coco128_to_voc_and_yolo_keeps_classes_crowds_and_boxes(coco128: Path, tmp_path: Path) -> None:
    images, annotations = coco128 / "images" / "train2017", coco128 / "annotations" / "instances_train2017.json"
    source = module(tmp_path, *coco_overrides(images, annotations))
    records = {record.path.name: record for record in source.splits["train"]}
    for fmt in ("voc", "yolo", "coco"):
        out = tmp_path / f"coco128_{fmt}"
        notes = conversion.convert(source, fmt, out)
        if fmt == "yolo":
            crowds = sum(int(r.iscrowd.sum()) for split in source.splits.values() for r in split)
            assert crowds == 20  # 10 in coco128, whose one file is both train and val here
            assert notes == [f"{crowds} crowd or difficult box(es) left out: YOLO labels cannot mark them"]
        if fmt == "voc":  # 9 classes have no object, and COCO's order is not alphabetical
            assert len(notes) == 1 and f"data.class_names='{json.dumps(source.class_names)}'" in notes[0]
        converted = read_back(fmt, out, tmp_path, source.class_names)
        assert converted.class_names == source.class_names
        for record in converted.splits["train"]:
            expected = records[record.path.name]
            assert not record.path.is_symlink() and record.path.read_bytes() == expected.path.read_bytes()
            if fmt == "yolo":  # no crowd flag: left out; boxes clipped to the image, 6 decimals of its size
                boxes, _ = clip_boxes(expected.boxes[~expected.iscrowd], expected.width, expected.height)
                assert np.allclose(record.boxes, boxes, atol=2e-6 * max(record.width, record.height))
                assert np.array_equal(record.labels, expected.labels[~expected.iscrowd])
                continue
            assert np.allclose(record.boxes, expected.boxes, atol=1e-9)
            assert np.array_equal(record.labels, expected.labels)
            assert np.array_equal(record.iscrowd, expected.iscrowd)  # VOC: as difficult
    coco = read_back("coco", tmp_path / "coco128_coco", tmp_path, source.class_names)
    assert coco.label_to_category == source.label_to_category  # COCO's own ids, 1..90 with gaps


def test_a_failed_conversion_leaves_nothing_and_an_existing_folder_is_refused(bccd_voc, tmp_path, monkeypatch) -> None:
    source = module(tmp_path, "data=voc", f"data.root={bccd_voc}")
    placed = []

    def fail_on_the_third(image: Path, target: Path) -> None:
        placed.append(image)
        if len(placed) == 3:
            raise OSError(28, "No space left on device")
        conversion.link_image(image, target)

    monkeypatch.setattr(conversion, "link_image", fail_on_the_third)
    with pytest.raises(OSError, match="No space left"):
        conversion.convert(source, "yolo", tmp_path / "out", symlink=True)
    assert not (tmp_path / "out").exists() and not list(tmp_path.glob(".out*"))  # nor the partial folder
    (tmp_path / "out").mkdir()
    with pytest.raises(CvkitError, match="exists already: give a new folder"):
        conversion.convert(source, "yolo", tmp_path / "out")


def test_the_command_says_what_is_wrong_with_its_input(tmp_path: Path) -> None:
    command = [sys.executable, "-m", "cvkit.data_cli"]
    result = subprocess.run([*command, "check", "data=voc"], capture_output=True, text=True)
    assert result.returncode == 2 and "data.root has no value: set it" in result.stderr
    result = subprocess.run([*command, "check", "data=voc", f"data.root={tmp_path}"], capture_output=True, text=True)
    assert result.returncode == 2 and f"data.root: {tmp_path / 'JPEGImages'} is missing" in result.stderr
    result = subprocess.run([*command, "check", "data=digits"], capture_output=True, text=True)
    assert (
        result.returncode == 2
        and "cvkit-data reads detection data, and data (DigitsDataModule) is not" in result.stderr
    )
    assert "choose data=coco|voc|yolo" in result.stderr
