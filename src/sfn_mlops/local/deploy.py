"""``sam deploy`` for the local cloud: the resources of template.yaml, made through boto3.

Idempotent and quick when nothing changed, so every ``sfn-mlops run`` deploys first.
"""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path
from typing import Any

import boto3

from sfn_mlops.local.services.lambda_ import FUNCTIONS
from sfn_mlops.packaging import build_bundle, upload_bundle
from sfn_mlops.template import FunctionSpec, LocalStack, StateMachineSpec, substitute

ARTIFACT_BUCKET = "ArtifactBucket"
PIPELINE = "TrainingPipeline"


@dataclass(frozen=True)
class Deployment:
    stack: LocalStack
    bucket: str
    state_machine_arn: str
    code_prefix: str


def deploy(cloud: Any, project: Path, stack_name: str = "sfn-mlops") -> Deployment:
    bundle = build_bundle(project / "containers")
    code_prefix = f"code/{bundle.digest}"
    stack = LocalStack(
        project / "template.yaml", stack_name=stack_name, parameters={"CodePrefix": code_prefix}
    )
    bucket = stack.physical_name(ARTIFACT_BUCKET)
    for logical_id in stack.of_type("AWS::S3::Bucket"):
        cloud.objects.create_bucket(stack.physical_name(logical_id))
    sns = boto3.client("sns")
    for logical_id in stack.of_type("AWS::SNS::Topic"):
        sns.create_topic(Name=stack.physical_name(logical_id))
    upload_bundle(boto3.client("s3"), bundle, bucket, code_prefix, echo=lambda _: None)
    for function in stack.functions():
        _register_function(cloud, function)
    for machine in stack.state_machines():
        _deploy_state_machine(stack, machine)
    return Deployment(
        stack=stack,
        bucket=bucket,
        state_machine_arn=stack.ref(PIPELINE),
        code_prefix=code_prefix,
    )


def _register_function(cloud: Any, function: FunctionSpec) -> None:
    cloud.metadata.put(
        FUNCTIONS,
        function.name,
        {
            "FunctionName": function.name,
            "FunctionArn": function.arn,
            "Handler": function.handler,
            "Runtime": function.runtime,
            "CodeDir": str(function.code_dir),
            "Timeout": function.timeout,
            "MemorySize": function.memory_size,
            "Environment": {"Variables": function.environment},
        },
    )


def _deploy_state_machine(stack: LocalStack, machine: StateMachineSpec) -> None:
    definition = substitute(
        machine.definition_path.read_text(encoding="utf-8"),
        machine.substitutions,
        f"{stack.path}: Resources.{machine.logical_id}",
    )
    sfn = boto3.client("stepfunctions")
    try:
        current = sfn.describe_state_machine(stateMachineArn=machine.arn)
    except sfn.exceptions.StateMachineDoesNotExist:
        sfn.create_state_machine(name=machine.name, definition=definition, roleArn=machine.role_arn)
        return
    if current["definition"] != definition or current["roleArn"] != machine.role_arn:
        sfn.update_state_machine(
            stateMachineArn=machine.arn, definition=definition, roleArn=machine.role_arn
        )
