"""Reads the evaluation report of a pipeline run and returns the quality gate's numbers.

Invoked by the state machine's `ReadEvaluation` Task with
`{"evaluation_uri": "s3://.../evaluation.json", "gate": {"metric", "direction", "threshold"}}`.
The state machine's Choice compares `gated_value` (the value, or with gate.confidence the
interval's pessimistic bound) with `threshold` itself; `passed` and `cause` are
for people. Errors propagate: Step Functions sees the exception's class name as the error
(`EvaluationReportNotFound`, `InvalidEvaluationReport`, `GateConfigError`, `ValidationError`).
"""

from __future__ import annotations

from typing import Any

import boto3
import gate
from aws_lambda_powertools import Logger, Tracer
from aws_lambda_powertools.utilities.parser import event_parser
from aws_lambda_powertools.utilities.typing import LambdaContext
from pydantic import BaseModel, ConfigDict, Field

logger = Logger()
tracer = Tracer()  # disabled locally (POWERTOOLS_TRACE_DISABLED): there is no X-Ray

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


class GateSpec(BaseModel):
    """The gate as the pipeline config states it; `gate.decide` checks the values."""

    model_config = ConfigDict(extra="forbid")

    metric: str
    direction: str
    threshold: float
    champion_margin: float = Field(0.0, ge=0)  # how much better than production, at least
    max_train_test_gap: float | None = Field(None, ge=0)  # the overfitting gate, when set
    confidence: float | None = Field(None, gt=0.5, lt=1)  # gate on the interval's bound
    champion_significance: float | None = Field(None, gt=0, lt=0.5)  # paired bootstrap test


class ReadEvaluationEvent(BaseModel):
    model_config = ConfigDict(extra="forbid")

    evaluation_uri: str = Field(pattern=r"^s3://[^/]+/.+")
    gate: GateSpec


@logger.inject_lambda_context
@tracer.capture_lambda_handler
@event_parser(model=ReadEvaluationEvent)
def lambda_handler(event: ReadEvaluationEvent, context: LambdaContext) -> dict[str, Any]:
    report = gate.read_report(event.evaluation_uri, get_s3_client())
    metrics = gate.flatten_metrics(report)
    spec = event.gate
    decision = gate.decide(
        metrics,
        spec.model_dump(include={"metric", "direction", "threshold", "confidence"}),
        gate.interval_of(report, spec.metric),
    )
    decision["champion"] = gate.against_champion(
        report, decision, spec.champion_margin, spec.champion_significance
    )
    decision["overfitting"] = gate.overfitting(report, decision, spec.max_train_test_gap)
    decision["data"] = report.get("data")  # the test rows' origin: recent, or all the data
    logger.info(
        "quality gate decided",
        extra={key: decision[key] for key in ("metric", "value", "threshold", "passed")},
    )
    return decision
