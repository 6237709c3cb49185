"""Every file of a search is written here, atomically, so a crash never leaves half a file.

KerasTuner 1.4.8 rewrites `oracle.json` and `trial.json` in place: a kill during the write
leaves a truncated file and the next start dies with a JSON error. The tool's oracles and tuners
save KerasTuner's state through `write_kerastuner_json` instead (temp file + fsync + rename), so
its files and ours share one crash-safe path.
"""

from __future__ import annotations

import contextlib
import errno
import fcntl
import json
import math
import os
import re
import socket
import statistics
import tempfile
import time
from collections.abc import Iterator
from datetime import datetime
from pathlib import Path
from typing import Any

from sweep import ranking
from sweep.errors import SweepError

SETTINGS_FILE = "sweep.json"
SET_ASIDE_MARK = ".previous-"  # a search --fresh moved aside: NAME.previous-STAMP
TRIAL_RECORD_FILE = "record.json"
EVENTS_FILE = "events.jsonl"
SKIPPED_EVENT = "config_skipped"  # a configuration over --max-params, never trained
BEHIND_EVENT = "stopped_behind"  # a trial stopped far behind the best one (--stop-behind)
EVALUATIONS_FILE = "evaluations.jsonl"
SPLITS_FILE = "splits.jsonl"  # the split study: one line per retraining (`sweep splits`)
SPLITS_DIR = "splits"  # the split study's retrainings, one folder each
LOCK_FILE = ".lock"
ORACLE_FILE = "oracle.json"  # KerasTuner's
TRIAL_FILE = "trial.json"  # KerasTuner's, in each trial's folder
# A trial record's inference latency, milliseconds an image, by batch size (trial.py measures it).
LATENCY_KEYS = {1: "latency_ms_1", 256: "latency_ms_256"}
CHECKPOINT_FILE = "checkpoint.weights.h5"  # a trial's best epoch: weights (and an optimizer state)
# A trial in progress: its training state, which epoch it names, and what its record says once
# its fit has ended (schedule or early stop), after which it is not trained again.
BACKUP_DIR = "backup"
BACKUP_STATE_FILE = "state.json"
FIT_ENDED = "fit_ended"

# A trial's status: KerasTuner's words (`keras_tuner.engine.trial.TrialStatus`), and the two a
# report adds: a trial cut short, and one whose files cannot be read.
COMPLETED, FAILED, INVALID = "COMPLETED", "FAILED", "INVALID"
RUNNING, IDLE, STOPPED = "RUNNING", "IDLE", "STOPPED"
INTERRUPTED, UNREADABLE = "INTERRUPTED", "UNREADABLE"
FAILED_STATES = (FAILED, INVALID)
ENDED = (COMPLETED, *FAILED_STATES)


def trial_dir(project_dir: Path, trial_id: str) -> Path:
    return Path(project_dir) / f"trial_{trial_id}"


def trial_id_named(project_dir: Path, given: str) -> str:
    """The id of the trial a user names `given`: its own, or the trial of the same number
    (`04` or `4` for trial `4` as for trial `04`: a search extended past its first trial count
    has ids of two widths, `ranking.trial_number`). Unmatched, `given` itself, for the
    caller's own error."""
    if trial_dir(project_dir, given).is_dir() or not _is_number(given):
        return given
    same_number = [trial_id for trial_id in (d.name.removeprefix("trial_")
                                             for d in trial_dirs(project_dir))
                   if _is_number(trial_id) and int(trial_id) == int(given)]
    return same_number[0] if len(same_number) == 1 else given


def _is_number(text: str) -> bool:
    return text.isascii() and text.isdecimal()


def trial_dirs(project_dir: Path) -> list[Path]:
    """The search's trial folders, in the order the trials were made."""
    return sorted((d for d in Path(project_dir).glob("trial_*") if d.is_dir()),
                  key=lambda d: ranking.trial_number(d.name.removeprefix("trial_")))


@contextlib.contextmanager
def atomic_file(path: str | os.PathLike, mode: int = 0o644) -> Iterator[Path]:
    """A temporary path beside `path` for any writer to fill (Keras's `save_weights` too: the
    name ends like `path`'s). When the block ends it is flushed to disk and renamed to `path`,
    so readers see either the old file or the new one, whole; if the block fails, it is removed.

    `mode` is set before the file takes its name: the default is for everyone who may read the
    search; 0o600 keeps a secret its owner's from the first moment."""
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    fd, tmp = tempfile.mkstemp(dir=path.parent, prefix=".tmp-", suffix=f"-{path.name}")
    os.close(fd)
    try:
        os.chmod(tmp, mode)
        yield Path(tmp)
        _sync(tmp)
        os.replace(tmp, path)
    except BaseException:
        Path(tmp).unlink(missing_ok=True)
        raise
    _sync(path.parent)  # the folder's entry for the new name: a power cut keeps the rename


