"""What every task shares: optimizer + per-step schedule, run metadata and RNG state in checkpoints, the
non-finite-loss guard, and the count of the images each evaluation scored."""

from __future__ import annotations

import logging
import math
import random
import warnings
from collections.abc import Mapping
from pathlib import Path
from typing import Any

import numpy as np
import pytorch_lightning as pl
import torch
from torch import nn
from torchmetrics import MaxMetric

from cvkit.checkpoints import check_checkpoint_task, run_checkpoints
from cvkit.console import print_image_counts
from cvkit.data.batches import Batch
from cvkit.errors import CvkitError, TrainingFailed
from cvkit.optim import LRPlan, build_optimizer, build_schedule
from cvkit.tasks.image_counts import EVALUATION_STAGES, ImageCount, gathered

CHECKPOINT_KEY = "cvkit"
RNG_KEY = "cvkit_rng_states"
SCHEDULE_KEY = "cvkit_schedule"
BEST_KEY = "cvkit_best"  # the best values so far of the task's MaxMetrics (val/acc_best, ...)
log = logging.getLogger(__name__)
# Lightning warns that a task's on_before_batch_transfer wins over the data module's: it is meant to.
warnings.filterwarnings("ignore", message="You have overridden `on_before_batch_transfer` in `LightningModule` but")


