"""The service's side of the fork server (see forkserver_main.py): start it once, hand it jobs.

The service is multi-threaded and so never forks itself; the fork server is a separate,
single-threaded process started with ``subprocess`` and reached over a socket pair. One
reader thread here takes its answers and hands each to the job that waits for it. If the fork
server cannot start, reports threads, or dies, ``spawn`` returns None and the runner starts
the job with ``subprocess`` as before.
"""

from __future__ import annotations

import json
import os
import socket
import subprocess
import sys
import threading
from collections.abc import Mapping
from pathlib import Path
from typing import Any

from sfn_mlops.local.jobs.state import JobFailed
from sfn_mlops.local.processes import Usage

MAIN = Path(__file__).with_name("forkserver_main.py")
READY_SECONDS = 60.0  # the imports take about a second; a loaded machine may need more
ANSWER_SECONDS = 10.0

#: The fork server's environment on top of the service's: no import may start a thread.
THREADLESS_IMPORTS = {
    "OPENBLAS_NUM_THREADS": "1",
    "JE_ARROW_MALLOC_CONF": "background_thread:false",
}
#: Variables read once when the interpreter or a native library starts: a job whose value
#: differs from the fork server's cannot start from it. PYTHONPATH, PYTHONUNBUFFERED and
#: PYTHONDONTWRITEBYTECODE are applied in the child instead.
_STARTUP_PREFIXES = (
    "PYTHON",
    "OMP_",
    "GOMP_",
    "KMP_",
    "OPENBLAS_",
    "MKL_",
    "JE_",
    "MALLOC_",
    "LD_",
)
_APPLIED_IN_CHILD = frozenset({"PYTHONPATH", "PYTHONUNBUFFERED", "PYTHONDONTWRITEBYTECODE"})


def startup_env(env: Mapping[str, str]) -> dict[str, str]:
    """The part of ``env`` that takes effect only when a process starts."""
    return {
        key: value
        for key, value in env.items()
        if key.startswith(_STARTUP_PREFIXES) and key not in _APPLIED_IN_CHILD
    }


class ForkServerLost(JobFailed):
    """The fork server died while the job ran: the job's exit status is unknown."""


class ForkedProcess:
    """A job's process started by the fork server; the same calls as ``subprocess.Popen``."""

    def __init__(self, ident: int) -> None:
        self.ident = ident
        self.pid = 0
        self.start_time: int | None = None
        self.error: str | None = None
        self.returncode: int | None = None
        self.usage: Usage | None = None  # once it has ended
        self.lost = False
        self.started = threading.Event()
        self.ended = threading.Event()

    def poll(self) -> int | None:
        if not self.ended.is_set():
            return None
        return self.returncode if self.returncode is not None else -9

    def wait(self) -> int:
        self.ended.wait()
        if self.lost or self.returncode is None:
            raise ForkServerLost(
                "PlatformError: the local fork server died while the job ran; its exit status "
                "is unknown"
            )
        return self.returncode


