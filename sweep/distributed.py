"""One search on several processes or machines, on KerasTuner's own chief/worker mode.

KerasTuner is the engine: its gRPC `OracleServicer` on the chief, its `OracleClient` on each
worker, selected by `KERASTUNER_ORACLE_IP`, `KERASTUNER_ORACLE_PORT` and `KERASTUNER_TUNER_ID`.
What it leaves to its users (KERASTUNER_PITFALLS.md #12, #13; keras-tuner#915, #990, #645) is
done here:

- the chief serves until the search is done and every live worker was told so, then exits
  (KerasTuner's chief polls forever while a dead worker holds a trial);
- a worker silent for `worker_timeout` loses its trial to the queue, and a worker restarted under
  its id takes its trial back at once; either way the trial continues from its last epoch (the
  backup lives in the shared search folder);
- a restarted chief never re-runs an ended trial and lets workers still training keep theirs;
- every worker checks the recorded split and space code before it trains, and the rules hold in
  every model it builds (the hypermodel checks them);
- every wait is bounded: a worker waits `wait` seconds for an unreachable chief, then stops with
  a message instead of hanging.
"""

from __future__ import annotations

import os
import socket
import threading
import time
from collections.abc import Callable
from concurrent import futures
from pathlib import Path

import grpc
from keras_tuner.src import protos
from keras_tuner.src.distribute import oracle_chief, oracle_client
from keras_tuner.src.engine import conditions

from sweep import backend, cluster, spaces, state, tuning
from sweep import data as data_module
from sweep import search as search_module
from sweep.errors import SweepError
from sweep.search import SearchOutcome, SearchSettings

POLL_SECONDS = 1.0
GRPC_THREADS = 8  # KerasTuner's chief serves one call at a time; its oracle is locked anyway
IDLE_RETRY_SECONDS = 1.0  # Hyperband answers IDLE while a bracket waits: ask again, not at once

# KerasTuner 1.4.8 left a debugging print in `Parent.to_proto`: every conditional hyperparameter
# sent over gRPC printed a stray value line. Silenced for that module only.
conditions.print = lambda *args, **kwargs: None


def use_keras_tuner_cluster(host: str, port: int, tuner_id: str) -> None:
    """The environment KerasTuner reads to act as chief ("chief" in the id) or as a worker."""
    os.environ.update(KERASTUNER_ORACLE_IP=host, KERASTUNER_ORACLE_PORT=str(port),
                      KERASTUNER_TUNER_ID=tuner_id)


class ChiefServicer(oracle_chief.OracleServicer):
    """KerasTuner's servicer, saying which worker starts and ends which trial."""

    def __init__(self, tuner: tuning.SweepTuner, say: Callable[[str], None]):
        super().__init__(tuner.oracle)
        self.tuner = tuner
        self.say = say

    def CreateTrial(self, request, context):  # noqa: N802 - gRPC's name
        before = self.oracle.ongoing_workers().get(request.tuner_id)
        response = super().CreateTrial(request, context)
        trial_id = self.oracle.ongoing_workers().get(request.tuner_id)
        if trial_id and trial_id == before:
            self.say(f"worker {request.tuner_id} is back: it continues trial {trial_id}")
        elif trial_id:
            trial = self.oracle.trials[trial_id]
            values = tuning.format_values(trial.hyperparameters.values,
                                          tuning.default_values(trial.hyperparameters))
            self.say(f"trial {trial_id} started on {request.tuner_id}: {values}")
        return response

    def EndTrial(self, request, context):  # noqa: N802 - gRPC's name
        trial_id = request.trial.trial_id
        worker = next((w for w, t in self.oracle.ongoing_workers().items() if t == trial_id), None)
        response = super().EndTrial(request, context)
        self.say(self.tuner.trial_line(self.oracle.trials[trial_id], worker))
        return response


class CallTimer(grpc.ServerInterceptor):
    """Counts the workers' calls and the chief's time answering them: its overhead per trial."""

    def __init__(self):
        self.calls = 0
        self.seconds = 0.0
        self._lock = threading.Lock()

    def intercept_service(self, continuation, handler_call_details):
        handler = continuation(handler_call_details)
        if handler is None or handler.unary_unary is None:
            return handler

        def timed(request, context):
            start = time.perf_counter()
            try:
                return handler.unary_unary(request, context)
            finally:
                with self._lock:
                    self.calls += 1
                    self.seconds += time.perf_counter() - start

        return grpc.unary_unary_rpc_method_handler(
            timed, request_deserializer=handler.request_deserializer,
            response_serializer=handler.response_serializer)

    def summary(self, trials: int) -> str:
        per_trial = self.seconds / trials * 1000 if trials else 0.0
        return (f"chief: answered {self.calls} calls in {self.seconds:.2f} s, "
                f"{per_trial:.0f} ms per trial ended here")


