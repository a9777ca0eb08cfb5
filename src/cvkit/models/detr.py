"""DETR-family real-time detectors on any timm backbone of the families: RT-DETR v2 (Lv et al. 2024) and
D-FINE (Peng et al. 2024), both from Hugging Face ``transformers`` (Apache-2.0, the authors' ports).

``transformers`` owns the architecture, the Hungarian matching and the set-based losses (varifocal, L1, GIoU,
denoising; D-FINE's fine-grained localisation and distillation); cvkit gives them its backbone levels (strides
8, 16 and 32 of every family, ViT through a simple pyramid) and wraps the model in the torchvision detectors'
interface, so that the detection task, metrics, export and ``cvkit.load`` use it unchanged:
``forward(images, targets)`` returns the losses in training and per-image ``boxes``/``labels``/``scores`` in
evaluation. No anchors and no NMS: each of ``num_queries`` queries predicts one box.

Images are resized to a ``size`` x ``size`` square, as RT-DETR and D-FINE train (the aspect ratio is not kept);
boxes are given to the model as fractions of the image, so they follow the resize without being touched.
"""

from __future__ import annotations

import re
from collections.abc import Sequence
from typing import Any

import torch
import torch.nn.functional as F
from torch import nn

from cvkit.compat import detr_denoising_embedding, use_detr_backbone
from cvkit.errors import CvkitError
from cvkit.models.detectors import PYRAMID_STRIDES, PyramidLevels, feature_body

DETR_DETECTORS = ("rtdetr", "dfine")
# Each model's size, as its authors' smallest ResNet-18 / nano recipes set it (RT-DETRv2-R18, D-FINE-N/S).
ARCHITECTURES: dict[str, dict[str, Any]] = {
    "rtdetr": {"d_model": 256, "encoder_hidden_dim": 256, "encoder_ffn_dim": 1024, "decoder_ffn_dim": 1024,
               "hidden_expansion": 0.5},
    "dfine": {"d_model": 128, "encoder_hidden_dim": 128, "encoder_ffn_dim": 512, "decoder_ffn_dim": 512,
              "hidden_expansion": 0.34, "depth_mult": 0.5, "decoder_n_points": [3, 6, 3]},
}  # fmt: skip
PRIOR_PROBABILITY = 0.01  # the authors' initial class probability (bias_init_with_prob(0.01))
LOSS_PART = re.compile(r"_(aux|dn|enc)_\d+$")  # "loss_giou_aux_3" is a part of "loss_giou"


