"""What every task shares: its assembly from the config (:meth:`BaseTask.from_config`), optimizer + per-step
schedule, the run record and RNG state in checkpoints, the non-finite-loss guard, and the count of the
images each evaluation scored."""

from __future__ import annotations

import dataclasses
import logging
import math
import random
import warnings
from collections.abc import Iterator, Mapping, Sequence
from contextlib import contextmanager
from typing import Any, ClassVar

import numpy as np
import pytorch_lightning as pl
import torch
from omegaconf import DictConfig, OmegaConf
from torch import nn
from torchmetrics import MaxMetric, Metric

from cvkit.checkpoints import (
    BEST_KEY,
    RECORD_KEY,
    RNG_KEY,
    SCHEDULE_KEY,
    RunRecord,
    restore_rng_states,
    rng_states,
)
from cvkit.data.base import BaseDataModule
from cvkit.data.batches import Batch
from cvkit.errors import CvkitError
from cvkit.optim import TrainingPlan, build_optimizer
from cvkit.task_kinds import task_kind
from cvkit.tasks.image_counts import EVALUATION_STAGES, ImageCount, gathered
from cvkit.tasks.nonfinite import NonfiniteLossGuard

# Keys of the task config that are not the task's own arguments: its class, its network's options (read by
# the network builder) and the metric the callbacks config picks the best checkpoint by.
ASSEMBLY_KEYS = ("_target_", "model", "monitor", "monitor_mode")
log = logging.getLogger(__name__)
# Lightning warns that a task's on_before_batch_transfer wins over the data module's: it is meant to.
warnings.filterwarnings("ignore", message="You have overridden `on_before_batch_transfer` in `LightningModule` but")


def channels_last_for(setting: bool | str, trainer: pl.Trainer) -> bool:
    """``channels_last``: as set, or for ``auto`` on when `trainer` trains on the CPU, where oneDNN's
    convolutions are faster channels-last (1.06-1.48x a train step for the convolutional networks measured,
    0.98 for ViT-Tiny: docs/benchmarks.md), or on a CUDA GPU in mixed precision, where cuDNN runs channels-last
    convolutions on the tensor cores (the case NVIDIA's performance guide gives as faster); CUDA float32 and
    other devices keep the default layout."""
    if setting != "auto":
        return bool(setting)
    device = trainer.strategy.root_device.type
    return device == "cpu" or (device == "cuda" and str(trainer.precision).endswith("-mixed"))


