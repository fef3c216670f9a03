"""Start a job's process: warm from the fork server when it is a Python script of a framework
image, else with ``subprocess`` as a container would run its entrypoint.

Either way the process leads its own process group (the runner signals the group), writes
stdout and stderr to the job's log, and reports its pid, start time and exit code through
``poll``/``wait`` like ``subprocess.Popen``, and once it has ended, what it used (``usage``:
its CPU time and peak resident memory, as ``wait4`` reports them) for the job's instance
metrics.
"""

from __future__ import annotations

import os
import subprocess
import sys
import threading
from dataclasses import dataclass
from pathlib import Path
from typing import BinaryIO, Protocol

from sfn_mlops.local.credentials import without_credentials
from sfn_mlops.local.jobs import forkserver
from sfn_mlops.local.jobs.state import JobFailed
from sfn_mlops.local.processes import Usage, start_time

#: Set for every job unless the job or the service sets them. A container has its cores to
#: itself; here jobs share them with everything else, and OpenMP's spinning waits stalled
#: 2-thread XGBoost training from 0.2 s to 42 s. The fork server needs the other two so that
#: its imports start no thread; every job gets them so both ways of starting behave alike.
RUNTIME_DEFAULTS = {"OMP_WAIT_POLICY": "PASSIVE", **forkserver.THREADLESS_IMPORTS}


def default_env() -> dict[str, str]:
    """The service's environment with the runtime defaults, without the service's own AWS
    credentials: what every job starts from (a job gets its role's keys, ``Run.base_env``)."""
    env = without_credentials(dict(os.environ))
    for key, value in RUNTIME_DEFAULTS.items():
        env.setdefault(key, value)
    return env


@dataclass(frozen=True)
class Launch:
    argv: list[str]
    env: dict[str, str]
    cwd: Path
    warm: bool = False  # the image's local runtime runs Python scripts (images.PYTHON_SCRIPT)


class JobProcess(Protocol):
    pid: int
    start_time: int | None
    usage: Usage | None  # once it has ended

    def poll(self) -> int | None: ...

    def wait(self) -> int: ...


class PopenProcess:
    """A job started with subprocess.Popen, reaped with ``wait4`` for its usage."""

    def __init__(self, launch: Launch, log: BinaryIO) -> None:
        self.popen = subprocess.Popen(
            launch.argv,
            cwd=launch.cwd,
            env=launch.env,
            stdin=subprocess.DEVNULL,
            stdout=log,
            stderr=subprocess.STDOUT,
            start_new_session=True,
        )
        self.pid = self.popen.pid
        self.start_time = start_time(self.pid)  # not reaped yet: the pid is still this child's
        self.usage: Usage | None = None
        self._ended = threading.Event()

    def poll(self) -> int | None:
        return self._reap(os.WNOHANG)

    def wait(self) -> int:
        code = self._reap(0)
        assert code is not None
        return code

    def _reap(self, flags: int) -> int | None:
        """The exit code once reaped (by this call or another thread's: the watchdog polls
        while the runner waits), None while the process runs."""
        if self._ended.is_set():
            return self.popen.returncode
        try:
            pid, status, usage = os.wait4(self.pid, flags)
        except ChildProcessError:  # the other thread reaped it
            if flags & os.WNOHANG and not self._ended.is_set():
                return None
            self._ended.wait()
            return self.popen.returncode
        if pid == 0:
            return None
        self.usage = Usage(usage.ru_utime + usage.ru_stime, usage.ru_maxrss * 1024)
        self.popen.returncode = os.waitstatus_to_exitcode(status)
        self._ended.set()
        return self.popen.returncode


def is_python_script(argv: list[str], cwd: Path) -> bool:
    """``<this python> script.py args...``: what the fork server can run."""
    return (
        len(argv) >= 2
        and argv[0] == sys.executable
        and not argv[1].startswith("-")
        and (cwd / argv[1]).is_file()
    )


def warm_server(launch: Launch) -> forkserver.ForkServer | None:
    if not (launch.warm and is_python_script(launch.argv, launch.cwd)):
        return None
    server = forkserver.get(default_env())
    if server is None or not server.accepts(launch.env):
        return None
    return server


def start(launch: Launch, log: BinaryIO, log_path: Path) -> JobProcess:
    """The job's process, started; JobFailed if it cannot start."""
    server = warm_server(launch)
    if server is not None:
        try:
            return server.spawn(launch.argv, launch.env, launch.cwd, log_path)
        except forkserver.ForkServerLost:
            pass  # fall back to a cold start
    try:
        return PopenProcess(launch, log)
    except OSError as exc:
        raise JobFailed(f"UserError: cannot start {launch.argv[0]!r}: {exc}") from exc


def prewarm(cloud: object = None) -> bool:
    """Start the fork server now (the service calls this at start); whether it is usable.

    The fork server serves every workspace of this process; ``cloud`` is accepted and unused.
    """
    return forkserver.get(default_env()) is not None
