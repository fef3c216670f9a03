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
import io
import json
import random
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any

from sfn_mlops.monitor_cli import (
    DEFAULT_ENDPOINT,
    MonitorError,
    ground_truth_prefix,
    ground_truth_record,
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
ALARM_TIMEOUT = 240.0  # CloudWatch evaluates each minute; a monitoring job takes its own time
RETRAIN_TIMEOUT = 60.0


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
    sagemaker, cloudwatch = boto3.client("sagemaker"), boto3.client("cloudwatch")
    kind = "data" if args.mode == "data" else "model"
    schedule = schedule_name(DEFAULT_ENDPOINT, kind)
    if not _exists(sagemaker, schedule):
        print(f"No monitored endpoint yet: running the pipeline first ({schedule} missing)\n")
        from sfn_mlops import cli

        status = cli.main(_global_args(args) + ["run"])
        if status != 0 or not _exists(sagemaker, schedule):
            raise MonitorError(f"the first run did not set up {schedule}; see its summary")
    rows = _rows(service.workspace, ROWS)
    runtime = boto3.client("sagemaker-runtime")
    send = _send_shifted if args.mode == "data" else _send_labelled
    labels = send(runtime, rows, since)
    uri = upload_ground_truth(
        boto3.client("s3"), ground_truth_prefix(deployment["bucket"], DEFAULT_ENDPOINT), labels
    )
    requests = len(labels)
    if args.mode == "data":
        print(
            f"Sent {len(rows):,} rows with every measurement x{SHIFT} in {requests} requests; "
            f"uploaded their ground truth (the rings did not change): {uri}"
        )
    else:
        print(f"Sent {requests:,} requests; uploaded ground truth the model no longer fits: {uri}")
    wait_for_capture(boto3.client("s3"), deployment["bucket"], since, requests)
    summary = run_now(service, sagemaker, schedule)
    show_result(sagemaker, boto3.client("s3"), schedule, summary)
    alarm = _wait_for_alarm(cloudwatch, kind, since)
    print(f"Alarm {alarm['AlarmName']}: ALARM ({alarm['StateReason']})")
    sfn = boto3.client("stepfunctions")
    arn = _wait_for_retraining(sfn, deployment["state_machine_arn"], since, kind)
    print(f"Retraining started by the alarm: {arn.rpartition(':')[2]}\n")
    from sfn_mlops.cli import _follow

    return _follow(service.workspace, sfn, arn, started)


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


def _rows(workspace: Path, count: int) -> list[dict[str, str]]:
    from sfn_mlops.data import example_dataset

    with open(example_dataset(workspace / "datasets"), newline="", encoding="utf-8") as stream:
        rows = list(csv.DictReader(stream))
    return random.Random(7).sample(rows, count)


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


def _send_shifted(
    runtime: Any, rows: list[dict[str, str]], since: dt.datetime
) -> list[dict[str, Any]]:
    """Batches of shifted rows (each request its InferenceId); their labels, one a row."""
    labels = []
    for start in range(0, len(rows), BATCH_ROWS):
        batch = rows[start : start + BATCH_ROWS]
        inference_id = f"demo-{since:%H%M%S}-{start}"
        runtime.invoke_endpoint(
            EndpointName=DEFAULT_ENDPOINT, ContentType="text/csv",
            Body=_csv([_shifted(row) for row in batch]), InferenceId=inference_id,
        )  # fmt: skip
        labels.append(ground_truth_record(inference_id, "\n".join(row[TARGET] for row in batch)))
    return labels


def _send_labelled(
    runtime: Any, rows: list[dict[str, str]], since: dt.datetime
) -> list[dict[str, Any]]:
    """One request per row (each its InferenceId); labels the model no longer fits."""
    labels = []
    for index, row in enumerate(rows):
        inference_id = f"demo-{since:%H%M%S}-{index}"
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
        pages = s3.get_paginator("list_objects_v2").paginate(
            Bucket=bucket, Prefix=f"data-capture/{DEFAULT_ENDPOINT}/"
        )
        fresh = [
            item for page in pages for item in page.get("Contents", [])
            if item["LastModified"] >= since.replace(microsecond=0)
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


def _wait_for_alarm(cloudwatch: Any, kind: str, since: dt.datetime) -> dict[str, str]:
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
                    return {"AlarmName": item["AlarmName"], "StateReason": new["stateReason"]}
        time.sleep(0.5)
    raise MonitorError(f"no {kind} monitoring alarm went to ALARM within {ALARM_TIMEOUT:.0f} s")


def _wait_for_retraining(sfn: Any, pipeline: str, since: dt.datetime, kind: str) -> str:
    """The retraining this demo's alarm started (named by the retraining Lambda)."""
    prefix = "drift-" if kind == "data" else "quality-"  # the Retrain Lambda's names
    deadline = time.monotonic() + RETRAIN_TIMEOUT
    while time.monotonic() < deadline:
        for execution in sfn.list_executions(stateMachineArn=pipeline, maxResults=10)["executions"]:
            if execution["name"].startswith(prefix) and execution["startDate"] >= since:
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
    drift.set_defaults(handler=lambda args: cmd_demo(args, connect))
    ab = actions.add_parser(
        "ab", parents=[common], help="a better challenger wins an A/B test"
    )
    from sfn_mlops.ab_demo import cmd_demo_ab

    ab.set_defaults(handler=lambda args: cmd_demo_ab(args, connect))
