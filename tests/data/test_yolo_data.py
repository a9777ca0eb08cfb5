"""data=yolo: the Ultralytics layout, read from BCCD written in it (the VOC boxes as normalised YOLO labels)."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest

from cvkit.builders import build_datamodule
from cvkit.data.formats.yolo import label_path
from cvkit.errors import CvkitError
from tests.helpers.cli import train_into
from tests.helpers.configs import compose_train
from tests.helpers.logs import read_metrics
from tests.helpers.presets import tiny_detection


def voc_module(bccd_voc: Path, tmp_path: Path):
    return build_datamodule(compose_train(tmp_path / "voc_run", "task=detection", "data=voc", f"data.root={bccd_voc}"))


def write_yolo(voc, root: Path, names_as_mapping: bool = False) -> Path:
    """The VOC module's splits in the YOLO layout under `root` (images linked, labels written); its YAML."""
    for split, records in voc.splits.items():
        (root / "images" / split).mkdir(parents=True)
        (root / "labels" / split).mkdir(parents=True)
        for record in records:
            image = root / "images" / split / record.path.name
            image.symlink_to(record.path)
            w, h = record.width, record.height
            lines = [
                f"{label - 1} {(x0 + x1) / 2 / w!r} {(y0 + y1) / 2 / h!r} {(x1 - x0) / w!r} {(y1 - y0) / h!r}"
                for (x0, y0, x1, y1), label in zip(record.boxes.tolist(), record.labels.tolist())
            ]
            if lines:  # an image without boxes has no label file, as Ultralytics writes them
                label_path(image).write_text("\n".join(lines) + "\n")
    names = dict(enumerate(voc.class_names)) if names_as_mapping else voc.class_names
    splits = "".join(f"{split}: images/{split}\n" for split in voc.splits)
    (root / "data.yaml").write_text(f"path: {root}\n{splits}names: {names}\n")
    return root / "data.yaml"


def yolo_module(dataset: Path, tmp_path: Path):
    cfg = compose_train(tmp_path / "yolo_run", "task=detection", "data=yolo", f"data.dataset={dataset}")
    return build_datamodule(cfg)


@pytest.mark.parametrize("names_as_mapping", [False, True])
def test_bccd_written_as_yolo_reads_back_the_voc_boxes(bccd_voc: Path, tmp_path: Path, names_as_mapping) -> None:
    voc = voc_module(bccd_voc, tmp_path)
    yolo = yolo_module(write_yolo(voc, tmp_path / "yolo", names_as_mapping), tmp_path)
    yolo.setup("fit")
    assert yolo.class_names == voc.class_names == ["Platelets", "RBC", "WBC"]
    assert yolo.split_sizes() == voc.split_sizes() == {"train": 205, "val": 87, "test": 72}
    for split in voc.splits:
        by_name = {record.path.name: record for record in voc.splits[split]}
        for record in yolo.splits[split]:
            expected = by_name[record.path.name]
            assert (record.width, record.height) == (expected.width, expected.height) == (640, 480)
            assert np.array_equal(record.labels, expected.labels)
            assert np.allclose(record.boxes, expected.boxes, atol=1e-9)
            # VOC leaves out a box written xmin == xmax (2 in BCCD); in YOLO it is 1 pixel wide, and trained on.
            one_pixel = (expected.boxes[:, 2] - expected.boxes[:, 0] == 1) | (
                expected.boxes[:, 3] - expected.boxes[:, 1] == 1
            )
            assert np.array_equal(record.train, expected.train | one_pixel)
    truth = yolo.ground_truth("val")
    assert len(truth["images"]) == 87 and len(truth["annotations"]) == len(voc.ground_truth("val")["annotations"])


def test_a_polygon_label_gives_its_bounding_box_and_no_label_file_no_objects(bccd_voc: Path, tmp_path: Path) -> None:
    voc = voc_module(bccd_voc, tmp_path)
    dataset = write_yolo(voc, tmp_path / "yolo")
    first = sorted((tmp_path / "yolo" / "images" / "train").iterdir())[0]
    label_path(first).write_text("1 0.25 0.5 0.75 0.25 0.5 0.75\n")  # a triangle, normalised
    second = sorted((tmp_path / "yolo" / "images" / "train").iterdir())[1]
    label_path(second).unlink()
    records = {record.path.name: record for record in yolo_module(dataset, tmp_path).splits["train"]}
    assert records[first.name].boxes.tolist() == [[160.0, 120.0, 480.0, 360.0]]
    assert records[first.name].labels.tolist() == [2]
    assert records[second.name].boxes.shape == (0, 4)


@pytest.mark.parametrize(
    ("line", "message"),
    [
        ("3 0.5 0.5 0.1 0.1", "class 3 is not one of the 3 ids 0..2"),
        ("1 0.5 0.5 0.1", "4 values; expected 'class cx cy w h'"),
        ("RBC 0.5 0.5 0.1 0.1", "is not numbers"),
    ],
)
def test_a_bad_label_line_is_named_with_its_file_and_line(bccd_voc, tmp_path: Path, line: str, message: str) -> None:
    dataset = write_yolo(voc_module(bccd_voc, tmp_path), tmp_path / "yolo")
    image = sorted((tmp_path / "yolo" / "images" / "val").iterdir())[3]
    label_path(image).write_text(f"0 0.5 0.5 0.1 0.1\n{line}\n")
    with pytest.raises(CvkitError, match=message) as raised:
        yolo_module(dataset, tmp_path)
    assert f"{label_path(image)}:2" in str(raised.value)


def test_a_dataset_yaml_without_names_or_val_says_so(tmp_path: Path) -> None:
    (tmp_path / "images").mkdir()
    dataset = tmp_path / "data.yaml"
    dataset.write_text("train: images\n")
    with pytest.raises(CvkitError, match=r"has no val, names \(an Ultralytics dataset YAML needs them\)"):
        yolo_module(dataset, tmp_path)
    with pytest.raises(CvkitError, match="does not exist"):
        yolo_module(tmp_path / "missing.yaml", tmp_path)


def test_cvkit_train_on_a_yolo_dataset(bccd_voc: Path, tmp_path: Path) -> None:
    dataset = write_yolo(voc_module(bccd_voc, tmp_path), tmp_path / "yolo")
    overrides = [o for o in tiny_detection(bccd_voc) if not o.startswith(("data=", "data.root="))]
    run_dir = tmp_path / "run"
    train_into(run_dir, *overrides, "data=yolo", f"data.dataset={dataset}")
    metrics = read_metrics(run_dir)
    assert "val/map" in metrics and "test/map" in metrics
