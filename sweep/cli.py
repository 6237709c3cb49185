"""`python -m sweep` / `sweep`: a thin command line over `sweep.Search` (sweep/api.py).

A `SweepError` (a mistake the user can fix) becomes one line on stderr and exit status 2;
Ctrl-C stops with status 130 after saying how to resume.
"""

from __future__ import annotations

import argparse
import os
import shutil
import sys
from pathlib import Path

from sweep import interrupts
from sweep.backend import PRECISIONS, import_quietly
from sweep.errors import SweepError
from sweep.state import EVALUATIONS_FILE, SPLITS_FILE

# TensorFlow's start-up chatter (oneDNN, CPU feature notes) hides the search's own output.
os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "2")


class _Parser(argparse.ArgumentParser):
    """argparse, with a short usage error: the message and where to find help, no usage dump."""

    def error(self, message):
        self.exit(2, f"{self.prog}: error: {message} (see {self.prog} --help)\n")


def count(text: str) -> int:
    """An argparse type: a whole number of at least 1 (a number of trials, seeds, ...)."""
    if not text.isdigit() or int(text) < 1:
        raise argparse.ArgumentTypeError(f"{text!r} is not a whole number of at least 1")
    return int(text)


def _collector(parser: argparse.ArgumentParser):
    """A list, and an `add_argument` that also appends each option it adds to it."""
    actions: list[argparse.Action] = []

    def add(*names, **options):
        actions.append(parser.add_argument(*names, **options))

    return actions, add


def _search_options(parser: argparse.ArgumentParser) -> list[argparse.Action]:
    actions, add = _collector(parser)
    add("--project", help="search name (default: the space's name)")
    add("--dir", default="runs", dest="directory",
        help="folder where searches live (default: runs)")
    return actions


def _definition_options(parser: argparse.ArgumentParser, defaults) -> list[argparse.Action]:
    """What defines a search: `run` and `chief` take the same."""
    from sweep.data import SPLIT_KINDS
    from sweep.settings import DEFAULT_TUNER, TUNERS

    actions, add = _collector(parser)
    add("--space", default=defaults.space,
        help="search space (default: small_cnn)")
    add("--tuner", choices=TUNERS,
        help=f"search algorithm (default: {DEFAULT_TUNER} for a new search; "
             "a resumed search keeps its own)")
    add("--max-trials", type=int, default=defaults.max_trials,
        help="trials to finish, failed ones included "
             f"(default: {defaults.max_trials})")
    add("--max-epochs", type=int, default=defaults.max_epochs,
        help=f"epochs per trial at most (default: {defaults.max_epochs})")
    add("--patience", type=int, default=defaults.patience,
        help="stop a trial after this many epochs without a better validation "
             "accuracy, counted from the second half of its schedule "
             f"(default: {defaults.patience})")
    add("--stop-behind", type=float, metavar="POINTS",
        help="stop a trial, from the second half of its schedule, whose best validation "
             "accuracy is more than POINTS under the best trial's by the same epoch "
             "(default: never; e.g. 5 on long schedules)")
    add("--finalists", type=int, default=defaults.finalists,
        help="best fully trained configurations retrained with 2 more seeds "
             "at the end, ranked by their mean (default: "
             f"{defaults.finalists}; at most one per 5 trials)")
    add("--seed", type=int, default=defaults.seed,
        help=f"seed of the split and the search (default: {defaults.seed})")
    add("--split", choices=SPLIT_KINDS,
        help="how the split is drawn: random (the challenge's rule, the default for a new "
             "search) or stratified (every class equally represented in each part); a "
             "resumed search keeps its own")
    add("--train-size", type=int, default=defaults.train_size,
        help=f"training images of the split (default: {defaults.train_size}, the challenge's)")
    add("--val-size", type=int, default=defaults.val_size,
        help=f"validation images of the split (default: {defaults.val_size}, the challenge's)")
    add("--data", help="local CIFAR-10: a cifar-10-batches-py folder, the folder holding it, "
                       "or cifar-10-python.tar.gz (default: $SWEEP_DATA, else "
                       "Keras's download cache)")
    add("--precision", choices=PRECISIONS, default=defaults.precision,
        help="training precision (default: auto, the machine's fastest: "
             "bfloat16 on CPUs with bfloat16 instructions and recent GPUs, "
             "float16 on older GPUs, else float32)")
    add("--fresh", action="store_true",
        help="start over; the old search is moved aside, never deleted")
    add("--try", action="append", default=[], dest="try_points",
        metavar="NAME=VALUE,...",
        help="a configuration to try first, after the default point (the other "
             "hyperparameters at their defaults); repeatable")
    add("--try-file", metavar="FILE",
        help="configurations to try first: a JSON list of {name: value} objects")
    add("--max-params", type=float, metavar="N",
        help="skip, before any training, a configuration whose model has more "
             "than N parameters, and draw another (not counted as a trial)")
    return actions


