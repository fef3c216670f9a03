"""``sfn-mlops monitor``: Model Monitor on the endpoint, from the command line.

``status`` shows the endpoint's monitoring schedules, their last runs and the alarms;
``run-now`` runs a schedule at once (local mode) and shows what it found; ``ground-truth``
uploads labels for captured requests in SageMaker's ground-truth format, where the
model-quality monitor reads them. ``sfn-mlops demo drift`` (sfn_mlops.demo) drives the whole
loop.
"""

from __future__ import annotations

import argparse
import csv
import datetime as dt
import json
import time
import uuid
from collections.abc import Callable
from pathlib import Path
from typing import Any

DEFAULT_ENDPOINT = "sfn-mlops"
KINDS = {"data": "data-quality", "model": "model-quality"}
TERMINAL = {"Completed", "CompletedWithViolations", "Failed", "Stopped"}
NO_DATA = "Job inputs had no data"
#: The counts of monitoring_report.json that are input the run skipped or could not join.
SKIP_COUNTS = {
    "malformed_capture_lines", "records_outside_window", "captures_outside_window",
    "row_count_mismatches", "unreadable_payloads", "malformed_rows", "unreadable_predictions",
    "malformed_ground_truth_lines", "unknown_event_ids", "duplicate_ground_truth",
    "invalid_labels", "label_count_mismatches",
}  # fmt: skip
EXIT_OK, EXIT_FAILED = 0, 1


class MonitorError(Exception):
    """What the user asked cannot be done (names the schedule, file, column or value)."""


def schedule_name(endpoint: str, kind: str) -> str:
    """The endpoint's schedules, as lambdas/set_up_monitoring names them."""
    return f"{endpoint}-{KINDS[kind]}"


def ground_truth_prefix(bucket: str, endpoint: str) -> str:
    return f"s3://{bucket}/ground-truth/{endpoint}"


# ------------------------------------------------------------------ status


def cmd_status(args: argparse.Namespace, connect: Callable[[argparse.Namespace], Any]) -> int:
    import boto3

    connect(args)
    sagemaker, cloudwatch = boto3.client("sagemaker"), boto3.client("cloudwatch")
    found = False
    for kind in KINDS:
        name = schedule_name(args.endpoint, kind)
        try:
            schedule = sagemaker.describe_monitoring_schedule(MonitoringScheduleName=name)
        except sagemaker.exceptions.ResourceNotFound:
            continue
        found = True
        config = schedule["MonitoringScheduleConfig"]
        print(
            f"{name}: {schedule['MonitoringScheduleStatus']}, "
            f"{config['ScheduleConfig']['ScheduleExpression']}, "
            f"job definition {config.get('MonitoringJobDefinitionName')}"
        )
        last = schedule.get("LastMonitoringExecutionSummary")
        if last:
            print(f"  last run: {describe_execution(last)}")
    if not found:
        print(f"No monitoring schedule on endpoint {args.endpoint}: run the pipeline with "
              "monitoring on (the default when the model is deployed)")  # fmt: skip
        return EXIT_FAILED
    for alarm in monitoring_alarms(cloudwatch, args.endpoint):
        print(f"alarm {alarm['AlarmName']}: {alarm['StateValue']}")
    return EXIT_OK


def monitoring_alarms(cloudwatch: Any, endpoint: str) -> list[dict[str, Any]]:
    alarms: list[dict[str, Any]] = []
    for prefix in (f"{endpoint}-drift-", f"{endpoint}-model-quality"):
        pages = cloudwatch.get_paginator("describe_alarms").paginate(AlarmNamePrefix=prefix)
        alarms += [alarm for page in pages for alarm in page["MetricAlarms"]]
    return alarms


def describe_execution(summary: dict[str, Any]) -> str:
    status = summary["MonitoringExecutionStatus"]
    when = summary.get("ScheduledTime")
    text = f"{status} (scheduled {when:%Y-%m-%d %H:%M:%S} UTC)" if when else status
    if summary.get("FailureReason"):
        text += f": {summary['FailureReason']}"
    return text


# ------------------------------------------------------------------ run-now


def cmd_run_now(args: argparse.Namespace, connect: Callable[[argparse.Namespace], Any]) -> int:
    import boto3

    service = connect(args)
    sagemaker, s3 = boto3.client("sagemaker"), boto3.client("s3")
    kinds = list(KINDS) if args.kind == "all" else [args.kind]
    worst = EXIT_OK
    for kind in kinds:
        name = schedule_name(args.endpoint, kind)
        summary = run_now(service, sagemaker, name, args.timeout, args.window_start)
        worst = max(worst, show_result(sagemaker, s3, name, summary))
    return worst


