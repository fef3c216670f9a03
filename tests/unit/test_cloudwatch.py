"""The local CloudWatch provider in-process: metrics, statistics and the alarm state machine.

Alarms are evaluated synchronously with an injected clock (``evaluate_alarms(now)``), so every
period and every reason is exact; no background thread runs.
"""

from __future__ import annotations

import datetime as dt
import json
from pathlib import Path
from typing import Any

import pytest

from sfn_mlops.local.cloud import LocalCloud
from sfn_mlops.local.errors import AwsError
from sfn_mlops.local.services.cloudwatch import CloudWatch
from sfn_mlops.local.services.sns import published_messages

T0 = 1_800_000_000.0  # 15/01/27 08:00:00 UTC, on a minute boundary
DIMS = [{"Name": "EndpointName", "Value": "churn"}]
ALARM_ARN = "arn:aws:cloudwatch:us-east-1:123456789012:alarm:drift"


class FakeEventBridge:
    def __init__(self) -> None:
        self.events: list[dict[str, Any]] = []

    def emit(self, **event: Any) -> None:
        self.events.append(event)


def at(seconds: float) -> dt.datetime:
    return dt.datetime.fromtimestamp(T0 + seconds, tz=dt.timezone.utc)


@pytest.fixture
def cloud(tmp_path: Path) -> LocalCloud:
    return LocalCloud(tmp_path / "ws", time_scale=1.0)


@pytest.fixture
def cw(cloud: LocalCloud) -> CloudWatch:
    return CloudWatch(cloud, background=False)


def put(cw: CloudWatch, seconds: float, **datum: Any) -> None:
    datum.setdefault("MetricName", "Drift")
    datum.setdefault("Dimensions", DIMS)
    cw.put_metric_data({"Namespace": "App", "MetricData": [{"Timestamp": at(seconds), **datum}]})


def alarm(cw: CloudWatch, **overrides: Any) -> None:
    params: dict[str, Any] = {
        "AlarmName": "drift",
        "Namespace": "App",
        "MetricName": "Drift",
        "Dimensions": DIMS,
        "Statistic": "Average",
        "Period": 60,
        "EvaluationPeriods": 1,
        "Threshold": 1.0,
        "ComparisonOperator": "GreaterThanThreshold",
    }
    params.update(overrides)
    cw.put_metric_alarm({k: v for k, v in params.items() if v is not None})


def state(cw: CloudWatch) -> tuple[str, str]:
    found = cw.describe_alarms({"AlarmNames": ["drift"]})["MetricAlarms"][0]
    return found["StateValue"], found["StateReason"]


def error(call: Any, params: dict[str, Any]) -> tuple[str, str]:
    with pytest.raises(AwsError) as caught:
        call(params)
    return caught.value.code, caught.value.message


# metrics --------------------------------------------------------------------------------------
def test_statistics_combine_values_distributions_and_statistic_sets(cw: CloudWatch) -> None:
    put(cw, 1, Value=10.0, Unit="Count")
    put(cw, 2, Values=[1.0, 3.0], Counts=[2.0, 1.0], Unit="Count")
    put(cw, 3, StatisticValues={"SampleCount": 2, "Sum": 4, "Minimum": 0.5, "Maximum": 3.5})
    put(cw, 61, Value=7.0, Unit="Count")
    result = cw.get_metric_statistics(
        {
            "Namespace": "App",
            "MetricName": "Drift",
            "Dimensions": DIMS,
            "StartTime": at(0),
            "EndTime": at(120),
            "Period": 60,
            "Statistics": ["SampleCount", "Sum", "Average", "Minimum", "Maximum"],
            "ExtendedStatistics": ["p50"],
        }
    )
    assert result["Label"] == "Drift"
    assert result["Datapoints"] == [
        {
            "Timestamp": at(0),
            "Unit": "Count",
            "SampleCount": 6.0,
            "Sum": 19.0,
            "Average": 19.0 / 6,
            "Minimum": 0.5,
            "Maximum": 10.0,
            "ExtendedStatistics": {"p50": 1.0},  # the statistic set has no values to rank
        },
        {
            "Timestamp": at(60),
            "Unit": "Count",
            "SampleCount": 1.0,
            "Sum": 7.0,
            "Average": 7.0,
            "Minimum": 7.0,
            "Maximum": 7.0,
            "ExtendedStatistics": {"p50": 7.0},
        },
    ]


