"""data=coco_seg: COCO files written from real CamVid masks are drawn back into the same masks."""

import json
from pathlib import Path

import numpy as np
import pytest
from hydra.utils import instantiate
from PIL import Image
from pycocotools import mask as mask_utils
from pycocotools.coco import COCO

from cvkit.data import CocoSegmentationDataModule
from cvkit.errors import CvkitError
from tests.helpers.configs import compose_train
from tests.helpers.datasets import CAMVID_CLASSES, CAMVID_IGNORE
from tests.helpers.datasets import IMAGENET_MEAN as MEAN
from tests.helpers.datasets import RESIZE_TO_TEST_SIZE as RESIZE
from tests.helpers.datasets import SEGMENTATION_TEST_SIZE as SMALL

CATEGORY_IDS = [10 * (index + 1) for index in range(len(CAMVID_CLASSES))]  # 10, 20, ..., 110: not 0..K-1


def uncompressed_rle(region: np.ndarray) -> dict:
    """COCO's uncompressed RLE of a bool mask, computed here rather than by pycocotools: run lengths in
    column-major order, starting with a run of zeros."""
    flat = region.ravel(order="F").astype(np.int8)
    bounds = [0, *(np.flatnonzero(np.diff(flat)) + 1).tolist(), flat.size]
    counts = np.diff(bounds).tolist()
    return {"counts": [0, *counts] if flat[0] else counts, "size": list(region.shape)}


def compressed_rle(region: np.ndarray) -> dict:
    rle = mask_utils.encode(np.asfortranarray(region.astype(np.uint8)))
    return {"counts": rle["counts"].decode("ascii"), "size": rle["size"]}


def write_camvid_coco(root: Path, split: str, stems: list[str], path: Path) -> None:
    """A COCO file with one annotation per class present in each CamVid mask: compressed RLEs for even
    images, uncompressed ones for odd; categories listed out of id order."""
    images, annotations = [], []
    for number, stem in enumerate(stems):
        mask = np.asarray(Image.open(root / f"{split}annot" / f"{stem}.png"))
        images.append({"id": 100 + number, "file_name": f"{stem}.jpg", "height": mask.shape[0], "width": mask.shape[1]})
        for index in np.unique(mask[mask != CAMVID_IGNORE]).tolist():
            encode = compressed_rle if number % 2 == 0 else uncompressed_rle
            annotations.append(
                {
                    "id": len(annotations) + 1,
                    "image_id": 100 + number,
                    "category_id": CATEGORY_IDS[index],
                    "segmentation": encode(mask == index),
                    "iscrowd": number % 2,
                }
            )
    categories = [{"id": CATEGORY_IDS[i], "name": name} for i, name in reversed(list(enumerate(CAMVID_CLASSES)))]
    path.write_text(json.dumps({"images": images, "annotations": annotations, "categories": categories}))


def stems(root: Path, split: str, count: int) -> list[str]:
    return [path.stem for path in sorted((root / split).glob("*.jpg"))[:count]]


@pytest.fixture(scope="module")
def camvid_coco(camvid: Path, tmp_path_factory: pytest.TempPathFactory) -> dict[str, str]:
    folder = tmp_path_factory.mktemp("coco_seg")
    files = {}
    for split, count in (("train", 3), ("val", 2)):
        write_camvid_coco(camvid, split, stems(camvid, split, count), folder / f"{split}.json")
        files |= {f"{split}_images": str(camvid / split), f"{split}_annotations": str(folder / f"{split}.json")}
    return files


def coco_seg(files: dict[str, str], **kwargs) -> CocoSegmentationDataModule:
    options = {"batch_size": 2, "num_workers": 0, "image_size": SMALL, "mean": MEAN, "std": MEAN, "ignore_index": 255}
    module = CocoSegmentationDataModule(**files, train_transforms=RESIZE, **{**options, **kwargs})
    module.setup()
    return module


def test_rle_annotations_draw_the_original_masks(camvid_coco: dict[str, str], camvid: Path) -> None:
    module = coco_seg(camvid_coco, background=None)
    assert module.class_names == CAMVID_CLASSES and module.split_sizes() == {"train": 3, "val": 2}
    for split in ("train", "val"):
        dataset = module.make_dataset(split, train=False)
        for index, stem in enumerate(stems(camvid, split, 2)):
            original = np.asarray(Image.open(camvid / f"{split}annot" / f"{stem}.png")).astype(np.int64)
            expected = np.where(original == CAMVID_IGNORE, 255, original)  # unlabelled pixels: no annotation -> ignored
            np.testing.assert_array_equal(dataset[index].mask.numpy(), expected)
    images, masks = next(iter(module.train_dataloader()))
    assert images.shape == (2, 3, *SMALL) and masks.shape == (2, *SMALL)
    counts = module.class_pixel_counts("val")
    originals = [np.asarray(Image.open(camvid / "valannot" / f"{s}.png")) for s in stems(camvid, "val", 2)]
    assert (
        counts.tolist()
        == np.bincount(np.concatenate([m[m != CAMVID_IGNORE] for m in originals]), minlength=11).tolist()
    )


