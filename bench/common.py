"""Shared helpers for the benchmarks: run the CLI, watch its processes, read what it did.

Every benchmark runs ``sfn-mlops --workspace WS run`` (the console script) as a subprocess, so
interpreter start and imports count. The local cloud is a long-lived service process per
workspace (``sfn_mlops.local.control``): the jobs, the engine and the Lambda workers run in it
and under it, not under the CLI. The benchmarks therefore sample the RSS of the CLI's process
tree *and* the service's, read the execution history through plain boto3 pointed at the
service (``endpoint_url``), and read the job documents from the workspace's metadata store.
Every service a benchmark starts (the CLI starts one on demand) is stopped with
``control.stop`` before its workspace is removed (``workspace()``), and once more at exit.
"""

from __future__ import annotations

import atexit
import contextlib
import json
import os
import platform
import shutil
import statistics
import subprocess
import sys
import tempfile
import threading
import time
from collections.abc import Iterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import psutil

REPO = Path(__file__).resolve().parents[1]
CONTAINERS = REPO / "containers"
POLL_SECONDS = 0.1
ENV = {
    "AWS_DEFAULT_REGION": "us-east-1",
    "AWS_EC2_METADATA_DISABLED": "true",
    "SAGEMAKER_SUPPRESS_V2_WARNING": "1",
    # A safety net only: services are stopped explicitly (control.stop); one left behind by a
    # killed benchmark stops itself after this many idle seconds instead of the default 30 min.
    "SFN_MLOPS_IDLE_TIMEOUT": "300",
}
for _key, _value in ENV.items():
    os.environ.setdefault(_key, _value)
os.environ.pop("AWS_ENDPOINT_URL", None)  # each client names its service's endpoint


def keys(workspace: Path) -> dict[str, str]:
    """``boto3.client(..., **keys(ws))``: the workspace administrator's keys (minted by its
    service), the only ones the service accepts."""
    from sfn_mlops.local import control

    return control.admin_key(workspace).client_kwargs()


JOB_STATES = ("Preprocess", "Train", "Evaluate")
CLI = Path(sys.executable).with_name("sfn-mlops")  # the console script users run
CLK_TCK = os.sysconf("SC_CLK_TCK")


# ------------------------------------------------------------------ small utilities
def median(values: list[float]) -> float:
    values = [v for v in values if v == v]  # noqa: PLR0124 - drop NaN
    return statistics.median(values) if values else float("nan")


def ratio(value: float, base: float) -> str:
    return f"{value / base:.2f}x" if base else "n/a"


def verdict(ok: bool) -> str:
    return "PASS" if ok else "MISS"


def table(rows: list[list[Any]], header: list[str]) -> str:
    """A GitHub-markdown table (readable in a terminal too)."""
    cells = [[str(c) for c in header]] + [[str(c) for c in row] for row in rows]
    widths = [max(len(r[i]) for r in cells) for i in range(len(header))]
    lines = [
        "| " + " | ".join(c.ljust(w) for c, w in zip(r, widths, strict=True)) + " |" for r in cells
    ]
    lines.insert(1, "|" + "|".join("-" * (w + 2) for w in widths) + "|")
    return "\n".join(lines)


def git_commit() -> str:
    try:
        head = subprocess.run(
            ["git", "rev-parse", "--short", "HEAD"], cwd=REPO, capture_output=True, text=True
        ).stdout.strip()
        dirty = subprocess.run(
            ["git", "status", "--porcelain", "--untracked-files=no", "--", "src", "containers"],
            cwd=REPO,
            capture_output=True,
            text=True,
        ).stdout.strip()
    except OSError:
        return "?"
    return head + (" (+ uncommitted changes in src/ or containers/)" if dirty else "")


