"""The local EventBridge through plain boto3: rules, targets, events, schedules, AWS's errors."""

from __future__ import annotations

import datetime as dt
import functools
import json
import time
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

import boto3
import pytest
from botocore.exceptions import ClientError
from waiting import until

from sfn_mlops.local.cloud import LocalCloud
from sfn_mlops.local.services.eventbridge import deliveries
from sfn_mlops.local.services.sns import published_messages

PASS_MACHINE = json.dumps({"StartAt": "Done", "States": {"Done": {"Type": "Pass", "End": True}}})
ROLE = "arn:aws:iam::123456789012:role/events"
#: Deliveries and monitoring runs happen on threads: poll for them.
eventually = functools.partial(
    until, what="the delivery", timeout=5.0, poll=0.02
)


@pytest.fixture
def events(cloud: LocalCloud) -> Iterator[Any]:
    yield boto3.client("events")
    if "eventbridge" in cloud._services:
        cloud.service("eventbridge").shutdown()


def topic(name: str = "alerts") -> str:
    return str(boto3.client("sns").create_topic(Name=name)["TopicArn"])


def code_of(err: pytest.ExceptionInfo[ClientError]) -> str:
    return str(err.value.response["Error"]["Code"])


def test_rule_crud_and_listing(cloud: LocalCloud, events: Any) -> None:
    pattern = json.dumps({"source": ["sfn-mlops.test"]})
    arn = events.put_rule(Name="retrain", EventPattern=pattern, Description="d")["RuleArn"]
    assert arn == "arn:aws:events:us-east-1:123456789012:rule/retrain"
    events.put_rule(Name="nightly", ScheduleExpression="rate(1 day)", State="DISABLED")
    rule = events.describe_rule(Name="retrain")
    assert (rule["Arn"], rule["EventPattern"], rule["State"], rule["EventBusName"]) == (
        arn,
        pattern,
        "ENABLED",
        "default",
    )
    assert [r["Name"] for r in events.list_rules()["Rules"]] == ["nightly", "retrain"]
    assert [r["Name"] for r in events.list_rules(NamePrefix="re")["Rules"]] == ["retrain"]
    page = events.list_rules(Limit=1)
    assert [r["Name"] for r in page["Rules"]] == ["nightly"] and page["NextToken"]
    events.disable_rule(Name="retrain")
    assert events.describe_rule(Name="retrain")["State"] == "DISABLED"
    events.enable_rule(Name="retrain")
    assert events.describe_rule(Name="retrain")["State"] == "ENABLED"

    target = {"Id": "t1", "Arn": topic(), "Input": '{"a": 1}'}
    assert events.put_targets(Rule="retrain", Targets=[target])["FailedEntryCount"] == 0
    assert events.list_targets_by_rule(Rule="retrain")["Targets"] == [target]
    with pytest.raises(ClientError) as err:
        events.delete_rule(Name="retrain")
    assert code_of(err) == "ValidationException"
    assert err.value.response["Error"]["Message"] == "Rule can't be deleted since it has targets."
    events.remove_targets(Rule="retrain", Ids=["t1"])
    assert events.list_targets_by_rule(Rule="retrain")["Targets"] == []
    events.delete_rule(Name="retrain")
    events.delete_rule(Name="retrain")  # as AWS: deleting twice succeeds
    with pytest.raises(events.exceptions.ResourceNotFoundException):
        events.describe_rule(Name="retrain")


def test_put_events_delivers_matching_events_to_sns(cloud: LocalCloud, events: Any) -> None:
    arn = topic()
    pattern = {"source": ["sfn-mlops.test"], "detail": {"score": [{"numeric": [">", 0.5]}]}}
    events.put_rule(Name="drift", EventPattern=json.dumps(pattern))
    events.put_targets(Rule="drift", Targets=[{"Id": "sns", "Arn": arn}])
    answer = events.put_events(
        Entries=[
            {"Source": "sfn-mlops.test", "DetailType": "Drift", "Detail": '{"score": 0.2}'},
            {
                "Source": "sfn-mlops.test",
                "DetailType": "Drift",
                "Detail": '{"score": 0.9}',
                "Resources": ["arn:aws:sagemaker:us-east-1:123456789012:endpoint/e"],
            },
        ]
    )
    assert answer["FailedEntryCount"] == 0
    low_id, high_id = (entry["EventId"] for entry in answer["Entries"])
    (message,) = eventually(lambda: published_messages(cloud))
    event = json.loads(message["Message"])
    assert (event["id"], event["source"], event["detail-type"]) == (
        high_id,
        "sfn-mlops.test",
        "Drift",
    )
    assert event["detail"] == {"score": 0.9}
    assert event["resources"] == ["arn:aws:sagemaker:us-east-1:123456789012:endpoint/e"]
    assert (event["version"], event["account"], event["region"]) == (
        "0",
        "123456789012",
        "us-east-1",
    )
    assert event["time"].endswith("Z")
    (record,) = eventually(lambda: deliveries(cloud))  # recorded once Publish has answered
    assert (record["EventId"], record["Rule"], record["TargetId"], record["Status"]) == (
        high_id,
        "drift",
        "sns",
        "Delivered",
    )
    assert low_id not in {d["EventId"] for d in deliveries(cloud)}