def _keep_checkpoints_option(parser: argparse.ArgumentParser, defaults) -> list[argparse.Action]:
    actions, add = _collector(parser)
    add("--keep-checkpoints", type=int, default=defaults.keep_checkpoints,
        metavar="N",
        help="keep the weights of the best N fully trained trials and delete "
             "the others' as the search goes (default: "
             f"{defaults.keep_checkpoints})")
    return actions


def build_parser() -> argparse.ArgumentParser:
    from sweep.settings import SearchSettings

    defaults = SearchSettings()
    parser = _Parser(
        prog="sweep", description="Search plain CNNs for CIFAR-10 under the challenge's rules."
    )
    commands = parser.add_subparsers(dest="command", required=True, parser_class=_Parser)

    run = commands.add_parser("run", help="start or resume a search",
                              description="Start a search, or resume it with the same command.")
    shared = _definition_options(run, defaults)
    run.add_argument("--time-budget", metavar="DURATION",
                     help="stop this run after e.g. 45m, 3h or 1h30m: no trial is started that "
                          "would not end in time (its own schedule at this machine's typical "
                          "epoch), a running trial stops at an epoch boundary; run again to "
                          "continue")
    run.add_argument("--tensorboard", action="store_true",
                     help="also write TensorBoard logs per trial (runs/<project>/trial_*/"
                          "tensorboard; browse with: tensorboard --logdir runs/<project>)")
    run.add_argument("-q", "--quiet", action="store_true", help="no per-epoch lines")
    run.add_argument("--workers", type=int, metavar="N",
                     help="train on N local worker processes under a chief (KerasTuner's "
                          "distributed mode on this machine), all stopped together")
    run.add_argument("--gpus", metavar="0,1,...",
                     help="one local worker per GPU, each seeing only its own")
    shared += _keep_checkpoints_option(run, defaults) + _search_options(run)
    run.set_defaults(chief_options=shared)  # what `--workers` hands its chief

    chief = commands.add_parser(
        "chief", help="serve a search to workers on other processes or machines",
        description="Start or resume a search that workers train (python -m sweep worker). "
                    "Chief and workers must share the --dir folder. Run the same command "
                    "again to resume.")
    _definition_options(chief, defaults)
    chief.add_argument("--port", type=int, required=True, help="port to serve workers on")
    chief.add_argument("--host", default="0.0.0.0",
                       help="address to listen on (default: 0.0.0.0, every interface)")
    chief.add_argument("--worker-timeout", metavar="DURATION", default="2m",
                       help="a worker silent this long loses its trial to the next free "
                            "worker (default: 2m)")
    chief.add_argument("--tls-cert", metavar="FILE",
                       help="serve over TLS only, with this PEM certificate (chain); give "
                            "workers the same file (default: plain gRPC, see the README)")
    chief.add_argument("--tls-key", metavar="FILE",
                       help="the unencrypted PEM private key of --tls-cert")
    _keep_checkpoints_option(chief, defaults)
    _search_options(chief)

    worker = commands.add_parser(
        "worker", help="train trials for a chief",
        description="Train the trials a chief hands out until its search is done. Restarted "
                    "with the same --id, a worker takes back the trial it was training.")
    worker.add_argument("--chief", required=True, metavar="HOST:PORT",
                        help="where the chief listens, e.g. 192.168.1.10:8000")
    worker.add_argument("--id", dest="worker_id",
                        help="this worker's name, unique in the search (default: host name)")
    worker.add_argument("--data", help="local CIFAR-10, as for run (must give the chief's split)")
    worker.add_argument("--wait", metavar="DURATION", default="30m",
                        help="how long to wait for an unreachable chief (default: 30m)")
    worker.add_argument("--tls-cert", metavar="FILE",
                        help="talk TLS to a chief started with --tls-cert, checking its "
                             "certificate against this PEM file (its certificate or its CA's)")
    worker.add_argument("--precision", choices=PRECISIONS, default=defaults.precision,
                        help="this worker's training precision (default: auto, its machine's "
                             "fastest; the chief trains nothing, so its own is not used)")
    worker.add_argument("-q", "--quiet", action="store_true", help="no per-epoch lines")
    _search_options(worker)

    status = commands.add_parser(
        "status", help="where a search stands: trials, running work, workers",
        description="Show a search's progress: trials ended, best so far, running trials and, "
                    "for a distributed search, the chief and each worker.")
    _search_options(status)

    report = commands.add_parser("report", help="rank the trials of a search",
                                 description="Rank trials by validation accuracy; write "
                                             "trials.csv, summary.md and curves.png.")
    _search_options(report)
    report.add_argument("--top", type=count, help="show only the N best trials")
    report.add_argument("--format", choices=("table", "markdown", "csv", "json", "html"),
                        default="table",
                        help="what to print: csv and json print data only; the others also "
                             "write the report files")
    report.add_argument("--max-params", type=float, metavar="N",
                        help="name the best trial with at most N parameters")
    report.add_argument("--max-latency", type=float, metavar="MS",
                        help="name the best trial answering within MS milliseconds an image "
                             "(batch 1, measured on the machine that trained it)")
    report.add_argument("--output", type=Path,
                        help="folder for the report files (default: reports/<project>)")
    commands.add_parser("spaces", help="list the built-in search spaces",
                        description="List the built-in search spaces and their hyperparameters.")

    evaluate = commands.add_parser(
        "evaluate", help="test accuracy of finished trials (reads the test images)",
        description="Evaluate finished trials on the 10,000 test images and record the result. "
                    "Default: the best trial by validation accuracy.")
    _search_options(evaluate)
    chosen = evaluate.add_mutually_exclusive_group()
    chosen.add_argument("--trial", action="append", dest="trials", metavar="ID",
                        help="a trial to evaluate (repeatable)")
    chosen.add_argument("--top", type=count, help="evaluate the N best trials")
    evaluate.add_argument("--data", help="local CIFAR-10, as for run")

    study = commands.add_parser(
        "splits", help="retrain a finished trial on other random and stratified splits",
        description="The challenge's open question: retrain a finished trial's configuration "
                    "(default: the best) on other random 5k/5k splits and as many stratified "
                    "ones, and report validation accuracy mean +- std for each kind and each "
                    "class's accuracy against its share. The test images are not read. Run it "
                    "again to resume; `report` shows the result.")
    _search_options(study)
    study.add_argument("--trial", help="the trial to retrain (default: the best)")
    study.add_argument("--repeats", type=int, default=3,
                       help="retrainings on each kind of split (default: 3)")
    study.add_argument("--data", help="local CIFAR-10, as for run")
    study.add_argument("-q", "--quiet", action="store_true", help="no per-epoch lines")

    export = commands.add_parser(
        "export", help="write a trial's model as a standalone .keras file",
        description="Write a trial's model (default: the best) as a .keras file that includes "
                    "its input normalization, plus a sidecar JSON.")
    _search_options(export)
    export.add_argument("--trial", help="the trial to export (default: the best)")
    export.add_argument("--output", type=Path, default=Path("best.keras"),
                        help="the .keras file to write (default: best.keras)")

    predict = commands.add_parser(
        "predict", help="classify image files with an exported model",
        description="Print the class and probability of each image (resized to 32x32).")
    predict.add_argument("model", type=Path, help="a .keras file written by export")
    predict.add_argument("images", type=Path, nargs="+", help="PNG or JPEG files")
    return parser


