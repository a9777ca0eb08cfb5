import json
import logging
import re
import shutil
import xml.etree.ElementTree as ET
from pathlib import Path
from types import SimpleNamespace

import numpy as np
import pytest
import torch

from cvkit.builders import settle_batch_size
from cvkit.data import CocoDetectionDataModule, VOCDetectionDataModule
from cvkit.data.detection.check import check_dataset
from cvkit.errors import CvkitError

FLIP = [{"_target_": "albumentations.HorizontalFlip", "p": 1.0}]
CLASSES = ["Platelets", "RBC", "WBC"]


def voc(root: Path, **kwargs) -> VOCDetectionDataModule:
    module = VOCDetectionDataModule(root=str(root), **{"batch_size": 4, "num_workers": 0, **kwargs})
    module.setup()
    return module


@pytest.fixture(scope="module")
def bccd(bccd_voc: Path) -> VOCDetectionDataModule:
    return voc(bccd_voc)


def split_ids(bccd_voc: Path, split: str) -> list[str]:
    return (bccd_voc / "ImageSets" / "Main" / f"{split}.txt").read_text().split()


def make_voc(bccd_voc: Path, root: Path, splits: dict[str, list[str]]) -> Path:
    """A small VOC folder of real BCCD images and annotations."""
    for folder in ("JPEGImages", "Annotations", "ImageSets/Main"):
        (root / folder).mkdir(parents=True)
    for split, ids in splits.items():
        (root / "ImageSets" / "Main" / f"{split}.txt").write_text("\n".join(ids) + "\n")
        for image_id in ids:
            shutil.copy(bccd_voc / "JPEGImages" / f"{image_id}.jpg", root / "JPEGImages")
            shutil.copy(bccd_voc / "Annotations" / f"{image_id}.xml", root / "Annotations")
    return root


def small_voc(bccd_voc: Path, root: Path) -> Path:
    return make_voc(bccd_voc, root, {"train": split_ids(bccd_voc, "train")[:3], "val": split_ids(bccd_voc, "val")[:2]})


def test_bccd_splits_classes_and_labels(bccd: VOCDetectionDataModule, bccd_voc: Path) -> None:
    assert bccd.split_sizes() == {split: len(split_ids(bccd_voc, split)) for split in ("train", "val", "test")}
    assert bccd.split_sizes() == {"train": 205, "val": 87, "test": 72}
    assert bccd.class_names == CLASSES and bccd.num_classes == 3
    assert bccd.label_to_category == [1, 2, 3]
    labels = np.concatenate([record.labels for records in bccd.splits.values() for record in records])
    assert set(labels.tolist()) == {1, 2, 3}


def test_ground_truth_is_a_coco_dict_of_every_xml_object(bccd: VOCDetectionDataModule, bccd_voc: Path) -> None:
    COCO = pytest.importorskip("pycocotools.coco", reason="pycocotools is not installed").COCO
    ground_truth = bccd.ground_truth("val")
    objects = sum(
        len(ET.parse(bccd_voc / "Annotations" / f"{i}.xml").findall("object")) for i in split_ids(bccd_voc, "val")
    )
    assert len(ground_truth["images"]) == 87
    assert len(ground_truth["annotations"]) == objects
    assert ground_truth["categories"] == [{"id": i + 1, "name": name} for i, name in enumerate(CLASSES)]
    coco = COCO()
    coco.dataset = ground_truth
    coco.createIndex()
    first = bccd.splits["val"][0]
    (annotation, *_) = coco.loadAnns(coco.getAnnIds(imgIds=[first.image_id]))
    x, y, w, h = annotation["bbox"]
    assert [x, y, x + w, y + h] == pytest.approx(first.boxes[0].tolist())
    assert coco.imgs[first.image_id]["width"] == 640 and coco.imgs[first.image_id]["height"] == 480


