"""What defines a search and what it ended with: settings, durations, the outcome.

TensorFlow-free, and below everything else in `sweep`: the CLI checks a command's settings with
it before TensorFlow loads, and the engine (`sweep.engine`) reads them without importing the
module that runs searches (`sweep.search`).
"""

from __future__ import annotations

import json
import math
import re
from dataclasses import dataclass, field
from pathlib import Path

from sweep import backend, ranking, spaces
from sweep import data as data_module
from sweep.errors import SweepError

TUNERS = ("halving", "bayesian", "random", "hyperband")
# Successive halving with restarts, then finalists (see README: "Default search"); a resumed
# search keeps the tuner it was made with unless one is named.
DEFAULT_TUNER = "halving"
DEFAULT_SPLIT = "random"  # the challenge's rule
# Settings a resumed search must share with its first run: anything else would mix two searches.
FIXED_SETTINGS = ("space", "space_sha256", "tuner", "seed", "max_epochs", "finalists",
                  "max_params")
# What a search recorded before a fixed setting existed had, in effect: none of it.
RECORDED_BEFORE = {"finalists": 0, "max_params": None}
NUMBER = r"\d+(?:\.\d+)?"
DURATION = re.compile(rf"(?:({NUMBER})h)?(?:({NUMBER})m)?(?:({NUMBER})s)?")


@dataclass
class SearchSettings:
    space: str = "small_cnn"
    tuner: str | None = None  # None: DEFAULT_TUNER for a new search, the recorded one on resume
    # The default search fits about 2 hours on a fast 2-core machine (README: "Default search").
    max_trials: int = 12
    max_epochs: int = 40
    patience: int = 8
    # Points of validation accuracy: a trial that far under the best trial's by the same epoch,
    # from its schedule's second half, stops (--stop-behind); None: never. A policy of each
    # run, like the time budget, not a fixed setting: the search's record keeps the latest.
    stop_behind: float | None = None
    finalists: int = 1  # best fully trained configurations retrained with 2 more seeds
    seed: int = 0
    train_size: int = 5000
    val_size: int = 5000
    project: str | None = None
    directory: str = "runs"
    data: str | None = None
    fresh: bool = False
    quiet: bool = False
    time_budget: float | None = None  # seconds for this run; None: no limit
    # This run's precision: "auto" (the machine's fastest), float32, bfloat16 or float16. It
    # changes numerics, not the search: a resumed search may use another (README).
    precision: str = "auto"
    tensorboard: bool = False  # TensorBoard logs per trial, in trial_<id>/tensorboard
    # Configurations tried first, after the default point (--try): {name: value}, the other
    # hyperparameters at their defaults. Not fixed: a resumed search may add some.
    known_points: list[dict] = field(default_factory=list)
    # Configurations whose model has more parameters are skipped before training (--max-params).
    max_params: float | None = None
    # How the split is drawn (data.SPLIT_KINDS); None: DEFAULT_SPLIT for a new search, the
    # recorded kind on resume (the kind is part of the split, checked like the rest of it).
    split: str | None = None
    # Weights kept: those of the best N fully trained trials (--keep-checkpoints); per run.
    keep_checkpoints: int = 5
    space_sha256: str = field(default="", repr=False)

    @property
    def project_name(self) -> str:
        """`--project`, else the space's name (a space file's name without `.py`)."""
        if self.project:
            return self.project
        return Path(self.space).stem if spaces.is_file_space(self.space) else self.space

    @property
    def finalists_used(self) -> int:
        """The finalists this search's --max-trials affords (`ranking.finalists_for`)."""
        return ranking.finalists_for(self.max_trials, self.finalists)

    @property
    def project_dir(self) -> Path:
        return Path(self.directory) / self.project_name

    def validate(self) -> None:
        if self.tuner is not None and self.tuner not in TUNERS:
            raise SweepError(f"Unknown tuner {self.tuner!r}. Choose one of: {', '.join(TUNERS)}.")
        for name in ("max_trials", "max_epochs", "patience"):
            at_least_one(getattr(self, name), f"--{name.replace('_', '-')}")
        if not 0 <= self.seed <= MAX_SEED:
            raise SweepError(f"--seed must be between 0 and {MAX_SEED}.")
        if self.precision not in backend.PRECISIONS:
            raise SweepError(f"Unknown precision {self.precision!r}. "
                             f"Choose one of: {', '.join(backend.PRECISIONS)}.")
        if self.finalists < 0:
            raise SweepError("--finalists must be 0 or more.")
        data_module.check_split_sizes(self.train_size, self.val_size)

        if self.time_budget is not None and self.time_budget <= 0:
            raise SweepError("--time-budget must be positive, e.g. 90m or 3h.")
        if self.split is not None and self.split not in data_module.SPLIT_KINDS:
            raise SweepError(f"Unknown split {self.split!r}. Choose one of: "
                             f"{', '.join(data_module.SPLIT_KINDS)}.")
        if self.keep_checkpoints < 1:
            raise SweepError("--keep-checkpoints must be at least 1 (the best trial's weights).")
        if self.stop_behind is not None and not 0 < self.stop_behind < 100:
            raise SweepError("--stop-behind must be between 0 and 100 points, e.g. "
                             "--stop-behind 5.")
        if self.max_params is not None and not 1 <= self.max_params < math.inf:
            raise SweepError("--max-params must be at least 1, e.g. --max-params 1e6.")
        if not all(isinstance(p, dict) and p for p in self.known_points):
            raise SweepError("Each known point must be a non-empty {name: value} mapping.")


