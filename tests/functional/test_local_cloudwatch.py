"""CloudWatch through the local server: boto3's own requests, parsed and answered as AWS does."""

from __future__ import annotations

import datetime as dt
import time
from collections.abc import Iterator
from typing import Any

import boto3
import botocore.model
import pytest
from botocore.exceptions import ClientError

from sfn_mlops.local.cloud import LocalCloud

NOW = dt.datetime.now(dt.timezone.utc).replace(microsecond=0)
DIMS = [{"Name": "EndpointName", "Value": "churn"}]


@pytest.fixture
def cw(cloud: LocalCloud) -> Iterator[Any]:
    """A boto3 client of the served cloud (time scale 0.001: a 60 s period lasts 60 ms)."""
    yield boto3.client("cloudwatch")
    if "cloudwatch" in cloud._services:
        cloud.service("cloudwatch").shutdown()


def _alarm(cw: Any, **overrides: Any) -> None:
    """An alarm that keeps its state while no data comes (``ignore``), whatever the clock."""
    cw.put_metric_alarm(
        **{
            "AlarmName": "drift",
            "Namespace": "SfnMlops/Monitoring",
            "MetricName": "feature_baseline_drift",
            "Dimensions": DIMS,
            "Statistic": "Maximum",
            "Period": 60,
            "EvaluationPeriods": 1,
            "Threshold": 0.5,
            "ComparisonOperator": "GreaterThanThreshold",
            "TreatMissingData": "ignore",
            **overrides,
        }
    )


def test_metric_data_and_its_statistics(cw: Any) -> None:
    cw.put_metric_data(
        Namespace="SfnMlops/Monitoring",
        MetricData=[
            {"MetricName": "feature_baseline_drift", "Dimensions": DIMS, "Timestamp": NOW,
             "Value": 0.25, "Unit": "None"},
            {"MetricName": "feature_baseline_drift", "Dimensions": DIMS, "Timestamp": NOW,
             "Values": [0.5, 1.0], "Counts": [1, 1], "Unit": "None"},
        ],
    )  # fmt: skip
    result = cw.get_metric_statistics(
        Namespace="SfnMlops/Monitoring",
        MetricName="feature_baseline_drift",
        Dimensions=DIMS,
        StartTime=NOW - dt.timedelta(minutes=5),
        EndTime=NOW + dt.timedelta(minutes=5),
        Period=600,
        Statistics=["Maximum", "SampleCount"],
        ExtendedStatistics=["p50"],
    )
    (point,) = result["Datapoints"]
    assert (point["Maximum"], point["SampleCount"], point["ExtendedStatistics"]) == (
        1.0, 3.0, {"p50": 0.5},
    )  # fmt: skip
    listed = cw.list_metrics(Namespace="SfnMlops/Monitoring")["Metrics"]
    assert listed == [
        {"Namespace": "SfnMlops/Monitoring", "MetricName": "feature_baseline_drift",
         "Dimensions": DIMS},
    ]  # fmt: skip


def test_an_alarm_set_and_described(cw: Any) -> None:
    _alarm(cw)
    cw.set_alarm_state(AlarmName="drift", StateValue="ALARM", StateReason="drill")
    (found,) = cw.describe_alarms(AlarmNames=["drift"])["MetricAlarms"]
    assert (found["StateValue"], found["StateReason"], found["Threshold"]) == (
        "ALARM", "drill", 0.5,
    )  # fmt: skip
    assert found["AlarmArn"] == "arn:aws:cloudwatch:us-east-1:123456789012:alarm:drift"
    assert isinstance(found["StateUpdatedTimestamp"], dt.datetime)
    assert cw.describe_alarms(StateValue="OK")["MetricAlarms"] == []
    history = cw.describe_alarm_history(AlarmName="drift", HistoryItemType="StateUpdate")
    assert history["AlarmHistoryItems"][0]["HistorySummary"] == (
        "Alarm updated from INSUFFICIENT_DATA to ALARM"
    )


def test_an_unknown_alarm_is_resource_not_found(cw: Any) -> None:
    with pytest.raises(ClientError) as caught:
        cw.set_alarm_state(AlarmName="nope", StateValue="OK", StateReason="r")
    error = caught.value.response["Error"]
    assert (error["Code"], error["Message"], error["Type"]) == (
        "ResourceNotFound", "Alarm nope not found", "Sender",
    )  # fmt: skip
    assert caught.value.response["ResponseMetadata"]["HTTPStatusCode"] == 404
    assert isinstance(caught.value, cw.exceptions.ResourceNotFound)


def test_statistic_and_extended_statistic_together_are_refused(cw: Any) -> None:
    with pytest.raises(cw.exceptions.InvalidParameterCombinationException) as caught:
        cw.put_metric_alarm(
            AlarmName="both", Namespace="N", MetricName="M", Statistic="Average",
            ExtendedStatistic="p99", Period=60, EvaluationPeriods=1, Threshold=1.0,
            ComparisonOperator="GreaterThanThreshold",
        )  # fmt: skip
    assert caught.value.response["Error"]["Code"] == "InvalidParameterCombination"


def test_the_service_evaluates_alarms_in_the_background(cw: Any) -> None:
    _alarm(cw)
    cw.put_metric_data(
        Namespace="SfnMlops/Monitoring",
        MetricData=[{"MetricName": "feature_baseline_drift", "Dimensions": DIMS, "Value": 0.9}],
    )
    deadline = time.monotonic() + 5
    while time.monotonic() < deadline:
        (found,) = cw.describe_alarms(AlarmNames=["drift"])["MetricAlarms"]
        if found["StateValue"] != "INSUFFICIENT_DATA":
            break
        time.sleep(0.02)
    assert found["StateValue"] == "ALARM"
    assert found["StateReason"].startswith("Threshold Crossed: 1 datapoint [0.9 (")


@pytest.mark.parametrize("protocol", ["smithy-rpc-v2-cbor", "json", "query"])
def test_every_protocol_of_the_model_is_answered(
    cloud: LocalCloud, monkeypatch: pytest.MonkeyPatch, protocol: str
) -> None:
    """boto3 speaks json today; other SDKs speak CloudWatch's CBOR or its older query protocol."""
    monkeypatch.setattr(botocore.model, "PRIORITY_ORDERED_SUPPORTED_PROTOCOLS", (protocol,))
    client = boto3.client("cloudwatch")
    assert client.meta.service_model.resolved_protocol == protocol
    client.put_metric_data(Namespace="N", MetricData=[{"MetricName": "M", "Value": 2.0}])
    now = dt.datetime.now(dt.UTC)  # not the module's NOW: the suite may reach here minutes later
    result = client.get_metric_statistics(
        Namespace="N",
        MetricName="M",
        StartTime=now - dt.timedelta(minutes=5),
        EndTime=now + dt.timedelta(minutes=5),
        Period=600,
        Statistics=["Sum"],
    )
    assert [p["Sum"] for p in result["Datapoints"]] == [2.0]
    with pytest.raises(client.exceptions.ResourceNotFound):
        client.set_alarm_state(AlarmName="nope", StateValue="OK", StateReason="r")
    cloud.service("cloudwatch").shutdown()
