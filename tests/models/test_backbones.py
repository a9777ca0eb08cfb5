import os
import re
import subprocess
import sys
from pathlib import Path

import pytest
import timm
import torch

from cvkit.errors import CvkitError
from cvkit.models import build_classifier
from cvkit.models.segmenters import build_segmenter
from tests.helpers.steps import sgd_step

DETECTION_CONFIG = Path(__file__).parents[2] / "configs" / "task" / "detection.yaml"

# The smallest sensible variant of each family, at a small input it accepts.
FAMILY_CASES = [
    ("resnet", "resnet18", 32),
    ("inception", "inception_v3", 75),
    ("mobilenet", "mobilenetv3_small_100", 32),
    ("efficientnet", "efficientnet_b0", 32),
    ("vit", "vit_tiny_patch16_224", 32),
]


@pytest.mark.parametrize(("family", "name", "size"), FAMILY_CASES)
def test_every_family_trains_a_step(family: str, name: str, size: int) -> None:
    torch.manual_seed(0)
    model = build_classifier(family=family, name=name, num_classes=3, image_size=size)
    images, labels = torch.randn(4, 3, size, size), torch.tensor([0, 1, 2, 1])
    sgd_step(model, torch.nn.functional.cross_entropy(model(images), labels))
    assert model(images).shape == (4, 3)


@pytest.mark.parametrize(
    ("family", "name", "size", "message"),
    [
        ("inception", "inception_v3", 64, "too small for inception_v3: it needs at least 75 px"),
        ("vit", "vit_tiny_patch16_224", 40, "not a multiple of vit_tiny_patch16_224's patch size 16; use 32 or 48"),
        ("resnet", "vit_tiny_patch16_224", 32, "is not a resnet model"),
        ("mobilenet", "mobilenet_v9", 32, "is not a timm model; mobilenet models include"),
        ("convnext", "convnext_tiny", 32, "backbone.family='convnext' is not one of"),
    ],
)
def test_unsupported_inputs_are_rejected_before_training(family: str, name: str, size: int, message: str) -> None:
    with pytest.raises(CvkitError, match=re.escape(message)):
        build_classifier(family=family, name=name, num_classes=3, image_size=size)


def test_local_weights_file_is_loaded(tmp_path: Path) -> None:
    source = timm.create_model("resnet18", num_classes=1000)
    weights = tmp_path / "resnet18.pth"
    torch.save(source.state_dict(), weights)
    model = build_classifier(family="resnet", name="resnet18", num_classes=3, image_size=32, weights=str(weights))
    assert torch.equal(model.conv1.weight, source.conv1.weight)
    assert model.fc.out_features == 3  # the head is re-sized for the data's classes
    with pytest.raises(CvkitError, match="backbone.weights: .*missing.pth does not exist"):
        build_classifier(
            family="resnet", name="resnet18", num_classes=3, image_size=32, weights=str(tmp_path / "missing.pth")
        )


@pytest.mark.parametrize(
    "code",
    [
        "from cvkit.models import build_classifier\n"
        "build_classifier(family='resnet', name='resnet18', num_classes=3, image_size=32, pretrained=True)",
        "from cvkit.models import detection_network\n"
        "from omegaconf import OmegaConf\n"
        f"options = OmegaConf.to_container(OmegaConf.load({str(DETECTION_CONFIG)!r}).model)\n"
        "detection_network({'family': 'resnet', 'name': 'resnet18', 'pretrained': True}, {**options, 'detector': "
        "'fcos'}, 3, None, True)",
    ],
    ids=["classifier", "detector"],
)
def test_pretrained_without_network_fails_fast_with_advice(tmp_path: Path, code: str) -> None:
    # An empty hub cache and a hub address nothing listens on: the weights cannot be had.
    env = {**os.environ, "HF_HOME": str(tmp_path / "hf"), "HF_ENDPOINT": "http://127.0.0.1:9"}
    result = subprocess.run(
        [sys.executable, "-c", code], env=env, capture_output=True, text=True, timeout=120, check=False
    )
    assert result.returncode != 0
    assert "backbone.pretrained=true" in result.stderr and "backbone.weights=" in result.stderr
    # cvkit's own message: raised by the check before timm's download (which retries for about a minute).
    assert "cannot be reached" in result.stderr


def test_stem_pool_false_keeps_twice_the_resolution_for_small_images() -> None:
    images = torch.randn(2, 3, 28, 28)
    pooled = build_classifier(family="resnet", name="resnet18", num_classes=3, image_size=28)
    unpooled = build_classifier(family="resnet", name="resnet18", num_classes=3, image_size=28, stem_pool=False)
    assert pooled.forward_features(images).shape[-2:] == (1, 1)
    assert unpooled.forward_features(images).shape[-2:] == (2, 2)
    assert unpooled(images).shape == (2, 3)
    with pytest.raises(CvkitError, match="mobilenetv3_small_100 has no stem max-pool to remove"):
        build_classifier(
            family="mobilenet", name="mobilenetv3_small_100", num_classes=3, image_size=32, stem_pool=False
        )


def test_stem_pool_false_is_refused_for_detection_and_segmentation() -> None:
    backbone = {"family": "resnet", "name": "resnet18", "stem_pool": False}
    with pytest.raises(CvkitError, match="backbone.stem_pool=false is for classifiers"):
        build_segmenter(backbone=backbone, num_classes=3, decoder="unet", decoder_widths=[32, 16])
