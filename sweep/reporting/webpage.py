"""The report as one self-contained HTML page: every figure embedded, readable offline.

A small script in the page counts the images the browser really decoded and writes the count
into `body[data-images-loaded]`, so a headless browser can prove the page renders.
"""

from __future__ import annotations

import base64
import html
import math
from dataclasses import dataclass
from pathlib import Path

import pandas as pd

from sweep import ranking, state
from sweep.reporting import figures

STYLE = """
body { font-family: system-ui, sans-serif; margin: 2rem auto; max-width: 1200px; color: #222; }
h1 { margin-bottom: 0.2rem; } h2 { border-bottom: 1px solid #ddd; padding-bottom: 0.2rem; }
table { border-collapse: collapse; font-size: 0.85rem; margin: 0.5rem 0; }
th, td { border: 1px solid #ddd; padding: 0.25rem 0.5rem; text-align: left; }
th { background: #f3f3f3; } img { max-width: 100%; } .note { color: #666; }
.best { font-size: 1.3rem; font-weight: bold; }
"""
COUNT_IMAGES = """
window.addEventListener("load", () => {
  const images = [...document.images];
  document.body.dataset.imagesLoaded =
    images.filter(i => i.complete && i.naturalWidth > 0).length + "/" + images.length;
});
"""


def _image(png: bytes | None, alt: str) -> str:
    if png is None:
        return '<p class="note">nothing to show yet</p>'
    data = base64.b64encode(png).decode()
    return f'<img alt="{html.escape(alt)}" src="data:image/png;base64,{data}">'


def _table(df: pd.DataFrame) -> str:
    if df is None or df.empty:
        return '<p class="note">none</p>'
    return df.to_html(index=False, border=0, float_format=lambda v: f"{v:.4f}", na_rep="")


SHOWN_FIRST = 10  # ranked rows shown before the rest is folded away


def _folded(table: pd.DataFrame) -> list[str]:
    """The first rows as a table, the others in a fold that opens on a click."""
    if len(table) <= SHOWN_FIRST:
        return [_table(table)]
    rest = len(table) - SHOWN_FIRST
    return [_table(table.head(SHOWN_FIRST)),
            f"<details><summary>{rest} more trials</summary>"
            f"{_table(table.iloc[SHOWN_FIRST:])}</details>"]


def _section(anchor: str, title: str, *parts: str) -> str:
    return f'<section id="{anchor}"><h2>{html.escape(title)}</h2>{"".join(parts)}</section>'


def _provenance(project_dir: Path, df: pd.DataFrame, record: dict) -> pd.DataFrame:
    events = state.read_events(project_dir)
    times = [e["time"] for e in events if "time" in e]
    compute = df["minutes"].fillna(0).sum() if not df.empty else 0.0
    split = record["split"]
    rows = {
        **{f"setting: {k}": v for k, v in record["settings"].items()},
        "split indices sha256": split["indices_sha256"],
        "data sha256": split["data_sha256"],
        "data source": record.get("data_source", ""),
        **{f"version: {k}": v for k, v in record.get("versions", {}).items()},
        # A resumed search may run on another backend or precision: each run says which.
        "runs (backend, precision)": ", ".join(dict.fromkeys(
            f"{e['backend']} {e['precision']}" for e in events if "precision" in e)),
        "created": record.get("created", ""),
        "first event": times[0] if times else "",
        "last event": times[-1] if times else "",
        "total training time": f"{compute:.1f} minutes",
    }
    return pd.DataFrame({"what": list(rows), "value": [str(v) for v in rows.values()]})


