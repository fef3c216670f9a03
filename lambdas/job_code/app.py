"""Custom resource `Custom::JobCode`: the job code bundle, copied into the artifact bucket.

CloudFormation invokes it on Create, Update and Delete with the resource's properties
`{"BucketName": ..., "CodeVersion": ...}` (`CodeVersion` is the function's published version:
a new one with every change of the code, so CloudFormation sends an Update). The bundle travels
in this function's package (`bundle/`, written by `make build-JobCodeFunction` during
`sam build`). `job_code` holds the logic; `cfn_response` answers CloudFormation, FAILED on any
error and before the timeout, so the stack never hangs. The answer's data is what the template
reads: `!GetAtt JobCode.CodeUri` (`s3://<bucket>/code/<hash>`), `CodePrefix`, `CodeHash`.
"""

from __future__ import annotations

from pathlib import Path
from typing import Annotated, Any

import boto3
import cfn_response
import job_code
from aws_lambda_powertools import Logger, Tracer
from aws_lambda_powertools.utilities.parser import parse
from aws_lambda_powertools.utilities.parser.models import (
    CloudFormationCustomResourceCreateModel,
    CloudFormationCustomResourceDeleteModel,
    CloudFormationCustomResourceUpdateModel,
)
from aws_lambda_powertools.utilities.typing import LambdaContext
from pydantic import BaseModel, ConfigDict, Field

logger = Logger()
tracer = Tracer()  # disabled locally (POWERTOOLS_TRACE_DISABLED): there is no X-Ray
#: Answer FAILED this long before the Lambda's timeout, while it can still send.
TIMEOUT_MARGIN_SECONDS = 10.0

_s3_client: Any = None


def get_s3_client() -> Any:
    """The S3 client, created on first use."""
    global _s3_client
    if _s3_client is None:
        _s3_client = boto3.client("s3")
    return _s3_client


def set_s3_client(client: Any) -> None:
    """Replaces the S3 client (tests, or a caller with its own session); None resets it."""
    global _s3_client
    _s3_client = client


def bundle_dir() -> Path:
    return Path(__file__).resolve().parent / job_code.BUNDLE_DIR


class JobCodeProperties(BaseModel):
    model_config = ConfigDict(extra="forbid")

    ServiceToken: str
    BucketName: str = Field(min_length=3, max_length=63)
    CodeVersion: str = Field(min_length=1)


class CreateRequest(CloudFormationCustomResourceCreateModel):
    resource_properties: JobCodeProperties = Field(..., alias="ResourceProperties")


class UpdateRequest(CloudFormationCustomResourceUpdateModel):
    resource_properties: JobCodeProperties = Field(..., alias="ResourceProperties")


class DeleteRequest(CloudFormationCustomResourceDeleteModel):
    resource_properties: JobCodeProperties = Field(..., alias="ResourceProperties")


JobCodeRequest = Annotated[
    CreateRequest | UpdateRequest | DeleteRequest, Field(discriminator="request_type")
]


def handle(event: dict[str, Any]) -> cfn_response.Outcome:
    request: CreateRequest | UpdateRequest | DeleteRequest = parse(
        event=event, model=JobCodeRequest
    )
    files = job_code.read_bundle(bundle_dir())
    s3 = get_s3_client()
    if isinstance(request, DeleteRequest):
        removed = job_code.delete(s3, request.physical_resource_id, job_code.code_prefix(files))
        logger.info("job code removed", extra={"prefixes": removed})
        return cfn_response.Outcome(physical_id=request.physical_resource_id)
    published = job_code.publish(s3, request.resource_properties.BucketName, files)
    logger.info(
        "job code published",
        extra={"uri": published.data["CodeUri"], "uploaded": len(published.uploaded)},
    )
    return cfn_response.Outcome(physical_id=published.physical_id, data=published.data)


@logger.inject_lambda_context
@tracer.capture_lambda_handler
def lambda_handler(event: dict[str, Any], context: LambdaContext) -> dict[str, Any] | None:
    return cfn_response.answer(event, context, handle, margin_seconds=TIMEOUT_MARGIN_SECONDS)
