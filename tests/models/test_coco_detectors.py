"""Fine-tuning torchvision's COCO detectors from a local weights file, with the class scores re-sized."""

from pathlib import Path

import pytest
import torch
from omegaconf import OmegaConf
from timm.layers import freeze_batch_norm_2d
from torchvision.models import detection

from cvkit.errors import CvkitError
from cvkit.models.coco_detectors import build_coco_detector
from cvkit.models.detectors import ForegroundRetinaNet
from tests.helpers.configs import compose_train

SMALL = {"min_size": 64, "max_size": 96, "score_thresh": 0.0, "anchor_sizes": None}


def coco_file(tmp_path: Path, builder) -> tuple[Path, dict[str, torch.Tensor]]:
    """A file laid out as torchvision's COCO weights (91 classes, frozen BatchNorm), random values."""
    torch.manual_seed(0)
    model = freeze_batch_norm_2d(builder(weights=None, weights_backbone=None, num_classes=91))
    path = tmp_path / f"{builder.__name__}.pth"
    torch.save(model.state_dict(), path)
    return path, model.state_dict()


@pytest.mark.parametrize(
    ("detector", "builder", "class_scores"),
    [
        ("fasterrcnn", detection.fasterrcnn_resnet50_fpn, "roi_heads.box_predictor."),
        ("retinanet", detection.retinanet_resnet50_fpn, "head.classification_head.cls_logits."),
        (
            "maskrcnn",
            detection.maskrcnn_resnet50_fpn,
            ("roi_heads.box_predictor.", "roi_heads.mask_predictor.mask_fcn_logits."),
        ),
    ],
)
def test_coco_weights_load_except_the_class_scores(tmp_path: Path, detector, builder, class_scores) -> None:
    path, coco = coco_file(tmp_path, builder)
    model = build_coco_detector({"detector": detector, "coco_weights": str(path), **SMALL}, "resnet50", 3)
    state = model.state_dict()
    for key, value in coco.items():
        if key.startswith(class_scores):
            assert state[key].shape != value.shape  # re-sized for 3 classes + background
        else:
            assert torch.equal(state[key], value), key
    assert (
        not model.backbone.body.conv1.weight.requires_grad and model.backbone.body.layer2[0].conv1.weight.requires_grad
    )
    if detector == "retinanet":
        assert isinstance(model, ForegroundRetinaNet)
    images = [torch.rand(3, 60, 80)]
    targets = [{"boxes": torch.tensor([[5.0, 5.0, 40.0, 30.0]]), "labels": torch.tensor([2])}]
    if detector == "maskrcnn":
        targets[0]["masks"] = torch.zeros(1, 60, 80, dtype=torch.uint8)
        targets[0]["masks"][0, 5:30, 5:40] = 1
    model.train()
    assert torch.isfinite(sum(model(images, targets).values()))
    model.eval()
    with torch.no_grad():
        labels = model(images)[0]["labels"]
    assert ((labels >= 1) & (labels <= 3)).all()


def test_unsupported_combinations_and_files_are_named(tmp_path: Path) -> None:
    with pytest.raises(CvkitError, match="mask_resolution must be 28 with task.model.coco_weights"):
        build_coco_detector({"detector": "maskrcnn", "coco_weights": "x.pth", "mask_resolution": 14}, "resnet50", 3)
    with pytest.raises(CvkitError, match="no COCO-trained ssdlite on resnet50; it has: task.model.detector=fasterrcnn"):
        build_coco_detector({"detector": "ssdlite", "coco_weights": "x.pth", **SMALL}, "resnet50", 3)
    with pytest.raises(CvkitError, match="coco_weights='missing.pth': no such file"):
        build_coco_detector({"detector": "fcos", "coco_weights": "missing.pth", **SMALL}, "resnet50", 3)
    path, _ = coco_file(tmp_path, detection.fcos_resnet50_fpn)
    with pytest.raises(CvkitError, match="is not torchvision's fasterrcnn_resnet50_fpn"):
        build_coco_detector({"detector": "fasterrcnn", "coco_weights": str(path), **SMALL}, "resnet50", 3)


def test_the_task_config_reaches_the_coco_detector(tmp_path: Path, bccd_voc: Path) -> None:
    from cvkit.builders import build_datamodule
    from cvkit.models import detection_network

    path, _ = coco_file(tmp_path, detection.fasterrcnn_resnet50_fpn)
    overrides = ["task=detection", "data=voc", f"data.root={bccd_voc}", "backbone.name=resnet50"]
    cfg = compose_train(tmp_path, *overrides, f"task.model.coco_weights={path}", "task.model.min_size=96")
    backbone, model_cfg = OmegaConf.to_container(cfg.backbone), OmegaConf.to_container(cfg.task.model)
    model = detection_network(backbone, model_cfg, build_datamodule(cfg).num_classes, None, True)
    assert model.roi_heads.box_predictor.cls_score.out_features == 4  # Platelets, RBC, WBC + background
    assert model.transform.min_size == (96,)
