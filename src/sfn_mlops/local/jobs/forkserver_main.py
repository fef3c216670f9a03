"""The fork server: a helper process that has imported the jobs' libraries once, and forks a
fresh child for each job, so a job starts warm instead of paying for the interpreter and
pandas/numpy/pyarrow/xgboost (most of a small job's time).

Run as a script, never imported by the service: ``python forkserver_main.py FD``, where FD is
its end of a socket pair shared with the service. It speaks JSON lines over that socket:

- it sends ``{"ready": true, "pid": P, "threads": T}`` once its imports are done;
- for ``{"id": N, "argv": [python, script, args...], "env": {...}, "cwd": C, "log": L}`` it
  forks a child and answers ``{"id": N, "pid": CHILD, "start_time": TICKS}`` at once, then
  ``{"id": N, "exit": CODE}`` when the child ends (CODE as subprocess gives it: negative for a
  signal), or ``{"id": N, "error": TEXT}`` if it could not fork;
- it exits when the socket closes, i.e. when the service exits or dies (even by SIGKILL).

It must be single-threaded when it forks (a forked child inherits only the forking thread,
with any other thread's locks held). Its environment is set by the service so that no import
starts a thread: OPENBLAS_NUM_THREADS=1 (numpy's OpenBLAS pool) and
JE_ARROW_MALLOC_CONF=background_thread:false (pyarrow's jemalloc thread); the service checks
the ``threads`` count it reports. It never runs an OpenMP parallel region (GNU OpenMP's thread
pool does not survive fork), so each child's xgboost starts its own pool.
"""

from __future__ import annotations

import contextlib
import io
import json
import os
import runpy
import selectors
import signal
import socket
import sys
import traceback
from typing import Any

_BASE_PATH: list[str] = []


def _import_libraries() -> None:
    """What the jobs import, the way they import it (xgboost without scikit-learn).

    The local Clarify runtime also needs boto3 (it looks the model up) and, for the bias
    job's FlipTest, scipy's k-d tree and scikit-learn's neighbours: 1.3 s of a 2.2 s bias job
    when imported there. They come after xgboost, which then keeps its scikit-learn-free form.
    """
    import numpy  # noqa: F401
    import pandas  # noqa: F401
    import pyarrow  # noqa: F401
    import pyarrow.csv  # noqa: F401

    if "sklearn" not in sys.modules:
        sys.modules["sklearn"] = None  # type: ignore[assignment]
        try:
            import xgboost  # noqa: F401
        finally:
            del sys.modules["sklearn"]
    import boto3  # noqa: F401
    import scipy.spatial  # noqa: F401
    import sklearn.neighbors  # noqa: F401


def _threads() -> int:
    try:
        return len(os.listdir("/proc/self/task"))
    except OSError:
        import threading

        return threading.active_count()


def _start_time(pid: int) -> int | None:
    try:
        with open(f"/proc/{pid}/stat", "rb") as stream:
            tail = stream.read().decode("ascii", "replace").rpartition(")")[2]
    except OSError:
        return None
    return int(tail.split()[19])  # field 22 (starttime); the tail starts at field 3


def _send(conn: socket.socket, message: dict[str, Any]) -> None:
    conn.sendall(json.dumps(message).encode() + b"\n")


# the child --------------------------------------------------------------------------------
def _reset_signals() -> None:
    """The dispositions a fresh ``python script.py`` starts with."""
    signal.set_wakeup_fd(-1)
    for sig in (signal.SIGCHLD, signal.SIGTERM, signal.SIGHUP, signal.SIGQUIT, signal.SIGUSR1):
        signal.signal(sig, signal.SIG_DFL)
    signal.signal(signal.SIGINT, signal.default_int_handler)
    signal.signal(signal.SIGPIPE, signal.SIG_IGN)
    signal.pthread_sigmask(signal.SIG_SETMASK, set())


def _redirect(log: str) -> None:
    """stdin from /dev/null; stdout and stderr appended to the job's log, unbuffered."""
    null = os.open(os.devnull, os.O_RDONLY)
    os.dup2(null, 0)
    out = os.open(log, os.O_WRONLY | os.O_APPEND | os.O_CREAT, 0o644)
    os.dup2(out, 1)
    os.dup2(out, 2)
    for fd in (null, out):
        os.close(fd)
    sys.stdin = io.TextIOWrapper(io.FileIO(0, "r", closefd=False), encoding="utf-8")
    for name, fd in (("stdout", 1), ("stderr", 2)):
        stream = io.TextIOWrapper(
            io.FileIO(fd, "w", closefd=False),
            encoding="utf-8",
            errors="backslashreplace" if fd == 2 else "strict",
            write_through=True,
        )
        setattr(sys, name, stream)
        setattr(sys, f"__{name}__", stream)


