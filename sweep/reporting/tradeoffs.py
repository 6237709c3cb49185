"""Accuracy against size and speed: the Pareto fronts of the ranked trials, and the best trial
within a limit (KerasTuner sums objectives into one; a person deploying a model asks instead
"what is the most accurate model under 1 M parameters, or under 5 ms an image?").

Pandas only: `report` and `best_within` read the trial table, nothing else.
"""

from __future__ import annotations

import pandas as pd

from sweep import ranking, state
from sweep.errors import SweepError

# What a model costs, as trials.csv names it, and how people read it.
COSTS = {"params": "parameters", state.LATENCY_KEYS[1]: "ms an image (batch 1)"}


def pareto_front(df: pd.DataFrame, cost: str) -> pd.DataFrame:
    """The ranked trials that no other ranked trial beats on both validation accuracy and
    `cost` (at least as good on both, better on one), cheapest first."""
    trials = ranking.ranked_rows(df).dropna(subset=[cost])
    trials = trials.sort_values([cost, "val_accuracy"], ascending=[True, False])
    best_so_far = trials["val_accuracy"].cummax().shift(fill_value=-1.0)
    return trials[trials["val_accuracy"] > best_so_far]


def check_limits(limits: dict[str, float]) -> None:
    """Refuse a limit on something no trial measures, or one no model can meet."""
    unknown = [c for c in limits if c not in COSTS]
    if unknown:
        raise SweepError(f"No limit on {', '.join(unknown)}: limits exist on {', '.join(COSTS)}.")
    if any(not limit > 0 for limit in limits.values()):
        raise SweepError("--max-params and --max-latency must be positive, e.g. --max-params 1e6.")


def best_within(df: pd.DataFrame, limits: dict[str, float]) -> pd.Series | None:
    """The best ranked trial whose costs are all within `limits` (cost column -> maximum, as
    `check_limits` accepts); None if none is. A trial that did not measure a limited cost is not
    within it."""
    trials = ranking.ranked_rows(df)
    for cost, limit in limits.items():
        if cost not in trials:
            return None
        trials = trials[trials[cost] <= limit]
    return None if trials.empty else trials.iloc[0]


def front_table(df: pd.DataFrame) -> pd.DataFrame | None:
    """The trials on any front, best first: accuracy, costs, and the fronts each is on."""
    fronts: dict[str, list[str]] = {}
    for cost in COSTS:
        if cost in df:
            for trial in pareto_front(df, cost)["trial"]:
                fronts.setdefault(trial, []).append(COSTS[cost])
    if not fronts:
        return None
    trials = ranking.ranked_rows(df)
    table = trials[trials["trial"].isin(fronts)][["trial", "val_accuracy", *COSTS]]
    return table.assign(front=[", ".join(fronts[t]) for t in table["trial"]])


def limits_line(df: pd.DataFrame, limits: dict[str, float]) -> str:
    """The best trial within `limits`, in one line for the report's summary."""
    within = " and ".join(f"{COSTS[cost]} <= {limit:g}" for cost, limit in limits.items())
    best = best_within(df, limits)
    trained = ranking.ranked_rows(df)
    if trained.empty:
        return "no fully trained trial yet"
    unmeasured = [COSTS[cost] for cost in limits if cost not in df or trained[cost].isna().all()]
    if best is None and unmeasured:
        return (f"no fully trained trial measured {', '.join(unmeasured)} (this version of sweep "
                "records it for trials it trains)")
    if best is None:
        return f"no fully trained trial within {within}"
    costs = ", ".join(f"{best[cost]:.4g} {COSTS[cost]}" for cost in COSTS
                      if cost in best and pd.notna(best[cost]))
    return (f"best within {within}: trial {best['trial']} at {best['val_accuracy']:.2%} "
            f"validation accuracy ({costs})")