def machine() -> dict[str, Any]:
    from importlib.metadata import version

    cpu = "?"
    try:
        for line in Path("/proc/cpuinfo").read_text().splitlines():
            if line.startswith("model name"):
                cpu = line.split(":", 1)[1].strip()
                break
    except OSError:
        pass
    return {
        "date": time.strftime("%Y-%m-%d %H:%M:%S %Z"),
        "commit": git_commit(),
        "nproc": len(os.sched_getaffinity(0)),
        "cpu": cpu,
        "memory_gb": round(psutil.virtual_memory().total / 2**30, 1),
        "python": platform.python_version(),
        "xgboost": version("xgboost-cpu"),
        "pandas": version("pandas"),
        "pyarrow": version("pyarrow"),
        "moto": version("moto"),
        "boto3": version("boto3"),
        "localstack-core": version("localstack-core"),
        "loadavg_at_start": loadavg(),
    }


def loadavg() -> str:
    return " ".join(f"{x:.2f}" for x in os.getloadavg())


def print_machine() -> None:
    info = machine()
    print("machine: " + ", ".join(f"{k}={v}" for k, v in info.items()), flush=True)


# ------------------------------------------------------------------ the workspace's service
_WORKSPACES: set[Path] = set()  # every workspace a CLI run or a client here may have served


def service_info(workspace: Path) -> Any:
    """``control.find``: the running service of ``workspace`` (pid, port, url) or None."""
    from sfn_mlops.local import control

    return control.find(workspace)


def stop_service(workspace: Path) -> bool:
    """Stop the workspace's service if one runs (``control.stop``); whether one ran."""
    from sfn_mlops.local import control

    _CLIENTS.pop(str(workspace), None)
    if not workspace.exists():
        return False
    return control.stop(workspace) is not None


@atexit.register
def stop_all_services() -> None:
    for workspace in list(_WORKSPACES):
        with contextlib.suppress(Exception):
            stop_service(workspace)
        _WORKSPACES.discard(workspace)


@contextlib.contextmanager
def workspace(prefix: str) -> Iterator[Path]:
    """A fresh workspace folder; its service is stopped and the folder removed at the end."""
    path = Path(tempfile.mkdtemp(prefix=prefix))
    _WORKSPACES.add(path)
    try:
        yield path
    finally:
        try:
            stop_service(path)
        finally:
            _WORKSPACES.discard(path)
            shutil.rmtree(path, ignore_errors=True)


def _service_process(workspace: Path) -> psutil.Process | None:
    """The service's process from its record (cheap enough to poll; no lock taken)."""
    try:
        pid = int(json.loads((workspace / "service.json").read_text())["pid"])
        return psutil.Process(pid)
    except (OSError, ValueError, KeyError, psutil.Error):
        return None


def _fork_server(service: psutil.Process) -> psutil.Process | None:
    with contextlib.suppress(psutil.Error):
        for child in service.children():
            if any("forkserver_main" in part for part in child.cmdline()):
                return child
    return None


def service_log_epoch(workspace: Path, needle: str) -> float | None:
    """Epoch of the last service log line containing ``needle`` (log stamps have ms)."""
    path = workspace / "logs" / "service.log"
    try:
        lines = path.read_text(errors="replace").splitlines()
    except OSError:
        return None
    for line in reversed(lines):
        if needle in line:
            stamp = line[:23]  # logging's asctime: 2026-11-29 15:06:38,123 (local time)
            try:
                whole = time.mktime(time.strptime(stamp[:19], "%Y-%m-%d %H:%M:%S"))
                return whole + int(stamp[20:23]) / 1000
            except ValueError:
                return None
    return None


# ------------------------------------------------------------------ running the CLI
@dataclass
class CliRun:
    argv: list[str]
    rc: int
    wall: float  # spawn -> exit, seconds
    spawn_epoch: float  # time.time() at spawn
    exit_epoch: float
    peak_rss: int  # bytes, sum over the CLI's and the service's process trees
    cli_cpu: float  # user+sys CPU seconds of the CLI process itself (last sample)
    service_was_up: bool  # the service ran before the CLI started (warm)
    service_cpu: float  # user+sys CPU seconds of the service process (its own threads) in the run
    jobs_cpu: float  # CPU seconds of the fork server's children that ended during the run
    lines: list[tuple[float, str]] = field(default_factory=list)  # (epoch, stdout/stderr line)

    def first_line(self, prefix: str) -> tuple[float, str] | None:
        return next(((t, s) for t, s in self.lines if s.startswith(prefix)), None)


