"""The monitoring loop's reliability (issue 9): an alarm storm, an empty window, bad capture lines.

Targets:
1. An alarm storm, 20 ALARM events within one second, starts exactly one retraining execution.
   The events take the real path: ``SetAlarmState`` on the endpoint's drift alarms (each one
   OK then ALARM, cycling over the features), each transition a ``CloudWatch Alarm State
   Change`` event that the rule ``RetrainFunctionMonitoringAlarm`` delivers to the retraining
   Lambda. All carry the same breached period in their reasonData, as the alarms of one
   monitoring run do. Reported: the seconds the 20 events took, the retraining executions
   started (target: 1), and the seconds from the first event to that execution's start.
2. A monitoring run of a window with no captured data reports "no data" (both schedules) and no
   alarm enters ALARM over the next alarm period.
3. A window with malformed capture lines among real records (400 abalone rows as they are, in
   requests of 50, so no drift): the run completes, the lines are skipped and counted in its
   ``monitoring_report.json`` (target: the number written), and no alarm enters ALARM.

How: a fresh workspace, its real local service at time scale 1, the pipeline run once on the
bundled abalone data (Clarify off, monitoring daily at an hour away so no scheduled run
interferes); then only boto3 pointed at the service and its local admin action ``run-now``.
Each scenario's count is printed beside its target; 2 and 3 wait one alarm period (60 s) each.

    .venv/bin/python bench/bench_retraining.py      # ~3 min
"""

from __future__ import annotations

import datetime as dt
import json
import subprocess
import sys
import time
import uuid
from pathlib import Path
from typing import Any

sys.path.insert(0, str(Path(__file__).resolve().parent))
import common  # noqa: E402

ENDPOINT = "sfn-mlops"
STORM_EVENTS = 20
MALFORMED = b'not json\n{"captureData": 5}\n{"no": "capture"}\n'


def clients(info: Any) -> dict[str, Any]:
    import boto3

    names = ("cloudwatch", "stepfunctions", "sagemaker", "sagemaker-runtime", "s3")
    keys = common.keys(info.workspace)
    return {
        n: boto3.client(n, endpoint_url=info.url, region_name="us-east-1", **keys) for n in names
    }


def deploy(workspace: Path) -> None:
    hour = (dt.datetime.now(dt.UTC).hour + 12) % 24
    argv = common.cli_argv(workspace, "--set", "clarify.enabled=false",
                           "--set", f"monitoring.schedule=cron(0 {hour} ? * * *)")  # fmt: skip
    done = subprocess.run(argv, cwd=common.REPO, capture_output=True, text=True, check=False)
    if done.returncode != 0:
        raise RuntimeError(f"the first run failed:\n{done.stdout}\n{done.stderr}")


def retrainings(aws: dict[str, Any], machine: str) -> list[dict[str, Any]]:
    listed = aws["stepfunctions"].list_executions(stateMachineArn=machine)["executions"]
    return [e for e in listed if e["name"].startswith(("drift-", "quality-", "alarm-"))]


def alarms_entered(aws: dict[str, Any], since: dt.datetime) -> list[str]:
    """Monitoring alarms that entered ALARM since ``since`` (the alarm history)."""
    pages = (
        aws["cloudwatch"]
        .get_paginator("describe_alarm_history")
        .paginate(HistoryItemType="StateUpdate", StartDate=since)
    )
    return [
        item["AlarmName"]
        for page in pages
        for item in page["AlarmHistoryItems"]
        if item["AlarmName"].startswith(ENDPOINT)
        and json.loads(item["HistoryData"])["newState"]["stateValue"] == "ALARM"
    ]


def storm(aws: dict[str, Any], machine: str) -> dict[str, Any]:
    cloudwatch = aws["cloudwatch"]
    names = [a["AlarmName"] for a in cloudwatch.describe_alarms(
        AlarmNamePrefix=f"{ENDPOINT}-drift-")["MetricAlarms"]]  # fmt: skip
    breached = dt.datetime.now(dt.UTC).strftime("%Y-%m-%dT%H:%M:00.000+0000")
    data = json.dumps({"version": "1.0", "startDate": breached, "statistic": "Maximum",
                       "period": 60, "recentDatapoints": [0.5], "threshold": 0.1,
                       "evaluatedDatapoints": [{"timestamp": breached, "value": 0.5}]})  # fmt: skip
    start = time.time()
    for i in range(STORM_EVENTS):
        name = names[i % len(names)]
        cloudwatch.set_alarm_state(AlarmName=name, StateValue="OK", StateReason="bench: reset")
        cloudwatch.set_alarm_state(AlarmName=name, StateValue="ALARM",
                                   StateReason="bench: storm", StateReasonData=data)  # fmt: skip
    took = time.time() - start
    time.sleep(10)  # every delivery has reached the Lambda and been answered
    started = retrainings(aws, machine)
    first = min((e["startDate"].timestamp() for e in started), default=float("nan"))
    for execution in started:
        wait_done(aws, execution["executionArn"])
    names = [e["name"] for e in started]
    return {"events": STORM_EVENTS, "seconds": round(took, 3), "retrainings": len(started),
            "to_start_s": round(first - start, 2), "names": names}  # fmt: skip


