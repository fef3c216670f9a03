"""The local service's wire protocols: any AWS client, AWS's validation, a server that stays up."""

from __future__ import annotations

import http.client
import json
import os
import socket
import subprocess
import sys
import urllib.request
from pathlib import Path
from typing import Any

import boto3
import pytest
from botocore.config import Config
from botocore.exceptions import ClientError

from sfn_mlops.local.cloud import LocalCloud
from sfn_mlops.local.server import LocalServer

ROLE = "arn:aws:iam::123456789012:role/pipeline"
XGBOOST = "683313688378.dkr.ecr.us-east-1.amazonaws.com/sagemaker-xgboost:3.0-5"
PASS_DEFINITION = json.dumps({"StartAt": "Done", "States": {"Done": {"Type": "Pass", "End": True}}})


def _processing_request(**overrides: Any) -> dict[str, Any]:
    request: dict[str, Any] = {
        "ProcessingJobName": "validated",
        "RoleArn": ROLE,
        "AppSpecification": {"ImageUri": XGBOOST, "ContainerEntrypoint": ["python3", "x.py"]},
        "ProcessingResources": {
            "ClusterConfig": {
                "InstanceCount": 1,
                "InstanceType": "ml.m5.large",
                "VolumeSizeInGB": 30,
            }
        },
    }
    request.update(overrides)
    return request


def _unvalidated_sagemaker() -> Any:
    """What Step Functions does: send the request as written; the service validates it."""
    return boto3.client("sagemaker", config=Config(parameter_validation=False))


def _error(call: Any, **kwargs: Any) -> dict[str, str]:
    with pytest.raises(ClientError) as caught:
        call(**kwargs)
    return dict(caught.value.response["Error"])


# validation as AWS validates --------------------------------------------------------------
def test_a_missing_required_member_is_a_validation_exception_naming_it(cloud: LocalCloud) -> None:
    request = _processing_request()
    del request["RoleArn"]
    error = _error(_unvalidated_sagemaker().create_processing_job, **request)
    assert error == {
        "Code": "ValidationException",
        "Message": "1 validation error detected: Value null at 'roleArn' failed to satisfy "
        "constraint: Member must not be null",
    }
    assert cloud.metadata.list("sagemaker:processing-job") == []


def test_a_string_where_the_model_says_integer_is_a_serialization_exception(
    cloud: LocalCloud,
) -> None:
    request = _processing_request()
    request["ProcessingResources"]["ClusterConfig"]["VolumeSizeInGB"] = "30"
    error = _error(_unvalidated_sagemaker().create_processing_job, **request)
    assert error["Code"] == "SerializationException"
    assert error["Message"] == "STRING_VALUE can not be converted to an Integer"


def test_lengths_ranges_enums_and_patterns_are_checked_together(cloud: LocalCloud) -> None:
    request = _processing_request(ProcessingJobName="bad_name!")
    request["ProcessingResources"]["ClusterConfig"]["InstanceCount"] = 0
    request["ProcessingResources"]["ClusterConfig"]["InstanceType"] = "ml.tiny"
    error = _error(_unvalidated_sagemaker().create_processing_job, **request)
    message = error["Message"]
    assert error["Code"] == "ValidationException"
    assert message.startswith("3 validation errors detected: ")
    assert (
        "Value 'bad_name!' at 'processingJobName' failed to satisfy constraint: Member must "
        "satisfy regular expression pattern: [a-zA-Z0-9](-*[a-zA-Z0-9]){0,62}" in message
    )
    assert (
        "Value '0' at 'processingResources.clusterConfig.instanceCount' failed to satisfy "
        "constraint: Member must have value greater than or equal to 1" in message
    )
    assert (
        "Value 'ml.tiny' at 'processingResources.clusterConfig.instanceType' failed to satisfy "
        "constraint: Member must satisfy enum value set: [ml.t3.medium, " in message
    )


def test_step_functions_names_are_checked_against_the_model(cloud: LocalCloud) -> None:
    sfn = boto3.client("stepfunctions", config=Config(parameter_validation=False))
    error = _error(sfn.create_state_machine, name="", definition=PASS_DEFINITION, roleArn=ROLE)
    assert error["Code"] == "ValidationException"
    assert (
        "at 'name' failed to satisfy constraint: Member must have length greater than or "
        in (error["Message"])
    )