def _tree(root: psutil.Process | None) -> list[psutil.Process]:
    if root is None:
        return []
    try:
        return [root, *root.children(recursive=True)]
    except psutil.Error:
        return []


def _rss(procs: list[psutil.Process]) -> int:
    total = 0
    for proc in procs:
        with contextlib.suppress(psutil.Error):
            total += proc.memory_info().rss
    return total


def _cpu(proc: psutil.Process | None, children: bool = False) -> float:
    if proc is None:
        return 0.0
    try:
        times = proc.cpu_times()
    except psutil.Error:
        return float("nan")
    if children:
        return times.children_user + times.children_system
    return times.user + times.system


def cli_argv(workspace: Path, *args: str, python_flags: tuple[str, ...] = ()) -> list[str]:
    """The console script, or ``python FLAGS -m sfn_mlops.cli`` when interpreter flags are
    wanted (``-X importtime``); both end in ``entry_point``."""
    if python_flags or not CLI.is_file():
        base = [sys.executable, *python_flags, "-m", "sfn_mlops.cli"]
    else:
        base = [str(CLI)]
    return [*base, "--workspace", str(workspace), "run", *args]


class _ServiceWatch:
    """The workspace's service and fork server, found as soon as they exist; CPU baselines."""

    def __init__(self, workspace: Path) -> None:
        self.workspace = workspace
        self.service = _service_process(workspace)
        self.was_up = self.service is not None
        self.fork_server = _fork_server(self.service) if self.service else None
        self.service_cpu0 = _cpu(self.service) if self.service else 0.0
        self.jobs_cpu0 = _cpu(self.fork_server, children=True) if self.fork_server else 0.0

    def refresh(self) -> None:
        if self.service is None:
            self.service = _service_process(self.workspace)
        if self.service is not None and self.fork_server is None:
            self.fork_server = _fork_server(self.service)

    def rss(self) -> int:
        return _rss(_tree(self.service))

    def cpu(self) -> tuple[float, float]:
        """CPU seconds since the start: the service process's own, the jobs' (reaped children)."""
        self.refresh()
        return (
            _cpu(self.service) - self.service_cpu0,
            _cpu(self.fork_server, children=True) - self.jobs_cpu0,
        )


def run_cli(
    workspace: Path, *args: str, timeout: float = 1800, python_flags: tuple[str, ...] = ()
) -> CliRun:
    """``sfn-mlops --workspace WS run ARGS``: wall, peak RSS, CPU, stamped output lines.

    The RSS is summed over the CLI's process tree and the workspace's service tree (the
    service, its Lambda workers, the fork server and the jobs); sampled every POLL_SECONDS.
    Summing counts shared pages once per process, so it overstates, the more so for jobs
    forked from the fork server, which share its imported libraries copy-on-write.
    """
    _WORKSPACES.add(workspace)
    argv = cli_argv(workspace, *args, python_flags=python_flags)
    env = dict(os.environ, PYTHONUNBUFFERED="1")
    env.pop("AWS_ENDPOINT_URL", None)
    watch = _ServiceWatch(workspace)
    lines: list[tuple[float, str]] = []
    start_wall, start = time.time(), time.perf_counter()
    proc = subprocess.Popen(
        argv, cwd=REPO, env=env, stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True
    )

    def reader() -> None:
        assert proc.stdout is not None
        for line in proc.stdout:
            lines.append((time.time(), line.rstrip("\n")))

    thread = threading.Thread(target=reader, daemon=True)
    thread.start()
    root = psutil.Process(proc.pid)
    peak, cpu = 0, 0.0
    while proc.poll() is None:
        watch.refresh()
        peak = max(peak, _rss(_tree(root)) + watch.rss())
        cpu = _cpu(root) or cpu
        if time.perf_counter() - start > timeout:
            proc.kill()
            break
        time.sleep(POLL_SECONDS)
    rc = proc.wait()
    wall = time.perf_counter() - start
    thread.join(5)
    service_cpu, jobs_cpu = watch.cpu()
    run = CliRun(
        argv,
        rc,
        wall,
        start_wall,
        start_wall + wall,
        peak,
        cpu,
        watch.was_up,
        service_cpu,
        jobs_cpu,
        lines,
    )
    if rc != 0:
        tail = "\n".join(s for _, s in lines[-30:])
        raise RuntimeError(f"{' '.join(argv)} exited {rc}:\n{tail}")
    return run


