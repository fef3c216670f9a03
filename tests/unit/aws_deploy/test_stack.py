"""The deployed stack as ``run --aws`` reads it (sfn_mlops.aws.stack), offline."""

from __future__ import annotations

from pathlib import Path

import boto3
import pytest

from sfn_mlops import settings
from sfn_mlops.aws import stack

from .conftest import REGION

PROJECT = settings.project_root(Path(__file__).resolve().parents[3])
STATE_MACHINE_ARN = "arn:aws:states:us-east-1:123456789012:stateMachine:TrainingPipeline"


# --- samconfig.toml --------------------------------------------------------------------------


def test_sam_defaults_come_from_the_project_samconfig():
    assert stack.sam_defaults(PROJECT) == stack.SamDefaults("sfn-mlops", "us-east-1")


def test_sam_defaults_without_samconfig(tmp_path):
    assert stack.sam_defaults(tmp_path) == stack.SamDefaults("sfn-mlops", "us-east-1")


def test_sam_defaults_read_the_global_parameters_and_deploy_wins(tmp_path):
    (tmp_path / "samconfig.toml").write_text(
        'version = 0.1\n[default.global.parameters]\nstack_name = "ml"\nregion = "eu-west-1"\n'
        '[default.deploy.parameters]\nregion = "eu-north-1"\n'
    )

    assert stack.sam_defaults(tmp_path) == stack.SamDefaults("ml", "eu-north-1")


def test_sam_defaults_read_the_deploy_parameters(tmp_path):
    (tmp_path / "samconfig.toml").write_text(
        'version = 0.1\n[default.deploy.parameters]\nstack_name = "ml"\nregion = "eu-west-1"\n'
    )

    assert stack.sam_defaults(tmp_path) == stack.SamDefaults("ml", "eu-west-1")


# --- stack outputs ---------------------------------------------------------------------------


def test_stack_outputs(stacks):
    created = stacks.create("sfn-mlops", {"StateMachineArn": STATE_MACHINE_ARN})

    outputs = stack.stack_outputs(stacks.client, "sfn-mlops")

    assert outputs.stack_name == "sfn-mlops"
    assert outputs.region == REGION
    assert outputs.status == "CREATE_COMPLETE"
    assert outputs.values == created
    assert outputs.require("StateMachineArn") == STATE_MACHINE_ARN
    assert outputs.require("ArtifactBucketName").startswith("sfn-mlops-artifactbucket-")


def test_stack_that_does_not_exist(stacks):
    with pytest.raises(stack.StackNotFound) as raised:
        stack.stack_outputs(stacks.client, "no-such-stack")

    assert str(raised.value) == (
        "stack 'no-such-stack' not found in us-east-1: deploy it with "
        "`sam build && sam deploy --guided`, or pass the --stack-name and --region it was "
        "deployed with "
        "(Stack with id no-such-stack does not exist)"
    )


def test_stack_without_the_output(stacks):
    stacks.create("other", {"Something": "x"}, with_bucket=False)
    outputs = stack.stack_outputs(stacks.client, "other")

    with pytest.raises(stack.MissingStackOutput) as raised:
        outputs.require("ArtifactBucketName")

    assert str(raised.value) == (
        "stack 'other' in us-east-1 (CREATE_COMPLETE) has no output 'ArtifactBucketName' "
        "(its outputs: Something); is it an sfn-mlops stack? Deploy it again with "
        "`sam build && sam deploy --guided`"
    )


def test_other_cloudformation_errors_propagate(aws):
    from botocore.stub import Stubber

    client = boto3.client("cloudformation", region_name=REGION)
    with Stubber(client) as stubber:
        stubber.add_client_error("describe_stacks", "Throttling", http_status_code=400)
        with pytest.raises(client.exceptions.ClientError) as raised:
            stack.stack_outputs(client, "sfn-mlops")

    assert raised.value.response["Error"]["Code"] == "Throttling"
