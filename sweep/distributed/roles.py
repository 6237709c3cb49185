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
  a message instead of hanging;
- only workers that can read the search folder steer the search: every call must carry the token
  the chief wrote there (`<project>/cluster/chief.token`), and with `--tls-cert`/`--tls-key` the
  calls are encrypted and the worker checks the chief's certificate (KerasTuner's port is open to
  anyone who reaches it, in clear).
"""

from __future__ import annotations

import functools
import hmac
import logging
import os
import socket
import threading
import time
from collections.abc import Callable
from concurrent import futures
from pathlib import Path

import grpc

from sweep import backend, ranking, spaces, state
from sweep import data as data_module
from sweep import search as search_module
from sweep.distributed import cluster
from sweep.engine import compat, hypermodel, oracles
from sweep.engine import tuner as tuner_module
from sweep.engine.compat import oracle_chief, oracle_client, protos
from sweep.errors import SweepError
from sweep.settings import SearchOutcome, SearchSettings, format_duration

log = logging.getLogger(__name__)

POLL_SECONDS = 1.0
GRPC_THREADS = 8  # KerasTuner's chief serves one call at a time; its oracle is locked anyway
IDLE_RETRY_SECONDS = 1.0  # Hyperband answers IDLE while a bracket waits: ask again, not at once
# A port that accepts connections but no gRPC handshake for this long is not the chief.
MISMATCH_SECONDS = 15.0
# gRPC waits ever longer between tries to connect (up to 2 minutes): a worker started well before
# its chief would try again long after the port opened, and be taken for a mismatch.
RECONNECT_OPTIONS = [("grpc.initial_reconnect_backoff_ms", 1000),
                     ("grpc.max_reconnect_backoff_ms", 5000)]
TOKEN_METADATA = "sweep-token"  # the call metadata that carries the chief's token
# A restarted chief's new token may reach a worker's view of a network filesystem a little after
# the chief itself (attribute caches): a refused worker reads the token again for this long.
TOKEN_GRACE_SECONDS = 15.0


def use_keras_tuner_cluster(host: str, port: int, tuner_id: str) -> None:
    """The environment KerasTuner reads to act as chief ("chief" in the id) or as a worker."""
    os.environ.update(KERASTUNER_ORACLE_IP=host, KERASTUNER_ORACLE_PORT=str(port),
                      KERASTUNER_TUNER_ID=tuner_id)


class ChiefServicer(oracle_chief.OracleServicer):
    """KerasTuner's servicer, saying which worker starts and ends which trial."""

    def __init__(self, tuner: tuner_module.SweepTuner):
        super().__init__(tuner.oracle)
        self.tuner = tuner

    def CreateTrial(self, request, context):  # noqa: N802 - gRPC's name
        before = self.oracle.ongoing_workers().get(request.tuner_id)
        response = super().CreateTrial(request, context)
        trial_id = self.oracle.ongoing_workers().get(request.tuner_id)
        if trial_id and trial_id == before:
            log.info(f"worker {request.tuner_id} is back: it continues trial {trial_id}")
        elif trial_id:
            trial = self.oracle.trials[trial_id]
            values = ranking.format_values(trial.hyperparameters.values,
                                          oracles.default_values(trial.hyperparameters))
            log.info(f"trial {trial_id} started on {request.tuner_id}: {values}")
        return response

    def EndTrial(self, request, context):  # noqa: N802 - gRPC's name
        trial_id = request.trial.trial_id
        worker = next((w for w, t in self.oracle.ongoing_workers().items() if t == trial_id), None)
        response = super().EndTrial(request, context)
        self.tuner.prune_checkpoints()
        log.info(self.tuner.trial_line(self.oracle.trials[trial_id], worker))
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


