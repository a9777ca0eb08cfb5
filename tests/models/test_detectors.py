"""Every torchvision detector on several backbone families: builds, trains a step, detects."""

from pathlib import Path

import pytest
import timm
import torch
from omegaconf import OmegaConf
from torch import nn

from cvkit.errors import CvkitError
from cvkit.models.detectors import build_detector, level_strides
from cvkit.models.networks import DETR_OPTIONS
from tests.helpers.steps import sgd_step

# The detector knobs as configs/task/detection.yaml sets them (the code has no defaults of its own).
OPTIONS = OmegaConf.to_container(OmegaConf.load(Path(__file__).parents[2] / "configs/task/detection.yaml").model)
for key in ("coco_weights", *DETR_OPTIONS):  # torchvision's COCO models, and the DETR detectors' (test_detr.py)
    OPTIONS.pop(key)


def detector(**given: object) -> torch.nn.Module:
    return build_detector(**{**OPTIONS, **given})


RESNET = {"family": "resnet", "name": "resnet18"}
MOBILENET = {"family": "mobilenet", "name": "mobilenetv3_small_100"}
EFFICIENTNET = {"family": "efficientnet", "name": "efficientnet_b0"}
INCEPTION = {"family": "inception", "name": "inception_v3"}
VIT = {"family": "vit", "name": "vit_tiny_patch16_224"}
CASES = [
    ("fasterrcnn", RESNET),
    ("fasterrcnn", VIT),  # a single-resolution network: the simple pyramid
    ("fasterrcnn", INCEPTION),
    ("retinanet", MOBILENET),
    ("retinanet", EFFICIENTNET),
    ("fcos", RESNET),
    ("fcos", MOBILENET),
    ("ssdlite", MOBILENET),
    ("ssdlite", VIT),
]


def images_and_targets() -> tuple[list[torch.Tensor], list[dict[str, torch.Tensor]]]:
    """Two images of different sizes, one with two boxes and one with none."""
    images = [torch.rand(3, 96, 128), torch.rand(3, 80, 80)]
    targets = [
        {"boxes": torch.tensor([[10.0, 12.0, 50.0, 60.0], [60.0, 20.0, 110.0, 90.0]]), "labels": torch.tensor([1, 3])},
        {"boxes": torch.zeros(0, 4), "labels": torch.zeros(0, dtype=torch.int64)},
    ]
    return images, targets


def fit_batchnorm_statistics(model: nn.Module, images: list[torch.Tensor], targets: list[dict]) -> None:
    """Set every BatchNorm's running statistics to those of one training-mode pass over `images`, as training
    leaves them. Eval mode of an untrained network normalises with the initial statistics (mean 0, variance 1)
    instead: deep backbones then overflow (Inception's last level reaches ~1e9) and nothing is detected."""
    norms = [module for module in model.modules() if isinstance(module, nn.modules.batchnorm._BatchNorm)]
    momenta = [norm.momentum for norm in norms]
    for norm in norms:
        norm.reset_running_stats()
        norm.momentum = None  # a cumulative average: after one pass, that pass's statistics
    model.train()
    with torch.no_grad():
        model(images, targets)
    for norm, momentum in zip(norms, momenta):
        norm.momentum = momentum


@pytest.mark.parametrize(("name", "backbone"), CASES, ids=[f"{d}-{b['family']}" for d, b in CASES])
def test_detector_trains_a_step_and_detects_in_image_coordinates(name: str, backbone: dict) -> None:
    torch.manual_seed(0)
    model = detector(  # score_thresh 0: keep every detection, to check where they lie
        detector=name, backbone=backbone, num_classes=3, min_size=96, max_size=128, score_thresh=0.0
    )
    images, targets = images_and_targets()
    model.train()
    losses = model(images, targets)
    assert len(losses) >= 2  # classification and box losses at least
    sgd_step(model, sum(losses.values()))
    fit_batchnorm_statistics(model, images, targets)
    model.eval()
    with torch.no_grad():
        detections = model(images)
    assert len(detections) == 2
    assert len(detections[0]["boxes"]) > 0  # every family detects something once its statistics fit its inputs
    for image, found in zip(images, detections):
        assert set(found) == {"boxes", "scores", "labels"}
        height, width = image.shape[1:]
        boxes = found["boxes"]
        assert (boxes >= -1e-3).all()
        assert (boxes[:, [0, 2]] <= width + 1e-3).all() and (boxes[:, [1, 3]] <= height + 1e-3).all()
        assert (boxes[:, 2:] >= boxes[:, :2]).all()
        assert ((found["scores"] >= 0) & (found["scores"] <= 1)).all()
        assert ((found["labels"] >= 1) & (found["labels"] <= 3)).all()


def test_pyramid_levels_and_anchor_sizes_must_agree() -> None:
    assert level_strides("fasterrcnn") == [8, 16, 32, 64]
    with pytest.raises(CvkitError, match="task.model.anchor_sizes has 2 sizes but retinanet predicts from 5 levels"):
        detector(detector="retinanet", backbone=RESNET, num_classes=3, anchor_sizes=[32, 64])
    with pytest.raises(CvkitError, match="task.model.detector='yolo' is not one of"):
        detector(detector="yolo", backbone=RESNET, num_classes=3)


def frozen_norms(model: torch.nn.Module) -> int:
    return sum(type(m).__name__.startswith("FrozenBatchNorm") for m in model.backbone.body.modules())


def test_loaded_weights_freeze_batchnorm_unless_told_otherwise(tmp_path) -> None:
    weights = tmp_path / "resnet18.pth"
    torch.save(timm.create_model("resnet18").state_dict(), weights)
    loaded = detector(detector="fcos", backbone={**RESNET, "weights": str(weights)}, num_classes=3)
    assert frozen_norms(loaded) > 0
    assert torch.equal(loaded.backbone.body.conv1.weight, torch.load(weights)["conv1.weight"])
    told = detector(detector="fcos", backbone={**RESNET, "weights": str(weights)}, num_classes=3, freeze_bn=False)
    assert frozen_norms(told) == 0
    assert frozen_norms(detector(detector="fcos", backbone=RESNET, num_classes=3)) == 0


def test_a_task_model_config_without_a_knob_or_with_an_unknown_one_is_named() -> None:
    from cvkit.models import detection_network

    without = {key: value for key, value in OPTIONS.items() if key != "max_size"}
    with pytest.raises(CvkitError, match=r"task.model has no \['max_size'\]"):
        detection_network(RESNET, without, 3, None, False)
    with pytest.raises(CvkitError, match="task.model.max_sise is not an option of this network"):
        detection_network(RESNET, {**OPTIONS, "max_sise": 800}, 3, None, False)
