"""Deployments of a local endpoint under load (issue 7): canary, alarm rollback, ``kill -9``.

Targets:
1. A blue/green CANARY deployment (25 % canary, a wait, a bake) under steady load: zero failed
   requests, the endpoint ends on the new EndpointConfigName, the new model's share of the
   answers steps 0 -> canary -> 1.
2. An alarm of the deployment's AutoRollbackConfiguration that goes to ALARM during the bake
   (traffic all on the new fleet): the endpoint rolls back to the old config, ends InService
   with a FailureReason naming the alarm, every answer after the rollback comes from the old
   model, zero failed requests.
3. ``kill -9`` of the endpoint's serving process under load: every capture object that remains
   parses line by line as JSON (0 unparseable lines); how many 200 answers were captured is
   reported (records lost at the kill are allowed).

How: one workspace and its real local service (``control.ensure_running``, as the CLI starts
it), driven only through plain boto3 (S3, SageMaker, CloudWatch) pointed at it. Two versions of
the pipeline's abalone model (``bench_endpoint.abalone_model``: v1 150 rounds, v2 40 rounds,
another seed) with ``containers/inference/inference.py`` in script mode; both endpoint configs
have one variant ``AllTraffic`` (1 instance) and data capture at 100 % (CSV). Load: 2 client
processes x 8 threads, each thread one keep-alive HTTP connection to the endpoint's own port
(the service's status action lists it), single abalone rows, as fast as answers come. An answer
is from v1 or v2 by its prediction (both variants are named ``AllTraffic``, as a blue/green
deployment keeps them, so the ``X-Amzn-Invoked-Production-Variant`` header cannot tell).
The rollback alarm is a plain CloudWatch alarm on the endpoint's ``Invocation4XXErrors``
(Sum >= 1 over 10 s); scenario 2 makes it fire for real: during the bake a separate client sends
a few malformed rows (2 values), which the model answers 400; those are not part of the load.
After the ``kill -9`` the benchmark waits to see whether the service brings the endpoint back
by itself, then restarts the service (``control.stop`` + ``ensure_running``), which serves the
endpoint again from its record and publishes the killed process's spooled capture files.

    .venv/bin/python bench/bench_deployment.py           # ~2 min: 10 s canary wait, 30 s bake
    .venv/bin/python bench/bench_deployment.py --quick   # ~1 min: 4 s canary wait, 20 s bake

Failed requests count per attempt: during the ``kill -9`` outage each client retries every
10 ms, so that figure is attempts, not distinct requests.
"""

from __future__ import annotations

import argparse
import http.client
import json
import os
import signal
import subprocess
import sys
import tempfile
import threading
import time
from collections import Counter
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import common
from bench_endpoint import CODES, REPO, ROWS, _unique, abalone_model

IMAGE = "683313688378.dkr.ecr.us-east-1.amazonaws.com/sagemaker-xgboost:3.0-5"
ROLE = "arn:aws:iam::123456789012:role/SageMakerRole"
BUCKET = "models"
CAPTURE_PREFIX = "capture"
CLIENT_PROCESSES, CLIENT_THREADS = 2, 8
POLL_SECONDS = 0.2
BAD_ROW = "M,0.5"  # two values: the model answers 400 (Invocation4XXErrors)
TOLERANCE = 1e-3  # an answer is a version's prediction if within this (float32 text)


@dataclass(frozen=True)
class Timing:
    warm: float  # seconds of load before UpdateEndpoint
    canary_wait: int  # WaitIntervalInSeconds
    bake: int  # TerminationWaitInSeconds
    after: float  # seconds of load after the deployment ended
    kill_after: float  # seconds of load before the kill -9
    heal_wait: float  # seconds to see whether the service brings the endpoint back itself
    inject_after: float  # seconds into the bake before the malformed requests


FULL = Timing(warm=3, canary_wait=10, bake=30, after=3, kill_after=5, heal_wait=5, inject_after=2)
QUICK = Timing(warm=2, canary_wait=4, bake=20, after=2, kill_after=3, heal_wait=3, inject_after=1)