def test_voc_boxes_are_converted_from_one_based(bccd: VOCDetectionDataModule, bccd_voc: Path) -> None:
    record = bccd.splits["train"][0]
    box = ET.parse(bccd_voc / "Annotations" / f"{record.path.stem}.xml").find("object/bndbox")
    xmin, ymin, xmax, ymax = (float(box.find(tag).text) for tag in ("xmin", "ymin", "xmax", "ymax"))
    assert record.boxes[0].tolist() == [xmin - 1, ymin - 1, xmax, ymax]


def check_batch(batch, batch_size: int) -> None:
    """A finished batch (a CPU loader's, or one finished on the device): 0..1 float images and their targets."""
    images, targets = batch
    assert isinstance(images, list) and isinstance(targets, list) and len(images) == len(targets) == batch_size
    for image, target in zip(images, targets):
        assert image.dtype == torch.float32 and image.shape[0] == 3 and 0.0 <= image.min() <= image.max() <= 1.0
        assert set(target) == {"boxes", "labels", "image_id"} and isinstance(target["image_id"], int)
        boxes, labels = target["boxes"], target["labels"]
        assert boxes.dtype == torch.float32 and boxes.shape == (len(labels), 4) and labels.dtype == torch.int64
        assert ((labels >= 1) & (labels <= 3)).all()
        height, width = image.shape[1:]
        assert (boxes[:, 0] >= 0).all() and (boxes[:, 1] >= 0).all()
        assert (boxes[:, 2] <= width).all() and (boxes[:, 3] <= height).all()
        assert (boxes[:, 2] > boxes[:, 0]).all() and (boxes[:, 3] > boxes[:, 1]).all()


def test_loader_batches_have_the_documented_structure(bccd: VOCDetectionDataModule) -> None:
    check_batch(next(iter(bccd.train_dataloader())), 4)
    images, targets = next(iter(bccd.val_dataloader()))
    check_batch((images, targets), 4)
    for image, target, record in zip(images, targets, bccd.splits["val"]):
        assert image.shape == (3, record.height, record.width)  # not resized: original coordinates
        assert target["image_id"] == record.image_id
        assert torch.allclose(target["boxes"], torch.as_tensor(record.boxes[record.train], dtype=torch.float32))


def test_augmented_boxes_stay_inside_the_image(bccd_voc: Path) -> None:
    shift_and_crop = [
        {"_target_": "albumentations.Affine", "translate_percent": 0.3, "scale": [0.7, 1.3], "p": 1.0},
        {"_target_": "albumentations.RandomCrop", "height": 300, "width": 400},
    ]
    module = voc(bccd_voc, train_transforms=shift_and_crop, min_box_visibility=0.5)
    dataset = module.make_dataset("train", train=True)
    samples = [dataset[(index, index)] for index in range(8)]
    collated = module.collate(samples)  # uint8, as a GPU run's loader gives it; finished as on the device
    assert all(image.dtype == torch.uint8 for image in collated[0])
    finished = module.on_after_batch_transfer(collated, 0)
    assert all(torch.equal(unit, image.float() / 255) for unit, image in zip(finished[0], collated[0]))
    check_batch(finished, 8)
    assert all(image.shape == (3, 300, 400) for image, _ in samples)
    kept = sum(len(target["boxes"]) for _, target in samples)
    assert 0 < kept < sum(record.train.sum() for record in module.splits["train"][:8])


def test_a_horizontal_flip_flips_the_boxes(bccd_voc: Path) -> None:
    module = voc(bccd_voc, train_transforms=FLIP)
    record = module.splits["train"][0]
    image, target = module.make_dataset("train", train=True)[0]
    boxes = record.boxes[record.train]
    flipped = np.stack([record.width - boxes[:, 2], boxes[:, 1], record.width - boxes[:, 0], boxes[:, 3]], axis=1)
    assert target["boxes"].numpy() == pytest.approx(flipped, abs=1e-3)
    assert target["labels"].tolist() == record.labels[record.train].tolist()
    plain, _ = module.make_dataset("train", train=False)[0]
    assert torch.equal(image, plain.flip(-1))