def test_state_machine_target_gets_the_input_path(cloud: LocalCloud, events: Any) -> None:
    sfn = boto3.client("stepfunctions")
    machine = sfn.create_state_machine(name="retrain", definition=PASS_MACHINE, roleArn=ROLE)
    events.put_rule(Name="go", EventPattern='{"detail-type": [{"prefix": "Retrain"}]}')
    events.put_targets(
        Rule="go",
        Targets=[
            {
                "Id": "sm",
                "Arn": machine["stateMachineArn"],
                "RoleArn": ROLE,
                "InputPath": "$.detail",
            }
        ],
    )
    events.put_events(
        Entries=[{"Source": "me", "DetailType": "Retrain now", "Detail": '{"reason": "drift"}'}]
    )
    (execution,) = eventually(
        lambda: sfn.list_executions(stateMachineArn=machine["stateMachineArn"])["executions"]
    )
    described = sfn.describe_execution(executionArn=execution["executionArn"])
    assert json.loads(described["input"]) == {"reason": "drift"}
    # The delivery is recorded once StartExecution has answered: the execution can be listed
    # a moment before its record is written.
    (record,) = eventually(lambda: deliveries(cloud))
    assert record["Result"] == {"executionArn": execution["executionArn"]}


def test_lambda_target_is_invoked_asynchronously(
    cloud: LocalCloud, events: Any, tmp_path: Path
) -> None:
    from sfn_mlops.local.services.lambda_ import FUNCTIONS

    code, seen = tmp_path / "fn", tmp_path / "seen.json"
    code.mkdir()
    (code / "app.py").write_text(
        "import json\n"
        "def handler(event, context):\n"
        f"    open({str(seen)!r}, 'w').write(json.dumps(event))\n"
    )
    arn = cloud.arn("lambda", "function:fn")
    spec = {"FunctionName": "fn", "FunctionArn": arn, "Handler": "app.handler"}
    cloud.metadata.put(
        FUNCTIONS, "fn", spec | {"CodeDir": str(code), "Timeout": 10, "MemorySize": 128}
    )
    events.put_rule(Name="fn", EventPattern='{"source": ["me"]}')
    events.put_targets(Rule="fn", Targets=[{"Id": "fn", "Arn": arn, "Input": '{"fixed": true}'}])
    events.put_events(Entries=[{"Source": "me", "DetailType": "x", "Detail": "{}"}])
    eventually(seen.exists)
    assert eventually(lambda: seen.read_text()) == '{"fixed": true}'
    (record,) = eventually(lambda: deliveries(cloud))  # recorded once Invoke has answered
    assert record["Result"] == {"StatusCode": 202}


def test_emit_from_another_local_service(cloud: LocalCloud, events: Any) -> None:
    arn = topic()
    pattern = {"source": ["aws.cloudwatch"], "detail": {"state": {"value": ["ALARM"]}}}
    events.put_rule(Name="alarm", EventPattern=json.dumps(pattern))
    transformer = {
        "InputPathsMap": {"alarm": "$.detail.alarmName", "rs": "$.resources[0]"},
        "InputTemplate": (
            '{"alarm": "<alarm>", "resource": "<rs>", "rule": "<aws.events.rule-name>"}'
        ),
    }
    events.put_targets(
        Rule="alarm", Targets=[{"Id": "t", "Arn": arn, "InputTransformer": transformer}]
    )
    bus = cloud.service("eventbridge")
    detail = {"alarmName": "drift", "state": {"value": "ALARM"}}
    alarm_arn = cloud.arn("cloudwatch", "alarm:drift")
    first = bus.emit("aws.cloudwatch", "CloudWatch Alarm State Change", detail, [alarm_arn])
    bus.emit(
        source="aws.cloudwatch", detail_type="x", detail={"state": {"value": "OK"}}, resources=[]
    )
    (message,) = eventually(lambda: published_messages(cloud))
    assert json.loads(message["Message"]) == {
        "alarm": "drift",
        "resource": alarm_arn,
        "rule": "alarm",
    }
    assert [d["EventId"] for d in deliveries(cloud)] == [first]