def _spaces(args: argparse.Namespace) -> int:
    import_quietly()
    from sweep import spaces
    from sweep.engine.hypermodel import training_task
    from sweep.settings import SearchSettings

    task = training_task(SearchSettings())
    for name in spaces.available():
        space = spaces.load(name)
        print(f"{name}: {space.description}")
        for line in spaces.describe(space, task):
            print(f"    {line}")
    print("\nYour own space: --space path/to/space.py or --space package.module, a module "
          "with build(hp, task) -> keras.Model (see search_spaces/small_cnn.py).")
    return 0


def _evaluate(args: argparse.Namespace) -> int:
    from sweep import Search

    search = Search.open(args.directory, args.project, data=args.data)
    for result in search.evaluate(args.trials, args.top):
        print(f"trial {result['trial']}: test accuracy {result['test_accuracy']:.2%} "
              f"(validation {result['val_accuracy']:.2%}) on {result['test_images']} test images")
    print(f"recorded in {search.project_dir / EVALUATIONS_FILE}")
    return 0


def _splits(args: argparse.Namespace) -> int:
    from sweep import Search
    from sweep.settings import at_least_one

    at_least_one(args.repeats, "--repeats")  # a usage error before the search is looked for
    search = Search.open(args.directory, args.project, data=args.data)

    def work():
        summary = search.study_splits(args.repeats, args.trial, quiet=args.quiet, say=_say)
        print(summary.to_string(index=False, float_format="{:.4f}".format, na_rep="-"))
        print(f"recorded in {search.project_dir / SPLITS_FILE}; the report shows it")

    return _until_interrupted(work, "finished retrainings are saved. Run the same command "
                                    "again to resume.")


