"""One job's run, from Downloading to a terminal status; the kinds fill in inputs, command and
outputs (processing.py, training.py).

The thread that runs the job is the only writer of its state in the metadata store; a stop
request only writes ``StopRequested`` (or calls ``wake``), which the watchdog picks up. The
watchdog enforces MaxRuntimeInSeconds and stop requests: SIGTERM to the job's process group,
SIGKILL after a grace period. When the job ends, whatever its status, its outputs are moved
into the object store, the failure reason and exit message are read, and its folder is emptied
but for the log, all before the terminal status is written: a job seen as ended leaves no
scratch behind.

Around the container, what SageMaker does as the job's role is decided for that role
(``aws_calls``): the image pull after the inputs are in (a denial fails the job), the log
stream when the container starts and the instance metrics when it has ended (a denial of
either is written to the job's log; the job goes on).
"""

from __future__ import annotations

import os
import shutil
import signal
import threading
import time
import traceback
from collections.abc import Sequence
from pathlib import Path
from typing import Any, BinaryIO

from sfn_mlops import settings
from sfn_mlops.local.errors import AwsError
from sfn_mlops.local.iam import Need
from sfn_mlops.local.jobs import aws_calls
from sfn_mlops.local.jobs import launch as launching
from sfn_mlops.local.jobs.paths import LOG_NAME, OPT_ML, job_dir, remove_scratch, reroot
from sfn_mlops.local.jobs.state import (
    DEFAULT_MAX_RUNTIME,
    FAILURE_REASON_LIMIT,
    WORDING,
    JobFailed,
    close_transitions,
    now,
    transition,
)
from sfn_mlops.local.objectstore import parse_s3_uri
from sfn_mlops.local.processes import Usage, signal_group

WATCH_SECONDS = 0.1  # how often the watchdog checks MaxRuntimeInSeconds and stop requests
STOP_GRACE_SECONDS = 5.0  # SIGTERM, then SIGKILL after this (SageMaker waits 120 s)
FOLDERS = ("input/config", "input/data", "model", "output/data", "code")


def read_limited(path: Path) -> str | None:
    """The first KB of a file the container wrote, as SageMaker reads it; None if absent."""
    if not path.is_file():
        return None
    with open(path, "rb") as stream:
        data = stream.read(FAILURE_REASON_LIMIT * 4)
    return data.decode("utf-8", errors="replace").strip()[:FAILURE_REASON_LIMIT] or None


