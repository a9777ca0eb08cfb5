"""The optimizer's parameter groups: the head, the backbone at its factor of the LR, layer-wise LR decay by timm's
grouping; and the backbone's multiplier when it is frozen and unfrozen (cvkit.optim.Freezing)."""

import pytest
import torch

from cvkit.errors import CvkitError
from cvkit.models import backbone_layers, build_classifier, build_network
from cvkit.optim import Freezing, build_optimizer, optimizer_groups

ADAMW = {"_target_": "torch.optim.AdamW", "lr": 2.5e-4, "weight_decay": 1.25e-4, "no_bn_bias_decay": True}


def groups_of(model: torch.nn.Module, **config: object) -> list[dict]:
    layers = backbone_layers(model)
    return optimizer_groups(
        model, {**ADAMW, **config}, layers.layer if layers else None, layers.num_layers if layers else 0
    )


def factor_of(groups: list[dict], parameter: torch.nn.Parameter) -> float:
    (found,) = [group["lr_factor"] for group in groups if any(p is parameter for p in group["params"])]
    return found


def test_layer_decay_scales_each_layer_by_its_distance_from_the_head() -> None:
    model = build_classifier(family="resnet", name="resnet18", num_classes=3, image_size=32)
    groups = groups_of(model, backbone_lr_factor=0.5, layer_decay=0.8)
    # timm's grouping of a ResNet-18: the stem (layer 0), eight residual blocks (1-8), the head (9).
    assert factor_of(groups, model.conv1.weight) == pytest.approx(0.5 * 0.8**9)
    assert factor_of(groups, model.layer1[0].conv1.weight) == pytest.approx(0.5 * 0.8**8)
    assert factor_of(groups, model.layer4[1].bn2.bias) == pytest.approx(0.5 * 0.8)
    assert factor_of(groups, model.fc.weight) == factor_of(groups, model.fc.bias) == 1.0
    assert {g["name"] for g in groups} == {"head"} | {f"backbone.layer{i}" for i in range(9)}
    # timm's order: the groups without weight decay first; in each, the backbone from the stem up, then the head.
    assert [g["weight_decay"] for g in groups] == sorted(g["weight_decay"] for g in groups)
    assert [g["name"] for g in groups if g["weight_decay"]][::9] == ["backbone.layer0", "head"]
    taken = [id(p) for group in groups for p in group["params"]]
    assert sorted(taken) == sorted(id(p) for p in model.parameters())  # every parameter, once
    # no_bn_bias_decay: 1-d parameters and biases without weight decay, in every layer.
    assert {g["weight_decay"] for g in groups if g["name"] == "backbone.layer8"} == {0.0, 1.25e-4}
    optimizer = build_optimizer(groups, ADAMW, lr=1e-3)
    assert sorted({round(g["lr"], 12) for g in optimizer.param_groups})[-1] == 1e-3


def test_a_detectors_backbone_is_its_timm_body_at_its_factor_of_the_lr() -> None:
    pytest.importorskip("transformers", reason="the detr extra (transformers) is not installed")
    from cvkit.models.detr import build_detr

    model = build_detr(
        detector="dfine", backbone={"family": "resnet", "name": "resnet18"}, num_classes=3, size=128,
        image_mean=[0.5] * 3, image_std=[0.25] * 3, score_thresh=0.05, detections_per_img=10, num_queries=30,
        decoder_layers=2, freeze_bn=None,
    )  # fmt: skip
    groups = groups_of(model, backbone_lr_factor=0.05)
    body = {id(p) for p in model.network.model.backbone.levels.body.parameters()}
    for group in groups:
        inside = {id(p) in body for p in group["params"]}
        assert inside == {group["backbone"]}  # a group is all backbone or none of it
        assert group["lr_factor"] == (0.05 if group["backbone"] else 1.0)
    assert {id(p) for g in groups if g["backbone"] for p in g["params"]} == body
    optimizer = build_optimizer(groups, ADAMW, lr=1e-4)
    schedule = torch.optim.lr_scheduler.LambdaLR(optimizer, lambda step: 0.5)
    schedule.step()
    assert sorted({group["lr"] for group in optimizer.param_groups}) == pytest.approx([2.5e-6, 5e-5])


def test_a_network_without_a_timm_backbone_refuses_backbone_settings() -> None:
    unet_backbone, decoder = {"family": "unet", "depth": 2, "base_width": 4}, {"decoder": "unet", "decoder_widths": [8]}
    unet = build_network("segmentation", unet_backbone, decoder, 3, [32, 32], True)
    assert backbone_layers(unet) is None
    with pytest.raises(CvkitError, match=r"optimizer.layer_decay: this network has no timm backbone"):
        groups_of(unet, layer_decay=0.7)
    with pytest.raises(CvkitError, match=r"optimizer.layer_decay=1.5 must be in \(0, 1\]"):
        groups_of(build_classifier(family="resnet", name="resnet18", num_classes=3, image_size=32), layer_decay=1.5)


def test_the_backbones_multiplier_while_frozen_and_after_unfreezing() -> None:
    # The docstring's example: frozen in epochs 0 and 1, then from 0.1 to 1 over one epoch.
    freezing = Freezing(epochs=2, unfreeze_lr_start=0.1, unfreeze_warmup_epochs=1)
    assert [freezing.lr_factor(e) for e in (0.0, 1.0, 1.99, 2.0, 2.5, 3.0, 7.0)] == pytest.approx(
        [0.0, 0.0, 0.0, 0.1, 0.55, 1.0, 1.0]
    )
    assert [freezing.frozen(e) for e in range(4)] == [True, True, False, False]
    assert Freezing(always=True).lr_factor(5.0) == 0.0
    assert Freezing(stages=2).lr_factor(0.0) == 1.0  # a few stages frozen: the rest trains from the start


@pytest.mark.parametrize(
    ("settings", "message"),
    [
        ({"freeze": True, "freeze_epochs": 2}, "backbone.freeze=true freezes the backbone for the whole run"),
        ({"freeze_epochs": 5}, r"backbone.freeze_epochs=5 leaves no epoch of the 5 \(trainer.max_epochs\)"),
        ({"unfreeze_lr_start": 2.0}, r"backbone.unfreeze_lr_start=2.0 must be in \[0, 1\]"),
    ],
)
def test_freezing_settings_that_cannot_be_are_refused(settings: dict, message: str) -> None:
    with pytest.raises(CvkitError, match=message):
        Freezing.from_config(settings, max_epochs=5)


def test_without_backbone_settings_the_groups_are_timms_as_before() -> None:
    """A run without backbone settings gets timm's weight-decay groups, parameter for parameter and in timm's
    order: what cvkit built before the backbone had groups of its own, so that those checkpoints resume."""
    from timm.optim import param_groups_weight_decay

    model = build_classifier(family="resnet", name="resnet18", num_classes=3, image_size=32)
    ours, timms = groups_of(model), param_groups_weight_decay(model, weight_decay=1.25e-4)
    assert [[id(p) for p in g["params"]] for g in ours] == [[id(p) for p in g["params"]] for g in timms]
    assert [g["weight_decay"] for g in ours] == [g["weight_decay"] for g in timms]
