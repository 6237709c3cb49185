"""Trials per hour with one and with two workers for the same search, and the chief's overhead.

    python benchmarks/scaling.py --data /path/to/cifar-10-batches-py

Runs one search four times in a temporary folder, each from scratch with the same seed (so the
same trials): on one machine (`sweep run`), as a chief with one worker, as a chief with two
workers, all on 127.0.0.1, and as `sweep run --workers 2` (the same chief and two workers from
one command). Prints, for each: the wall time from launch to the last exit, the
search span (first trial start to last trial end, from the search's event log), trials per hour
over that span, the two-worker speed-up over one worker, and the chief's own time per trial (its
gRPC calls, timed inside the chief). Workers on one machine share its cores, so on a 2-core
machine expect little speed-up: the point is the overhead, and that nothing is lost.
"""

from __future__ import annotations

import argparse
import os
import re
import subprocess
import sys
import tempfile
import time
from datetime import datetime
from pathlib import Path

REPO = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(REPO))

from sweep import state  # noqa: E402
from sweep.distributed.local import free_port  # noqa: E402


def sweep(*args: str, cwd: Path) -> subprocess.Popen:
    return subprocess.Popen([sys.executable, "-m", "sweep", *args], cwd=cwd,
                            stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True,
                            env={**os.environ, "PYTHONPATH": str(REPO)})


def finish(process: subprocess.Popen) -> str:
    output = process.communicate()[0]
    if process.returncode != 0:
        raise SystemExit(f"a sweep process failed:\n{output}")
    return output


def search_span(project: Path) -> tuple[float, int]:
    """Seconds from the first trial start to the last trial end, and the trials ended."""
    events = state.read_events(project)
    starts = [datetime.fromisoformat(e["time"]) for e in events if e["event"] == "train_start"]
    ends = [datetime.fromisoformat(e["time"]) for e in events if e["event"] == "trial_end"]
    return (max(ends) - min(starts)).total_seconds(), len(ends)


def run_once(workers: int, definition: list[str], data: str, folder: Path,
             one_command: bool = False) -> dict:
    """One search: `run` alone (0 workers), `run --workers N` (`one_command`), or a chief and N
    workers started one by one."""
    folder.mkdir(parents=True)
    started = time.monotonic()
    chief_output = ""
    if workers == 0:
        finish(sweep("run", *definition, "--quiet", cwd=folder))
    elif one_command:
        chief_output = finish(sweep("run", *definition, "--workers", str(workers), "--quiet",
                                    cwd=folder))
    else:
        port = free_port()
        chief = sweep("chief", *definition, "--port", str(port), cwd=folder)
        processes = [sweep("worker", "--chief", f"127.0.0.1:{port}", "--id", f"w{i}",
                           "--data", data, "-q", cwd=folder) for i in range(workers)]
        for process in processes:
            finish(process)
        chief_output = finish(chief)
    wall = time.monotonic() - started
    project = next(folder.glob("runs/*"))
    span, trials = search_span(project)
    overhead = re.search(r"(\d+) ms per trial", chief_output)
    return {"wall": wall, "span": span, "trials": trials,
            "chief_ms": int(overhead.group(1)) if overhead else None}


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--data", required=True, help="CIFAR-10 folder or tar.gz")
    parser.add_argument("--space", default="tiny_cnn")
    parser.add_argument("--trials", type=int, default=8)
    parser.add_argument("--epochs", type=int, default=3)
    parser.add_argument("--train-size", type=int, default=2000)
    parser.add_argument("--val-size", type=int, default=1000)
    args = parser.parse_args()
    definition = ["--space", args.space, "--data", args.data, "--tuner", "random",
                  "--max-trials", str(args.trials), "--max-epochs", str(args.epochs),
                  "--train-size", str(args.train_size), "--val-size", str(args.val_size)]
    print(f"search: {args.space}, {args.trials} trials of {args.epochs} epochs, "
          f"{args.train_size}/{args.val_size} split, random tuner, seed 0")
    results = {}
    with tempfile.TemporaryDirectory() as tmp:
        for key, workers, name in ((0, 0, "one machine (run)"), (1, 1, "chief + 1 worker"),
                                   (2, 2, "chief + 2 workers"), ("run2", 2, "run --workers 2")):
            r = run_once(workers, definition, args.data, Path(tmp) / f"w{key}",
                         one_command=key == "run2")
            results[key] = r
            per_hour = r["trials"] / r["span"] * 3600
            chief = f", chief {r['chief_ms']} ms per trial" if r["chief_ms"] is not None else ""
            print(f"{name:>18}: wall {r['wall']:6.1f} s, search span {r['span']:6.1f} s, "
                  f"{r['trials']} trials, {per_hour:6.0f} trials/hour{chief}", flush=True)
    one, two, local = results[1], results[2], results[0]
    print(f"speed-up of 2 workers over 1: {one['span'] / two['span']:.2f}x "
          f"(search span), {one['wall'] / two['wall']:.2f}x (wall)")
    print(f"run --workers 2 vs chief + 2 workers started by hand: "
          f"{results['run2']['wall'] / two['wall']:.2f}x the wall time")
    print(f"distribution overhead, chief + 1 worker vs one machine: "
          f"{(one['span'] - local['span']) / one['trials']:+.2f} s per trial (search span)")


if __name__ == "__main__":
    main()
