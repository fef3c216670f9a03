"""The demo's timeline: each step read back from what the services say, and why it is open."""

from __future__ import annotations

import datetime as dt
import json
from typing import Any

import pytest

from sfn_mlops import loop_timeline as timeline
from sfn_mlops.loop_timeline import LoopOpen

PREFIX = "s3://bucket/runs/drift-1"


def _exited(state: str, output: dict[str, Any], second: int = 0) -> dict[str, Any]:
    return {
        "timestamp": dt.datetime(2026, 12, 7, 22, 0, second, tzinfo=dt.UTC),
        "stateExitedEventDetails": {"name": state, "output": json.dumps(output)},
    }


def _evaluation(new: float, old: float, *, beats: bool, test_from: str = "recent") -> Any:
    evaluation = {
        "metric": "rmse",
        "value": new,
        "champion": {"present": True, "value": old, "beats": beats},
        "data": {"test_from": test_from, "recent_rows": 3000},
    }
    return [_exited("ReadEvaluation", {"evaluation": evaluation}, second=5)]


def test_the_comparison_names_both_scores_and_the_recent_rows() -> None:
    text = timeline.comparison(_evaluation(2.0, 4.0, beats=True))
    assert "rmse 2 new, 4 production (50% better)" in text
    assert "the 3000 recent rows only" in text


@pytest.mark.parametrize(
    ("events", "why"),
    [
        (_evaluation(4.1, 4.0, beats=False), "does not beat production (rmse 4.1 new, 4 prod"),
        (_evaluation(2.0, 4.0, beats=True, test_from="configured"), "not on recent rows"),
        ([], "ended before its evaluation"),
    ],
)
def test_a_comparison_that_does_not_close_the_loop_says_why(
    events: list[dict[str, Any]], why: str
) -> None:
    with pytest.raises(LoopOpen, match=why.replace("(", r"\(").replace(")", r"\)")):
        timeline.comparison(events)


def test_exactly_one_retraining_or_the_others_are_named() -> None:
    assert timeline.check_one_retraining(["drift-1"], "drift-1") == ""
    why = timeline.check_one_retraining(["drift-1", "quality-2"], "drift-1")
    assert "2 retrainings" in why and "quality-2 beside drift-1" in why
    assert "0 retrainings" in timeline.check_one_retraining([], "drift-1")


@pytest.mark.parametrize(
    ("config", "phrase"),
    [
        (
            {"BlueGreenUpdatePolicy": {"TrafficRoutingConfiguration": {
                "Type": "CANARY", "WaitIntervalInSeconds": 60,
                "CanarySize": {"Type": "CAPACITY_PERCENT", "Value": 10}}}},
            "canary deployment: 10% of capacity first, the rest after 60 s",
        ),
        (
            {"BlueGreenUpdatePolicy": {"TrafficRoutingConfiguration": {
                "Type": "LINEAR", "WaitIntervalInSeconds": 30,
                "LinearStepSize": {"Type": "INSTANCE_COUNT", "Value": 2}}}},
            "linear deployment: 2 instances every 30 s",
        ),
        (
            {"RollingUpdatePolicy": {
                "MaximumBatchSize": {"Type": "CAPACITY_PERCENT", "Value": 50}}},
            "rolling deployment, 50% of capacity per batch",
        ),
        ({}, "all-at-once deployment"),
    ],
)  # fmt: skip
def test_the_deployment_config_in_words(config: dict[str, Any], phrase: str) -> None:
    assert timeline.traffic_phrase(config) == phrase


class FakeSageMaker:
    """DescribeEndpoint and the monitoring look-ups, answering what the test sets."""

    def __init__(self, serving: str, constraints: dict[str, str]) -> None:
        self.serving, self.constraints = serving, constraints

    def describe_endpoint(self, EndpointName: str) -> dict[str, Any]:  # noqa: N803
        return {"EndpointConfigName": self.serving, "LastDeploymentConfig": {}}

    def describe_monitoring_schedule(self, MonitoringScheduleName: str) -> dict[str, Any]:  # noqa: N803
        kind = "ModelQuality" if "model" in MonitoringScheduleName else "DataQuality"
        config = {"MonitoringJobDefinitionName": MonitoringScheduleName, "MonitoringType": kind}
        return {"MonitoringScheduleConfig": config}

    def describe_data_quality_job_definition(self, JobDefinitionName: str) -> dict[str, Any]:  # noqa: N803
        uri = self.constraints[JobDefinitionName]
        return {"DataQualityBaselineConfig": {"ConstraintsResource": {"S3Uri": uri}}}

    def describe_model_quality_job_definition(self, JobDefinitionName: str) -> dict[str, Any]:  # noqa: N803
        uri = self.constraints[JobDefinitionName]
        return {"ModelQualityBaselineConfig": {"ConstraintsResource": {"S3Uri": uri}}}