# ------------------------------------------------------------------ the two models
@dataclass(frozen=True)
class Models:
    archives: dict[str, Path]  # version -> model.tar.gz
    expected: list[tuple[float, float]]  # per ROWS entry: (v1's prediction, v2's)


def build_models(folder: Path) -> Models:
    """v1 and v2 of the abalone model, and what each predicts for every row the load sends."""
    import numpy as np
    import xgboost

    versions = {"v1": (150, 0), "v2": (40, 7)}
    archives, predictions = {}, {}
    for version, (rounds, seed) in versions.items():
        sub = folder / version
        sub.mkdir()
        archives[version], model_file = abalone_model(sub, rounds=rounds, seed=seed)
        booster = xgboost.Booster()
        booster.load_model(str(model_file))
        rows = [[float(CODES[r[0]]), *map(float, r[2:].split(","))] for r in ROWS]
        predictions[version] = booster.inplace_predict(np.asarray(rows, np.float32)).tolist()
    expected = list(zip(predictions["v1"], predictions["v2"], strict=True))
    if any(abs(a - b) < 10 * TOLERANCE for a, b in expected):
        raise RuntimeError(f"v1 and v2 predict too alike to tell apart: {expected}")
    return Models(archives, expected)


# ------------------------------------------------------------------ the service, through boto3
@dataclass
class Aws:
    workspace: Path
    info: Any  # control.ServiceInfo
    sm: Any
    s3: Any
    cloudwatch: Any


def connect(workspace: Path) -> Aws:
    """The workspace's service (started if none runs) and boto3 clients pointed at it."""
    import boto3

    from sfn_mlops.local import control

    info = control.ensure_running(workspace)
    clients = [
        boto3.client(name, endpoint_url=info.url, region_name="us-east-1", **common.keys(workspace))
        for name in ("sagemaker", "s3", "cloudwatch")
    ]
    return Aws(workspace, info, *clients)


def endpoint_port(aws: Aws, name: str, timeout: float = 60) -> int:
    """The endpoint's own port, once the service's status action lists it as serving."""
    from sfn_mlops.local import control

    deadline = time.monotonic() + timeout
    while True:
        port = control.admin(aws.info, "status")["endpoints"].get(name)
        if port:
            return int(port)
        if time.monotonic() > deadline:
            raise TimeoutError(f"endpoint {name} is not serving after {timeout:g} s")
        time.sleep(POLL_SECONDS)


def upload(aws: Aws, models: Models) -> None:
    """Both models, the inference code, a model and an endpoint config per version."""
    from sfn_mlops.packaging import build_bundle

    aws.s3.create_bucket(Bucket=BUCKET)
    code = build_bundle(REPO / "containers").files["inference/sourcedir.tar.gz"]
    aws.s3.put_object(Bucket=BUCKET, Key="code/sourcedir.tar.gz", Body=code)
    environment = {
        "SAGEMAKER_PROGRAM": "inference.py",
        "SAGEMAKER_SUBMIT_DIRECTORY": f"s3://{BUCKET}/code/sourcedir.tar.gz",
    }
    for version, archive in models.archives.items():
        key = f"abalone-{version}/model.tar.gz"
        aws.s3.put_object(Bucket=BUCKET, Key=key, Body=archive.read_bytes())
        aws.sm.create_model(
            ModelName=f"abalone-{version}",
            PrimaryContainer={
                "Image": IMAGE,
                "ModelDataUrl": f"s3://{BUCKET}/{key}",
                "Environment": environment,
            },
            ExecutionRoleArn=ROLE,
        )
        aws.sm.create_endpoint_config(
            EndpointConfigName=f"cfg-{version}",
            ProductionVariants=[
                {
                    "VariantName": "AllTraffic",
                    "ModelName": f"abalone-{version}",
                    "InstanceType": "ml.m5.large",
                    "InitialInstanceCount": 1,
                }
            ],
            DataCaptureConfig={
                "EnableCapture": True,
                "InitialSamplingPercentage": 100,
                "DestinationS3Uri": f"s3://{BUCKET}/{CAPTURE_PREFIX}",
                "CaptureOptions": [{"CaptureMode": "Input"}, {"CaptureMode": "Output"}],
                "CaptureContentTypeHeader": {"CsvContentTypes": ["text/csv"]},
            },
        )