def test_a_failing_target_is_recorded_not_raised(cloud: LocalCloud, events: Any) -> None:
    missing = cloud.arn("states", "stateMachine:gone")
    events.put_rule(Name="r", EventPattern='{"source": ["me"]}')
    events.put_targets(
        Rule="r", Targets=[{"Id": "gone", "Arn": missing}, {"Id": "ok", "Arn": topic()}]
    )
    answer = events.put_events(Entries=[{"Source": "me", "DetailType": "x", "Detail": "{}"}])
    assert answer["FailedEntryCount"] == 0
    records = eventually(lambda: len(deliveries(cloud)) == 2 and deliveries(cloud))
    assert [(r["TargetId"], r["Status"]) for r in records] == [
        ("gone", "Failed"),
        ("ok", "Delivered"),
    ]
    assert records[0]["ErrorCode"] == "StateMachineDoesNotExist"


def test_rate_schedule_fires_scheduled_events(cloud: LocalCloud, events: Any) -> None:
    arn = topic()
    rule_arn = events.put_rule(Name="tick", ScheduleExpression="rate(1 minute)")["RuleArn"]
    events.put_targets(Rule="tick", Targets=[{"Id": "t", "Arn": arn}])
    messages = eventually(lambda: len(published_messages(cloud)) >= 2 and published_messages(cloud))
    event = json.loads(messages[0]["Message"])
    assert (event["source"], event["detail-type"], event["detail"]) == (
        "aws.events",
        "Scheduled Event",
        {},
    )
    assert event["resources"] == [rule_arn]
    events.disable_rule(Name="tick")
    time.sleep(0.2)  # a round already under way may still deliver one
    settled = len(published_messages(cloud))
    time.sleep(0.3)  # five intervals of 60 ms
    assert len(published_messages(cloud)) == settled


def test_cron_schedule_fires_at_its_times_in_scaled_time(cloud: LocalCloud, events: Any) -> None:
    cloud.time_scale = 0.0001  # an hour of local time lasts 0.36 s
    arn = topic()
    events.put_rule(Name="hourly", ScheduleExpression="cron(0 * ? * * *)")
    events.put_targets(Rule="hourly", Targets=[{"Id": "t", "Arn": arn}])
    messages = eventually(lambda: len(published_messages(cloud)) >= 2 and published_messages(cloud))
    times = [dt.datetime.fromisoformat(json.loads(m["Message"])["time"]) for m in messages[:2]]
    assert (times[0].minute, times[0].second) == (0, 0)  # the cron time itself
    assert times[1] - times[0] == dt.timedelta(hours=1)
    assert times[0] - dt.datetime.now(dt.timezone.utc) < dt.timedelta(hours=2)


@pytest.mark.parametrize(
    "expression",
    [
        "cron(0 12 * * ? *)",
        "cron(15 10 ? * 6L 2026-2027)",
        "cron(0 18 ? * MON-FRI *)",
        "cron(0 8 1W * ? *)",
        "cron(0/15 * ? * 3#2 *)",
    ],
)
def test_valid_cron_expressions_are_stored(events: Any, expression: str) -> None:
    events.put_rule(Name="c", ScheduleExpression=expression, State="DISABLED")
    assert events.describe_rule(Name="c")["ScheduleExpression"] == expression


@pytest.mark.parametrize(
    "expression",
    ["cron(0 12 ? * ? *)", "cron(60 * ? * * *)", "cron(0 * ? * 8 *)", "cron(0 12 * *)"],
)
def test_invalid_cron_is_aws_validation_error(events: Any, expression: str) -> None:
    with pytest.raises(ClientError) as err:
        events.put_rule(Name="c", ScheduleExpression=expression)
    assert code_of(err) == "ValidationException"
    assert err.value.response["Error"]["Message"] == "Parameter ScheduleExpression is not valid."