class Run:
    """Runs one job; subclasses know the job's kind."""

    def __init__(self, cloud: Any, kind: str, name: str, request: dict[str, Any]) -> None:
        self.cloud = cloud
        self.kind = kind
        self.name = name
        self.request = request
        self.wording = WORDING[kind]
        self.folder = job_dir(cloud, name)
        self.opt_ml = self.folder / OPT_ML
        self.log_path = self.folder / LOG_NAME
        self.finished = threading.Event()
        self._wake = threading.Event()
        self._ended_by: str | None = None  # "stop", "timeout" or "shutdown"
        self._stop_here: str | None = None  # "stop" or "shutdown" when asked in this process
        self._started = 0.0
        self._transitions: list[dict[str, Any]] = []
        self._log: BinaryIO | None = None

    # hooks for the kinds ---------------------------------------------------------------------
    def download_inputs(self) -> None:
        raise NotImplementedError

    def launch(self) -> launching.Launch:
        raise NotImplementedError

    def upload_outputs(self, status: str) -> dict[str, Any]:
        """Upload what SageMaker uploads when the job ends with ``status``; return doc fields."""
        raise NotImplementedError

    def failure_written(self) -> str | None:
        """The failure reason the container wrote where SageMaker reads it for this kind."""
        return None

    def messages(self) -> dict[str, str]:
        return {}

    def image_uri(self) -> str:
        """The image SageMaker pulls for the job's container."""
        raise NotImplementedError

    # lifecycle ---------------------------------------------------------------------------------
    def wake(self, why: str = "stop") -> None:
        self._stop_here = why
        self._wake.set()

    def run(self) -> None:
        doc = self.cloud.metadata.get(self.kind, self.name) or {}
        self._transitions = list(doc.get("Transitions", []))
        try:
            self._execute()
        except JobFailed as failed:
            self._finish("Failed", failure=failed.reason)
        except Exception as exc:  # noqa: BLE001 - anything else is the platform's fault
            self.log(traceback.format_exc())
            self._finish("Failed", failure=f"PlatformError: {type(exc).__name__}: {exc}")
        finally:
            if self._log is not None:
                self._log.close()
            self.finished.set()

    def _execute(self) -> None:
        if self.folder.exists():
            shutil.rmtree(self.folder)
        for sub in FOLDERS:
            (self.opt_ml / sub).mkdir(parents=True, exist_ok=True)
        self._log = open(self.log_path, "ab", buffering=0)  # noqa: SIM115 - closed in run()
        self._started = now()
        self._progress("Downloading", "Downloading input data", StartTime=self._started)
        self.download_inputs()
        self._pull_image()
        launch = self.launch()
        if self._stop_requested():
            self._end_before_start()
            return
        self._progress("Training", self.wording.running)
        self._open_log_stream()
        code = self._run_process(launch)
        if self._ended_by == "shutdown":
            self._finish("Failed", failure=self._shutdown_reason())
        elif self._ended_by is not None:
            self._finish("Stopped", timed_out=self._ended_by == "timeout")
        elif code != 0:
            self._finish("Failed", failure=self.failure_written() or self._exit_reason(code))
        else:
            self._progress("Uploading", self.wording.uploading)
            self._finish("Completed")

    def _end_before_start(self) -> None:
        if self._stop_here == "shutdown":
            self._finish("Failed", failure=self._shutdown_reason())
        else:
            self._finish("Stopped")

    def _run_process(self, launch: launching.Launch) -> int:
        self.log(f"running: {' '.join(launch.argv)}  (cwd {launch.cwd})")
        assert self._log is not None
        proc = launching.start(launch, self._log, self.log_path)
        how = (
            "fork server" if isinstance(proc, launching.forkserver.ForkedProcess) else "subprocess"
        )
        self.log(f"started pid {proc.pid} ({how})")
        self._write(ChildPid=proc.pid, ChildStartTime=proc.start_time)
        started = time.monotonic()
        watchdog = threading.Thread(target=self._watch, args=(proc,), daemon=True)
        watchdog.start()
        try:
            code = proc.wait()
        finally:
            self._wake.set()
            watchdog.join()
            signal_group(proc.pid, signal.SIGKILL)  # what is left of the container's processes
        self.log(f"exited with code {code}")
        if proc.usage is not None:
            self._publish_instance_metrics(proc.usage, time.monotonic() - started)
        return code

    def _watch(self, proc: launching.JobProcess) -> None:
        """End the process on MaxRuntimeInSeconds or a stop request; SIGKILL after a grace."""
        limit = self.request.get("StoppingCondition", {}).get("MaxRuntimeInSeconds")
        deadline = self._started + float(limit or DEFAULT_MAX_RUNTIME)
        kill_at: float | None = None
        while proc.poll() is None:
            current = now()
            if kill_at is None:
                self._ended_by = self._why_end(current, deadline)
                if self._ended_by is not None:
                    self.log(f"stopping ({self._ended_by}): SIGTERM to the process group")
                    signal_group(proc.pid, signal.SIGTERM)
                    kill_at = current + STOP_GRACE_SECONDS
            elif current >= kill_at:
                signal_group(proc.pid, signal.SIGKILL)
            pause = WATCH_SECONDS if kill_at is not None else min(WATCH_SECONDS, deadline - current)
            self._wake.wait(max(0.0, pause))
            self._wake.clear()

    def _why_end(self, current: float, deadline: float) -> str | None:
        if self._stop_here == "shutdown":
            return "shutdown"
        if current >= deadline:
            return "timeout"
        if self._stop_requested():
            return "stop"
        return None

    def _stop_requested(self) -> bool:
        if self._stop_here:
            return True
        doc = self.cloud.metadata.get(self.kind, self.name)
        return bool(doc and doc.get("StopRequested"))

    def _exit_reason(self, code: int) -> str:
        how = f"was killed by signal {-code}" if code < 0 else f"exited with code {code}"
        return f"AlgorithmError: script {how}; see the log: {self.log_path}"

    def _shutdown_reason(self) -> str:
        return (
            f"PlatformError: the local service (pid {os.getpid()}) shut down while the job "
            f"ran; see the log: {self.log_path}"
        )

    # state ------------------------------------------------------------------------------------
    def log(self, line: str) -> None:
        if self._log is not None:
            stamp = time.strftime("%Y-%m-%dT%H:%M:%S", time.gmtime())
            self._log.write(f"[sfn-mlops {stamp}] {line.rstrip()}\n".encode())

    def _write(self, **fields: Any) -> None:
        self.cloud.metadata.update(self.kind, self.name, LastModifiedTime=now(), **fields)

    def _progress(self, secondary: str, message: str, **fields: Any) -> None:
        self.log(f"{secondary}: {message}" if self.wording.transitions else message)
        if self.wording.transitions:
            at = now()
            self._transitions = close_transitions(self._transitions, at)
            self._transitions.append(transition(secondary, message, at))
            fields.update(SecondaryStatus=secondary, Transitions=self._transitions)
        self._write(**fields)

    def _finish(self, status: str, *, failure: str | None = None, timed_out: bool = False) -> None:
        fields: dict[str, Any] = {}
        if status != "Failed":
            try:
                fields.update(self.upload_outputs(status))
            except JobFailed as failed:
                status, failure = "Failed", failed.reason
        fields.update(self.messages())
        secondary = "MaxRuntimeExceeded" if timed_out else status
        at = now()
        if self.wording.transitions:
            self._transitions = close_transitions(self._transitions, at)
            if status == "Stopped":
                self._transitions.append(transition("Stopping", self.wording.stopping(), at, at))
            message = self.wording.ended(secondary, failure)
            self._transitions.append(transition(secondary, message, at, at))
            fields.update(SecondaryStatus=secondary, Transitions=self._transitions)
        self.log(f"{status}" + (f": {failure}" if failure else ""))
        remove_scratch(self.folder)
        self._write(
            Status=status,
            FailureReason=failure,
            StartTime=self._started or at,
            EndTime=at,
            **fields,
        )

    # object store ------------------------------------------------------------------------------
    def download(self, uri: str, dest: Path) -> None:
        self.log(f"downloading {uri} -> {dest}")
        try:
            bucket, key = parse_s3_uri(uri)
            what = f"download data from {uri}"
            self._as_role("s3:ListBucket", f"arn:aws:s3:::{bucket}", what)
            self._as_role("s3:GetObject", f"arn:aws:s3:::{bucket}/{key}", what)
            self.cloud.objects.download_prefix(uri, dest)
        except AwsError as err:
            if err.code == "NoSuchKey":
                raise JobFailed(
                    f'UserError: No S3 objects found under S3 URL "{uri}" given in input data '
                    "source. Please ensure that the bucket exists and that objects exist under "
                    "that S3 prefix."
                ) from err
            raise JobFailed(f"UserError: cannot download {uri}: {err.message}") from err
        except ValueError as err:
            raise JobFailed(f"UserError: {err}") from err

    def _as_role(self, action: str, resource: str, what: str) -> None:
        """SageMaker moves a job's data as the job's RoleArn: a denial fails the job with a
        ClientError naming it, as SageMaker reports one."""
        denied = self._role_denial([Need(action, resource, what)])
        if denied is not None:
            raise JobFailed(f"ClientError: Failed to {what}. AccessDenied (403): {denied}")

    def _role_denial(self, wanted: Sequence[Need]) -> str | None:
        """AWS's message for the first of ``wanted`` the job's role may not; None if it may
        (or the job has no role)."""
        role = self.role_arn()
        if not role or not wanted:
            return None
        iam = self.cloud.authorization
        return iam.denial(iam.caller(role, "SageMaker"), wanted)  # type: ignore[no-any-return]

    # what SageMaker does as the role around the container (aws_calls) --------------------------
    def _pull_image(self) -> None:
        image = self.image_uri()
        denied = self._role_denial(aws_calls.image_pull(image))
        if denied is not None:
            raise JobFailed(f"{aws_calls.IMAGE_NOT_PULLED} Pulling {image}: AccessDenied: {denied}")

    def _open_log_stream(self) -> None:
        group, stream = aws_calls.log_stream(self.kind, self.name, now())
        wanted = aws_calls.log_delivery(group, stream, self.cloud.region, self.cloud.account)
        denied = self._role_denial(wanted)
        if denied is None:
            self.log(f"log stream (CloudWatch Logs in AWS): {group} {stream}")
        else:
            self.log(
                f"CloudWatch Logs refused the log stream {group} {stream}: the container's "
                f"output would not reach CloudWatch Logs in AWS (the job goes on): {denied}"
            )

    def _publish_instance_metrics(self, usage: Usage, seconds: float) -> None:
        request = aws_calls.instance_metrics(self.kind, self.name, usage, seconds, now())
        namespace = request["Namespace"]
        wanted = aws_calls.metrics_publication(namespace, self.cloud.region, self.cloud.account)
        denied = self._role_denial(wanted)
        if denied is not None:
            self.log(f"instance metrics not published to {namespace}: {denied}")
            return
        try:
            self.cloud.service("cloudwatch").record_metrics(request)
        except Exception as err:  # noqa: BLE001 - a job's metrics never decide how it ends
            self.log(f"instance metrics not published to {namespace}: {err!r}")
            return
        values = ", ".join(f"{d['MetricName']} {d['Value']:.1f}%" for d in request["MetricData"])
        self.log(f"instance metrics published to {namespace}: {values}")

    def upload_dir(self, source: Path, uri: str, *, move: bool = True) -> None:
        """Upload a folder; its files are moved, not copied (the folder is scratch)."""
        self.log(f"uploading {source} -> {uri}")
        try:
            bucket, key = parse_s3_uri(uri)
            self._as_role("s3:PutObject", f"arn:aws:s3:::{bucket}/{key}", f"upload to {uri}")
            self.cloud.objects.upload_dir(source, uri, move=move)
        except (AwsError, ValueError) as err:
            detail = err.message if isinstance(err, AwsError) else str(err)
            raise JobFailed(f"UserError: cannot upload to {uri}: {detail}") from err

    def upload_file(self, source: Path, uri: str) -> None:
        """Move a file the runner made (an archive) in as the object at ``uri``."""
        self.log(f"uploading {source} -> {uri}")
        try:
            bucket, key = parse_s3_uri(uri)
            self._as_role("s3:PutObject", f"arn:aws:s3:::{bucket}/{key}", f"upload {uri}")
            self.cloud.objects.move_file(bucket, key, source)
        except (AwsError, ValueError) as err:
            detail = err.message if isinstance(err, AwsError) else str(err)
            raise JobFailed(f"UserError: cannot upload to {uri}: {detail}") from err

    def role_arn(self) -> str:
        """The role the job's code calls AWS as: its ``RoleArn``."""
        return str(self.request.get("RoleArn") or "")

    def base_env(self) -> dict[str, str]:
        env = launching.default_env()
        if self.role_arn():  # the role's own keys, as SageMaker gives the container its role's
            env.update(self.cloud.credentials.for_role(self.role_arn(), "SageMaker").environment())
        for key, value in (self.request.get("Environment") or {}).items():
            env[key] = reroot(value, self.opt_ml)
        env["PYTHONUNBUFFERED"] = "1"
        env[settings.WORKSPACE_ENV] = str(self.cloud.root)
        return env