def _sync(path: str | os.PathLike) -> None:
    """Flush a file's (or a folder's) data to disk."""
    fd = os.open(path, os.O_RDONLY)
    try:
        os.fsync(fd)
    finally:
        os.close(fd)


def atomic_write(path: str | os.PathLike, data: str | bytes, mode: int = 0o644) -> None:
    """Write `data` to `path` through `atomic_file`."""
    with atomic_file(path, mode) as temporary:
        temporary.write_bytes(data.encode() if isinstance(data, str) else data)


def _finite(obj: Any) -> Any:
    """Replace NaN/inf by None: strict JSON has no literal for them."""
    if isinstance(obj, float) and not math.isfinite(obj):
        return None
    if isinstance(obj, dict):
        return {k: _finite(v) for k, v in obj.items()}
    if isinstance(obj, (list, tuple)):
        return [_finite(v) for v in obj]
    return obj


def write_json(path: str | os.PathLike, obj: Any) -> str:
    text = json.dumps(_finite(obj), indent=1, default=str)
    atomic_write(path, text)
    return text


def read_json(path: str | os.PathLike) -> Any:
    """Read a JSON file; a missing or unreadable file is a `SweepError` naming it."""
    try:
        return json.loads(Path(path).read_text())
    except FileNotFoundError:
        raise SweepError(f"{path} is missing.") from None
    except (json.JSONDecodeError, UnicodeDecodeError) as e:
        raise SweepError(f"{path} is unreadable ({e}).") from None


def append_line(path: Path, entry: dict) -> None:
    """Append one JSON line to a log file. A last line torn by a crash is skipped on reading;
    it is ended first, so that the entry appended after it is not glued to it and lost."""
    with open(path, "a+b") as f:
        line = json.dumps(_finite(entry), default=str) + "\n"
        f.write((("\n" if _ends_torn(f) else "") + line).encode())
        f.flush()
        os.fsync(f.fileno())


def _ends_torn(f) -> bool:
    """Whether the open file's last line lacks its newline: a write a crash cut short."""
    if f.seek(0, os.SEEK_END) == 0:
        return False
    f.seek(-1, os.SEEK_END)
    return f.read(1) != b"\n"


# What `sweep.json` holds that the commands read (`search.search_record` writes it).
RECORDED_SETTINGS = {"space", "space_sha256", "tuner", "seed", "max_epochs", "patience"}
RECORDED_SPLIT = {"seed", "train_size", "val_size", "data_sha256", "indices_sha256"}


def read_search_record(project_dir: Path) -> dict:
    """The search's record, `sweep.json`, checked for the parts every command reads: a file
    edited by hand or damaged is a `SweepError` saying what to do, not a traceback later."""
    path = project_dir / SETTINGS_FILE
    record = read_json(path)
    settings = record.get("settings") if isinstance(record, dict) else None
    split = record.get("split") if isinstance(record, dict) else None
    if (not isinstance(settings, dict) or not isinstance(split, dict)
            or not settings.keys() >= RECORDED_SETTINGS or not split.keys() >= RECORDED_SPLIT):
        raise SweepError(f"{path} is not a search's record (its settings and split): restore "
                         "it from a copy, or start a new search (another --project or --fresh).")
    return record


def read_lines(path: Path, keys: tuple[str, ...] = ()) -> list[dict]:
    """The entries of a log file that are JSON objects with `keys`. Others are skipped: a line
    torn by a crash, or one edited by hand or damaged, costs that line, not the log."""
    if not path.exists():
        return []
    entries = []
    for line in path.read_text(errors="replace").splitlines():
        try:
            entry = json.loads(line)
        except json.JSONDecodeError:
            continue
        if isinstance(entry, dict) and all(key in entry for key in keys):
            entries.append(entry)
    return entries


def append_event(project_dir: Path, **event: Any) -> None:
    """Append to the search's event log: runs, trial starts and ends (times to the ms)."""
    stamp = datetime.now().isoformat(timespec="milliseconds")
    append_line(project_dir / EVENTS_FILE, {**event, "time": stamp})


def read_events(project_dir: Path) -> list[dict]:
    return read_lines(project_dir / EVENTS_FILE, ("event",))


GOOD_COPY_SUFFIX = ".good"


def write_kerastuner_json(path, obj) -> str:
    """A KerasTuner state file written through `write_json` (see module docstring), with a
    second copy (`<name>.good`) that `repair_keras_tuner_files` restores from if the first is
    ever damaged by something other than us (a full disk, a hand edit). The tool's oracles and
    tuners save through it (`sweep.engine.oracles`, `sweep.engine.tuner`)."""
    text = write_json(path, obj)
    atomic_write(f"{path}{GOOD_COPY_SUFFIX}", text)
    return text


