"""Who works on a distributed search: heartbeat files in `<project>/cluster/`, and what lets
a worker in: the chief's token there and, optionally, TLS files.

The chief and every worker rewrite their own small JSON file every few seconds, on the
filesystem they share. The chief judges a worker alive by whether its file still changes, timed on
the chief's own clock, so the machines' clocks need not agree; `status` shows wall-clock ages for
people. This module reads and writes files only (no TensorFlow), so `status` stays instant and
the TLS files are checked before TensorFlow loads.
"""

from __future__ import annotations

import os
import re
import secrets
import socket
import ssl
import threading
import time
from dataclasses import dataclass
from pathlib import Path

from sweep import state
from sweep.errors import SweepError

CLUSTER_DIR = "cluster"
CHIEF_FILE = "chief.json"
TOKEN_FILE = "chief.token"
WORKER_PREFIX = "worker-"
HEARTBEAT_SECONDS = 2.0
STALE_AFTER = 3 * HEARTBEAT_SECONDS  # a heartbeat older than this looks stopped
DEFAULT_WORKER_TIMEOUT = 120.0  # seconds of silence after which a worker's trial is requeued
HEARTBEAT_KEYS = {"host", "pid", "updated"}  # what every heartbeat holds, a chief's and a worker's
WORKER_ID = re.compile(r"[A-Za-z0-9][A-Za-z0-9_.-]{0,62}")


def chief_path(project_dir: Path) -> Path:
    return project_dir / CLUSTER_DIR / CHIEF_FILE


def worker_path(project_dir: Path, worker_id: str) -> Path:
    return project_dir / CLUSTER_DIR / f"{WORKER_PREFIX}{worker_id}.json"


def token_path(project_dir: Path) -> Path:
    return project_dir / CLUSTER_DIR / TOKEN_FILE


def write_token(project_dir: Path) -> str:
    """A new secret for this start of the chief, in a file only its owner can read: the search
    folder is the trust boundary, so whoever can read the folder may work for the search, and
    nobody else. A new one at every start, so a token seen once stops working at the restart."""
    token = secrets.token_urlsafe(32)
    state.atomic_write(token_path(project_dir), token, mode=0o600)
    return token


def read_token(project_dir: Path) -> str:
    """The token of the chief that last started on `project_dir`, for a worker's calls."""
    path = token_path(project_dir)
    try:
        return path.read_text().strip()
    except OSError as e:
        raise SweepError(f"Cannot read the chief's token {path} ({e.strerror}): run the worker "
                         "as the user who started the chief, with the chief's --dir.") from None


def read_heartbeat(path: Path) -> dict | None:
    """A chief's or worker's heartbeat; None where it is missing, unreadable, or not one (edited
    by hand or damaged): such a process cannot be told alive."""
    try:
        beat = state.read_json(path)
    except (SweepError, FileNotFoundError):
        return None
    if not isinstance(beat, dict) or not beat.keys() >= HEARTBEAT_KEYS:
        return None
    return beat if isinstance(beat["updated"], int | float) else None


def ongoing_trials(project_dir: Path) -> dict[str, str]:
    """Which worker holds which trial (`state.ongoing_trials`); empty if `oracle.json` is
    missing or unreadable."""
    return state.ongoing_trials(project_dir) or {}


def read_workers(project_dir: Path) -> dict[str, dict]:
    """Every worker that ever joined the search, by id, with its last heartbeat."""
    found = {}
    for path in sorted((project_dir / CLUSTER_DIR).glob(f"{WORKER_PREFIX}*.json")):
        beat = read_heartbeat(path)
        if beat and "id" in beat:
            found[beat["id"]] = beat
    return found


