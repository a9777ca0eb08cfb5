"""Object detection: a torchvision detector's own losses, COCO metrics of the whole split (pycocotools)."""

from __future__ import annotations

import contextlib
import logging
from collections.abc import Iterator
from typing import Any

import numpy as np
import torch
from torch import nn
from torchmetrics import MaxMetric

from cvkit.data.detection.module import DetectionDataModule
from cvkit.metrics.detection import MASK_THRESHOLD, CocoEvaluator
from cvkit.tasks.base import BaseTask
from cvkit.visualize import confusion_matrix_image, detections_image, precision_recall_image

log = logging.getLogger(__name__)
Batch = tuple[list[torch.Tensor], list[dict[str, Any]]]
# Layers whose training mode differs from evaluation (statistics): kept in evaluation mode for the val loss.
NORM_LAYERS = (nn.BatchNorm1d, nn.BatchNorm2d, nn.BatchNorm3d, nn.SyncBatchNorm, nn.GroupNorm, nn.LayerNorm)
NO_DETECTIONS = {"boxes": torch.zeros(0, 4), "scores": torch.zeros(0), "labels": torch.zeros(0, dtype=torch.int64)}


@contextlib.contextmanager
def loss_mode(model: nn.Module, seed: int) -> Iterator[None]:
    """The detector in training mode (so that it returns its losses) with normalisation layers kept in
    evaluation mode, and its sampling of proposals seeded by `seed` on a side RNG: a validation loss that
    is the same for the same weights and images, and changes nothing of the training."""
    devices = [torch.cuda.current_device()] if torch.cuda.is_available() else []
    model.train()
    for module in model.modules():
        if isinstance(module, NORM_LAYERS):
            module.eval()
    try:
        with torch.no_grad(), torch.random.fork_rng(devices=devices):
            torch.manual_seed(seed)
            yield
    finally:
        model.eval()


