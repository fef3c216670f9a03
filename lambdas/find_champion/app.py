"""Stages the production model (the champion) for the evaluation job.

Invoked by the state machine's `FindChampion` Task with the endpoint name, the model package
group and the run's `champion/` prefix; returns `present`, `source` and `model_data_url`.
"""

from __future__ import annotations

from typing import Any

import boto3
import champion
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


class FindChampionEvent(BaseModel):
    model_config = ConfigDict(extra="forbid")

    endpoint_name: str = Field(min_length=1)
    group: str = Field(min_length=1)
    destination: str = Field(pattern=r"^s3://[^/]+/.+")


@logger.inject_lambda_context
@tracer.capture_lambda_handler
@event_parser(model=FindChampionEvent)
def lambda_handler(event: FindChampionEvent, context: LambdaContext) -> dict[str, Any]:
    result = champion.stage_champion(
        get_client("sagemaker"),
        get_client("s3"),
        endpoint_name=event.endpoint_name,
        group=event.group,
        destination=event.destination,
    )
    logger.info("champion", extra=result)
    return result