def test_empty_xml_boxes_are_left_out_of_training_with_a_warning_naming_the_file(
    bccd_voc: Path, tmp_path: Path, caplog: pytest.LogCaptureFixture
) -> None:
    root = make_voc(bccd_voc, tmp_path, {"train": ["BloodImage_00343"], "val": ["BloodImage_00001"]})
    with caplog.at_level(logging.WARNING):
        module = voc(root, train_transforms=FLIP)
    assert "BloodImage_00343.xml: RBC box xmin=181 ymin=329 xmax=181 ymax=329 is empty" in caplog.text
    record = module.splits["train"][0]
    _, target = module.make_dataset("train", train=True)[0]
    assert len(target["boxes"]) == record.train.sum() == len(record.boxes) - 1
    assert len(module.ground_truth("train")["annotations"]) == len(record.boxes)


def test_an_annotation_that_says_a_smaller_image_loses_no_box(
    bccd_voc: Path, tmp_path: Path, caplog: pytest.LogCaptureFixture
) -> None:
    # The XML says 320 wide; the JPEG is 640. Boxes in the right half are inside the real image and are kept.
    root = make_voc(bccd_voc, tmp_path, {"train": ["BloodImage_00001"], "val": ["BloodImage_00002"]})
    annotation = root / "Annotations" / "BloodImage_00001.xml"
    tree = ET.parse(annotation)
    tree.getroot().find("size/width").text = "320"
    tree.write(annotation)
    right_half = sum(float(box.findtext("xmin")) > 320 for box in tree.getroot().iter("bndbox"))
    assert right_half > 0
    with caplog.at_level(logging.WARNING):
        module = voc(root)
    record = module.splits["train"][0]
    assert (record.width, record.height) == (640, 480) and record.train.all() and module.box_problems == []
    assert module.size_corrections == [f"{record.path}: 640x480, its annotation says 320x480"]
    assert "used at their own size" in caplog.text
    _, target = module.make_dataset("train", train=False)[0]
    assert len(target["boxes"]) == len(record.boxes) and (target["boxes"][:, 0] > 320).sum() == right_half
    assert module.ground_truth("train")["images"][0]["width"] == 640
    problems = check_dataset(module).problems  # cvkit-data check still names the annotation's fault, once
    assert problems["size_differs_from_annotation"] == module.size_corrections
    assert problems["boxes_left_out_of_training"] == []


def test_test_split_is_optional_and_class_names_can_be_given(bccd_voc: Path, tmp_path: Path) -> None:
    module = voc(small_voc(bccd_voc, tmp_path), class_names=["WBC", "RBC", "Platelets"])
    assert module.split_sizes() == {"train": 3, "val": 2} and not module.has_split("test")
    assert module.class_names == ["WBC", "RBC", "Platelets"]
    wbc = ET.parse(module.splits["train"][0].path.parents[1] / "Annotations" / "BloodImage_00001.xml")
    assert wbc.find("object/name").text == "WBC" and module.splits["train"][0].labels[0] == 1


def break_annotations(root: Path) -> None:
    shutil.rmtree(root / "Annotations")


def unknown_class(root: Path) -> None:
    path = root / "Annotations" / "BloodImage_00001.xml"
    path.write_text(path.read_text().replace("<name>WBC</name>", "<name>Neutrophil</name>", 1))


def missing_image(root: Path) -> None:
    (root / "JPEGImages" / "BloodImage_00001.jpg").unlink()


def malformed_xml(root: Path) -> None:
    path = root / "Annotations" / "BloodImage_00001.xml"
    path.write_text(path.read_text()[:300])


@pytest.mark.parametrize(
    ("damage", "options", "message"),
    [
        (break_annotations, {}, "Annotations is missing"),
        (
            unknown_class,
            {"class_names": CLASSES},
            "BloodImage_00001.xml: class 'Neutrophil' is not in data.class_names",
        ),
        (lambda root: None, {"val_split": "holdout"}, "ImageSets/Main/holdout.txt does not exist"),
        (missing_image, {}, "no image for id 'BloodImage_00001'"),
        (malformed_xml, {}, "BloodImage_00001.xml: malformed XML"),
    ],
)
def test_voc_errors_name_the_path(bccd_voc: Path, tmp_path: Path, damage, options, message) -> None:
    root = small_voc(bccd_voc, tmp_path)
    damage(root)
    with pytest.raises(CvkitError, match=message) as caught:
        voc(root, **options)
    assert str(root) in str(caught.value)


