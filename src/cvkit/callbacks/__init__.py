"""Callbacks cvkit adds to Lightning's."""

from cvkit.callbacks.checkpointing import RunCheckpoints
from cvkit.callbacks.lr_logger import StepLRLogger
from cvkit.callbacks.progress import progress_bar
from cvkit.callbacks.signals import ExitOnSignal

__all__ = ["ExitOnSignal", "RunCheckpoints", "StepLRLogger", "progress_bar"]
