"""Reads the run's Clarify bias analysis.json and decides the bias gate.

Invoked by the state machine's `ReadBiasReport` Task with `{"analysis_uri": "s3://...",
"thresholds": {"DPPL": 0.1, ...}, "facets": [...the config's facets...]}`; the `BiasGate`
Choice branches on `passed` and `BiasCheckFailed` takes `cause`. Errors propagate under their
class names (`BiasReportNotFound`, `InvalidBiasReport`).
"""

from __future__ import annotations

from typing import Any

import bias_gate
import boto3
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


class BiasGateEvent(BaseModel):
    model_config = ConfigDict(extra="forbid")

    analysis_uri: str = Field(pattern=r"^s3://[^/]+/.+")
    thresholds: dict[str, float] = {}
    facets: list[dict[str, Any]] = []


@logger.inject_lambda_context
@tracer.capture_lambda_handler
@event_parser(model=BiasGateEvent)
def lambda_handler(event: BiasGateEvent, context: LambdaContext) -> dict[str, Any]:
    report = bias_gate.read_report(event.analysis_uri, get_s3_client())
    decision = bias_gate.decide(report, event.thresholds, event.facets)
    logger.info("bias gate decided", extra={"passed": decision["passed"]})
    return decision