def _best_trial_parts(project_dir: Path, df: pd.DataFrame, confusion_png) -> list[str]:
    ranked = ranking.ranked_rows(df)
    if ranked.empty:
        return ['<p class="note">no completed trial yet</p>']
    best = ranked.iloc[0]
    record = state.read_json(state.trial_dir(project_dir, best["trial"]) / state.TRIAL_RECORD_FILE)
    test = best["test_accuracy"]
    parts = [f"<p>trial {html.escape(str(best['trial']))}: validation "
             f"{best['val_accuracy']:.2%}, training {best['train_accuracy']:.2%}, test "
             + (f"{test:.2%} (explicitly evaluated)" if not math.isnan(test)
                else "not evaluated (python -m sweep evaluate)") + "</p>"]
    parts.append("<h3>Architecture</h3>" + _table(pd.DataFrame(record.get("layers", []))))
    if record.get("confusion"):
        per_class = figures.per_class_accuracy(figures.confusion_data(record["confusion"]))
        parts += ["<h3>Confusion matrix and per-class accuracy (validation)</h3>",
                  _image(confusion_png, "confusion matrix"), _table(per_class)]
    return parts


@dataclass(frozen=True)
class Page:
    """What the report shows, computed once for the page and the other files."""

    project_dir: Path
    record: dict  # the search's sweep.json
    trials: pd.DataFrame  # `report.load_trials`
    table: pd.DataFrame  # the ranking, one column per hyperparameter that varies
    summary: str  # one line each
    importance: pd.DataFrame | None
    fronts: pd.DataFrame | None  # `tradeoffs.front_table`
    split_study: tuple[pd.DataFrame, pd.DataFrame] | None  # `report.split_study_tables`
    figures: dict[str, bytes | None]  # file name -> PNG


def _split_study_parts(tables, png) -> list[str]:
    if tables is None:
        return ['<p class="note">not run yet: <code>python -m sweep splits</code> retrains the '
                "best configuration on other random and stratified splits</p>"]
    summary, classes = tables
    return [_table(summary), _image(png, "split study"),
            "<h3>Each class: share of the training part and accuracy</h3>", _table(classes)]


def render(page: Page) -> str:
    """The whole page as a string, every figure embedded."""
    project_dir, df, figs = page.project_dir, page.trials, page.figures
    failed = df[df["status"].isin([*state.FAILED_STATES, state.INTERRUPTED, state.UNREADABLE])] \
        if not df.empty else df
    lines = page.summary.splitlines()
    best_line = next((line for line in lines if line.startswith("best:")), "no completed trial")
    sections = [
        _section("summary", "Summary", f'<p class="best">{html.escape(best_line)}</p>',
                 "<ul>" + "".join(f"<li>{html.escape(line)}</li>" for line in lines) + "</ul>"),
        _section("ranking", "Trials ranked by validation accuracy", *_folded(page.table)),
        _section("curves", "Training vs validation accuracy per epoch",
                 _image(figs["curves.png"], "training vs validation")),
        _section("progress", "Search progress", _image(figs["progress.png"], "search progress")),
        _section("effects", "Hyperparameter effects",
                 _image(figs["effects.png"], "hyperparameter effects"),
                 _image(figs["parallel.png"], "parallel coordinates"),
                 "<h3>Importance (random forest on completed trials)</h3>",
                 _table(page.importance) if page.importance is not None
                 else '<p class="note">needs at least 5 completed trials</p>'),
        _section("tradeoffs", "Accuracy against size and speed",
                 _image(figs["pareto.png"], "Pareto fronts"),
                 "<h3>Trials on a Pareto front</h3>", _table(page.fronts)),
        _section("split", "The split", _image(figs["split.png"], "class counts")),
        _section("split-study", "Does the split matter? (python -m sweep splits)",
                 *_split_study_parts(page.split_study, figs["split_study.png"])),
        _section("best-trial", "Best trial",
                 *_best_trial_parts(project_dir, df, figs["confusion.png"])),
        _section("failed", "Failed and interrupted trials",
                 _table(failed[["trial", "status", "reason"]] if not failed.empty else None)),
        _section("provenance", "Settings and provenance",
                 _table(_provenance(project_dir, df, page.record))),
    ]
    return (
        "<!DOCTYPE html><html><head><meta charset='utf-8'>"
        f"<title>sweep report: {html.escape(project_dir.name)}</title>"
        f"<style>{STYLE}</style><script>{COUNT_IMAGES}</script></head><body>"
        f"<h1>sweep report: {html.escape(project_dir.name)}</h1>"
        + "".join(sections) + "</body></html>"
    )