def put_alarm(aws: Aws, endpoint: str) -> str:
    """The rollback alarm: any 4XX of the endpoint's variant in a 10 s period."""
    name = f"{endpoint}-4xx"
    aws.cloudwatch.put_metric_alarm(
        AlarmName=name,
        Namespace="AWS/SageMaker",
        MetricName="Invocation4XXErrors",
        Dimensions=[
            {"Name": "EndpointName", "Value": endpoint},
            {"Name": "VariantName", "Value": "AllTraffic"},
        ],
        Statistic="Sum",
        Period=10,
        EvaluationPeriods=1,
        Threshold=1.0,
        ComparisonOperator="GreaterThanOrEqualToThreshold",
        TreatMissingData="notBreaching",
    )
    return name


def deployment_config(alarm: str, timing: Timing) -> dict[str, Any]:
    return {
        "BlueGreenUpdatePolicy": {
            "TrafficRoutingConfiguration": {
                "Type": "CANARY",
                "CanarySize": {"Type": "CAPACITY_PERCENT", "Value": 25},
                "WaitIntervalInSeconds": timing.canary_wait,
            },
            "TerminationWaitInSeconds": timing.bake,
            "MaximumExecutionTimeoutInSeconds": 600,
        },
        "AutoRollbackConfiguration": {"Alarms": [{"AlarmName": alarm}]},
    }


def wait_in_service(aws: Aws, name: str, timeout: float = 120) -> dict[str, Any]:
    """DescribeEndpoint until the endpoint is out of Creating/Updating (or the timeout)."""
    deadline = time.monotonic() + timeout
    while True:
        described: dict[str, Any] = aws.sm.describe_endpoint(EndpointName=name)
        if described["EndpointStatus"] not in ("Creating", "Updating", "RollingBack"):
            return described
        if time.monotonic() > deadline:
            raise TimeoutError(f"endpoint {name} still {described['EndpointStatus']}")
        time.sleep(POLL_SECONDS)


def create_endpoint(aws: Aws, name: str) -> int:
    """An endpoint on cfg-v1, InService; its port."""
    aws.sm.create_endpoint(EndpointName=name, EndpointConfigName="cfg-v1")
    described = wait_in_service(aws, name)
    if described["EndpointStatus"] != "InService":
        raise RuntimeError(f"endpoint {name}: {described.get('FailureReason')}")
    return endpoint_port(aws, name)


# ------------------------------------------------------------------ load
@dataclass
class LoadResult:
    per_second: dict[int, list[int]]  # second since t0 -> [v1, v2, unknown, failed]
    failures: Counter[str]
    answered: list[str]  # unique mode: the bodies answered 200

    @property
    def ok(self) -> int:
        return sum(v1 + v2 + other for v1, v2, other, _ in self.per_second.values())

    @property
    def failed(self) -> int:
        return sum(self.failures.values())

    def count(self, index: int, seconds: range | None = None) -> int:
        return sum(
            row[index] for s, row in self.per_second.items() if seconds is None or s in seconds
        )


class Load:
    """16 keep-alive clients in 2 processes, until ``stop``; seconds count from ``t0``."""

    def __init__(self, port: int, t0: float, models: Models, unique: bool = False) -> None:
        self.children = []
        for index in range(CLIENT_PROCESSES):
            config = {
                "port": port,
                "threads": CLIENT_THREADS,
                "t0": t0,
                "expected": models.expected,
                "unique_from": index * 10_000_000 if unique else None,
            }
            self.children.append(
                subprocess.Popen(
                    [sys.executable, __file__, "--client", json.dumps(config)],
                    stdin=subprocess.PIPE,
                    stdout=subprocess.PIPE,
                )
            )

    def __enter__(self) -> Load:
        return self

    def __exit__(self, *_: object) -> None:
        for child in self.children:  # a scenario that failed leaves no client behind
            if child.poll() is None:
                child.kill()
                child.wait()

    def stop(self) -> LoadResult:
        results = []
        for child in self.children:
            assert child.stdin is not None
            child.stdin.close()  # EOF: the client's threads finish their request and stop
        for child in self.children:
            assert child.stdout is not None
            results.append(json.loads(child.stdout.read()))
            child.wait(30)
        per_second: dict[int, list[int]] = {}
        for result in results:
            for second, counts in result["per_second"].items():
                row = per_second.setdefault(int(second), [0, 0, 0, 0])
                for i, value in enumerate(counts):
                    row[i] += value
        failures = Counter[str]()
        for result in results:
            failures.update(result["failures"])
        answered = [body for result in results for body in result["answered"]]
        return LoadResult(dict(sorted(per_second.items())), failures, answered)


