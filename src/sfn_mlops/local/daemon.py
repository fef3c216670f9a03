"""The local cloud's service process: one per workspace, owning everything that runs there.

Started on demand by ``sfn-mlops`` (``control.ensure_running``), as Gradle's and Bazel's daemons
are, it holds an exclusive lock on ``service.lock`` for its whole life, so two services can never
run for one workspace, and records its pid and port in ``service.json``. Executions, jobs and
Lambda workers belong to it and outlive the command that started them. It stops itself after
``idle_timeout`` seconds with no request and nothing running. At start it cleans up after a
predecessor that died (``kill -9``): what was left running is killed and marked failed.
"""

from __future__ import annotations

import argparse
import fcntl
import hashlib
import json
import logging
import os
import signal
import sys
import threading
import time
from pathlib import Path
from typing import IO, Any

from sfn_mlops import settings
from sfn_mlops.local.cloud import LocalCloud
from sfn_mlops.local.credentials import CREDENTIAL_VARIABLES
from sfn_mlops.local.errors import AwsError

SERVICE_FILE = "service.json"
LOCK_FILE = "service.lock"
LOG_FILE = Path("logs") / "service.log"
IDLE_CHECK_SECONDS = 1.0

log = logging.getLogger("sfn_mlops.local.daemon")


def hold_lock(root: Path) -> IO[bytes] | None:
    """The workspace's service lock, or None when another process holds it."""
    root.mkdir(parents=True, exist_ok=True)
    handle = open(root / LOCK_FILE, "a+b")  # noqa: SIM115 - held for the process's life
    try:
        fcntl.flock(handle, fcntl.LOCK_EX | fcntl.LOCK_NB)
    except BlockingIOError:
        handle.close()
        return None
    return handle


def code_stamp() -> str:
    """Which code a service runs: the package's files, by name, size and modification time.

    A service started before the code changed (a ``git pull``, an edit) is replaced by the next
    command that finds it idle, so nobody debugs yesterday's service.
    """
    root = Path(__file__).resolve().parents[1]
    digest = hashlib.sha256()
    for path in sorted(root.rglob("*.py")):
        info = path.stat()
        digest.update(f"{path.relative_to(root)}:{info.st_size}:{info.st_mtime_ns}\n".encode())
    return digest.hexdigest()[:16]


def write_json_atomic(path: Path, content: dict[str, Any]) -> None:
    temp = path.with_suffix(f".{os.getpid()}.tmp")
    temp.write_text(json.dumps(content, indent=2))
    os.replace(temp, path)


