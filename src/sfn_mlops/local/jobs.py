"""The local SageMaker job runner: SageMaker's container contract on one machine.

A job gets a folder ``<workspace>/jobs/<job name>/`` whose ``opt_ml/`` stands for ``/opt/ml``.
Every ``/opt/ml/...`` path of the request (input and output LocalPath, ContainerEntrypoint,
ContainerArguments, Environment values) is re-rooted under it. Inputs are copied from the object
store, the job's code runs as a subprocess in its own process group (stdout and stderr to
``job.log`` in the job folder), and outputs are uploaded back the way SageMaker uploads them.
Training runs in script mode with the ``SM_*`` variables and command-line hyperparameters the
SageMaker training toolkit sets.

A job runs in a background thread of the process that created it; its state is a document in the
metadata store, written as it moves (status, secondary status transitions, times, failure
reason), so every process of the workspace can follow it. The thread that runs the job is the
only writer of that state; a stop request only writes ``StopRequested``, which the runner's
watchdog picks up. If the process that owned a running job dies, the next describe marks the job
Failed with a PlatformError instead of leaving it InProgress forever.
"""

from __future__ import annotations

import atexit
import contextlib
import json
import os
import re
import shutil
import signal
import subprocess
import sys
import tarfile
import threading
import time
import traceback
from collections.abc import Iterable
from dataclasses import dataclass
from pathlib import Path
from typing import Any, BinaryIO

from sfn_mlops import settings
from sfn_mlops.local.errors import AwsError
from sfn_mlops.local.objectstore import parse_s3_uri
from sfn_mlops.local.processes import pid_alive

KIND_PROCESSING = "sagemaker:processing-job"
KIND_TRAINING = "sagemaker:training-job"

LOG_NAME = "job.log"
FAILURE_REASON_LIMIT = 1024  # SageMaker truncates FailureReason and ExitMessage at 1 KB.
WATCH_SECONDS = 0.1  # how often the watchdog checks MaxRuntimeInSeconds and stop requests
STOP_GRACE_SECONDS = 5.0  # SIGTERM, then SIGKILL after this (SageMaker waits 120 s)
DEFAULT_MAX_RUNTIME = 86400  # SageMaker's default StoppingCondition: one day
CURRENT_HOST = "algo-1"
SAGEMAKER_HP_PREFIX = "sagemaker_"  # the toolkit keeps these out of the user's hyperparameters

_OPT_ML = re.compile(r"(^|=)/opt/ml(?=/|$)")
_PYTHON = re.compile(r"^python(3(\.\d+)?)?$")

TERMINAL = frozenset({"Completed", "Failed", "Stopped"})


class JobFailed(Exception):
    """The job ends Failed with this reason (already prefixed with whose fault it is)."""

    def __init__(self, reason: str) -> None:
        super().__init__(reason)
        self.reason = reason[:FAILURE_REASON_LIMIT]


@dataclass(frozen=True)
class Launch:
    argv: list[str]
    env: dict[str, str]
    cwd: Path


# paths ------------------------------------------------------------------------------------------
def job_dir(cloud: Any, name: str) -> Path:
    return Path(cloud.jobs_dir) / name


def job_log_path(cloud: Any, name: str) -> Path:
    """Where the job's stdout and stderr are kept (``sfn-mlops jobs logs NAME`` reads it)."""
    return job_dir(cloud, name) / LOG_NAME


def reroot(value: str, opt_ml: Path) -> str:
    """Rewrite ``/opt/ml/...`` (alone, or after ``=`` as in ``--dir=/opt/ml/x``) under opt_ml."""
    return _OPT_ML.sub(lambda match: match.group(1) + str(opt_ml), value)


def local_command(command: Iterable[str], opt_ml: Path) -> list[str]:
    """The container command for this machine: paths re-rooted, ``python3`` -> this Python."""
    argv = [reroot(part, opt_ml) for part in command]
    if argv and _PYTHON.match(os.path.basename(argv[0])):
        argv[0] = sys.executable
    return argv


def _now() -> float:
    return time.time()


# the registry of jobs this process runs ---------------------------------------------------------
_RUNS: dict[tuple[str, str, str], _Run] = {}
_RUNS_LOCK = threading.Lock()
_SHUTTING_DOWN = threading.Event()
_ATEXIT_INSTALLED = False


