"""The small local services through plain boto3: shapes and AWS error codes."""

from __future__ import annotations

import json
import os
from pathlib import Path

import boto3
import pytest
from botocore.exceptions import ClientError

from sfn_mlops.local.cloud import LocalCloud
from sfn_mlops.local.services.sns import published_messages


def test_s3_round_trip_including_multipart_and_ranges(cloud: LocalCloud, tmp_path: Path) -> None:
    s3 = boto3.client("s3")
    s3.create_bucket(Bucket="data")
    data = os.urandom(9 * 1024 * 1024)  # above boto3's 8 MB multipart threshold
    source = tmp_path / "big.bin"
    source.write_bytes(data)
    s3.upload_file(str(source), "data", "in/big.bin")
    target = tmp_path / "back.bin"
    s3.download_file("data", "in/big.bin", str(target))
    assert target.read_bytes() == data
    ranged = s3.get_object(Bucket="data", Key="in/big.bin", Range="bytes=10-19")
    assert ranged["Body"].read() == data[10:20]
    assert ranged["ContentRange"] == f"bytes 10-19/{len(data)}"
    listing = s3.list_objects_v2(Bucket="data", Prefix="in/", Delimiter="/")
    assert [o["Key"] for o in listing["Contents"]] == ["in/big.bin"]


def test_s3_errors_are_the_modelled_exceptions(cloud: LocalCloud) -> None:
    s3 = boto3.client("s3")
    with pytest.raises(s3.exceptions.NoSuchBucket):
        s3.list_objects_v2(Bucket="missing-bucket")
    s3.create_bucket(Bucket="data")
    with pytest.raises(s3.exceptions.NoSuchKey):
        s3.get_object(Bucket="data", Key="nope")
    with pytest.raises(s3.exceptions.BucketAlreadyOwnedByYou):
        s3.create_bucket(Bucket="data")


def test_an_operation_that_is_not_emulated_fails_loudly(cloud: LocalCloud) -> None:
    s3 = boto3.client("s3")
    s3.create_bucket(Bucket="data")
    with pytest.raises(ClientError) as err:
        s3.get_bucket_versioning(Bucket="data")
    assert err.value.response["Error"]["Code"] == "NotImplemented"
    assert "s3:GetBucketVersioning" in str(err.value)


def test_botocore_still_validates_parameters(cloud: LocalCloud) -> None:
    from botocore.exceptions import ParamValidationError

    with pytest.raises(ParamValidationError):
        boto3.client("sagemaker").describe_training_job(TrainingJobName=123)  # type: ignore[arg-type]


def test_sns_publish_is_recorded(cloud: LocalCloud) -> None:
    sns = boto3.client("sns")
    topic = sns.create_topic(Name="alerts")["TopicArn"]
    assert topic == "arn:aws:sns:us-east-1:123456789012:alerts"
    message_id = sns.publish(TopicArn=topic, Subject="hi", Message="body")["MessageId"]
    (message,) = published_messages(cloud)
    assert (message["MessageId"], message["Subject"], message["Message"]) == (
        message_id,
        "hi",
        "body",
    )
    with pytest.raises(sns.exceptions.NotFoundException):
        sns.publish(TopicArn=topic + "-missing", Message="x")


def test_lambda_invoke_shapes(cloud: LocalCloud, tmp_path: Path) -> None:
    from sfn_mlops.local.services.lambda_ import FUNCTIONS

    code = tmp_path / "fn"
    code.mkdir()
    (code / "app.py").write_text(
        "def handler(event, context):\n"
        "    print('log line')\n"
        "    if event.get('fail'):\n"
        "        raise ValueError('bad input')\n"
        "    return {'remaining_ms_positive': context.get_remaining_time_in_millis() > 0}\n"
    )
    cloud.metadata.put(
        FUNCTIONS,
        "fn",
        {
            "FunctionName": "fn",
            "FunctionArn": cloud.arn("lambda", "function:fn"),
            "Handler": "app.handler",
            "CodeDir": str(code),
            "Timeout": 10,
            "MemorySize": 128,
        },
    )
    client = boto3.client("lambda")
    ok = client.invoke(FunctionName="fn", Payload=b"{}", LogType="Tail")
    assert ok["StatusCode"] == 200 and "FunctionError" not in ok
    assert json.loads(ok["Payload"].read()) == {"remaining_ms_positive": True}
    import base64

    assert "log line" in base64.b64decode(ok["LogResult"]).decode()
    failed = client.invoke(FunctionName=cloud.arn("lambda", "function:fn"), Payload=b'{"fail": 1}')
    assert failed["FunctionError"] == "Unhandled"
    body = json.loads(failed["Payload"].read())
    assert (body["errorType"], body["errorMessage"]) == ("ValueError", "bad input")
    with pytest.raises(client.exceptions.ResourceNotFoundException):
        client.invoke(FunctionName="nope", Payload=b"{}")
    with pytest.raises(client.exceptions.InvalidRequestContentException):
        client.invoke(FunctionName="fn", Payload=b"not json")


def test_a_stop_right_after_the_start_aborts_the_execution(cloud: LocalCloud) -> None:
    sfn = boto3.client("stepfunctions")
    wait = {"StartAt": "Hold", "States": {"Hold": {"Type": "Wait", "Seconds": 600, "End": True}}}
    machine = sfn.create_state_machine(
        name="Holding", definition=json.dumps(wait), roleArn="arn:aws:iam::123456789012:role/r"
    )["stateMachineArn"]
    for attempt in range(20):
        arn = sfn.start_execution(stateMachineArn=machine, name=f"early-{attempt}")["executionArn"]
        sfn.stop_execution(executionArn=arn, error="Early", cause="stopped at once")
        assert sfn.describe_execution(executionArn=arn)["status"] == "ABORTED", attempt
        events = sfn.get_execution_history(executionArn=arn, reverseOrder=True)["events"]
        assert events[0]["type"] == "ExecutionAborted", attempt


def test_an_execution_keeps_the_definition_it_started_with(cloud: LocalCloud) -> None:
    sfn = boto3.client("stepfunctions")
    role = "arn:aws:iam::123456789012:role/r"
    first = {"StartAt": "A", "States": {"A": {"Type": "Pass", "End": True}}}
    second = {"StartAt": "B", "States": {"B": {"Type": "Pass", "End": True}}}
    machine = sfn.create_state_machine(name="Changing", definition=json.dumps(first), roleArn=role)
    arn = sfn.start_execution(stateMachineArn=machine["stateMachineArn"], name="on-first")[
        "executionArn"
    ]
    sfn.update_state_machine(
        stateMachineArn=machine["stateMachineArn"], definition=json.dumps(second)
    )

    described = sfn.describe_state_machine_for_execution(executionArn=arn)

    assert json.loads(described["definition"]) == first
    assert (described["name"], described["roleArn"]) == ("Changing", role)
    assert (
        json.loads(
            sfn.describe_state_machine(stateMachineArn=machine["stateMachineArn"])["definition"]
        )
        == second
    )
    with pytest.raises(sfn.exceptions.ExecutionDoesNotExist):
        sfn.describe_state_machine_for_execution(
            executionArn=arn.replace("on-first", "never-started")
        )
