"""End a command's process as soon as its work is done, without the interpreter's teardown.

A Python process that has imported torch, Lightning and their dependencies spends 1.5-3 s after its last
line in the interpreter's teardown (freeing every module's objects, then the native libraries' destructors),
which the user waits for and which produces nothing (docs/benchmarks.md: "Ending the process"). The console
commands therefore finish as the interpreter would, minus that teardown: threading's exit callbacks (which
stop idle thread pools) and the wait for threads that are not daemons, the ``atexit`` handlers (logging's
flush and close, the loader workers' shutdown, temporary files, the trackers' run end), a flush of standard
output and error, and the end of the process with the exit status. Set ``CVKIT_FULL_TEARDOWN=1``, or run
under a tracer or profiler, to have the interpreter's full exit.
"""

from __future__ import annotations

import atexit
import functools
import os
import sys
import threading
from collections.abc import Callable
from typing import NoReturn

FULL_TEARDOWN = "CVKIT_FULL_TEARDOWN"


def ends_process(main: Callable[[], object]) -> Callable[[], NoReturn]:
    """The console command that runs `main` and then ends the process with its status (0 when it returns,
    a ``SystemExit``'s code otherwise). Any other exception propagates, so that Python reports it."""

    @functools.wraps(main)
    def command() -> NoReturn:
        try:
            main()
            status: object = 0
        except SystemExit as stop:
            status = stop.code
        if full_teardown_wanted():
            sys.exit(status)
        exit_without_teardown(status)

    return command


def full_teardown_wanted() -> bool:
    """Whether the interpreter should exit in full: asked for, or a debugger, profiler or ``python -i``
    that does its work after the program."""
    return (
        os.environ.get(FULL_TEARDOWN) == "1"
        or sys.gettrace() is not None
        or sys.getprofile() is not None
        or bool(sys.flags.inspect)
    )


def exit_without_teardown(status: object) -> NoReturn:
    """Do what the interpreter's exit does that has an effect outside the process, then end it with
    `status` as ``sys.exit`` would read it (None is 0, an int is itself, anything else is printed and is 1)."""
    if status is None:
        code = 0
    elif isinstance(status, int):
        code = status
    else:
        print(status, file=sys.stderr)
        code = 1
    # The interpreter's own first two steps at exit, in its order; neither has a public name.
    threading._shutdown()
    atexit._run_exitfuncs()
    for stream in (sys.stdout, sys.stderr):
        try:
            stream.flush()
        except (OSError, ValueError):  # closed, or a pipe whose reader has gone
            code = code or 120  # what the interpreter returns when it cannot flush
    os._exit(code)