# ------------------------------------------------------------------ reading what the run did
@dataclass
class JobTiming:
    """One job's timeline, all epoch seconds, from its document and its files.

    script_start: the job process's start (/proc starttime, recorded as ChildStartTime; clock
    ticks, 10 ms resolution; half a tick added). script_exit: training jobs: the end of the
    ``Training`` secondary-status transition (the runner closes it right after the process is
    reaped). Processing jobs record no transitions and no exit time, so their exit is
    bracketed by the files: at least the newest file the script wrote under its output
    folders (``exit_low``), at most the oldest object the runner then uploaded from them
    (``exit_high``); ``script_exit`` is the lower bound (the conservative choice: it can only
    make the jobs' own time smaller and the overhead larger).
    """

    state: str
    name: str
    kind: str
    created: float  # CreationTime: CreateXJob answered
    started: float  # StartTime: the runner's thread began (Downloading)
    launch_requested: float  # training: the "Training" transition's start (before spawn); NaN
    script_start: float
    script_exit: float
    exit_low: float
    exit_high: float
    ended: float  # EndTime: outputs uploaded, status written

    @property
    def process(self) -> float:
        """The job's own work: its script's process from start to exit."""
        return self.script_exit - self.script_start

    @property
    def download(self) -> float:
        """Runner start -> script start: inputs and code copied, process launched."""
        return self.script_start - self.started

    @property
    def upload(self) -> float:
        """Script exit -> EndTime: outputs uploaded, the document's last write."""
        return self.ended - self.script_exit


@dataclass
class StateTiming:
    name: str
    entered: float
    exited: float

    @property
    def seconds(self) -> float:
        return self.exited - self.entered


@dataclass
class RunTimings:
    execution_start: float
    execution_stop: float
    first_event: float
    states: dict[str, StateTiming]
    jobs: dict[str, JobTiming]  # by state name
    task_scheduled: dict[str, float]  # state -> TaskScheduled timestamp
    task_done: dict[str, float]  # state -> TaskSucceeded timestamp
    train_seconds: float | None  # training_metrics.json: xgboost.train() alone
    train_job_dir: Path | None
    train_hyperparameters: dict[str, str]

    @property
    def job_seconds(self) -> float:
        return sum(job.process for job in self.jobs.values())


_CLIENTS: dict[str, tuple[str, Any, Any]] = {}  # workspace -> (url, LocalCloud, sfn client)


def _clients(workspace: Path) -> tuple[Any, Any]:
    """The workspace's metadata store (for job documents) and a boto3 Step Functions client
    pointed at its service (``control.find``; started with ``ensure_running`` if it stopped)."""
    import boto3

    from sfn_mlops.local import control
    from sfn_mlops.local.cloud import LocalCloud

    key = str(workspace)
    info = control.find(workspace)
    if info is None:
        _WORKSPACES.add(workspace)
        info = control.ensure_running(workspace)
    cached = _CLIENTS.get(key)
    if cached is None or cached[0] != info.url:
        sfn = boto3.client(
            "stepfunctions", endpoint_url=info.url, region_name="us-east-1", **keys(workspace)
        )
        _CLIENTS[key] = cached = (info.url, LocalCloud(workspace), sfn)
    return cached[1], cached[2]


def _epoch_from_ticks(ticks: int | None) -> float:
    if ticks is None:
        return float("nan")
    boot = time.time() - time.clock_gettime(time.CLOCK_BOOTTIME)
    return (ticks + 0.5) / CLK_TCK + boot


