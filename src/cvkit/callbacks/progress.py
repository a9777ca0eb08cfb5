"""A progress bar that suits where the output goes."""

from __future__ import annotations

import sys

from pytorch_lightning.callbacks import ProgressBar, RichProgressBar, TQDMProgressBar


def progress_bar(log_refresh_rate: int = 50) -> ProgressBar:
    """Rich's live bar on a terminal; in a log file (SLURM, CI), a TQDM bar redrawn every
    `log_refresh_rate` steps, so that the log shows progress without a line per step."""
    if sys.stdout.isatty():
        return RichProgressBar()
    return TQDMProgressBar(refresh_rate=log_refresh_rate)
