"""Shared helpers for the benchmarks: run the CLI, watch its process tree, read what it did.

Every benchmark runs ``python -m sfn_mlops.cli`` as a subprocess (so interpreter start and
imports count), polls the RSS of the whole process tree (jobs run as child processes), and then
reads the execution history and the job documents of the workspace through boto3 in local mode.
"""

from __future__ import annotations

import json
import os
import platform
import statistics
import subprocess
import sys
import threading
import time
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
    "AWS_ACCESS_KEY_ID": "local",
    "AWS_SECRET_ACCESS_KEY": "local",
}
for _key, _value in ENV.items():
    os.environ.setdefault(_key, _value)

JOB_STATES = ("Preprocess", "Train", "Evaluate")


# ------------------------------------------------------------------ small utilities
def median(values: list[float]) -> float:
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
        "nproc": len(os.sched_getaffinity(0)),
        "cpu": cpu,
        "memory_gb": round(psutil.virtual_memory().total / 2**30, 1),
        "python": platform.python_version(),
        "xgboost": version("xgboost-cpu"),
        "pandas": version("pandas"),
        "pyarrow": version("pyarrow"),
        "moto": version("moto"),
        "loadavg_at_start": " ".join(f"{x:.2f}" for x in os.getloadavg()),
    }


def print_machine() -> None:
    info = machine()
    print("machine: " + ", ".join(f"{k}={v}" for k, v in info.items()), flush=True)


# ------------------------------------------------------------------ running the CLI
@dataclass
class CliRun:
    argv: list[str]
    rc: int
    wall: float  # spawn -> exit, seconds
    spawn_epoch: float  # time.time() at spawn
    exit_epoch: float
    peak_rss: int  # bytes, sum over the process tree, sampled every POLL_SECONDS
    cli_cpu: float  # user+sys CPU seconds of the CLI process itself (last sample)
    lines: list[tuple[float, str]] = field(default_factory=list)  # (epoch, stdout line)

    def first_line(self, prefix: str) -> tuple[float, str] | None:
        return next(((t, s) for t, s in self.lines if s.startswith(prefix)), None)


def _tree_rss(root: psutil.Process) -> tuple[int, float]:
    total, cpu = 0, 0.0
    try:
        procs = [root, *root.children(recursive=True)]
    except psutil.Error:
        return 0, 0.0
    for proc in procs:
        try:
            total += proc.memory_info().rss
            if proc.pid == root.pid:
                times = proc.cpu_times()
                cpu = times.user + times.system
        except psutil.Error:
            continue
    return total, cpu


def run_cli(workspace: Path, *args: str, timeout: float = 1800) -> CliRun:
    """``python -m sfn_mlops.cli --workspace WS run ARGS``: wall, peak tree RSS, stamped stdout."""
    argv = [sys.executable, "-m", "sfn_mlops.cli", "--workspace", str(workspace), "run", *args]
    env = dict(os.environ, PYTHONUNBUFFERED="1")
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
        rss, last_cpu = _tree_rss(root)
        peak = max(peak, rss)
        cpu = last_cpu or cpu
        if time.perf_counter() - start > timeout:
            proc.kill()
            break
        time.sleep(POLL_SECONDS)
    rc = proc.wait()
    wall = time.perf_counter() - start
    thread.join(5)
    run = CliRun(argv, rc, wall, start_wall, start_wall + wall, peak, cpu, lines)
    if rc != 0:
        tail = "\n".join(s for _, s in lines[-30:])
        raise RuntimeError(f"{' '.join(argv)} exited {rc}:\n{tail}")
    return run


# ------------------------------------------------------------------ reading what the run did
@dataclass
class JobTiming:
    state: str
    name: str
    kind: str
    created: float  # CreateXJob answered
    started: float  # runner thread started (Downloading)
    process: float  # wall of the job's script process (the "Training" transition)
    download: float  # Starting + Downloading transitions (inputs and code into the job folder)
    upload: float  # Uploading transition (outputs back to the object store)
    ended: float  # EndTime written by the runner


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
    task_done: dict[str, float]  # state -> TaskSucceeded timestamp
    train_seconds: float | None  # training_metrics.json: xgboost.train() alone
    train_job_dir: Path | None
    train_hyperparameters: dict[str, str]

    @property
    def job_seconds(self) -> float:
        return sum(job.process for job in self.jobs.values())


