"""A search's settings, its record on disk, and the run that starts or resumes it.

KerasTuner (driven by `sweep.engine`) decides what to try and keeps the trial state; this module
checks, before any training, that a resumed search is the same search: KerasTuner 1.4.8 would
silently keep its saved settings over changed ones (KERASTUNER_PITFALLS.md #8). The fixed split
is checked here too, then the run is handed to the tuner.
"""

from __future__ import annotations

import contextlib
import logging
import platform
import shutil
import time
from collections.abc import Callable
from dataclasses import asdict
from datetime import datetime
from importlib import metadata
from pathlib import Path

from sweep import backend, spaces, state
from sweep import data as data_module
from sweep.errors import SweepError
from sweep.settings import (
    DEFAULT_SPLIT,
    DEFAULT_TUNER,
    FIXED_SETTINGS,
    RECORDED_BEFORE,
    SearchOutcome,
    SearchSettings,
)

log = logging.getLogger(__name__)

VERSIONED_PACKAGES = ("keras", "keras-tuner", "numpy", "pandas")


def package_versions() -> dict[str, str]:
    """Python's version and the packages' that make a search's numbers: this tool, the Keras
    backend's own package (tensorflow, jax or torch), Keras, KerasTuner, NumPy and pandas."""
    versions = {"python": platform.python_version()}
    for name in ("sweep", backend.name(), *VERSIONED_PACKAGES):
        try:
            versions[name] = metadata.version(name)
        except metadata.PackageNotFoundError:
            versions[name] = "not installed"
    return versions


def set_aside(project_dir: Path) -> Path:
    """Move an old search out of the way (never delete it) and return where it went."""
    stamp = datetime.now().strftime("%Y%m%d-%H%M%S")
    target = project_dir.with_name(f"{project_dir.name}{state.SET_ASIDE_MARK}{stamp}")
    shutil.move(str(project_dir), str(target))
    return target


def _describe_change(key: str, old, new) -> str:
    if key == "space_sha256":
        return "the search space's code changed"
    return f"{key} {old!r} -> {new!r}"


def check_no_unrecorded_search(project_dir: Path) -> None:
    """Refuse a folder that holds KerasTuner's state but no `sweep.json` (deleted, or a folder
    KerasTuner made on its own): KerasTuner would reload its trials into a search whose
    settings no one could check, mixing them with this command's."""
    if (project_dir / state.ORACLE_FILE).exists() or any(project_dir.glob("trial_*")):
        raise SweepError(
            f"{project_dir} holds a search without its record {state.SETTINGS_FILE}, so its "
            "settings cannot be checked. Use another --project, or --fresh to move it aside.")


def check_resume(recorded: dict, settings: SearchSettings) -> None:
    """Refuse to resume a search whose fixed settings differ from this command's (#8)."""
    current, fixed = asdict(settings), _fixed_settings(recorded)
    changed = [
        _describe_change(key, fixed[key], current[key])
        for key in FIXED_SETTINGS
        if fixed[key] != current[key]
        and not (key == "space_sha256" and (fixed["space"] != current["space"]  # said once
                                             or spaces.code_matches(settings.space, fixed[key])))
    ]
    if changed:
        raise SweepError(
            f"{settings.project_dir} was made with other settings ({'; '.join(changed)}). "
            "Run with --fresh to start over (the old search is kept aside), "
            "or choose another --project."
        )


def _fixed_settings(record: dict) -> dict:
    """The fixed settings a search recorded, those it predates at what they were then."""
    return {key: record["settings"].get(key, RECORDED_BEFORE.get(key)) for key in FIXED_SETTINGS}


def recorded_settings(project_dir: Path) -> SearchSettings:
    """The settings a search was made with, as recorded in its `sweep.json` (its latest
    --max-trials: a resume may extend it)."""
    record = state.read_search_record(project_dir)
    s, fixed = record["settings"], _fixed_settings(record)
    return SearchSettings(
        space=s["space"], tuner=s["tuner"], seed=s["seed"], max_epochs=s["max_epochs"],
        max_trials=s.get("max_trials", SearchSettings.max_trials), patience=s["patience"],
        stop_behind=s.get("stop_behind"),
        finalists=fixed["finalists"], max_params=fixed["max_params"],
        train_size=record["split"]["train_size"], val_size=record["split"]["val_size"],
        split=data_module.split_kind(record["split"]),
        project=project_dir.name, directory=str(project_dir.parent),
    )


def check_space_unchanged(project_dir: Path) -> None:
    """Refuse, before TensorFlow loads, to build a search's trials again once its space's code
    changed since the search was made: the same values would build another model."""
    record = state.read_search_record(project_dir)
    space = record["settings"]["space"]
    if not spaces.code_matches(space, record["settings"]["space_sha256"]):
        raise SweepError(
            f"The code of search space {space!r} changed since "
            f"{project_dir} was made: its trials can no longer be rebuilt.")