def _export(args: argparse.Namespace) -> int:
    from sweep import Search

    search = Search.open(args.directory, args.project)
    path = search.export(args.output, args.trial)
    print(f"wrote {path} and {path.with_suffix('.json')}: load it with "
          f"keras.saving.load_model({str(path)!r}); it takes raw uint8 32x32x3 images")
    return 0


def _predict(args: argparse.Namespace) -> int:
    import_quietly()
    from sweep.models import predict_files

    for image, label, probability in predict_files(args.model, args.images):
        print(f"{image}: {label} ({probability:.1%})")
    return 0


def _say(line: str) -> None:
    print(line, flush=True)


def _until_interrupted(work, resume_hint: str) -> int:
    """Run `work()`: its exit status, if it returns one, else 0; Ctrl-C or SIGTERM ends it with
    status 130 and `resume_hint`."""
    try:
        with interrupts.installed():
            status = work()
    except KeyboardInterrupt:
        print(f"\ninterrupted: {resume_hint}", file=sys.stderr)
        return 130
    return status if isinstance(status, int) else 0


def _search(args: argparse.Namespace, *not_settings: str):
    from sweep import Search
    from sweep.settings import parse_point, read_points

    known_points = [parse_point(text) for text in args.try_points]
    known_points += read_points(args.try_file) if args.try_file else []
    skipped = ("command", "fresh", "try_points", "try_file", "workers", "gpus", "chief_options",
               *not_settings)
    return Search(**{k: v for k, v in vars(args).items() if k not in skipped},
                  known_points=known_points)


def _run(args: argparse.Namespace) -> int:
    if args.workers is not None or args.gpus is not None:
        return _run_locally(args)
    search = _search(args)
    return _until_interrupted(
        lambda: search.run(fresh=args.fresh, say=_say),
        "finished trials are saved. Run the same command again to resume.",
    )


def _as_arguments(actions: list[argparse.Action], args: argparse.Namespace) -> list[str]:
    """The command-line arguments that give `actions` the values they have in `args`."""
    arguments = []
    for action in actions:
        value, flag = getattr(args, action.dest), action.option_strings[-1]
        if action.nargs == 0:  # a flag
            arguments += [flag] if value else []
        elif isinstance(value, list):
            arguments += [part for item in value for part in (flag, str(item))]
        elif value is not None and value != action.default:
            arguments += [flag, str(value)]
    return arguments