_CLOUD_CACHE: dict[str, Any] = {}


def _clients(workspace: Path) -> tuple[Any, Any]:
    import boto3

    from sfn_mlops.local import routing
    from sfn_mlops.local.cloud import LocalCloud

    key = str(workspace)
    if key not in _CLOUD_CACHE:
        _CLOUD_CACHE[key] = LocalCloud(workspace)
    cloud = routing.activate(_CLOUD_CACHE[key])
    return cloud, boto3.client("stepfunctions")


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
        spans = {t["Status"]: t["EndTime"] - t["StartTime"] for t in doc["Transitions"]}
        job_timings[state] = JobTiming(
            state=state,
            name=name,
            kind=kind,
            created=doc["CreationTime"],
            started=doc["StartTime"],
            process=spans.get("Training", float("nan")),
            download=spans.get("Starting", 0.0) + spans.get("Downloading", 0.0),
            upload=spans.get("Uploading", 0.0),
            ended=doc["EndTime"],
        )
        if kind == jobs.KIND_TRAINING:
            train_dir = jobs.job_dir(cloud, name)
            hps = doc["Request"].get("HyperParameters") or {}
            metrics = train_dir / "opt_ml" / "output" / "data" / "training_metrics.json"
            if metrics.is_file():
                train_seconds = json.loads(metrics.read_text())["train_seconds"]
    return RunTimings(
        execution_start=execution["startDate"].timestamp(),
        execution_stop=execution["stopDate"].timestamp(),
        first_event=events[0]["timestamp"].timestamp(),
        states=states,
        jobs=job_timings,
        task_done=task_done,
        train_seconds=train_seconds,
        train_job_dir=train_dir,
        train_hyperparameters=hps,
    )


def breakdown(run: CliRun, t: RunTimings) -> dict[str, float]:
    """Where the wall time of one CLI run goes, in seconds (the parts add up to the wall)."""
    deployed = run.first_line("Local stack deployed")
    parts: dict[str, float] = {}
    if deployed:
        deploy_seconds = float(deployed[1].rsplit("(", 1)[1].split()[0])
        startup = deployed[0] - run.spawn_epoch - deploy_seconds
        parts["interpreter + imports + config/data check"] = startup
        parts["local deploy"] = deploy_seconds
        parts["stage data + start execution"] = t.execution_start - deployed[0]
    else:
        parts["CLI start + deploy + stage"] = t.execution_start - run.spawn_epoch
    parts["engine start (startDate -> first event)"] = t.first_event - t.execution_start
    in_jobs = {
        "job process (compute)": 0.0,
        "job create + download": 0.0,
        "job upload": 0.0,
        ".sync poll latency (job end -> TaskSucceeded)": 0.0,
        "job state other": 0.0,
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
        in_jobs["job process (compute)"] += job.process
        in_jobs["job create + download"] += job.download + (job.started - job.created)
        in_jobs["job upload"] += job.upload
        in_jobs[".sync poll latency (job end -> TaskSucceeded)"] += done - job.ended
        in_jobs["job state other"] += state.seconds - (
            job.process
            + job.download
            + (job.started - job.created)
            + job.upload
            + (done - job.ended)
        )
    parts.update(in_jobs)
    lambda_and_other = sum(
        s.seconds for s in t.states.values() if s.name not in t.jobs and s.seconds == s.seconds
    )
    parts["other states (Lambda, Pass, Choice)"] = lambda_and_other
    parts["between states"] = (t.execution_stop - t.first_event) - states_total
    after = "after execution (summary, Lambda shutdown, interpreter exit)"
    parts[after] = run.exit_epoch - t.execution_stop
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
