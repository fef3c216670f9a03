"""Deploys the run's model to the real-time endpoint (created, or updated with guardrails).

Invoked by the state machine's `DeployModel` Task with the SageMaker model name and the
config's `deployment` settings; returns the endpoint and config names, the strategy used and
how many polls the bounded wait loop may make.
"""

from __future__ import annotations

from typing import Any

import boto3
import deployment
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


class DeployEvent(BaseModel):
    model_config = ConfigDict(extra="forbid")

    model_name: str = Field(min_length=1)
    settings: dict[str, Any]
    capture_destination: str = Field(pattern=r"^s3://[^/]+/.*")


@logger.inject_lambda_context
@tracer.capture_lambda_handler
@event_parser(model=DeployEvent)
def lambda_handler(event: DeployEvent, context: LambdaContext) -> dict[str, Any]:
    result = deployment.deploy(
        get_sagemaker_client(),
        model_name=event.model_name,
        settings=event.settings,
        capture_destination=event.capture_destination,
    )
    logger.info("deployment started", extra=result)
    return result