def run_now(
    service: Any, sagemaker: Any, schedule: str, timeout: float = 600,
    window_start: str | None = None,
) -> dict[str, Any]:  # fmt: skip
    """Start the schedule's execution now (a local-service action) and wait for its end;
    ``window_start`` (e.g. ``-PT10M``) judges only the traffic since then."""
    from sfn_mlops.local import control

    try:
        sagemaker.describe_monitoring_schedule(MonitoringScheduleName=schedule)
    except sagemaker.exceptions.ResourceNotFound as err:
        raise MonitorError(
            f"no monitoring schedule {schedule}: deploy a model with monitoring on first "
            "(sfn-mlops run)"
        ) from err
    try:
        request = {"schedule": schedule}
        if window_start is not None:
            request["window_start"] = window_start
        started = control.admin(service, "monitor-run-now", request)
    except control.ServiceError as err:
        raise MonitorError(f"{schedule}: {err}") from err
    print(f"{schedule}: monitoring run started ({started.get('ProcessingJobName', 'no job')})")
    return wait_for_execution(sagemaker, schedule, started["ScheduledTime"], timeout)


def wait_for_execution(
    sagemaker: Any, schedule: str, scheduled_time: Any, timeout: float
) -> dict[str, Any]:
    deadline = time.monotonic() + timeout
    wanted = _epoch(scheduled_time)
    while True:
        for summary in sagemaker.list_monitoring_executions(
            MonitoringScheduleName=schedule, SortBy="ScheduledTime", SortOrder="Descending"
        )["MonitoringExecutionSummaries"]:
            if abs(summary["ScheduledTime"].timestamp() - wanted) < 1e-3:
                if summary["MonitoringExecutionStatus"] in TERMINAL:
                    return dict(summary)
                break
        if time.monotonic() > deadline:
            raise MonitorError(f"{schedule}: the monitoring run did not end within {timeout:.0f} s")
        time.sleep(0.3)


def _epoch(value: Any) -> float:
    if isinstance(value, dt.datetime):
        return value.timestamp()
    if isinstance(value, int | float):
        return float(value)
    return dt.datetime.fromisoformat(str(value).replace("Z", "+00:00")).timestamp()


def show_result(sagemaker: Any, s3: Any, schedule: str, summary: dict[str, Any]) -> int:
    """Print the run's outcome and violations; non-zero only for a run that failed to run."""
    status = summary["MonitoringExecutionStatus"]
    reason = summary.get("FailureReason", "")
    if status == "Failed" and NO_DATA in reason:
        print(f"{schedule}: no data in the window ({reason}); nothing measured, no alarm")
        return EXIT_OK
    print(f"{schedule}: {describe_execution(summary)}")
    if status == "Failed":
        return EXIT_FAILED
    skipped = describe_counts(read_counts(sagemaker, s3, summary))
    if skipped:
        print(f"  {skipped} (counted in monitoring_report.json, not violations)")
    violations = read_violations(sagemaker, s3, summary)
    for violation in violations[:20]:
        name = violation.get("feature_name") or violation.get("metric_name")
        print(f"  {violation['constraint_check_type']} {name}: {violation['description']}")
    if len(violations) > 20:
        print(f"  ... {len(violations) - 20} more")
    return EXIT_OK


def read_violations(sagemaker: Any, s3: Any, summary: dict[str, Any]) -> list[dict[str, Any]]:
    found = read_output(sagemaker, s3, summary, "constraint_violations.json")
    return list((found or {}).get("violations", []))


def read_counts(sagemaker: Any, s3: Any, summary: dict[str, Any]) -> dict[str, Any]:
    """What the run read and skipped (monitoring_report.json, written by our analyzer only)."""
    return dict((read_output(sagemaker, s3, summary, "monitoring_report.json") or {}).get(
        "counts", {}
    ))  # fmt: skip


def read_output(
    sagemaker: Any, s3: Any, summary: dict[str, Any], filename: str
) -> dict[str, Any] | None:
    """A JSON file the monitoring run wrote to its output, None when it wrote none."""
    arn = summary.get("ProcessingJobArn")
    if not arn:
        return None
    job = sagemaker.describe_processing_job(ProcessingJobName=arn.rpartition("/")[2])
    for output in job.get("ProcessingOutputConfig", {}).get("Outputs", []):
        bucket, _, key = output["S3Output"]["S3Uri"].removeprefix("s3://").partition("/")
        try:
            body = s3.get_object(Bucket=bucket, Key=f"{key.rstrip('/')}/{filename}")
        except s3.exceptions.NoSuchKey:
            continue
        return dict(json.loads(body["Body"].read()))
    return None


def describe_counts(counts: dict[str, Any]) -> str | None:
    """``skipped: 3 malformed capture lines, ...``; None when nothing was skipped."""
    skipped = [
        f"{value} {name.replace('_', ' ')}"
        for name, value in counts.items()
        if isinstance(value, int) and value and name in SKIP_COUNTS
    ]
    return "skipped: " + ", ".join(skipped) if skipped else None


# ------------------------------------------------------------------ ground truth