class BaseTask(pl.LightningModule):
    """A model plus how to optimize and evaluate it. Built from the config by :meth:`from_config`.

    Args:
        model: the network; its input is a normalised NCHW float batch.
        class_names: the classes in label order.
        plan: how the run optimizes (optimizer, effective LR, schedule, steps per epoch); None outside
            training (evaluation).
        record: what a checkpoint must carry to be used without the run's config files.
        channels_last: feed the model channels-last tensors: true, false, or "auto"
            (:func:`channels_last_for`, decided once the trainer is known, in :meth:`setup`).
        nonfinite_loss: what a NaN or infinite training loss does, ``{"action": "stop" | "skip", "max_skipped":
            N}`` (see :class:`~cvkit.tasks.nonfinite.NonfiniteLossGuard`).

    Subclasses set :attr:`kind` (their row of the task table, :mod:`cvkit.task_kinds`) and
    :attr:`data_module` (the base class of the data modules they train on), turn their config options into
    arguments in :meth:`own_arguments`, implement :meth:`training_loss` (the batch's loss, logged; None to skip the
    batch) and call :meth:`finish_image_count` at the end of each evaluation, on every rank; their
    :meth:`report` and :meth:`per_class_tables` extend this class's. A checkpoint of another task is refused
    before its weights are loaded.
    """

    kind: ClassVar[str] = ""
    data_module: ClassVar[type[BaseDataModule]] = BaseDataModule

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
        self.model = model
        self.class_names = list(class_names)
        self.plan = plan
        self.record = record
        self.channels_last = channels_last
        self.resumed_schedule: Mapping[str, Any] | None = None
        self.nonfinite = NonfiniteLossGuard.from_config(nonfinite_loss)
        self.counting: dict[str, ImageCount] = {}  # this rank's counts of the evaluation in progress
        self.image_counts: dict[str, dict[str, Any]] = {}  # the last evaluation of each split, for the report
        self._probing = False  # while the batch search runs training steps (:meth:`probing`)
        if channels_last not in (True, False, "auto"):
            raise CvkitError(f"channels_last={channels_last!r} is not valid: it must be true, false or auto")

    def use_plan(self, plan: TrainingPlan) -> None:
        """Train by `plan` (set once the per-device batch is known, searched or given), and record it."""
        self.plan = plan
        if self.record is not None:
            self.record = dataclasses.replace(self.record, lr_plan=plan.lr.as_dict())

    @contextmanager
    def probing(self, device: torch.device) -> Iterator[None]:
        """Training steps that leave no trace, for the batch search: on `device`, in training mode, with
        nothing logged; afterwards the weights are back where they were, and the buffers (BatchNorm
        statistics), the metrics and the random number generators as they were before."""
        home, was_training = next(self.parameters()).device, self.training
        buffers = {name: buffer.detach().clone() for name, buffer in self.named_buffers()}
        python_state, numpy_state = random.getstate(), np.random.get_state()
        self._probing = True
        with torch.random.fork_rng(devices=[device] if device.type == "cuda" else []):
            try:
                self.to(device).train()
                yield
            finally:
                self._probing = False
                self.zero_grad(set_to_none=True)
                self.to(home).train(was_training)
                for name, buffer in self.named_buffers():
                    buffer.copy_(buffers[name])
                for metric in self.modules():
                    if isinstance(metric, Metric):
                        metric.reset()
                random.setstate(python_state)
                np.random.set_state(numpy_state)

    def log(self, *args: Any, **kwargs: Any) -> None:
        """Lightning's ``log``, silent while :meth:`probing`."""
        if not self._probing:
            super().log(*args, **kwargs)

    def channels_last_under(self, trainer: pl.Trainer) -> bool:
        """Whether this task feeds its model channels-last tensors when `trainer` runs it."""
        return channels_last_for(self.channels_last, trainer)

    def setup(self, stage: str) -> None:
        """Decide ``channels_last=auto`` for the trainer's device and precision, and lay the weights out so."""
        self.channels_last = self.channels_last_under(self.trainer)
        if self.channels_last:
            self.model.to(memory_format=torch.channels_last)

    # Assembly.
    @classmethod
    def from_config(
        cls,
        cfg: DictConfig,
        datamodule: BaseDataModule,
        plan: TrainingPlan | None = None,
        overrides: Sequence[str] = (),
    ) -> BaseTask:
        """The task of ``cfg.task`` for the classes of the (loaded) `datamodule`: the network of
        ``cfg.backbone`` and ``cfg.task.model`` built by the task table's builder, the task's own options
        (:meth:`own_arguments`), and the run record of `cfg`, `plan` and the command-line `overrides`."""
        task_cfg = OmegaConf.to_container(cfg.task, resolve=True)
        image_size = getattr(datamodule, "image_size", None)
        network = task_kind(cls.kind).build_network(
            OmegaConf.to_container(cfg.backbone, resolve=True),
            task_cfg.get("model") or {},
            datamodule.num_classes,
            image_size,
            True,
        )
        record = RunRecord(
            task=cls.kind,
            class_names=list(datamodule.class_names),
            config=OmegaConf.to_container(cfg, resolve=True),
            overrides=list(overrides),
            lr_plan=plan.lr.as_dict() if plan else {},
            image_size=image_size,
            mean=getattr(datamodule, "mean", None),
            std=getattr(datamodule, "std", None),
        )
        options = {key: value for key, value in task_cfg.items() if key not in ASSEMBLY_KEYS}
        return cls(
            **cls.own_arguments(options, datamodule),
            model=network,
            class_names=datamodule.class_names,
            plan=plan,
            record=record,
            channels_last=cfg.channels_last,
            nonfinite_loss=OmegaConf.to_container(cfg.nonfinite_loss) if cfg.nonfinite_loss is not None else None,
        )

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
    def on_before_batch_transfer(self, batch: Any, dataloader_idx: int) -> Any:
        """Count an evaluation batch; hand the step the plain batch (None when no image of it could be read)."""
        if not isinstance(batch, Batch):
            return batch
        stage = EVALUATION_STAGES.get(self.trainer.state.stage)
        if stage is not None:
            count = self.counting.setdefault(stage, ImageCount())
            count.scored += len(batch[0]) if batch else 0
            count.unreadable += batch.unreadable
        return tuple(batch) if batch else None

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
        """Files the last validation leaves in the run dir: ``{file name: JSON content}``."""
        return {}

    def per_class_tables(self) -> dict[str, dict[str, dict[str, Any]]]:
        """Per-class results of the last validation, ``{title: {class: {column: value}}}``, for the end of
        the run's console report (subclasses give theirs)."""
        return {}

    # Optimization.
    def configure_optimizers(self) -> dict[str, Any]:
        if self.plan is None:
            raise CvkitError("this task was built without a training plan (for evaluation): it cannot be trained")
        optimizer = build_optimizer(self.model, self.plan.optimizer, self.plan.lr.effective_lr)
        per_step = self.plan.schedule.per_step(self.plan.steps_per_epoch)
        scheduler = torch.optim.lr_scheduler.LambdaLR(optimizer, per_step)
        return {"optimizer": optimizer, "lr_scheduler": {"scheduler": scheduler, "interval": "step"}}

    # Checkpoints.
    def on_save_checkpoint(self, checkpoint: dict[str, Any]) -> None:
        if self.record is not None:
            checkpoint[RECORD_KEY] = self.record.as_dict()
        checkpoint[RNG_KEY] = rng_states()
        if self.plan is not None:
            checkpoint[SCHEDULE_KEY] = {
                "steps_per_epoch": self.plan.steps_per_epoch,
                "global_batch_size": self.plan.lr.global_batch_size,
                "effective_lr": self.plan.lr.effective_lr,
            }
        checkpoint[BEST_KEY] = self.best_values()

    def on_load_checkpoint(self, checkpoint: dict[str, Any]) -> None:
        # Another task's checkpoint: refused here, before Lightning loads its weights (a traceback of missing keys).
        record = RunRecord.in_checkpoint(checkpoint)
        if record is not None:
            record.check_task(self.kind, "ckpt_path", getattr(self.trainer, "ckpt_path", None) or "the checkpoint")
        if RNG_KEY in checkpoint:
            restore_rng_states(checkpoint[RNG_KEY])
        self.resumed_schedule = checkpoint.get(SCHEDULE_KEY)
        self.restore_best_values(checkpoint.get(BEST_KEY, {}))

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
        loader_steps = math.ceil(self.trainer.num_training_batches / self.trainer.accumulate_grad_batches)
        if loader_steps != self.plan.steps_per_epoch:  # the schedule would end early, or never
            raise CvkitError(
                f"the schedule counts {self.plan.steps_per_epoch} optimizer steps per epoch "
                f"(cvkit.batching.optimizer_steps_per_epoch), but the train loader gives {loader_steps}: a data "
                "module whose train_dataloader does not batch as cvkit's base data module does cannot be scheduled"
            )
        if self.resumed_schedule:
            self.continue_schedule(self.resumed_schedule)

    def continue_schedule(self, saved: Mapping[str, Any]) -> None:
        """After a resume, keep the schedule's position in epochs and take the peak LR from this run's
        plan: a resume on another number of devices (another global batch) continues the same curve
        in epochs, at the LR its global batch calls for."""
        scheduler = self.lr_schedulers()
        peak_lr, global_batch = self.plan.lr.effective_lr, self.plan.lr.global_batch_size
        epoch = scheduler.last_epoch / saved["steps_per_epoch"]
        scheduler.last_epoch = round(epoch * self.plan.steps_per_epoch)
        scheduler.base_lrs = [peak_lr] * len(scheduler.base_lrs)
        lrs = [base * factor(scheduler.last_epoch) for base, factor in zip(scheduler.base_lrs, scheduler.lr_lambdas)]
        for group, lr in zip(scheduler.optimizer.param_groups, lrs):
            group["lr"], group["initial_lr"] = lr, peak_lr
        scheduler._last_lr = lrs
        if saved["global_batch_size"] != global_batch:
            log.warning(
                "resumed with another global batch: %d (peak lr %.6g) -> %d (peak lr %.6g); the schedule "
                "continues at epoch %.2f with the LR re-derived for the new batch",
                saved["global_batch_size"], saved["effective_lr"], global_batch, peak_lr, epoch,
            )  # fmt: skip
