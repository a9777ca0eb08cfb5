"""torchvision detectors (Faster R-CNN, RetinaNet, FCOS, SSDlite) on any timm backbone of the families.

One adapter serves every family: timm's ``features_only`` model gives the maps at strides 8, 16 and 32
where the network has them (ResNet, Inception, MobileNet, EfficientNet); a network with a single
resolution (ViT, stride 16) gets them from its last map by a simple pyramid of up- and down-sampling
(ViTDet, Li et al. 2022). A feature pyramid network (torchvision's FPN) then gives every level the same
width, with the extra coarser levels each detector expects.
"""

from __future__ import annotations

from collections import OrderedDict
from collections.abc import Sequence
from functools import partial
from typing import Any

import torch
from timm.layers import freeze_batch_norm_2d
from torch import nn
from torchvision.models.detection import FCOS, FasterRCNN, RetinaNet
from torchvision.models.detection.anchor_utils import AnchorGenerator, DefaultBoxGenerator
from torchvision.models.detection.ssd import SSD
from torchvision.models.detection.ssdlite import SSDLiteHead
from torchvision.ops import FeaturePyramidNetwork, MultiScaleRoIAlign
from torchvision.ops.feature_pyramid_network import ExtraFPNBlock, LastLevelMaxPool, LastLevelP6P7

from cvkit.errors import CvkitError
from cvkit.models.backbones import create_feature_extractor

PYRAMID_STRIDES = (8, 16, 32)
DETECTORS = ("fasterrcnn", "retinanet", "fcos", "ssdlite")
TWO_STAGE_BOX_ROI = 7  # the box head's RoIAlign size, torchvision's for Faster and Mask R-CNN


class SimplePyramid(nn.Module):
    """ViTDet's simple feature pyramid: the maps at `strides` from one map at `stride`, by transposed
    convolutions (finer) and max pooling (coarser)."""

    def __init__(self, channels: int, stride: int, strides: Sequence[int]) -> None:
        super().__init__()
        self.scales = nn.ModuleList(self._scale(channels, stride / target) for target in strides)

    @staticmethod
    def _scale(channels: int, factor: float) -> nn.Module:
        if factor == 1:
            return nn.Identity()
        if factor > 1:  # finer: one stride-2 transposed convolution per octave
            octaves = [nn.ConvTranspose2d(channels, channels, 2, stride=2) for _ in range(int(factor).bit_length() - 1)]
            return nn.Sequential(*[layer for conv in octaves for layer in (conv, nn.GELU())][:-1])
        return nn.MaxPool2d(kernel_size=int(1 / factor), stride=int(1 / factor))

    def forward(self, feature: torch.Tensor) -> list[torch.Tensor]:
        return [scale(feature) for scale in self.scales]


class PyramidLevels(nn.Module):
    """A timm ``features_only`` network's maps at strides 8, 16 and 32 (``forward(images) -> list``): taken
    from the network where it has them, else built from its last map by a :class:`SimplePyramid`;
    ``channels`` lists their widths."""

    def __init__(self, body: nn.Module) -> None:
        super().__init__()
        self.body = body
        reductions = body.feature_info.reduction()
        if set(PYRAMID_STRIDES) <= set(reductions):
            self.simple_pyramid = None
            self.channels = [body.feature_info.channels()[reductions.index(s)] for s in PYRAMID_STRIDES]
            self.taken = [reductions.index(s) for s in PYRAMID_STRIDES]
        else:  # a single-resolution network: build the levels from its last map
            channels, stride = body.feature_info.channels()[-1], reductions[-1]
            self.simple_pyramid = SimplePyramid(channels, stride, PYRAMID_STRIDES)
            self.channels = [channels] * len(PYRAMID_STRIDES)
            self.taken = [len(reductions) - 1]

    def forward(self, images: torch.Tensor) -> list[torch.Tensor]:
        features = self.body(images)
        features = [features[i] for i in self.taken]
        return self.simple_pyramid(features[-1]) if self.simple_pyramid is not None else features


class PyramidBackbone(PyramidLevels):
    """A timm network as a detection backbone: ``forward(images) -> OrderedDict`` of FPN maps, all of
    ``out_channels`` channels, at strides 8, 16, 32 and those of `extra_blocks`."""

    def __init__(self, body: nn.Module, out_channels: int, extra_blocks: ExtraFPNBlock | None) -> None:
        super().__init__(body)
        self.fpn = FeaturePyramidNetwork(self.channels, out_channels, extra_blocks=extra_blocks)
        self.out_channels = out_channels

    def forward(self, images: torch.Tensor) -> OrderedDict[str, torch.Tensor]:
        return self.fpn(OrderedDict((str(i), f) for i, f in enumerate(super().forward(images))))


class ForegroundOnly:
    """For sigmoid-classifier detectors (RetinaNet, FCOS): they score every class index, the unused
    background 0 included, so drop the detections labelled 0 (targets never are) from what they return."""

    def forward(self, images: Any, targets: Any = None) -> Any:
        output = super().forward(images, targets)
        if self.training:  # the losses
            return output
        return [{key: value[found["labels"] > 0] for key, value in found.items()} for found in output]


class ForegroundRetinaNet(ForegroundOnly, RetinaNet):
    pass


class ForegroundFCOS(ForegroundOnly, FCOS):
    pass


def build_pyramid_backbone(
    *, out_channels: int = 256, extra_blocks: ExtraFPNBlock | None = None, **backbone: Any
) -> PyramidBackbone:
    """The timm network of the `backbone` config keys (see :func:`feature_body`) as a :class:`PyramidBackbone`."""
    return PyramidBackbone(feature_body(**backbone), out_channels, extra_blocks)


