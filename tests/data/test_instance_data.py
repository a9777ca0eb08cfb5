"""Instance segmentation data on real coco128: data=coco_instances through flips and crops, COCO <-> YOLO-seg
conversion read back mask for mask, cvkit-data check of masks, and each bad input named in one line."""

from __future__ import annotations

import json
import shutil
from collections.abc import Callable
from pathlib import Path

import numpy as np
import pytest
from PIL import Image
from pycocotools import mask as mask_utils

from cvkit.builders import build_datamodule
from cvkit.data import CocoInstanceDataModule
from cvkit.data.detection import convert as conversion
from cvkit.data.formats.coco import decode_segmentation
from cvkit.data.formats.yolo import label_path
from cvkit.data_cli import main
from cvkit.errors import CvkitError
from tests.helpers.configs import compose_train

FLIP_AND_CROP = [
    {"_target_": "albumentations.HorizontalFlip", "p": 1.0},
    {"_target_": "albumentations.RandomCrop", "height": 240, "width": 320},
]
# COCO's own boxes and the bounding boxes of their masks differ by up to 4.25 px in coco128 (rounding of the
# polygon's pixels); in the images these tests pick, by at most this much.
BOX_TOLERANCE = 2.0
GRAYSCALE = "000000000086.jpg"


def coco128_files(coco128: Path, annotations: Path | None = None) -> dict[str, str]:
    """The data module's files: the coco128 images, and `annotations` (coco128's own file by default) as both
    the train and the val file."""
    annotations = annotations or coco128 / "annotations" / "instances_train2017.json"
    images = coco128 / "images" / "train2017"
    return {
        f"{split}_{kind}": str(path)
        for split in ("train", "val")
        for kind, path in (("images", images), ("annotations", annotations))
    }


def coco_instances(files: dict[str, str], **kwargs) -> CocoInstanceDataModule:
    module = CocoInstanceDataModule(**files, batch_size=2, num_workers=0, **kwargs)
    module.setup()
    return module


def coco128_subset(coco128: Path, folder: Path, file_names: list[str], change: Callable | None = None) -> Path:
    """A COCO file in `folder` of coco128's images `file_names` and their annotations, `change`d in place."""
    content = json.loads((coco128 / "annotations" / "instances_train2017.json").read_text())
    images = [image for image in content["images"] if image["file_name"] in file_names]
    ids = {image["id"] for image in images}
    content |= {"images": images, "annotations": [a for a in content["annotations"] if a["image_id"] in ids]}
    if change:
        change(content)
    path = folder / "instances.json"
    path.write_text(json.dumps(content))
    return path


def mask_box(mask: np.ndarray) -> np.ndarray:
    """The bounding box (xyxy, pixel edges) of a non-empty [H, W] mask."""
    xs, ys = np.flatnonzero(mask.any(axis=0)), np.flatnonzero(mask.any(axis=1))
    return np.array([xs[0], ys[0], xs[-1] + 1, ys[-1] + 1], dtype=np.float64)


def iou(first: np.ndarray, second: np.ndarray) -> float:
    return (first & second).sum() / (first | second).sum()


@pytest.fixture(scope="module")
def coco128_module(coco128: Path) -> CocoInstanceDataModule:
    return coco_instances(coco128_files(coco128), train_transforms=FLIP_AND_CROP)


def test_masks_follow_a_flip_and_a_crop_with_their_boxes(coco128_module: CocoInstanceDataModule) -> None:
    records = coco128_module.splits["train"]
    picked = [index for index, record in enumerate(records) if (~record.iscrowd).sum() >= 4][:5]
    dataset = coco128_module.make_dataset("train", train=True)
    objects = kept = 0
    for index in picked:
        image, target = dataset[(index, index)]
        boxes, masks = target["boxes"].numpy(), target["masks"].numpy()
        assert image.shape == (3, 240, 320) and masks.dtype == np.uint8 and masks.shape == (len(boxes), 240, 320)
        assert len(target["labels"]) == len(boxes) and set(target["labels"].tolist()) <= set(records[index].labels)
        objects, kept = objects + int(records[index].train.sum()), kept + len(boxes)
        for box, mask in zip(boxes, masks.astype(bool)):
            assert mask.any()  # an object whose mask the crop emptied is dropped
            spanned = mask_box(mask)
            assert (spanned[:2] >= box[:2] - BOX_TOLERANCE).all() and (spanned[2:] <= box[2:] + BOX_TOLERANCE).all()
            cut = box[0] < 1 or box[1] < 1 or box[2] > 319 or box[3] > 239
            if not cut:  # a whole object: its mask spans its box
                assert np.abs(spanned - box).max() <= BOX_TOLERANCE
    assert 0 < kept < objects  # the crops dropped some objects, masks with them