def _key(cloud: Any, kind: str, name: str) -> tuple[str, str, str]:
    return (str(cloud.root), kind, name)


def _install_atexit() -> None:
    global _ATEXIT_INSTALLED
    with _RUNS_LOCK:
        if not _ATEXIT_INSTALLED:
            atexit.register(_abandon_all)
            _ATEXIT_INSTALLED = True


def _abandon_all() -> None:
    """At interpreter exit: end the jobs still running here, and say so in their state."""
    _SHUTTING_DOWN.set()
    with _RUNS_LOCK:
        runs = list(_RUNS.values())
    for run in runs:
        run.abandon()


# public API used by the SageMaker service --------------------------------------------------------
def new_job_doc(name: str, arn: str, request: dict[str, Any]) -> dict[str, Any]:
    now = _now()
    return {
        "Name": name,
        "Arn": arn,
        "Request": request,
        "Status": "InProgress",
        "SecondaryStatus": "Starting",
        "Transitions": [
            {"Status": "Starting", "StartTime": now, "StatusMessage": "Starting the training job"}
        ],
        "CreationTime": now,
        "LastModifiedTime": now,
        "StartTime": None,
        "EndTime": None,
        "FailureReason": None,
        "ExitMessage": None,
        "ModelArtifacts": None,
        "OwnerPid": os.getpid(),
        "ChildPid": None,
        "StopRequested": None,
    }


def submit(cloud: Any, kind: str, doc: dict[str, Any]) -> None:
    """Store the new job (``metadata.AlreadyExists`` if the name is taken) and start it."""
    cloud.metadata.create(kind, doc["Name"], doc)
    run_cls = _TrainingRun if kind == KIND_TRAINING else _ProcessingRun
    run = run_cls(cloud, kind, doc["Name"], doc["Request"])
    _install_atexit()
    with _RUNS_LOCK:
        _RUNS[_key(cloud, kind, doc["Name"])] = run
    threading.Thread(target=run.run, name=f"sagemaker-job-{doc['Name']}", daemon=True).start()


def request_stop(cloud: Any, kind: str, name: str) -> None:
    """Ask the runner to stop the job: it signals the process group and ends the job Stopped."""
    cloud.metadata.update(kind, name, StopRequested=_now())
    with _RUNS_LOCK:
        run = _RUNS.get(_key(cloud, kind, name))
    if run is not None:
        run.wake()


def refresh(cloud: Any, kind: str, doc: dict[str, Any]) -> dict[str, Any]:
    """The job's state, marked Failed if the process that ran it is gone."""
    if doc["Status"] in TERMINAL or _owner_alive(cloud, kind, doc):
        return doc
    current = cloud.metadata.get(kind, doc["Name"]) or doc
    if current["Status"] in TERMINAL:  # it finished while we looked
        return current
    _kill_orphan(current.get("ChildPid"), job_dir(cloud, doc["Name"]))
    reason = (
        f"PlatformError: the process that ran this job (pid {current['OwnerPid']}) exited "
        f"before the job finished; see the log: {job_log_path(cloud, doc['Name'])}"
    )
    now = _now()
    transitions = _close_transitions(current["Transitions"], now)
    transitions.append(_transition("Failed", f"Training job failed. Reason: {reason}", now, now))
    return cloud.metadata.update(
        kind,
        doc["Name"],
        Status="Failed",
        SecondaryStatus="Failed",
        Transitions=transitions,
        FailureReason=reason[:FAILURE_REASON_LIMIT],
        EndTime=now,
        LastModifiedTime=now,
    )


def wait_for_job(cloud: Any, kind: str, name: str, timeout: float) -> dict[str, Any]:
    """Block until the job is terminal (no polling for jobs this process runs); return its doc."""
    deadline = _now() + timeout
    with _RUNS_LOCK:
        run = _RUNS.get(_key(cloud, kind, name))
    if run is not None:
        run.finished.wait(timeout)
    while True:
        doc = cloud.metadata.get(kind, name)
        if doc is None:
            raise KeyError(f"{kind} {name}")
        doc = refresh(cloud, kind, doc)
        if doc["Status"] in TERMINAL:
            return doc
        if _now() >= deadline:
            raise TimeoutError(f"{kind} {name} is still {doc['Status']} after {timeout} s")
        time.sleep(WATCH_SECONDS)