# NumPy's seeds stop at 2**32 - 1, and KerasTuner's oracles seed it with the search seed + 1.
MAX_SEED = 2**32 - 2


def at_least_one(value: int, option: str) -> None:
    if value < 1:
        raise SweepError(f"{option} must be at least 1.")


PYTHON_BOOLEANS = {"True": True, "False": False}


def parse_point(text: str) -> dict:
    """A configuration as `--try` takes it: 'conv_blocks=4,filters=64'. Values are read as JSON
    where they can be (4, 0.5, true, "relu"), else as text (relu); Python's True and False are
    booleans too (as text, "False" would switch a choice on)."""
    point = {}
    for pair in text.split(","):
        name, equals, value = (part.strip() for part in pair.partition("="))
        if not name or not equals or not value or name in point:
            raise SweepError(f"--try {text!r}: write name=value pairs separated by commas, "
                             "each name once, e.g. --try conv_blocks=4,filters=64.")
        try:
            point[name] = (PYTHON_BOOLEANS[value] if value in PYTHON_BOOLEANS
                           else json.loads(value))
        except json.JSONDecodeError:
            point[name] = value
    return point


def read_points(path: str) -> list[dict]:
    """The configurations of a `--try-file`: a JSON list of {name: value} objects."""
    try:
        points = json.loads(Path(path).read_text())
    except OSError as e:
        raise SweepError(f"--try-file {path}: {e.strerror}.") from None
    except (json.JSONDecodeError, UnicodeDecodeError) as e:
        raise SweepError(f"--try-file {path} is not JSON ({e}).") from None
    if not isinstance(points, list) or not all(isinstance(p, dict) and p for p in points):
        raise SweepError(f"--try-file {path} must hold a JSON list of objects, e.g. "
                         '[{"conv_blocks": 4, "filters": 64}].')
    return points


def parse_duration(text: str, option: str = "--time-budget") -> float:
    """Seconds in a duration as people write it: '45s', '90m', '1.5h', '1h30m', '1h30' (a number
    after the hours is minutes, as said aloud) or a bare number of seconds ('5400').

    Not `pandas.Timedelta`: it reads '5400' as nanoseconds, refuses '1h30', and takes '1h1h' or
    '1.5.5h'. Anything but these forms is refused, so no duration has two meanings."""
    written = re.sub(r"\s+", "", text.lower())
    if re.fullmatch(NUMBER, written):
        return float(written)
    match = DURATION.fullmatch(re.sub(rf"(?<=h)({NUMBER})$", r"\1m", written))
    if not written or not match:
        raise SweepError(f"{option} {text!r} is not a duration: use e.g. 45m, 3h, 1h30 or 1.5h.")
    hours, minutes, seconds = (float(g or 0) for g in match.groups())
    return hours * 3600 + minutes * 60 + seconds


def format_duration(seconds: float) -> str:
    minutes, seconds = divmod(int(round(seconds)), 60)
    hours, minutes = divmod(minutes, 60)
    return f"{hours}h{minutes:02d}m{seconds:02d}s" if hours else f"{minutes}m{seconds:02d}s"


@dataclass
class SearchOutcome:
    project_dir: Path
    completed: int
    failed: int
    best_trial: str | None
    best_val_accuracy: float | None


def report_command(settings: SearchSettings) -> str:
    """The command that shows this search's report."""
    args = ["python -m sweep report", "--project", settings.project_name]
    if settings.directory != "runs":
        args += ["--dir", settings.directory]
    return " ".join(args)
