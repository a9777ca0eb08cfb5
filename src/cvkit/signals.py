"""Signals that end a job (SIGTERM, SIGINT, SIGUSR1) turned into a request to stop at the next step.

What sends them: ``docker stop``, a Kubernetes eviction, a cloud spot reclaim and SLURM without ``--signal``
send SIGTERM, then SIGKILL after a grace period (Kubernetes: 30 s); Ctrl-C sends SIGINT; SLURM's
``--signal=SIGUSR1@N`` warns N seconds before the time limit. :class:`StopRequest` records the first one
instead of letting it kill the process, so that training can stop at the end of the optimizer step in
progress and save it. If no step ends within the grace period, the process exits with 128 + the signal
number, saying so, before the scheduler's SIGKILL would. A second Ctrl-C stops at once.
"""

from __future__ import annotations

import logging
import os
import signal
import threading
from collections.abc import Callable
from types import FrameType
from typing import Any

from cvkit.errors import Interrupted

log = logging.getLogger(__name__)

STOP_SIGNALS = (signal.SIGTERM, signal.SIGINT, signal.SIGUSR1)


class StopRequest:
    """The signal that asked this process to stop, if any (:attr:`signum`), from :meth:`install` on.

    Args:
        grace_period_s: how long to wait for the next step to end before exiting without a save.
        on_timeout: what to say when that happens (the newest checkpoint on disk).
        immediate: raise :class:`~cvkit.errors.Interrupted` at once instead (evaluation: nothing to save).
    """

    def __init__(self, grace_period_s: float, on_timeout: Callable[[], str], immediate: bool = False) -> None:
        self.grace_period_s = grace_period_s
        self.on_timeout = on_timeout
        self.immediate = immediate
        self.signum: int | None = None
        self._previous: dict[int, Any] = {}
        self._timer: threading.Timer | None = None

    def install(self) -> None:
        """Record the stop signals from now on. A signal that already has a handler other than Python's and
        Lightning's SIGTERM handler is left to it (Lightning's SLURM auto-requeue owns SIGUSR1)."""
        if threading.current_thread() is not threading.main_thread():
            return
        for signum in STOP_SIGNALS:
            current = signal.getsignal(signum)
            owned_elsewhere = signum == signal.SIGUSR1 and current not in (signal.SIG_DFL, signal.SIG_IGN, None)
            if signum in self._previous or owned_elsewhere:
                continue
            self._previous[signum] = current
            signal.signal(signum, self._record)

    def restore(self) -> None:
        """Put back the handlers :meth:`install` replaced and stop the grace timer."""
        self.disarm()
        for signum, handler in self._previous.items():
            signal.signal(signum, handler if handler is not None else signal.SIG_DFL)
        self._previous = {}

    def disarm(self) -> None:
        """Stop the grace timer (the save has begun: let it finish)."""
        if self._timer is not None:
            self._timer.cancel()
            self._timer = None

    @property
    def name(self) -> str:
        return signal.Signals(self.signum).name if self.signum else ""

    def _record(self, signum: int, frame: FrameType | None) -> None:
        if self.signum is not None:
            if signum == signal.SIGINT:  # a second Ctrl-C: stop now
                raise KeyboardInterrupt
            return
        self.signum = signum
        if self.immediate:
            raise Interrupted(f"stopped by {self.name} during evaluation; {self.on_timeout()}", signum)
        if signum == signal.SIGINT:
            signal.signal(signal.SIGINT, signal.default_int_handler)
        log.warning(
            "received %s: stopping at the end of this optimizer step and saving it (within %g s)%s",
            self.name,
            self.grace_period_s,
            "; press Ctrl-C again to stop without saving" if signum == signal.SIGINT else "",
        )
        self._timer = threading.Timer(self.grace_period_s, self._expire)
        self._timer.daemon = True
        self._timer.start()

    def _expire(self) -> None:
        log.error(
            "cvkit: no optimizer step ended within %g s of %s: exiting without a new checkpoint; %s",
            self.grace_period_s,
            self.name,
            self.on_timeout(),
        )
        logging.shutdown()
        os._exit(128 + int(self.signum or 0))