def test_a_unit_filter_and_other_dimensions_select_other_datapoints(cw: CloudWatch) -> None:
    put(cw, 1, Value=1.0, Unit="Seconds")
    put(cw, 2, Value=5.0, Unit="Percent")
    put(cw, 3, Value=9.0, Dimensions=[{"Name": "EndpointName", "Value": "other"}])
    query = {"Namespace": "App", "MetricName": "Drift", "StartTime": at(0), "EndTime": at(60)}
    result = cw.get_metric_statistics(
        query | {"Dimensions": DIMS, "Period": 60, "Statistics": ["Sum"], "Unit": "Percent"}
    )
    assert [p["Sum"] for p in result["Datapoints"]] == [5.0]


def test_get_metric_data_answers_metric_stat_queries_newest_first(cw: CloudWatch) -> None:
    put(cw, 1, Value=2.0)
    put(cw, 61, Value=4.0)
    metric = {"Namespace": "App", "MetricName": "Drift", "Dimensions": DIMS}
    result = cw.get_metric_data(
        {
            "MetricDataQueries": [
                {"Id": "m1", "MetricStat": {"Metric": metric, "Period": 60, "Stat": "Maximum"}}
            ],
            "StartTime": at(0),
            "EndTime": at(120),
        }
    )
    assert result["MetricDataResults"] == [
        {
            "Id": "m1",
            "Label": "Drift",
            "Timestamps": [at(60), at(0)],
            "Values": [4.0, 2.0],
            "StatusCode": "Complete",
        }
    ]


def test_metric_math_is_refused_clearly(cw: CloudWatch) -> None:
    code, message = error(
        cw.get_metric_data,
        {"MetricDataQueries": [{"Id": "e1", "Expression": "m1 * 2"}],
         "StartTime": at(0), "EndTime": at(60)},
    )  # fmt: skip
    assert code == "ValidationError"
    assert "Metric math expressions" in message and "not supported" in message


def test_too_many_datapoints_is_refused_as_cloudwatch_does(cw: CloudWatch) -> None:
    code, message = error(
        cw.get_metric_statistics,
        {"Namespace": "App", "MetricName": "Drift", "StartTime": at(0),
         "EndTime": at(60 * 1441), "Period": 60, "Statistics": ["Sum"]},
    )  # fmt: skip
    assert code == "InvalidParameterCombination"
    assert message.startswith("You have requested up to 1,441 datapoints")


def test_list_metrics_filters_by_dimension_name(cw: CloudWatch) -> None:
    put(cw, 1, Value=1.0)
    put(cw, 1, Value=1.0, MetricName="Latency", Dimensions=[])
    listed = cw.list_metrics({"Dimensions": [{"Name": "EndpointName"}]})["Metrics"]
    assert listed == [{"Namespace": "App", "MetricName": "Drift", "Dimensions": DIMS}]


def test_datapoints_survive_a_restart_of_the_service(tmp_path: Path) -> None:
    first = CloudWatch(LocalCloud(tmp_path / "ws"), background=False)
    put(first, 1, Value=3.0)
    second = CloudWatch(LocalCloud(tmp_path / "ws"), background=False)
    assert second.list_metrics({})["Metrics"][0]["MetricName"] == "Drift"


# alarm state machine ----------------------------------------------------------------------------
def test_a_breaching_datapoint_moves_the_alarm_to_alarm_then_back_to_ok(cw: CloudWatch) -> None:
    alarm(cw)
    assert state(cw) == ("INSUFFICIENT_DATA", "Unchecked: Initial alarm creation")
    put(cw, 10, Value=5.0)
    cw.evaluate_alarms(now=T0 + 30)  # the period is not complete yet
    assert state(cw)[0] == "INSUFFICIENT_DATA"
    cw.evaluate_alarms(now=T0 + 61)
    assert state(cw) == (
        "ALARM",
        "Threshold Crossed: 1 datapoint [5.0 (15/01/27 08:00:00)] was greater than the "
        "threshold (1.0).",
    )
    put(cw, 70, Value=0.5)
    cw.evaluate_alarms(now=T0 + 121)
    assert state(cw) == (
        "OK",
        "Threshold Crossed: 1 datapoint [0.5 (15/01/27 08:01:00)] was not greater than the "
        "threshold (1.0).",
    )
    history = cw.describe_alarm_history({"AlarmName": "drift", "HistoryItemType": "StateUpdate"})
    summaries = [item["HistorySummary"] for item in history["AlarmHistoryItems"]]
    assert summaries == [
        "Alarm updated from ALARM to OK",
        "Alarm updated from INSUFFICIENT_DATA to ALARM",
    ]
    found = cw.describe_alarms({})["MetricAlarms"][0]
    assert found["StateUpdatedTimestamp"] == dt.datetime.fromtimestamp(T0 + 121, tz=dt.timezone.utc)
    assert json.loads(found["StateReasonData"])["recentDatapoints"] == [0.5]