def _newest_mtime(folders: list[Path]) -> float:
    found = [
        p.stat().st_mtime
        for folder in folders
        if folder.is_dir()
        for p in folder.rglob("*")
        if p.is_file()
    ]
    return max(found) if found else float("nan")


def _oldest_object_mtime(cloud: Any, uris: list[str], since: float) -> float:
    from sfn_mlops.local.objectstore import parse_s3_uri

    found = []
    for uri in uris:
        bucket, prefix = parse_s3_uri(uri)
        with contextlib.suppress(Exception):
            found += [o.modified for o in cloud.objects.list(bucket, prefix) if o.modified >= since]
    return min(found) if found else float("nan")


def _newest_object_mtime(cloud: Any, uris: list[str], since: float) -> float:
    from sfn_mlops.local.objectstore import parse_s3_uri

    found = []
    for uri in uris:
        bucket, prefix = parse_s3_uri(uri)
        with contextlib.suppress(Exception):
            found += [o.modified for o in cloud.objects.list(bucket, prefix) if o.modified >= since]
    return max(found) if found else float("nan")


def _training_metrics(cloud: Any, doc: dict[str, Any], folder: Path) -> dict[str, Any] | None:
    """training_metrics.json: in the job's folder while it exists, else in output.tar.gz."""
    import tarfile

    from sfn_mlops.local.objectstore import parse_s3_uri

    path = folder / "opt_ml" / "output" / "data" / "training_metrics.json"
    if path.is_file():
        return dict(json.loads(path.read_text()))
    prefix = doc["Request"]["OutputDataConfig"]["S3OutputPath"].rstrip("/")
    try:
        archive = cloud.objects.head(*parse_s3_uri(f"{prefix}/{doc['Name']}/output/output.tar.gz"))
        with tarfile.open(archive.path, "r:gz") as tar:
            member = tar.extractfile("training_metrics.json")
            return dict(json.loads(member.read())) if member else None
    except Exception:  # noqa: BLE001 - no metrics: the figure is left out
        return None


def _job_timing(cloud: Any, state: str, kind: str, name: str, doc: dict[str, Any]) -> JobTiming:
    from sfn_mlops.local import jobs
    from sfn_mlops.local.jobs.paths import OPT_ML, reroot

    folder = jobs.job_dir(cloud, name)
    opt_ml = folder / OPT_ML
    start = _epoch_from_ticks(doc.get("ChildStartTime"))
    spans = {t["Status"]: t for t in doc.get("Transitions") or []}
    request = doc["Request"]
    if kind == jobs.KIND_TRAINING:
        training = spans.get("Training", {})
        launch = training.get("StartTime", float("nan"))
        exit_high = training.get("EndTime", float("nan"))
        exit_low = _newest_mtime([opt_ml / "model", opt_ml / "output" / "data"])
        exit_at = exit_high  # recorded precisely: the process was reaped just before
    else:
        outputs = (request.get("ProcessingOutputConfig") or {}).get("Outputs", [])
        locals_ = [Path(reroot(o["S3Output"]["LocalPath"], opt_ml)) for o in outputs]
        uris = [o["S3Output"]["S3Uri"] for o in outputs]
        launch = float("nan")
        if any(folder.is_dir() for folder in locals_):
            exit_low = _newest_mtime(locals_)
            exit_high = _oldest_object_mtime(cloud, uris, exit_low)
        else:  # the folder is gone: outputs were moved into the store, their mtimes kept
            exit_low = _newest_object_mtime(cloud, uris, doc["CreationTime"])
            exit_high = doc["EndTime"]
        exit_at = exit_low
    return JobTiming(
        state=state,
        name=name,
        kind=kind,
        created=doc["CreationTime"],
        started=doc["StartTime"],
        launch_requested=launch,
        script_start=start,
        script_exit=exit_at,
        exit_low=exit_low,
        exit_high=exit_high,
        ended=doc["EndTime"],
    )