def test_put_events_entry_errors(cloud: LocalCloud, events: Any) -> None:
    answer = events.put_events(
        Entries=[
            {"Source": "me", "DetailType": "x", "Detail": "{not json"},
            {"Source": "me", "DetailType": "x", "Detail": "[1, 2]"},
            {"Source": "aws.sagemaker", "DetailType": "x", "Detail": "{}"},
            {"Source": "me", "DetailType": "x", "Detail": "{}", "EventBusName": "other"},
            {"Source": "me", "DetailType": "x"},
            {"Source": "me", "DetailType": "x", "Detail": "{}"},
        ]
    )
    assert answer["FailedEntryCount"] == 5
    codes = [entry.get("ErrorCode") for entry in answer["Entries"]]
    assert codes == [
        "MalformedDetail",
        "MalformedDetail",
        "NotAuthorizedForSourceException",
        "ResourceNotFoundException",
        "InvalidArgument",
        None,
    ]
    assert "EventId" in answer["Entries"][-1]


@pytest.mark.parametrize(
    ("call", "code"),
    [
        (
            lambda e: e.put_rule(Name="r", EventPattern='{"source": "x"}'),
            "InvalidEventPatternException",
        ),
        (lambda e: e.put_rule(Name="r", EventPattern="{nope"), "InvalidEventPatternException"),
        (
            lambda e: e.put_rule(Name="r", ScheduleExpression="cron(0 12 * * * *)"),
            "ValidationException",
        ),
        (
            lambda e: e.put_rule(Name="r", ScheduleExpression="rate(1 minutes)"),
            "ValidationException",
        ),
        (lambda e: e.put_rule(Name="r", ScheduleExpression="every day"), "ValidationException"),
        (lambda e: e.put_rule(Name="r"), "ValidationException"),
        (
            lambda e: e.put_rule(Name="r", EventPattern='{"a": [1]}', EventBusName="ops"),
            "ResourceNotFoundException",
        ),
        (lambda e: e.enable_rule(Name="none"), "ResourceNotFoundException"),
        (
            lambda e: e.put_targets(
                Rule="none", Targets=[{"Id": "a", "Arn": "arn:aws:sns:us-east-1:1:t"}]
            ),
            "ResourceNotFoundException",
        ),
    ],
)
def test_request_errors(events: Any, call: Callable[[Any], Any], code: str) -> None:
    with pytest.raises(ClientError) as err:
        call(events)
    assert code_of(err) == code


@pytest.mark.parametrize(
    "target",
    [
        {"Id": "q", "Arn": "arn:aws:sqs:us-east-1:123456789012:queue"},
        {"Id": "i", "Arn": "arn:aws:sns:us-east-1:123456789012:t", "Input": "not json"},
        {"Id": "p", "Arn": "arn:aws:sns:us-east-1:123456789012:t", "InputPath": "detail"},
        {"Id": "b", "Arn": "arn:aws:sns:us-east-1:123456789012:t", "Input": "{}", "InputPath": "$"},
    ],
)
def test_targets_local_mode_cannot_deliver_are_rejected(
    events: Any, target: dict[str, Any]
) -> None:
    events.put_rule(Name="r", EventPattern='{"source": ["me"]}')
    with pytest.raises(ClientError) as err:
        events.put_targets(Rule="r", Targets=[target])
    assert code_of(err) == "ValidationException"


def test_too_many_targets(events: Any) -> None:
    events.put_rule(Name="r", EventPattern='{"source": ["me"]}')
    targets = [{"Id": f"t{i}", "Arn": "arn:aws:sns:us-east-1:123456789012:t"} for i in range(6)]
    with pytest.raises(events.exceptions.LimitExceededException):
        events.put_targets(Rule="r", Targets=targets)


def test_test_event_pattern(events: Any) -> None:
    event = {
        "id": "1",
        "account": "123456789012",
        "source": "aws.sagemaker",
        "time": "2024-05-01T12:00:00Z",
        "region": "us-east-1",
        "detail-type": "SageMaker Model Package State Change",
        "resources": [],
        "detail": {"ModelApprovalStatus": "Approved"},
    }
    pattern = {"source": ["aws.sagemaker"], "detail": {"ModelApprovalStatus": ["Approved"]}}
    result = events.test_event_pattern(EventPattern=json.dumps(pattern), Event=json.dumps(event))
    assert result["Result"] is True
    pattern["detail"] = {"ModelApprovalStatus": [{"anything-but": "Approved"}]}
    result = events.test_event_pattern(EventPattern=json.dumps(pattern), Event=json.dumps(event))
    assert result["Result"] is False
    with pytest.raises(events.exceptions.InvalidEventPatternException):
        events.test_event_pattern(EventPattern='{"source": []}', Event=json.dumps(event))
    with pytest.raises(ClientError) as err:
        events.test_event_pattern(EventPattern=json.dumps(pattern), Event='{"source": "x"}')
    assert code_of(err) == "ValidationException"
