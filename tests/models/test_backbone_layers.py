"""The backbone inside every task's network, by family: all of its parameters and only them, at the depth timm's
grouping gives them; and a weights file into a feature network whose wrapper renamed its modules."""

from pathlib import Path

import pytest
import timm
import torch

from cvkit.models import backbone_layers, build_network
from cvkit.models.weights import load_weights_file

SEGMENTER = {"decoder": "unet", "decoder_widths": [32, 16, 8, 8, 8]}


def parameter_names(module: torch.nn.Module, prefix: str) -> set[str]:
    return {prefix + name for name, _ in module.named_parameters()}


@pytest.mark.parametrize(
    ("family", "name", "stem"),
    [
        ("resnet", "resnetv2_18", "stem_conv.weight"),  # features_only flattens its names (stages_0, stem_conv)
        ("inception", "inception_v3", "Conv2d_1a_3x3.conv.weight"),
        ("mobilenet", "mobilenetv3_small_050", "conv_stem.weight"),
        ("efficientnet", "efficientnet_b0", "conv_stem.weight"),
    ],
)
def test_a_segmenters_encoder_is_its_backbone_at_timms_depths(family: str, name: str, stem: str) -> None:
    network = build_network("segmentation", {"family": family, "name": name}, SEGMENTER, 3, [96, 96], True)
    layers = backbone_layers(network)
    assert set(layers.layer) == parameter_names(network.encoder, "encoder.")  # the encoder, all of it
    assert layers.layer[f"encoder.{stem}"] == layers.stage[f"encoder.{stem}"] == 0
    deepest = max(layers.layer.values())
    assert 0 < deepest < layers.num_layers - 1  # below the architecture's head
    assert layers.norms and all(name in dict(network.named_modules()) for name in layers.norms)


def test_a_vit_detectors_backbone_and_a_mobilenet_classifiers() -> None:
    model = {
        "detector": "fasterrcnn", "min_size": 64, "max_size": 64, "image_mean": [0.5] * 3, "image_std": [0.25] * 3,
        "anchor_sizes": None, "aspect_ratios": [1.0], "score_thresh": 0.05, "nms_thresh": 0.5,
        "detections_per_img": 10, "freeze_bn": None, "coco_weights": None,
    }  # fmt: skip
    vit = {"family": "vit", "name": "vit_tiny_patch16_224"}
    detector = build_network("detection", vit, model, 3, None, True)
    layers = backbone_layers(detector)
    assert set(layers.layer) == parameter_names(detector.backbone.body, "backbone.body.")
    assert layers.layer["backbone.body.model.patch_embed.proj.weight"] == 0
    assert layers.layer["backbone.body.model.blocks.11.mlp.fc2.weight"] == 12  # 12 blocks after the embedding
    classifier = build_network(
        "classification", {"family": "mobilenet", "name": "mobilenetv3_small_050"}, {}, 3, 64, True
    )
    layers = backbone_layers(classifier)
    # The head is the classifier alone: the 1x1 conv_head timm groups with it trains with the backbone.
    assert set(parameter_names(classifier, "")) - set(layers.layer) == {"classifier.weight", "classifier.bias"}
    assert layers.layer["conv_head.weight"] == layers.num_layers - 1


def test_timm_weights_load_into_a_feature_network_with_renamed_modules(tmp_path: Path) -> None:
    source = timm.create_model("resnetv2_18")
    torch.save(source.state_dict(), tmp_path / "resnetv2_18.pth")
    backbone = {"family": "resnet", "name": "resnetv2_18"}
    network = build_network("segmentation", backbone, SEGMENTER, 3, [64, 64], True)
    report = load_weights_file(network.encoder, tmp_path / "resnetv2_18.pth", "resnetv2_18")
    assert report.loaded == report.total and not report.missing and not report.skipped
    assert torch.equal(network.encoder.stages_3.blocks[1].conv2.weight, source.stages[3].blocks[1].conv2.weight)