def test_polygons_overlaps_and_background_match_pycocotools(camvid: Path, tmp_path: Path) -> None:
    stem = stems(camvid, "train", 1)[0]
    height, width = 360, 480
    square = [[40.0, 30.0, 200.0, 30.0, 200.0, 150.0, 40.0, 150.0]]
    triangle = [[150.0, 100.0, 300.0, 100.0, 225.0, 250.0]]
    inside = [[60.0, 50.0, 100.0, 50.0, 100.0, 90.0], [400.0, 300.0, 470.0, 300.0, 470.0, 350.0]]  # two parts
    content = {
        "images": [{"id": 7, "file_name": f"{stem}.jpg", "height": height, "width": width}],
        "annotations": [
            {"id": 1, "image_id": 7, "category_id": 3, "segmentation": square, "iscrowd": 0},
            {"id": 2, "image_id": 7, "category_id": 1, "segmentation": triangle, "iscrowd": 0},
            {"id": 3, "image_id": 7, "category_id": 3, "segmentation": inside, "iscrowd": 0},
        ],
        "categories": [{"id": 3, "name": "car"}, {"id": 1, "name": "person"}],
    }
    path = tmp_path / "train.json"
    path.write_text(json.dumps(content))
    files = {"train_images": str(camvid / "train"), "train_annotations": str(path)}
    module = coco_seg({**files, "val_images": files["train_images"], "val_annotations": str(path)})
    assert module.class_names == ["background", "person", "car"]

    reference = COCO(str(path))
    regions = {ann_id: reference.annToMask(reference.anns[ann_id]).astype(bool) for ann_id in (1, 2, 3)}
    expected = np.zeros((height, width), dtype=np.int64)
    expected[regions[1] | regions[3]] = 2
    expected[regions[2]] = 1
    expected[(regions[1] | regions[3]) & regions[2]] = 255
    assert (expected == 255).sum() > 100 and (expected == 1).sum() > 100 and (expected == 2).sum() > 100
    mask = module.make_dataset("train", train=False)[0].mask.numpy()
    np.testing.assert_array_equal(mask, expected)


def test_coco_seg_config_composes_and_loads(camvid_coco: dict[str, str], tmp_path: Path) -> None:
    paths = [f"data.{key}={value}" for key, value in camvid_coco.items()]
    cfg = compose_train(tmp_path, "task=segmentation", "data=coco_seg", *paths, "data.num_workers=0")
    module = instantiate(cfg.data, _recursive_=False)
    module.setup()
    assert module.class_names == ["background", *CAMVID_CLASSES] and module.ignore_index == 255
    images, masks = next(iter(module.val_dataloader()))
    assert images.shape == (2, 3, *module.image_size) and len(masks) == 2 and masks[0].shape == (360, 480)


def rewrite(files: dict[str, str], tmp_path: Path, change) -> dict[str, str]:
    content = json.loads(Path(files["val_annotations"]).read_text())
    change(content)
    path = tmp_path / "changed.json"
    path.write_text(json.dumps(content))
    return {**files, "val_annotations": str(path)}


def boxes_only(content: dict) -> None:
    for annotation in content["annotations"]:
        del annotation["segmentation"]
        annotation["bbox"] = [0, 0, 10, 10]


def short_polygon(content: dict) -> None:
    content["annotations"][0]["segmentation"] = [[1.0, 2.0, 3.0, 4.0]]


def wrong_rle_size(content: dict) -> None:
    content["annotations"][0]["segmentation"]["size"] = [100, 100]


@pytest.mark.parametrize(
    ("change", "message"),
    [
        (boxes_only, "annotation 1 \\(image 100\\) has no segmentation; data=coco_seg needs polygons"),
        (
            short_polygon,
            "annotation 1 \\(image 100\\) has a polygon of 2 point\\(s\\) \\[1.0, 2.0, 3.0, 4.0\\]; "
            "a polygon needs at least 3",
        ),
        (wrong_rle_size, "annotation 1 \\(image 100\\) has an RLE of size \\[100, 100\\], but its image is 360x480"),
    ],
)
def test_bad_segmentations_are_named_at_setup(camvid_coco: dict[str, str], tmp_path: Path, change, message) -> None:
    files = rewrite(camvid_coco, tmp_path, change)
    with pytest.raises(CvkitError, match=message) as caught:
        coco_seg(files)
    assert "changed.json" in str(caught.value)


def test_background_name_must_not_be_a_category(camvid_coco: dict[str, str]) -> None:
    with pytest.raises(CvkitError, match="data.background='Road' is also a category"):
        coco_seg(camvid_coco, background="Road")
