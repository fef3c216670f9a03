"""The progress view attributes a Parallel state's interleaved Task events to their own branch."""

from __future__ import annotations

import datetime as dt
import json
from typing import Any

from sfn_mlops.follow import Follower

T0 = dt.datetime(2026, 1, 1, tzinfo=dt.timezone.utc)


def _event(event_id: int, previous: int, kind: str, **details: Any) -> dict[str, Any]:
    event: dict[str, Any] = {
        "id": event_id,
        "previousEventId": previous,
        "type": kind,
        "timestamp": T0 + dt.timedelta(seconds=event_id),
    }
    if details:
        key = {
            "TaskStateEntered": "stateEnteredEventDetails",
            "TaskStateExited": "stateExitedEventDetails",
            "TaskScheduled": "taskScheduledEventDetails",
            "TaskFailed": "taskFailedEventDetails",
        }[kind]
        event[key] = details
    return event


def _scheduled(event_id: int, previous: int, job: str) -> dict[str, Any]:
    parameters = json.dumps({"ProcessingJobName": job})
    return _event(event_id, previous, "TaskScheduled", parameters=parameters)


EVENTS = [
    _event(1, 0, "TaskStateEntered", name="BiasCheck"),
    _scheduled(2, 1, "r-bias"),
    _event(3, 0, "TaskStateEntered", name="Explainability"),
    _scheduled(4, 3, "r-explain"),
    _event(5, 4, "TaskSucceeded"),
    _event(6, 5, "TaskStateExited", name="Explainability"),
    _event(7, 2, "TaskFailed", error="States.TaskFailed", cause="ClientError: bad facet"),
    _event(8, 7, "TaskStateExited", name="BiasCheck"),
]


class FakeSfn:
    def get_execution_history(self, **_: Any) -> dict[str, Any]:
        return {"events": EVENTS}

    def describe_execution(self, **_: Any) -> dict[str, Any]:
        return {"status": "FAILED"}


def test_parallel_branch_events_belong_to_their_branch() -> None:
    lines: list[str] = []
    Follower(sfn=FakeSfn(), sagemaker=None, execution_arn="arn", echo=lines.append).poll()
    assert len(lines) == 5, lines
    assert lines[0].endswith("processing job r-bias")
    assert lines[1].endswith("processing job r-explain")
    assert lines[2].startswith("  ✔ Explainability")
    assert lines[3].split() == ["✘", "BiasCheck", "States.TaskFailed"]  # the cause: in the summary
    assert lines[4].startswith("  ✘ BiasCheck") and "(failed; handled by its Catch)" in lines[4]