def client_process(config: dict[str, Any]) -> None:
    """Threads on keep-alive connections until stdin closes; prints per-second counts."""
    stop = threading.Event()

    def wait_for_eof() -> None:
        sys.stdin.read()
        stop.set()

    threading.Thread(target=wait_for_eof, daemon=True).start()
    lock = threading.Lock()
    per_second: dict[int, list[int]] = {}
    failures = Counter[str]()
    answered: list[str] = []
    first = config["unique_from"]
    numbers = iter(range(first, first + 10_000_000)) if first is not None else None

    def record(second: int, slot: int, failure: str = "", body: str = "") -> None:
        with lock:
            per_second.setdefault(second, [0, 0, 0, 0])[slot] += 1
            if failure:
                failures[failure] += 1
            if body:
                answered.append(body)

    def run(worker: int) -> None:
        connection = http.client.HTTPConnection("127.0.0.1", config["port"], timeout=30)
        sent = 0
        while not stop.is_set():
            row_index = (worker + sent) % len(ROWS)
            sent += 1
            body = ROWS[row_index] if numbers is None else _unique(ROWS[row_index], next(numbers))
            expected = config["expected"][row_index] if numbers is None else None
            slot, failure, text = _one_request(connection, body, expected)
            second = int(time.time() - config["t0"])
            record(second, slot, failure, body if numbers is not None and not failure else "")
            if failure and text == "reconnect":
                connection.close()
                connection = http.client.HTTPConnection("127.0.0.1", config["port"], timeout=30)
                time.sleep(0.01)  # a dead port refuses at once: no busy loop

    threads = [threading.Thread(target=run, args=(i,)) for i in range(config["threads"])]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join()
    print(json.dumps({"per_second": per_second, "failures": failures, "answered": answered}))


def _one_request(
    connection: http.client.HTTPConnection, body: str, expected: list[float] | None
) -> tuple[int, str, str]:
    """(slot: 0 v1, 1 v2, 2 neither, 3 failed; the failure; "reconnect" after a broken one).

    ``expected``: v1's and v2's predictions for ``body``; None: not classified (slot 0)."""
    try:
        connection.request("POST", "/invocations", body, {"Content-Type": "text/csv"})
        response = connection.getresponse()
        answer = response.read()
    except (OSError, http.client.HTTPException) as exc:
        return 3, type(exc).__name__, "reconnect"
    if response.status != 200:
        return 3, f"HTTP {response.status}", ""
    if expected is None:
        return 0, "", ""
    value = float(answer)
    for slot, prediction in enumerate(expected):
        if abs(value - prediction) < TOLERANCE:
            return slot, "", ""
    return 2, "", ""


# ------------------------------------------------------------------ the deployment, watched
@dataclass
class Event:
    at: float  # seconds since t0
    status: str  # EndpointStatus / the pending variant's status: its message


def describe_state(described: dict[str, Any]) -> str:
    pending = described.get("PendingDeploymentSummary")
    text = described["EndpointStatus"]
    if pending:
        status = pending["ProductionVariants"][0]["VariantStatus"][0]
        text += f" / {status['Status']}: {status['StatusMessage']}"
    return text


