"""RT-DETR v2 and D-FINE (transformers) on every backbone family, on real coco128 images: builds, trains a step
with every parameter in the graph (an image without boxes, a batch without any), and post-processes its
outputs exactly as transformers' own image processor does."""

from __future__ import annotations

from pathlib import Path

import pytest
import torch
from omegaconf import OmegaConf

from cvkit import compat
from cvkit.errors import CvkitError
from cvkit.models import build_network
from cvkit.models.detr import DetrDetector, build_detr
from cvkit.models.networks import detector_input
from tests.helpers.steps import sgd_step
from tests.models.test_detectors import EFFICIENTNET, INCEPTION, MOBILENET, RESNET, VIT, fit_batchnorm_statistics
from tests.models.test_instance_segmenters import coco_batch  # noqa: F401 (a fixture)

transformers = pytest.importorskip("transformers", reason="the detr extra (transformers) is not installed")

OPTIONS = {
    "image_mean": [0.485, 0.456, 0.406],
    "image_std": [0.229, 0.224, 0.225],
    "score_thresh": 0.0,  # keep every detection, to check where they lie
    "detections_per_img": 30,
    "num_queries": 60,
    "decoder_layers": 2,
    "freeze_bn": None,
}
CASES = [(detector, backbone) for detector in ("rtdetr", "dfine") for backbone in (RESNET, MOBILENET, EFFICIENTNET)]
CASES += [("dfine", INCEPTION), ("rtdetr", VIT)]  # resized Inception maps; a ViT's simple pyramid


def detr(detector: str, backbone: dict, num_classes: int, size: int = 128) -> DetrDetector:
    return build_detr(detector=detector, backbone=backbone, num_classes=num_classes, size=size, **OPTIONS)


@pytest.mark.parametrize(("name", "backbone"), CASES, ids=[f"{d}-{b['family']}" for d, b in CASES])
def test_detr_trains_a_step_and_detects_in_image_coordinates(name: str, backbone: dict, coco_batch) -> None:  # noqa: F811
    """Three real images (the third without objects); every trainable parameter gets a gradient, so DDP
    needs no search for unused ones."""
    torch.manual_seed(0)
    images, targets, classes = coco_batch
    targets = [{"boxes": t["boxes"], "labels": t["labels"]} for t in targets]
    model = detr(name, backbone, classes)
    model.train()
    losses = model(images, targets)
    assert {"loss_vfl", "loss_bbox", "loss_giou"} <= set(losses)
    sgd_step(model, sum(losses.values()))
    assert not [n for n, p in model.named_parameters() if p.requires_grad and p.grad is None]
    fit_batchnorm_statistics(model, images, targets)
    model.eval()
    with torch.no_grad():
        found = model(images)
    for image, detections in zip(images, found, strict=True):
        height, width = image.shape[-2:]
        assert len(detections["boxes"]) == OPTIONS["detections_per_img"]
        boxes = detections["boxes"]
        assert (boxes >= 0).all() and (boxes[:, 2] <= width).all() and (boxes[:, 3] <= height).all()
        assert (boxes[:, 2:] >= boxes[:, :2]).all() and (
            (detections["labels"] >= 1) & (detections["labels"] <= classes)
        ).all()


@pytest.mark.parametrize("name", ["rtdetr", "dfine"])
def test_a_batch_without_boxes_keeps_every_parameter_in_the_graph(name: str, coco_batch) -> None:  # noqa: F811
    """The denoising queries need boxes: without any, the library leaves its class embedding out of the graph,
    which DDP (find_unused_parameters off) would wait on forever; cvkit ties it in at weight 0."""
    images, targets, classes = coco_batch
    model = detr(name, RESNET, classes).train()
    losses = model([images[2]], [{"boxes": targets[2]["boxes"], "labels": targets[2]["labels"]}])
    loss = sum(losses.values())
    assert torch.isfinite(loss)
    loss.backward()
    assert not [n for n, p in model.named_parameters() if p.requires_grad and p.grad is None]
    assert compat.detr_denoising_embedding(model.network).weight.grad.abs().sum() == 0


def test_detections_are_what_transformers_post_processing_gives(coco_batch) -> None:  # noqa: F811
    """cvkit's post-processing against the library's reference (RTDetrImageProcessor, its focal-loss variant):
    the same boxes, scores and labels (labels 1-based in cvkit), boxes clipped to the image."""
    images, _, classes = coco_batch
    torch.manual_seed(0)
    model = detr("rtdetr", RESNET, classes).eval()
    with torch.no_grad():
        output = model.network(pixel_values=model.batch(images))
    sizes = [image.shape[-2:] for image in images]
    ours = model.detections(output.logits, output.pred_boxes, sizes)
    processor = transformers.RTDetrImageProcessor()
    reference = processor.post_process_object_detection(
        output, threshold=0.0, target_sizes=[tuple(size) for size in sizes], use_focal_loss=True
    )
    for mine, theirs, (height, width) in zip(ours, reference, sizes, strict=True):
        top = theirs["scores"].argsort(descending=True, stable=True)[: OPTIONS["detections_per_img"]]
        clipped = theirs["boxes"][top].clamp(min=0)
        clipped = torch.min(clipped, torch.tensor([width, height, width, height], dtype=clipped.dtype))
        assert torch.allclose(mine["scores"], theirs["scores"][top])
        assert torch.equal(mine["labels"], theirs["labels"][top] + 1)
        assert torch.allclose(mine["boxes"], clipped, atol=1e-4)


def test_the_library_layout_cvkit_relies_on() -> None:
    """compat.use_detr_backbone rebuilds encoder_input_proj as transformers' __init__ builds it: the layer
    types of the library's own must match (a failure names what changed upstream)."""
    for config_class, model_class in (
        (transformers.RTDetrV2Config, transformers.RTDetrV2ForObjectDetection),
        (transformers.DFineConfig, transformers.DFineForObjectDetection),
    ):
        backbone = transformers.TimmBackboneConfig(backbone="resnet18", out_indices=[2, 3, 4])
        config = config_class(num_labels=2, backbone_config=backbone, encoder_in_channels=[128, 256, 512])
        library = model_class(config).model
        assert type(library.backbone).__name__.endswith("ConvEncoder")
        assert library.backbone.intermediate_channel_sizes == [128, 256, 512]
        for projection in library.encoder_input_proj:
            assert [type(layer) for layer in projection] == [torch.nn.Conv2d, torch.nn.BatchNorm2d]
            assert projection[0].bias is None and projection[0].kernel_size == (1, 1)
        assert isinstance(library.denoising_class_embed, torch.nn.Embedding)


def test_min_size_must_be_a_multiple_of_32_and_anchor_sizes_unset() -> None:
    options = OmegaConf.to_container(OmegaConf.load(Path(__file__).parents[2] / "configs/task/detection.yaml").model)
    backbone = {**RESNET, "pretrained": False, "weights": None}
    with pytest.raises(CvkitError, match=r"task.model.min_size=200: dfine .* multiple of 32 .*; try 192"):
        detector_input(backbone, {**options, "detector": "dfine", "min_size": 200}, None)
    with pytest.raises(CvkitError, match="task.model.anchor_sizes is for anchor-based detectors; rtdetr"):
        build_network("detection", backbone, {**options, "detector": "rtdetr", "anchor_sizes": [32] * 4}, 3, None, True)