def _owner_alive(cloud: Any, kind: str, doc: dict[str, Any]) -> bool:
    pid = int(doc["OwnerPid"])
    if pid == os.getpid():
        with _RUNS_LOCK:
            return _key(cloud, kind, doc["Name"]) in _RUNS
    return pid_alive(pid)


def _kill_orphan(pid: int | None, folder: Path) -> None:
    """Kill the job's process group if its leader still runs in the job folder (Linux /proc).

    The check keeps a reused pid from being killed; elsewhere the orphan is left running.
    """
    if not pid:
        return
    try:
        cwd = os.readlink(f"/proc/{pid}/cwd")
    except OSError:
        return
    if Path(cwd) == folder or Path(cwd).is_relative_to(folder):
        _signal_group(int(pid), signal.SIGKILL)


def _transition(status: str, message: str, start: float, end: float | None = None) -> dict:
    item: dict[str, Any] = {"Status": status, "StartTime": start, "StatusMessage": message}
    if end is not None:
        item["EndTime"] = end
    return item


def _close_transitions(transitions: list[dict[str, Any]], now: float) -> list[dict[str, Any]]:
    closed = [dict(item) for item in transitions]
    if closed and "EndTime" not in closed[-1]:
        closed[-1]["EndTime"] = now
    return closed


def _signal_group(pid: int, sig: int) -> None:
    with contextlib.suppress(ProcessLookupError, PermissionError):
        os.killpg(pid, sig)


def _read_limited(path: Path) -> str | None:
    if not path.is_file():
        return None
    with open(path, "rb") as stream:
        data = stream.read(FAILURE_REASON_LIMIT * 4)
    return data.decode("utf-8", errors="replace").strip()[:FAILURE_REASON_LIMIT] or None


def _has_files(folder: Path) -> bool:
    return folder.is_dir() and any(p.is_file() for p in folder.rglob("*"))