def timings(workspace: Path, run: CliRun | None = None) -> RunTimings:  # noqa: C901
    """Per-state and per-job timings of the newest execution in the workspace."""
    from sfn_mlops.local import jobs

    cloud, sfn = _clients(workspace)
    executions = sfn.list_executions(maxResults=1000)["executions"]
    if run is not None:
        executions = [e for e in executions if e["startDate"].timestamp() >= run.spawn_epoch]
    execution = max(executions, key=lambda e: e["startDate"])
    arn = execution["executionArn"]
    events: list[dict[str, Any]] = []
    token = None
    while True:
        page = sfn.get_execution_history(
            executionArn=arn, maxResults=1000, **({"nextToken": token} if token else {})
        )
        events += page["events"]
        token = page.get("nextToken")
        if not token:
            break
    states: dict[str, StateTiming] = {}
    job_names: dict[str, tuple[str, str]] = {}
    scheduled: dict[str, float] = {}
    task_done: dict[str, float] = {}
    current = None
    for event in events:
        kind, when = event["type"], event["timestamp"].timestamp()
        if kind.endswith("StateEntered"):
            current = event["stateEnteredEventDetails"]["name"]
            states[current] = StateTiming(current, when, float("nan"))
        elif kind.endswith("StateExited"):
            states[event["stateExitedEventDetails"]["name"]].exited = when
        elif kind == "TaskScheduled" and current:
            scheduled[current] = when
            params = json.loads(event["taskScheduledEventDetails"].get("parameters", "{}"))
            if "TrainingJobName" in params:
                job_names[current] = (jobs.KIND_TRAINING, params["TrainingJobName"])
            elif "ProcessingJobName" in params:
                job_names[current] = (jobs.KIND_PROCESSING, params["ProcessingJobName"])
        elif kind == "TaskSucceeded" and current:
            task_done[current] = when
    job_timings: dict[str, JobTiming] = {}
    train_seconds, train_dir, hps = None, None, {}
    for state, (kind, name) in job_names.items():
        doc = cloud.metadata.get(kind, name)
        if doc is None:
            continue
        job_timings[state] = _job_timing(cloud, state, kind, name, doc)
        if kind == jobs.KIND_TRAINING:
            train_dir = jobs.job_dir(cloud, name)
            hps = doc["Request"].get("HyperParameters") or {}
            metrics = _training_metrics(cloud, doc, train_dir)
            if metrics is not None:
                train_seconds = metrics["train_seconds"]
    return RunTimings(
        execution_start=execution["startDate"].timestamp(),
        execution_stop=execution["stopDate"].timestamp(),
        first_event=events[0]["timestamp"].timestamp(),
        states=states,
        jobs=job_timings,
        task_scheduled=scheduled,
        task_done=task_done,
        train_seconds=train_seconds,
        train_job_dir=train_dir,
        train_hyperparameters=hps,
    )


SERVICE_START = "service start (process + imports, until it answers)"