def _run_locally(args: argparse.Namespace) -> int:
    from sweep import log
    from sweep.distributed import local
    from sweep.search import check_settings

    gpus = [g.strip() for g in args.gpus.split(",")] if args.gpus is not None else None
    if gpus is not None and not all(gpus):
        raise SweepError(f"--gpus {args.gpus!r}: give device numbers separated by commas, "
                         "e.g. --gpus 0,1.")
    workers = args.workers if args.workers is not None else len(gpus)
    if workers < 1 or (gpus and len(gpus) != workers):
        raise SweepError("--workers must be at least 1, and match --gpus where both are given.")
    if args.time_budget or args.tensorboard:
        raise SweepError("--time-budget and --tensorboard apply to one process: "
                         "not with --workers (see the README, \"Several processes\").")
    check_settings(_search(args).settings)  # a usage error before any process starts
    worker_args = ["--dir", args.directory, *(["--project", args.project] if args.project else []),
                   *(["--data", args.data] if args.data else []), "--precision", args.precision,
                   *(["-q"] if args.quiet else [])]

    def work() -> int:
        with log.lines_to(_say):
            return local.run_locally(_as_arguments(args.chief_options, args), worker_args,
                                     workers, gpus)

    return _until_interrupted(work, "finished trials are saved. Run the same command again to "
                                    "resume.")


def _chief(args: argparse.Namespace) -> int:
    from sweep.settings import parse_duration

    search = _search(args, "port", "host", "worker_timeout", "tls_cert", "tls_key")
    timeout = parse_duration(args.worker_timeout, "--worker-timeout")
    return _until_interrupted(
        lambda: search.serve(args.port, host=args.host, worker_timeout=timeout,
                             tls_cert=args.tls_cert, tls_key=args.tls_key, fresh=args.fresh,
                             say=_say),
        "finished trials are saved; workers wait for the chief (their --wait). "
        "Run the same command again to resume.",
    )


def _worker(args: argparse.Namespace) -> int:
    from sweep.distributed import cluster
    from sweep.settings import parse_duration

    host, port = cluster.parse_address(args.chief)
    worker_id = cluster.check_worker_id(args.worker_id or cluster.default_worker_id())
    wait = parse_duration(args.wait, "--wait")
    certificate = cluster.read_chief_certificate(args.tls_cert) if args.tls_cert else None
    import_quietly()
    from sweep import log
    from sweep.distributed.roles import run_worker

    def work():
        with log.lines_to(_say):
            run_worker(host, port, worker_id, directory=args.directory, project=args.project,
                       data=args.data, wait=wait, chief_certificate=certificate, quiet=args.quiet,
                       precision=args.precision)

    return _until_interrupted(
        work,
        "a trial this worker held continues from its last epoch when it, or another "
        "worker, picks it up.",
    )


def _status(args: argparse.Namespace) -> int:
    from sweep.reporting.report import find_project
    from sweep.reporting.status import search_status

    print(search_status(find_project(args.directory, args.project)))
    return 0


def _report(args: argparse.Namespace) -> int:
    from sweep import Search

    # Cut to a terminal's width; whole rows when the output goes to a file or a pipe.
    width = shutil.get_terminal_size().columns if sys.stdout.isatty() else None
    search = Search.open(args.directory, args.project)
    print(search.report(args.format, args.output, args.top, width, max_params=args.max_params,
                        max_latency=args.max_latency))
    return 0


def main(argv: list[str] | None = None) -> int:
    args = build_parser().parse_args(argv)
    try:
        commands = {"run": _run, "chief": _chief, "worker": _worker, "status": _status,
                    "report": _report, "spaces": _spaces, "evaluate": _evaluate,
                    "export": _export, "predict": _predict, "splits": _splits}
        return commands[args.command](args)
    except SweepError as e:
        print(f"sweep: error: {e}", file=sys.stderr)
        return 2
