"""The exceptions cvkit raises for the user: the CLI prints their message as one line, without a traceback,
and exits with their ``exit_code``."""

from collections.abc import Sequence


class CvkitError(Exception):
    """A user-facing error: says what was wrong, where (config key or path), and what would be valid.
    Exit status 2: bad input (config, files, checkpoints)."""

    exit_code = 2


class TrainingFailed(CvkitError):
    """A run that started but cannot go on (a non-finite loss, a checkpoint that cannot be written).
    Exit status 3; metrics.json marks the run as failed."""

    exit_code = 3


class Interrupted(CvkitError):
    """A run stopped by a signal after saving its state. Exit status 128 + the signal number, as a shell
    reports a process killed by it (143 for SIGTERM, 130 for SIGINT), so that schedulers see an interrupted job."""

    def __init__(self, message: str, signum: int) -> None:
        super().__init__(message)
        self.exit_code = 128 + signum


def few(names: Sequence[str], shown: int = 5) -> str:
    """`names` for a message: the first `shown` of them, and how many more there are."""
    more = f", ... ({len(names) - shown} more)" if len(names) > shown else ""
    return ", ".join(names[:shown]) + more


def message_of(err: CvkitError) -> str:
    """`err`'s message, for the one line the CLI prints. A DataLoader re-raises an error of one of its worker
    processes with the worker's traceback in the message ("Caught CvkitError in DataLoader worker process 0.
    Original Traceback ..."): of such a message, the original one, which the traceback's last line holds."""
    text = str(err)
    if "Original Traceback" not in text:
        return text
    last = text.rstrip().splitlines()[-1]  # "cvkit.errors.CvkitError: <the message>"
    return last.split(": ", 1)[1] if ": " in last else last