def test_unaugmented_masks_are_the_annotated_regions_and_crowds_only_ground_truth(coco128_module) -> None:
    records = coco128_module.splits["train"]
    dataset = coco128_module.make_dataset("train", train=False)  # no augmentation
    crowded = [index for index, record in enumerate(records) if record.iscrowd.any()][:3]
    for index in [0, 1, *crowded]:
        record = records[index]
        image, target = dataset[index]
        regions = [
            decode_segmentation(region, record.height, record.width)
            for region, crowd in zip(record.segmentations, record.iscrowd)
            if not crowd
        ]
        assert image.shape[1:] == (record.height, record.width)
        np.testing.assert_array_equal(target["masks"].numpy(), np.stack(regions).astype(np.uint8))
        np.testing.assert_array_equal(target["labels"].numpy(), record.labels[~record.iscrowd])
    truth = coco128_module.ground_truth("train")
    crowds = [annotation for annotation in truth["annotations"] if annotation["iscrowd"]]
    assert len(crowds) == 10 and all({"counts", "size"} <= set(a["segmentation"]) for a in crowds)
    assert all(isinstance(a["segmentation"], list) for a in truth["annotations"] if not a["iscrowd"])


def test_images_without_objects_and_a_grayscale_image(coco128_module: CocoInstanceDataModule) -> None:
    records = {record.path.name: index for index, record in enumerate(coco128_module.splits["val"])}
    dataset = coco128_module.make_dataset("val", train=False)
    for name in ("000000000250.jpg", "000000000508.jpg"):
        image, target = dataset[records[name]]
        assert target["boxes"].shape == (0, 4) and target["masks"].shape == (0, *image.shape[1:])
    assert Image.open(coco128_module.splits["val"][records[GRAYSCALE]].path).mode == "L"
    image, target = dataset[records[GRAYSCALE]]
    assert image.shape[0] == 3 and target["masks"].shape[1:] == image.shape[1:] and len(target["masks"]) > 0


def module(tmp_path: Path, *overrides: str):
    return build_datamodule(compose_train(tmp_path / "run", "task=detection", *overrides))


def test_coco128_converted_to_yolo_seg_and_back_keeps_every_mask(coco128: Path, tmp_path: Path) -> None:
    files = coco128_files(coco128)
    source = module(tmp_path, "data=coco_instances", *(f"data.{key}={value}" for key, value in files.items()))
    notes = conversion.convert(source, "yolo", tmp_path / "yolo", symlink=True)
    assert notes == ["20 crowd or difficult box(es) left out: YOLO labels cannot mark them"]
    yolo = module(tmp_path, "data=yolo_seg", f"data.dataset={tmp_path / 'yolo' / 'data.yaml'}")
    assert yolo.class_names == source.class_names
    ious = []
    for expected, record in zip(source.splits["train"], yolo.splits["train"], strict=True):
        assert record.path.name == expected.path.name
        keep = ~expected.iscrowd
        assert np.array_equal(record.labels, expected.labels[keep])
        regions = [region for region, kept in zip(expected.segmentations, keep) if kept]
        assert all(len(polygons) == 1 for polygons in record.segmentations)  # one polygon an object
        for original, read in zip(regions, record.segmentations, strict=True):
            size = (expected.height, expected.width)
            ious.append(iou(decode_segmentation(original, *size), decode_segmentation(read, *size)))
    assert len(ious) == 929 and min(ious) >= 0.8

    conversion.convert(yolo, "coco", tmp_path / "coco")
    written = {f"{split}_images": str(tmp_path / "coco" / "images" / split) for split in ("train", "val")}
    written |= {
        f"{s}_annotations": str(tmp_path / "coco" / "annotations" / f"instances_{s}.json") for s in ("train", "val")
    }
    coco = coco_instances(written)
    assert coco.class_names == yolo.class_names
    for split in ("train", "val"):  # the val copies of the images are named <stem>_1.jpg: the stems are taken
        for expected, record in zip(yolo.splits[split], coco.splits[split], strict=True):
            assert record.path.stem.startswith(expected.path.stem) and record.segmentations == expected.segmentations
            assert np.array_equal(record.labels, expected.labels) and np.allclose(record.boxes, expected.boxes)
            assert np.array_equal(record.areas, expected.areas)


