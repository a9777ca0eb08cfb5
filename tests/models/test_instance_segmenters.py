"""Mask R-CNN on every backbone family, on real COCO images and their polygon and RLE masks: builds, trains a
step (the mask loss among its losses), and predicts masks at each image's own size."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest
import torch
from PIL import Image
from pycocotools.coco import COCO

from cvkit.errors import CvkitError
from cvkit.models.instance_segmenters import build_instance_segmenter
from tests.helpers.steps import sgd_step
from tests.models.test_detectors import EFFICIENTNET, INCEPTION, MOBILENET, RESNET, VIT, fit_batchnorm_statistics

KNOBS = {
    "min_size": 128,
    "max_size": 160,
    "image_mean": [0.485, 0.456, 0.406],
    "image_std": [0.229, 0.224, 0.225],
    "anchor_sizes": None,
    "aspect_ratios": [0.5, 1.0, 2.0],
    "score_thresh": 0.0,  # keep every detection, to check the masks' shapes
    "nms_thresh": 0.5,
    "detections_per_img": 20,
    "mask_resolution": 28,
    "freeze_bn": None,
}
# 000000000009.jpg: bowls, broccoli, an orange (polygons); 000000000149.jpg: a crowd RLE among polygons;
# 000000000250.jpg: no object at all.
IMAGES = ("000000000009.jpg", "000000000149.jpg", "000000000250.jpg")


@pytest.fixture(scope="module")
def coco_batch(coco128: Path) -> tuple[list[torch.Tensor], list[dict[str, torch.Tensor]], int]:
    """Three coco128 images as float tensors and their targets: boxes (xyxy), labels 1..K (K: the file's
    categories, in id order) and one binary mask per object, drawn by pycocotools from polygons and RLE."""
    coco = COCO(str(coco128 / "annotations" / "instances_train2017.json"))
    label_of = {category: index + 1 for index, category in enumerate(sorted(coco.getCatIds()))}
    by_name = {info["file_name"]: info for info in coco.dataset["images"]}
    images, targets = [], []
    for name in IMAGES:
        info = by_name[name]
        pixels = np.asarray(Image.open(coco128 / "images" / "train2017" / name).convert("RGB"))
        images.append(torch.from_numpy(pixels).permute(2, 0, 1).float() / 255)
        objects = coco.loadAnns(coco.getAnnIds(imgIds=info["id"]))
        x, y, w, h = (np.array([o["bbox"][i] for o in objects], dtype=np.float32).reshape(-1) for i in range(4))
        masks = np.stack([coco.annToMask(o) for o in objects]) if objects else np.zeros((0, *pixels.shape[:2]))
        targets.append(
            {
                "boxes": torch.from_numpy(np.stack([x, y, x + w, y + h], axis=1)),
                "labels": torch.tensor([label_of[o["category_id"]] for o in objects], dtype=torch.int64),
                "masks": torch.from_numpy(masks.astype(np.uint8)),
            }
        )
    assert [len(t["labels"]) for t in targets][2] == 0 and any(o["iscrowd"] for o in coco.loadAnns(coco.getAnnIds()))
    return images, targets, len(label_of)


@pytest.mark.parametrize("backbone", [RESNET, MOBILENET, EFFICIENTNET, INCEPTION, VIT], ids=lambda b: b["family"])
def test_mask_rcnn_trains_a_step_and_predicts_masks_at_image_size(backbone: dict, coco_batch: tuple) -> None:
    images, targets, num_classes = coco_batch
    torch.manual_seed(0)
    model = build_instance_segmenter(backbone=backbone, num_classes=num_classes, **KNOBS)
    model.train()
    losses = model(images, targets)
    assert {"loss_mask", "loss_classifier", "loss_box_reg", "loss_objectness"} <= set(losses)
    sgd_step(model, sum(losses.values()))
    fit_batchnorm_statistics(model, images, targets)
    model.eval()
    with torch.no_grad():
        found = model(images)
    for image, output in zip(images, found):
        masks = output["masks"]
        assert masks.shape == (len(output["boxes"]), 1, *image.shape[1:])  # pasted at the image's own size
        assert masks.numel() == 0 or 0.0 <= masks.min() <= masks.max() <= 1.0  # per-pixel probabilities
    assert sum(len(output["boxes"]) for output in found) > 0


def test_an_odd_mask_resolution_is_refused_with_the_reason() -> None:
    with pytest.raises(CvkitError, match="task.model.mask_resolution=27: .*even"):
        build_instance_segmenter(backbone=RESNET, num_classes=3, **{**KNOBS, "mask_resolution": 27})


def test_the_task_network_builds_mask_rcnn_or_loads_torchvisions_coco_one(tmp_path: Path) -> None:
    """task=instance_segmentation's network: Mask R-CNN on the backbone config, or with ``coco_weights``
    torchvision's COCO-trained one (all but its per-class outputs loaded), the same architecture again without
    weights for loading a trained run into."""
    from torchvision.models import detection
    from torchvision.models.detection import MaskRCNN

    from cvkit.models.networks import build_network

    model = {**KNOBS, "coco_weights": None}
    assert isinstance(build_network("instance_segmentation", RESNET, model, 3, None, True), MaskRCNN)
    torch.manual_seed(0)
    coco = detection.maskrcnn_resnet50_fpn(weights=None, weights_backbone=None, num_classes=91).state_dict()
    torch.save(coco, tmp_path / "maskrcnn.pth")
    resnet50 = {**RESNET, "name": "resnet50"}
    model = {**KNOBS, "anchor_sizes": None, "coco_weights": str(tmp_path / "maskrcnn.pth")}
    loaded = build_network("instance_segmentation", resnet50, model, 3, None, True).state_dict()
    assert torch.equal(loaded["roi_heads.mask_head.0.0.weight"], coco["roi_heads.mask_head.0.0.weight"])
    assert loaded["roi_heads.mask_predictor.mask_fcn_logits.weight"].shape[0] == 4  # 3 classes + background
    bare = build_network("instance_segmentation", resnet50, model, 3, None, False).state_dict()
    assert bare.keys() == loaded.keys()