# any client, the server stays up ------------------------------------------------------------
def test_the_aws_cli_lists_objects_and_executions(cloud: LocalCloud, tmp_path: Path) -> None:
    s3 = boto3.client("s3")
    s3.create_bucket(Bucket="cli-bucket")
    s3.put_object(Bucket="cli-bucket", Key="data/train.csv", Body=b"1,2\n")
    sfn = boto3.client("stepfunctions")
    machine = sfn.create_state_machine(name="Tiny", definition=PASS_DEFINITION, roleArn=ROLE)
    sfn.start_execution(stateMachineArn=machine["stateMachineArn"], name="by-boto3")
    execution = machine["stateMachineArn"].replace(":stateMachine:", ":execution:") + ":by-boto3"
    cloud.service("sfn").wait(execution, 10)

    def aws(*args: str) -> str:
        env = dict(os.environ, AWS_CONFIG_FILE=str(tmp_path / "none"), AWS_PAGER="")
        cli = Path(sys.executable).with_name("aws")
        done = subprocess.run(
            [str(cli), *args], env=env, capture_output=True, text=True, timeout=60
        )
        assert done.returncode == 0, done.stderr
        return done.stdout

    assert "data/train.csv" in aws("s3", "ls", "s3://cli-bucket/", "--recursive")
    listed = json.loads(
        aws("stepfunctions", "list-executions", "--state-machine-arn", machine["stateMachineArn"])
    )
    assert [(e["name"], e["status"]) for e in listed["executions"]] == [("by-boto3", "SUCCEEDED")]


def test_an_operation_not_emulated_fails_loudly(cloud: LocalCloud) -> None:
    error = _error(boto3.client("sagemaker").list_notebook_instances)
    assert error["Code"] == "NotImplemented"
    assert "does not emulate sagemaker:ListNotebookInstances" in error["Message"]


def test_garbage_and_unsigned_requests_are_answered_and_the_server_stays_up(
    cloud: LocalCloud,
) -> None:
    port = int(os.environ["AWS_ENDPOINT_URL"].rpartition(":")[2])
    with socket.create_connection(("127.0.0.1", port), timeout=5) as raw:
        host = f"127.0.0.1:{port}".encode()
        raw.sendall(b"POST / HTTP/1.1\r\nHost: " + host + b"\r\nContent-Length: 5\r\n\r\n{oops")
        answer = http.client.HTTPResponse(raw)
        answer.begin()
        assert answer.status == 403
        assert json.loads(answer.read())["__type"] == "MissingAuthenticationTokenException"
    assert boto3.client("s3").list_buckets()["Buckets"] == []


def test_a_provider_bug_is_an_internal_failure_not_a_dead_server(
    cloud: LocalCloud, monkeypatch: pytest.MonkeyPatch
) -> None:
    def broken(params: dict[str, Any]) -> dict[str, Any]:
        raise RuntimeError("boom")

    monkeypatch.setattr(cloud.service("sns"), "list_topics", broken)
    sns = boto3.client("sns", config=Config(retries={"max_attempts": 1}))
    error = _error(sns.list_topics)
    assert (error["Code"], error["Message"]) == ("InternalFailure", "RuntimeError: boom")
    assert sns.create_topic(Name="still-up")["TopicArn"].endswith(":still-up")


def test_two_servers_keep_their_workspaces_apart(tmp_path: Path, cloud: LocalCloud) -> None:
    boto3.client("s3").create_bucket(Bucket="first-bucket")
    other_cloud = LocalCloud(tmp_path / "other")
    other = LocalServer(other_cloud).start()
    try:
        admin = other_cloud.credentials.admin()
        s3 = boto3.client("s3", endpoint_url=other.url, **admin.client_kwargs())
        assert s3.list_buckets()["Buckets"] == []
        stranger = boto3.client("s3", endpoint_url=other.url)  # the first workspace's keys
        assert _error(stranger.list_buckets)["Code"] == "InvalidAccessKeyId"
    finally:
        other.stop()


@pytest.mark.parametrize("signature", ["s3", "s3v4"])  # boto3's default for S3 is version 2
def test_a_presigned_url_reads_the_object(cloud: LocalCloud, signature: str) -> None:
    s3 = boto3.client("s3", config=Config(signature_version=signature))
    s3.create_bucket(Bucket="shared-bucket")
    s3.put_object(Bucket="shared-bucket", Key="report.json", Body=b'{"rmse": 2.3}')
    url = s3.generate_presigned_url(
        "get_object", Params={"Bucket": "shared-bucket", "Key": "report.json"}, ExpiresIn=60
    )
    with urllib.request.urlopen(url, timeout=10) as response:  # noqa: S310 - loopback
        assert response.read() == b'{"rmse": 2.3}'
