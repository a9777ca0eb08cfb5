"""Image classification: cross-entropy, top-1/top-5 accuracy, macro P/R/F1, confusion matrix."""

from __future__ import annotations

from typing import Any

import numpy as np
import torch
import torch.nn.functional as F
from timm.data import Mixup
from timm.data.mixup import mixup_target
from torchmetrics import MaxMetric, MetricCollection
from torchmetrics.classification import (
    MulticlassAccuracy,
    MulticlassConfusionMatrix,
    MulticlassF1Score,
    MulticlassPrecision,
    MulticlassRecall,
)

from cvkit.data.base import BaseDataModule
from cvkit.data.classification.module import ClassificationDataModule
from cvkit.metrics import per_class_report
from cvkit.tasks.base import BaseTask
from cvkit.tasks.class_weights import class_weights_from
from cvkit.visualize import confusion_matrix_image


def classification_metrics(num_classes: int) -> MetricCollection:
    top5 = min(5, num_classes)
    return MetricCollection(
        {
            "acc": MulticlassAccuracy(num_classes, top_k=1, average="micro"),
            "acc_top5": MulticlassAccuracy(num_classes, top_k=top5, average="micro"),
            "precision": MulticlassPrecision(num_classes, average="macro"),
            "recall": MulticlassRecall(num_classes, average="macro"),
            "f1": MulticlassF1Score(num_classes, average="macro"),
        }
    )


class ClassificationTask(BaseTask):
    """Logs ``train/loss``, ``train/acc``, ``{val,test}/{loss,acc,acc_top5,precision,recall,f1}``,
    ``val/acc_best``, and a confusion-matrix image each validation epoch. Unreadable images are left out
    of the metrics, and counted (``val_images`` / ``test_images`` of the report). With `mixup` (timm's
    ``Mixup`` arguments, on when an alpha is above 0) training batches are mixed (Mixup or CutMix) and
    learned as soft targets, label smoothing included; ``train/acc`` then counts each image's larger share."""

    kind = "classification"
    data_module = ClassificationDataModule

    def __init__(
        self,
        *,
        label_smoothing: float,
        class_weights: torch.Tensor | None,
        mixup: dict[str, Any] | None = None,
        **base: Any,
    ) -> None:
        super().__init__(**base)
        num_classes = len(self.class_names)
        self.label_smoothing = label_smoothing
        mixing = mixup is not None and (mixup.get("mixup_alpha", 0) > 0 or mixup.get("cutmix_alpha", 0) > 0)
        self.mixup = Mixup(**mixup, label_smoothing=label_smoothing, num_classes=num_classes) if mixing else None
        self.register_buffer("class_weights", class_weights, persistent=False)
        self.train_acc = MulticlassAccuracy(num_classes, average="micro")
        self.val_metrics = classification_metrics(num_classes).clone(prefix="val/")
        self.test_metrics = classification_metrics(num_classes).clone(prefix="test/")
        self.val_confusion = MulticlassConfusionMatrix(num_classes)
        self.val_acc_best = MaxMetric()
        self.last_confusion: list[list[int]] | None = None

    @classmethod
    def own_arguments(cls, options: dict[str, Any], datamodule: BaseDataModule) -> dict[str, Any]:
        """``class_weights`` from its spec and, when asked for, the train split's label counts."""
        spec = options.get("class_weights")
        counts = datamodule.class_counts("train") if spec is not None else np.zeros(0)
        return {**options, "class_weights": class_weights_from(spec, counts)}

    def loss(self, logits: torch.Tensor, labels: torch.Tensor) -> torch.Tensor:
        return F.cross_entropy(logits, labels, weight=self.class_weights, label_smoothing=self.label_smoothing)

    def training_loss(self, batch: tuple[torch.Tensor, torch.Tensor] | None, batch_idx: int) -> torch.Tensor | None:
        if not batch:  # every image of the batch was unreadable and skipped
            return None
        images, labels = batch
        if self.mixup is None:
            logits = self(images)
            loss = self.loss(logits, labels)
        else:
            images, targets = self.mixed(images, labels)
            logits = self(images)
            loss = F.cross_entropy(logits, targets, weight=self.class_weights)  # smoothing is in the targets
            labels = targets.argmax(dim=1)
        self.train_acc(logits, labels)
        self.log("train/loss", loss, on_step=True, on_epoch=True, prog_bar=True, batch_size=len(labels))
        self.log("train/acc", self.train_acc, on_step=False, on_epoch=True, batch_size=len(labels))
        return loss

    def mixed(self, images: torch.Tensor, labels: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        """(mixed images, soft targets). timm mixes pairs, so it takes the largest even part of the batch (a
        batch can be odd when an unreadable image was left out); an image left over keeps its own target."""
        even = len(images) - len(images) % 2
        parts = [self.mixup(images[:even], labels[:even])] if even else []
        if even < len(images):
            rest = mixup_target(labels[even:], len(self.class_names), 1.0, self.label_smoothing)
            parts.append((images[even:], rest))
        return torch.cat([p[0] for p in parts]), torch.cat([p[1] for p in parts])

    def _evaluate(self, batch: tuple[torch.Tensor, torch.Tensor] | None, stage: str) -> torch.Tensor | None:
        if not batch:
            return None
        images, labels = batch
        logits = self(images)
        metrics = self.val_metrics if stage == "val" else self.test_metrics
        metrics.update(logits, labels)
        loss = self.loss(logits, labels)
        self.log(f"{stage}/loss", loss, on_epoch=True, sync_dist=True, prog_bar=True, batch_size=len(labels))
        self.log_dict(metrics, on_epoch=True)
        return logits

    def validation_step(self, batch: Any, batch_idx: int) -> None:
        logits = self._evaluate(batch, "val")
        if logits is not None:
            self.val_confusion.update(logits, batch[1])

    def test_step(self, batch: Any, batch_idx: int) -> None:
        self._evaluate(batch, "test")

    def on_validation_epoch_end(self) -> None:
        self.finish_image_count("val")
        confusion = self.val_confusion.compute().cpu()
        self.val_confusion.reset()
        self.last_confusion = confusion.tolist()
        if self.trainer.sanity_checking:
            return
        self.val_acc_best(self.val_metrics["acc"].compute())
        self.log("val/acc_best", self.val_acc_best.compute(), sync_dist=False)
        experiment = getattr(self.logger, "experiment", None)
        if self.trainer.is_global_zero and hasattr(experiment, "add_image"):
            image = confusion_matrix_image(confusion.numpy(), self.class_names)
            experiment.add_image("val/confusion_matrix", image, self.global_step, dataformats="HWC")

    def on_test_epoch_end(self) -> None:
        self.finish_image_count("test")

    def report(self) -> dict[str, Any]:
        if self.last_confusion is None:
            return super().report()
        per_class = per_class_report(self.last_confusion, self.class_names)
        return {**super().report(), "val_confusion_matrix": self.last_confusion, "val_per_class": per_class}

    def per_class_tables(self) -> dict[str, dict[str, dict[str, Any]]]:
        return {"val per class (last epoch)": self.report().get("val_per_class", {})}