def watch(
    aws: Aws,
    name: str,
    t0: float,
    timeout: float,
    on_state: Callable[[str], None] = lambda _: None,
) -> tuple[list[Event], dict[str, Any]]:
    """DescribeEndpoint every POLL_SECONDS until the update ends; each change of state."""
    events: list[Event] = []
    deadline = time.monotonic() + timeout
    while True:
        described = aws.sm.describe_endpoint(EndpointName=name)
        state = describe_state(described)
        if not events or events[-1].status != state:
            events.append(Event(time.time() - t0, state))
            on_state(state)
        if described["EndpointStatus"] not in ("Updating", "RollingBack"):
            return events, described
        if time.monotonic() > deadline:
            raise TimeoutError(f"endpoint {name}: the update did not end: {state}")
        time.sleep(POLL_SECONDS)


def send_bad_requests(port: int, count: int = 5) -> list[int]:
    """Malformed rows from a client of their own (not the load): the statuses answered."""
    connection = http.client.HTTPConnection("127.0.0.1", port, timeout=30)
    statuses = []
    for _ in range(count):
        connection.request("POST", "/invocations", BAD_ROW, {"Content-Type": "text/csv"})
        response = connection.getresponse()
        response.read()
        statuses.append(response.status)
    connection.close()
    return statuses


# ------------------------------------------------------------------ capture
@dataclass
class CaptureCheck:
    files: int = 0
    lines: int = 0
    unparseable: int = 0
    inputs: Counter[str] = field(default_factory=Counter)
    bad_examples: list[str] = field(default_factory=list)


def read_capture(aws: Aws, endpoint: str) -> CaptureCheck:
    """Every capture object of the endpoint (through S3), line by line."""
    check = CaptureCheck()
    paginator = aws.s3.get_paginator("list_objects_v2")
    for page in paginator.paginate(Bucket=BUCKET, Prefix=f"{CAPTURE_PREFIX}/{endpoint}/"):
        for item in page.get("Contents", []):
            check.files += 1
            data = aws.s3.get_object(Bucket=BUCKET, Key=item["Key"])["Body"].read()
            for line in data.decode("utf-8", "replace").splitlines():
                check.lines += 1
                try:
                    check.inputs[json.loads(line)["captureData"]["endpointInput"]["data"]] += 1
                except (ValueError, KeyError, TypeError):
                    check.unparseable += 1
                    check.bad_examples.append(f"{item['Key']}: {line[:120]!r}")
    return check


def spool_leftovers(aws: Aws, endpoint: str) -> int:
    return len(list((aws.workspace / "endpoints" / endpoint / "spool").glob("*.part")))


# ------------------------------------------------------------------ reports
def step_curve(result: LoadResult) -> str:
    """The new model's share of the 200 answers, one figure per second."""
    cells = []
    for second, (v1, v2, other, failed) in result.per_second.items():
        total = v1 + v2 + other
        share = f"{v2 / total:.2f}" if total else "  - "
        cells.append(f"{second:>3}s {share}" + (f" ({failed} failed)" if failed else ""))
    return "\n".join("    " + "  ".join(cells[i : i + 8]) for i in range(0, len(cells), 8))


def print_events(events: list[Event]) -> None:
    for event in events:
        print(f"    {event.at:6.1f}s  {event.status}")


def share_during(result: LoadResult, start: float, end: float) -> float:
    seconds = range(int(start) + 1, int(end))  # whole seconds inside the window
    v1, v2 = result.count(0, seconds), result.count(1, seconds)
    return v2 / (v1 + v2) if v1 + v2 else float("nan")


def print_load(result: LoadResult, seconds: float) -> None:
    print(
        f"  load: {result.ok + result.failed:,} requests in {seconds:.0f} s "
        f"({(result.ok + result.failed) / seconds:.0f}/s), 200: {result.ok:,} "
        f"(v1 {result.count(0):,}, v2 {result.count(1):,}, neither {result.count(2):,}), "
        f"failed: {result.failed} {dict(result.failures) if result.failures else ''}"
    )