# one job ---------------------------------------------------------------------------------------
class _Run:
    """Runs one job from Downloading to a terminal status; subclasses know the job's kind."""

    def __init__(self, cloud: Any, kind: str, name: str, request: dict[str, Any]) -> None:
        self.cloud = cloud
        self.kind = kind
        self.name = name
        self.request = request
        self.folder = job_dir(cloud, name)
        self.opt_ml = self.folder / "opt_ml"
        self.log_path = self.folder / LOG_NAME
        self.finished = threading.Event()
        self._wake = threading.Event()
        self._ended_by: str | None = None  # "stop" or "timeout" when the runner ended the process
        self._stop_here = False
        self._started = 0.0
        doc = cloud.metadata.get(kind, name) or {}
        self._transitions: list[dict[str, Any]] = list(doc.get("Transitions", []))
        self._log: BinaryIO | None = None

    # hooks for the kinds ---------------------------------------------------------------------
    def download_inputs(self) -> None:
        raise NotImplementedError

    def launch(self) -> Launch:
        raise NotImplementedError

    def upload_outputs(self, status: str) -> dict[str, Any]:
        """Upload what SageMaker uploads when the job ends with ``status``; return doc fields."""
        raise NotImplementedError

    def messages(self) -> dict[str, str]:
        return {}

    # lifecycle ---------------------------------------------------------------------------------
    def wake(self) -> None:
        self._stop_here = True
        self._wake.set()

    def run(self) -> None:
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
            with _RUNS_LOCK:
                _RUNS.pop(_key(self.cloud, self.kind, self.name), None)
            self.finished.set()

    def _execute(self) -> None:
        if self.folder.exists():
            shutil.rmtree(self.folder)
        for sub in ("input/config", "input/data", "model", "output/data", "code"):
            (self.opt_ml / sub).mkdir(parents=True, exist_ok=True)
        self._log = open(self.log_path, "ab", buffering=0)  # noqa: SIM115 - closed in run()
        self._started = _now()
        self._progress("Downloading", "Downloading input data", StartTime=self._started)
        self.download_inputs()
        launch = self.launch()
        if self._stop_requested():
            self._finish("Stopped")
            return
        self._progress("Training", "Training image download completed. Training in progress.")
        code = self._run_process(launch)
        if self._ended_by is not None:
            self._finish("Stopped", timed_out=self._ended_by == "timeout")
        elif code != 0:
            self._finish("Failed", failure=self._failure_reason(code))
        else:
            self._progress("Uploading", "Uploading generated training model")
            self._finish("Completed")

    def _run_process(self, launch: Launch) -> int:
        self.log(f"running: {' '.join(launch.argv)}  (cwd {launch.cwd})")
        try:
            proc = subprocess.Popen(
                launch.argv,
                cwd=launch.cwd,
                env=launch.env,
                stdin=subprocess.DEVNULL,
                stdout=self._log,
                stderr=subprocess.STDOUT,
                start_new_session=True,
            )
        except OSError as exc:
            raise JobFailed(f"UserError: cannot start {launch.argv[0]!r}: {exc}") from exc
        self._write(ChildPid=proc.pid)
        watchdog = threading.Thread(target=self._watch, args=(proc,), daemon=True)
        watchdog.start()
        code = proc.wait()
        self._wake.set()
        watchdog.join()
        _signal_group(proc.pid, signal.SIGKILL)  # what is left of the container's processes
        self.log(f"exited with code {code}")
        return code

    def _watch(self, proc: subprocess.Popen[bytes]) -> None:
        """End the process on MaxRuntimeInSeconds or a stop request; SIGKILL after a grace."""
        limit = self.request.get("StoppingCondition", {}).get("MaxRuntimeInSeconds")
        deadline = self._started + float(limit or DEFAULT_MAX_RUNTIME)
        kill_at: float | None = None
        while proc.poll() is None:
            now = _now()
            if kill_at is None:
                if now >= deadline:
                    self._ended_by = "timeout"
                elif self._stop_requested():
                    self._ended_by = "stop"
                if self._ended_by is not None:
                    self.log(f"stopping ({self._ended_by}): SIGTERM to the process group")
                    _signal_group(proc.pid, signal.SIGTERM)
                    kill_at = now + STOP_GRACE_SECONDS
            elif now >= kill_at:
                _signal_group(proc.pid, signal.SIGKILL)
            pause = WATCH_SECONDS if kill_at is not None else min(WATCH_SECONDS, deadline - now)
            self._wake.wait(max(0.0, pause))
            self._wake.clear()

    def _stop_requested(self) -> bool:
        if self._stop_here:
            return True
        doc = self.cloud.metadata.get(self.kind, self.name)
        return bool(doc and doc.get("StopRequested"))

    def _failure_reason(self, code: int) -> str:
        written = _read_limited(self.opt_ml / "output" / "failure")
        if written:
            return written
        how = f"was killed by signal {-code}" if code < 0 else f"exited with code {code}"
        return f"AlgorithmError: script {how}; see the log: {self.log_path}"

    # state ------------------------------------------------------------------------------------
    def log(self, line: str) -> None:
        if self._log is not None:
            stamp = time.strftime("%Y-%m-%dT%H:%M:%S", time.gmtime())
            self._log.write(f"[sfn-mlops {stamp}] {line.rstrip()}\n".encode())

    def _write(self, **fields: Any) -> None:
        if _SHUTTING_DOWN.is_set():
            return  # abandon() has the last word
        self.cloud.metadata.update(self.kind, self.name, LastModifiedTime=_now(), **fields)

    def _progress(self, secondary: str, message: str, **fields: Any) -> None:
        now = _now()
        self._transitions = _close_transitions(self._transitions, now)
        self._transitions.append(_transition(secondary, message, now))
        self.log(f"{secondary}: {message}")
        self._write(SecondaryStatus=secondary, Transitions=self._transitions, **fields)

    def _finish(self, status: str, *, failure: str | None = None, timed_out: bool = False) -> None:
        fields: dict[str, Any] = {}
        if status != "Failed":
            try:
                fields.update(self.upload_outputs(status))
            except JobFailed as failed:
                status, failure = "Failed", failed.reason
        fields.update(self.messages())
        secondary = "MaxRuntimeExceeded" if timed_out else status
        message = {
            "Completed": "Training job completed",
            "Stopped": "Training job stopped",
            "MaxRuntimeExceeded": "Training job exceeded MaxRuntimeInSeconds provided",
        }.get(secondary, f"Training job failed. Reason: {failure}")
        now = _now()
        self._transitions = _close_transitions(self._transitions, now)
        if status == "Stopped":
            self._transitions.append(_transition("Stopping", "Stopping the training job", now, now))
        self._transitions.append(_transition(secondary, message, now, now))
        self.log(f"{status}" + (f": {failure}" if failure else ""))
        self._write(
            Status=status,
            SecondaryStatus=secondary,
            Transitions=self._transitions,
            FailureReason=failure,
            StartTime=self._started or now,
            EndTime=now,
            **fields,
        )

    def abandon(self) -> None:
        """The owning process is exiting: kill the job and record why it failed."""
        doc = self.cloud.metadata.get(self.kind, self.name)
        if doc and doc.get("ChildPid"):
            _signal_group(int(doc["ChildPid"]), signal.SIGKILL)
        if doc is None or doc["Status"] in TERMINAL:
            return
        now = _now()
        reason = (
            f"PlatformError: the process that ran this job (pid {os.getpid()}) exited before "
            f"the job finished; see the log: {self.log_path}"
        )
        self.cloud.metadata.update(
            self.kind,
            self.name,
            Status="Failed",
            SecondaryStatus="Failed",
            FailureReason=reason,
            EndTime=now,
            LastModifiedTime=now,
        )

    # object store ------------------------------------------------------------------------------
    def download(self, uri: str, dest: Path) -> None:
        self.log(f"downloading {uri} -> {dest}")
        try:
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

    def upload_dir(self, source: Path, uri: str) -> None:
        self.log(f"uploading {source} -> {uri}")
        try:
            self.cloud.objects.upload_dir(source, uri)
        except AwsError as err:
            raise JobFailed(f"UserError: cannot upload to {uri}: {err.message}") from err

    def upload_file(self, source: Path, uri: str) -> None:
        self.log(f"uploading {source} -> {uri}")
        try:
            bucket, key = parse_s3_uri(uri)
            self.cloud.objects.put_file(bucket, key, source)
        except (AwsError, ValueError) as err:
            detail = err.message if isinstance(err, AwsError) else str(err)
            raise JobFailed(f"UserError: cannot upload to {uri}: {detail}") from err

    def base_env(self) -> dict[str, str]:
        env = dict(os.environ)
        # A container has its cores to itself; here jobs share them with everything else, and
        # OpenMP's spinning waits stalled 2-thread XGBoost training from 0.2 s to 42 s.
        env.setdefault("OMP_WAIT_POLICY", "PASSIVE")
        for key, value in (self.request.get("Environment") or {}).items():
            env[key] = reroot(value, self.opt_ml)
        env["PYTHONUNBUFFERED"] = "1"
        env[settings.WORKSPACE_ENV] = str(self.cloud.root)
        return env


