"""A search's settings, its record on disk, and the run that starts or resumes it.

KerasTuner (driven by `sweep.tuning`) decides what to try and keeps the trial state; this module
checks, before any training, that a resumed search is the same search: KerasTuner 1.4.8 would
silently keep its saved settings over changed ones (KERASTUNER_PITFALLS.md #8). The fixed split
is checked here too, then the run is handed to the tuner.
"""

from __future__ import annotations

import contextlib
import platform
import re
import shutil
import time
from collections.abc import Callable
from dataclasses import asdict, dataclass, field
from datetime import datetime
from importlib import metadata
from pathlib import Path

from sweep import backend, ranking, spaces, state
from sweep import data as data_module
from sweep.errors import SweepError

TUNERS = ("halving", "bayesian", "random", "hyperband")
# Successive halving with restarts, then finalists (see README: "Default search"); a resumed
# search keeps the tuner it was made with unless one is named.
DEFAULT_TUNER = "halving"
# Settings a resumed search must share with its first run: anything else would mix two searches.
FIXED_SETTINGS = ("space", "space_sha256", "tuner", "seed", "max_epochs", "finalists")
VERSIONED_PACKAGES = ("tensorflow", "keras", "keras-tuner", "numpy", "pandas")
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
            if getattr(self, name) < 1:
                raise SweepError(f"--{name.replace('_', '-')} must be at least 1.")
        if self.seed < 0:
            raise SweepError("--seed must be 0 or more.")
        if self.precision not in backend.PRECISIONS:
            raise SweepError(f"Unknown precision {self.precision!r}. "
                             f"Choose one of: {', '.join(backend.PRECISIONS)}.")
        if self.finalists < 0:
            raise SweepError("--finalists must be 0 or more.")
        data_module.check_split_sizes(self.train_size, self.val_size)

        if self.time_budget is not None and self.time_budget <= 0:
            raise SweepError("--time-budget must be positive, e.g. 90m or 3h.")


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


def package_versions() -> dict[str, str]:
    versions = {"python": platform.python_version()}
    for name in VERSIONED_PACKAGES:
        try:
            versions[name] = metadata.version(name)
        except metadata.PackageNotFoundError:
            versions[name] = "not installed"
    return versions


def set_aside(project_dir: Path) -> Path:
    """Move an old search out of the way (never delete it) and return where it went."""
    stamp = datetime.now().strftime("%Y%m%d-%H%M%S")
    target = project_dir.with_name(f"{project_dir.name}.previous-{stamp}")
    shutil.move(str(project_dir), str(target))
    return target


def _describe_change(key: str, old, new) -> str:
    if key == "space_sha256":
        return "the search space's code changed"
    return f"{key} {old!r} -> {new!r}"


def check_resume(recorded: dict, settings: SearchSettings) -> None:
    """Refuse to resume a search whose fixed settings differ from this command's (#8)."""
    current = asdict(settings)
    changed = [
        _describe_change(key, recorded["settings"].get(key), current[key])
        for key in FIXED_SETTINGS
        if recorded["settings"].get(key) != current[key]
    ]
    if changed:
        raise SweepError(
            f"{settings.project_dir} was made with other settings ({'; '.join(changed)}). "
            "Run with --fresh to start over (the old search is kept aside), "
            "or choose another --project."
        )


def recorded_settings(project_dir: Path) -> SearchSettings:
    """The settings a search was made with, as recorded in its `sweep.json`."""
    record = state.read_json(project_dir / state.SETTINGS_FILE)
    s = record["settings"]
    return SearchSettings(
        space=s["space"], tuner=s["tuner"], seed=s["seed"], max_epochs=s["max_epochs"],
        max_trials=s.get("max_trials", SearchSettings.max_trials), patience=s["patience"],
        finalists=s.get("finalists", 0),
        train_size=record["split"]["train_size"], val_size=record["split"]["val_size"],
        project=project_dir.name, directory=str(project_dir.parent),
    )


def check_split(recorded: dict, split_record: dict, settings: SearchSettings) -> None:
    differences = data_module.split_differences(recorded["split"], split_record)
    if differences:
        raise SweepError(
            f"{settings.project_dir} was made on another split or dataset "
            f"({', '.join(differences)} differ). "
            "Run with --fresh, or give another --project for a separate search."
        )


