"""Semantic segmentation: cross-entropy and/or Dice per pixel, IoU from one confusion matrix per split."""

from __future__ import annotations

from typing import Any

import numpy as np
import torch
import torch.nn.functional as F
from torchmetrics import MaxMetric
from torchmetrics.classification import MulticlassConfusionMatrix

from cvkit.data.base import BaseDataModule
from cvkit.data.segmentation.module import SegmentationDataModule
from cvkit.errors import CvkitError
from cvkit.metrics.segmentation import pixel_confusion, segmentation_report, segmentation_scores
from cvkit.tasks.base import BaseTask
from cvkit.tasks.class_weights import class_weights_from
from cvkit.visualize import segmentation_image

LOSSES = ("ce", "dice", "ce+dice")


def dice_loss(logits: torch.Tensor, targets: torch.Tensor, ignore_index: int | None) -> torch.Tensor:
    """1 - the soft Dice coefficient of the softmax probabilities against one-hot targets, averaged over
    the classes present in the batch's targets; ignored pixels take no part."""
    num_classes = logits.shape[1]
    valid = torch.ones_like(targets, dtype=torch.bool) if ignore_index is None else targets != ignore_index
    probabilities = logits.softmax(dim=1) * valid.unsqueeze(1)
    one_hot = F.one_hot(targets.where(valid, 0), num_classes).permute(0, 3, 1, 2) * valid.unsqueeze(1)
    intersection = (probabilities * one_hot).sum(dim=(0, 2, 3))
    total = probabilities.sum(dim=(0, 2, 3)) + one_hot.sum(dim=(0, 2, 3))
    present = one_hot.sum(dim=(0, 2, 3)) > 0
    dice = (2 * intersection + 1.0) / (total + 1.0)
    return 1 - dice[present].mean() if present.any() else logits.sum() * 0


class SegmentationTask(BaseTask):
    """Logs ``train/loss``, ``{val,test}/loss``, and from a confusion matrix accumulated over the whole
    split (summed across ranks) ``{val,test}/miou``, ``pixel_acc``, ``dice``, and ``val/miou_best``; the
    per-class IoU of the last validation goes to metrics.json and a table. Evaluation compares at each
    mask's original resolution (logits resized to it). TensorBoard gets ``log_images`` val images with
    their true and predicted masks side by side, each validation."""

    kind = "segmentation"
    data_module = SegmentationDataModule

    def __init__(
        self,
        *,
        ignore_index: int | None,
        loss: str,
        class_weights: torch.Tensor | None,
        log_images: int,
        **base: Any,
    ) -> None:
        super().__init__(**base)
        if loss not in LOSSES:
            raise CvkitError(f"task.loss={loss!r} is not one of {list(LOSSES)}")
        self.ignore_index = ignore_index
        self.loss_name = loss
        self.log_images = log_images
        self.register_buffer("class_weights", class_weights, persistent=False)
        self.val_confusion = pixel_confusion(len(self.class_names), ignore_index)
        self.test_confusion = pixel_confusion(len(self.class_names), ignore_index)
        self.val_miou_best = MaxMetric()
        self.last_report: dict[str, Any] = {}

    @classmethod
    def own_arguments(cls, options: dict[str, Any], datamodule: BaseDataModule) -> dict[str, Any]:
        """``class_weights`` from its spec and, when asked for, the train masks' pixel counts; the data's
        ``ignore_index``."""
        spec = options.get("class_weights")
        counts = datamodule.class_counts("train") if spec is not None else np.zeros(0)
        weights = class_weights_from(spec, counts)
        return {**options, "class_weights": weights, "ignore_index": datamodule.ignore_index}

    def loss(self, logits: torch.Tensor, masks: torch.Tensor) -> torch.Tensor:
        total = logits.new_zeros(())
        if "ce" in self.loss_name.split("+"):
            ignore = -100 if self.ignore_index is None else self.ignore_index
            total = total + F.cross_entropy(logits, masks, weight=self.class_weights, ignore_index=ignore)
        if "dice" in self.loss_name.split("+"):
            total = total + dice_loss(logits, masks, self.ignore_index)
        return total

    def training_loss(self, batch: Any, batch_idx: int) -> torch.Tensor | None:
        if not batch:  # every image of the batch was unreadable and skipped
            return None
        images, masks = batch
        loss = self.loss(self(images), masks)
        self.log("train/loss", loss, on_step=True, on_epoch=True, prog_bar=True, batch_size=len(images))
        return loss

    def _evaluate(self, batch: Any, stage: str) -> list[torch.Tensor] | None:
        """Loss and confusion at each mask's own size; returns the predicted masks."""
        if not batch:
            return None
        images, masks = batch
        logits = self(images)
        confusion = self.val_confusion if stage == "val" else self.test_confusion
        predictions, losses = [], []
        for one, mask in zip(logits, masks):
            resized = F.interpolate(one[None], size=mask.shape[-2:], mode="bilinear", align_corners=False)
            losses.append(self.loss(resized, mask[None]))
            predicted = resized.argmax(dim=1)  # once: at full mask size, the costliest step of the loop
            confusion.update(predicted, mask[None])
            predictions.append(predicted[0])
        loss = torch.stack(losses).mean()
        self.log(f"{stage}/loss", loss, on_epoch=True, sync_dist=True, prog_bar=True, batch_size=len(images))
        return predictions

    def validation_step(self, batch: Any, batch_idx: int) -> None:
        predictions = self._evaluate(batch, "val")
        if predictions is not None and batch_idx == 0 and not self.trainer.sanity_checking:
            self._draw(batch, predictions)

    def test_step(self, batch: Any, batch_idx: int) -> None:
        self._evaluate(batch, "test")

    def on_validation_epoch_end(self) -> None:
        miou = self._finish("val", self.val_confusion)
        if not self.trainer.sanity_checking:
            self.val_miou_best(miou)
            self.log("val/miou_best", self.val_miou_best.compute(), sync_dist=False)

    def on_test_epoch_end(self) -> None:
        self._finish("test", self.test_confusion)

    def _finish(self, stage: str, confusion: MulticlassConfusionMatrix) -> torch.Tensor:
        """Log the split's metrics from the whole-split confusion matrix (summed across ranks)."""
        self.finish_image_count(stage)
        results = segmentation_scores(confusion.compute())
        self.log_dict({f"{stage}/{key}": results[key] for key in ("miou", "pixel_acc", "dice")}, sync_dist=False)
        if stage == "val" and not self.trainer.sanity_checking:
            self.last_report = {"val_per_class": segmentation_report(results["confusion"], self.class_names)}
        confusion.reset()
        return results["miou"]

    def _draw(self, batch: Any, predictions: list[torch.Tensor]) -> None:
        experiment = getattr(self.logger, "experiment", None)
        if not self.trainer.is_global_zero or not hasattr(experiment, "add_image"):
            return
        mean, std = (self.record.mean, self.record.std) if self.record else (None, None)
        for i, (image, mask, predicted) in enumerate(zip(*batch, predictions)):
            if i == self.log_images:
                break
            picture = segmentation_image(image, mask, predicted, mean, std, self.ignore_index)
            experiment.add_image(f"val/segmentation/{i}", picture, self.global_step)

    def report(self) -> dict[str, Any]:
        return {**super().report(), **self.last_report}

    def per_class_tables(self) -> dict[str, dict[str, dict[str, Any]]]:
        return {"val IoU per class (last epoch)": self.last_report.get("val_per_class", {})}
