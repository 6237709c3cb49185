"""The one exception type for mistakes a user can make.

The CLI turns a `SweepError` into its message and exit status 2; any other exception is a bug
and keeps its traceback.
"""


class SweepError(Exception):
    """A user-facing error: bad input, missing data, a search made with other settings."""


class TimeBudgetReached(BaseException):  # noqa: N818 - a signal, not an error
    """The run's `--time-budget` is spent: stop at an epoch boundary and leave the trial to resume.

    A BaseException, like KeyboardInterrupt, so that KerasTuner does not catch it and mark the
    trial failed: the trial stays RUNNING on disk and the next run continues it.
    """


class TrialTakenAway(BaseException):  # noqa: N818 - a signal, not an error
    """A distributed worker's trial was handed to another worker while this one was silent (a
    frozen process, a sleeping laptop, a network cut): it stops before writing anything more to
    the trial's folder, which the other now trains in, and asks the chief for another trial.

    A BaseException, so that KerasTuner does not mark the trial failed.
    """