class Heartbeat(threading.Thread):
    """Rewrites `path` every HEARTBEAT_SECONDS with who we are and a fresh time, until stopped."""

    def __init__(self, path: Path, **identity):
        super().__init__(daemon=True, name=f"heartbeat {path.name}")
        self.path = path
        self.identity = {"host": socket.gethostname(), "pid": os.getpid(),
                         "started": time.time(), **process_identity(os.getpid()), **identity}
        self._stop_event = threading.Event()
        self.beat()

    def beat(self) -> None:
        state.write_json(self.path, {**self.identity, "updated": time.time()})

    def run(self) -> None:
        while not self._stop_event.wait(HEARTBEAT_SECONDS):
            self.beat()

    def stop(self) -> None:
        """Stop beating and say so in the file: `status` then shows the process as gone."""
        self._stop_event.set()
        self.join()
        state.write_json(self.path, {**self.identity, "updated": time.time(),
                                     "stopped": time.time()})


class SilenceWatch:
    """On the chief: how long each worker's heartbeat file has not changed, by the chief's clock.

    A worker never seen is timed from the first question about it, so a worker that died before
    writing any heartbeat still loses its trial after the timeout.
    """

    def __init__(self, project_dir: Path):
        self.project_dir = project_dir
        self._last: dict[str, tuple[float | None, float]] = {}

    def silent_for(self, worker_id: str) -> float:
        beat = read_heartbeat(worker_path(self.project_dir, worker_id))
        updated = beat["updated"] if beat else None
        now = time.monotonic()
        previous = self._last.get(worker_id)
        if previous is None or previous[0] != updated:
            self._last[worker_id] = (updated, now)
            return 0.0
        return now - previous[1]


def port_open(host: str, port: int) -> bool:
    """Whether something accepts TCP connections at host:port."""
    try:
        with socket.create_connection((host, port), timeout=1):
            return True
    except OSError:
        return False


def parse_address(text: str) -> tuple[str, int]:
    """'HOST:PORT' -> (host, port), with a clear error for anything else."""
    host, _, port = text.rpartition(":")
    if not host or not port.isdigit() or not 0 < int(port) < 65536:
        raise SweepError(f"--chief {text!r} is not HOST:PORT, e.g. 192.168.1.10:8000.")
    return host.strip("[]"), int(port)


def _read_tls_file(path: str, option: str) -> bytes:
    try:
        return Path(path).read_bytes()
    except OSError as e:
        raise SweepError(f"{option} {path}: cannot read it ({e.strerror}).") from None


@dataclass(frozen=True)
class ChiefTls:
    """The chief's certificate chain and private key (PEM), as gRPC takes them."""

    cert_path: str
    cert: bytes
    key: bytes


def read_chief_tls(cert_path: str | None, key_path: str | None) -> ChiefTls | None:
    """`chief --tls-cert --tls-key`: both (TLS) or neither (plain gRPC). The pair is checked
    with Python's own TLS first: gRPC would only say it cannot listen on the port."""
    if (cert_path is None) != (key_path is None):
        raise SweepError("--tls-cert and --tls-key go together: give both or neither.")
    if cert_path is None:
        return None
    tls = ChiefTls(cert_path, _read_tls_file(cert_path, "--tls-cert"),
                   _read_tls_file(key_path, "--tls-key"))
    try:
        ssl.create_default_context(ssl.Purpose.CLIENT_AUTH).load_cert_chain(
            cert_path, key_path, password=b"")  # an encrypted key fails instead of prompting
    except ssl.SSLError:
        raise SweepError(f"--tls-cert {cert_path} and --tls-key {key_path} are not a PEM "
                         "certificate and its unencrypted private key.") from None
    return tls


def read_chief_certificate(path: str) -> bytes:
    """What a worker checks the chief's certificate against: that certificate or its CA's."""
    certificates = _read_tls_file(path, "--tls-cert")
    try:
        ssl.create_default_context(cafile=path)
    except ssl.SSLError:
        raise SweepError(f"--tls-cert {path} holds no PEM certificate.") from None
    return certificates


def check_port(port: int) -> int:
    if not 0 < port < 65536:
        raise SweepError(f"--port {port} is not a port number (1-65535).")
    return port


