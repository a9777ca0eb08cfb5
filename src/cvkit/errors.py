"""The one exception type cvkit raises for bad input: the CLI prints its message without a traceback."""


class CvkitError(Exception):
    """A user-facing error: says what was wrong, where (config key or path), and what would be valid."""