def _exit_code(exc: SystemExit) -> int:
    """What the interpreter exits with for ``sys.exit(code)``."""
    if exc.code is None:
        return 0
    if isinstance(exc.code, int):
        return exc.code & 0xFF
    print(exc.code, file=sys.stderr)
    return 1


def _run_script(request: dict[str, Any]) -> int:
    argv, env = request["argv"], request["env"]
    os.environ.clear()
    os.environ.update(env)
    os.chdir(request["cwd"])
    script = argv[1]
    extra = [p for p in env.get("PYTHONPATH", "").split(os.pathsep) if p]
    sys.path[:] = [os.path.dirname(os.path.abspath(script)), *extra, *_BASE_PATH]
    sys.argv = list(argv[1:])
    sys.dont_write_bytecode = bool(env.get("PYTHONDONTWRITEBYTECODE"))
    try:
        runpy.run_path(script, run_name="__main__")
    except SystemExit as exc:
        return _exit_code(exc)
    except BaseException:  # noqa: BLE001 - as the interpreter: print it, exit 1
        traceback.print_exc()
        return 1
    return 0


def _child(request: dict[str, Any], keep_closed: list[int]) -> None:
    """In the forked child: become the job's process (never returns)."""
    code = 1
    try:
        for fd in keep_closed:
            with contextlib.suppress(OSError):
                os.close(fd)
        os.setsid()
        _reset_signals()
        _redirect(request["log"])
        code = _run_script(request)
        import atexit

        atexit._run_exitfuncs()
    except BaseException:  # noqa: BLE001 - nothing may escape into the server's loop
        with contextlib.suppress(BaseException):
            traceback.print_exc()
    finally:
        with contextlib.suppress(BaseException):
            sys.stdout.flush()
            sys.stderr.flush()
        os._exit(code)


# the server -------------------------------------------------------------------------------
class Server:
    def __init__(self, conn: socket.socket) -> None:
        self.conn = conn
        self.buffer = b""
        self.children: dict[int, int] = {}  # child pid -> request id
        self.wake_r, self.wake_w = os.pipe()
        os.set_blocking(self.wake_w, False)
        os.set_blocking(self.wake_r, False)
        signal.signal(signal.SIGCHLD, lambda *_: None)  # a handler, so the wakeup fd is written
        signal.set_wakeup_fd(self.wake_w)

    def serve(self) -> None:
        selector = selectors.DefaultSelector()
        selector.register(self.conn, selectors.EVENT_READ, "conn")
        selector.register(self.wake_r, selectors.EVENT_READ, "child")
        _send(self.conn, {"ready": True, "pid": os.getpid(), "threads": _threads()})
        while True:
            for key, _ in selector.select():
                if key.data == "child":
                    with contextlib.suppress(BlockingIOError):
                        os.read(self.wake_r, 512)
                    self.reap()
                elif not self.read_requests():
                    return

    def read_requests(self) -> bool:
        data = self.conn.recv(1 << 16)
        if not data:
            return False  # the service has gone
        self.buffer += data
        while b"\n" in self.buffer:
            line, self.buffer = self.buffer.split(b"\n", 1)
            self.start(json.loads(line))
        return True

    def start(self, request: dict[str, Any]) -> None:
        try:
            pid = os.fork()
        except OSError as exc:
            _send(self.conn, {"id": request["id"], "error": f"fork failed: {exc}"})
            return
        if pid == 0:
            _child(request, [self.conn.fileno(), self.wake_r, self.wake_w])
        self.children[pid] = request["id"]
        # Read before reaping: until waitpid, the pid cannot be reused.
        _send(self.conn, {"id": request["id"], "pid": pid, "start_time": _start_time(pid)})
        self.reap()

    def reap(self) -> None:
        while self.children:
            try:
                pid, status, usage = os.wait4(-1, os.WNOHANG)
            except ChildProcessError:
                return
            if pid == 0:
                return
            ident = self.children.pop(pid, None)
            if ident is not None:
                _send(
                    self.conn,
                    {
                        "id": ident,
                        "exit": os.waitstatus_to_exitcode(status),
                        "cpu": usage.ru_utime + usage.ru_stime,  # the job's instance metrics
                        "maxrss": usage.ru_maxrss,  # KiB
                    },
                )


def main() -> None:
    conn = socket.socket(fileno=int(sys.argv[1]))
    _BASE_PATH[:] = [p for p in sys.path[1:] if p]  # not this file's folder
    sys.path[:] = _BASE_PATH
    _import_libraries()
    with contextlib.suppress(BrokenPipeError, ConnectionResetError):
        Server(conn).serve()


if __name__ == "__main__":
    main()