CATEGORY_IDS = {"Platelets": 2, "RBC": 5, "WBC": 9}


def write_coco(bccd_voc: Path, ids: list[str], path: Path, *, empty: str | None = None, crowd: bool = False) -> None:
    """COCO instances JSON of BCCD images, converted from their XMLs; `empty` keeps no annotation, and the
    first annotation is a crowd one when `crowd`."""
    images, annotations = [], []
    for number, image_id in enumerate(ids, 10):
        images.append({"id": number, "file_name": f"{image_id}.jpg", "width": 640, "height": 480})
        if image_id == empty:
            continue
        for obj in ET.parse(bccd_voc / "Annotations" / f"{image_id}.xml").findall("object"):
            x0, y0, x1, y1 = (float(obj.find(f"bndbox/{tag}").text) for tag in ("xmin", "ymin", "xmax", "ymax"))
            annotations.append(
                {
                    "id": len(annotations) + 100,
                    "image_id": number,
                    "category_id": CATEGORY_IDS[obj.find("name").text],
                    "bbox": [x0 - 1, y0 - 1, x1 - x0 + 1, y1 - y0 + 1],
                    "area": (x1 - x0 + 1) * (y1 - y0 + 1),
                    "iscrowd": int(crowd and not annotations),
                }
            )
    categories = [{"id": category, "name": name} for name, category in reversed(CATEGORY_IDS.items())]
    path.write_text(json.dumps({"images": images, "annotations": annotations, "categories": categories}))


@pytest.fixture
def coco_files(bccd_voc: Path, tmp_path: Path) -> dict[str, str]:
    train_ids, val_ids = split_ids(bccd_voc, "train")[:3], split_ids(bccd_voc, "val")[:2]
    write_coco(bccd_voc, train_ids, tmp_path / "train.json", empty=train_ids[1], crowd=True)
    write_coco(bccd_voc, val_ids, tmp_path / "val.json", crowd=True)
    images = str(bccd_voc / "JPEGImages")
    return {
        "train_images": images,
        "train_annotations": str(tmp_path / "train.json"),
        "val_images": images,
        "val_annotations": str(tmp_path / "val.json"),
    }


def coco(files: dict[str, str], **kwargs) -> CocoDetectionDataModule:
    module = CocoDetectionDataModule(**files, batch_size=3, num_workers=0, **kwargs)
    module.setup()
    return module


def test_coco_maps_category_ids_to_contiguous_labels_and_back(coco_files: dict[str, str]) -> None:
    COCO = pytest.importorskip("pycocotools.coco", reason="pycocotools is not installed").COCO
    module = coco(coco_files, train_transforms=[])
    assert module.class_names == CLASSES and module.label_to_category == [2, 5, 9]
    assert module.split_sizes() == {"train": 3, "val": 2}
    original = json.loads(Path(coco_files["train_annotations"]).read_text())
    records = module.splits["train"]
    first = original["annotations"][0]
    assert first["iscrowd"] == 1 and records[0].labels[0] == [2, 5, 9].index(first["category_id"]) + 1

    images, targets = next(iter(module.train_dataloader()))
    check_batch((images, targets), 3)
    by_id = {target["image_id"]: target for target in targets}
    assert by_id[11]["boxes"].shape == (0, 4) and by_id[11]["labels"].shape == (0,)  # the empty image stays
    assert len(by_id[10]["boxes"]) == len(records[0].boxes) - 1  # the crowd box is not a training target

    ground_truth = module.ground_truth("train")
    assert len(ground_truth["annotations"]) == len(original["annotations"])
    assert [a["iscrowd"] for a in ground_truth["annotations"]] == [a["iscrowd"] for a in original["annotations"]]
    assert [a["category_id"] for a in ground_truth["annotations"]] == [
        a["category_id"] for a in original["annotations"]
    ]
    boxes = np.array([a["bbox"] for a in ground_truth["annotations"]])
    assert boxes == pytest.approx(np.array([a["bbox"] for a in original["annotations"]]))
    assert {c["id"]: c["name"] for c in ground_truth["categories"]} == {2: "Platelets", 5: "RBC", 9: "WBC"}
    index = COCO()
    index.dataset = ground_truth
    index.createIndex()
    assert index.getAnnIds(imgIds=[11]) == []
    assert len(index.getAnnIds(imgIds=[10], iscrowd=False)) == len(records[0].boxes) - 1