def _readable(path: Path) -> bool:
    try:
        json.loads(path.read_text())
    except (OSError, ValueError):
        return False
    return True


def repair_keras_tuner_files(project_dir: Path) -> list[str]:
    """Restore each unreadable KerasTuner state file from its good copy; say what was restored.

    KerasTuner cannot open a project with one unreadable file; a file with no good copy is a
    `SweepError` that names it and says what to do."""
    repaired = []
    candidates = [*project_dir.glob("*.json"), *project_dir.glob("trial_*/trial.json")]
    for path in candidates:
        if path.name == SETTINGS_FILE or _readable(path):
            continue
        good = path.with_name(path.name + GOOD_COPY_SUFFIX)
        if not _readable(good):
            raise SweepError(
                f"{path} is unreadable and has no good copy. Move the search aside and start "
                "over with --fresh (the old search is kept), or restore the file from a backup."
            )
        atomic_write(path, good.read_text())
        repaired.append(f"{path.relative_to(project_dir)} was unreadable: restored its last "
                        "good copy")
    return repaired


LOCK_PATIENCE = 1.0  # seconds a command waits for the search's lock: `status` holds it an instant
LOCK_TAKEN = (errno.EAGAIN, errno.EACCES)  # what a non-blocking `flock` held elsewhere raises


def _lock_within(f, seconds: float) -> None:
    """An exclusive `flock` on `f`, waited for up to `seconds`: a `status` or `report` asking
    whether the search runs (`lock_is_held`) holds a shared one for an instant, which must not
    make a starting `run` refuse. Raises the last `OSError` if it stays held."""
    deadline = time.monotonic() + seconds
    while True:
        try:
            fcntl.flock(f, fcntl.LOCK_EX | fcntl.LOCK_NB)
            return
        except OSError as e:
            if e.errno not in LOCK_TAKEN or time.monotonic() >= deadline:
                raise
        time.sleep(0.02)


class SearchLock:
    """One search, one writer: an exclusive `flock` on `<project>/.lock`.

    The kernel drops the lock when its process dies, so a lock left by a killed run is never
    stale; the file only names the last holder ("process PID on HOST"), for the error message
    and for `lock_holder`. A command refused while it holds the lock calls `restore`, so that
    it leaves the disk as it found it.
    """

    def __init__(self, project_dir: Path):
        self.path = project_dir / LOCK_FILE
        self._file = None
        self._made_folders: list[Path] = []  # the folders this lock created, innermost first
        self._previous_holder: str | None = None  # the file's text before; None: no file

    @property
    def made_folder(self) -> bool:
        """Whether the search's folder did not exist before this lock."""
        return bool(self._made_folders)

    def __enter__(self) -> SearchLock:
        folder = self.path.parent
        self._made_folders = [p for p in (folder, *folder.parents) if not p.exists()]
        try:
            folder.mkdir(parents=True, exist_ok=True)
        except OSError as e:
            self._remove_made_folders()  # the parents it did make
            raise SweepError(f"Cannot make the search folder {folder} ({e.strerror}). "
                             "Choose another --dir or --project.") from None
        self._previous_holder = self.path.read_text() if self.path.exists() else None
        f = open(self.path, "a+")
        try:
            _lock_within(f, LOCK_PATIENCE)
        except OSError as e:
            if e.errno not in LOCK_TAKEN:
                raise
            f.seek(0)
            holder = f.read().strip() or "another process"
            f.close()
            raise SweepError(
                f"{self.path.parent} is in use by {holder}. "
                "Wait for it to finish or stop it, then run the command again."
            ) from None
        self._file = f
        self._name_holder(f"process {os.getpid()} on {socket.gethostname()}")
        return self

    def _name_holder(self, text: str) -> None:
        self._file.seek(0)
        self._file.truncate()
        self._file.write(text)
        self._file.flush()

    def restore(self) -> None:
        """Undo what taking the lock did, while still holding it: the lock file's previous
        holder is written back, or the file and the folders it needed are removed (a folder
        something else wrote into meanwhile is left)."""
        if self._previous_holder is not None:
            self._name_holder(self._previous_holder)
            return
        self.path.unlink(missing_ok=True)
        self._remove_made_folders()

    def _remove_made_folders(self) -> None:
        for folder in self._made_folders:
            with contextlib.suppress(OSError):
                folder.rmdir()

    def __exit__(self, *exc) -> None:
        fcntl.flock(self._file, fcntl.LOCK_UN)
        self._file.close()


def ongoing_trials(project_dir: Path) -> dict[str, str] | None:
    """Which worker holds which trial, as KerasTuner's `oracle.json` last recorded it (the chief
    saves it whenever it hands a trial out or takes one back); None without a readable one."""
    try:
        oracle = read_json(project_dir / ORACLE_FILE)
    except SweepError:
        return None
    ongoing = oracle.get("ongoing_trials", {}) if isinstance(oracle, dict) else None
    return ongoing if isinstance(ongoing, dict) else None


