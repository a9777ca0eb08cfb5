"""The checkpoints a run restarts from: ``last.ckpt`` at every epoch end, periodic saves inside epochs,
and one save when a signal stops the run (the best checkpoint is Lightning's ``ModelCheckpoint``'s); and
the plugin through which every checkpoint is written whole or not at all.

Why not Lightning's own pieces (each gap is checked by tests/test_lightning_gaps.py, which fails when
Lightning closes it):

- ``ModelCheckpoint(save_last=True)`` writes ``last.ckpt`` only when it also writes a top-k checkpoint
  (Lightning >= 2.6): once the monitored metric stops improving, ``last.ckpt`` stays at the best epoch.
- Lightning's SIGTERM handling stops after the batch in progress, inside a gradient accumulation too, saves
  nothing and ends the process with status 0; under DDP it follows rank 0's flag only, so a signal to
  another rank alone is not seen by the others. SIGINT raises wherever the code is; SIGUSR1 is handled only
  under SLURM's auto-requeue. cvkit stops every rank at the same optimizer-step boundary, saves it, and
  exits with 128 + the signal, within a grace period.
- ``OnExceptionCheckpoint`` saves whatever state an exception left, waits at a barrier that ranks without
  the exception never reach, and makes every later ``fit`` resume from its file.
- Lightning's checkpoint writer writes a temporary file in ``$TMPDIR`` and moves it into place: not atomic
  across file systems, and not flushed to disk. :class:`AtomicCheckpointIO` is.
"""

from __future__ import annotations

import logging
import os
import signal
import time
from pathlib import Path
from typing import Any

import pytorch_lightning as pl
import torch
from lightning_fabric.plugins.io.torch_io import TorchCheckpointIO
from pytorch_lightning.callbacks import Checkpoint, ModelCheckpoint

from cvkit.checkpoints import (
    CHECKPOINT_DIR,
    INTERRUPTED,
    LAST,
    PARTIAL_SUFFIX,
    PERIODIC_PREFIX,
    run_checkpoints,
    save_streamed,
    sync_folder,
    tensor_bytes,
    write_atomically,
)
from cvkit.errors import CvkitError, Interrupted
from cvkit.signals import StopRequest

log = logging.getLogger(__name__)


class AtomicCheckpointIO(TorchCheckpointIO):
    """Lightning's checkpoint writer, with :func:`write_atomically`. Remembers the file it wrote last and the
    optimizer step it holds (:attr:`last_written`; rank 0 writes every checkpoint)."""

    def __init__(self) -> None:
        super().__init__()
        self.last_written: tuple[Path, int] | None = None

    def save_checkpoint(self, checkpoint: dict[str, Any], path: Any, storage_options: Any | None = None) -> None:
        write_atomically(Path(path), lambda file: save_streamed(checkpoint, file), tensor_bytes(checkpoint))
        self.last_written = (Path(path), int(checkpoint.get("global_step", -1)))


