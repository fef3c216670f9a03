"""Starts a retraining when a monitoring alarm goes to ALARM, or when the schedule fires.

One alarm episode starts at most one retraining, however often its events arrive: the
execution is named after the endpoint, the kind of alarm (drift or quality) and the metric
period that breached, and Step Functions starts a name only once (ExecutionAlreadyExists is
taken here as "already started"). One monitoring run publishes all its features' metrics with
one timestamp, so the drift alarms of several features that it trips at once share that name
and start one retraining. While any execution of the pipeline runs, a new alarm is only logged.

The retraining runs the config of the newest execution that succeeded (the one that built the
model in service), with a ``retraining`` key saying why. What it trains on (the data as it is
then, and the endpoint's labelled traffic) is the pipeline's CollectData step, as for any run.
"""

from __future__ import annotations

import hashlib
import json
import re
from typing import Any

ALARM_STATE_CHANGE = "CloudWatch Alarm State Change"
SCHEDULED_EVENT = "Scheduled Event"
_UNSAFE = re.compile(r"[^A-Za-z0-9]+")
#: The pipeline names its jobs <execution>-<step> (<execution>-<step>-N on the Nth retry of a
#: create, at most 3): a tuning job's name, <execution>-tune-3 at most, may have 32 characters
#: (botocore's HyperParameterTuningJobName), the others 63.
MAX_NAME = 32 - len("-tune-3")
#: Names say why: drift-20261203T1000-1a2b, quality-20261203T1000-1a2 (cut at MAX_NAME),
#: alarm-..., scheduled-20261207T0300.
RETRAINING_PREFIXES = ("drift-", "quality-", "alarm-", "scheduled-")
_STAMP = re.compile(r"[^0-9T]")


class RetrainError(Exception):
    """Nothing to retrain from (no earlier run), named for the operator."""


def trigger(event: dict[str, Any]) -> dict[str, Any] | None:
    """Why to retrain (and the name that makes it happen once); None for events to ignore."""
    kind = event.get("detail-type")
    if kind == ALARM_STATE_CHANGE:
        detail = event.get("detail") or {}
        state = detail.get("state") or {}
        if state.get("value") != "ALARM":
            return None
        alarm, since = str(detail.get("alarmName", "")), str(state.get("timestamp", ""))
        source, label = _alarm_family(alarm)
        period = _breached_period(state) or since
        return {
            "reason": "alarm",
            "alarm": alarm,
            "alarm_reason": state.get("reason", ""),
            "since": since,
            "name": _name(label, source, period),
        }
    if kind == SCHEDULED_EVENT:
        when = str(event.get("time", ""))
        return {"reason": "schedule", "since": when, "name": _name("scheduled", None, when)}
    return None


def _alarm_family(alarm: str) -> tuple[str, str]:
    """(what is monitored, drift|quality): ``<endpoint>-drift-<feature>`` gives the endpoint."""
    endpoint, separator, _ = alarm.partition("-drift-")
    if separator:
        return endpoint, "drift"
    if alarm.endswith("-model-quality"):
        return alarm.removesuffix("-model-quality"), "quality"
    return alarm, "alarm"


def _breached_period(state: dict[str, Any]) -> str | None:
    """The newest evaluated datapoint's timestamp from the alarm's reasonData (a JSON string in
    CloudWatch's event), else its startDate; None when the event carries neither."""
    data = state.get("reasonData")
    if isinstance(data, str):
        try:
            data = json.loads(data)
        except ValueError:
            return None
    if not isinstance(data, dict):
        return None
    stamps = [
        str(point["timestamp"])
        for point in data.get("evaluatedDatapoints") or []
        if isinstance(point, dict) and "value" in point and point.get("timestamp")
    ]
    return max(stamps, key=_stamp) if stamps else data.get("startDate")


def _stamp(moment: str) -> str:
    """``2026-12-03T10:00:00.000+0000`` as ``20261203T1000`` (sortable, name-safe; alarm
    periods and schedules fall on whole minutes)."""
    return _STAMP.sub("", moment.split(".")[0].split("+")[0].removesuffix("Z"))[:13]


def _name(label: str, source: str | None, moment: str) -> str:
    """An execution name every job name of the pipeline can carry, tuning's included: at most
    ``MAX_NAME`` letters, digits and single hyphens; the digest of the monitored endpoint keeps
    the names of different endpoints apart."""
    stamp = _stamp(moment)
    digest = hashlib.sha256(f"{source}|{stamp}".encode()).hexdigest()[:4] if source else ""
    name = "-".join(part for part in (_UNSAFE.sub("-", label), stamp, digest) if part)
    return re.sub(r"-+", "-", name)[:MAX_NAME].strip("-")


def retrain(sfn: Any, pipeline_arn: str, event: dict[str, Any]) -> dict[str, Any]:
    """Start the retraining ``event`` asks for, once."""
    why = trigger(event)
    if why is None:
        return {"started": False, "why": "not an ALARM state change or a scheduled event"}
    running = sfn.list_executions(
        stateMachineArn=pipeline_arn, statusFilter="RUNNING", maxResults=1
    ).get("executions", [])
    if running:
        return {"started": False, "why": f"execution {running[0]['name']} runs", **why}
    payload = _retraining_input(sfn, pipeline_arn, why)
    monitoring = payload.get("config", {}).get("monitoring", {})
    if why["reason"] == "alarm" and not monitoring.get("retrain_on_alarm", True):
        return {"started": False, "why": "monitoring.retrain_on_alarm is off", **why}
    if _exists(sfn, pipeline_arn, why["name"]):
        return {"started": False, "why": f"{why['name']} was started already", **why}
    try:
        started = sfn.start_execution(
            stateMachineArn=pipeline_arn, name=why["name"], input=json.dumps(payload)
        )
    except sfn.exceptions.ExecutionAlreadyExists:
        return {"started": False, "why": f"{why['name']} was started already", **why}
    return {"started": True, "executionArn": started["executionArn"], **why}


def _retraining_input(sfn: Any, pipeline_arn: str, why: dict[str, Any]) -> dict[str, Any]:
    done = sfn.list_executions(
        stateMachineArn=pipeline_arn, statusFilter="SUCCEEDED", maxResults=1
    ).get("executions", [])
    if not done:
        raise RetrainError(
            f"{pipeline_arn} has no succeeded execution to retrain from; run the pipeline once"
        )
    last = json.loads(sfn.describe_execution(executionArn=done[0]["executionArn"])["input"])
    earlier = last.pop("retraining", None) or {}
    last.pop("started_by", None)  # `sfn-mlops run` started that run; this one is a retraining
    config = last.setdefault("config", {})
    if earlier.get("base_data_uri"):  # a retraining of an earlier release copied its data
        config["data_uri"] = earlier["base_data_uri"]
    details = {k: v for k, v in why.items() if k != "name"}
    return {**last, "retraining": {**details, "previous_execution": done[0]["name"]}}


def _exists(sfn: Any, pipeline_arn: str, name: str) -> bool:
    """Whether this episode's execution was started (before doing its work again)."""
    arn = pipeline_arn.replace(":stateMachine:", ":execution:", 1) + f":{name}"
    try:
        sfn.describe_execution(executionArn=arn)
    except sfn.exceptions.ExecutionDoesNotExist:
        return False
    return True
