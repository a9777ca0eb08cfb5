"""Callbacks cvkit adds to Lightning's."""

from cvkit.callbacks.lr_logger import StepLRLogger
from cvkit.callbacks.progress import progress_bar

__all__ = ["StepLRLogger", "progress_bar"]
