"""``sfn-mlops demo drift``: the monitoring loop, end to end, on the local endpoint.

Data mode sends the endpoint abalone rows whose measurements are shifted (and their unchanged
rings as ground truth); quality mode sends unchanged rows and then uploads ground truth that the
model no longer fits. Either way the retraining learns the present from those labelled rows, and
the monitor runs at once, finds the violation, publishes its metrics; the alarm goes to ALARM, the
EventBridge rule invokes the retraining Lambda, and the demo follows the retraining execution to
the new model version deployed by the configured strategy. A workspace with no monitored
endpoint gets one first (the pipeline on the bundled data).
"""

from __future__ import annotations

import argparse
import csv
import datetime as dt
import functools
import io
import json
import math
import random
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any

from sfn_mlops.loop_timeline import (
    STEPS,
    LoopOpen,
    Timeline,
    alarms_back_to_ok,
    baselines,
    check_one_retraining,
    comparison,
    deployment,
    exited_at,
    ok_due,
    retrainings_since,
    window_phrase,
)
from sfn_mlops.monitor_cli import (
    DEFAULT_ENDPOINT,
    MonitorError,
    describe_execution,
    ground_truth_prefix,
    ground_truth_record,
    monitoring_alarms,
    run_now,
    schedule_name,
    show_result,
    upload_ground_truth,
)

TARGET = "rings"
SHIFT = 1.8  # data mode: every measurement this many times larger
#: Labelled rows sent, enough for a retraining on them to learn the changed world within the
#: gate (its test split is 15 % of them).
ROWS = 3000
BATCH_ROWS = 50
FRESH_ROWS = 600  # after the retraining: the traffic the next monitoring run judges
OK_TIMEOUT = 300.0  # how long to wait for the alarms to return to OK
ALARM_TIMEOUT = 240.0  # CloudWatch evaluates each minute; a monitoring job takes its own time
RETRAIN_TIMEOUT = 60.0
INTERRUPTED = 130  # what following returns after Ctrl-C (the run goes on)


def cmd_demo(args: argparse.Namespace, connect: Callable[[argparse.Namespace], Any]) -> int:
    import boto3

    from sfn_mlops import settings
    from sfn_mlops.local import control

    started = time.monotonic()
    since = dt.datetime.now(dt.UTC)
    service = connect(args)
    deployment = control.admin(
        service, "deploy", {"project": str(settings.project_root(args.project))}
    )
    sagemaker = boto3.client("sagemaker")
    kind = "data" if args.mode == "data" else "model"
    schedule = schedule_name(DEFAULT_ENDPOINT, kind)
    if not _exists(sagemaker, schedule):
        print(
            f"No monitored endpoint yet: running the pipeline first ({schedule} missing), with "
            "deployment.strategy=canary, which the retraining keeps\n"
        )
        from sfn_mlops import cli

        status = cli.main(_global_args(args) + ["run", "--set", "deployment.strategy=canary"])
        if status != 0 or not _exists(sagemaker, schedule):
            raise MonitorError(f"the first run did not set up {schedule}; see its summary")
    world = World(args.mode, service, deployment["bucket"])
    requests = world.send(_rows(service.workspace, ROWS, seed=7), f"{since:%H%M%S}")
    if args.mode == "data":
        print(
            f"Sent {ROWS:,} rows with every measurement x{SHIFT} in {requests} requests, and "
            "their ground truth (the rings did not change)"
        )
    else:
        print(f"Sent {requests:,} requests, and ground truth the model no longer fits")
    wait_for_capture(world.s3, world.bucket, since, requests)
    breach = run_now(service, sagemaker, schedule)
    show_result(sagemaker, world.s3, schedule, breach)
    print("\nThe loop:")
    timeline = Timeline()
    alarm = _wait_for_alarm(boto3.client("cloudwatch"), kind, since)
    timeline.step(f"alarm {alarm['AlarmName']} fired: {alarm['StateReason']}", alarm["Timestamp"])
    sfn = boto3.client("stepfunctions")
    pipeline = deployment["state_machine_arn"]
    arn = _wait_for_retraining(sfn, pipeline, since, kind)
    name = arn.rpartition(":")[2]
    others = check_one_retraining(_names(retrainings_since(sfn, pipeline, since)), name)
    if others:
        print(f"\nThe loop did not close: {timeline.open(others)}")
        return 1
    timeline.step(f"retraining {name} started by the alarm (the only one)")
    print(f"Retraining started by the alarm: {name}\n")
    from sfn_mlops.cli import _follow

    if _follow(service.workspace, sfn, arn, started) == INTERRUPTED:
        return INTERRUPTED
    print("\nThe loop, continued:")
    try:
        return _close_the_loop(
            timeline, world, schedule, arn, since, breach, ok_timeout=args.ok_timeout
        )
    except LoopOpen as err:
        print(f"\nThe loop did not close: {err}")
        return 1


