"""Starts a retraining of the pipeline: on a monitoring alarm's ALARM, or on the schedule.

Invoked by EventBridge (the `CloudWatch Alarm State Change` rule and the retraining schedule of
template.yaml); returns whether it started an execution and why.
"""

from __future__ import annotations

import os
from typing import Any

import boto3
import retrain
from aws_lambda_powertools import Logger, Tracer
from aws_lambda_powertools.utilities.typing import LambdaContext

logger = Logger()
tracer = Tracer()  # disabled locally (POWERTOOLS_TRACE_DISABLED): there is no X-Ray

_sfn_client: Any = None


def get_sfn_client() -> Any:
    global _sfn_client
    if _sfn_client is None:
        _sfn_client = boto3.client("stepfunctions")
    return _sfn_client


def set_sfn_client(client: Any) -> None:
    global _sfn_client
    _sfn_client = client


@logger.inject_lambda_context
@tracer.capture_lambda_handler
def lambda_handler(event: dict[str, Any], context: LambdaContext) -> dict[str, Any]:
    result = retrain.retrain(get_sfn_client(), os.environ["PIPELINE_ARN"], event)
    # Nested: the result's "name" would clash with the LogRecord attribute of that name.
    logger.info("retraining", extra={"retraining": result})
    return result