def search_record(settings: SearchSettings, split: data_module.Split, source: Path) -> dict:
    fixed = {key: getattr(settings, key) for key in FIXED_SETTINGS}
    return {
        "settings": {**fixed, "train_size": settings.train_size, "val_size": settings.val_size,
                     "patience": settings.patience, "max_trials": settings.max_trials},
        "split": split.record,
        "data_source": str(source),
        "versions": {**package_versions(), "keras backend": backend.name()},
        "created": datetime.now().isoformat(timespec="seconds"),
    }


@dataclass
class SearchOutcome:
    project_dir: Path
    completed: int
    failed: int
    best_trial: str | None
    best_val_accuracy: float | None


def check_settings(settings: SearchSettings) -> None:
    """What a user can get wrong in the settings alone, refused before TensorFlow loads (that
    takes seconds): the options, and the space, whose code is found and hashed but not run."""
    settings.validate()
    settings.space_sha256 = spaces.source_hash(settings.space)


def checked_search(settings: SearchSettings, say: Callable[[str], None]):
    """Everything else a user can get wrong, refused before the search is written to: a resumed
    search's fixed settings (#8), then, with TensorFlow loaded, the space's models against the
    rules, the data, the recorded split and KerasTuner's files. Returns the search's record
    (None for a new search or with --fresh), its space, its split and where the data came from.
    """
    record_path = settings.project_dir / state.SETTINGS_FILE
    recorded = state.read_json(record_path) if record_path.exists() and not settings.fresh else None
    settings.tuner = settings.tuner or (
        recorded["settings"]["tuner"] if recorded else DEFAULT_TUNER
    )
    if recorded:
        check_resume(recorded, settings)
    backend.import_quietly()  # TensorFlow loads here, after the quick checks above
    settings.precision = backend.use_precision(settings.precision)
    space = spaces.load(settings.space)
    from sweep import tuning

    tuning.check_space(space, settings)
    split, source = load_split(settings)
    if recorded:
        check_split(recorded, split.record, settings)
        for repaired in state.repair_keras_tuner_files(settings.project_dir):
            say(repaired)
    return recorded, space, split, source


@contextlib.contextmanager
def opened_search(settings: SearchSettings, say: Callable[[str], None], event: str = "run_start"):
    """Check, lock and open the search `settings` describe; yield its space and split.

    Everything a user can get wrong is checked before any training (`check_settings`, then
    `checked_search` under the lock), and a refused command leaves the disk as it found it: the
    lock is undone, and --fresh moves the previous search aside only once the checks passed.
    The lock is held until the block ends."""
    check_settings(settings)
    project_dir = settings.project_dir
    with contextlib.ExitStack() as locks:
        lock = locks.enter_context(state.SearchLock(project_dir))
        try:
            recorded, space, split, source = checked_search(settings, say)
        except BaseException:
            lock.restore()
            raise
        if settings.fresh and not lock.made_folder:
            say(f"--fresh: the previous search was moved to {set_aside(project_dir)}")
            locks.enter_context(state.SearchLock(project_dir))  # the new search's own lock
        if not recorded:
            state.write_json(project_dir / state.SETTINGS_FILE,
                             search_record(settings, split, source))
        state.append_event(project_dir, event=event, max_trials=settings.max_trials,
                           backend=backend.name(), precision=settings.precision)
        yield space, split


def load_split(settings: SearchSettings) -> tuple[data_module.Split, Path]:
    """The search's split of the 50,000 training images, and where they were read from."""
    images, source = data_module.load_training_images(settings.data)
    split = data_module.make_split(images, settings.train_size, settings.val_size, settings.seed)
    return split, source


def run_search(settings: SearchSettings, say: Callable[[str], None] = print,
               progress: Callable[[int, int, str], None] | None = None) -> SearchOutcome:
    """Start or resume the search `settings` describe; return when `max_trials` have ended.

    `say` gets each progress line; `progress`, if given, (trials ended, max trials, the line)
    after each trial, for a progress bar."""
    with opened_search(settings, say) as (space, split):
        from sweep import tuning

        tuner = tuning.make_tuner(settings, space, split, say, progress)
        tuner.announce_start()
        started = time.monotonic()
        tuner.search_until_done()
        state.append_event(settings.project_dir, event="run_end",
                           seconds=time.monotonic() - started)
        return tuner.outcome()


def report_command(settings: SearchSettings) -> str:
    """The command that shows this search's report."""
    args = ["python -m sweep report"]
    if settings.project:
        args += ["--project", settings.project]
    if settings.directory != "runs":
        args += ["--dir", settings.directory]
    return " ".join(args)
