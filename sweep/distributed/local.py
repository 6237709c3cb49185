"""`run --workers N`: KerasTuner's distributed mode on this machine, in one command.

A chief on 127.0.0.1 (a free port) and N workers, each its own process (`python -m sweep chief`
and `worker`, exactly as a person would start them), their lines printed with who said them, and
all stopped together: at the end of the search, or when this process is interrupted (Ctrl-C or
SIGTERM), which it passes on to each of them once, so each saves and stops cleanly. They run in
their own process groups, so a terminal's Ctrl-C reaches them only through this process. With
`--gpus 0,1`, one worker per GPU, each seeing only its own (CUDA_VISIBLE_DEVICES).
"""

from __future__ import annotations

import contextlib
import ctypes
import logging
import os
import re
import signal
import socket
import subprocess
import sys
import threading
import time

log = logging.getLogger(__name__)
STOP_SECONDS = 300  # how long stopped processes get to save and exit before they are killed
POLL_SECONDS = 1.0
GRACE_SECONDS = 30  # a process's time to exit once its part is over
PR_SET_PDEATHSIG = 1  # prctl(2)


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def worker_ids(count: int) -> list[str]:
    return [f"local-{i + 1}" for i in range(count)]


def _start(args: list[str], env: dict[str, str]) -> subprocess.Popen:
    return subprocess.Popen(
        [sys.executable, "-m", "sweep", *args], stdout=subprocess.PIPE,
        stderr=subprocess.STDOUT, text=True, bufsize=1, start_new_session=True,
        preexec_fn=_die_with_parent, env={**os.environ, "PYTHONUNBUFFERED": "1", **env})


# A worker's own line for the start or end of a trial: the chief says it too, with the worker.
SAID_BY_THE_CHIEF = re.compile(r"trial \d+ (started|done)")


def _relay(name: str, process: subprocess.Popen) -> threading.Thread:
    """Log each of the process's lines, prefixed with its name (a worker's trial lines once,
    from the chief)."""
    def relay():
        for line in process.stdout:
            if name == "chief" or not SAID_BY_THE_CHIEF.match(line):
                log.info(f"{name} | {line.rstrip()}")

    thread = threading.Thread(target=relay, daemon=True)
    thread.start()
    return thread


def _wait(processes: list[subprocess.Popen], seconds: float) -> None:
    """Wait for the processes to exit, `seconds` at most for all of them together."""
    deadline = time.monotonic() + seconds
    for process in processes:
        with contextlib.suppress(subprocess.TimeoutExpired):
            process.wait(timeout=max(0.0, deadline - time.monotonic()))


def _stop(processes: list[subprocess.Popen], signum: int) -> None:
    """Send `signum` to each running process; kill those still running STOP_SECONDS later."""
    for process in processes:
        if process.poll() is None:
            process.send_signal(signum)
    _wait(processes, STOP_SECONDS)
    for process in processes:
        if process.poll() is None:
            process.kill()
            process.wait()


def _wait_for_chief(chief: subprocess.Popen, workers: list[subprocess.Popen]) -> int:
    """The chief's exit status. If every worker has exited and the chief has not within
    GRACE_SECONDS (a refused or failed worker: nothing would train the rest), the chief is
    stopped, its search saved, and the status is 1."""
    alone_since = None
    while chief.poll() is None:
        if all(worker.poll() is not None for worker in workers):
            alone_since = alone_since or time.monotonic()
            if time.monotonic() - alone_since > GRACE_SECONDS:
                log.info("every worker has stopped: stopping the chief (the search is saved; "
                         "run the same command again to continue)")
                _stop([chief], signal.SIGINT)
                return 1
        time.sleep(POLL_SECONDS)
    return chief.returncode


def _die_with_parent() -> None:
    """In a child: SIGTERM it when the process that started it dies (Linux), so no chief or
    worker is left behind holding the search, whatever stops the command."""
    with contextlib.suppress(OSError, AttributeError):  # not Linux: it would outlive it
        ctypes.CDLL("libc.so.6", use_errno=True).prctl(PR_SET_PDEATHSIG, signal.SIGTERM)


def shared_gpu_env() -> dict[str, str]:
    """For every process of the command, which may share a GPU: JAX gives the first process
    that touches a GPU 75 % of its memory and leaves the others too little to begin. The chief
    touches it too (it picks the precision, it builds the space's models to check them), so
    each takes what it uses instead. A value set in the environment wins."""
    if "XLA_PYTHON_CLIENT_PREALLOCATE" in os.environ:
        return {}
    return {"XLA_PYTHON_CLIENT_PREALLOCATE": "false"}


def run_locally(chief_args: list[str], worker_args: list[str], workers: int,
                gpus: list[str] | None = None) -> int:
    """Serve the search `chief_args` define to `workers` local workers until it is done;
    return the chief's exit status. `worker_args` go to every worker (--dir, --data, -q)."""
    port = free_port()
    shared = shared_gpu_env()
    chief = _start(["chief", *chief_args, "--host", "127.0.0.1", "--port", str(port)], shared)
    started = {"chief": chief}
    for i, worker_id in enumerate(worker_ids(workers)):
        env = {**shared, "CUDA_VISIBLE_DEVICES": gpus[i]} if gpus else shared
        started[worker_id] = _start(["worker", "--chief", f"127.0.0.1:{port}", "--id",
                                     worker_id, *worker_args], env)
    relays = [_relay(name, process) for name, process in started.items()]
    worker_processes = [p for name, p in started.items() if name != "chief"]
    try:
        status = _wait_for_chief(chief, worker_processes)
        if status == 0:
            # Done, the chief told every worker to stop; or nothing was left to run and the
            # chief served nobody. Either way a worker still waiting after the grace is stopped.
            _wait(worker_processes, GRACE_SECONDS)
        # A chief that refused the search or failed leaves nothing to do: stopped at once.
        _stop(worker_processes, signal.SIGINT)
    except KeyboardInterrupt:
        _stop(list(started.values()), signal.SIGINT)
        raise
    finally:
        for relay in relays:
            relay.join(timeout=5)
    return status