class RunCheckpoints(Checkpoint):
    """Writes the run's restart points into ``<run dir>/checkpoints``.

    A :class:`~pytorch_lightning.callbacks.Checkpoint`, so Lightning runs it after the other callbacks and
    after ``ModelCheckpoint`` (configured first): when that has just written the best checkpoint at the
    epoch's last step, ``last.ckpt`` is a hard link to it (the same state, written once).

    Args:
        every_n_train_steps: also save ``step-NNNNNNNN.ckpt`` every N optimizer steps (None: off).
        every_n_minutes: also save it when M minutes of training have passed since the last save (None: off).
        keep_periodic: how many of the newest ``step-*.ckpt`` to keep.
        grace_period_s: after SIGTERM, SIGINT or SIGUSR1, how long to wait for the step in progress to end
            and be saved as ``interrupted.ckpt`` (below the scheduler's own grace: Kubernetes gives 30 s).

    Every rank takes part in every decision (one small all-reduce per optimizer step under DDP), so all
    ranks stop and save at the same step. A signal ends the run with :class:`~cvkit.errors.Interrupted`.
    """

    def __init__(
        self,
        every_n_train_steps: int | None = None,
        every_n_minutes: float | None = None,
        keep_periodic: int = 2,
        grace_period_s: float = 25.0,
    ) -> None:
        for key, value in (("every_n_train_steps", every_n_train_steps), ("every_n_minutes", every_n_minutes)):
            if value is not None and (isinstance(value, bool) or not isinstance(value, int | float) or value <= 0):
                raise CvkitError(f"callbacks.checkpoints.{key}={value!r} is not valid: a positive number, or null")
        if not isinstance(keep_periodic, int) or keep_periodic < 1:
            raise CvkitError(f"callbacks.checkpoints.keep_periodic={keep_periodic!r} is not valid: an integer >= 1")
        self.every_n_train_steps = every_n_train_steps
        self.every_n_minutes = every_n_minutes
        self.keep_periodic = keep_periodic
        self.grace_period_s = grace_period_s
        self.folder = Path(".")
        self.stop = StopRequest(grace_period_s, self.newest_note)
        self._checked_step = -1
        self._last_save_time = 0.0

    def setup(self, trainer: pl.Trainer, pl_module: pl.LightningModule, stage: str) -> None:
        self.folder = Path(trainer.default_root_dir) / CHECKPOINT_DIR

    def newest_note(self) -> str:
        newest = run_checkpoints(self.folder.parent)
        return f"resume=true continues from {newest[0]}" if newest else "no checkpoint has been written yet"

    # Training.
    def on_train_start(self, trainer: pl.Trainer, pl_module: pl.LightningModule) -> None:
        if trainer.is_global_zero:
            for partial in self.folder.glob("*" + PARTIAL_SUFFIX):
                log.warning("removing %s, a checkpoint whose writing was cut short", partial)
                partial.unlink(missing_ok=True)
        self._checked_step = trainer.global_step
        self._last_save_time = time.monotonic()
        self.stop.install()  # after Lightning's own handlers, which it registers just before this hook

    def on_train_batch_end(self, trainer: pl.Trainer, pl_module: pl.LightningModule, *args: Any) -> None:
        if trainer.global_step == self._checked_step:  # inside a gradient accumulation: no optimizer step yet
            return
        self._checked_step = trainer.global_step
        signum, periodic_due = self.agree(trainer)
        if signum:
            self.save_and_stop(trainer, self.folder / INTERRUPTED, signum)
        if periodic_due:
            self.save(trainer, self.folder / f"{PERIODIC_PREFIX}{trainer.global_step:08d}.ckpt")
            self.prune_periodic(trainer)

    def on_train_epoch_end(self, trainer: pl.Trainer, pl_module: pl.LightningModule) -> None:
        if not self.link_last_to_best(trainer):
            self.save(trainer, self.folder / LAST)
        signum, _ = self.agree(trainer)
        if signum:
            self.stop_after_save(self.folder / LAST, signum, trainer)

    def on_train_end(self, trainer: pl.Trainer, pl_module: pl.LightningModule) -> None:
        self.stop.restore()

    def on_exception(self, trainer: pl.Trainer, pl_module: pl.LightningModule, exception: BaseException) -> None:
        self.stop.restore()

    # Decisions every rank takes together.
    def agree(self, trainer: pl.Trainer) -> tuple[int, bool]:
        """(the signal any rank received, or 0; whether a periodic save is due), the same on every rank."""
        steps_due = bool(self.every_n_train_steps) and trainer.global_step % self.every_n_train_steps == 0
        minutes = (time.monotonic() - self._last_save_time) / 60
        time_due = self.every_n_minutes is not None and minutes >= self.every_n_minutes
        if trainer.world_size == 1:
            return self.stop.signum or 0, steps_due or time_due
        local = torch.tensor(
            [self.stop.signum or 0, int(time_due)], dtype=torch.int64, device=trainer.strategy.root_device
        )
        agreed = trainer.strategy.reduce(local, reduce_op="max").tolist()
        return int(agreed[0]), steps_due or bool(agreed[1])

    # Saving.
    def link_last_to_best(self, trainer: pl.Trainer) -> bool:
        """Make ``last.ckpt`` a hard link to the best checkpoint when ``ModelCheckpoint`` has just written it at
        this very optimizer step (the same state, written once); rank 0 decides, every rank gets the answer."""
        linked = False
        if trainer.is_global_zero:
            best = trainer.checkpoint_callback
            written = getattr(trainer.strategy.checkpoint_io, "last_written", None)
            if isinstance(best, ModelCheckpoint) and best.best_model_path:
                best_path = Path(best.best_model_path)
                if written == (best_path, trainer.global_step):
                    linked = link_atomically(best_path, self.folder / LAST)
        return bool(trainer.strategy.broadcast(linked))

    def save(self, trainer: pl.Trainer, path: Path) -> None:
        self.stop.disarm()  # after a signal, a save under way is let finish even past the grace period
        trainer.save_checkpoint(path, weights_only=False)  # every rank: it ends with a barrier; rank 0 writes
        self._last_save_time = time.monotonic()

    def save_and_stop(self, trainer: pl.Trainer, path: Path, signum: int) -> None:
        self.save(trainer, path)
        self.stop_after_save(path, signum, trainer)

    def stop_after_save(self, path: Path, signum: int, trainer: pl.Trainer) -> None:
        raise Interrupted(
            f"stopped by {signal.Signals(signum).name} at optimizer step {trainer.global_step} (epoch "
            f"{trainer.current_epoch}, counting from 0) and saved {path}; continue with the same command and "
            "resume=true",
            signum,
        )

    def prune_periodic(self, trainer: pl.Trainer) -> None:
        """Keep the newest `keep_periodic` step checkpoints."""
        if not trainer.is_global_zero:
            return
        periodic = sorted(self.folder.glob(f"{PERIODIC_PREFIX}*.ckpt"))
        for old in periodic[: -self.keep_periodic]:
            old.unlink(missing_ok=True)


def link_atomically(source: Path, path: Path) -> bool:
    """Make `path` a hard link to `source` (a temporary link renamed over `path`, so `path` is never missing).
    False, with nothing changed, where the file system has no hard links."""
    partial = path.with_name(path.name + PARTIAL_SUFFIX)
    try:
        partial.unlink(missing_ok=True)
        os.link(source, partial)
        os.replace(partial, path)
        sync_folder(path.parent)
    except OSError as err:
        partial.unlink(missing_ok=True)
        log.info("could not link %s to %s (%s): writing it", path, source, err)
        return False
    return True
