"""The one exception type for mistakes a user can fix (bad input, bad config).

The CLI prints its message on one line and exits with code 2; anything else is a bug (exit 1).
"""


class UlmfitError(Exception):
    """A user-facing error: the message names the file, row or setting and says what to do."""


class Interrupted(UlmfitError):
    """Training stopped by Ctrl-C (SIGINT): the message says where and how to resume; exit code 130."""
