"""The monitoring loop's payoff, one line per step, each read back from the services.

``sfn-mlops demo drift`` prints this timeline: the alarm fires; exactly one retraining starts;
the new model beats production on recent labelled data; the canary deployment; new monitoring
baselines from the new training data; the next monitoring run is within the baseline; the
alarm returns to OK. No step is assumed: each comes from an execution's history, its
evaluation report, DescribeEndpoint, the schedules' job definitions, a monitoring run or
DescribeAlarms. The first step that did not happen ends the timeline with why (``LoopOpen``).
"""

from __future__ import annotations

import datetime as dt
import time
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any

from sfn_mlops.report import last_exit, state_output

STEPS = 7
#: The Retrain Lambda's execution names (lambdas/retrain/retrain.py, RETRAINING_PREFIXES).
RETRAINING_PREFIXES = ("drift-", "quality-", "alarm-", "scheduled-")


class LoopOpen(Exception):
    """A step of the loop did not happen; the message says which and why."""


@dataclass
class Timeline:
    """Prints ``[n/7] HH:MM:SS  text`` for each step as it is confirmed."""

    echo: Callable[[str], None] = print
    done: int = 0

    def step(self, text: str, when: dt.datetime | None = None) -> None:
        self.done += 1
        moment = (when or dt.datetime.now(dt.UTC)).astimezone(dt.UTC)
        self.echo(f"  [{self.done}/{STEPS}] {moment:%H:%M:%S}  {text}")

    def open(self, why: str) -> LoopOpen:
        """The loop stopped at the next step; printed, and the error to raise."""
        self.echo(f"  [{self.done + 1}/{STEPS}] did not happen: {why}")
        return LoopOpen(why)


def retrainings_since(sfn: Any, pipeline: str, since: dt.datetime) -> list[dict[str, Any]]:
    """The retraining executions started since ``since``, oldest first (ListExecutions gives
    the newest first, so paging stops at the first older one)."""
    started: list[dict[str, Any]] = []
    for page in sfn.get_paginator("list_executions").paginate(stateMachineArn=pipeline):
        for execution in page["executions"]:
            if execution["startDate"] < since:
                return started[::-1]
            if execution["name"].startswith(RETRAINING_PREFIXES):
                started.append(execution)
    return started[::-1]


def check_one_retraining(names: list[str], expected: str) -> str:
    """Why the retrainings are not exactly ``expected``; "" when they are."""
    if names == [expected]:
        return ""
    others = [name for name in names if name != expected]
    return f"{len(names)} retrainings started since the alarm: {', '.join(names)}" + (
        f" ({', '.join(others)} beside {expected})" if others else ""
    )


def comparison(events: list[dict[str, Any]]) -> str:
    """The new model against production on recent labelled rows; LoopOpen when it was not
    compared on recent rows or did not beat production."""
    evaluation = (state_output(events, "ReadEvaluation") or {}).get("evaluation")
    if not evaluation:
        raise LoopOpen("the retraining ended before its evaluation")
    champion = evaluation.get("champion") or {}
    data = evaluation.get("data") or {}
    if not champion.get("present"):
        raise LoopOpen("there was no production model to compare with")
    new, old = evaluation["value"], champion["value"]
    scores = f"{evaluation['metric']} {new:.4g} new, {old:.4g} production"
    if data.get("test_from") != "recent":
        raise LoopOpen(f"{scores}, judged on the configured test set, not on recent rows")
    if not champion.get("beats"):
        raise LoopOpen(f"the new model does not beat production ({scores})")
    change = abs(new - old) / abs(old) if old else 0.0
    word = "better" if new != old else "equal"
    return (
        f"the new model beats production on recent labelled data: {scores} ({change:.0%} "
        f"{word}) on test rows drawn from the {data.get('recent_rows', '?')} recent rows only"
    )


def deployment(events: list[dict[str, Any]], sagemaker: Any) -> str:
    """How the new model reached the endpoint, from DescribeEndpoint; LoopOpen when it does
    not serve it."""
    deployed = (state_output(events, "DeployModel") or {}).get("deployment")
    if not deployed:
        raise LoopOpen("nothing was deployed")
    endpoint = sagemaker.describe_endpoint(EndpointName=deployed["EndpointName"])
    if endpoint["EndpointConfigName"] != deployed["EndpointConfigName"]:
        raise LoopOpen(
            f"{deployed['EndpointName']} serves {endpoint['EndpointConfigName']}, not the "
            f"new {deployed['EndpointConfigName']} (rolled back?)"
        )
    how = traffic_phrase(endpoint.get("LastDeploymentConfig") or {})
    return f"{how}: {deployed['EndpointName']} serves {deployed['EndpointConfigName']}"


