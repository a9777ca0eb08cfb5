"""Segmentation networks: logits at the input size for any size; every encoder family trains a step."""

import pytest
import torch
import torch.nn.functional as F

from cvkit.errors import CvkitError
from cvkit.models.segmenters import UNet, build_segmenter
from tests.helpers.steps import sgd_step

UNET = {"family": "unet", "depth": 3, "base_width": 8}
WIDTHS = [256, 128, 64, 32, 16]  # configs/task/segmentation.yaml's model.decoder_widths
ENCODERS = [
    {"family": "resnet", "name": "resnet18"},
    {"family": "mobilenet", "name": "mobilenetv3_small_100"},
    {"family": "efficientnet", "name": "efficientnet_b0"},
    {"family": "inception", "name": "inception_v3"},
    {"family": "vit", "name": "vit_tiny_patch16_224"},
]


@pytest.mark.parametrize(("height", "width"), [(64, 96), (37, 50), (8, 8), (17, 130)])
def test_unet_output_has_the_input_size(height: int, width: int) -> None:
    model = UNet(num_classes=5, depth=3, base_width=4).eval()
    with torch.no_grad():
        assert model(torch.rand(2, 3, height, width)).shape == (2, 5, height, width)


def test_unet_skip_connections_carry_fine_detail() -> None:
    # With every upsampling zeroed, only the full-resolution skip reaches the classifier: a one-pixel
    # change moves the logits near that pixel (receptive field: two conv blocks, 4 pixels) and nowhere else.
    torch.manual_seed(0)
    model = UNet(num_classes=2, depth=2, base_width=4).eval()
    with torch.no_grad():
        for up in model.up:
            up.weight.zero_()
            up.bias.zero_()
        images = torch.rand(1, 3, 16, 16)
        changed = images.clone()
        changed[..., 5, 7] += 1.0
        before, after = model(images), model(changed)
    assert not torch.allclose(before[..., 5, 7], after[..., 5, 7])
    assert torch.equal(before[..., 12, 14], after[..., 12, 14])


# The classic U-Net; the U-Net decoder on every encoder family; the DeepLabV3 head on two.
CASES = [
    (UNET, "unet"),
    *((encoder, "unet") for encoder in ENCODERS),
    (ENCODERS[0], "deeplabv3"),
    (ENCODERS[-1], "deeplabv3"),
]


@pytest.mark.parametrize(("backbone", "decoder"), CASES, ids=[f"{b['family']}-{d}" for b, d in CASES])
def test_every_family_trains_a_step_at_the_input_size(backbone: dict, decoder: str) -> None:
    torch.manual_seed(0)
    size = (96, 112) if backbone["family"] in ("inception", "vit") else (48, 80)
    model = build_segmenter(backbone=backbone, num_classes=4, decoder=decoder, decoder_widths=WIDTHS)
    images, masks = torch.rand(2, 3, *size), torch.randint(0, 4, (2, *size))
    logits = model(images)
    assert logits.shape == (2, 4, *size)
    sgd_step(model, F.cross_entropy(logits, masks))  # a finite loss whose step changes the weights


def test_bad_decoder_settings_are_named() -> None:
    with pytest.raises(CvkitError, match="task.model.decoder='fpn' is not one of"):
        build_segmenter(backbone=ENCODERS[0], num_classes=3, decoder="fpn", decoder_widths=WIDTHS)
    with pytest.raises(CvkitError, match="decoder_widths needs 4 widths"):
        build_segmenter(backbone=ENCODERS[0], num_classes=3, decoder="unet", decoder_widths=[64, 32])