# ------------------------------------------------------------------ scenarios 1 and 2
@dataclass
class DeploymentRun:
    alarm: str
    updated: float  # seconds since t0: UpdateEndpoint called
    events: list[Event]
    described: dict[str, Any]  # DescribeEndpoint once the update ended
    result: LoadResult
    wall: float
    capture: CaptureCheck
    injected: list[tuple[float, list[int]]]  # (seconds since t0, statuses) of malformed requests

    @property
    def ended(self) -> float:
        return self.events[-1].at

    def after_end(self, slot: int) -> int:
        """Answers of one version in the whole seconds after the update ended."""
        return self.result.count(slot, range(int(self.ended) + 1, int(self.wall)))


def deploy_under_load(
    aws: Aws, models: Models, timing: Timing, name: str, alarm_in_bake: bool
) -> DeploymentRun:
    """An endpoint on v1 under load, UpdateEndpoint to v2 (CANARY), watched to its end;
    ``alarm_in_bake``: malformed requests during the bake make the rollback alarm fire."""
    alarm = put_alarm(aws, name)
    port = create_endpoint(aws, name)
    t0 = time.time()
    injected: list[tuple[float, list[int]]] = []

    def on_state(state: str) -> None:
        if alarm_in_bake and "TerminationWaitInSeconds" in state and not injected:
            threading.Thread(target=inject, daemon=True).start()

    def inject() -> None:
        time.sleep(timing.inject_after)
        injected.append((time.time() - t0, send_bad_requests(port)))

    with Load(port, t0, models) as load:
        time.sleep(timing.warm)
        updated = time.time() - t0
        aws.sm.update_endpoint(
            EndpointName=name,
            EndpointConfigName="cfg-v2",
            DeploymentConfig=deployment_config(alarm, timing),
        )
        events, described = watch(aws, name, t0, timing.canary_wait + timing.bake + 120, on_state)
        time.sleep(timing.after)
        result = load.stop()
    wall = time.time() - t0
    aws.sm.delete_endpoint(EndpointName=name)  # publishes the open capture files
    capture = read_capture(aws, name)
    return DeploymentRun(alarm, updated, events, described, result, wall, capture, injected)


def print_run(run: DeploymentRun) -> None:
    print_events(run.events)
    print_load(run.result, run.wall)
    print("  share of answers from v2, per second:")
    print(step_curve(run.result))
    print(
        f"  capture: {run.capture.files} files, {run.capture.lines:,} lines, "
        f"{run.capture.unparseable} unparseable; {run.result.ok:,} answered 200"
    )


def _window(events: list[Event], needle: str) -> tuple[float, float] | None:
    """Start and end (seconds since t0) of the first state whose text contains ``needle``."""
    for index, event in enumerate(events[:-1]):
        if needle in event.status:
            return event.at, events[index + 1].at
    return None


def canary(aws: Aws, models: Models, timing: Timing) -> dict[str, Any]:
    run = deploy_under_load(aws, models, timing, "ep-canary", alarm_in_bake=False)
    print(f"\n1. CANARY deployment under load (UpdateEndpoint at {run.updated:.1f} s)")
    print_run(run)
    window = _window(run.events, "WaitIntervalInSeconds")
    canary_share = share_during(run.result, *window) if window else float("nan")
    print(f"  v2 share during the canary wait: {canary_share:.3f} (CanarySize 25 %)")
    config = run.described["EndpointConfigName"]
    ok = config == "cfg-v2" and run.after_end(0) == 0
    print(
        f"  final: {run.described['EndpointStatus']} on {config}, {run.after_end(0)} answers "
        f"from v1 after it (target cfg-v2, 0) {common.verdict(ok)}"
    )
    failed = run.result.failed
    print(f"  failed requests: {failed} (target 0) {common.verdict(failed == 0)}")
    return {
        "requests": run.result.ok + failed,
        "failed": failed,
        "config": config,
        "canary_share": round(canary_share, 3),
        "seconds": round(run.ended - run.updated, 1),
    }


