"""SetUpMonitoring's model-quality job definition: the window of captures it scores."""

from __future__ import annotations

from collections.abc import Callable
from types import ModuleType
from typing import Any

import pytest


@pytest.mark.parametrize(
    ("offsets", "window"),
    [
        ({}, {}),  # the last hour, Model Monitor's default
        (
            {"start_time_offset": "-P8D", "end_time_offset": "-P1D"},
            {"StartTimeOffset": "-P8D", "EndTimeOffset": "-P1D"},
        ),
    ],
)
def test_late_ground_truth_widens_the_window(
    load_lambda: Callable[..., list[ModuleType]], offsets: dict[str, str], window: dict[str, Any]
) -> None:
    (monitoring,) = load_lambda("set_up_monitoring", "monitoring")
    quality = {"start_time_offset": None, "end_time_offset": None, **offsets}
    assert monitoring._window(quality) == window


class _Schedules:
    """DescribeMonitoringSchedule answers in turn; deletions recorded."""

    class exceptions:  # noqa: N801 - boto3's attribute name
        ResourceNotFound = KeyError

    def __init__(self, *answers: tuple[str, str]) -> None:
        self.answers = list(answers)
        self.deleted: list[str] = []

    def describe_monitoring_schedule(self, MonitoringScheduleName: str) -> dict[str, Any]:  # noqa: N803
        status, definition = self.answers.pop(0) if len(self.answers) > 1 else self.answers[0]
        return {
            "MonitoringScheduleStatus": status,
            "MonitoringScheduleConfig": {"MonitoringJobDefinitionName": definition},
        }

    def update_monitoring_schedule(self, **_: Any) -> None:
        pass

    def delete_data_quality_job_definition(self, JobDefinitionName: str) -> None:  # noqa: N803
        self.deleted.append(JobDefinitionName)


@pytest.mark.parametrize(
    ("answers", "deleted"),
    [
        ([("Scheduled", "old"), ("Pending", "old"), ("Scheduled", "new")], ["old"]),
        ([("Scheduled", "old"), ("Failed", "old")], []),  # the update did not take
        ([("Scheduled", "old"), ("Pending", "old")], []),  # still pending: kept
    ],
)
def test_the_old_definition_goes_only_once_the_schedule_runs_the_new_one(
    load_lambda: Callable[..., list[ModuleType]],
    monkeypatch: pytest.MonkeyPatch,
    answers: list[tuple[str, str]],
    deleted: list[str],
) -> None:
    (monitoring,) = load_lambda("set_up_monitoring", "monitoring")
    monkeypatch.setattr(monitoring.time, "sleep", lambda _: None)
    sagemaker = _Schedules(*answers)
    monitoring._point_schedule(sagemaker, "s", "new", monitoring.DATA_QUALITY, "cron(0 * ? * * *)")
    assert sagemaker.deleted == deleted
