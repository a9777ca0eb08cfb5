"""Semantic-segmentation metrics from one confusion matrix (rows: true class, columns: predicted) accumulated
over the whole evaluation and summed across DDP ranks, never a mean of per-batch values.

The matrix is torchmetrics' ``MulticlassConfusionMatrix`` (:func:`pixel_confusion`); the scores are pure
functions of it. A class with no pixel in the target nor in the prediction has an undefined (NaN) IoU and
Dice and is left out of the means, as mmseg and torchmetrics' ``MulticlassJaccardIndex(average="macro")`` do;
a class predicted but absent from the target scores 0 and counts. Example, 3 classes, one image of 4 pixels,
class 2 absent::

    metric = pixel_confusion(num_classes=3, ignore_index=255)
    metric.update(tensor([[[0, 1], [0, 0]]]), tensor([[[0, 1], [1, 255]]]))  # 255: ignored pixel
    segmentation_scores(metric.compute())
    # {"confusion": [[1, 0, 0], [1, 1, 0], [0, 0, 0]], "iou": [0.5, 0.5, nan], "miou": 0.5,
    #  "pixel_acc": 0.6667, "dice": 0.6667}
"""

from __future__ import annotations

from collections.abc import Sequence

import torch
from torchmetrics.classification import MulticlassConfusionMatrix


def iou_per_class(confusion: torch.Tensor) -> torch.Tensor:
    """``TP / (TP + FP + FN)`` of each class, float64; NaN for a class absent from target and prediction."""
    matrix = confusion.double()
    true_positives = matrix.diagonal()
    return true_positives / (matrix.sum(0) + matrix.sum(1) - true_positives)


def dice_per_class(confusion: torch.Tensor) -> torch.Tensor:
    """``2 TP / (2 TP + FP + FN)`` (the F1 score) of each class, float64; NaN where `iou_per_class` is."""
    matrix = confusion.double()
    return 2 * matrix.diagonal() / (matrix.sum(0) + matrix.sum(1))


def mean_iou(confusion: torch.Tensor) -> torch.Tensor:
    """Mean IoU over the classes present in target or prediction (NaN if none)."""
    return iou_per_class(confusion).nanmean()


def mean_dice(confusion: torch.Tensor) -> torch.Tensor:
    """Mean Dice over the classes present in target or prediction (NaN if none)."""
    return dice_per_class(confusion).nanmean()


def pixel_accuracy(confusion: torch.Tensor) -> torch.Tensor:
    """Correct pixels over counted pixels, float64 (NaN if none)."""
    matrix = confusion.double()
    return matrix.trace() / matrix.sum()


def segmentation_report(
    confusion: torch.Tensor | Sequence[Sequence[int]], class_names: Sequence[str]
) -> dict[str, dict[str, float]]:
    """``{class: {"iou", "dice", "support"}}`` with support the class's target pixels; an undefined IoU or
    Dice (class absent from target and prediction) is -1.0, so that the report is valid JSON."""
    matrix = torch.as_tensor(confusion).cpu()
    if matrix.shape != (len(class_names), len(class_names)):
        raise ValueError(f"confusion matrix of shape {tuple(matrix.shape)} for {len(class_names)} class names")
    iou, dice = iou_per_class(matrix).nan_to_num(-1.0), dice_per_class(matrix).nan_to_num(-1.0)
    return {
        name: {"iou": float(i), "dice": float(d), "support": int(s)}
        for name, i, d, s in zip(class_names, iou, dice, matrix.sum(1))
    }


def segmentation_scores(confusion: torch.Tensor) -> dict[str, torch.Tensor]:
    """The metrics of a whole evaluation's `confusion` matrix: ``confusion`` itself, per-class ``iou`` ``[C]``
    and the scalars ``miou``, ``pixel_acc`` and ``dice`` (mean Dice), float64."""
    if not confusion.sum():
        raise ValueError("no pixel was counted: the evaluation had no image, or every pixel was ignored")
    return {
        "confusion": confusion.clone(),
        "iou": iou_per_class(confusion),
        "miou": mean_iou(confusion),
        "pixel_acc": pixel_accuracy(confusion),
        "dice": mean_dice(confusion),
    }


def pixel_confusion(num_classes: int, ignore_index: int | None) -> MulticlassConfusionMatrix:
    """torchmetrics' confusion matrix of pixels (rows: true class), summed over updates and, at ``compute``,
    over DDP ranks; pixels whose target is `ignore_index` are not counted, and a target or prediction outside
    0..C-1 is an error. ``update`` takes ``[N, H, W]`` class indices or ``[N, C, H, W]`` logits."""
    return MulticlassConfusionMatrix(num_classes, ignore_index=ignore_index)
