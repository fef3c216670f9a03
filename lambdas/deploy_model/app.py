"""Deploys the run's model to the real-time endpoint (created, or updated with guardrails).

Invoked by the state machine's `DeployModel` Task with the SageMaker model name and the
config's `deployment` settings; returns the endpoint and config names, the strategy used and
how many polls the bounded wait loop may make.
"""

from __future__ import annotations

import os
from datetime import UTC, datetime
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
_s3_client: Any = None
_events_client: Any = None
#: The A/B tests' evaluation schedule (template.yaml: ABTestFunction), turned on by a test
#: (Amazon EventBridge API Reference, EnableRule,
#: https://docs.aws.amazon.com/eventbridge/latest/APIReference/API_EnableRule.html).
AB_TEST_RULE_ENV = "AB_TEST_RULE"


def get_sagemaker_client() -> Any:
    global _sagemaker_client
    if _sagemaker_client is None:
        _sagemaker_client = boto3.client("sagemaker")
    return _sagemaker_client


def set_sagemaker_client(client: Any) -> None:
    global _sagemaker_client
    _sagemaker_client = client


def get_s3_client() -> Any:
    global _s3_client
    if _s3_client is None:
        _s3_client = boto3.client("s3")
    return _s3_client


def set_s3_client(client: Any) -> None:
    global _s3_client
    _s3_client = client


def get_events_client() -> Any:
    global _events_client
    if _events_client is None:
        _events_client = boto3.client("events")
    return _events_client


def set_events_client(client: Any) -> None:
    global _events_client
    _events_client = client


class DeployEvent(BaseModel):
    model_config = ConfigDict(extra="forbid")

    model_name: str = Field(min_length=1)
    settings: dict[str, Any]
    capture_destination: str = Field(pattern=r"^s3://[^/]+/.*")
    # strategy ab: what the A/B test's record needs (the scheduled evaluation reads it)
    problem_type: str = "regression"
    model_package_arn: str | None = None


@logger.inject_lambda_context
@tracer.capture_lambda_handler
@event_parser(model=DeployEvent)
def lambda_handler(event: DeployEvent, context: LambdaContext) -> dict[str, Any]:
    bucket = event.capture_destination.removeprefix("s3://").partition("/")[0]

    def ab_test(endpoint: str, config: str, champion: str, challenger: str) -> None:
        deployment.start_ab_test(
            get_s3_client(),
            bucket=bucket,
            endpoint=endpoint,
            config_name=config,
            champion_model=champion,
            challenger_model=challenger,
            settings=event.settings,
            problem_type=event.problem_type,
            model_package_arn=event.model_package_arn,
            now=datetime.now(UTC),
        )
        get_events_client().enable_rule(Name=os.environ[AB_TEST_RULE_ENV])

    result = deployment.deploy(
        get_sagemaker_client(),
        model_name=event.model_name,
        settings=event.settings,
        capture_destination=event.capture_destination,
        ab_test=ab_test,
    )
    logger.info("deployment started", extra=result)
    return result
