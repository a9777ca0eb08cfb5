"""Semantic segmentation networks: the classic U-Net, and a U-Net decoder (or DeepLabV3 head) over the
feature maps of any timm backbone of the families. Every model maps ``[N, 3, H, W]`` images to
``[N, num_classes, H, W]`` logits at the input resolution, for any H and W."""

from __future__ import annotations

from typing import Any

import torch
import torch.nn.functional as F
from torch import nn
from torchvision.models.segmentation.deeplabv3 import DeepLabHead

from cvkit.errors import CvkitError
from cvkit.models.backbones import create_feature_extractor

DECODERS = ("unet", "deeplabv3")


def conv_block(in_channels: int, out_channels: int) -> nn.Sequential:
    """Two 3x3 convolutions, each followed by BatchNorm and ReLU (U-Net's unit, padded: sizes kept)."""
    return nn.Sequential(
        nn.Conv2d(in_channels, out_channels, 3, padding=1, bias=False),
        nn.BatchNorm2d(out_channels),
        nn.ReLU(inplace=True),
        nn.Conv2d(out_channels, out_channels, 3, padding=1, bias=False),
        nn.BatchNorm2d(out_channels),
        nn.ReLU(inplace=True),
    )


class UNet(nn.Module):
    """U-Net (Ronneberger et al. 2015): a contracting path of `depth` 2x2 max-poolings, the channels
    doubling from `base_width`, an expanding path of 2x2 transposed convolutions, each joined by the
    contracting path's map of the same resolution (skip connection). Padded convolutions, and an input
    padded to a multiple of 2**depth (the padding cropped off the output), so any size works."""

    def __init__(self, num_classes: int, depth: int, base_width: int, in_channels: int = 3) -> None:
        super().__init__()
        if depth < 1 or base_width < 1:
            raise CvkitError(f"backbone: U-Net needs depth >= 1 and base_width >= 1, got {depth} and {base_width}")
        widths = [base_width * 2**level for level in range(depth + 1)]
        self.depth = depth
        self.down = nn.ModuleList([conv_block(in_channels, widths[0])])
        self.down.extend(conv_block(widths[i], widths[i + 1]) for i in range(depth))
        self.up = nn.ModuleList(
            nn.ConvTranspose2d(widths[i + 1], widths[i], 2, stride=2) for i in reversed(range(depth))
        )
        self.merge = nn.ModuleList(conv_block(2 * widths[i], widths[i]) for i in reversed(range(depth)))
        self.classifier = nn.Conv2d(widths[0], num_classes, 1)

    def forward(self, images: torch.Tensor) -> torch.Tensor:
        height, width = images.shape[-2:]
        multiple = 2**self.depth
        x = F.pad(images, (0, -width % multiple, 0, -height % multiple))
        skips = []
        for level, block in enumerate(self.down):
            x = block(F.max_pool2d(x, 2) if level else x)
            skips.append(x)
        for up, merge, skip in zip(self.up, self.merge, reversed(skips[:-1])):
            x = merge(torch.cat([skip, up(x)], dim=1))
        return self.classifier(x)[..., :height, :width]


class UNetDecoder(nn.Module):
    """A U-Net expanding path over an encoder's maps (finest first): from the coarsest, each step
    upsamples to the next finer map's size, concatenates it and applies a conv block. Sizes come from the
    maps themselves, so encoders whose maps are not exact halvings (Inception) fit as well."""

    def __init__(self, channels: list[int], widths: list[int]) -> None:
        super().__init__()
        skips = list(reversed(channels[:-1]))
        if len(widths) < len(skips):
            raise CvkitError(f"task.model.decoder_widths needs {len(skips)} widths (one per skip), got {widths}")
        ins = [channels[-1], *widths[:-1]]
        self.blocks = nn.ModuleList(conv_block(i + s, w) for i, s, w in zip(ins, skips, widths))
        self.out_channels = widths[len(skips) - 1] if skips else channels[-1]

    def forward(self, features: list[torch.Tensor]) -> torch.Tensor:
        x = features[-1]
        for block, skip in zip(self.blocks, reversed(features[:-1])):
            x = F.interpolate(x, size=skip.shape[-2:], mode="bilinear", align_corners=False)
            x = block(torch.cat([x, skip], dim=1))
        return x


class EncoderDecoder(nn.Module):
    """A timm encoder (``features_only``), a decoder over its maps, a 1x1 classifier, and logits resized
    to the input resolution."""

    def __init__(self, encoder: nn.Module, decoder: str, num_classes: int, widths: list[int]) -> None:
        super().__init__()
        self.encoder = encoder
        channels = encoder.feature_info.channels()
        if decoder == "unet" and len(channels) > 1:
            self.decoder: nn.Module = UNetDecoder(channels, widths)
            self.classifier = nn.Conv2d(self.decoder.out_channels, num_classes, 1)
        else:  # DeepLabV3's atrous pyramid on the last map (also for single-resolution encoders: ViT)
            self.decoder = _LastMap()
            self.classifier = DeepLabHead(channels[-1], num_classes)

    def forward(self, images: torch.Tensor) -> torch.Tensor:
        logits = self.classifier(self.decoder(self.encoder(images)))
        return F.interpolate(logits, size=images.shape[-2:], mode="bilinear", align_corners=False)


class _LastMap(nn.Module):
    def forward(self, features: list[torch.Tensor]) -> torch.Tensor:
        return features[-1]


def build_segmenter(
    *, backbone: dict[str, Any], num_classes: int, decoder: str, decoder_widths: list[int]
) -> nn.Module:
    """The segmentation network for `num_classes` classes: the classic U-Net for ``backbone.family=unet``
    (its ``depth`` and ``base_width``), otherwise `decoder` (``unet`` or ``deeplabv3``) over the timm
    encoder of the backbone config (``pretrained``/``weights`` load the encoder's weights).
    `decoder_widths`: the U-Net decoder's widths, coarse to fine. The values are the configs' (backbone/unet.yaml,
    task/segmentation.yaml ``model``): they have no defaults here."""
    if backbone.get("family") == "unet":
        return UNet(num_classes, depth=backbone["depth"], base_width=backbone["base_width"])
    if decoder not in DECODERS:
        raise CvkitError(f"task.model.decoder={decoder!r} is not one of {list(DECODERS)}")
    encoder, _ = create_feature_extractor(**backbone, purpose="as a segmentation encoder")
    return EncoderDecoder(encoder, decoder, num_classes, list(decoder_widths))
