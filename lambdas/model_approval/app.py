"""Manual approval: the execution waits for a decision in the Model Registry.

`wait_handler`: invoked by the state machine's `WaitForApproval` Task
(``lambda:invoke.waitForTaskToken``) with the task token and the registered version; keeps the
token for the decision (and answers at once if the version is decided already).

`decision_handler`: invoked by the EventBridge rule on "SageMaker Model Package State Change";
resumes the waiting execution: Approved goes on to deployment, Rejected fails it
(`ModelRejected`).
"""

from __future__ import annotations

import os
from typing import Any

import approval
import boto3
from aws_lambda_powertools import Logger, Tracer
from aws_lambda_powertools.utilities.parser import envelopes, event_parser
from aws_lambda_powertools.utilities.typing import LambdaContext
from pydantic import BaseModel, ConfigDict, Field

logger = Logger()
tracer = Tracer()  # disabled locally (POWERTOOLS_TRACE_DISABLED): there is no X-Ray

BUCKET_ENV = "ARTIFACT_BUCKET"

_clients: dict[str, Any] = {}


def get_client(service: str) -> Any:
    if service not in _clients:
        _clients[service] = boto3.client(service)
    return _clients[service]


def set_client(service: str, client: Any) -> None:
    _clients[service] = client


def artifact_bucket() -> str:
    return os.environ[BUCKET_ENV]


class WaitEvent(BaseModel):
    model_config = ConfigDict(extra="forbid")

    token: str = Field(min_length=1, max_length=1024)
    model_package_arn: str = Field(pattern=r"^arn:aws[a-z-]*:sagemaker:.+:model-package/.+/\d+$")
    execution_arn: str = Field(min_length=1)


class PackageStateChange(BaseModel):
    """The event's detail: the model package as DescribeModelPackage describes it."""

    model_config = ConfigDict(extra="allow")

    ModelPackageArn: str
    ModelPackageGroupName: str
    ModelPackageVersion: int
    ModelApprovalStatus: str
    ApprovalDescription: str | None = None


@logger.inject_lambda_context
@tracer.capture_lambda_handler
@event_parser(model=WaitEvent)
def wait_handler(event: WaitEvent, context: LambdaContext) -> dict[str, Any]:
    status = approval.hold_token(
        get_client("s3"),
        get_client("sagemaker"),
        get_client("stepfunctions"),
        bucket=artifact_bucket(),
        package_arn=event.model_package_arn,
        token=event.token,
        execution=event.execution_arn,
    )
    logger.info("waiting for a decision", extra={"package": event.model_package_arn})
    return {"ModelApprovalStatus": status}


@logger.inject_lambda_context
@tracer.capture_lambda_handler
@event_parser(model=PackageStateChange, envelope=envelopes.EventBridgeEnvelope)
def decision_handler(event: PackageStateChange, context: LambdaContext) -> dict[str, Any]:
    outcome = approval.answer_decision(
        get_client("s3"),
        get_client("stepfunctions"),
        bucket=artifact_bucket(),
        package=event.model_dump(),
    )
    logger.info(outcome)
    return {"outcome": outcome}