def default_worker_id() -> str:
    """This machine's name: a worker restarted on the same machine takes its trial back."""
    name = re.sub(r"[^A-Za-z0-9_.-]", "-", socket.gethostname()).strip("-.") or "worker"
    return name.replace("chief", "chf")


def check_worker_id(worker_id: str) -> str:
    # KerasTuner makes any process whose id contains "chief" a second chief.
    if not WORKER_ID.fullmatch(worker_id) or "chief" in worker_id:
        raise SweepError(
            f"--id {worker_id!r}: use letters, digits, '.', '_' or '-' (at most 63), "
            "and not the word 'chief'."
        )
    return worker_id


def process_identity(pid: int) -> dict:
    """What tells process `pid` from a later one given the same number, where Linux says: the
    boot it runs in and its start time in clock ticks since that boot (proc(5), field 22).
    Exact, unlike wall clocks, which a time sync may step. Empty elsewhere."""
    try:
        after_name = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()
        boot = Path("/proc/sys/kernel/random/boot_id").read_text().strip()
        return {"boot_id": boot, "start_ticks": int(after_name[19])}
    except (OSError, ValueError, IndexError):
        return {}


def _alive_here(pid: int, heartbeat: dict | None) -> bool:
    """Whether `pid` runs here and is still the process that wrote `heartbeat`. Process ids
    are reused, and a search folder moved to a fresh machine of the same name (a lent GPU, a
    container) finds its old ids taken by new processes, its own new workers among them."""
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except PermissionError:
        pass
    recorded = {key: heartbeat[key] for key in ("boot_id", "start_ticks")
                if heartbeat and key in heartbeat}
    now = process_identity(pid)
    return not recorded or not now or recorded == now


def process_alive(host: str, pid: int, heartbeat: dict | None, timeout: float) -> bool:
    """Whether process `pid` on `host` still runs. On this machine the kernel says; another
    machine's process ids mean nothing here, so there only the process's own `heartbeat` can
    tell, by having been rewritten within `timeout` seconds (without one: not running)."""
    if host == socket.gethostname():
        return _alive_here(pid, heartbeat)
    if not heartbeat or "stopped" in heartbeat:
        return False
    return time.time() - heartbeat["updated"] < timeout


def check_worker_id_free(project_dir: Path, worker_id: str, timeout: float) -> None:
    """Refuse a second live worker with the same id: KerasTuner would give both the same trial.

    A worker that died may be restarted under its id at once (that is how it takes its trial
    back): on the same machine its process is gone; elsewhere its heartbeat must be stale.
    """
    beat = read_heartbeat(worker_path(project_dir, worker_id))
    if not beat or (beat["host"] == socket.gethostname() and beat["pid"] == os.getpid()):
        return
    if process_alive(beat["host"], beat["pid"], beat, timeout):
        raise SweepError(
            f"Worker id {worker_id!r} is in use by process {beat['pid']} on {beat['host']}: "
            "give this worker another --id."
        )


def find_project(directory: Path, port: int, project: str | None) -> Path:
    """The search whose chief serves `port`, from the chief files under the shared `directory`."""
    if project:
        chief = read_heartbeat(chief_path(directory / project))
        if not chief:
            raise SweepError(f"No distributed search at {directory / project}: start its chief "
                             f"first (python -m sweep chief ... --dir {directory}).")
        if chief["port"] != port:
            raise SweepError(f"The chief of {directory / project} serves port {chief['port']}, "
                             f"not {port}.")
        return directory / project
    beats = [(beat["updated"], path.parent.parent)
             for path in directory.glob(f"*/{CLUSTER_DIR}/{CHIEF_FILE}")
             if (beat := read_heartbeat(path)) and beat.get("port") == port]
    if not beats:
        raise SweepError(
            f"The chief answers on port {port}, but no search under {directory}/ names it. "
            "Give the worker the chief's --dir (a folder both machines share)."
        )
    return max(beats)[1]  # a live chief rewrites its file every few seconds: the newest