def traffic_phrase(config: dict[str, Any]) -> str:
    """SageMaker's DeploymentConfig in words (``canary deployment: 10% of capacity, ...``)."""
    routing = (config.get("BlueGreenUpdatePolicy") or {}).get("TrafficRoutingConfiguration")
    if config.get("RollingUpdatePolicy"):
        size = config["RollingUpdatePolicy"]["MaximumBatchSize"]
        return f"rolling deployment, {_size(size)} per batch"
    if not routing:
        return "all-at-once deployment"
    wait = routing.get("WaitIntervalInSeconds", 0)
    kind = routing["Type"]
    if kind == "CANARY":
        return f"canary deployment: {_size(routing['CanarySize'])} first, the rest after {wait} s"
    if kind == "LINEAR":
        return f"linear deployment: {_size(routing['LinearStepSize'])} every {wait} s"
    return "all-at-once deployment"


def _size(size: dict[str, Any]) -> str:
    unit = "% of capacity" if size["Type"] == "CAPACITY_PERCENT" else " instances"
    return f"{size['Value']}{unit}"


def baselines(events: list[dict[str, Any]], sagemaker: Any) -> str:
    """The schedules' job definitions, read back: their baselines are the new run's."""
    monitored = state_output(events, "SetUpMonitoring") or {}
    schedules = (monitored.get("monitoring") or {}).get("schedules") or []
    prefix = (monitored.get("run") or {}).get("prefix", "")
    if not schedules or not prefix:
        raise LoopOpen("the retraining set up no monitoring")
    for schedule in schedules:
        uri = baseline_constraints(sagemaker, schedule)
        if not uri.startswith(f"{prefix}/"):
            raise LoopOpen(f"{schedule} still judges against {uri}, not the new run's baseline")
    return (
        f"new monitoring baselines from the new training data: {prefix}/monitoring/ "
        f"({', '.join(schedules)})"
    )


def baseline_constraints(sagemaker: Any, schedule: str) -> str:
    """The constraints.json a schedule's job definition judges against."""
    config = sagemaker.describe_monitoring_schedule(MonitoringScheduleName=schedule)[
        "MonitoringScheduleConfig"
    ]
    name = config["MonitoringJobDefinitionName"]
    if config.get("MonitoringType") == "ModelQuality":
        described = sagemaker.describe_model_quality_job_definition(JobDefinitionName=name)
        baseline = described.get("ModelQualityBaselineConfig") or {}
    else:
        described = sagemaker.describe_data_quality_job_definition(JobDefinitionName=name)
        baseline = described.get("DataQualityBaselineConfig") or {}
    return str((baseline.get("ConstraintsResource") or {}).get("S3Uri", ""))


def exited_at(events: list[dict[str, Any]], state: str) -> dt.datetime | None:
    """When ``state`` last exited, from the history."""
    event = last_exit(events, state)
    return None if event is None else event["timestamp"]  # type: ignore[no-any-return]


def alarms_back_to_ok(
    alarms: Callable[[], list[dict[str, Any]]], *, due: dt.datetime, timeout: float
) -> dt.datetime | None:
    """Wait up to ``timeout`` s for every alarm ``alarms()`` lists to be OK; when the last one
    turned, or None."""
    deadline = time.monotonic() + timeout
    while True:
        found = alarms()
        if found and all(alarm["StateValue"] == "OK" for alarm in found):
            return max(alarm["StateUpdatedTimestamp"] for alarm in found)  # type: ignore[no-any-return]
        if time.monotonic() >= deadline:
            return None
        left = (due - dt.datetime.now(dt.UTC)).total_seconds()
        time.sleep(min(max(left, 0.5), 5.0, max(deadline - time.monotonic(), 0.1)))


def window_phrase(alarm: dict[str, Any], time_scale: float) -> str:
    """``its 60 min window`` in the workspace's time."""
    seconds = alarm["Period"] * alarm["EvaluationPeriods"]
    text = f"{seconds // 60} min" if seconds % 60 == 0 else f"{seconds} s"
    if time_scale != 1:
        text += f" ({seconds * time_scale:.0f} s at time scale {time_scale:g})"
    return text


def ok_due(alarm: dict[str, Any], breached: dt.datetime, time_scale: float) -> dt.datetime:
    """The earliest moment the alarm can be OK: when the breaching result leaves its sliding
    window (CloudWatch User Guide, "Alarm evaluation window"), plus a minute's evaluation."""
    seconds = alarm["Period"] * alarm["EvaluationPeriods"] * time_scale
    return breached + dt.timedelta(seconds=seconds + 60 * time_scale)
