"""The AWS side of deploy and run, offline: moto for S3 and Step Functions (its ASL interpreter
runs the test state machines), and CloudFormation stacks two ways.

``stacks`` runs each test that uses it twice where it can:
- ``moto-cloudformation``: moto creates the stack from a minimal template (an S3 bucket and
  Outputs). Needs moto's cloudformation extras (``moto[cloudformation]``); skipped without.
- ``hooked``: DescribeStacks answered through botocore's ``before-call`` hook from the stacks
  the test declares, with CloudFormation's error for a missing stack; the bucket is made in
  moto's S3. Always available.
"""

from __future__ import annotations

import json
from collections.abc import Iterator
from dataclasses import dataclass, field
from datetime import datetime, timezone
from typing import Any

import boto3
import pytest
from botocore.awsrequest import AWSResponse
from moto import mock_aws

REGION = "us-east-1"
ROLE_ARN = "arn:aws:iam::123456789012:role/sfn-mlops-pipeline"
BUCKET_OUTPUT = "ArtifactBucketName"


def _moto_cloudformation_available() -> bool:
    try:
        import moto.cloudformation  # noqa: F401  (imports every backend's extras)
    except ImportError:
        return False
    return True


@pytest.fixture(autouse=True)
def offline_aws(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("AWS_DEFAULT_REGION", REGION)
    monkeypatch.setenv("AWS_EC2_METADATA_DISABLED", "true")
    monkeypatch.setenv("AWS_ACCESS_KEY_ID", "testing")
    monkeypatch.setenv("AWS_SECRET_ACCESS_KEY", "testing")
    monkeypatch.delenv("AWS_PROFILE", raising=False)


@pytest.fixture
def aws() -> Iterator[None]:
    """moto for every client made inside; state machines really run (moto's ASL parser)."""
    with mock_aws(config={"stepfunctions": {"execute_state_machine": True}}):
        yield


@dataclass
class Stacks:
    """Declares CloudFormation stacks; ``client`` describes them."""

    kind: str
    client: Any
    _declared: dict[str, dict[str, str]] = field(default_factory=dict)

    def create(self, name: str, outputs: dict[str, str], *, with_bucket: bool = True) -> dict:
        """A stack whose outputs are ``outputs`` plus, ``with_bucket``, ArtifactBucketName
        naming a bucket that exists. Returns every output."""
        if self.kind == "moto-cloudformation":
            return self._create_in_moto(name, outputs, with_bucket)
        values = dict(outputs)
        if with_bucket:
            values[BUCKET_OUTPUT] = f"{name}-artifactbucket-0123456789ab"
            boto3.client("s3", region_name=REGION).create_bucket(Bucket=values[BUCKET_OUTPUT])
        self._declared[name] = values
        return values

    def _create_in_moto(self, name: str, outputs: dict[str, str], with_bucket: bool) -> dict:
        template: dict[str, Any] = {
            "AWSTemplateFormatVersion": "2010-09-09",
            "Resources": {"ArtifactBucket": {"Type": "AWS::S3::Bucket"}},
            "Outputs": {key: {"Value": value} for key, value in outputs.items()},
        }
        if with_bucket:
            template["Outputs"][BUCKET_OUTPUT] = {"Value": {"Ref": "ArtifactBucket"}}
        self.client.create_stack(StackName=name, TemplateBody=json.dumps(template))
        stack = self.client.describe_stacks(StackName=name)["Stacks"][0]
        return {item["OutputKey"]: item["OutputValue"] for item in stack.get("Outputs", [])}

    def answer(self, params: dict[str, Any], **_: Any) -> tuple[AWSResponse, dict[str, Any]]:
        name = params["body"]["StackName"]  # the serialized query request
        if name not in self._declared:
            error = {"Code": "ValidationError", "Message": f"Stack with id {name} does not exist"}
            return _response(400), {"Error": error, "ResponseMetadata": {"HTTPStatusCode": 400}}
        stack = {
            "StackName": name,
            "StackId": f"arn:aws:cloudformation:{REGION}:123456789012:stack/{name}/1",
            "CreationTime": datetime(2024, 1, 1, tzinfo=timezone.utc),
            "StackStatus": "CREATE_COMPLETE",
            "Outputs": [
                {"OutputKey": key, "OutputValue": value}
                for key, value in self._declared[name].items()
            ],
        }
        return _response(200), {"Stacks": [stack], "ResponseMetadata": {"HTTPStatusCode": 200}}


def _response(status: int) -> AWSResponse:
    return AWSResponse(None, status, {}, None)


@pytest.fixture(params=["hooked", "moto-cloudformation"])
def stacks(request: pytest.FixtureRequest, aws: None) -> Stacks:
    if request.param == "moto-cloudformation" and not _moto_cloudformation_available():
        pytest.skip("moto's cloudformation extras are not installed (moto[cloudformation])")
    client = boto3.client("cloudformation", region_name=REGION)
    declared = Stacks(kind=request.param, client=client)
    if request.param == "hooked":
        client.meta.events.register("before-call.cloudformation.DescribeStacks", declared.answer)
    return declared


def create_state_machine(definition: dict[str, Any], name: str = "TrainingPipeline") -> str:
    sfn = boto3.client("stepfunctions", region_name=REGION)
    return str(
        sfn.create_state_machine(name=name, definition=json.dumps(definition), roleArn=ROLE_ARN)[
            "stateMachineArn"
        ]
    )