def test_a_sliding_window_counts_a_datapoint_for_a_whole_period_after_it(
    cw: CloudWatch,
) -> None:
    """An hourly Model Monitor result, published at 08:00:10, against a one-hour alarm: the
    default sliding window sees it at the next minute's evaluation and keeps it for an hour."""
    alarm(cw, Period=3600, Statistic="Maximum", TreatMissingData="notBreaching")
    put(cw, 10, Value=5.0)
    cw.evaluate_alarms(now=T0 + 30)  # evaluations are on the minute: [07:00, 08:00)
    assert state(cw)[0] == "OK"
    cw.evaluate_alarms(now=T0 + 61)  # [07:01, 08:01)
    assert state(cw) == (
        "ALARM",
        "Threshold Crossed: 1 datapoint [5.0 (15/01/27 07:01:00)] was greater than the "
        "threshold (1.0).",
    )
    cw.evaluate_alarms(now=T0 + 3659)  # [08:00, 09:00) still holds it
    assert state(cw)[0] == "ALARM"
    cw.evaluate_alarms(now=T0 + 3661)  # [08:01, 09:01) does not
    assert state(cw)[0] == "OK"


@pytest.mark.parametrize(
    ("timezone", "first_alarm"),
    [(None, 3600), ("UTC+05:30", 1800), ("Asia/Kolkata", 1800), ("America/New_York", 3600)],
)
def test_a_wall_clock_window_judges_complete_periods_of_its_time_zone(
    cw: CloudWatch, timezone: str | None, first_alarm: float
) -> None:
    """08:00 UTC is on the hour in New York too; India's hours start at half past."""
    window = {"WallClockWindow": {"Timezone": timezone} if timezone else {}}
    alarm(cw, Period=3600, Statistic="Maximum", EvaluationWindow=window)
    put(cw, 10, Value=5.0)
    cw.evaluate_alarms(now=T0 + first_alarm - 1)  # the period holding 08:00:10 is not over
    assert state(cw)[0] == "INSUFFICIENT_DATA"
    cw.evaluate_alarms(now=T0 + first_alarm + 1)
    assert state(cw)[0] == "ALARM"


def test_m_out_of_n_datapoints_to_alarm(cw: CloudWatch) -> None:
    alarm(cw, EvaluationPeriods=3, DatapointsToAlarm=2)
    for minute, value in enumerate([5.0, 0.0, 1.0]):
        put(cw, 60 * minute + 1, Value=value)
    cw.evaluate_alarms(now=T0 + 181)
    assert state(cw)[0] == "OK"  # only 1 of 3 breached
    put(cw, 181, Value=3.0)
    cw.evaluate_alarms(now=T0 + 241)  # periods: 0.0, 1.0, 3.0 -> still 1 of 3
    assert state(cw)[0] == "OK"
    put(cw, 241, Value=2.0)
    cw.evaluate_alarms(now=T0 + 301)  # 1.0, 3.0, 2.0 -> 2 of 3
    assert state(cw) == (
        "ALARM",
        "Threshold Crossed: 2 out of the last 3 datapoints [2.0 (15/01/27 08:04:00), "
        "3.0 (15/01/27 08:03:00)] were greater than the threshold (1.0) "
        "(minimum 2 datapoints for OK -> ALARM transition).",
    )


