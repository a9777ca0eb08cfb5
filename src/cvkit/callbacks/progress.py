"""Progress that suits where the output goes: a live bar on a terminal, timed lines in a log file."""

from __future__ import annotations

import logging
import sys
import time
from collections.abc import Callable
from typing import Any

import pytorch_lightning as pl
from pytorch_lightning.callbacks import ProgressBar, RichProgressBar

log = logging.getLogger(__name__)

# The long-epoch notice waits for this many training batches, so that the first (slow) steps weigh less.
NOTICE_AFTER_BATCHES = 5


def progress_bar(log_interval_s: float = 30.0, long_epoch_s: float = 1800.0) -> ProgressBar:
    """Rich's live bar on a terminal; in a log file (SLURM, CI, ``nohup``), :class:`TimedProgress`."""
    if sys.stdout.isatty():
        return RichProgressBar()
    return TimedProgress(log_interval_s, long_epoch_s)


def duration(seconds: float) -> str:
    """``75`` -> ``1m15s``, ``5400`` -> ``1h30m``."""
    seconds = max(0, round(seconds))
    hours, rest = divmod(seconds, 3600)
    minutes, secs = divmod(rest, 60)
    return f"{hours}h{minutes:02d}m" if hours else f"{minutes}m{secs:02d}s" if minutes else f"{secs}s"


def batch_images(batch: Any) -> int:
    """How many images a batch holds: its first element is the image tensor or the list of images."""
    images = batch[0] if isinstance(batch, list | tuple) else batch
    return len(images)


class TimedProgress(ProgressBar):
    """Progress for log files: a line every `log_interval_s` seconds while training, validating or testing
    (step, images/s, loss, ETA; never one per step), a line at each epoch end with its metrics, and once, after
    the first steps, a notice with the settings that shorten an epoch expected to take over `long_epoch_s`."""

    def __init__(
        self, log_interval_s: float = 30.0, long_epoch_s: float = 1800.0, clock: Callable[[], float] = time.monotonic
    ) -> None:
        super().__init__()
        self.log_interval_s = log_interval_s
        self.long_epoch_s = long_epoch_s
        self.clock = clock
        self._enabled = True
        self._noticed = False
        self._last_line = 0.0
        self._epoch_start = 0.0
        self._images = 0  # trained on since the last line
        self._stage_start = 0.0

    def disable(self) -> None:
        self._enabled = False

    def enable(self) -> None:
        self._enabled = True

    def _due(self) -> bool:
        return self._enabled and self.clock() - self._last_line >= self.log_interval_s

    def on_train_epoch_start(self, trainer: pl.Trainer, pl_module: pl.LightningModule) -> None:
        self._epoch_start = self._last_line = self.clock()
        self._images = 0

    def on_train_batch_end(
        self, trainer: pl.Trainer, pl_module: pl.LightningModule, outputs: Any, batch: Any, batch_idx: int
    ) -> None:
        self._images += batch_images(batch) * trainer.world_size
        done, total = batch_idx + 1, self.total_train_batches
        per_batch = (self.clock() - self._epoch_start) / done
        if done == NOTICE_AFTER_BATCHES and not self._noticed and self._enabled:
            self._notice_long_epoch(trainer, per_batch * total)
        if self._due():
            now = self.clock()
            rate = self._images / max(now - self._last_line, 1e-9)
            log.info(self._train_line(trainer, done, total, per_batch, rate))
            self._last_line, self._images = now, 0

    @staticmethod
    def _train_line(trainer: pl.Trainer, done: int, total: float, per_batch: float, rate: float) -> str:
        """``epoch 2/12  step 23/51  3.1 images/s  loss 1.42  epoch ETA 2m10s, training ETA 35m``."""
        epochs = trainer.max_epochs if trainer.max_epochs and trainer.max_epochs > 0 else None
        known = total != float("inf")
        parts = [
            f"epoch {trainer.current_epoch + 1}" + (f"/{epochs}" if epochs else ""),
            f"step {done}/{total}" if known else f"step {done}",
            f"{rate:,.1f} images/s",
        ]
        loss = trainer.progress_bar_metrics.get("train/loss_step")
        if loss is not None:
            parts.append(f"loss {float(loss):.4g}")
        if known:
            left = (total - done) * per_batch
            later_epochs = (epochs - trainer.current_epoch - 1) * total * per_batch if epochs else None
            parts.append(f"epoch ETA {duration(left)}")
            if later_epochs is not None:
                parts[-1] += f", training ETA {duration(left + later_epochs)}"
        return "  ".join(parts)

    def _notice_long_epoch(self, trainer: pl.Trainer, epoch_s: float) -> None:
        self._noticed = True
        if epoch_s <= self.long_epoch_s:
            return
        size = getattr(trainer.lightning_module, "input_size_settings", "input size")
        on_cpu = trainer.strategy.root_device.type == "cpu"
        log.warning(
            f"one training epoch will take about {duration(epoch_s)} ({self.total_train_batches} steps"
            f"{' on the CPU' if on_cpu else ''}). To shorten it: trainer.limit_train_batches=0.1 (a tenth of each "
            f"epoch) to check a setup, a smaller {size}, a lighter backbone.name, or "
            f"{'a GPU (trainer=gpu)' if on_cpu else 'more devices (trainer=ddp)'}."
        )

    def on_train_epoch_end(self, trainer: pl.Trainer, pl_module: pl.LightningModule) -> None:
        if not self._enabled:
            return
        metrics = {k: float(v) for k, v in trainer.callback_metrics.items() if v.numel() == 1}
        shown = "  ".join(f"{k} {v:.4g}" for k, v in sorted(metrics.items()) if not k.endswith("_step"))
        epochs = f"/{trainer.max_epochs}" if trainer.max_epochs and trainer.max_epochs > 0 else ""
        log.info(
            f"epoch {trainer.current_epoch + 1}{epochs} done in {duration(self.clock() - self._epoch_start)}: {shown}"
        )
        self._last_line = self.clock()

    def _on_eval_start(self) -> None:
        self._stage_start = self.clock()

    def _on_eval_batch_end(self, trainer: pl.Trainer, what: str, batch_idx: int, total: float) -> None:
        if trainer.sanity_checking or not self._due():
            return
        now = self.clock()
        done = batch_idx + 1
        left = f", ETA {duration((now - self._stage_start) / done * (total - done))}" if total != float("inf") else ""
        log.info(f"{what}: batch {done}/{total}{left}")
        self._last_line = now

    def on_validation_start(self, trainer: pl.Trainer, pl_module: pl.LightningModule) -> None:
        self._on_eval_start()

    def on_test_start(self, trainer: pl.Trainer, pl_module: pl.LightningModule) -> None:
        self._on_eval_start()

    def on_validation_batch_end(
        self,
        trainer: pl.Trainer,
        pl_module: pl.LightningModule,
        outputs: Any,
        batch: Any,
        batch_idx: int,
        dataloader_idx: int = 0,
    ) -> None:
        self._on_eval_batch_end(trainer, "validating", batch_idx, trainer.num_val_batches[dataloader_idx])

    def on_test_batch_end(
        self,
        trainer: pl.Trainer,
        pl_module: pl.LightningModule,
        outputs: Any,
        batch: Any,
        batch_idx: int,
        dataloader_idx: int = 0,
    ) -> None:
        self._on_eval_batch_end(trainer, "testing", batch_idx, trainer.num_test_batches[dataloader_idx])