def start_server(tuner: tuning.SweepTuner, host: str, port: int, timer: CallTimer,
                 say) -> grpc.Server:
    server = grpc.server(
        futures.ThreadPoolExecutor(max_workers=GRPC_THREADS),
        interceptors=[timer],
        # gRPC shares ports by default: a second chief on this port would take half the calls.
        options=[("grpc.so_reuseport", 0)],
    )
    protos.get_service_grpc().add_OracleServicer_to_server(ChiefServicer(tuner, say), server)
    try:
        server.add_insecure_port(f"{host}:{port}")
    except RuntimeError:
        raise SweepError(f"Cannot listen on {host}:{port}: the port is in use or not allowed. "
                         "Choose another --port.") from None
    server.start()
    return server


def release_silent_workers(oracle, watch: cluster.SilenceWatch, timeout: float, say) -> None:
    for worker, trial_id in oracle.ongoing_workers().items():
        silent = watch.silent_for(worker)
        if silent > timeout:
            oracle.release_trial(worker)
            say(f"worker {worker} silent for {silent:.0f} s: trial {trial_id} goes back to the "
                "queue and continues from its last epoch on the next free worker")


def serve_until_done(tuner: tuning.SweepTuner, watch: cluster.SilenceWatch, timeout: float,
                     say) -> None:
    """Serve until every trial ended and every live worker was told to stop (or went silent)."""
    oracle = tuner.oracle
    done_since = None
    while True:
        time.sleep(POLL_SECONDS)
        release_silent_workers(oracle, watch, timeout, say)
        if not oracle.search_done():
            continue
        done_since = done_since or time.monotonic()
        waiting = [w for w in oracle.workers() if watch.silent_for(w) <= timeout]
        if not waiting or time.monotonic() - done_since > timeout:
            return


def run_chief(settings: SearchSettings, *, port: int, host: str = "0.0.0.0",
              worker_timeout: float = cluster.DEFAULT_WORKER_TIMEOUT,
              say: Callable[[str], None] = print) -> SearchOutcome:
    """Serve the search `settings` describe to workers until it is done; return its outcome.

    Its options are checked by `Search.serve`, before this module loads TensorFlow."""
    with search_module.opened_search(settings, say, event="chief_start") as (space, split):
        project_dir = settings.project_dir
        ongoing = cluster.ongoing_trials(project_dir)
        use_keras_tuner_cluster(host, port, "chief")
        tuner = tuning.make_tuner(settings, space, split, say)
        tuner.oracle.verbose = 0  # KerasTuner's own trial tables; ours say which worker
        tuner.oracle.keep_ongoing(ongoing)
        tuner.announce_start()
        if tuner.oracle.search_done():
            say("nothing left to run: raise --max-trials to extend the search")
            return tuner.outcome()
        timer = CallTimer()
        ended_before = tuner.ended_trials()
        server = start_server(tuner, host, port, timer, say)
        heartbeat = cluster.Heartbeat(cluster.chief_path(project_dir), port=port,
                                      worker_timeout=worker_timeout)
        heartbeat.start()
        say(f"chief serving on {host}:{port}. Start workers with: python -m sweep worker "
            f"--chief {socket.gethostname()}:{port} --dir {settings.directory}")
        try:
            serve_until_done(tuner, cluster.SilenceWatch(project_dir), worker_timeout, say)
        finally:
            heartbeat.stop()
            server.stop(grace=2)
        say(timer.summary(tuner.ended_trials() - ended_before))
        tuner.raise_if_stopped_early()
        return tuner.outcome()


class RetryingStub:
    """KerasTuner's gRPC stub, retrying a call the chief dropped (it died or restarted) until
    `wait` seconds are spent. gRPC's `wait_for_ready` only covers a chief not yet reachable; a
    call cut in the middle fails at once with UNAVAILABLE. Retrying is safe: the chief hands a
    worker the trial it already holds, and ignores the end of a trial already ended."""

    def __init__(self, stub, wait: float):
        self._stub = stub
        self._wait = wait

    def __getattr__(self, name):
        call = getattr(self._stub, name)

        def retried(request, **kwargs):
            deadline = time.monotonic() + self._wait
            while True:
                try:
                    return call(request, **kwargs)
                except grpc.RpcError as e:
                    if e.code() != grpc.StatusCode.UNAVAILABLE or time.monotonic() > deadline:
                        raise
                    time.sleep(IDLE_RETRY_SECONDS)

        return retried


