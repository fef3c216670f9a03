"""Find, start and stop a workspace's local service from any process; point boto3 at it.

After ``connect(workspace)``, plain boto3 (and anything else that reads ``AWS_ENDPOINT_URL``
and the ``AWS_*`` keys) talks to the service, signing with the workspace's administrator keys:
there is no other path to the local cloud.
"""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
import time
import urllib.error
import urllib.request
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from sfn_mlops import settings
from sfn_mlops.local.credentials import CREDENTIAL_VARIABLES, TOKEN_HEADER, AccessKey, KeyStore
from sfn_mlops.local.daemon import LOG_FILE, SERVICE_FILE, code_stamp, hold_lock
from sfn_mlops.local.processes import pid_alive

START_TIMEOUT_SECONDS = 60.0
STOP_TIMEOUT_SECONDS = 30.0


class ServiceError(RuntimeError):
    """The local service could not be started or reached; the message says what to look at."""


@dataclass(frozen=True)
class ServiceInfo:
    workspace: Path
    pid: int
    port: int
    started: float
    code: str = ""

    @property
    def url(self) -> str:
        return f"http://127.0.0.1:{self.port}"


def find(workspace: Path) -> ServiceInfo | None:
    """The running service of ``workspace``; a stale record (the process is gone) is removed."""
    path = workspace / SERVICE_FILE
    try:
        record = json.loads(path.read_text())
    except (FileNotFoundError, ValueError):
        return None
    info = ServiceInfo(
        workspace,
        int(record["pid"]),
        int(record["port"]),
        record["started"],
        record.get("code", ""),
    )
    if pid_alive(info.pid) and _lock_held(workspace):
        return info
    path.unlink(missing_ok=True)
    return None


def _lock_held(workspace: Path) -> bool:
    handle = hold_lock(workspace)
    if handle is None:
        return True
    handle.close()
    return False


def ensure_running(
    workspace: Path, idle_timeout: float | None = None, echo: Any = None
) -> ServiceInfo:
    """The workspace's service, started (detached, logging to a file) if none runs.

    A service that runs older code than this command's is replaced when it is idle.
    """
    info = find(workspace)
    if info is not None and info.code == code_stamp():
        return info
    if info is not None and _busy(info):
        if echo is not None:
            echo(
                f"The local service (pid {info.pid}) runs older code but is busy, so it is kept; "
                "`sfn-mlops local down` when it is done starts the new code next time"
            )
        return info
    if info is not None:
        if echo is not None:
            echo(
                f"Restarting the local service (pid {info.pid}): the code changed since it started"
            )
        stop(workspace)
    workspace.mkdir(parents=True, exist_ok=True)
    log_path = workspace / LOG_FILE
    log_path.parent.mkdir(parents=True, exist_ok=True)
    argv = [sys.executable, "-m", "sfn_mlops.local.daemon", "--workspace", str(workspace)]
    argv += ["--idle-timeout", str(settings.idle_timeout(idle_timeout))]
    if echo is not None:
        echo(f"Starting the local service for {workspace} (log: {log_path})")
    with open(log_path, "ab") as log:
        process = subprocess.Popen(
            argv,
            stdin=subprocess.DEVNULL,
            stdout=log,
            stderr=subprocess.STDOUT,
            start_new_session=True,  # a Ctrl-C in the terminal does not reach it
            env=_service_environment(),
        )
    return _wait_for_start(workspace, process, log_path)


def _busy(info: ServiceInfo) -> bool:
    try:
        status = admin(info, "status")
    except ServiceError:
        return False
    return bool(status["executions"] or status["jobs"])


def _service_environment() -> dict[str, str]:
    env = dict(os.environ)
    env.pop("AWS_ENDPOINT_URL", None)  # the service sets its own
    env.pop("AWS_PROFILE", None)
    return env


def _wait_for_start(workspace: Path, process: subprocess.Popen[bytes], log: Path) -> ServiceInfo:
    deadline = time.monotonic() + START_TIMEOUT_SECONDS
    while time.monotonic() < deadline:
        info = find(workspace)
        if info is not None:
            return info
        code = process.poll()
        if code is not None and not _lock_held(workspace):
            raise ServiceError(
                f"the local service exited with code {code} before it was ready; see {log}"
            )
        time.sleep(0.02)
    raise ServiceError(
        f"the local service did not start in {START_TIMEOUT_SECONDS:.0f} s; see {log}"
    )


def connect(workspace: Path, idle_timeout: float | None = None, echo: Any = None) -> ServiceInfo:
    """Start the service if needed and point this process's AWS clients at it, signing as the
    workspace's administrator (the keys replace any this process had: they are the only ones
    the service knows)."""
    info = ensure_running(workspace, idle_timeout, echo)
    for name in CREDENTIAL_VARIABLES:
        os.environ.pop(name, None)
    os.environ.update(environment(info))
    boto3 = sys.modules.get("boto3")
    if boto3 is not None:
        boto3.DEFAULT_SESSION = None  # type: ignore[attr-defined]  # it keeps its first keys
    return info


def environment(info: ServiceInfo) -> dict[str, str]:
    """What points any AWS client at the service as the workspace's administrator: what
    ``sfn-mlops local env`` prints."""
    return {
        "AWS_ENDPOINT_URL": info.url,
        **admin_key(info.workspace).environment(),
        "AWS_DEFAULT_REGION": settings.LOCAL_REGION,
    }


def admin_key(workspace: Path) -> AccessKey:
    """The workspace administrator's access key (minted with the workspace's first service)."""
    return KeyStore(workspace).admin()


def admin(info: ServiceInfo, action: str, body: dict[str, Any] | None = None) -> dict[str, Any]:
    """Call one of the service's own actions (status, deploy, shutdown), with its token."""
    request = urllib.request.Request(
        f"{info.url}/_sfn-mlops/{action}",
        data=json.dumps(body or {}).encode(),
        headers={
            "Content-Type": "application/json",
            TOKEN_HEADER: KeyStore(info.workspace).service_token(),
        },
        method="POST",
    )
    try:
        with urllib.request.urlopen(request, timeout=600) as response:  # noqa: S310 - loopback
            result: dict[str, Any] = json.loads(response.read())
            return result
    except urllib.error.HTTPError as err:
        detail = json.loads(err.read() or b"{}")
        raise ServiceError(detail.get("message") or str(err)) from err
    except OSError as err:
        raise ServiceError(f"the local service at {info.url} did not answer: {err}") from err


def stop(workspace: Path, timeout: float = STOP_TIMEOUT_SECONDS) -> ServiceInfo | None:
    """Stop the workspace's service (what runs there is stopped too); None if none ran."""
    info = find(workspace)
    if info is None:
        return None
    try:
        admin(info, "shutdown")
    except ServiceError:
        os.kill(info.pid, signal.SIGTERM)
    deadline = time.monotonic() + timeout
    while _lock_held(workspace) and time.monotonic() < deadline:  # the lock dies with it
        time.sleep(0.05)
    if _lock_held(workspace) and pid_alive(info.pid):
        os.kill(info.pid, signal.SIGKILL)
    return info