def test_an_rle_object_becomes_one_polygon_line(coco128: Path, tmp_path: Path) -> None:
    def as_rle(content: dict) -> None:
        image = content["images"][0]
        size = (image["height"], image["width"])
        first, second = content["annotations"][:2]  # the two bowls of 000000000009.jpg
        region = decode_segmentation(first["segmentation"], *size) | decode_segmentation(second["segmentation"], *size)
        rle = mask_utils.encode(np.asfortranarray(region.astype(np.uint8)))
        first["segmentation"] = {"counts": rle["counts"].decode("ascii"), "size": list(size)}
        empty = mask_utils.encode(np.zeros(size, dtype=np.uint8, order="F"))
        second["segmentation"] = {"counts": empty["counts"].decode("ascii"), "size": list(size)}

    source = coco_instances(coco128_files(coco128, coco128_subset(coco128, tmp_path, ["000000000009.jpg"], as_rle)))
    record = source.splits["train"][0]
    notes = conversion.convert(source, "yolo", tmp_path / "yolo")
    assert notes == ["2 object(s) with no area inside their image (or an empty mask) left out"]  # train and val
    lines = label_path(tmp_path / "yolo" / "images" / "train" / record.path.name).read_text().splitlines()
    assert len(lines) == (~record.iscrowd).sum() - 1
    yolo = module(tmp_path, "data=yolo_seg", f"data.dataset={tmp_path / 'yolo' / 'data.yaml'}")
    traced = yolo.splits["train"][0].segmentations[0]
    size = (record.height, record.width)
    assert iou(decode_segmentation(traced, *size), decode_segmentation(record.segmentations[0], *size)) >= 0.95
    notes = conversion.convert(source, "voc", tmp_path / "voc", symlink=True)
    assert notes[0] == "16 object mask(s) not written: VOC detection annotations hold boxes alone"


def test_the_command_names_the_instance_data_configs(caplog: pytest.LogCaptureFixture) -> None:
    with pytest.raises(SystemExit) as exited:
        main(["check", "data=digits"])
    assert exited.value.code == 2
    assert "choose data=coco|voc|yolo, or data=coco_instances|yolo_seg for instance segmentation" in caplog.text


def test_check_names_empty_masks_and_masks_outside_their_box(coco128: Path, tmp_path: Path) -> None:
    def damage(content: dict) -> None:
        first, second = [annotation for annotation in content["annotations"] if annotation["image_id"] == 9][:2]
        first["segmentation"] = [[0.1, 0.1, 0.9, 0.1, 0.5, 0.9]]  # fractions of the image size, not pixels
        second["segmentation"] = [[10.0, 10.0, 20.0, 10.0, 30.0, 10.0]]  # a polygon of no area

    annotations = coco128_subset(coco128, tmp_path, ["000000000009.jpg", "000000000025.jpg"], damage)
    overrides = [f"data.{key}={value}" for key, value in coco128_files(coco128, annotations).items()]
    report = tmp_path / "report.json"
    with pytest.raises(SystemExit) as exited:
        main(["check", "data=coco_instances", *overrides, "--json", str(report)])
    assert exited.value.code == 1
    problems = json.loads(report.read_text())["problems"]
    image = coco128 / "images" / "train2017" / "000000000009.jpg"
    assert problems["empty_masks"] == [f"{image}: object 2 (bowl) has a mask of no pixel"] * 2  # train and val
    assert len(problems["masks_outside_their_box"]) == 2
    assert problems["masks_outside_their_box"][0].startswith(f"{image}: object 1 (bowl): 100% of its mask is outside")


def two_points(content: dict) -> None:
    content["annotations"][0]["segmentation"] = [[10.0, 10.0, 50.0, 60.0]]


def outside_the_image(content: dict) -> None:
    content["annotations"][0]["segmentation"] = [[10.0, 10.0, 700.0, 10.0, 50.0, 60.0]]


def rle_of_another_size(content: dict) -> None:
    content["annotations"][0]["segmentation"] = {"counts": [0, 100], "size": [10, 10]}


def no_segmentation(content: dict) -> None:
    del content["annotations"][0]["segmentation"]