class Service:
    """The process body: the HTTP server, the admin actions, crash recovery and idle shutdown."""

    def __init__(self, root: Path, *, idle_timeout: float, port: int = 0) -> None:
        self.root = root
        self.idle_timeout = idle_timeout
        self.port = port
        self.started = time.time()
        self.cloud = LocalCloud(root)
        self._stop = threading.Event()
        self._deploy_lock = threading.Lock()
        self.server: Any = None

    # lifecycle -------------------------------------------------------------------------------
    def run(self) -> int:
        lock = hold_lock(self.root)
        if lock is None:
            log.info("another service already runs for %s; this one exits", self.root)
            return 0
        try:
            self._serve()
        finally:
            (self.root / SERVICE_FILE).unlink(missing_ok=True)
            lock.close()
        return 0

    def _serve(self) -> None:
        from sfn_mlops.local.server import LocalServer

        self.server = LocalServer(self.cloud, port=self.port, admin=self._admin_actions())
        for name in CREDENTIAL_VARIABLES:  # whatever the starting command had: not ours
            os.environ.pop(name, None)
        os.environ.update(  # what the service calls itself with (deploy acts as the user)
            AWS_ENDPOINT_URL=self.server.url,
            **self.cloud.credentials.admin().environment(),  # minted on the first start
            AWS_DEFAULT_REGION=self.cloud.region,
            AWS_EC2_METADATA_DISABLED="true",
        )
        self._recover()
        self.server.start()
        write_json_atomic(
            self.root / SERVICE_FILE,
            {
                "pid": os.getpid(),
                "port": self.server.port,
                "started": self.started,
                "code": code_stamp(),
            },
        )
        log.info("serving %s on %s (pid %d)", self.root, self.server.url, os.getpid())
        threading.Thread(target=self._prewarm, name="prewarm", daemon=True).start()
        while not self._stop.wait(IDLE_CHECK_SECONDS):
            if not (self.root / SERVICE_FILE).is_file():
                log.warning(
                    "%s was removed: stopping what runs and exiting", self.root / SERVICE_FILE
                )
                break
            try:
                idle = self._idle_for()
            except Exception:  # noqa: BLE001 - a failed check must not end the service
                log.exception("idle check failed")
                continue
            if idle > self.idle_timeout:
                log.info("idle for %.0f s with nothing running: stopping", idle)
                break
        self._shutdown()

    def request_stop(self, *_: Any) -> None:
        self._stop.set()

    def _idle_for(self) -> float:
        if self._running_executions() or self._running_jobs() or self._serving_endpoints():
            self.server.gateway.last_request = time.monotonic()
            return 0.0
        return time.monotonic() - float(self.server.gateway.last_request)

    def _recover(self) -> None:
        """What a predecessor that died left running is killed and marked failed, with why."""
        from sfn_mlops.local import jobs
        from sfn_mlops.local.jobs import tuning

        for name in [*tuning.recover_orphans(self.cloud), *jobs.recover_orphans(self.cloud)]:
            log.warning("job %s was running when the previous service died: marked Failed", name)
        for key in self.cloud.service("sagemaker").recover_monitoring():  # after their jobs
            log.warning("monitoring execution %s was running when the service died: Failed", key)
        for arn in self.cloud.service("sfn").recover():
            log.warning("execution %s was running when the previous service died: FAILED", arn)
        for name, done in self.cloud.service("sagemaker").recover_endpoints():
            log.warning("endpoint %s belonged to the previous service: %s", name, done)
        self.cloud.service("cloudwatch").start()  # alarms are evaluated from the start
        self.cloud.service("eventbridge").start()  # and schedule rules fire
        self.cloud.service("sagemaker").start_monitoring()  # and monitoring schedules

    def _prewarm(self) -> None:
        """Pay for the engine's imports and the workers' start while nobody waits for them."""
        try:
            import sfn_mlops.local.engine  # noqa: F401
            from sfn_mlops.local import jobs

            jobs.prewarm(self.cloud)
            self.cloud.service("lambda").prewarm()
        except Exception:  # noqa: BLE001 - prewarming is an optimisation, never a failure
            log.exception("prewarm failed")

    def _shutdown(self) -> None:
        from sfn_mlops.local import jobs
        from sfn_mlops.local.jobs import tuning

        stopped = self.cloud.service("sfn").stop_all(
            "SfnMlops.ServiceStopped", "the local service stopped while the execution ran"
        )
        tuning.shutdown_all(self.cloud)  # first: it would start more training jobs
        self.cloud.service("sagemaker").stop_monitoring()  # it would start processing jobs
        jobs.shutdown_all(self.cloud)
        self.cloud.service("sagemaker").shutdown_endpoints()
        self.cloud.service("cloudwatch").shutdown()
        self.cloud.service("eventbridge").shutdown()
        self.cloud.service("lambda").shutdown()
        self.server.stop()
        log.info("stopped (%d executions aborted)", len(stopped))

    # admin actions ---------------------------------------------------------------------------
    def _admin_actions(self) -> dict[str, Any]:
        return {
            "status": self.status,
            "deploy": self.deploy,
            "shutdown": self._shutdown_action,
            "monitor-run-now": self.monitor_run_now,
        }

    def monitor_run_now(self, body: dict[str, Any]) -> dict[str, Any]:
        """One execution of a monitoring schedule, now, under its own name (local only: in
        SageMaker a one-time ``NOW`` schedule does this, under a name of its own). An optional
        ``window_start`` (an offset such as ``-PT10M``, as ScheduleConfig's
        DataAnalysisStartTime) narrows the window to the traffic since then."""
        from sfn_mlops.local.jobs import monitoring

        sagemaker = self.cloud.service("sagemaker")
        schedule = sagemaker._schedule(str(body.get("schedule", "")))
        if body.get("window_start") is not None:
            schedule = sagemaker.narrowed(schedule, str(body["window_start"]))
        scheduled = time.time()
        execution = monitoring.start_execution(self.cloud, schedule, scheduled)
        return {
            "ScheduledTime": scheduled,
            "ProcessingJobName": execution.get("ProcessingJobName"),
            "Status": execution.get("Status"),
        }

    def status(self, _: dict[str, Any]) -> dict[str, Any]:
        return {
            "pid": os.getpid(),
            "port": self.server.port,
            "workspace": str(self.root),
            "started": self.started,
            "uptime": time.time() - self.started,
            "time_scale": self.cloud.time_scale,
            "idle_timeout": self.idle_timeout,
            "executions": self._running_executions(),
            "jobs": self._running_jobs(),
            "endpoints": self._endpoint_ports(),
        }

    def deploy(self, body: dict[str, Any]) -> dict[str, Any]:
        """``sam deploy`` of template.yaml into this workspace; one at a time, idempotent."""
        from sfn_mlops.local.deploy import deploy
        from sfn_mlops.template import TemplateError

        project = Path(body.get("project") or settings.project_root())
        with self._deploy_lock:
            try:
                deployment = deploy(self.cloud, project)
            except (TemplateError, FileNotFoundError, ValueError) as err:
                raise AwsError("ValidationError", str(err)) from err
        threading.Thread(target=self.cloud.service("lambda").prewarm, daemon=True).start()
        return {
            "bucket": deployment.bucket,
            "state_machine_arn": deployment.state_machine_arn,
            "code_prefix": deployment.code_prefix,
            "state_machines": deployment.state_machines,
        }

    def _shutdown_action(self, _: dict[str, Any]) -> dict[str, Any]:
        self._stop.set()
        return {"stopping": os.getpid()}

    def _running_executions(self) -> list[str]:
        return list(self.cloud.service("sfn").running())

    def _endpoint_ports(self) -> dict[str, int]:
        """Each serving endpoint's own port (plain HTTP ``/invocations`` on 127.0.0.1)."""
        if "endpoint_hosts" not in vars(self.cloud):
            return {}
        hosts = self.cloud.endpoint_hosts
        return {name: port for name in hosts.serving() if (port := hosts.port(name))}

    def _serving_endpoints(self) -> list[str]:
        """Endpoints InService (or being created or updated) keep the service up."""
        return list(self.cloud.service("sagemaker").active_endpoints())

    def _running_jobs(self) -> list[str]:
        from sfn_mlops.local import jobs

        return [
            doc["Name"]
            for kind in jobs.KINDS
            for doc in self.cloud.metadata.list(kind)
            if doc["Status"] == "InProgress"
        ]


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m sfn_mlops.local.daemon")
    parser.add_argument("--workspace", required=True)
    parser.add_argument("--idle-timeout", type=float, default=settings.idle_timeout())
    parser.add_argument("--port", type=int, default=0)
    args = parser.parse_args(argv)
    root = Path(args.workspace).resolve()
    (root / LOG_FILE).parent.mkdir(parents=True, exist_ok=True)
    logging.basicConfig(
        filename=root / LOG_FILE,
        level=logging.INFO,
        format="%(asctime)s %(levelname)s %(name)s [%(threadName)s] %(message)s",
    )
    logging.getLogger("botocore").setLevel(logging.WARNING)
    service = Service(root, idle_timeout=args.idle_timeout, port=args.port)
    signal.signal(signal.SIGTERM, service.request_stop)
    signal.signal(signal.SIGINT, service.request_stop)
    return service.run()


if __name__ == "__main__":
    code = main()
    sys.stdout.flush()
    os._exit(code)
