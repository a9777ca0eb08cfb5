"""Pictures for the logs. Figures are drawn on matplotlib's Agg canvas directly: no pyplot, no backend chosen
for the process."""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

import matplotlib
import numpy as np
import torch
import torch.nn.functional as F
from matplotlib.backends.backend_agg import FigureCanvasAgg
from matplotlib.figure import Figure
from torchvision.utils import draw_bounding_boxes, draw_segmentation_masks


def confusion_matrix_image(confusion: np.ndarray, class_names: Sequence[str]) -> np.ndarray:
    """An HxWx3 uint8 picture of `confusion` (rows: true class, columns: predicted), rows normalised
    for the colours and annotated with the raw counts."""
    count = len(class_names)
    size = min(2.0 + 0.5 * count, 16.0)
    figure = Figure(figsize=(size, size), dpi=80)
    FigureCanvasAgg(figure)  # attaches itself to the figure
    axes = figure.subplots()
    rows = confusion / np.maximum(confusion.sum(axis=1, keepdims=True), 1)
    axes.imshow(rows, cmap="Blues", vmin=0.0, vmax=1.0)
    axes.set(xticks=range(count), yticks=range(count), xlabel="predicted", ylabel="true")
    axes.set_xticklabels(class_names, rotation=45, ha="right")
    axes.set_yticklabels(class_names)
    if count <= 30:
        for (row, col), value in np.ndenumerate(confusion):
            color = "white" if rows[row, col] > 0.5 else "black"
            axes.text(col, row, int(value), ha="center", va="center", color=color, fontsize=8)
    return rendered(figure)


def precision_recall_image(
    recall: Sequence[float],
    curves: dict[str, dict[str, Sequence[float]]],
    points: dict[str, dict[str, Any]],
    score_thresh: float,
) -> np.ndarray:
    """An HxWx3 uint8 picture of each class's precision-recall curve (`curves`: name -> ``precision`` at the
    points `recall`), the class's AP50 (the curve's mean) in the legend, and its operating point at
    `score_thresh` (`points`: name -> ``precision``, ``recall``) marked."""
    figure = Figure(figsize=(6.4, 4.8), dpi=80)
    FigureCanvasAgg(figure)  # attaches itself to the figure
    axes = figure.subplots()
    colours = matplotlib.colormaps["tab20"].colors
    for k, (name, curve) in enumerate(curves.items()):
        colour = colours[k % len(colours)]
        axes.plot(recall, curve["precision"], color=colour, label=f"{name} AP50 {np.mean(curve['precision']):.3f}")
        if points[name]["recall"] >= 0:  # (-1: no true boxes)
            axes.plot(points[name]["recall"], points[name]["precision"], "o", color=colour)
    axes.set(xlim=(0, 1), ylim=(0, 1.02), xlabel="recall", ylabel="precision (interpolated)")
    axes.set_title(f"precision-recall at IoU 0.5; dots: score >= {score_thresh:g}")
    if len(curves) <= 20:
        axes.legend(loc="best", fontsize=8)
    return rendered(figure)


def rendered(figure: Figure) -> np.ndarray:
    """`figure`, laid out and drawn, as HxWx3 uint8."""
    figure.tight_layout()
    figure.canvas.draw()
    return np.asarray(figure.canvas.buffer_rgba())[:, :, :3].copy()


def detections_image(
    image: torch.Tensor,
    truth: dict[str, torch.Tensor],
    found: dict[str, torch.Tensor],
    class_names: Sequence[str],
    mask_threshold: float = 0.5,
) -> torch.Tensor:
    """`image` (CHW, 0..1) as uint8 CHW with its true boxes (and masks) in green and the detections (and their
    masks) in red, each named by its class (and score)."""
    picture = (image.detach().cpu().clamp(0, 1) * 255).to(torch.uint8)
    if "masks" in truth and len(truth["masks"]):
        picture = draw_segmentation_masks(picture, truth["masks"].cpu().bool(), alpha=0.3, colors="lime")
    truth_names = [class_names[int(label) - 1] for label in truth["labels"]]
    picture = draw_bounding_boxes(picture, truth["boxes"].cpu(), truth_names, colors="lime", width=2)
    return draw_detections(picture, found, class_names, "red", mask_threshold)


def draw_detections(
    picture: torch.Tensor,
    found: dict[str, torch.Tensor],
    class_names: Sequence[str],
    colour: str = "red",
    mask_threshold: float = 0.5,
) -> torch.Tensor:
    """The uint8 CHW `picture` with the boxes of `found` (labels 1..K) named by class and score, and their masks
    (``[N, 1, H, W]`` probabilities, when found) tinted where at least `mask_threshold`."""
    if not len(found["boxes"]):
        return picture
    if "masks" in found:
        picture = draw_segmentation_masks(
            picture, found["masks"].cpu()[:, 0] >= mask_threshold, alpha=0.4, colors=colour
        )
    names = [f"{class_names[int(lb) - 1]} {float(s):.2f}" for lb, s in zip(found["labels"], found["scores"])]
    return draw_bounding_boxes(picture, found["boxes"].cpu().float(), names, colors=colour, width=1)


def class_palette(num_classes: int) -> torch.Tensor:
    """A fixed colour per class: [num_classes, 3] uint8 (matplotlib's tab20, cycled)."""
    colours = matplotlib.colormaps["tab20"].colors
    return torch.tensor([colours[k % len(colours)] for k in range(num_classes)]).mul(255).to(torch.uint8)


def segmentation_image(
    image: torch.Tensor,
    truth: torch.Tensor,
    predicted: torch.Tensor,
    mean: Sequence[float],
    std: Sequence[float],
    ignore_index: int | None,
) -> torch.Tensor:
    """The normalised `image` (CHW) at the masks' size, then the true and the predicted class masks as
    colours over it, side by side: a uint8 [3, h, 3w] picture (ignored pixels stay uncoloured)."""
    size = truth.shape[-2:]
    pixels = image.detach().cpu().float() * torch.tensor(std)[:, None, None] + torch.tensor(mean)[:, None, None]
    pixels = F.interpolate(pixels[None], size=size, mode="bilinear", align_corners=False)[0]
    photo = (pixels.clamp(0, 1) * 255).to(torch.uint8)
    palette = class_palette(int(max(truth.max(), predicted.max())) + 1)
    overlays = [mask_overlay(photo, mask.cpu(), palette, ignore_index) for mask in (truth, predicted)]
    return torch.cat([photo, *overlays], dim=2)


def mask_overlay(
    photo: torch.Tensor, mask: torch.Tensor, palette: torch.Tensor, ignore_index: int | None = None
) -> torch.Tensor:
    """The uint8 CHW `photo` with each pixel of `mask` (class indices, its size) tinted by the class's
    `palette` colour; pixels at `ignore_index` stay as they are."""
    shown = mask != ignore_index if ignore_index is not None else torch.ones_like(mask, dtype=torch.bool)
    colours = palette[mask.where(shown, 0).long()].permute(2, 0, 1)
    blend = (0.4 * photo.float() + 0.6 * colours.float()).to(torch.uint8)
    return torch.where(shown, blend, photo)
