"""Which trials count as results, and in what order: one rule for the tuner's progress lines,
`report`, `best()`, `evaluate` and `export`.

A search trains some trials on a shorter schedule than `--max-epochs` (the screening rungs of
`halving` and `hyperband`): their scores rank configurations against each other, but they are not
finished models, so only *fully trained* trials (a schedule of `--max-epochs`) are ranked as
results. Finalists are configurations retrained with more seeds (`tuner/replica`); a validation
score on 5,000 images moves by about 0.65 points from seed to seed, so configurations are ranked
by the mean of their fully trained runs, and those with the most seeds come first: one lucky run
never outranks a configuration confirmed by three.

TensorFlow-free: `report` and `status` use it without loading it.
"""

from __future__ import annotations

import json
import math
import statistics
import sys
from collections.abc import Iterable
from dataclasses import dataclass

BOOKKEEPING_PREFIX = "tuner/"  # KerasTuner's (and our) per-trial bookkeeping values
EPOCHS_KEY = "tuner/epochs"  # the trial's schedule length, when shorter than --max-epochs
REPLICA_KEY = "tuner/replica"  # a finalist's extra seed: 1, 2, ...
REPLICAS = 2  # extra seeds of each finalist
TRIALS_PER_FINALIST = 5  # reseeding takes at most 2 of every 5 trials of a search


def finalists_for(max_trials: int, finalists: int) -> int:
    """Finalists a search of `max_trials` affords: a 4-trial search has none, a 20-trial one up
    to 4, so most trials still search."""
    return min(finalists, max_trials // TRIALS_PER_FINALIST)


def trial_number(trial_id: str) -> tuple[int, str]:
    """A sort key that orders trial ids by number: a search whose `--max-trials` gained a digit
    has ids of two widths (made for 6 trials, extended to 14: `5`, then `06`), which their
    names order wrongly. An id that is no number comes last."""
    return (int(trial_id), trial_id) if trial_id.isdecimal() else (sys.maxsize, trial_id)


def trial_epochs(values: dict, max_epochs: int) -> int:
    """The length of a trial's schedule: what its learning rate decays over, and where it ends."""
    return int(values.get(EPOCHS_KEY, max_epochs))


def config_of(values: dict) -> dict:
    """A trial's configuration: its hyperparameters without the tuner's bookkeeping."""
    return {k: v for k, v in values.items() if not k.startswith(BOOKKEEPING_PREFIX)}


def config_key(values: dict) -> str:
    """One string per configuration, the same for every rung and seed of it."""
    return json.dumps(config_of(values), sort_keys=True, default=str)


@dataclass(frozen=True)
class Run:
    """What ranking needs of a trial."""

    trial: str
    values: dict
    completed: bool
    score: float | None  # best validation accuracy of the trial


@dataclass(frozen=True)
class Ranked:
    """A fully trained run, with the statistics of its configuration's fully trained runs."""

    run: Run
    rank: int
    seeds: int
    mean: float
    std: float


def _counts(run: Run, max_epochs: int) -> bool:
    return (run.completed and run.score is not None and math.isfinite(run.score)
            and trial_epochs(run.values, max_epochs) >= max_epochs)


def rank(runs: Iterable[Run], max_epochs: int) -> list[Ranked]:
    """Fully trained runs, best first: configurations with more seeds first, then by their
    mean; within a configuration, its best run first (that run's weights stand for it)."""
    groups: dict[str, list[Run]] = {}
    for run in runs:
        if _counts(run, max_epochs):
            groups.setdefault(config_key(run.values), []).append(run)
    stats = {
        key: (len(group), statistics.fmean(r.score for r in group),
              statistics.stdev(r.score for r in group) if len(group) > 1 else 0.0)
        for key, group in groups.items()
    }
    ordered = sorted(
        (run for group in groups.values() for run in group),
        key=lambda r: (-stats[config_key(r.values)][0], -stats[config_key(r.values)][1],
                       -r.score, trial_number(r.trial)),
    )
    return [Ranked(run, i + 1, *stats[config_key(run.values)]) for i, run in enumerate(ordered)]


def best_unfinished(runs: Iterable[Run], max_epochs: int) -> Run | None:
    """The best completed run on a shorter schedule: what a search cut short has to show."""
    short = [r for r in runs if r.completed and r.score is not None
             and trial_epochs(r.values, max_epochs) < max_epochs]
    return max(short, key=lambda r: r.score, default=None)


def ranked_rows(table):
    """The rows of a `report.load_trials` table that rank as results, best first (an empty
    table has no `rank` column)."""
    return table[table["rank"].notna()] if not table.empty else table


def varying(table, columns: list[str]) -> list[str]:
    """The `columns` of a trial table, the tuner's bookkeeping aside, that hold more than one
    value (0.3 and "0.3" alike)."""
    return [c for c in columns if not c.startswith(BOOKKEEPING_PREFIX)
            and table[c].dropna().astype(str).nunique() > 1]


def format_values(values: dict, defaults: dict) -> str:
    """A configuration as people read it: the hyperparameters that differ from the space's
    default point (`defaults`), without the search's bookkeeping."""
    changed = {k: v for k, v in values.items()
               if not k.startswith(BOOKKEEPING_PREFIX) and defaults.get(k) != v}
    if not changed:
        return "default point"
    return " ".join(f"{k}={v:.3g}" if isinstance(v, float) else f"{k}={v}"
                    for k, v in changed.items())


def default_point(space: list[dict]) -> dict:
    """The default point of a space as a trial.json records it (KerasTuner's hyperparameter
    config, read without KerasTuner): each hyperparameter at its default, where the defaults
    before it meet its conditions."""
    point = {}
    for entry in space:
        config = entry["config"]
        conditions = [c["config"] for c in config.get("conditions", [])]
        if all(point.get(c["name"]) in c["values"] for c in conditions):
            point[config["name"]] = config.get("default", config.get("value"))
    return point