class BaseTask(pl.LightningModule):
    """A model plus how to optimize it.

    Args:
        model: the network; its input is a normalised NCHW float batch.
        optimizer: optimizer config (``_target_`` + arguments; ``lr`` is replaced by the plan's effective LR).
        scheduler: scheduler config (see :class:`cvkit.optim.Schedule`).
        lr_plan: how the effective LR follows from the base LR and the global batch.
        metadata: what a checkpoint must carry to be used without the run's config files
            (task, class names, image size, normalisation, the composed config).
        channels_last: feed the model channels-last tensors.
        nonfinite_loss: what a NaN or infinite training loss does: ``{"action": "stop"}`` (the default) ends
            the run with :class:`~cvkit.errors.TrainingFailed`; ``{"action": "skip", "max_skipped": N}``
            skips such steps (no backward, no update), at most N times in a run. All ranks decide together.

    Subclasses set :attr:`kind`, implement :meth:`training_loss` (the batch's loss, logged; None to skip the
    batch) and call :meth:`finish_image_count` at the end of each evaluation, on every rank; their
    :meth:`report` and :meth:`print_report` extend this class's (the image counts, ``val_images`` /
    ``test_images``). A checkpoint of another task is refused before its weights are loaded.
    """

    kind = ""

    def __init__(
        self,
        model: nn.Module,
        optimizer: Mapping[str, Any],
        scheduler: Mapping[str, Any],
        lr_plan: LRPlan,
        metadata: Mapping[str, Any] | None = None,
        channels_last: bool = False,
        nonfinite_loss: Mapping[str, Any] | None = None,
    ) -> None:
        super().__init__()
        self.model = model
        self.optimizer_config = dict(optimizer)
        self.scheduler_config = dict(scheduler)
        self.lr_plan = lr_plan
        self.metadata = dict(metadata or {})
        self.channels_last = channels_last
        self.resumed_schedule: Mapping[str, Any] | None = None
        policy = {"action": "stop", "max_skipped": 10, **(nonfinite_loss or {})}
        if policy["action"] not in ("stop", "skip"):
            raise CvkitError(f"nonfinite_loss.action={policy['action']!r} is not valid: 'stop' or 'skip'")
        self.nonfinite_action, self.max_nonfinite_skips = policy["action"], int(policy["max_skipped"])
        self.nonfinite_skipped = 0
        self.counting: dict[str, ImageCount] = {}  # this rank's counts of the evaluation in progress
        self.image_counts: dict[str, dict[str, Any]] = {}  # the last evaluation of each split, for the report
        if channels_last:
            self.model.to(memory_format=torch.channels_last)

    def forward(self, images: torch.Tensor) -> torch.Tensor:
        if self.channels_last:
            images = images.contiguous(memory_format=torch.channels_last)
        return self.model(images)

    def training_loss(self, batch: Any, batch_idx: int) -> torch.Tensor | None:
        """The loss of a training batch (logged as ``train/loss``), or None to skip the batch."""
        raise NotImplementedError

    def training_step(self, batch: Any, batch_idx: int) -> torch.Tensor | None:
        # Skipping a step must also undo what its forward pass did to BatchNorm's running statistics.
        buffers = self.float_buffers() if self.nonfinite_action == "skip" else {}
        loss = self.training_loss(batch, batch_idx)
        if loss is not None and not self.all_finite(loss):
            for name, saved in buffers.items():
                self.get_buffer(name).copy_(saved)
            loss = self.skip_or_stop(loss, batch_idx)
        if self.nonfinite_action == "skip":  # the count so far, in the logs of every epoch and in metrics.json
            self.log(
                "train/nonfinite_skipped", float(self.nonfinite_skipped), on_step=False, on_epoch=True, reduce_fx="max"
            )
        return loss

    def float_buffers(self) -> dict[str, torch.Tensor]:
        """Copies of the model's floating-point buffers (BatchNorm's running mean and variance)."""
        return {
            f"model.{name}": buffer.detach().clone()
            for name, buffer in self.model.named_buffers()
            if buffer.is_floating_point()
        }

    def all_finite(self, loss: torch.Tensor) -> bool:
        """Whether the loss is finite on every rank (one all-reduce under DDP, so that all ranks agree)."""
        finite = torch.isfinite(loss.detach()).all().to(torch.int32)
        if self.trainer.world_size > 1:
            finite = self.trainer.strategy.reduce(finite, reduce_op="min")
        return bool(finite)

    def skip_or_stop(self, loss: torch.Tensor, batch_idx: int) -> None:
        """Skip this step as ``nonfinite_loss`` allows, or end the run naming the step and the last checkpoint."""
        where = (
            f"optimizer step {self.trainer.global_step} (epoch {self.current_epoch} counting from 0, batch {batch_idx})"
        )
        value: float | str = float(loss.detach().float())
        if math.isfinite(value):  # under DDP, another rank's loss was not finite
            value = f"not finite on another rank (here {value:.4g})"
        if self.nonfinite_action == "skip" and self.nonfinite_skipped < self.max_nonfinite_skips:
            self.nonfinite_skipped += 1
            log.warning(
                "train/loss is %s at %s: step skipped (%d of at most %d, nonfinite_loss.max_skipped)",
                value, where, self.nonfinite_skipped, self.max_nonfinite_skips,
            )  # fmt: skip
            return None
        saved = run_checkpoints(Path(self.trainer.default_root_dir))
        last_good = f"the last checkpoint written before it is {saved[0]}" if saved else "no checkpoint was written"
        skipped = f" after skipping {self.nonfinite_skipped} such steps" if self.nonfinite_skipped else ""
        raise TrainingFailed(
            f"train/loss is {value} at {where}{skipped}: training stopped; {last_good}. Lower optimizer.lr "
            "(or clip gradients: trainer.gradient_clip_val), or set nonfinite_loss.action=skip to skip such steps"
        )

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

    def print_report(self) -> None:
        """Print the results of the last evaluations (subclasses: their per-class results first)."""
        print_image_counts(self.report())

    def configure_optimizers(self) -> dict[str, Any]:
        optimizer = build_optimizer(self.model, self.optimizer_config, self.lr_plan.effective_lr)
        schedule = build_schedule(self.scheduler_config, self.trainer.max_epochs, self.lr_plan.effective_lr)
        scheduler = torch.optim.lr_scheduler.LambdaLR(optimizer, schedule.per_step(self.steps_per_epoch))
        return {"optimizer": optimizer, "lr_scheduler": {"scheduler": scheduler, "interval": "step"}}

    def steps_per_epoch(self) -> float:
        """Optimizer steps per epoch, read when the schedule needs it.

        Not ``trainer.estimated_stepping_batches``: asking for it here would make Lightning start the
        train loader before a resumed run has restored its epoch, replaying the first epoch's order.
        """
        return math.ceil(self.trainer.num_training_batches / self.trainer.accumulate_grad_batches)

    def on_save_checkpoint(self, checkpoint: dict[str, Any]) -> None:
        checkpoint[CHECKPOINT_KEY] = self.metadata
        checkpoint[RNG_KEY] = rng_states()
        checkpoint[SCHEDULE_KEY] = {
            "steps_per_epoch": self.steps_per_epoch(),
            "global_batch_size": self.lr_plan.global_batch_size,
            "effective_lr": self.lr_plan.effective_lr,
        }
        checkpoint[BEST_KEY] = self.best_values()

    def on_load_checkpoint(self, checkpoint: dict[str, Any]) -> None:
        # Another task's checkpoint: refused here, before Lightning loads its weights (a traceback of missing keys).
        path = getattr(self.trainer, "ckpt_path", None) or "the checkpoint"
        check_checkpoint_task(checkpoint.get(CHECKPOINT_KEY, {}), self.kind, "ckpt_path", path)
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
        if self.resumed_schedule:
            self.continue_schedule(self.resumed_schedule)

    def continue_schedule(self, saved: Mapping[str, Any]) -> None:
        """After a resume, keep the schedule's position in epochs and take the peak LR from this run's
        plan: a resume on another number of devices (another global batch) continues the same curve
        in epochs, at the LR its global batch calls for."""
        scheduler = self.lr_schedulers()
        steps_per_epoch = self.steps_per_epoch()
        epoch = scheduler.last_epoch / saved["steps_per_epoch"]
        scheduler.last_epoch = round(epoch * steps_per_epoch)
        scheduler.base_lrs = [self.lr_plan.effective_lr] * len(scheduler.base_lrs)
        lrs = [base * factor(scheduler.last_epoch) for base, factor in zip(scheduler.base_lrs, scheduler.lr_lambdas)]
        for group, lr in zip(scheduler.optimizer.param_groups, lrs):
            group["lr"], group["initial_lr"] = lr, self.lr_plan.effective_lr
        scheduler._last_lr = lrs
        if saved["global_batch_size"] != self.lr_plan.global_batch_size:
            log.warning(
                "resumed with another global batch: %d (peak lr %.6g) -> %d (peak lr %.6g); the schedule "
                "continues at epoch %.2f with the LR re-derived for the new batch",
                saved["global_batch_size"],
                saved["effective_lr"],
                self.lr_plan.global_batch_size,
                self.lr_plan.effective_lr,
                epoch,
            )


def rng_states() -> dict[str, Any]:
    """Python, NumPy and torch RNG states in types that ``torch.load(weights_only=True)`` accepts."""
    name, keys, position, has_gauss, gauss = np.random.get_state()
    return {
        "python": random.getstate(),
        "numpy": [name, keys.tolist(), position, has_gauss, gauss],
        "torch": torch.get_rng_state(),
        "cuda": torch.cuda.get_rng_state_all() if torch.cuda.is_available() else [],
    }


def restore_rng_states(states: dict[str, Any]) -> None:
    """Undo :func:`rng_states`, so dropout and other global randomness replay after a resume."""
    version, internal, gauss = states["python"]
    random.setstate((version, tuple(internal), gauss))
    name, keys, position, has_gauss, cached = states["numpy"]
    np.random.set_state((name, np.asarray(keys, dtype=np.uint32), position, has_gauss, cached))
    torch.set_rng_state(states["torch"])
    if states["cuda"] and torch.cuda.is_available():
        torch.cuda.set_rng_state_all(states["cuda"])