class DetectionTask(BaseTask):
    """Logs ``train/loss`` and its parts (``train/loss_classifier``, ...), ``{val,test}/loss`` (the same
    losses on held-out images, when ``val_loss``), COCO box metrics of the whole split gathered across
    ranks (``{val,test}/map``, ``map_50``, ``map_75``, ``map_small|medium|large``, ``mar_1|10|100``, ...),
    ``val/map_best``, and ``log_images`` val images with their true (green) and predicted (red) boxes.
    At the operating point ``operating_score_thresh`` (:mod:`cvkit.metrics.operating_point`): the mean over
    classes of precision, recall and F1 (``{val,test}/precision``, ``recall``, ``f1``), the best mean F1 and
    its threshold (``best_f1``, ``best_f1_score_thresh``); per class, a confusion matrix with background and
    precision-recall curves in metrics.json, the end-of-run tables, TensorBoard and the run dir (PNG).

    An unreadable image counts as an image without detections: the whole split scores as pycocotools
    scores the user's own annotation file with these predictions."""

    kind = "detection"
    data_module = DetectionDataModule
    input_size_settings = "task.model.min_size and max_size"
    # What pycocotools scores (boxes; instance segmentation adds masks), and the metric val/<it>_best follows.
    iou_types: tuple[str, ...] = ("bbox",)
    best_metric = "map"

    def __init__(
        self,
        *,
        val_loss: bool,
        log_images: int,
        draw_score_thresh: float,
        operating_score_thresh: float = 0.0,
        **base: Any,
    ) -> None:
        super().__init__(**base)
        self.val_loss = val_loss
        self.log_images = log_images
        self.draw_score_thresh = draw_score_thresh
        self.operating_score_thresh = operating_score_thresh
        self.val_map_best = MaxMetric()
        self.evaluator: CocoEvaluator | None = None
        self.evaluations: dict[str, dict[str, Any]] = {}

    def forward(self, images: list[torch.Tensor], targets: list[dict[str, Any]] | None = None) -> Any:
        return self.model(images, targets)

    def training_loss(self, batch: Batch | None, batch_idx: int) -> torch.Tensor | None:
        if not batch:  # every image of the batch was unreadable and skipped
            return None
        images, targets = batch
        losses = self(images, targets)
        loss = sum(losses.values())
        self.log("train/loss", loss, on_step=True, on_epoch=True, prog_bar=True, batch_size=len(images))
        parts = {f"train/{name}": value for name, value in losses.items()}
        self.log_dict(parts, on_step=False, on_epoch=True, batch_size=len(images))
        return loss

    def _evaluate(self, batch: Batch | None, stage: str) -> list[dict[str, torch.Tensor]] | None:
        if not batch:
            return None
        images, targets = batch
        if self.val_loss:
            with loss_mode(self.model, seed=int(targets[0]["image_id"])):
                loss = sum(self(images, targets).values())
            self.log(f"{stage}/loss", loss, on_epoch=True, sync_dist=True, prog_bar=True, batch_size=len(images))
        detections = [{k: v.detach().cpu() for k, v in d.items()} for d in self(images)]
        self.evaluator.update([t["image_id"] for t in targets], detections)
        return detections

    def validation_step(self, batch: Batch | None, batch_idx: int) -> None:
        detections = self._evaluate(batch, "val")
        if detections is not None and batch_idx == 0 and not self.trainer.sanity_checking:
            self._draw(batch, detections)

    def test_step(self, batch: Batch | None, batch_idx: int) -> None:
        self._evaluate(batch, "test")

    def on_validation_epoch_start(self) -> None:
        self._start_evaluation("val")

    def on_test_epoch_start(self) -> None:
        self._start_evaluation("test")

    def on_validation_epoch_end(self) -> None:
        metrics = self._finish_evaluation("val")
        if metrics and not self.trainer.sanity_checking:
            self.val_map_best(metrics[self.best_metric])
            self.log(f"val/{self.best_metric}_best", self.val_map_best.compute(), sync_dist=False)

    def on_test_epoch_end(self) -> None:
        self._finish_evaluation("test")

    def _start_evaluation(self, stage: str) -> None:
        datamodule = self.trainer.datamodule
        self.evaluator = CocoEvaluator(datamodule.ground_truth(stage), datamodule.label_to_category, self.iou_types)

    def _finish_evaluation(self, stage: str) -> dict[str, float]:
        """Gather every rank's detections, score them, log ``{stage}/*`` (the same on every rank)."""
        unreadable = [sample.image_id for sample in self.finish_image_count(stage).unreadable]
        self.evaluator.update(unreadable, [NO_DETECTIONS] * len(unreadable))
        self.evaluator.gather()
        if not self.evaluator.per_image:  # no image of this split was evaluated
            return {}
        metrics = self.evaluator.compute()
        point = self.evaluator.operating_point(self.operating_score_thresh)
        scalars = {**metrics, **point["metrics"]}
        self.log_dict({f"{stage}/{name}": value for name, value in scalars.items()}, sync_dist=False)
        if not self.trainer.sanity_checking:
            self.evaluations[stage] = {
                "per_class_ap": self.evaluator.per_class_ap(),
                "operating_point": point,
                "predictions": self.evaluator.results(),
                "ground_truth": self.evaluator.evaluated_ground_truth(),
            }
            if stage == "val":
                self._draw_operating_point(point)
        return metrics

    def _draw(self, batch: Batch, detections: list[dict[str, torch.Tensor]]) -> None:
        experiment = getattr(self.logger, "experiment", None)
        if not self.trainer.is_global_zero or not hasattr(experiment, "add_image"):
            return
        for i, (image, target, found) in enumerate(zip(*batch, detections)):
            if i == self.log_images:
                break
            keep = found["scores"] >= self.draw_score_thresh
            shown = {k: v[keep] for k, v in found.items()}
            drawn = detections_image(image, target, shown, self.class_names, MASK_THRESHOLD)
            experiment.add_image(f"val/detections/{i}", drawn, self.global_step)

    def _draw_operating_point(self, point: dict[str, Any]) -> None:
        experiment = getattr(self.logger, "experiment", None)
        if not self.trainer.is_global_zero or not hasattr(experiment, "add_image"):
            return
        for name, picture in operating_point_pictures(point).items():
            experiment.add_image(f"val/{name}", picture, self.global_step, dataformats="HWC")

    def report(self) -> dict[str, Any]:
        evaluation = self.evaluations.get("val")
        if not evaluation:
            return super().report()
        point = evaluation["operating_point"]
        return {
            **super().report(),
            "val_per_class_ap": evaluation["per_class_ap"],
            "val_operating_point": point["per_class"],
            "val_confusion_matrix": point["confusion_matrix"],
            "val_pr_curves": point["pr_curves"],
        }

    def per_class_tables(self) -> dict[str, dict[str, dict[str, Any]]]:
        report = self.report()
        if "val_operating_point" not in report:
            return {}
        at = f"score >= {self.operating_score_thresh:g}, IoU 0.5"
        return {
            "val AP per class (last epoch)": report["val_per_class_ap"],
            f"val precision, recall, F1 per class (last epoch; {at})": report["val_operating_point"],
        }

    def report_files(self) -> dict[str, Any]:
        """The last val evaluation in COCO formats, so that anyone can re-score it with pycocotools, and its
        operating point's pictures."""
        evaluation = self.evaluations.get("val")
        if not evaluation:
            return {}
        pictures = {
            f"{name}.png": picture for name, picture in operating_point_pictures(evaluation["operating_point"]).items()
        }
        return {
            "predictions.json": evaluation["predictions"],
            "ground_truth.json": evaluation["ground_truth"],
            **pictures,
        }


def operating_point_pictures(point: dict[str, Any]) -> dict[str, np.ndarray]:
    """The precision-recall curves and the confusion matrix of an operating point, as HxWx3 uint8 pictures."""
    confusion, curves = point["confusion_matrix"], point["pr_curves"]
    return {
        "pr_curves": precision_recall_image(
            curves["recall"], curves["classes"], point["per_class"], confusion["score_thresh"]
        ),
        "confusion_matrix": confusion_matrix_image(np.array(confusion["counts"]), confusion["classes"]),
    }