class DetrLevels(nn.Module):
    """:class:`PyramidLevels` as the DETR encoder's backbone: ``forward(pixel_values, pixel_mask)`` gives
    ``(map, mask)`` per level (the masks all true: images are not padded), each map exactly ``1/stride`` of the
    input, which the encoder's upsample-and-concatenate needs (Inception's unpadded convolutions give one
    less: resized)."""

    def __init__(self, levels: PyramidLevels) -> None:
        super().__init__()
        self.levels = levels
        self.intermediate_channel_sizes = list(levels.channels)

    def forward(
        self, pixel_values: torch.Tensor, pixel_mask: torch.Tensor | None = None
    ) -> list[tuple[torch.Tensor, torch.Tensor]]:
        height, width = pixel_values.shape[-2:]
        out = []
        for feature, stride in zip(self.levels(pixel_values), PYRAMID_STRIDES, strict=True):
            size = (height // stride, width // stride)
            if feature.shape[-2:] != size:
                feature = F.interpolate(feature, size=size, mode="bilinear", align_corners=False)
            mask = torch.ones(feature.shape[0], *size, dtype=torch.bool, device=feature.device)
            out.append((feature, mask))
        return out


class DetrDetector(nn.Module):
    """A ``transformers`` RT-DETR v2 / D-FINE `network` behind the torchvision detectors' interface.

    Training: ``forward(images, targets)`` with ``boxes`` xyxy in pixels and ``labels`` 1..K gives the
    library's weighted losses summed by kind (``loss_vfl``, ``loss_bbox``, ``loss_giou``, D-FINE's ``loss_fgl``
    and ``loss_ddf``: each the last decoder layer's plus its auxiliary and denoising copies). Evaluation: per
    image the ``detections_per_img`` best (query, class) pairs by sigmoid score, at least `score_thresh`,
    boxes in the image's pixels.
    """

    def __init__(
        self,
        network: nn.Module,
        size: int,
        image_mean: Sequence[float],
        image_std: Sequence[float],
        score_thresh: float,
        detections_per_img: int,
    ) -> None:
        super().__init__()
        self.network = network
        self.size = size
        self.register_buffer("image_mean", torch.tensor(image_mean).view(3, 1, 1), persistent=False)
        self.register_buffer("image_std", torch.tensor(image_std).view(3, 1, 1), persistent=False)
        self.score_thresh = score_thresh
        self.detections_per_img = detections_per_img

    def batch(self, images: Sequence[torch.Tensor]) -> torch.Tensor:
        """The images (CHW, 0..1, any sizes) resized to the square and normalised, as one batch."""
        resized = [
            F.interpolate(image[None], size=(self.size, self.size), mode="bilinear", align_corners=False)[0]
            for image in images
        ]
        return (torch.stack(resized) - self.image_mean) / self.image_std

    def forward(
        self, images: Sequence[torch.Tensor], targets: Sequence[dict[str, torch.Tensor]] | None = None
    ) -> dict[str, torch.Tensor] | list[dict[str, torch.Tensor]]:
        pixels = self.batch(images)
        if self.training:
            if targets is None:
                raise ValueError("a DETR detector in training mode needs targets")
            labels = [as_detr_target(target, image.shape[-2:]) for image, target in zip(images, targets, strict=True)]
            output = self.network(pixel_values=pixels, labels=labels)
            return self.losses_by_kind(output.loss_dict)
        output = self.network(pixel_values=pixels)
        sizes = [image.shape[-2:] for image in images]
        return self.detections(output.logits, output.pred_boxes, sizes)

    def losses_by_kind(self, parts: dict[str, torch.Tensor]) -> dict[str, torch.Tensor]:
        """The library's weighted loss terms summed by kind. The denoising class embedding is used only when
        the batch has boxes: it enters the sum at weight 0 always, so that every step's graph holds every
        parameter (DDP without ``find_unused_parameters``, a rank with no boxes included)."""
        losses: dict[str, torch.Tensor] = {}
        for name, value in parts.items():
            kind = LOSS_PART.sub("", name)
            losses[kind] = losses.get(kind, 0) + value
        denoising = detr_denoising_embedding(self.network)
        if denoising is not None:
            first = next(iter(losses))
            losses[first] = losses[first] + 0.0 * denoising.weight.sum()
        return losses

    def detections(
        self, logits: torch.Tensor, boxes: torch.Tensor, sizes: Sequence[torch.Size]
    ) -> list[dict[str, torch.Tensor]]:
        """Per image: the best (query, class) pairs by sigmoid score, as RT-DETR's post-processing takes them
        (its focal-loss variant), above `score_thresh`; boxes (cx, cy, w, h in fractions) in pixels, clipped."""
        classes = logits.shape[-1]
        scores, index = logits.sigmoid().flatten(1).topk(min(self.detections_per_img, logits[0].numel()), dim=1)
        queries = torch.div(index, classes, rounding_mode="floor")
        picked = boxes.gather(1, queries[..., None].expand(-1, -1, 4))
        found = []
        for score, label, box, (height, width) in zip(scores, index % classes + 1, picked, sizes, strict=True):
            scale = torch.tensor([width, height, width, height], dtype=box.dtype, device=box.device)
            xyxy = torch.cat([box[:, :2] - box[:, 2:] / 2, box[:, :2] + box[:, 2:] / 2], dim=1) * scale
            xyxy = torch.min(xyxy.clamp(min=0), scale)
            keep = score >= self.score_thresh
            found.append({"boxes": xyxy[keep], "labels": label[keep], "scores": score[keep]})
        return found


def as_detr_target(target: dict[str, torch.Tensor], size: torch.Size) -> dict[str, torch.Tensor]:
    """A torchvision target (``boxes`` xyxy pixels, ``labels`` 1..K) as the library's: ``class_labels``
    0..K-1 and ``boxes`` (cx, cy, w, h) in fractions of the image."""
    height, width = size
    boxes = target["boxes"].float() / torch.tensor([width, height, width, height], device=target["boxes"].device)
    centres = torch.cat([(boxes[:, :2] + boxes[:, 2:]) / 2, boxes[:, 2:] - boxes[:, :2]], dim=1)
    return {"class_labels": target["labels"] - 1, "boxes": centres}


def build_detr(
    *,
    detector: str,
    backbone: dict[str, Any],
    num_classes: int,
    size: int,
    image_mean: Sequence[float],
    image_std: Sequence[float],
    score_thresh: float,
    detections_per_img: int,
    num_queries: int,
    decoder_layers: int,
    freeze_bn: bool | None,
) -> DetrDetector:
    """RT-DETR v2 (`detector` ``rtdetr``) or D-FINE (``dfine``) for `num_classes` classes on the timm
    `backbone` (the backbone group's keys), seeing `size` x `size` images (a multiple of 32: checked with the
    config, :func:`cvkit.models.networks.detector_input`)."""
    try:
        import transformers
    except ImportError as err:
        raise CvkitError(
            f"task.model.detector={detector} needs Hugging Face transformers: pip install 'cvkit-lightning[detr]'"
        ) from err
    if detector == "dfine" and decoder_layers < 2:
        raise CvkitError(f"task.model.decoder_layers={decoder_layers}: transformers' D-FINE needs at least 2")
    levels = DetrLevels(PyramidLevels(feature_body(**backbone, freeze_bn=freeze_bn)))
    config_class, model_class = {
        "rtdetr": (transformers.RTDetrV2Config, transformers.RTDetrV2ForObjectDetection),
        "dfine": (transformers.DFineConfig, transformers.DFineForObjectDetection),
    }[detector]
    architecture = ARCHITECTURES[detector]
    config = config_class(
        num_labels=num_classes,
        backbone_config=transformers.TimmBackboneConfig(backbone="resnet18", out_indices=[2, 3, 4]),  # replaced
        encoder_in_channels=levels.intermediate_channel_sizes,
        feat_strides=list(PYRAMID_STRIDES),
        num_feature_levels=len(PYRAMID_STRIDES),
        decoder_n_levels=len(PYRAMID_STRIDES),
        decoder_in_channels=[architecture["d_model"]] * len(PYRAMID_STRIDES),
        num_queries=num_queries,
        decoder_layers=decoder_layers,
        freeze_backbone_batch_norms=False,  # cvkit's freeze_bn decides, with timm's freezing
        initializer_bias_prior_prob=PRIOR_PROBABILITY,
        **architecture,
    )
    network = use_detr_backbone(model_class(config), levels, config.encoder_hidden_dim)
    return DetrDetector(network, size, image_mean, image_std, score_thresh, detections_per_img)