class TokenCheck(grpc.ServerInterceptor):
    """Refuses every call without this chief's token before KerasTuner's servicer sees it, so a
    stranger who reaches the port can neither take trials, report scores nor stop workers."""

    def __init__(self, token: str):
        self._token = token.encode()
        self.refused = 0
        self._lock = threading.Lock()
        self._refusal = grpc.unary_unary_rpc_method_handler(self._refuse)

    def intercept_service(self, continuation, handler_call_details):
        given = dict(handler_call_details.invocation_metadata).get(TOKEN_METADATA, "")
        if hmac.compare_digest(given.encode(), self._token):
            return continuation(handler_call_details)
        return self._refusal

    def _refuse(self, request, context):
        """Abort the call; say the first refusal (a misconfigured worker, or a stranger) at once,
        the others only in the count at the end, so that a flood of calls cannot flood the log."""
        with self._lock:
            self.refused += 1
            first = self.refused == 1
        if first:
            log.warning(f"chief: refused a call from {context.peer()} without this search's "
                        "token (further refusals are counted at the end)")
        context.abort(grpc.StatusCode.UNAUTHENTICATED,
                      "this call lacks the token of the search (its folder's cluster/chief.token)")

    def summary(self) -> str:
        return f"chief: refused {self.refused} calls without this search's token"


def start_server(tuner: tuner_module.SweepTuner, host: str, port: int,
                 interceptors: list[grpc.ServerInterceptor],
                 tls: cluster.ChiefTls | None) -> grpc.Server:
    """The chief's gRPC server, plain or TLS-only; the first interceptor sees calls first."""
    server = grpc.server(
        futures.ThreadPoolExecutor(max_workers=GRPC_THREADS),
        interceptors=interceptors,
        # gRPC shares ports by default: a second chief on this port would take half the calls.
        options=[("grpc.so_reuseport", 0)],
    )
    protos.get_service_grpc().add_OracleServicer_to_server(ChiefServicer(tuner), server)
    address = f"{host}:{port}"
    try:
        if tls:
            server.add_secure_port(address, grpc.ssl_server_credentials([(tls.key, tls.cert)]))
        else:
            server.add_insecure_port(address)
    except RuntimeError:
        raise SweepError(f"Cannot listen on {address}: the port is in use or not allowed. "
                         "Choose another --port.") from None
    server.start()
    return server


def release_silent_workers(oracle, watch: cluster.SilenceWatch, timeout: float) -> None:
    for worker, trial_id in oracle.ongoing_workers().items():
        silent = watch.silent_for(worker)
        if silent > timeout:
            oracle.release_trial(worker)
            log.info(f"worker {worker} silent for {silent:.0f} s: trial {trial_id} goes back to "
                     "the queue and continues from its last epoch on the next free worker")


def serve_until_done(tuner: tuner_module.SweepTuner, watch: cluster.SilenceWatch,
                     timeout: float) -> None:
    """Serve until every trial ended and every live worker was told to stop (or went silent)."""
    oracle = tuner.oracle
    done_since = None
    while True:
        time.sleep(POLL_SECONDS)
        release_silent_workers(oracle, watch, timeout)
        if not oracle.search_done():
            continue
        done_since = done_since or time.monotonic()
        waiting = [w for w in oracle.workers() if watch.silent_for(w) <= timeout]
        if not waiting or time.monotonic() - done_since > timeout:
            return


def run_chief(settings: SearchSettings, *, port: int, host: str = "0.0.0.0",
              worker_timeout: float = cluster.DEFAULT_WORKER_TIMEOUT,
              tls: cluster.ChiefTls | None = None) -> SearchOutcome:
    """Serve the search `settings` describe to workers until it is done; return its outcome.

    Its options are checked by `Search.serve`, before this module loads TensorFlow."""
    with search_module.opened_search(settings, event="chief_start") as (space, split):
        project_dir = settings.project_dir
        ongoing = cluster.ongoing_trials(project_dir)
        use_keras_tuner_cluster(host, port, "chief")
        tuner = tuner_module.make_tuner(settings, space, split)
        tuner.oracle.verbose = 0  # KerasTuner's own trial tables; ours say which worker
        tuner.oracle.keep_ongoing(ongoing)
        tuner.announce_start()
        if tuner.oracle.search_done():
            log.info("nothing left to run: raise --max-trials to extend the search")
            return tuner.outcome()
        timer = CallTimer()
        token_check = TokenCheck(cluster.write_token(project_dir))
        ended_before = tuner.ended_trials()
        # The chief file first: a worker that reaches the port finds the search it names.
        heartbeat = cluster.Heartbeat(cluster.chief_path(project_dir), port=port,
                                      worker_timeout=worker_timeout)
        heartbeat.start()
        try:
            server = start_server(tuner, host, port, [token_check, timer], tls)
            with_tls = f" --tls-cert {tls.cert_path}" if tls else ""
            log.info(f"chief serving on {host}:{port}{' (TLS)' if tls else ''}. Start workers "
                     f"with: python -m sweep worker --chief {socket.gethostname()}:{port} "
                     f"--dir {settings.directory}{with_tls}")
            # Quiet through the grace too: workers stopped by SIGTERM report their trials
            # then, and KerasTuner prints a condition's value for each (`Parent.to_proto`).
            with compat.quiet_kerastuner():
                try:
                    serve_until_done(tuner, cluster.SilenceWatch(project_dir), worker_timeout)
                finally:
                    server.stop(grace=2).wait()
        finally:
            heartbeat.stop()
        log.info(timer.summary(tuner.ended_trials() - ended_before))
        if token_check.refused:
            log.info(token_check.summary())
        tuner.raise_if_stopped_early()
        return tuner.outcome()


