"""Semantic-segmentation metrics from one confusion matrix (rows: true class, columns: predicted) accumulated
over the whole evaluation and summed across DDP ranks, never a mean of per-batch values.

A class with no pixel in the target nor in the prediction has an undefined (NaN) IoU and Dice and is left out
of the means, as mmseg and torchmetrics' ``MulticlassJaccardIndex(average="macro")`` do; a class predicted but
absent from the target scores 0 and counts. Example, 3 classes, one image of 4 pixels, class 2 absent::

    metric = SegmentationConfusion(num_classes=3, ignore_index=255)
    metric.update(tensor([[[0, 1], [0, 0]]]), tensor([[[0, 1], [1, 255]]]))  # 255: ignored pixel
    metric.compute()
    # {"confusion": [[1, 0, 0], [1, 1, 0], [0, 0, 0]], "iou": [0.5, 0.5, nan], "miou": 0.5,
    #  "pixel_acc": 0.6667, "dice": 0.6667}
"""

from __future__ import annotations

from collections.abc import Sequence

import torch
import torchmetrics


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


class SegmentationConfusion(torchmetrics.Metric):
    """An int64 ``[C, C]`` confusion matrix of pixels, summed over updates and, at `compute`, over DDP ranks
    (torchmetrics syncs the ``"sum"`` state). Pixels whose target is `ignore_index` are not counted."""

    full_state_update = False
    is_differentiable = False
    higher_is_better = True

    def __init__(self, num_classes: int, ignore_index: int | None) -> None:
        super().__init__()
        if num_classes < 1:
            raise ValueError(f"num_classes must be at least 1, got {num_classes}")
        if ignore_index is not None and 0 <= ignore_index < num_classes:
            raise ValueError(f"ignore_index {ignore_index} is a class index (0..{num_classes - 1}); use one outside")
        self.num_classes, self.ignore_index = num_classes, ignore_index
        self.add_state("confusion", torch.zeros(num_classes, num_classes, dtype=torch.int64), dist_reduce_fx="sum")

    def update(self, predictions: torch.Tensor, targets: torch.Tensor) -> None:
        """Count one batch: `predictions` ``[N, H, W]`` integer class indices or ``[N, C, H, W]`` logits (their
        argmax over C), `targets` ``[N, H, W]`` integers in 0..C-1 or `ignore_index`."""
        classes = self.num_classes
        logits = predictions.ndim == 4 and predictions.shape[1] == classes
        labels = predictions.argmax(dim=1) if logits else predictions
        if targets.ndim != 3 or labels.shape != targets.shape:
            raise ValueError(
                f"predictions {tuple(predictions.shape)} do not fit targets {tuple(targets.shape)}: expected "
                f"predictions [N, H, W] class indices or [N, {classes}, H, W] logits for targets [N, H, W]"
            )
        if labels.is_floating_point() or targets.is_floating_point():
            raise ValueError(f"class indices must be integers, got predictions {labels.dtype}, targets {targets.dtype}")
        labels, targets = labels.reshape(-1).long(), targets.reshape(-1).long()
        counted = (
            targets != self.ignore_index
            if self.ignore_index is not None
            else torch.ones_like(targets, dtype=torch.bool)
        )
        bad_targets = counted & ((targets < 0) | (targets >= classes))
        bad_labels = (labels < 0) | (labels >= classes)
        if (bad_targets.any() | bad_labels.any()).item():
            allowed = f"0..{classes - 1}" + (f" or {self.ignore_index}" if self.ignore_index is not None else "")
            raise ValueError(
                f"class indices outside {allowed}: targets {targets[bad_targets].unique()[:10].tolist()}, "
                f"predictions {labels[bad_labels].unique()[:10].tolist()}"
            )
        cells = targets[counted] * classes + labels[counted]
        self.confusion += torch.bincount(cells, minlength=classes * classes).reshape(classes, classes)

    def compute(self) -> dict[str, torch.Tensor]:
        """``confusion`` (all ranks' counts), per-class ``iou`` ``[C]`` and the scalars ``miou``,
        ``pixel_acc`` and ``dice`` (mean Dice), float64."""
        if not self.confusion.sum():
            raise RuntimeError("SegmentationConfusion.compute() with no pixel counted: no update, or all ignored")
        return {
            "confusion": self.confusion.clone(),
            "iou": iou_per_class(self.confusion),
            "miou": mean_iou(self.confusion),
            "pixel_acc": pixel_accuracy(self.confusion),
            "dice": mean_dice(self.confusion),
        }
