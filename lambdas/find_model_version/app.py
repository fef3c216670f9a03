"""Finds the registered model a batch scores with.

Invoked by the batch state machine's `FindModel` Task with the model package group and an
optional version; returns the version's ARN, number and serving container.
"""

from __future__ import annotations

from typing import Any

import boto3
import versions
from aws_lambda_powertools import Logger, Tracer
from aws_lambda_powertools.utilities.parser import event_parser
from aws_lambda_powertools.utilities.typing import LambdaContext
from pydantic import BaseModel, ConfigDict, Field

logger = Logger()
tracer = Tracer()  # disabled locally (POWERTOOLS_TRACE_DISABLED): there is no X-Ray

_sagemaker_client: Any = None


def get_sagemaker_client() -> Any:
    global _sagemaker_client
    if _sagemaker_client is None:
        _sagemaker_client = boto3.client("sagemaker")
    return _sagemaker_client


def set_sagemaker_client(client: Any) -> None:
    global _sagemaker_client
    _sagemaker_client = client


class FindModelEvent(BaseModel):
    model_config = ConfigDict(extra="forbid")

    group: str = Field(min_length=1, max_length=63)
    version: int | None = Field(None, ge=1)


@logger.inject_lambda_context
@tracer.capture_lambda_handler
@event_parser(model=FindModelEvent)
def lambda_handler(event: FindModelEvent, context: LambdaContext) -> dict[str, Any]:
    found = versions.find_version(get_sagemaker_client(), event.group, event.version)
    logger.info("model version", extra={"arn": found["ModelPackageArn"]})
    return found