class ForkServer:
    """One fork server process and the reader thread that dispatches its answers."""

    def __init__(self, env: Mapping[str, str]) -> None:
        self.env = dict(env)
        ours, theirs = socket.socketpair()
        try:
            self.proc = subprocess.Popen(
                [sys.executable, str(MAIN), str(theirs.fileno())],
                env=self.env,
                pass_fds=[theirs.fileno()],
                stdin=subprocess.DEVNULL,
                stdout=subprocess.DEVNULL,
                stderr=subprocess.DEVNULL,
                start_new_session=True,  # a Ctrl-C for the service is not for it
            )
        finally:
            theirs.close()
        self.conn = ours
        self.reader = self.conn.makefile("rb")
        self._send_lock = threading.Lock()
        self._pending: dict[int, ForkedProcess] = {}
        self._lock = threading.Lock()
        self._next = 0
        self.alive = False
        self.ready = self._handshake()

    def _handshake(self) -> dict[str, Any]:
        self.conn.settimeout(READY_SECONDS)
        try:
            ready = json.loads(self.reader.readline() or b"{}")
        except (OSError, ValueError):
            ready = {}
        self.conn.settimeout(None)
        if ready.get("ready") and ready.get("threads") == 1:
            self.alive = True
            threading.Thread(target=self._read, name="forkserver-reader", daemon=True).start()
        else:
            self.close()
        return ready

    def accepts(self, env: Mapping[str, str]) -> bool:
        return self.alive and startup_env(env) == startup_env(self.env)

    def spawn(self, argv: list[str], env: Mapping[str, str], cwd: Path, log: Path) -> ForkedProcess:
        """Fork the job's child; JobFailed if the fork server cannot."""
        with self._lock:
            self._next += 1
            child = ForkedProcess(self._next)
            self._pending[child.ident] = child
        request = {"id": child.ident, "argv": argv, "env": dict(env), "cwd": str(cwd)}
        request["log"] = str(log)
        try:
            with self._send_lock:
                self.conn.sendall(json.dumps(request).encode() + b"\n")
        except OSError as exc:
            self._fail_all()
            raise ForkServerLost(f"PlatformError: the local fork server is gone: {exc}") from exc
        if not child.started.wait(ANSWER_SECONDS) or child.error:
            raise JobFailed(
                f"PlatformError: the local fork server did not start the job: "
                f"{child.error or 'no answer'}"
            )
        return child

    def _read(self) -> None:
        try:
            for line in self.reader:
                self._dispatch(json.loads(line))
        except (OSError, ValueError):
            pass
        self._fail_all()

    def _dispatch(self, message: dict[str, Any]) -> None:
        with self._lock:
            child = self._pending.get(message["id"])
            if child is not None and ("exit" in message or "error" in message):
                del self._pending[message["id"]]
        if child is None:
            return
        if "pid" in message:
            child.pid, child.start_time = message["pid"], message.get("start_time")
            child.started.set()
        elif "exit" in message:
            child.returncode = int(message["exit"])
            if "cpu" in message:
                child.usage = Usage(float(message["cpu"]), int(message["maxrss"]) * 1024)
            child.ended.set()
        else:
            child.error = str(message["error"])
            child.started.set()
            child.ended.set()

    def _fail_all(self) -> None:
        self.alive = False
        with self._lock:
            pending, self._pending = list(self._pending.values()), {}
        for child in pending:
            child.lost = True
            child.error = child.error or "the fork server exited"
            child.started.set()
            child.ended.set()

    def close(self) -> None:
        """Stop the fork server: closing its socket makes it exit."""
        self.alive = False
        try:
            self.conn.close()
        finally:
            if self.proc.poll() is None:
                try:
                    self.proc.wait(timeout=5)
                except subprocess.TimeoutExpired:
                    self.proc.kill()
                    self.proc.wait()


_SERVER: ForkServer | None = None
_SERVER_LOCK = threading.Lock()
_DISABLED_ENV = "SFN_MLOPS_NO_FORK_SERVER"


def server_env(base: Mapping[str, str]) -> dict[str, str]:
    env = dict(base)
    env.update(THREADLESS_IMPORTS)
    return env


def get(env: Mapping[str, str]) -> ForkServer | None:
    """The running fork server, started with ``env`` when there is none; None when unusable."""
    global _SERVER
    if os.environ.get(_DISABLED_ENV):
        return None
    with _SERVER_LOCK:
        if _SERVER is None or (not _SERVER.alive and _SERVER.ready.get("ready")):
            # Never started, or died after a good start: (re)start. A failed start sticks.
            try:
                _SERVER = ForkServer(env)
            except OSError:
                return None
        return _SERVER if _SERVER.alive else None


def shutdown() -> None:
    global _SERVER
    with _SERVER_LOCK:
        server, _SERVER = _SERVER, None
    if server is not None:
        server.close()