@pytest.mark.parametrize(
    ("treat", "before", "after", "reason"),
    [
        ("missing", "OK", "INSUFFICIENT_DATA", "Insufficient Data: 1 datapoint was unknown."),
        ("ignore", "OK", "OK", "set by hand"),
        ("breaching", "OK", "ALARM",
         "Threshold Crossed: no datapoints were received for 1 period and 1 missing "
         "datapoint was treated as [Breaching]."),
        ("notBreaching", "ALARM", "OK",
         "Threshold Crossed: no datapoints were received for 1 period and 1 missing "
         "datapoint was treated as [NonBreaching]."),
    ],
)  # fmt: skip
def test_treat_missing_data(
    cw: CloudWatch, treat: str, before: str, after: str, reason: str
) -> None:
    alarm(cw, TreatMissingData=treat)
    cw.set_alarm_state({"AlarmName": "drift", "StateValue": before, "StateReason": "set by hand"})
    cw.evaluate_alarms(now=T0 + 61)
    assert state(cw) == (after, reason)


def test_missing_periods_beside_datapoints_do_not_count(cw: CloudWatch) -> None:
    alarm(cw, EvaluationPeriods=3, DatapointsToAlarm=1)
    put(cw, 61, Value=5.0)
    cw.evaluate_alarms(now=T0 + 181)
    assert state(cw)[0] == "ALARM"


def test_a_percentile_alarm(cw: CloudWatch) -> None:
    alarm(cw, Statistic=None, ExtendedStatistic="p90", Threshold=90.0,
          ComparisonOperator="GreaterThanOrEqualToThreshold")  # fmt: skip
    put(cw, 1, Values=[float(v) for v in range(1, 101)])
    cw.evaluate_alarms(now=T0 + 61)
    assert state(cw)[1].startswith(
        "Threshold Crossed: 1 datapoint [90.0 (15/01/27 08:00:00)] was greater than or equal to"
    )


def test_a_statistic_set_alarm(cw: CloudWatch) -> None:
    alarm(cw, Statistic="Maximum", ComparisonOperator="LessThanThreshold", Threshold=2.0)
    put(cw, 1, StatisticValues={"SampleCount": 3, "Sum": 3, "Minimum": 0.5, "Maximum": 1.5})
    cw.evaluate_alarms(now=T0 + 61)
    assert state(cw)[0] == "ALARM"


def test_periods_last_period_times_time_scale(tmp_path: Path) -> None:
    cw = CloudWatch(LocalCloud(tmp_path / "ws", time_scale=0.5), background=False)
    alarm(cw)  # 60 s periods are 30 s of wall time
    put(cw, 31, Value=5.0)
    cw.evaluate_alarms(now=T0 + 61)
    assert state(cw)[0] == "ALARM"


# actions and events ----------------------------------------------------------------------------
def test_a_state_change_publishes_to_sns_and_emits_an_event(
    cloud: LocalCloud, cw: CloudWatch
) -> None:
    bus = FakeEventBridge()
    cloud._services["eventbridge"] = bus
    topic = cloud.service("sns").create_topic({"Name": "alarms"})["TopicArn"]
    alarm(cw, AlarmActions=[topic], AlarmDescription="drift too high")
    put(cw, 1, Value=5.0)
    cw.evaluate_alarms(now=T0 + 61)

    (message,) = published_messages(cloud)
    assert message["Subject"] == 'ALARM: "drift" in us-east-1'
    body = json.loads(message["Message"])
    assert (body["OldStateValue"], body["NewStateValue"]) == ("INSUFFICIENT_DATA", "ALARM")
    assert body["Trigger"]["Dimensions"] == [{"value": "churn", "name": "EndpointName"}]

    (event,) = bus.events
    assert (event["source"], event["detail_type"], event["resources"]) == (
        "aws.cloudwatch", "CloudWatch Alarm State Change", [ALARM_ARN],
    )  # fmt: skip
    detail = event["detail"]
    assert detail["alarmName"] == "drift"
    assert detail["state"]["value"] == "ALARM"
    assert detail["state"]["timestamp"] == "2027-01-15T08:01:01.000+0000"
    assert detail["previousState"]["value"] == "INSUFFICIENT_DATA"
    assert detail["configuration"]["description"] == "drift too high"
    assert detail["configuration"]["metrics"][0]["metricStat"] == {
        "metric": {"namespace": "App", "name": "Drift", "dimensions": {"EndpointName": "churn"}},
        "period": 60,
        "stat": "Average",
    }
    actions = cw.describe_alarm_history({"HistoryItemType": "Action"})["AlarmHistoryItems"]
    assert actions[0]["HistorySummary"] == f"Successfully executed action {topic}"


