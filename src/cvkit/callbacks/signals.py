"""Signals outside training: evaluation and testing stop at once, with a non-zero exit."""

from __future__ import annotations

import pytorch_lightning as pl
from pytorch_lightning.trainer.states import TrainerFn

from cvkit.signals import StopRequest


class ExitOnSignal(pl.Callback):
    """While a trainer validates or tests outside ``fit`` (``cvkit-eval``, the test split after training),
    SIGTERM, SIGINT or SIGUSR1 end the run at once with 128 + the signal: there is nothing to save, and
    Lightning's own SIGTERM handler would exit with status 0. During ``fit``, :class:`RunCheckpoints` handles
    them."""

    def __init__(self) -> None:
        self.stop: StopRequest | None = None

    def start(self, trainer: pl.Trainer) -> None:
        if trainer.state.fn != TrainerFn.FITTING:
            self.stop = StopRequest(0, lambda: "no result was written", immediate=True)
            self.stop.install()

    def end(self) -> None:
        if self.stop is not None:
            self.stop.restore()
            self.stop = None

    def on_validation_start(self, trainer: pl.Trainer, pl_module: pl.LightningModule) -> None:
        self.start(trainer)

    def on_test_start(self, trainer: pl.Trainer, pl_module: pl.LightningModule) -> None:
        self.start(trainer)

    def on_validation_end(self, trainer: pl.Trainer, pl_module: pl.LightningModule) -> None:
        self.end()

    def on_test_end(self, trainer: pl.Trainer, pl_module: pl.LightningModule) -> None:
        self.end()

    def on_exception(self, trainer: pl.Trainer, pl_module: pl.LightningModule, exception: BaseException) -> None:
        self.end()
