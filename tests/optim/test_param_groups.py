"""optimizer.backbone_lr_factor: the backbone's parameters at their own LR, through the whole schedule."""

import pytest
import torch

from cvkit.errors import CvkitError
from cvkit.models import backbone_parameters, build_classifier
from cvkit.models.detr import build_detr
from cvkit.optim import build_optimizer

pytest.importorskip("transformers", reason="the detr extra (transformers) is not installed")

ADAMW = {"_target_": "torch.optim.AdamW", "lr": 2.5e-4, "weight_decay": 1.25e-4, "no_bn_bias_decay": True}


def test_the_backbone_trains_at_its_factor_of_the_lr_and_the_schedule_scales_both() -> None:
    model = build_detr(
        detector="dfine", backbone={"family": "resnet", "name": "resnet18"}, num_classes=3, size=128,
        image_mean=[0.5] * 3, image_std=[0.25] * 3, score_thresh=0.05, detections_per_img=10, num_queries=30,
        decoder_layers=2, freeze_bn=None,
    )  # fmt: skip
    backbone = {id(p) for p in backbone_parameters(model)}
    assert backbone == {id(p) for p in model.network.model.backbone.levels.body.parameters()}
    optimizer = build_optimizer(
        model, {**ADAMW, "backbone_lr_factor": 0.05}, lr=1e-4, backbone=backbone_parameters(model)
    )
    for group in optimizer.param_groups:
        inside = {id(p) in backbone for p in group["params"]}
        assert len(inside) == 1  # a group is all backbone or none of it
        assert group["lr"] == pytest.approx(5e-6 if inside == {True} else 1e-4)
    assert {group["weight_decay"] for group in optimizer.param_groups} == {0.0, 1.25e-4}
    trainable = {id(p) for p in model.parameters() if p.requires_grad}
    assert {id(p) for group in optimizer.param_groups for p in group["params"]} == trainable
    schedule = torch.optim.lr_scheduler.LambdaLR(optimizer, lambda step: 0.5)
    schedule.step()
    assert sorted({group["lr"] for group in optimizer.param_groups}) == pytest.approx([2.5e-6, 5e-5])


def test_a_factor_for_a_network_without_a_told_apart_backbone_is_refused() -> None:
    classifier = build_classifier(family="resnet", name="resnet18", num_classes=3, image_size=64)
    with pytest.raises(CvkitError, match=r"optimizer.backbone_lr_factor=0.1: this network has no backbone"):
        build_optimizer(
            classifier, {**ADAMW, "backbone_lr_factor": 0.1}, lr=1e-3, backbone=backbone_parameters(classifier)
        )
