"""Evaluates the endpoints' A/B tests: on the EventBridge schedule (every running test), or
when invoked with ``{"action": "status"|"evaluate"|"promote"|"end", "endpoint": NAME}``
(``sfn-mlops endpoints ab-status|promote|end``).

Thin: parses the event, calls ab_test, returns what it says. Clients are made on first use
and can be injected (``set_clients``).
"""

from __future__ import annotations

import os
from datetime import UTC, datetime
from typing import Any, Literal

import ab_test
import boto3
from aws_lambda_powertools import Logger, Tracer
from aws_lambda_powertools.utilities.typing import LambdaContext
from pydantic import BaseModel, ConfigDict, Field

logger = Logger()
tracer = Tracer()  # disabled locally (POWERTOOLS_TRACE_DISABLED): there is no X-Ray

BUCKET_ENV = "ARTIFACT_BUCKET"
# The evaluation schedule's rule, off when no test runs: DisableRule stops its targets from
# being invoked until EnableRule (Amazon EventBridge API Reference, DisableRule,
# https://docs.aws.amazon.com/eventbridge/latest/APIReference/API_DisableRule.html).
RULE_ENV = "AB_TEST_RULE"
SCHEDULED_EVENT = "Scheduled Event"
_clients: dict[str, Any] = {}


def client(service: str) -> Any:
    if service not in _clients:
        _clients[service] = boto3.client(service)  # type: ignore[call-overload]
    return _clients[service]


def set_clients(**clients: Any) -> None:
    """Inject clients by service name (``s3=..., sagemaker=..., cloudwatch=...``)."""
    _clients.update(clients)


class Request(BaseModel):
    """A direct invocation (the CLI's)."""

    model_config = ConfigDict(extra="forbid")

    action: Literal["status", "evaluate", "promote", "end"]
    endpoint: str = Field(min_length=1, max_length=63)


def handle(event: dict[str, Any], bucket: str, rule: str, now: datetime) -> dict[str, Any]:
    clients = (client("s3"), client("sagemaker"), client("cloudwatch"))
    if event.get("detail-type") == SCHEDULED_EVENT:
        evaluated = ab_test.evaluate_all(
            *clients,
            bucket=bucket,
            now=now,
            turn_off=lambda: client("events").disable_rule(Name=rule),
        )
        return {"evaluated": evaluated}
    request = Request.model_validate(event)
    result = ab_test.evaluate(
        *clients, bucket=bucket, endpoint=request.endpoint, now=now, action=request.action
    )
    if request.action != "status" and not ab_test.running(clients[0], bucket):
        client("events").disable_rule(Name=rule)  # the last test ended by this call
    return result


@logger.inject_lambda_context
@tracer.capture_lambda_handler
def lambda_handler(event: dict[str, Any], context: LambdaContext) -> dict[str, Any]:
    result = handle(event, os.environ[BUCKET_ENV], os.environ[RULE_ENV], datetime.now(UTC))
    logger.info("ab tests", extra={"ab_tests": result})
    return result