class RetryBudget:
    """How long one worker call is tried again: while the chief is unreachable (it died or
    restarts), until `wait` seconds are spent; while it refuses the token, TOKEN_GRACE_SECONDS
    from the first refusal, not forever: a worker outside the search must stop and say so."""

    def __init__(self, wait: float):
        self._unreachable_until = time.monotonic() + wait
        self._refused_until: float | None = None

    def allows(self, code: grpc.StatusCode) -> bool:
        now = time.monotonic()
        if code == grpc.StatusCode.UNAVAILABLE:
            return now < self._unreachable_until
        if code == grpc.StatusCode.UNAUTHENTICATED:
            self._refused_until = self._refused_until or now + TOKEN_GRACE_SECONDS
            return now < self._refused_until
        return False


class RetryingStub:
    """KerasTuner's gRPC stub, sending the chief's token with every call and retrying a call the
    chief dropped (it died or restarted) or refused, within a `RetryBudget`. gRPC's
    `wait_for_ready` only covers a chief not yet reachable; a call cut in the middle fails at
    once with UNAVAILABLE. Retrying is safe: the chief hands a worker the trial it already holds,
    and ignores the end of a trial already ended. `token` reads the token at every try, so a
    worker follows a restarted chief to its new token."""

    def __init__(self, stub, token: Callable[[], str], wait: float):
        self._stub = stub
        self._token = token
        self._wait = wait

    def __getattr__(self, name):
        call = getattr(self._stub, name)

        def retried(request, **kwargs):
            budget = RetryBudget(self._wait)
            while True:
                try:
                    return call(request, metadata=((TOKEN_METADATA, self._token()),), **kwargs)
                except grpc.RpcError as e:
                    if not budget.allows(e.code()):
                        raise
                    time.sleep(IDLE_RETRY_SECONDS)

        return retried


class WorkerClient(oracle_client.OracleClient):
    """KerasTuner's client on our channel to the chief (KerasTuner's own is always plain), with
    the token on every call, retried calls, and a pause after an IDLE answer instead of asking
    again at once."""

    def __init__(self, oracle, channel: grpc.Channel, token: Callable[[], str], wait: float):
        super().__init__(oracle)
        self.stub = RetryingStub(protos.get_service_grpc().OracleStub(channel), token, wait)

    def create_trial(self, tuner_id):
        trial = super().create_trial(tuner_id)
        if trial.status == state.IDLE:
            time.sleep(IDLE_RETRY_SECONDS)
        return trial


def chief_channel(host: str, port: int, chief_certificate: bytes | None) -> grpc.Channel:
    """A channel to the chief: TLS, accepting only a chief whose certificate `chief_certificate`
    (its certificate or its CA's) vouches for, if given; else plain."""
    address = f"{host}:{port}"
    if chief_certificate is None:
        return grpc.insecure_channel(address, options=RECONNECT_OPTIONS)
    credentials = grpc.ssl_channel_credentials(root_certificates=chief_certificate)
    return grpc.secure_channel(address, credentials, options=RECONNECT_OPTIONS)


