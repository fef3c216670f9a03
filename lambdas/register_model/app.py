"""Registers the run's model in the SageMaker Model Registry.

Invoked by the state machine's `RegisterModel` Task with the group, the SageMaker model the run
created, the approval mode (`auto`: Approved; `manual`: PendingManualApproval), the report
URIs, the execution, the data and the config; returns `ModelPackageArn`,
`ModelPackageVersion` and `ModelApprovalStatus`.
"""

from __future__ import annotations

from typing import Any, Literal

import boto3
import registry
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


class RegisterEvent(BaseModel):
    model_config = ConfigDict(extra="forbid")

    group: str = Field(min_length=1, max_length=63)
    image: str = Field(min_length=1)
    model_data_url: str = Field(pattern=r"^s3://[^/]+/.+")
    environment: dict[str, str] = {}
    approval: Literal["auto", "manual"] = "auto"
    clarify: bool = False  # the run wrote Clarify reports: record them
    reports: dict[str, str] = {}
    execution_arn: str
    data_uri: str
    config: dict[str, Any]
    metric: str
    value: float
    interval: dict[str, float] | None = None  # the gate metric's bootstrap interval
    champion: dict[str, Any] = {}  # ReadEvaluation's comparison with the production model
    rejected: bool = False  # it lost to the production model: registered as Rejected
    data: dict[str, Any] = {}  # CollectData's summary: the manifest, since when data is recent
    judged_on: dict[str, Any] | None = None  # where the test rows came from (preprocessing)


@logger.inject_lambda_context
@tracer.capture_lambda_handler
@event_parser(model=RegisterEvent)
def lambda_handler(event: RegisterEvent, context: LambdaContext) -> dict[str, Any]:
    reports = {
        name: uri
        for name, uri in event.reports.items()
        if event.clarify or name not in ("bias", "explainability")
    }
    run = event.execution_arn.rsplit(":", 1)[-1]
    scores, description = registry.quality_scores(
        event.metric, event.value, event.interval, event.champion, run
    )
    container = {"Image": event.image, "ModelDataUrl": event.model_data_url}
    if event.environment:
        container["Environment"] = event.environment
    result = registry.register(
        get_sagemaker_client(),
        group=event.group,
        container=container,
        approval=event.approval,
        reports=reports,
        execution_arn=event.execution_arn,
        data_uri=event.data_uri,
        config=event.config,
        description=description,
        scores={**scores, **registry.data_provenance(event.data, event.judged_on)},
        rejected_because=event.champion.get("cause") if event.rejected else None,
    )
    logger.info("registered", extra=result)
    return result