@pytest.mark.parametrize(
    ("change", "message"),
    [
        (two_points, r"has a polygon of 2 point\(s\) \[10.0, 10.0, 50.0, 60.0\]; a polygon needs at least 3"),
        (outside_the_image, r"has a polygon reaching \(10..700, 10..60\) in x and y, outside its 640x480 image"),
        (rle_of_another_size, r"has an RLE of size \[10, 10\], but its image is 480x640"),
        (no_segmentation, "has no segmentation; task=instance_segmentation needs polygons"),
    ],
)
def test_bad_coco_segmentations_are_named(coco128: Path, tmp_path: Path, change, message: str) -> None:
    annotations = coco128_subset(coco128, tmp_path, ["000000000009.jpg"], change)
    with pytest.raises(CvkitError, match=message) as raised:
        coco_instances(coco128_files(coco128, annotations))
    assert len(str(raised.value).splitlines()) == 1
    assert f"{annotations} annotation 1038967 of image 9 (000000000009.jpg)" in str(raised.value)


def yolo_seg_dataset(coco128: Path, root: Path, label_lines: list[str]) -> Path:
    """A YOLO-seg dataset at `root` of two coco128 images (copied), the second labelled with `label_lines`."""
    names = ["000000000009.jpg", "000000000025.jpg"]
    for split in ("train", "val"):
        (root / "images" / split).mkdir(parents=True)
        (root / "labels" / split).mkdir(parents=True)
        for name in names:
            shutil.copy(coco128 / "images" / "train2017" / name, root / "images" / split / name)
        label_path(root / "images" / split / names[0]).write_text("0 0.1 0.1 0.5 0.1 0.3 0.4\n")
    label_path(root / "images" / "val" / names[1]).write_text("\n".join(label_lines) + "\n")
    (root / "data.yaml").write_text(f"path: {root}\ntrain: images/train\nval: images/val\nnames: [a, b]\n")
    return root / "data.yaml"


@pytest.mark.parametrize(
    ("line", "message"),
    [
        ("1 0.1 0.1 0.2 0.2", r"'class cx cy w h' is a box, and instance segmentation needs a mask: a polygon"),
        ("1 0.1 0.1 0.2 0.2 0.3", r"5 coordinate\(s\) after the class; a polygon is at least 3 \(x, y\) points"),
        ("1 0.1 0.1", r"2 coordinate\(s\) after the class; a polygon is at least 3 \(x, y\) points"),
        ("1 0.1 0.1 1.2 0.1 0.5 0.5", r"polygon points reach x 0.1..1.2, y 0.1..0.5; YOLO coordinates are fractions"),
        ("1 -0.1 0.1 0.9 0.1 0.5 0.5", r"polygon points reach x -0.1..0.9"),
    ],
)
def test_bad_yolo_seg_lines_are_named(coco128: Path, tmp_path: Path, line: str, message: str) -> None:
    dataset = yolo_seg_dataset(coco128, tmp_path / "yolo", ["0 0.1 0.1 0.5 0.1 0.3 0.4", line])
    with pytest.raises(CvkitError, match=message) as raised:
        module(tmp_path, "data=yolo_seg", f"data.dataset={dataset}")
    labels = tmp_path / "yolo" / "labels" / "val" / "000000000025.txt"
    assert str(raised.value).startswith(f"{labels}:2: ") and len(str(raised.value).splitlines()) == 1


def test_yolo_seg_points_within_a_pixel_of_the_border_are_moved_onto_it(coco128: Path, tmp_path: Path) -> None:
    # 000000000025.jpg is 640x426: a pixel is 1/640 of its width, 1/426 of its height
    dataset = yolo_seg_dataset(coco128, tmp_path / "yolo", ["1 -0.001 0.5 1.0015 0.002 0.5 1.002"])
    record = module(tmp_path, "data=yolo_seg", f"data.dataset={dataset}").splits["val"][1]
    assert (record.width, record.height) == (640, 426)
    assert record.segmentations == [[[0.0, 213.0, 640.0, 0.852, 320.0, 426.0]]]
    assert record.boxes.tolist() == [[0.0, 0.852, 640.0, 426.0]] and record.labels.tolist() == [2]
    triangle = (640 * (426 - 213) + 320 * (213 - 0.852)) / 2  # the shoelace formula: its area to the pixel
    assert record.areas[0] == pytest.approx(triangle, rel=1e-3)
