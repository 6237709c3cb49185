"""Do TensorFlow's thread pools want other sizes than their defaults on this machine?

    python benchmarks/threads.py --data /path/to/cifar-10-batches-py [--epochs 4] [--rounds 2]
        [--settings defaults,inter-op 1] [--tool]

The tool leaves TensorFlow's thread pools at their defaults (intra-op: one thread per usable CPU;
inter-op: TensorFlow's choice). A pool's size is fixed when TensorFlow starts, so each setting
runs in its own process: a plain `model.fit` of the space's default point in the machine's
fastest precision (`trial_speed.plain_trial`, same split and seed), or with `--tool` a
one-trial search of it (`trial_speed.tool_trial`), the settings alternating
round after round so that a machine that changes speed mid-run slows them all alike. Printed:
each process's steady seconds per epoch (median after the first), then each setting's median
over the rounds.
"""

from __future__ import annotations

import argparse
import json
import os
import statistics
import subprocess
import sys
import tempfile
from pathlib import Path

REPO = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(REPO))

SETTINGS = {  # TensorFlow reads these when it starts; names hold no comma (--settings)
    "defaults": {},
    "inter-op 1": {"TF_NUM_INTEROP_THREADS": "1"},
    "intra-op one a CPU + inter-op 2": {
        "TF_NUM_INTRAOP_THREADS": str(len(os.sched_getaffinity(0))),
        "TF_NUM_INTEROP_THREADS": "2"},
}


def one_process(args) -> None:
    """The child: time one plain fit (or, with `--tool`, one trial of a real search) and print
    its timings as JSON on the last line."""
    from sweep import backend

    backend.import_quietly()
    from trial_speed import plain_trial, tool_trial

    from sweep.data import CLASS_NAMES
    from sweep.engine import trial as trial_module
    from sweep.search import load_split
    from sweep.settings import SearchSettings

    with tempfile.TemporaryDirectory() as tmp:
        settings = SearchSettings(space=args.space, tuner="random", max_trials=1,
                                  max_epochs=args.epochs, patience=args.epochs, directory=tmp,
                                  data=args.data, quiet=True)
        precision = backend.choose_precision("auto")
        if args.tool:
            timings = tool_trial(settings)
        else:
            split, _ = load_split(settings)
            data = trial_module.TrainingData.from_split(split, len(CLASS_NAMES))
            timings = plain_trial(settings, data, jit_compile=False, precision=precision)
        print(json.dumps({**timings, "precision": precision}))


def at_least_two(text: str) -> int:
    if not text.isdigit() or int(text) < 2:
        raise argparse.ArgumentTypeError(f"{text!r}: give 2 or more (the first epoch traces)")
    return int(text)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--data", required=True, help="CIFAR-10 folder or tar.gz")
    parser.add_argument("--space", default="small_cnn")
    parser.add_argument("--epochs", type=at_least_two, default=4,
                        help="epochs a process, at least 2 (the first traces)")
    parser.add_argument("--rounds", type=int, default=2)
    parser.add_argument("--tool", action="store_true",
                        help="time one trial of a real search (`sweep run`) instead")
    parser.add_argument("--settings", default=",".join(SETTINGS),
                        help=f"which to time, comma-separated (default: {','.join(SETTINGS)})")
    parser.add_argument("--child", action="store_true", help=argparse.SUPPRESS)
    args = parser.parse_args()
    if args.child:
        return one_process(args)
    command = [sys.executable, __file__, "--child", "--data", args.data, "--space", args.space,
               "--epochs", str(args.epochs)] + (["--tool"] if args.tool else [])
    chosen = args.settings.split(",")
    unknown = set(chosen) - set(SETTINGS) | ({"defaults"} - set(chosen))
    if unknown:
        parser.error(f"--settings: {', '.join(sorted(unknown))}: choose among "
                     f"{', '.join(SETTINGS)}, defaults included (the others are compared to it)")
    epochs = {name: [] for name in chosen}
    for round_number in range(1, args.rounds + 1):
        for name in chosen:
            out = subprocess.run(command, env={**os.environ, **SETTINGS[name]},
                                 capture_output=True, text=True)
            if out.returncode:
                sys.exit(f"threads.py: the process for {name!r} failed:\n{out.stderr[-2000:]}")
            result = json.loads(out.stdout.strip().splitlines()[-1])
            epochs[name].append(result["epoch"])
            print(f"round {round_number} {name:>30}: {result['epoch']:6.2f} s per epoch "
                  f"({result['precision']})", flush=True)
    for name, times in epochs.items():
        print(f"median {name:>30}: {statistics.median(times):6.2f} s per epoch "
              f"({statistics.median(epochs['defaults']) / statistics.median(times):.3f}x the "
              f"defaults' speed)")


if __name__ == "__main__":
    main()