class _ProcessingRun(_Run):
    def download_inputs(self) -> None:
        for item in self.request.get("ProcessingInputs", []):
            s3 = item["S3Input"]
            self.download(s3["S3Uri"], Path(reroot(s3["LocalPath"], self.opt_ml)))
        for item in self._outputs():
            Path(reroot(item["S3Output"]["LocalPath"], self.opt_ml)).mkdir(
                parents=True, exist_ok=True
            )

    def launch(self) -> Launch:
        app = self.request["AppSpecification"]
        command = list(app.get("ContainerEntrypoint", [])) + list(app.get("ContainerArguments", []))
        return Launch(local_command(command, self.opt_ml), self.base_env(), self.folder)

    def _outputs(self) -> list[dict[str, Any]]:
        return list((self.request.get("ProcessingOutputConfig") or {}).get("Outputs", []))

    def upload_outputs(self, status: str) -> dict[str, Any]:
        if status != "Completed":
            return {}
        for item in self._outputs():
            s3 = item["S3Output"]
            self.upload_dir(Path(reroot(s3["LocalPath"], self.opt_ml)), s3["S3Uri"])
        return {}

    def messages(self) -> dict[str, str]:
        message = _read_limited(self.opt_ml / "output" / "message")
        return {"ExitMessage": message} if message else {}


def decode_hyperparameters(raw: dict[str, str]) -> dict[str, Any]:
    """Each value JSON-decoded when it is JSON, as the training toolkit reads them."""
    decoded: dict[str, Any] = {}
    for key, value in raw.items():
        try:
            decoded[key] = json.loads(value)
        except (TypeError, ValueError):
            decoded[key] = value
    return decoded


