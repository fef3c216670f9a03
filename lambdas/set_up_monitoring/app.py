"""Sets Model Monitor up on the endpoint after a deployment.

Invoked by the state machine's `SetUpMonitoring` Task with the endpoint, the run's baselines and
the config's `monitoring` settings; returns the monitoring schedules and the alarms it made.
"""

from __future__ import annotations

from typing import Any

import boto3
import monitoring
from aws_lambda_powertools import Logger, Tracer
from aws_lambda_powertools.utilities.parser import event_parser
from aws_lambda_powertools.utilities.typing import LambdaContext
from pydantic import BaseModel, ConfigDict, Field

logger = Logger()
tracer = Tracer()  # disabled locally (POWERTOOLS_TRACE_DISABLED): there is no X-Ray

_clients: dict[str, Any] = {}


def get_client(service: str) -> Any:
    if service not in _clients:
        _clients[service] = boto3.client(service)
    return _clients[service]


def set_client(service: str, client: Any) -> None:
    _clients[service] = client


class SetUpEvent(BaseModel):
    model_config = ConfigDict(extra="forbid")

    endpoint_name: str = Field(min_length=1, max_length=63)
    run_name: str = Field(min_length=1, max_length=80)
    baseline_uri: str = Field(pattern=r"^s3://[^/]+/.+")
    settings: dict[str, Any]
    image_uri: str = Field(min_length=1)
    role_arn: str = Field(min_length=1)
    bucket: str = Field(min_length=3)


@logger.inject_lambda_context
@tracer.capture_lambda_handler
@event_parser(model=SetUpEvent)
def lambda_handler(event: SetUpEvent, context: LambdaContext) -> dict[str, Any]:
    made = monitoring.set_up(
        get_client("sagemaker"), get_client("cloudwatch"), get_client("s3"),
        endpoint=event.endpoint_name, run_name=event.run_name,
        baseline_uri=event.baseline_uri, settings=event.settings, image_uri=event.image_uri,
        role_arn=event.role_arn, bucket=event.bucket,
    )  # fmt: skip
    logger.info("monitoring set up", extra=made)
    return made