def rollback(aws: Aws, models: Models, timing: Timing) -> dict[str, Any]:
    run = deploy_under_load(aws, models, timing, "ep-rollback", alarm_in_bake=True)
    print(
        f"\n2. Alarm during the bake: rollback under load (UpdateEndpoint at {run.updated:.1f} s)"
    )
    print_run(run)
    to_rollback = run.ended - run.injected[0][0] if run.injected else float("nan")
    if run.injected:
        at, statuses = run.injected[0]
        print(
            f"  {len(statuses)} malformed requests at {at:.1f} s, answered {statuses} "
            f"(not part of the load); rollback over {to_rollback:.1f} s later"
        )
    else:
        print("  the bake was never seen: no malformed requests sent")
    print(f"  after the rollback: {run.after_end(1)} answers from v2, {run.after_end(0):,} from v1")
    status, config = run.described["EndpointStatus"], run.described["EndpointConfigName"]
    reason = run.described.get("FailureReason", "")
    ok = (status, config) == ("InService", "cfg-v1") and run.alarm in reason
    ok = ok and run.after_end(1) == 0
    print(
        f"  final: {status} on {config}, FailureReason {reason!r} (target InService on "
        f"cfg-v1, the alarm named, 0 answers from v2 after) {common.verdict(ok)}"
    )
    failed = run.result.failed
    print(f"  failed requests: {failed} (target 0) {common.verdict(failed == 0)}")
    return {
        "requests": run.result.ok + failed,
        "failed": failed,
        "config": config,
        "rolled_back": ok,
        "seconds_to_rollback": round(to_rollback, 1),
    }


# ------------------------------------------------------------------ scenario 3: kill -9
def endpoint_pid(aws: Aws, name: str) -> int:
    """The serving process of ``name``: the service's child running endpoint_server."""
    import psutil

    spec = str(aws.workspace / "endpoints" / name / "spec.json")
    for child in psutil.Process(aws.info.pid).children(recursive=True):
        if spec in child.cmdline():
            return int(child.pid)
    raise RuntimeError(f"no serving process for {name}")


def answers(port: int) -> bool:
    try:
        connection = http.client.HTTPConnection("127.0.0.1", port, timeout=2)
        connection.request("GET", "/ping")
        return connection.getresponse().status == 200
    except OSError:
        return False


@dataclass
class KillRun:
    pid: int
    ports: tuple[int, int]  # before the kill, after the restart
    killed: float  # seconds since t0
    healed: bool  # the port answered again before the service was restarted
    status_after_kill: str  # DescribeEndpoint then
    spool_at_kill: int  # .part files the killed process left in the endpoint's spool
    restarted: float
    back: float  # the endpoint answers /ping again
    result: LoadResult
    wall: float
    capture: CaptureCheck
    spool_left: int  # .part files left once the endpoint was deleted
    recovery_log: list[str]  # the restarted service's log lines about the endpoint

    @property
    def failed_outside_outage(self) -> int:
        """Failed requests before the kill's second or after the endpoint answered again."""
        outage = range(int(self.killed), int(self.back) + 1)
        return self.result.failed - self.result.count(3, outage)


def kill_under_load(aws: Aws, models: Models, timing: Timing) -> tuple[Aws, KillRun]:
    """kill -9 of the serving process under load; wait; restart the service; stop; read."""
    from sfn_mlops.local import control

    name = "ep-kill"
    port = create_endpoint(aws, name)
    t0 = time.time()
    with Load(port, t0, models, unique=True) as load:
        time.sleep(timing.kill_after)
        pid = endpoint_pid(aws, name)
        os.kill(pid, signal.SIGKILL)
        killed = time.time() - t0
        time.sleep(timing.heal_wait)
        healed = answers(port)
        status = aws.sm.describe_endpoint(EndpointName=name)["EndpointStatus"]
        spool_at_kill = spool_leftovers(aws, name)
        restarted = time.time() - t0
        control.stop(aws.workspace)
        aws = connect(aws.workspace)  # the service serves the endpoint again from its record
        new_port = endpoint_port(aws, name)
        while not answers(new_port):
            time.sleep(0.05)
        back = time.time() - t0
        time.sleep(timing.kill_after)
        result = load.stop()
    wall = time.time() - t0
    aws.sm.delete_endpoint(EndpointName=name)
    capture = read_capture(aws, name)
    log = (aws.workspace / "logs" / "service.log").read_text(errors="replace").splitlines()
    run = KillRun(
        pid=pid,
        ports=(port, new_port),
        killed=killed,
        healed=healed,
        status_after_kill=status,
        spool_at_kill=spool_at_kill,
        restarted=restarted,
        back=back,
        result=result,
        wall=wall,
        capture=capture,
        spool_left=spool_leftovers(aws, name),
        recovery_log=[line[24:] for line in log if f"endpoint {name}" in line],
    )
    return aws, run