def test_coco_errors_name_the_path(coco_files: dict[str, str], tmp_path: Path) -> None:
    broken = tmp_path / "broken.json"
    broken.write_text('{"images": [')
    with pytest.raises(CvkitError, match=f"data.val_annotations: {broken} is not valid JSON"):
        coco({**coco_files, "val_annotations": str(broken)})
    missing = tmp_path / "nowhere.json"
    with pytest.raises(CvkitError, match=f"data.train_annotations: {missing} does not exist"):
        coco({**coco_files, "train_annotations": str(missing)})
    content = json.loads(Path(coco_files["val_annotations"]).read_text())
    content["annotations"][0]["category_id"] = 7
    unknown = tmp_path / "unknown.json"
    unknown.write_text(json.dumps(content))
    with pytest.raises(CvkitError, match=f"{unknown} annotation 100 has category_id 7; the categories are"):
        coco({**coco_files, "val_annotations": str(unknown)})
    content["annotations"][0].update(category_id=5, image_id=99)
    unknown.write_text(json.dumps(content))
    with pytest.raises(CvkitError, match="refers to image 99, not in its images"):
        coco({**coco_files, "val_annotations": str(unknown)})


def test_evaluation_transforms_must_keep_the_image_size(bccd_voc: Path, tmp_path: Path) -> None:
    resize = [{"_target_": "albumentations.Resize", "height": 100, "width": 100}]
    module = voc(small_voc(bccd_voc, tmp_path), eval_transforms=resize)
    with pytest.raises(
        CvkitError, match="data.eval_transforms turned .*BloodImage_\\d+.jpg \\(640x480\\) into 100x100"
    ):
        next(iter(module.val_dataloader()))


def test_global_batch_size_sets_the_per_device_batch(bccd_voc: Path, tmp_path: Path) -> None:
    module = voc(small_voc(bccd_voc, tmp_path), global_batch_size=16)
    assert settle_batch_size(module, SimpleNamespace(world_size=2, accumulate_grad_batches=2), None, None, "") == 4
    with pytest.raises(CvkitError, match="data.min_box_visibility must be between 0 and 1"):
        voc(bccd_voc, min_box_visibility=1.5)


def test_coco_boxes_of_negative_size_are_dropped_with_a_warning_unless_strict(
    coco_files: dict[str, str], tmp_path: Path, caplog: pytest.LogCaptureFixture
) -> None:
    content = json.loads(Path(coco_files["val_annotations"]).read_text())
    bad = content["annotations"][1]
    bad["bbox"][3] = -bad["bbox"][3]
    image = next(image for image in content["images"] if image["id"] == bad["image_id"])
    path = tmp_path / "negative.json"
    path.write_text(json.dumps(content))
    files = {**coco_files, "val_annotations": str(path)}
    with caplog.at_level(logging.WARNING):
        module = coco(files)
    named = f"annotation {bad['id']} of image {image['id']} ({image['file_name']}) has bbox {bad['bbox']}"
    assert named in caplog.text and "negative width or height" in caplog.text
    boxes = module.ground_truth("val")["annotations"]
    assert len(boxes) == len(content["annotations"]) - 1 and all(min(box["bbox"][2:]) >= 0 for box in boxes)
    with pytest.raises(CvkitError, match=f"data.val_annotations: {path} {re.escape(named)} of negative width"):
        coco(files, strict=True)
