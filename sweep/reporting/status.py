"""`sweep status`: where a search stands right now, on one machine or many; reads files only.

Trials come from the report's table; which worker holds which trial from KerasTuner's
`oracle.json` (the chief saves it whenever it hands out a trial); who is alive from the heartbeat
files in `cluster/` (see `sweep.distributed.cluster`).
"""

from __future__ import annotations

import math
import time
from pathlib import Path

import pandas as pd

from sweep import ranking, state
from sweep.distributed import cluster
from sweep.reporting import report
from sweep.settings import format_duration


def _age(seconds: float) -> str:
    return f"{format_duration(max(seconds, 0.0))} ago"


def _liveness(beat: dict, now: float) -> str:
    if "stopped" in beat:
        return f"stopped {_age(now - beat['stopped'])}"
    age = now - beat["updated"]
    return f"seen {_age(age)}" if age < cluster.STALE_AFTER else f"silent since {_age(age)}"


def trial_lines(df: pd.DataFrame, project_dir: Path) -> list[str]:
    distributed = cluster.chief_path(project_dir).exists()  # else the holder is KerasTuner's
    holders = {trial: worker for worker, trial in cluster.ongoing_trials(project_dir).items()
               if distributed}
    lines = []
    for row in df[df["status"].isin([state.RUNNING, state.INTERRUPTED])].itertuples():
        trial_dir = state.trial_dir(project_dir, row.trial)
        record_path = trial_dir / state.TRIAL_RECORD_FILE
        since = time.time() - record_path.stat().st_mtime if record_path.exists() else math.nan
        record = state.read_trial_record(trial_dir)
        where = f" on {holders[row.trial]}" if row.trial in holders else ""
        last = f", last epoch {_age(since)}" if math.isfinite(since) else ""
        if record.get(state.FIT_ENDED):
            to_go = ", its training done" + (" (it ends when resumed)"
                                             if row.status == state.INTERRUPTED else "")
        elif row.status == state.INTERRUPTED and state.resumes_from_scratch(trial_dir, record):
            # (a running trial's first backup may be on its way: the record is written first)
            to_go = ", no backup: it starts again from epoch 1"
        else:
            left = state.schedule_time_left(record["history"], row.schedule)
            to_go = f", about {format_duration(left)} of training left" if left >= 1 else ""
        lines.append(f"{row.status.lower()}: trial {row.trial}{where}, "
                     f"epoch {_whole(row.epochs)}/{_whole(row.schedule)}{last}{to_go}")
    return lines


def _whole(count: float) -> str:
    """An epoch count of the trials table, where a trial it could not read makes the column
    float ("1.0"), or leaves a blank."""
    return "?" if pd.isna(count) else str(int(count))


def cluster_lines(project_dir: Path, running: set[str]) -> list[str]:
    """The chief and each worker: alive or not, and the trial each one holds."""
    chief = cluster.read_heartbeat(cluster.chief_path(project_dir))
    if not chief:
        return []
    now = time.time()
    holding = {w: t for w, t in cluster.ongoing_trials(project_dir).items() if t in running}
    lines = [f"chief: {chief['host']}:{chief['port']} (process {chief['pid']}), "
             f"{_liveness(chief, now)}"]
    for worker_id, beat in cluster.read_workers(project_dir).items():
        doing = f", trial {holding[worker_id]}" if worker_id in holding else ""
        lines.append(f"  worker {worker_id} on {beat['host']} (process {beat['pid']}): "
                     f"{_liveness(beat, now)}{doing}")
    return lines


def search_status(project_dir: Path) -> str:
    record = state.read_search_record(project_dir)
    s = record["settings"]
    df = report.load_trials(project_dir)
    counts = df["status"].value_counts().to_dict() if not df.empty else {}
    ended = counts.get(state.COMPLETED, 0) + sum(counts.get(k, 0) for k in state.FAILED_STATES)
    running = "running" if report.search_is_running(project_dir) else "not running"
    lines = [
        f"search {project_dir.name} ({project_dir}), {running}: space {s['space']}, "
        f"tuner {s['tuner']}, {ended}/{s['max_trials']} trials ended "
        f"({counts.get('COMPLETED', 0)} completed, "
        f"{sum(counts.get(k, 0) for k in state.FAILED_STATES)} failed)"
    ]
    ranked = ranking.ranked_rows(df)
    if not ranked.empty:
        top = ranked.iloc[0]
        by = f" on {top['worker']}" if isinstance(top.get("worker"), str) else ""
        lines.append(f"best: trial {top['trial']} at {top['val_accuracy']:.2%} validation "
                     f"accuracy (epoch {_whole(top['best_epoch'])}){by}")
    unfinished = set()
    if not df.empty:
        lines += trial_lines(df, project_dir)
        unfinished = set(df.loc[df["status"].isin([state.RUNNING, state.INTERRUPTED]), "trial"])
    lines += cluster_lines(project_dir, unfinished)
    return "\n".join(lines)