def breakdown(run: CliRun, t: RunTimings, workspace: Path | None = None) -> dict[str, float]:
    """Where the wall time of one CLI run goes, in seconds (the parts add up to the wall).

    From the CLI's stamped output lines (``Starting the local service`` on a cold start,
    ``Data:``, ``Local stack deployed``), the execution's start and stop dates, its history
    events and the job documents. Parts that a run does not have are 0.
    """
    parts: dict[str, float] = {}
    starting = run.first_line("Starting the local service")
    data = run.first_line("Data:")
    deployed = run.first_line("Local stack deployed")
    succeeded = next(
        ((at, s) for at, s in run.lines if s.startswith("Execution ") and ": " in s), None
    )
    cursor = run.spawn_epoch
    if starting and data:
        parts["interpreter + CLI imports + config (to 'Starting the local service')"] = (
            starting[0] - cursor
        )
        serving = service_log_epoch(workspace, "serving ") if workspace else None
        ready = serving if serving and starting[0] <= serving <= data[0] else data[0]
        parts[SERVICE_START] = ready - starting[0]
        parts["CLI sees the service + data check (to 'Data:')"] = data[0] - ready
        cursor = data[0]
    elif data:
        parts["interpreter + CLI imports + config + connect + data check (to 'Data:')"] = (
            data[0] - cursor
        )
        parts[SERVICE_START] = 0.0
        cursor = data[0]
    if deployed:
        parts["deploy (admin call to the service)"] = deployed[0] - cursor
        cursor = deployed[0]
    parts["stage data + StartExecution"] = t.execution_start - cursor
    parts["engine start (startDate -> first event)"] = t.first_event - t.execution_start
    in_jobs = {
        "job scripts (the jobs' own work)": 0.0,
        "state entered -> job created": 0.0,
        "job created -> script start (download, launch)": 0.0,
        "script exit -> job EndTime (upload, status)": 0.0,
        ".sync latency (EndTime -> TaskSucceeded)": 0.0,
        "TaskSucceeded -> state exited": 0.0,
    }
    states_total = 0.0
    for state in t.states.values():
        if state.seconds != state.seconds:  # noqa: PLR0124 - NaN: never exited
            continue
        states_total += state.seconds
        job = t.jobs.get(state.name)
        if job is None:
            continue
        done = t.task_done.get(state.name, state.exited)
        in_jobs["job scripts (the jobs' own work)"] += job.process
        in_jobs["state entered -> job created"] += job.created - state.entered
        in_jobs["job created -> script start (download, launch)"] += job.script_start - job.created
        in_jobs["script exit -> job EndTime (upload, status)"] += job.upload
        in_jobs[".sync latency (EndTime -> TaskSucceeded)"] += done - job.ended
        in_jobs["TaskSucceeded -> state exited"] += state.exited - done
    parts.update(in_jobs)
    parts["other states (Lambda, Pass, Choice)"] = sum(
        s.seconds for s in t.states.values() if s.name not in t.jobs and s.seconds == s.seconds
    )
    parts["between states"] = (t.execution_stop - t.first_event) - states_total
    if succeeded:
        parts["follow lag (stopDate -> CLI prints the result)"] = succeeded[0] - t.execution_stop
        parts["summary + exit (result line -> process exit)"] = run.exit_epoch - succeeded[0]
    else:
        parts["after the execution (follow lag, summary, exit)"] = run.exit_epoch - t.execution_stop
    return parts


# ------------------------------------------------------------------ data
ABALONE_COLUMNS = [
    "sex",
    "length",
    "diameter",
    "height",
    "whole_weight",
    "shucked_weight",
    "viscera_weight",
    "shell_weight",
    "rings",
]


def make_abalone_like(rows: int, path: Path, seed: int = 0) -> Path:
    """Abalone resampled with replacement to ``rows`` rows, Gaussian noise (5% of each numeric
    column's std) on the measurements, rings kept integer. Seeded; reused if already written."""
    if path.is_file():
        return path
    import numpy as np
    import pyarrow as pa
    import pyarrow.csv as pacsv
    from sklego.datasets import load_abalone

    base = load_abalone(as_frame=True)
    rng = np.random.default_rng(seed)
    index = rng.integers(0, len(base), size=rows)
    columns: dict[str, Any] = {"sex": pa.array(base["sex"].to_numpy(dtype=str)[index])}
    for name in ABALONE_COLUMNS[1:-1]:
        values = base[name].to_numpy(dtype=float)
        noisy = values[index] + rng.normal(0.0, 0.05 * values.std(), size=rows)
        columns[name] = pa.array(np.round(np.abs(noisy), 4))
    columns["rings"] = pa.array(base["rings"].to_numpy()[index])
    path.parent.mkdir(parents=True, exist_ok=True)
    tmp = path.with_suffix(".tmp")
    pacsv.write_csv(pa.table(columns), tmp)
    tmp.replace(path)
    return path


def data_args(path: Path) -> list[str]:
    return ["--data", str(path), "--target", "rings", "--set", "categorical_columns=[sex]"]