def kill_nine(aws: Aws, models: Models, timing: Timing) -> tuple[Aws, dict[str, Any]]:
    aws, run = kill_under_load(aws, models, timing)
    capture, result = run.capture, run.result
    print(
        f"\n3. kill -9 of the endpoint's process (pid {run.pid}) under load at {run.killed:.1f} s"
    )
    print(
        f"  {timing.heal_wait:g} s later: DescribeEndpoint says {run.status_after_kill}; the "
        f"endpoint {'answers' if run.healed else 'does not answer'} (the service "
        f"{'brought it back' if run.healed else 'did not bring it back by itself'}); "
        f"{run.spool_at_kill} .part file(s) left in its spool"
    )
    print(
        f"  service restarted at {run.restarted:.1f} s, the endpoint answers again at "
        f"{run.back:.1f} s (port {run.ports[0]} -> {run.ports[1]}): "
        f"{run.back - run.killed:.1f} s without an endpoint"
    )
    for line in run.recovery_log:
        print(f"    service log: {line}")
    print_load(result, run.wall)
    print(
        f"  failed: {result.failed - run.failed_outside_outage:,} in the outage (attempts: each "
        f"client retries every 10 ms), {run.failed_outside_outage} outside it"
    )
    print(
        f"  capture: {capture.files} files, {capture.lines:,} lines, {capture.unparseable} "
        f"unparseable; .part files left after the endpoint's deletion: {run.spool_left}"
    )
    for example in capture.bad_examples[:5]:
        print(f"    unparseable: {example}")
    sent = Counter(result.answered)
    lost = sum((sent - capture.inputs).values())
    extra = sum((capture.inputs - sent).values())
    print(
        f"  answered 200: {sum(sent.values()):,}; captured: {sum(capture.inputs.values()):,}; "
        f"answered but not captured: {lost} (lost at the kill: allowed); captured but not "
        f"answered 200: {extra}"
    )
    ok = capture.unparseable == 0
    print(f"  unparseable capture lines: {capture.unparseable} (target 0) {common.verdict(ok)}")
    return aws, {
        "files": capture.files,
        "lines": capture.lines,
        "unparseable": capture.unparseable,
        "answered": sum(sent.values()),
        "lost": lost,
        "extra": extra,
        "failed_in_outage": result.failed - run.failed_outside_outage,
        "failed_outside_outage": run.failed_outside_outage,
        "outage_seconds": round(run.back - run.killed, 1),
    }


# ------------------------------------------------------------------ main
def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--quick", action="store_true", help="shorter waits, bakes and loads")
    args = parser.parse_args()
    timing = QUICK if args.quick else FULL
    common.print_machine()
    print(
        f"timing: {timing}; load: {CLIENT_PROCESSES} processes x {CLIENT_THREADS} keep-alive "
        "clients, single-record CSV, to the endpoint's own port"
    )
    with tempfile.TemporaryDirectory() as tmp, common.workspace("bench-deploy-") as ws:
        models = build_models(Path(tmp))
        shown = [(round(a, 3), round(b, 3)) for a, b in models.expected]
        print(f"predictions (v1, v2) of the 3 rows: {shown}")
        aws = connect(ws)
        upload(aws, models)
        first = canary(aws, models, timing)
        second = rollback(aws, models, timing)
        aws, third = kill_nine(aws, models, timing)
    print("\nsummary (JSON): " + json.dumps({"canary": first, "rollback": second, "kill": third}))


if __name__ == "__main__":
    if sys.argv[1:2] == ["--client"]:
        client_process(json.loads(sys.argv[2]))
    else:
        main()