class WorkerClient(oracle_client.OracleClient):
    """KerasTuner's client, with retried calls, and a pause after an IDLE answer instead of
    asking again at once."""

    def __init__(self, oracle, wait: float):
        super().__init__(oracle)
        self.stub = RetryingStub(self.stub, wait)

    def create_trial(self, tuner_id):
        trial = super().create_trial(tuner_id)
        if trial.status == "IDLE":
            time.sleep(IDLE_RETRY_SECONDS)
        return trial


def wait_for_chief(host: str, port: int, wait: float, say) -> None:
    """Block until the chief answers (it may still be loading data: keras-tuner#990)."""
    channel = grpc.insecure_channel(f"{host}:{port}")
    try:
        grpc.channel_ready_future(channel).result(timeout=1)
        return
    except grpc.FutureTimeoutError:
        say(f"waiting up to {search_module.format_duration(wait)} for the chief at {host}:{port}")
    try:
        grpc.channel_ready_future(channel).result(timeout=wait)
    except grpc.FutureTimeoutError:
        raise SweepError(
            f"No chief answered at {host}:{port} within {search_module.format_duration(wait)}. "
            "Start it with: python -m sweep chief --port PORT ... (or check HOST:PORT)."
        ) from None
    finally:
        channel.close()


def check_worker_matches(project_dir: Path, settings: SearchSettings, space: spaces.Space,
                         split: data_module.Split) -> None:
    """Refuse to train on another split, dataset or space code than the chief's search."""
    recorded = state.read_json(project_dir / state.SETTINGS_FILE)
    if space.source_hash() != recorded["settings"]["space_sha256"]:
        raise SweepError(
            f"The code of search space {settings.space!r} on this worker differs from the one "
            f"{project_dir} was made with: install the same version of it on every machine."
        )
    differences = data_module.split_differences(recorded["split"], split.record)
    if differences:
        raise SweepError(
            f"This worker's data gives another split than the search's ({', '.join(differences)}"
            " differ): give it the same CIFAR-10 copy (--data) as the chief."
        )


def run_worker(host: str, port: int, worker_id: str, *, directory: str = "runs",
               project: str | None = None, data: str | None = None, wait: float = 1800.0,
               quiet: bool = False, say: Callable[[str], None] = print) -> int:
    """Train the trials the chief at `host:port` hands out until it says the search is done.

    Returns the number of trials this worker ended."""
    wait_for_chief(host, port, wait, say)
    project_dir = cluster.find_project(Path(directory), port, project)
    chief = cluster.read_heartbeat(cluster.chief_path(project_dir))
    cluster.check_worker_id_free(project_dir, worker_id, chief["worker_timeout"])
    settings = search_module.recorded_settings(project_dir)
    settings.data, settings.quiet = data, quiet
    space = spaces.load(settings.space)
    backend.import_quietly()
    settings.precision = backend.use_precision(settings.precision)  # this machine's fastest
    tuning.check_space(space, settings)
    split, _ = search_module.load_split(settings)
    check_worker_matches(project_dir, settings, space, split)

    heartbeat = cluster.Heartbeat(cluster.worker_path(project_dir, worker_id), id=worker_id)
    heartbeat.start()
    use_keras_tuner_cluster(host, port, worker_id)
    oracle_client.TIMEOUT = wait  # each call waits this long for a chief that went away
    tuner = tuning.make_tuner(settings, space, split, say, worker=worker_id)
    tuner.oracle = WorkerClient(tuner.oracle._oracle, wait)
    say(f"worker {worker_id} joined {project_dir} (chief {host}:{port})")
    try:
        tuner.search(verbose=0)
    except grpc.RpcError as e:
        raise SweepError(
            f"Lost the chief at {host}:{port} ({e.code().name}). Finished trials are saved; "
            "start this worker again once the chief runs."
        ) from None
    finally:
        heartbeat.stop()
    say(f"worker {worker_id}: the search is done; {tuner.ended_here} trials ended here")
    return tuner.ended_here
