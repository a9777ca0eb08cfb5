"""What every task shares: optimizer + per-step schedule, its entries in checkpoints (the run record, RNG
states, the schedule's position, the best values), the non-finite-loss guard, and the count of the images
each evaluation scored. Tasks are assembled from the config by :func:`cvkit.builders.build_task`."""

from __future__ import annotations

import logging
import warnings
from collections.abc import Mapping, Sequence
from typing import Any, ClassVar

import pytorch_lightning as pl
import torch
from pytorch_lightning.utilities import rank_zero_info
from torch import nn
from torchmetrics import MaxMetric

from cvkit.checkpoints import RunRecord, TaskState, save_task_state
from cvkit.data.base import BaseDataModule
from cvkit.data.batches import Batch
from cvkit.errors import CvkitError
from cvkit.optim import TrainingPlan, build_optimizer, optimizer_groups
from cvkit.tasks.backbone_training import BackboneTraining
from cvkit.tasks.image_counts import EVALUATION_STAGES, ImageCount, gathered
from cvkit.tasks.nonfinite import NonfiniteLossGuard

log = logging.getLogger(__name__)


def channels_last_for(setting: bool | str, trainer: pl.Trainer) -> bool:
    """``channels_last``: as set, or for ``auto`` on when `trainer` trains on a CUDA GPU in mixed precision,
    where cuDNN runs channels-last convolutions on the tensor cores (the case NVIDIA's performance guide gives
    as faster). Everywhere else ``auto`` keeps the default layout: on the CPU, channels-last was faster on an
    AMD EPYC and slower on an Intel Xeon (docs/benchmarks.md), so it is for the user to choose there."""
    if setting != "auto":
        return bool(setting)
    return trainer.strategy.root_device.type == "cuda" and str(trainer.precision).endswith("-mixed")