def test_a_rolled_back_deployment_does_not_count() -> None:
    deployed = {"EndpointName": "ep", "EndpointConfigName": "drift-1-config"}
    events = [_exited("DeployModel", {"deployment": deployed})]
    assert "ep serves drift-1-config" in timeline.deployment(
        events, FakeSageMaker("drift-1-config", {})
    )
    with pytest.raises(LoopOpen, match="ep serves run-0-config, not the new drift-1-config"):
        timeline.deployment(events, FakeSageMaker("run-0-config", {}))


def test_the_baselines_are_read_back_from_the_schedules_job_definitions() -> None:
    monitored = {
        "monitoring": {"schedules": ["ep-data-quality", "ep-model-quality"]},
        "run": {"prefix": PREFIX},
    }
    events = [_exited("SetUpMonitoring", monitored)]
    new = {
        "ep-data-quality": f"{PREFIX}/monitoring/data-quality/constraints.json",
        "ep-model-quality": f"{PREFIX}/monitoring/model-quality/constraints.json",
    }
    assert f"{PREFIX}/monitoring/" in timeline.baselines(events, FakeSageMaker("c", new))
    stale = {**new, "ep-model-quality": "s3://bucket/runs/run-0/monitoring/m/constraints.json"}
    with pytest.raises(LoopOpen, match="ep-model-quality still judges against s3://bucket/runs/run-0"):
        timeline.baselines(events, FakeSageMaker("c", stale))


def test_the_alarm_can_be_ok_once_the_breach_leaves_its_window() -> None:
    alarm = {"Period": 3600, "EvaluationPeriods": 1}
    breached = dt.datetime(2026, 12, 7, 22, 40, tzinfo=dt.UTC)
    assert timeline.ok_due(alarm, breached, 1.0) == breached + dt.timedelta(seconds=3660)
    assert timeline.ok_due(alarm, breached, 0.01) == breached + dt.timedelta(seconds=36.6)
    assert timeline.window_phrase(alarm, 1.0) == "60 min"
    assert timeline.window_phrase({"Period": 90, "EvaluationPeriods": 1}, 1.0) == "90 s"
    assert timeline.window_phrase(alarm, 0.01) == "60 min (36 s at time scale 0.01)"


def test_each_step_is_numbered_and_an_open_loop_names_the_next() -> None:
    lines: list[str] = []
    steps = timeline.Timeline(echo=lines.append)
    steps.step("alarm fired", dt.datetime(2026, 12, 7, 22, 40, 1, tzinfo=dt.UTC))
    error = steps.open("no retraining started")
    assert lines == [
        "  [1/7] 22:40:01  alarm fired",
        "  [2/7] did not happen: no retraining started",
    ]
    assert str(error) == "no retraining started"


def test_back_to_ok_means_every_alarm_and_gives_the_last_turn() -> None:
    early = dt.datetime(2026, 12, 7, 23, 0, tzinfo=dt.UTC)
    late = early + dt.timedelta(seconds=30)
    ok = [{"StateValue": "OK", "StateUpdatedTimestamp": t} for t in (early, late)]
    assert timeline.alarms_back_to_ok(lambda: ok, due=early, timeout=0) == late
    mixed = [ok[0], {"StateValue": "ALARM", "StateUpdatedTimestamp": early}]
    assert timeline.alarms_back_to_ok(lambda: mixed, due=early, timeout=0) is None
    assert timeline.alarms_back_to_ok(lambda: [], due=early, timeout=0) is None


def test_the_demo_knows_every_name_the_retrain_lambda_gives() -> None:
    import importlib.util
    from pathlib import Path

    path = Path(__file__).resolve().parents[2] / "lambdas" / "retrain" / "retrain.py"
    spec = importlib.util.spec_from_file_location("retrain_names", path)
    assert spec and spec.loader
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    assert module.RETRAINING_PREFIXES == timeline.RETRAINING_PREFIXES


def test_retrainings_since_stop_at_the_first_older_execution() -> None:
    """ListExecutions gives the newest first: nothing older than ``since`` is paged through."""
    since = dt.datetime(2026, 12, 7, 23, 0, tzinfo=dt.UTC)

    def execution(name: str, minutes: int) -> dict[str, Any]:
        return {"name": name, "startDate": since + dt.timedelta(minutes=minutes)}

    pages = [
        {"executions": [execution("quality-2", 9), execution("run-3", 5)]},
        {"executions": [execution("drift-1", 1), execution("drift-0", -1)]},
        {"executions": [execution("never-read", -9)]},
    ]
    read: list[int] = []

    class Sfn:
        def get_paginator(self, operation: str) -> Any:
            assert operation == "list_executions"
            return self

        def paginate(self, stateMachineArn: str) -> Any:  # noqa: N803
            for number, page in enumerate(pages):
                read.append(number)
                yield page

    found = timeline.retrainings_since(Sfn(), "arn:machine", since)
    assert [item["name"] for item in found] == ["drift-1", "quality-2"]
    assert read == [0, 1]