def feature_body(
    *,
    family: str,
    name: str,
    pretrained: bool = False,
    weights: str | None = None,
    freeze_bn: bool | None = None,
    **timm_kwargs: Any,
) -> nn.Module:
    """timm's ``features_only`` `name` of `family`. BatchNorm is frozen (as torchvision does for its detectors)
    when `freeze_bn` says so, or by default when pretrained weights are loaded: detection batches are too small
    for BatchNorm statistics."""
    body, loaded = create_feature_extractor(
        family=family,
        name=name,
        pretrained=pretrained,
        weights=weights,
        purpose="as a feature extractor",
        **timm_kwargs,
    )
    return freeze_batch_norm_2d(body) if (freeze_bn if freeze_bn is not None else loaded) else body


def level_strides(detector: str) -> list[int]:
    """The strides of the pyramid levels `detector` predicts from (the FPN's extra levels included)."""
    extra = {"fasterrcnn": [64], "retinanet": [64, 128], "fcos": [64, 128], "ssdlite": [64]}[detector]
    return [*PYRAMID_STRIDES, *extra]


def anchor_generator(
    anchor_sizes: Sequence[float] | None, aspect_ratios: Sequence[float], strides: Sequence[int], model: str
) -> AnchorGenerator:
    """One anchor size per pyramid level of `strides` (default 4 x the level's stride), each with every aspect
    ratio; `model` names the network in the error when the sizes do not match the levels."""
    sizes = list(anchor_sizes) if anchor_sizes is not None else [4 * s for s in strides]
    if len(sizes) != len(strides):
        raise CvkitError(
            f"task.model.anchor_sizes has {len(sizes)} sizes but {model} predicts from {len(strides)} levels "
            f"(strides {list(strides)}); give one size per level"
        )
    return AnchorGenerator(tuple((s,) for s in sizes), (tuple(aspect_ratios),) * len(sizes))


def roi_align(output_size: int) -> MultiScaleRoIAlign:
    """RoIAlign over the four FPN levels of a two-stage network (strides 8 to 64), as torchvision's R-CNNs pool."""
    return MultiScaleRoIAlign(featmap_names=["0", "1", "2", "3"], output_size=output_size, sampling_ratio=2)


def build_detector(
    *,
    detector: str,
    backbone: dict[str, Any],
    num_classes: int,
    min_size: int,
    max_size: int,
    image_mean: Sequence[float],
    image_std: Sequence[float],
    anchor_sizes: Sequence[float] | None,
    aspect_ratios: Sequence[float],
    score_thresh: float,
    nms_thresh: float,
    detections_per_img: int,
    freeze_bn: bool | None,
) -> nn.Module:
    """A torchvision `detector` for `num_classes` object classes (label 0 is the background) on the
    timm `backbone` (the backbone config group's keys). Images are resized so their short side is
    `min_size` (long side at most `max_size`; SSDlite: a `min_size` square) and normalised inside the
    model by `image_mean`/`image_std`. `anchor_sizes`: one size per level (default 4 x the level's
    stride); FCOS is anchor-free and ignores them. `freeze_bn`: see :func:`build_pyramid_backbone`. The
    values of every knob are ``task.model``'s (configs/task/detection.yaml): they have no defaults here."""
    if detector not in DETECTORS:
        raise CvkitError(f"task.model.detector={detector!r} is not one of {list(DETECTORS)}")
    strides = level_strides(detector)
    anchors = anchor_generator(anchor_sizes, aspect_ratios, strides, detector)
    extra = LastLevelMaxPool() if detector in ("fasterrcnn", "ssdlite") else LastLevelP6P7(256, 256)
    body = build_pyramid_backbone(**backbone, freeze_bn=freeze_bn, extra_blocks=extra)
    common = {"image_mean": list(image_mean), "image_std": list(image_std), "num_classes": num_classes + 1}
    resize = {"min_size": min_size, "max_size": max_size}
    if detector == "fasterrcnn":
        return FasterRCNN(
            body,
            **common,
            **resize,
            rpn_anchor_generator=anchors,
            box_roi_pool=roi_align(TWO_STAGE_BOX_ROI),
            box_score_thresh=score_thresh,
            box_nms_thresh=nms_thresh,
            box_detections_per_img=detections_per_img,
        )
    heads = {"score_thresh": score_thresh, "nms_thresh": nms_thresh, "detections_per_img": detections_per_img}
    if detector == "retinanet":
        return ForegroundRetinaNet(body, **common, **resize, **heads, anchor_generator=anchors)
    if detector == "fcos":
        points = AnchorGenerator(tuple((s,) for s in strides), ((1.0,),) * len(strides))
        return ForegroundFCOS(body, **common, **resize, **heads, anchor_generator=points)
    return ssdlite(body, common, heads, min_size, len(strides))


def ssdlite(body: PyramidBackbone, common: dict[str, Any], heads: dict[str, Any], size: int, levels: int) -> SSD:
    """SSDlite (MobileNetV2 paper) on the pyramid: a fixed square input and depthwise-separable heads."""
    boxes = DefaultBoxGenerator([[2, 3]] * levels, min_ratio=0.2, max_ratio=0.95)
    norm = partial(nn.BatchNorm2d, eps=0.001, momentum=0.03)
    head = SSDLiteHead([body.out_channels] * levels, boxes.num_anchors_per_location(), common["num_classes"], norm)
    return SSD(
        body,
        boxes,
        (size, size),
        head=head,
        **common,
        score_thresh=heads["score_thresh"],
        nms_thresh=heads["nms_thresh"],
        detections_per_img=heads["detections_per_img"],
        topk_candidates=300,
    )