def wait_done(aws: dict[str, Any], arn: str, timeout: float = 600) -> None:
    deadline = time.monotonic() + timeout
    while aws["stepfunctions"].describe_execution(executionArn=arn)["status"] == "RUNNING":
        if time.monotonic() > deadline:
            raise RuntimeError(f"{arn} still runs after {timeout:.0f} s")
        time.sleep(0.5)


def run_now(workspace: Path, aws: dict[str, Any], kind: str) -> dict[str, Any]:
    from sfn_mlops.local import control
    from sfn_mlops.monitor_cli import wait_for_execution

    schedule = f"{ENDPOINT}-{kind}"
    service = control.ensure_running(workspace)
    started = control.admin(service, "monitor-run-now", {"schedule": schedule})
    return wait_for_execution(aws["sagemaker"], schedule, started["ScheduledTime"], 600)


def calm_alarms(aws: dict[str, Any]) -> None:
    """The storm left the drift alarms in ALARM: back to OK, as their next judgement would."""
    for alarm in aws["cloudwatch"].describe_alarms(AlarmNamePrefix=ENDPOINT)["MetricAlarms"]:
        aws["cloudwatch"].set_alarm_state(AlarmName=alarm["AlarmName"], StateValue="OK",
                                          StateReason="bench: after the storm")  # fmt: skip


def no_data(workspace: Path, aws: dict[str, Any]) -> dict[str, Any]:
    since = dt.datetime.now(dt.UTC)
    runs = {kind: run_now(workspace, aws, kind) for kind in ("data-quality", "model-quality")}
    time.sleep(65)  # one alarm period judged after the runs
    return {
        "runs": {
            k: [r["MonitoringExecutionStatus"], r.get("FailureReason", "")] for k, r in runs.items()
        },  # fmt: skip
        "no_data": sum("no data" in r.get("FailureReason", "") for r in runs.values()),
        "alarms": alarms_entered(aws, since),
    }


def malformed(workspace: Path, aws: dict[str, Any]) -> dict[str, Any]:
    from sfn_mlops import demo
    from sfn_mlops.demo import wait_for_capture
    from sfn_mlops.monitor_cli import read_counts

    since = dt.datetime.now(dt.UTC)
    rows = [demo._features(row) for row in demo._rows(workspace)]  # unshifted: no drift
    requests = 0
    for start in range(0, len(rows), 50):
        aws["sagemaker-runtime"].invoke_endpoint(
            EndpointName=ENDPOINT, ContentType="text/csv", Body=demo._csv(rows[start : start + 50])
        )
        requests += 1
    bucket = next(b["Name"] for b in aws["s3"].list_buckets()["Buckets"] if "artifact" in b["Name"])
    aws["s3"].put_object(
        Bucket=bucket, Body=MALFORMED,
        Key=f"data-capture/{ENDPOINT}/AllTraffic/{since:%Y/%m/%d/%H}/{uuid.uuid4()}.jsonl",
    )  # fmt: skip
    wait_for_capture(aws["s3"], bucket, since, requests + MALFORMED.count(b"\n"))
    run = run_now(workspace, aws, "data-quality")
    counts = read_counts(aws["sagemaker"], aws["s3"], run)
    time.sleep(65)
    return {"status": run["MonitoringExecutionStatus"], "written": MALFORMED.count(b"\n"),
            "counted": counts.get("malformed_capture_lines"), "rows": counts.get("rows"),
            "alarms": alarms_entered(aws, since)}  # fmt: skip


def main() -> None:
    from sfn_mlops.local import control
    from sfn_mlops.local.deploy import PIPELINE

    common.print_machine()
    with common.workspace("bench-retrain-") as ws:
        deploy(ws)
        info = control.ensure_running(ws)
        aws = clients(info)
        machine = next(m["stateMachineArn"] for m in aws["stepfunctions"].list_state_machines()[
            "stateMachines"] if m["name"] == PIPELINE)  # fmt: skip
        first = storm(aws, machine)
        calm_alarms(aws)
        second = no_data(ws, aws)
        third = malformed(ws, aws)
    rows = [
        ["alarm storm: retrainings", f"{first['retrainings']} / 1",
         f"{first['events']} events in {first['seconds']} s; started {first['to_start_s']} s "
         "after the first", common.verdict(first["retrainings"] == 1)],
        ["empty window: 'no data' runs", f"{second['no_data']} / 2",
         f"alarms entered ALARM: {len(second['alarms'])}",
         common.verdict(second["no_data"] == 2 and not second["alarms"])],
        ["malformed lines counted", f"{third['counted']} / {third['written']}",
         f"{third['status']}, {third['rows']} rows read; alarms: {len(third['alarms'])}",
         common.verdict(third["counted"] == third["written"] and not third["alarms"])],
    ]  # fmt: skip
    print(common.table(rows, ["check", "measured / target", "detail", "verdict"]))
    print("\nsummary (JSON): " + json.dumps({"storm": first, "no_data": second,
                                             "malformed": third}, default=str))  # fmt: skip


if __name__ == "__main__":
    main()
