"""Publishes a batch's predictions at the destination once the transform job has succeeded.

Invoked by the batch state machine's `PublishOutput` Task with the job's output prefix, the
destination and the execution's name; returns how many objects were copied and (up to 100 of)
their URIs.
"""

from __future__ import annotations

from typing import Any

import boto3
import publish
from aws_lambda_powertools import Logger, Tracer
from aws_lambda_powertools.utilities.parser import event_parser
from aws_lambda_powertools.utilities.typing import LambdaContext
from pydantic import BaseModel, ConfigDict, Field

logger = Logger()
tracer = Tracer()  # disabled locally (POWERTOOLS_TRACE_DISABLED): there is no X-Ray

_s3_client: Any = None


def get_s3_client() -> Any:
    global _s3_client
    if _s3_client is None:
        _s3_client = boto3.client("s3")
    return _s3_client


def set_s3_client(client: Any) -> None:
    global _s3_client
    _s3_client = client


class PublishEvent(BaseModel):
    model_config = ConfigDict(extra="forbid")

    source: str = Field(pattern=r"^s3://[^/]+/.+")
    destination: str = Field(pattern=r"^s3://[^/]+(/.*)?$")
    execution: str = ""  # the execution's name, for a destination holding {execution}


@logger.inject_lambda_context
@tracer.capture_lambda_handler
@event_parser(model=PublishEvent)
def lambda_handler(event: PublishEvent, context: LambdaContext) -> dict[str, Any]:
    result = publish.publish(get_s3_client(), event.source, event.destination, event.execution)
    logger.info("published", extra={"objects": result["objects"]})
    return result