def _close_the_loop(
    timeline: Timeline, world: World, schedule: str, arn: str, since: dt.datetime,
    breach: dict[str, Any], *, ok_timeout: float,
) -> int:  # fmt: skip
    """Steps 3 to 7, each confirmed from the services; LoopOpen at the first that fails."""
    import boto3

    from sfn_mlops.follow import cause_summary
    from sfn_mlops.local import control

    sfn, sagemaker = boto3.client("stepfunctions"), boto3.client("sagemaker")
    cloudwatch = boto3.client("cloudwatch")
    execution = sfn.describe_execution(executionArn=arn)
    pages = sfn.get_paginator("get_execution_history").paginate(executionArn=arn)
    events = [event for page in pages for event in page["events"]]
    name, pipeline = execution["name"], execution["stateMachineArn"]
    try:
        timeline.step(comparison(events), exited_at(events, "ReadEvaluation"))
        if execution["status"] != "SUCCEEDED":
            cause = cause_summary(execution.get("cause"))
            raise LoopOpen(f"{name} {execution['status']}: {execution.get('error')}: {cause}")
        deployed = exited_at(events, "EndpointReady") or dt.datetime.now(dt.UTC)
        timeline.step(deployment(events, sagemaker), deployed)
        timeline.step(baselines(events, sagemaker), exited_at(events, "SetUpMonitoring"))
        timeline.step(_next_run_within(world, schedule, deployed))
        others = check_one_retraining(_names(retrainings_since(sfn, pipeline, since)), name)
        if others:
            raise LoopOpen(others)
        described = _alarms(cloudwatch, schedule)
        if not described:
            raise LoopOpen(f"no monitoring alarm watches {schedule} any more")
    except LoopOpen as err:
        raise timeline.open(str(err)) from err
    scale = float(control.admin(world.service, "status").get("time_scale", 1.0))
    # Scheduled runs may have breached too, until the schedules took the new baselines.
    switched = exited_at(events, "SetUpMonitoring") or deployed
    breached = max(breach.get("LastModifiedTime") or switched, switched)
    due = max(ok_due(alarm, breached, scale) for alarm in described)
    window = window_phrase(described[0], scale)
    alarms = functools.partial(_alarms, cloudwatch, schedule)
    back = alarms_back_to_ok(alarms, due=due, timeout=0)
    if back is None:
        print(f"  ... waiting for the alarms to return to OK: their {window} window holds "
              f"breaching results until about {due:%H:%M:%S} UTC")  # fmt: skip
        back = alarms_back_to_ok(alarms, due=due, timeout=ok_timeout)
    if back is None:
        print(
            f"  [{STEPS}/{STEPS}] pending: the alarms return to OK at about {due:%H:%M:%S} UTC, "
            f"when the breaching results leave their {window} window (CloudWatch's sliding "
            "window). `sfn-mlops monitor status` shows them then; --ok-timeout waits longer."
        )
        return 0
    plural = "s" if len(described) > 1 else ""
    if back < deployed:
        timeline.step(
            f"the alarm{plural} returned to OK before the new model took over: the breach "
            f"left their {window} window while the retraining ran",
            back,
        )
    else:
        timeline.step(f"the alarm{plural} returned to OK", back)
    return 0


def _names(executions: list[dict[str, Any]]) -> list[str]:
    return [execution["name"] for execution in executions]


def _alarms(cloudwatch: Any, schedule: str) -> list[dict[str, Any]]:
    """The monitoring alarms that watch ``schedule``'s metrics."""
    return [
        alarm for alarm in monitoring_alarms(cloudwatch, DEFAULT_ENDPOINT)
        if {"Name": "MonitoringSchedule", "Value": schedule} in alarm.get("Dimensions", [])
    ]  # fmt: skip