def wait_for_chief(channel: grpc.Channel, host: str, port: int, wait: float) -> None:
    """Block until the chief answers (it may not be started yet, or be restarting).

    Something that accepts connections on the port yet never completes gRPC's handshake for
    MISMATCH_SECONDS is not this worker's chief: TLS on one side only, a certificate that does
    not vouch for the chief, or another service; waiting the whole of `wait` would not help."""
    address = f"{host}:{port}"
    ready = grpc.channel_ready_future(channel)
    try:
        ready.result(timeout=1)
        return
    except grpc.FutureTimeoutError:
        log.info(f"waiting up to {format_duration(wait)} for the chief at {address}")
    deadline, listening_since = time.monotonic() + wait, None
    while True:
        try:
            ready.result(timeout=1)
            return
        except grpc.FutureTimeoutError:
            now = time.monotonic()
        listening_since = (listening_since or now) if cluster.port_open(host, port) else None
        if listening_since is not None and now - listening_since > MISMATCH_SECONDS:
            raise SweepError(
                f"Something listens at {address} but does not answer as a chief: chief and "
                "worker use TLS both or neither (--tls-cert), with a certificate that names "
                f"{host}; or another program has that port.")
        if now > deadline:
            raise SweepError(
                f"No chief answered at {address} within {format_duration(wait)}. Start it "
                "with: python -m sweep chief --port PORT ... (or check HOST:PORT).")


def chief_failure(error: grpc.RpcError, address: str, project_dir: Path) -> SweepError:
    """What a worker says when a call to the chief failed for good."""
    if error.code() == grpc.StatusCode.UNAUTHENTICATED:
        return SweepError(
            f"The chief at {address} refused this worker's token "
            f"({cluster.token_path(project_dir)}): chief and worker must share the same --dir."
        )
    return SweepError(f"Lost the chief at {address} ({error.code().name}). Finished trials are "
                      "saved; start this worker again once the chief runs.")


def check_worker_matches(project_dir: Path, settings: SearchSettings,
                         split: data_module.Split) -> None:
    """Refuse to train on another split, dataset or space code than the chief's search."""
    recorded = state.read_search_record(project_dir)
    if not spaces.code_matches(settings.space, recorded["settings"]["space_sha256"]):
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


def _prepared_worker(project_dir: Path, worker_id: str, data: str | None, quiet: bool,
                     precision: str) -> tuner_module.SweepTuner:
    """The worker's tuner, once its space, data and split are checked against the search's."""
    settings = search_module.recorded_settings(project_dir)
    settings.data, settings.quiet = data, quiet
    space = spaces.load(settings.space)
    backend.import_quietly()
    settings.precision = backend.choose_precision(precision)  # auto: this machine's fastest
    hypermodel.check_space(space, settings)
    split, _ = search_module.load_split(settings)
    check_worker_matches(project_dir, settings, split)
    return tuner_module.make_tuner(settings, space, split, worker=worker_id)


def run_worker(host: str, port: int, worker_id: str, *, directory: str = "runs",
               project: str | None = None, data: str | None = None, wait: float = 1800.0,
               chief_certificate: bytes | None = None, quiet: bool = False,
               precision: str = "auto") -> int:
    """Train the trials the chief at `host:port` hands out until it says the search is done;
    over TLS if `chief_certificate` is given (`cluster.read_chief_certificate`).

    Returns the number of trials this worker ended."""
    address = f"{host}:{port}"
    with chief_channel(host, port, chief_certificate) as channel:
        wait_for_chief(channel, host, port, wait)
        project_dir = cluster.find_project(Path(directory), port, project)
        token = functools.partial(cluster.read_token, project_dir)
        token()  # unreadable: say so now, not after loading TensorFlow and the data
        chief = cluster.read_heartbeat(cluster.chief_path(project_dir))
        cluster.check_worker_id_free(project_dir, worker_id, chief["worker_timeout"])
        # The id is claimed at once, not after the slow set-up below: a second worker started
        # meanwhile under the same id (the host name, by default) is refused.
        heartbeat = cluster.Heartbeat(cluster.worker_path(project_dir, worker_id), id=worker_id)
        heartbeat.start()
        try:
            use_keras_tuner_cluster(host, port, worker_id)  # before the tuner: it reads them
            tuner = _prepared_worker(project_dir, worker_id, data, quiet, precision)
            compat.set_client_timeout(wait)  # each call waits this long for a chief gone away
            tuner.oracle = WorkerClient(compat.local_oracle(tuner.oracle), channel, token, wait)
            log.info(f"worker {worker_id} joined {project_dir} (chief {address})")
            tuner.search_quietly()
        except grpc.RpcError as e:
            raise chief_failure(e, address, project_dir) from None
        finally:
            heartbeat.stop()
    log.info(f"worker {worker_id}: the search is done; {tuner.ended_here} trials ended here")
    return tuner.ended_here
