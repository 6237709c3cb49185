"""The one exception type for mistakes a user can make.

The CLI turns a `SweepError` into its message and exit status 2; any other exception is a bug
and keeps its traceback.
"""


class SweepError(Exception):
    """A user-facing error: bad input, missing data, a search made with other settings."""