def holds_trial(project_dir: Path, worker: str, trial_id: str) -> bool:
    """Whether the chief still counts `trial_id` as `worker`'s (`ongoing_trials`). Where
    `oracle.json` cannot be read, yes: a worker is not stopped on a doubt."""
    ongoing = ongoing_trials(project_dir)
    return ongoing is None or ongoing.get(worker) == trial_id


def completed_trial_hyperparameters(project_dir: Path, trial_id: str) -> dict:
    """The hyperparameters (KerasTuner's config of them) of a completed trial; a `SweepError`
    for a trial that does not exist or did not complete."""
    try:
        config = read_json(trial_dir(project_dir, trial_id) / TRIAL_FILE)
    except SweepError:
        raise SweepError(f"No trial {trial_id} in {project_dir}.") from None
    if config["status"] != COMPLETED:
        raise SweepError(f"Trial {trial_id} of {project_dir} did not complete: choose another.")
    return config["hyperparameters"]


def lock_is_held(project_dir: Path) -> bool:
    """Whether a process of this machine holds the search's lock now, as the kernel says: a
    shared `flock` that cannot be had. Exact where the process id in the file is not: a dead
    run's number may since have been given to any other process."""
    path = project_dir / LOCK_FILE
    if not path.exists():
        return False
    with open(path) as f:
        try:
            fcntl.flock(f, fcntl.LOCK_SH | fcntl.LOCK_NB)
        except OSError as e:
            if e.errno in LOCK_TAKEN:
                return True
            raise
        fcntl.flock(f, fcntl.LOCK_UN)
        return False


def lock_holder(project_dir: Path) -> tuple[str, int] | None:
    """(host, process id) of the last holder of the search's lock, as its file names it; None
    without a readable one. Files from before hosts were named are taken as this machine's."""
    try:
        text = (project_dir / LOCK_FILE).read_text()
    except OSError:
        return None
    match = re.fullmatch(r"process (\d+)(?: on (\S+))?", text.strip())
    return (match[2] or socket.gethostname(), int(match[1])) if match else None


def best_epoch(history: list[dict]) -> dict | None:
    """The epoch of a trial's record with the highest validation accuracy (first on ties)."""
    scored = [e for e in history if e.get("val_accuracy") is not None]
    return max(scored, key=lambda e: e["val_accuracy"]) if scored else None


def read_trial_record(trial_dir: Path) -> dict:
    """A trial's `record.json` (its epochs so far), empty before its first epoch."""
    path = trial_dir / TRIAL_RECORD_FILE
    return read_json(path) if path.exists() else {"history": [], "train_seconds": 0.0}


def traced(epoch: dict) -> bool:
    """Whether this epoch was the first of a `fit` (marked so since it is recorded; before, a
    trial's epoch 0): it also paid for tracing or compiling (tens of seconds under JAX on a
    GPU), so it says little of the pace."""
    return epoch.get("traced", epoch["epoch"] == 0)


def typical_epoch_seconds(epochs: list[dict], key: str = "seconds", traced_too: bool = True,
                          machine: str | None = None) -> float | None:
    """The median `key` (an epoch's time, or its validation pass's) of these epochs, leaving
    out the first of each `fit` when there are others; with `traced_too=False`, always. With
    `machine`, only the epochs trained there count: others (on a GPU before this CPU, say), or
    those recorded before machines were, say nothing of its pace."""
    timed = [e for e in epochs if key in e and (machine is None or e.get("machine") == machine)]
    steady = [e[key] for e in timed if not traced(e)]
    seconds = steady or ([e[key] for e in timed] if traced_too else [])
    return statistics.median(seconds) if seconds else None


def schedule_time_left(history: list[dict], schedule: int) -> float:
    """Seconds of training until a trial's schedule ends (early stopping may end it sooner), at
    its pace so far: a 50-epoch trial at two minutes an epoch is well over an hour between two
    `trial done` lines. 0 before its first epoch."""
    typical = typical_epoch_seconds(history)
    return max(0, schedule - len(history)) * typical if typical else 0.0


def failure_reason(message: str | None) -> str:
    """The last line of the traceback KerasTuner stores as a failed trial's message."""
    lines = [line for line in (message or "").strip().splitlines() if line.strip()]
    return lines[-1].split(": ", 1)[-1] if lines else ""


def resumes_from_scratch(trial_dir: Path, record: dict) -> bool:
    """Whether a trial that trained some epochs and did not end would start again from its first
    epoch: its backup is gone (left behind to carry the search elsewhere, or deleted)."""
    return (bool(record.get("history")) and not record.get(FIT_ENDED)
            and not (trial_dir / BACKUP_DIR / BACKUP_STATE_FILE).is_file())