def cmd_ground_truth(args: argparse.Namespace, connect: Callable[[argparse.Namespace], Any]) -> int:
    import boto3

    from sfn_mlops import settings
    from sfn_mlops.local import control

    service = connect(args)
    records = read_ground_truth(Path(args.file), args.id_column, args.label_column)
    deployment = control.admin(
        service, "deploy", {"project": str(settings.project_root(args.project))}
    )
    uri = upload_ground_truth(
        boto3.client("s3"), ground_truth_prefix(deployment["bucket"], args.endpoint), records
    )
    print(f"Uploaded {len(records):,} ground-truth labels to {uri}")
    return EXIT_OK


def read_ground_truth(path: Path, id_column: str, label_column: str) -> list[dict[str, Any]]:
    """Ground truth from a CSV (an id and a label column) or SageMaker's JSONL, checked."""
    if not path.is_file():
        raise MonitorError(f"{path}: no such file")
    if path.suffix in (".jsonl", ".json"):
        return _jsonl_ground_truth(path)
    with open(path, newline="", encoding="utf-8") as stream:
        reader = csv.DictReader(stream)
        columns = reader.fieldnames or []
        for column in (id_column, label_column):
            if column not in columns:
                raise MonitorError(
                    f"{path}: no column {column!r} (columns: {', '.join(columns)}); name the "
                    "columns with --id-column and --label-column"
                )
        records = []
        for line, row in enumerate(reader, start=2):
            event_id, label = (row[id_column] or "").strip(), (row[label_column] or "").strip()
            if not event_id or not label:
                raise MonitorError(f"{path}:{line}: empty {id_column} or {label_column}")
            records.append(ground_truth_record(event_id, label))
    if not records:
        raise MonitorError(f"{path}: no rows")
    return records


def _jsonl_ground_truth(path: Path) -> list[dict[str, Any]]:
    records = []
    with open(path, encoding="utf-8") as stream:
        for line, text in enumerate(stream, start=1):
            if not text.strip():
                continue
            try:
                record = json.loads(text)
                record["groundTruthData"]["data"]
                record["eventMetadata"]["eventId"]
            except (ValueError, KeyError, TypeError) as err:
                raise MonitorError(
                    f"{path}:{line}: not a ground-truth record "
                    '({"groundTruthData": {"data": ..., "encoding": "CSV"}, '
                    '"eventMetadata": {"eventId": ...}, "eventVersion": "0"})'
                ) from err
            records.append(record)
    return records


def ground_truth_record(event_id: str, label: str) -> dict[str, Any]:
    """One label in SageMaker's ground-truth JSONL format."""
    return {
        "groundTruthData": {"data": label, "encoding": "CSV"},
        "eventMetadata": {"eventId": event_id},
        "eventVersion": "0",
    }


def upload_ground_truth(s3: Any, prefix: str, records: list[dict[str, Any]]) -> str:
    """One JSONL object under this hour's ``yyyy/mm/dd/hh/`` (SageMaker's layout)."""
    now = dt.datetime.now(dt.UTC)
    bucket, _, key = prefix.removeprefix("s3://").partition("/")
    key = f"{key}/{now:%Y/%m/%d/%H}/{uuid.uuid4().hex}.jsonl"
    body = "".join(json.dumps(record) + "\n" for record in records)
    s3.put_object(Bucket=bucket, Key=key, Body=body.encode())
    return f"s3://{bucket}/{key}"


# ------------------------------------------------------------------ parser


def add_command(
    commands: Any, common: argparse.ArgumentParser, connect: Callable[[argparse.Namespace], Any]
) -> None:
    monitor = commands.add_parser("monitor", help="Model Monitor on the endpoint")
    actions = monitor.add_subparsers(dest="action", required=True)
    endpoint = argparse.ArgumentParser(add_help=False, parents=[common])
    endpoint.add_argument("--endpoint", default=DEFAULT_ENDPOINT, help="default sfn-mlops")
    status = actions.add_parser("status", parents=[endpoint], help="schedules, runs and alarms")
    status.set_defaults(handler=lambda args: cmd_status(args, connect))
    now = actions.add_parser(
        "run-now", parents=[endpoint], help="run the monitoring schedule(s) at once (local)"
    )
    now.add_argument("--kind", choices=("data", "model", "all"), default="all")
    now.add_argument("--timeout", type=float, default=600, help="seconds, default 600")
    now.add_argument(
        "--window-start", metavar="OFFSET",
        help="judge only the traffic since this offset, e.g. -PT10M (as DataAnalysisStartTime); "
        "default: the schedule's window, the last hour",
    )  # fmt: skip
    now.set_defaults(handler=lambda args: cmd_run_now(args, connect))
    truth = actions.add_parser(
        "ground-truth", parents=[endpoint], help="upload labels for captured requests"
    )
    truth.add_argument(
        "file", help="CSV with an id and a label column, or SageMaker ground-truth JSONL"
    )
    truth.add_argument(
        "--id-column", default="inference_id",
        help="the request's InferenceId (or the capture's eventId); default inference_id",
    )  # fmt: skip
    truth.add_argument("--label-column", default="label", help="default label")
    truth.set_defaults(handler=lambda args: cmd_ground_truth(args, connect))