def _next_run_within(world: World, schedule: str, deployed: dt.datetime) -> str:
    """Fresh traffic of the changed world, then a monitoring run over only what the new model
    served (the run-now window starts when it took over)."""
    import boto3

    sagemaker = boto3.client("sagemaker")
    sent_at = dt.datetime.now(dt.UTC)
    requests = world.send(_rows(world.service.workspace, FRESH_ROWS, seed=11), f"{sent_at:%H%M%S}")
    wait_for_capture(world.s3, world.bucket, sent_at, requests)
    seconds = math.ceil((dt.datetime.now(dt.UTC) - deployed).total_seconds()) + 1
    summary = run_now(world.service, sagemaker, schedule, window_start=f"-PT{seconds}S")
    if summary["MonitoringExecutionStatus"] != "Completed":
        show_result(sagemaker, world.s3, schedule, summary)
        raise LoopOpen(
            f"the monitoring run since the new model took over: {describe_execution(summary)}"
        )
    return (
        f"the next monitoring run, over {FRESH_ROWS} fresh rows since the new model took over, is "
        f"within the baseline ({schedule}: Completed, no violations)"
    )


class World:
    """The changed world of one demo mode: its requests to the endpoint and their labels."""

    def __init__(self, mode: str, service: Any, bucket: str) -> None:
        import boto3

        self.mode, self.service, self.bucket = mode, service, bucket
        self.runtime, self.s3 = boto3.client("sagemaker-runtime"), boto3.client("s3")

    def send(self, rows: list[dict[str, str]], tag: str) -> int:
        """Send ``rows`` and upload their ground truth; the number of requests."""
        send = _send_shifted if self.mode == "data" else _send_labelled
        labels = send(self.runtime, rows, tag)
        upload_ground_truth(self.s3, ground_truth_prefix(self.bucket, DEFAULT_ENDPOINT), labels)
        return len(labels)


def _global_args(args: argparse.Namespace) -> list[str]:
    out = []
    for option in ("workspace", "project"):
        if getattr(args, option, None):
            out += [f"--{option}", str(getattr(args, option))]
    return out


def _exists(sagemaker: Any, schedule: str) -> bool:
    try:
        sagemaker.describe_monitoring_schedule(MonitoringScheduleName=schedule)
    except sagemaker.exceptions.ResourceNotFound:
        return False
    return True


def _rows(workspace: Path, count: int, seed: int) -> list[dict[str, str]]:
    from sfn_mlops.data import example_dataset

    with open(example_dataset(workspace / "datasets"), newline="", encoding="utf-8") as stream:
        rows = list(csv.DictReader(stream))
    return random.Random(seed).sample(rows, count)


def _features(row: dict[str, str]) -> list[str]:
    return [value for name, value in row.items() if name != TARGET]


def _shifted(row: dict[str, str]) -> list[str]:
    out = []
    for value in _features(row):
        try:
            out.append(f"{float(value) * SHIFT:.4f}")
        except ValueError:
            out.append(value)  # the category (sex) stays
    return out


def _csv(lines: list[list[str]]) -> bytes:
    buffer = io.StringIO()
    csv.writer(buffer, lineterminator="\n").writerows(lines)
    return buffer.getvalue().encode()


def _send_shifted(runtime: Any, rows: list[dict[str, str]], tag: str) -> list[dict[str, Any]]:
    """Batches of shifted rows (each request its InferenceId); their labels, one a row."""
    labels = []
    for start in range(0, len(rows), BATCH_ROWS):
        batch = rows[start : start + BATCH_ROWS]
        inference_id = f"demo-{tag}-{start}"
        runtime.invoke_endpoint(
            EndpointName=DEFAULT_ENDPOINT, ContentType="text/csv",
            Body=_csv([_shifted(row) for row in batch]), InferenceId=inference_id,
        )  # fmt: skip
        labels.append(ground_truth_record(inference_id, "\n".join(row[TARGET] for row in batch)))
    return labels


def _send_labelled(runtime: Any, rows: list[dict[str, str]], tag: str) -> list[dict[str, Any]]:
    """One request per row (each its InferenceId); labels the model no longer fits."""
    labels = []
    for index, row in enumerate(rows):
        inference_id = f"demo-{tag}-{index}"
        runtime.invoke_endpoint(
            EndpointName=DEFAULT_ENDPOINT, ContentType="text/csv",
            Body=_csv([_features(row)]), InferenceId=inference_id,
        )  # fmt: skip
        worse = float(row[TARGET]) + 4  # the world changed: older abalone, same looks
        labels.append(ground_truth_record(inference_id, f"{worse:g}"))
    return labels


