"""Collects a run's data: the configured data as it is now and the endpoint's labelled
production traffic, marked recent or older, written down in the run's manifest.

Invoked by the state machine's `CollectData` Task with the run's config, its `data/` prefix
and the production model's artifact (from `FindChampion`); returns the manifest's URI and a
summary (how many objects and captured rows, since when data counts as recent).
"""

from __future__ import annotations

import datetime as dt
from typing import Any

import boto3
import collect
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


class CollectDataEvent(BaseModel):
    model_config = ConfigDict(extra="forbid")

    config: dict[str, Any]
    destination: str = Field(pattern=r"^s3://[^/]+/.+/$")
    champion_model_url: str | None = None
    execution_input: dict[str, Any] = {}  # the run's input: its `retraining`, if it retrains


@logger.inject_lambda_context
@tracer.capture_lambda_handler
@event_parser(model=CollectDataEvent)
def lambda_handler(event: CollectDataEvent, context: LambdaContext) -> dict[str, Any]:
    result = collect.collect(
        get_client("s3"),
        config=event.config,
        destination=event.destination,
        champion_model_url=event.champion_model_url,
        now=dt.datetime.now(dt.UTC),
        retraining=event.execution_input.get("retraining"),
    )
    logger.info("collected", extra={"collected": result})
    return result