class BaseTask(pl.LightningModule):
    """A model plus how to optimize and evaluate it, assembled by :func:`cvkit.builders.build_task`.

    Args:
        model: the network; its input is a normalised NCHW float batch.
        class_names: the classes in label order.
        plan: how the run optimizes (optimizer, effective LR, schedule in epochs); None outside training
            (evaluation). The optimizer steps an epoch has are Lightning's (``estimated_stepping_batches``).
        record: what a checkpoint must carry to be used without the run's config files.
        channels_last: feed the model channels-last tensors: true, false, or "auto"
            (:func:`channels_last_for`, decided once the trainer is known, in :meth:`setup`).
        nonfinite_loss: what a NaN or infinite training loss does, ``{"action": "stop" | "skip", "max_skipped":
            N}`` (see :class:`~cvkit.tasks.nonfinite.NonfiniteLossGuard`).

    Subclasses set :attr:`kind` (the task's name: its network in :data:`cvkit.models.networks.NETWORKS`),
    :attr:`data_module` (the base class of the data modules they train on) and :attr:`input_size_settings`
    (the settings named in advice on the input size), turn their config options into arguments in
    :meth:`own_arguments`, implement :meth:`training_loss` (the batch's loss, logged; None to skip the batch)
    and call :meth:`finish_image_count` at the end of each evaluation, on every rank; their :meth:`report` and
    :meth:`per_class_tables` extend this class's. A checkpoint of another task is refused before its weights
    are loaded.
    """

    kind: ClassVar[str] = ""
    data_module: ClassVar[type[BaseDataModule]] = BaseDataModule
    input_size_settings: ClassVar[str] = "data.image_size"

    def __init__(
        self,
        *,
        model: nn.Module,
        class_names: Sequence[str],
        plan: TrainingPlan | None,
        record: RunRecord | None,
        channels_last: bool | str,
        nonfinite_loss: Mapping[str, Any],
    ) -> None:
        super().__init__()
        if channels_last not in (True, False, "auto"):
            raise CvkitError(f"channels_last={channels_last!r} is not valid: it must be true, false or auto")
        self.model = model
        self.class_names = list(class_names)
        self.plan = plan
        self.record = record
        self.channels_last = channels_last
        self.steps_per_epoch = 0.0  # optimizer steps an epoch, once Lightning knows them (on_train_start)
        self.resumed_schedule: Mapping[str, Any] | None = None
        self.nonfinite = NonfiniteLossGuard.from_config(nonfinite_loss)
        self.counting: dict[str, ImageCount] = {}  # this rank's counts of the evaluation in progress
        self.image_counts: dict[str, dict[str, Any]] = {}  # the last evaluation of each split, for the report
        self.backbone_training = BackboneTraining(model, plan.freezing) if plan is not None else None

    def channels_last_under(self, trainer: pl.Trainer) -> bool:
        """Whether this task feeds its model channels-last tensors when `trainer` runs it."""
        return channels_last_for(self.channels_last, trainer)

    def setup(self, stage: str) -> None:
        """Decide ``channels_last=auto`` for the trainer's device and precision, and lay the weights out so."""
        self.channels_last = self.channels_last_under(self.trainer)
        if self.channels_last:
            self.model.to(memory_format=torch.channels_last)

    @classmethod
    def own_arguments(cls, options: dict[str, Any], datamodule: BaseDataModule) -> dict[str, Any]:
        """The task config's own options as this task's constructor arguments (subclasses turn values that
        need the data into objects: class weights, the ignore index)."""
        return options

    def forward(self, images: torch.Tensor) -> torch.Tensor:
        if self.channels_last:
            images = images.contiguous(memory_format=torch.channels_last)
        return self.model(images)

    def training_loss(self, batch: Any, batch_idx: int) -> torch.Tensor | None:
        """The loss of a training batch (logged as ``train/loss``), or None to skip the batch."""
        raise NotImplementedError

    def training_step(self, batch: Any, batch_idx: int) -> torch.Tensor | None:
        saved = self.nonfinite.snapshot(self.model)
        loss = self.training_loss(batch, batch_idx)
        if loss is not None:
            loss = self.nonfinite.check(self, loss, batch_idx, saved)
        if self.nonfinite.action == "skip":  # the count so far, in the logs of every epoch and in metrics.json
            skipped = float(self.nonfinite.skipped)
            self.log("train/nonfinite_skipped", skipped, on_step=False, on_epoch=True, reduce_fx="max")
        return loss

    # The images each evaluation scored.
    def on_validation_batch_start(self, batch: Any, batch_idx: int, dataloader_idx: int = 0) -> None:
        self.count_images(batch)

    def on_test_batch_start(self, batch: Any, batch_idx: int, dataloader_idx: int = 0) -> None:
        self.count_images(batch)

    def count_images(self, batch: Any) -> None:
        """Count an evaluation batch: its images, and the samples that could not be read."""
        stage = EVALUATION_STAGES.get(self.trainer.state.stage)
        if stage is not None and isinstance(batch, Batch):
            count = self.counting.setdefault(stage, ImageCount())
            count.scored += len(batch[0]) if batch else 0
            count.unreadable += batch.unreadable

    def finish_image_count(self, stage: str) -> ImageCount:
        """The count of the evaluation of `stage` that ends, over all ranks; kept for the report unless it was
        the sanity check."""
        count = gathered(self.counting.pop(stage, ImageCount()))
        if not self.trainer.sanity_checking:
            datamodule = getattr(self.trainer, "datamodule", None)
            if datamodule is not None and datamodule.has_split(stage):
                report = count.as_report(datamodule.split_sizes()[stage], datamodule.unreadable_at_load(stage))
            else:
                report = count.as_report(None)
            self.image_counts[stage] = report
        return count

    def report(self) -> dict[str, Any]:
        """Results of the last evaluations, for metrics.json: the images each split scored; subclasses add
        their per-class results."""
        return {f"{stage}_images": count for stage, count in self.image_counts.items()}

    def report_files(self) -> dict[str, Any]:
        """Files the last validation leaves in the run dir: ``{file name: JSON content, or an HxWx3 uint8
        picture for a .png}``."""
        return {}

    def per_class_tables(self) -> dict[str, dict[str, dict[str, Any]]]:
        """Per-class results of the last validation, ``{title: {class: {column: value}}}``, for the end of
        the run's console report (subclasses give theirs)."""
        return {}

    # Optimization.
    def parameter_groups(self) -> list[dict[str, Any]]:
        """The optimizer's parameter groups (:func:`cvkit.optim.optimizer_groups`): the head's, then the
        backbone's, at their ``lr_factor`` of the run's LR; the parameters frozen for the whole run left out."""
        layers = self.backbone_training.layers
        backbone, num_layers = (layers.layer, layers.num_layers) if layers else (None, 0)
        unfreezes = self.plan.freezing.epochs > 0  # the backbone's LR rises again after it
        return optimizer_groups(self.model, self.plan.optimizer, backbone, num_layers, own_schedule=unfreezes)

    def configure_optimizers(self) -> dict[str, Any]:
        if self.plan is None:
            raise CvkitError("this task was built without a training plan (for evaluation): it cannot be trained")
        optimizer = build_optimizer(self.parameter_groups(), self.plan.optimizer, self.plan.lr.effective_lr)
        factors = [
            self.backbone_schedule_factor if group["backbone"] else self.lr_factor for group in optimizer.param_groups
        ]
        scheduler = torch.optim.lr_scheduler.LambdaLR(optimizer, factors)
        return {"optimizer": optimizer, "lr_scheduler": {"scheduler": scheduler, "interval": "step"}}

    def epoch_at(self, step: int) -> float:
        """The fractional epoch at optimizer step `step`."""
        return step / self.steps_per_epoch if step else 0.0

    def lr_factor(self, step: int) -> float:
        """The schedule's multiplier of the peak LR at optimizer step `step`, at its fraction of an epoch."""
        return self.plan.schedule.factor(self.epoch_at(step))

    def backbone_schedule_factor(self, step: int) -> float:
        """:meth:`lr_factor` for the backbone's groups: times 0 while it is frozen, and rising again after it is
        unfrozen (:meth:`cvkit.optim.Freezing.lr_factor`)."""
        return self.lr_factor(step) * self.plan.freezing.lr_factor(self.epoch_at(step))

    def on_train_epoch_start(self) -> None:
        self.backbone_training.start_epoch(self.model, self.current_epoch)

    # Checkpoints.
    def on_save_checkpoint(self, checkpoint: dict[str, Any]) -> None:
        schedule = None
        if self.plan is not None:
            schedule = {
                "steps_per_epoch": self.steps_per_epoch,
                "global_batch_size": self.plan.lr.global_batch_size,
                "effective_lr": self.plan.lr.effective_lr,
            }
        save_task_state(checkpoint, self.record, schedule, self.best_values())

    def on_load_checkpoint(self, checkpoint: dict[str, Any]) -> None:
        state = TaskState.restored_from(checkpoint)
        # Another task's checkpoint: refused here, before Lightning loads its weights (a traceback of missing keys).
        if state.record is not None:
            where = getattr(self.trainer, "ckpt_path", None) or "the checkpoint"
            state.record.check_task(self.kind, "ckpt_path", where)
        self.resumed_schedule = state.schedule
        self.restore_best_values(state.best)

    def best_values(self) -> dict[str, float]:
        """The best value so far of each of the task's MaxMetrics (``val/acc_best``, ...) that has one."""
        return {
            name: float(metric.compute())
            for name, metric in self.named_children()
            if isinstance(metric, MaxMetric) and metric.update_called
        }

    def restore_best_values(self, values: Mapping[str, float]) -> None:
        """Undo :meth:`best_values`, so that ``val/*_best`` spans a resume."""
        for name, best in values.items():
            metric = getattr(self, name, None)
            if isinstance(metric, MaxMetric):
                metric.update(torch.tensor(best, device=metric.device))

    def on_train_start(self) -> None:
        # Lightning's count of the optimizer steps (its loader's length, limit_train_batches, accumulation and
        # max_steps), known once the train loader is set up (asked for earlier, it would set the loader up before
        # a resumed run restores its position: Lightning issue #20550).
        self.steps_per_epoch = self.trainer.estimated_stepping_batches / self.trainer.max_epochs
        schedule = self.plan.schedule
        rank_zero_info(
            f"schedule: {schedule.name} over {schedule.total_epochs:g} epochs of {self.steps_per_epoch:g} optimizer "
            f"steps ({round(schedule.total_epochs * self.steps_per_epoch)} in all, "
            f"{round(schedule.warmup_epochs * self.steps_per_epoch)} of warmup)"
        )
        if self.resumed_schedule:
            self.continue_schedule(self.resumed_schedule)
        # (Lightning skips on_train_epoch_start for an epoch resumed in its middle)
        self.backbone_training.start_epoch(self.model, self.current_epoch)

    def continue_schedule(self, saved: Mapping[str, Any]) -> None:
        """After a resume, keep the schedule's position in epochs and take the peak LR from this run's
        plan: a resume on another number of devices (another global batch) continues the same curve
        in epochs, at the LR its global batch calls for."""
        scheduler = self.lr_schedulers()
        peak_lr, global_batch = self.plan.lr.effective_lr, self.plan.lr.global_batch_size
        epoch = scheduler.last_epoch / saved["steps_per_epoch"]
        groups = scheduler.optimizer.param_groups
        scheduler.base_lrs = [peak_lr * group.get("lr_factor", 1.0) for group in groups]  # (backbone_lr_factor)
        for group, base_lr in zip(groups, scheduler.base_lrs, strict=True):
            group["initial_lr"] = base_lr
        # One step of the scheduler onto the position: it sets each group's LR there (and get_last_lr()).
        scheduler.last_epoch = round(epoch * self.steps_per_epoch) - 1
        with warnings.catch_warnings():  # torch's notice of a step before any optimizer step: it is meant
            warnings.filterwarnings("ignore", message="Detected call of `lr_scheduler.step()`")
            scheduler.step()
        if saved["global_batch_size"] != global_batch:
            log.warning(
                "resumed with another global batch: %d (peak lr %.6g) -> %d (peak lr %.6g); the schedule "
                "continues at epoch %.2f with the LR re-derived for the new batch",
                saved["global_batch_size"], saved["effective_lr"], global_batch, peak_lr, epoch,
            )  # fmt: skip