def to_cmd_args(hyperparameters: dict[str, Any]) -> list[str]:
    """``--key value`` pairs in key order, as the training toolkit's ``to_cmd_args``."""
    args: list[str] = []
    for key in sorted(hyperparameters):
        value = hyperparameters[key]
        if isinstance(value, dict):
            value = ",".join(f"{k}={v}" for k, v in sorted(value.items()))
        args += [f"--{key}" if len(key) > 1 else f"-{key}", str(value)]
    return args


def _cpu_count() -> int:
    if hasattr(os, "sched_getaffinity"):
        return len(os.sched_getaffinity(0)) or 1
    return os.cpu_count() or 1


def _env_value(value: Any) -> str:
    if isinstance(value, str):
        return value
    return json.dumps(value, sort_keys=True, separators=(",", ":"))


class _TrainingRun(_Run):
    def _channels(self) -> list[dict[str, Any]]:
        return list(self.request.get("InputDataConfig", []))

    def download_inputs(self) -> None:
        for channel in self._channels():
            uri = channel["DataSource"]["S3DataSource"]["S3Uri"]
            self.download(uri, self.opt_ml / "input" / "data" / channel["ChannelName"])
        self._write_config()

    def _input_data_config(self) -> dict[str, Any]:
        mode = self.request["AlgorithmSpecification"].get("TrainingInputMode", "File")
        config = {}
        for channel in self._channels():
            source = channel["DataSource"]["S3DataSource"]
            entry = {
                "TrainingInputMode": channel.get("InputMode", mode),
                "S3DistributionType": source.get("S3DataDistributionType", "FullyReplicated"),
                "RecordWrapperType": channel.get("RecordWrapperType", "None"),
            }
            if "ContentType" in channel:
                entry["ContentType"] = channel["ContentType"]
            config[channel["ChannelName"]] = entry
        return config

    def _resource_config(self) -> dict[str, Any]:
        instance_type = (self.request.get("ResourceConfig") or {}).get("InstanceType", "local")
        return {
            "current_host": CURRENT_HOST,
            "current_instance_type": instance_type,
            "current_group_name": "homogeneousCluster",
            "hosts": [CURRENT_HOST],
            "instance_groups": [
                {
                    "instance_group_name": "homogeneousCluster",
                    "instance_type": instance_type,
                    "hosts": [CURRENT_HOST],
                }
            ],
            "network_interface_name": "eth0",
        }

    def _write_config(self) -> None:
        config = self.opt_ml / "input" / "config"
        files = {
            "hyperparameters.json": self.request.get("HyperParameters") or {},
            "inputdataconfig.json": self._input_data_config(),
            "resourceconfig.json": self._resource_config(),
        }
        for name, content in files.items():
            (config / name).write_text(json.dumps(content, indent=2))

    def _fetch_code(self, submit_dir: str) -> None:
        """The submit directory (a tar.gz, or a prefix of files) into ``opt_ml/code``."""
        code = self.opt_ml / "code"
        if not submit_dir.startswith("s3://"):
            raise JobFailed(
                f"UserError: sagemaker_submit_directory {submit_dir!r} must be an s3:// URI"
            )
        if not submit_dir.endswith((".tar.gz", ".tgz")):
            self.download(submit_dir, code)
            return
        self.log(f"extracting {submit_dir} -> {code}")
        try:
            archive = self.cloud.objects.head(*parse_s3_uri(submit_dir)).path
            with tarfile.open(archive, "r:*") as tar:
                tar.extractall(code, filter="data")
        except AwsError as err:
            raise JobFailed(f"UserError: cannot download {submit_dir}: {err.message}") from err
        except (tarfile.TarError, OSError) as err:
            raise JobFailed(f"UserError: cannot extract {submit_dir}: {err}") from err

    def _script(self, hps: dict[str, Any]) -> tuple[str, str]:
        program, submit_dir = hps.get("sagemaker_program"), hps.get("sagemaker_submit_directory")
        if not program or not submit_dir:
            raise JobFailed(
                "UserError: the local runtime runs the XGBoost image in script mode; set "
                "sagemaker_program/sagemaker_submit_directory (JSON-encoded hyperparameters, "
                'e.g. "\\"train.py\\"" and "\\"s3://bucket/code/sourcedir.tar.gz\\"")'
            )
        return str(program), str(submit_dir)

    def launch(self) -> Launch:
        hps = decode_hyperparameters(self.request.get("HyperParameters") or {})
        user_hps = {k: v for k, v in hps.items() if not k.startswith(SAGEMAKER_HP_PREFIX)}
        algorithm = self.request["AlgorithmSpecification"]
        env = self.base_env()
        env.update(self._sm_env(user_hps))
        code = self.opt_ml / "code"
        if algorithm.get("ContainerEntrypoint"):
            if hps.get("sagemaker_submit_directory"):
                self._fetch_code(str(hps["sagemaker_submit_directory"]))
            command = list(algorithm["ContainerEntrypoint"])
            command += list(algorithm.get("ContainerArguments", []))
            return Launch(local_command(command, self.opt_ml), env, code)
        program, submit_dir = self._script(hps)
        self._fetch_code(submit_dir)
        if not (code / program).is_file():
            raise JobFailed(
                f"UserError: sagemaker_program {program!r} is not in the submit directory "
                f"{submit_dir}"
            )
        args = to_cmd_args(user_hps)
        env.update(
            SM_MODULE_NAME=Path(program).stem,
            SM_MODULE_DIR=submit_dir,
            SM_USER_ENTRY_POINT=program,
            SM_USER_ARGS=json.dumps(args),
            PYTHONPATH=os.pathsep.join(filter(None, [str(code), env.get("PYTHONPATH")])),
        )
        return Launch([sys.executable, program, *args], env, code)

    def _sm_env(self, user_hps: dict[str, Any]) -> dict[str, str]:
        opt = self.opt_ml
        channels = sorted(c["ChannelName"] for c in self._channels())
        env = {
            "SM_MODEL_DIR": str(opt / "model"),
            "SM_INPUT_DIR": str(opt / "input"),
            "SM_INPUT_CONFIG_DIR": str(opt / "input" / "config"),
            "SM_OUTPUT_DIR": str(opt / "output"),
            "SM_OUTPUT_DATA_DIR": str(opt / "output" / "data"),
            "SM_OUTPUT_INTERMEDIATE_DIR": str(opt / "output" / "intermediate"),
            "SM_CHANNELS": json.dumps(channels),
            "SM_HPS": _env_value(user_hps),
            "SM_NUM_CPUS": str(_cpu_count()),
            "SM_NUM_GPUS": "0",
            "SM_CURRENT_HOST": CURRENT_HOST,
            "SM_HOSTS": json.dumps([CURRENT_HOST]),
            "SM_NETWORK_INTERFACE_NAME": "eth0",
            "SM_INPUT_DATA_CONFIG": _env_value(self._input_data_config()),
            "SM_RESOURCE_CONFIG": _env_value(self._resource_config()),
        }
        for name in channels:
            env[f"SM_CHANNEL_{name.upper()}"] = str(opt / "input" / "data" / name)
        for key, value in user_hps.items():
            env[f"SM_HP_{key.upper()}"] = _env_value(value)
        return env

    def upload_outputs(self, status: str) -> dict[str, Any]:
        """model.tar.gz (members at the archive root) and output.tar.gz, also when stopped."""
        prefix = self.request["OutputDataConfig"]["S3OutputPath"].rstrip("/")
        base = f"{prefix}/{self.name}/output"
        fields: dict[str, Any] = {}
        model_dir = self.opt_ml / "model"
        if status == "Completed" or _has_files(model_dir):
            archive = self._tar(model_dir, self.folder / "model.tar.gz")
            self.upload_file(archive, f"{base}/model.tar.gz")
            fields["ModelArtifacts"] = {"S3ModelArtifacts": f"{base}/model.tar.gz"}
        data_dir = self.opt_ml / "output" / "data"
        if _has_files(data_dir):
            archive = self._tar(data_dir, self.folder / "output.tar.gz")
            self.upload_file(archive, f"{base}/output.tar.gz")
        return fields

    @staticmethod
    def _tar(folder: Path, archive: Path) -> Path:
        with tarfile.open(archive, "w:gz", compresslevel=6) as tar:
            for path in sorted(folder.iterdir()):
                tar.add(path, arcname=path.name)
        return archive