def check_rebuildable(project_dir: Path, trial_ids: list[str]) -> None:
    """Refuse, before TensorFlow loads and before any work, trials that cannot be rebuilt as they
    were trained: the space's code changed since the search was made, or their weights are gone."""
    check_space_unchanged(project_dir)
    missing = [t for t in trial_ids
               if not (state.trial_dir(project_dir, t) / state.CHECKPOINT_FILE).is_file()]
    if missing:
        raise SweepError(
            f"Trial {', '.join(missing)} of {project_dir} has no saved weights: a search keeps "
            "those of its best fully trained trials only (--keep-checkpoints).")


def check_searched_images(project_dir: Path, images: data_module.Images, otherwise: str) -> None:
    """Refuse a CIFAR-10 copy whose training images are not those the search was made on
    (another download, a re-encoded copy): what is measured on it would not be the search's."""
    recorded = state.read_search_record(project_dir)["split"]["data_sha256"]
    if data_module.checksum(images) != recorded:
        raise SweepError(f"This CIFAR-10 copy differs from the one {project_dir} was searched "
                         f"on: give the same --data, or {otherwise}.")


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
                     "patience": settings.patience, "max_trials": settings.max_trials,
                     "stop_behind": settings.stop_behind},
        "split": split.record,
        "data_source": str(source),
        "versions": {**package_versions(), "keras backend": backend.name()},
        "created": datetime.now().isoformat(timespec="seconds"),
    }


def check_settings(settings: SearchSettings) -> None:
    """What a user can get wrong in the settings alone, refused before TensorFlow loads (that
    takes seconds): the options, and the space, whose code is found and hashed but not run."""
    settings.validate()
    settings.space_sha256 = spaces.source_hash(settings.space)


def checked_search(settings: SearchSettings):
    """Everything else a user can get wrong, refused before the search is written to: a resumed
    search's fixed settings (#8), then, with TensorFlow loaded, the space's models against the
    rules, the data, the recorded split and KerasTuner's files. Returns the search's record
    (None for a new search or with --fresh), its space, its split and where the data came from.
    """
    record_path = settings.project_dir / state.SETTINGS_FILE
    recorded = (state.read_search_record(settings.project_dir)
                if record_path.exists() and not settings.fresh else None)
    settings.tuner = settings.tuner or (
        recorded["settings"]["tuner"] if recorded else DEFAULT_TUNER
    )
    settings.split = settings.split or (
        data_module.split_kind(recorded["split"]) if recorded else DEFAULT_SPLIT
    )
    if recorded:
        check_resume(recorded, settings)
    elif not settings.fresh:
        check_no_unrecorded_search(settings.project_dir)
    backend.import_quietly()  # TensorFlow loads here, after the quick checks above
    settings.precision = backend.choose_precision(settings.precision)
    space = spaces.load(settings.space)
    from sweep.engine import hypermodel

    hypermodel.check_space(space, settings)
    split, source = load_split(settings)
    if recorded:
        check_split(recorded, split.record, settings)
        for repaired in state.repair_keras_tuner_files(settings.project_dir):
            log.info(repaired)
    return recorded, space, split, source


@contextlib.contextmanager
def opened_search(settings: SearchSettings, event: str = "run_start"):
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
            recorded, space, split, source = checked_search(settings)
        except BaseException:
            lock.restore()
            raise
        if settings.fresh and not lock.made_folder:
            log.info(f"--fresh: the previous search was moved to {set_aside(project_dir)}")
            locks.enter_context(state.SearchLock(project_dir))  # the new search's own lock
        if not recorded:
            state.write_json(project_dir / state.SETTINGS_FILE,
                             search_record(settings, split, source))
        else:
            policy = {"max_trials": settings.max_trials,  # extended, or cut short
                      "stop_behind": settings.stop_behind}  # what workers read
            if any(recorded["settings"].get(k) != v for k, v in policy.items()):
                recorded["settings"].update(policy)
                state.write_json(project_dir / state.SETTINGS_FILE, recorded)
        state.append_event(project_dir, event=event, max_trials=settings.max_trials,
                           backend=backend.name(), precision=settings.precision,
                           stop_behind=settings.stop_behind)
        yield space, split


def load_split(settings: SearchSettings) -> tuple[data_module.Split, Path]:
    """The search's split of the 50,000 training images, and where they were read from."""
    images, source = data_module.load_training_images(settings.data)
    split = data_module.make_split(images, settings.train_size, settings.val_size, settings.seed,
                                   settings.split)
    return split, source


def run_search(settings: SearchSettings,
               progress: Callable[[int, int, str], None] | None = None) -> SearchOutcome:
    """Start or resume the search `settings` describe; return when `max_trials` have ended.

    Progress lines go to the "sweep" logger (`sweep.log`); `progress`, if given, gets (trials
    ended, max trials, the line) after each trial, for a progress bar."""
    with opened_search(settings) as (space, split):
        from sweep.engine.tuner import make_tuner

        tuner = make_tuner(settings, space, split, progress)
        tuner.announce_start()
        started = time.monotonic()
        tuner.search_until_done()
        state.append_event(settings.project_dir, event="run_end",
                           seconds=time.monotonic() - started)
        return tuner.outcome()
