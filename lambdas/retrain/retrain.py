"""Starts a retraining when a monitoring alarm goes to ALARM, or when the schedule fires.

One alarm episode starts at most one retraining, however often its event arrives: the
execution is named after the alarm and the moment it entered ALARM, and Step Functions starts
a name only once (the same name and input again is answered with the running execution; after
it ends, with ExecutionAlreadyExists, taken here as "already started"). A retraining also waits
for none: while any execution of the pipeline runs, a new alarm is only logged.

The retraining runs the config of the newest execution that succeeded (the one that built the
model in service), with a ``retraining`` key saying why.
"""

from __future__ import annotations

import hashlib
import json
import re
from typing import Any

ALARM_STATE_CHANGE = "CloudWatch Alarm State Change"
SCHEDULED_EVENT = "Scheduled Event"
_UNSAFE = re.compile(r"[^A-Za-z0-9]+")
#: The pipeline names its jobs <execution>-<step> within SageMaker's 63 characters.
MAX_NAME = 52
_STAMP = re.compile(r"[^0-9TZ]")


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
        return {
            "reason": "alarm",
            "alarm": alarm,
            "alarm_reason": state.get("reason", ""),
            "since": since,
            "name": _name("retrain", alarm, since),
        }
    if kind == SCHEDULED_EVENT:
        when = str(event.get("time", ""))
        return {"reason": "schedule", "since": when, "name": _name("scheduled", "", when)}
    return None


def _name(prefix: str, alarm: str, since: str) -> str:
    """An execution name for this episode that the pipeline's job names can carry: at most
    ``MAX_NAME`` letters, digits and single hyphens (the CLI's run-name rule)."""
    stamp = _STAMP.sub("", since.split(".")[0].split("+")[0])[:16]  # 20261203T100000Z
    digest = hashlib.sha256(f"{alarm}|{since}".encode()).hexdigest()[:8]
    label = alarm.partition("-drift-")[2] and "drift-" + alarm.partition("-drift-")[2]
    label = label or ("quality" if alarm.endswith("-model-quality") else alarm)
    room = MAX_NAME - len(prefix) - len(stamp) - len(digest) - 3
    label = _UNSAFE.sub("-", label)[: max(room, 0)]
    name = "-".join(part for part in (prefix, label, stamp, digest) if part)
    return re.sub(r"-+", "-", name)


def retrain(sfn: Any, pipeline_arn: str, event: dict[str, Any]) -> dict[str, Any]:
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
    last.pop("retraining", None)
    details = {k: v for k, v in why.items() if k != "name"}
    return {**last, "retraining": {**details, "previous_execution": done[0]["name"]}}