def test_disabled_actions_publish_nothing(cloud: LocalCloud, cw: CloudWatch) -> None:
    topic = cloud.service("sns").create_topic({"Name": "alarms"})["TopicArn"]
    alarm(cw, AlarmActions=[topic])
    cw.disable_alarm_actions({"AlarmNames": ["drift"]})
    cw.set_alarm_state({"AlarmName": "drift", "StateValue": "ALARM", "StateReason": "drill"})
    assert published_messages(cloud) == []
    cw.enable_alarm_actions({"AlarmNames": ["drift"]})
    cw.set_alarm_state({"AlarmName": "drift", "StateValue": "OK", "StateReason": "drill"})
    cw.set_alarm_state({"AlarmName": "drift", "StateValue": "ALARM", "StateReason": "drill"})
    assert len(published_messages(cloud)) == 1


# requests CloudWatch refuses --------------------------------------------------------------------
@pytest.mark.parametrize(
    ("overrides", "code"),
    [
        ({"ExtendedStatistic": "p99"}, "InvalidParameterCombination"),
        ({"Statistic": None}, "InvalidParameterCombination"),
        ({"Statistic": None, "ExtendedStatistic": "p101"}, "InvalidParameterValue"),
        ({"Period": 45}, "InvalidParameterValue"),
        ({"DatapointsToAlarm": 2}, "ValidationError"),
        ({"ComparisonOperator": "LessThanLowerOrGreaterThanUpperThreshold"}, "ValidationError"),
        ({"EvaluationPeriods": 1441}, "InvalidParameterValue"),  # over a day, period < 1 h
        ({"Period": 3600, "EvaluationPeriods": 169}, "InvalidParameterValue"),  # over 7 days
        ({"EvaluationInterval": 60}, "InvalidParameterCombination"),
        ({"WarmUpConfiguration": {"WarmUpPeriodDurationInMinutes": 5}}, "ValidationError"),
        ({"EvaluationCriteria": {"PromQLCriteria": {}}}, "ValidationError"),
        ({"EvaluationWindow": {"WallClockWindow": {"Timezone": "Mars/Olympus"}}},
         "InvalidParameterValue"),
        ({"EvaluationWindow": {"WallClockWindow": {"Timezone": "+05:31"}}},
         "InvalidParameterValue"),
    ],
)
def test_put_metric_alarm_refuses(cw: CloudWatch, overrides: dict[str, Any], code: str) -> None:
    with pytest.raises(AwsError) as caught:
        alarm(cw, **overrides)
    assert caught.value.code == code


def test_unknown_alarms(cw: CloudWatch) -> None:
    params = {"AlarmName": "nope", "StateValue": "OK", "StateReason": "r"}
    assert error(cw.set_alarm_state, params) == ("ResourceNotFound", "Alarm nope not found")
    assert error(cw.delete_alarms, {"AlarmNames": ["nope"]})[0] == "ResourceNotFound"


def test_describe_filters_and_delete(cw: CloudWatch) -> None:
    alarm(cw)
    alarm(cw, AlarmName="latency", MetricName="Latency")
    cw.set_alarm_state({"AlarmName": "latency", "StateValue": "ALARM", "StateReason": "r"})

    def names(**params: Any) -> list[str]:
        return [a["AlarmName"] for a in cw.describe_alarms(params)["MetricAlarms"]]

    assert names() == ["drift", "latency"]
    assert names(AlarmNamePrefix="lat") == ["latency"]
    assert names(StateValue="INSUFFICIENT_DATA") == ["drift"]
    assert names(AlarmTypes=["CompositeAlarm"]) == []
    for_metric = cw.describe_alarms_for_metric({"Namespace": "App", "MetricName": "Latency"})
    assert [a["AlarmName"] for a in for_metric["MetricAlarms"]] == ["latency"]
    cw.delete_alarms({"AlarmNames": ["drift", "latency"]})
    assert names() == []


def test_the_background_evaluator_starts_and_stops(cloud: LocalCloud) -> None:
    cw = CloudWatch(cloud)
    alarm(cw)
    assert cw._thread is not None and cw._thread.is_alive()
    cw.shutdown()
    assert cw._thread is None