def wait_for_capture(s3: Any, bucket: str, since: dt.datetime, requests: int) -> None:
    """The endpoint publishes its capture files every few seconds: wait for this traffic's."""
    deadline = time.monotonic() + 60
    print("Waiting for the endpoint's capture files ...")
    while time.monotonic() < deadline:
        # every deployment's destination: data-capture/<endpoint config>/<endpoint>/...
        pages = s3.get_paginator("list_objects_v2").paginate(Bucket=bucket, Prefix="data-capture/")
        fresh = [
            item for page in pages for item in page.get("Contents", [])
            if f"/{DEFAULT_ENDPOINT}/" in item["Key"]
            and item["LastModified"] >= since.replace(microsecond=0)
        ]  # fmt: skip
        if fresh:
            records = sum(
                s3.get_object(Bucket=bucket, Key=item["Key"])["Body"].read().count(b"\n")
                for item in fresh
            )
            if records >= requests:
                return
        time.sleep(1)
    raise MonitorError("the endpoint's capture did not arrive within 60 s (is capture on?)")


def _wait_for_alarm(cloudwatch: Any, kind: str, since: dt.datetime) -> dict[str, Any]:
    """The first monitoring alarm of this kind to enter ALARM since the demo began, read from
    the alarms' history: an alarm may already be back to OK when the next period has no data."""
    wanted = f"{DEFAULT_ENDPOINT}-drift-" if kind == "data" else f"{DEFAULT_ENDPOINT}-model-quality"
    deadline = time.monotonic() + ALARM_TIMEOUT
    print("Waiting for CloudWatch to judge the alarm's period ...")
    while time.monotonic() < deadline:
        pages = cloudwatch.get_paginator("describe_alarm_history").paginate(
            HistoryItemType="StateUpdate", StartDate=since, ScanBy="TimestampAscending"
        )
        for page in pages:
            for item in page["AlarmHistoryItems"]:
                new = json.loads(item["HistoryData"]).get("newState", {})
                if item["AlarmName"].startswith(wanted) and new.get("stateValue") == "ALARM":
                    return {
                        "AlarmName": item["AlarmName"],
                        "StateReason": new["stateReason"],
                        "Timestamp": item["Timestamp"],
                    }
        time.sleep(0.5)
    raise MonitorError(f"no {kind} monitoring alarm went to ALARM within {ALARM_TIMEOUT:.0f} s")


def _wait_for_retraining(sfn: Any, pipeline: str, since: dt.datetime, kind: str) -> str:
    """The retraining this demo's alarm started (named by the retraining Lambda)."""
    prefix = "drift-" if kind == "data" else "quality-"  # the Retrain Lambda's names
    deadline = time.monotonic() + RETRAIN_TIMEOUT
    while time.monotonic() < deadline:
        for execution in retrainings_since(sfn, pipeline, since):
            if execution["name"].startswith(prefix):
                return str(execution["executionArn"])
        time.sleep(0.5)
    raise MonitorError(f"no retraining execution started within {RETRAIN_TIMEOUT:.0f} s")


def add_command(
    commands: Any, common: argparse.ArgumentParser, connect: Callable[[argparse.Namespace], Any]
) -> None:
    demo = commands.add_parser("demo", help="demonstrations on the local cloud")
    actions = demo.add_subparsers(dest="action", required=True)
    drift = actions.add_parser(
        "drift", parents=[common], help="shifted traffic or falling quality -> retrained model"
    )
    drift.add_argument(
        "--mode", choices=("data", "quality"), default="data",
        help="data: shifted inputs (data drift); quality: labels the model misses (concept drift)",
    )  # fmt: skip
    drift.add_argument(
        "--ok-timeout", type=float, default=OK_TIMEOUT, metavar="SECONDS",
        help="how long to wait at the end for the alarms to return to OK (default "
        f"{OK_TIMEOUT:.0f}); an hourly schedule's alarm holds a breach for up to an hour",
    )  # fmt: skip
    drift.set_defaults(handler=lambda args: cmd_demo(args, connect))
    ab = actions.add_parser("ab", parents=[common], help="a better challenger wins an A/B test")
    from sfn_mlops.ab_demo import cmd_demo_ab

    ab.set_defaults(handler=lambda args: cmd_demo_ab(args, connect))
