"""Deploys a registered model to a real-time endpoint with the configured strategy.

Plain functions over an injected SageMaker client. A first deployment creates the endpoint;
later ones update it with SageMaker's own deployment guardrails: blue/green with `ALL_AT_ONCE`,
`CANARY` or `LINEAR` traffic shifting and auto-rollback on CloudWatch alarms, or an in-place
`RollingUpdatePolicy`; `ab` keeps the production model as variant `Champion` beside the new
one, `Challenger`, with the configured share of the traffic. The state machine then waits
for the endpoint (`DescribeEndpoint`) and reads how it ended.
"""

from __future__ import annotations

import json
from collections.abc import Callable
from datetime import datetime
from typing import Any

from botocore.exceptions import ClientError

STRATEGIES = ("all_at_once", "canary", "linear", "rolling", "ab")
_BUSY = (
    "Creating",
    "Updating",
    "SystemUpdating",
    "RollingBack",
    "Deleting",
    "UpdateRollbackFailed",
)


class EndpointBusy(Exception):
    """Another deployment holds the endpoint; the state machine retries this error by name, so
    concurrent runs deploy one after the other."""


class EndpointUnusable(Exception):
    """The endpoint is Failed: SageMaker cannot update it; it must be deleted first."""


def endpoint_config_name(model_name: str) -> str:
    """One config per run, named after its model (`<run>-model` -> `<run>-config`)."""
    base = model_name.removesuffix("-model")
    return f"{base[: 63 - len('-config')]}-config"


def current_endpoint(sagemaker: Any, name: str) -> dict[str, Any] | None:
    try:
        return dict(sagemaker.describe_endpoint(EndpointName=name))
    except ClientError as error:
        if error.response["Error"]["Code"] == "ValidationException":
            return None  # "Could not find endpoint ..."
        raise


def production_variants(
    sagemaker: Any, settings: dict[str, Any], model_name: str, current: dict[str, Any] | None
) -> list[dict[str, Any]]:
    instance = {
        "InstanceType": settings["instance_type"],
        "InitialInstanceCount": settings["instance_count"],
    }
    if settings["strategy"] != "ab" or current is None:
        return [
            {"VariantName": "AllTraffic", "ModelName": model_name, "InitialVariantWeight": 1.0}
            | instance
        ]
    champion = _serving_model(sagemaker, current)
    share = float(settings["ab_challenger_share"])
    return [
        {"VariantName": "Champion", "ModelName": champion, "InitialVariantWeight": 1 - share}
        | instance,
        {"VariantName": "Challenger", "ModelName": model_name, "InitialVariantWeight": share}
        | instance,
    ]


def _serving_model(sagemaker: Any, endpoint: dict[str, Any]) -> str:
    """The model behind the endpoint's heaviest variant: the one in production."""
    config = sagemaker.describe_endpoint_config(EndpointConfigName=endpoint["EndpointConfigName"])
    variants = config["ProductionVariants"]
    return str(max(variants, key=lambda v: v.get("InitialVariantWeight", 1.0))["ModelName"])


def data_capture(settings: dict[str, Any], destination: str) -> dict[str, Any] | None:
    capture = settings["data_capture"]
    if not capture["enabled"]:
        return None
    return {
        "EnableCapture": True,
        "InitialSamplingPercentage": capture["sampling_percentage"],
        "DestinationS3Uri": destination,
        "CaptureOptions": [{"CaptureMode": "Input"}, {"CaptureMode": "Output"}],
        "CaptureContentTypeHeader": {
            "CsvContentTypes": ["text/csv"],
            "JsonContentTypes": ["application/json"],
        },
    }


def deployment_config(settings: dict[str, Any]) -> dict[str, Any] | None:
    """SageMaker's `DeploymentConfig` for an update; None: a plain update (`ab`)."""
    strategy = settings["strategy"]
    rollback = (
        {
            "AutoRollbackConfiguration": {
                "Alarms": [{"AlarmName": a} for a in settings["rollback_alarms"]]
            }
        }
        if settings["rollback_alarms"]
        else {}
    )
    if strategy == "ab":
        return None
    if strategy == "rolling":
        policy = {
            "MaximumBatchSize": _percent(settings["rolling_batch_percent"]),
            "WaitIntervalInSeconds": settings["wait_seconds"],
            "MaximumExecutionTimeoutInSeconds": settings["max_execution_seconds"],
            "RollbackMaximumBatchSize": _percent(settings["rolling_batch_percent"]),
        }
        return {"RollingUpdatePolicy": policy} | rollback
    routing: dict[str, Any] = {
        "Type": strategy.upper(),
        "WaitIntervalInSeconds": settings["wait_seconds"],
    }
    if strategy == "canary":
        routing["CanarySize"] = _percent(settings["canary_percent"])
    if strategy == "linear":
        routing["LinearStepSize"] = _percent(settings["linear_step_percent"])
    blue_green = {
        "TrafficRoutingConfiguration": routing,
        "TerminationWaitInSeconds": settings["termination_wait_seconds"],
        "MaximumExecutionTimeoutInSeconds": settings["max_execution_seconds"],
    }
    return {"BlueGreenUpdatePolicy": blue_green} | rollback


def _percent(value: int) -> dict[str, Any]:
    return {"Type": "CAPACITY_PERCENT", "Value": int(value)}


def _check_updatable(current: dict[str, Any] | None) -> None:
    if current is None:
        return
    name, status = current["EndpointName"], current["EndpointStatus"]
    if status in _BUSY:
        raise EndpointBusy(f"endpoint {name} is {status}: another deployment is in progress")
    if status == "Failed":
        raise EndpointUnusable(
            f"endpoint {name} is Failed ({current.get('FailureReason', 'no reason given')}); "
            f"SageMaker cannot update it: delete it (aws sagemaker delete-endpoint "
            f"--endpoint-name {name}) and run again"
        )


def _create_config(sagemaker: Any, request: dict[str, Any]) -> None:
    """A retried deployment finds its config made by the try before: that is the same one."""
    try:
        sagemaker.create_endpoint_config(**request)
    except ClientError as error:
        if "already exist" not in error.response["Error"]["Message"]:
            raise


def _call(operation: Any, **params: Any) -> None:
    """CreateEndpoint / UpdateEndpoint; losing a race with another run is EndpointBusy."""
    try:
        operation(**params)
    except ClientError as error:
        message = error.response["Error"]["Message"]
        if error.response["Error"]["Code"] == "ValidationException" and (
            "already existing" in message or "in-progress" in message or "in progress" in message
        ):
            raise EndpointBusy(message) from error
        raise


def deploy(
    sagemaker: Any,
    *,
    model_name: str,
    settings: dict[str, Any],
    capture_destination: str,
    ab_test: Callable[[str, str, str, str], None] | None = None,
) -> dict[str, Any]:
    """Create or update the endpoint; returns what the state machine waits on. With ``ab``,
    ``ab_test(endpoint, config, champion model, challenger model)`` starts the test
    (:func:`start_ab_test`)."""
    name = settings["endpoint_name"]
    current = current_endpoint(sagemaker, name)
    config_name = endpoint_config_name(model_name)
    request: dict[str, Any] = {
        "EndpointConfigName": config_name,
        "ProductionVariants": production_variants(sagemaker, settings, model_name, current),
    }
    capture = data_capture(settings, f"{capture_destination.rstrip('/')}/{config_name}")
    if capture:
        request["DataCaptureConfig"] = capture
    _check_updatable(current)
    _create_config(sagemaker, request)
    if current is None:
        _call(sagemaker.create_endpoint, EndpointName=name, EndpointConfigName=config_name)
        operation, strategy = "create", "create"
    else:
        update: dict[str, Any] = {"EndpointName": name, "EndpointConfigName": config_name}
        guardrails = deployment_config(settings)
        if guardrails:
            update["DeploymentConfig"] = guardrails
        _call(sagemaker.update_endpoint, **update)
        operation, strategy = "update", settings["strategy"]
        if strategy == "ab" and ab_test is not None:
            variants = request["ProductionVariants"]
            ab_test(name, config_name, variants[0]["ModelName"], model_name)
    return {
        "EndpointName": name,
        "EndpointConfigName": config_name,
        "Strategy": strategy,
        "Operation": operation,
        # "" for a new endpoint: the state machine compares it with the endpoint's config
        "PreviousConfigName": current["EndpointConfigName"] if current else "",
        **poll_schedule(int(settings["timeout_seconds"]), int(settings["poll_seconds"])),
    }


def poll_schedule(timeout_seconds: int, poll_seconds: int) -> dict[str, Any]:
    """The state machine's waits between DescribeEndpoint calls: 1 s, doubling up to
    ``poll_seconds``, until they add up to ``timeout_seconds``.

    A local endpoint is in service within a second, one in AWS within minutes: short first
    waits cost AWS a few calls and save a local run most of a ``poll_seconds`` wait. The loop
    counts ``polls_left`` down to 0 and waits ``waits[polls_left]`` seconds before each call,
    so ``waits`` holds the schedule backwards (index 0 is never used).
    """
    schedule: list[int] = []
    wait = 1
    while sum(schedule) < timeout_seconds:
        schedule.append(min(wait, poll_seconds))
        wait *= 2
    return {"polls_left": len(schedule), "waits": [0, *reversed(schedule)]}


#: Where an A/B test's record lives; lambdas/ab_test reads and updates it (its ab_test.py says
#: what each key means).
AB_TEST_KEY = "ab-tests/{endpoint}.json"


def start_ab_test(
    s3: Any,
    *,
    bucket: str,
    endpoint: str,
    config_name: str,
    champion_model: str,
    challenger_model: str,
    settings: dict[str, Any],
    problem_type: str,
    model_package_arn: str | None,
    now: datetime,
) -> dict[str, Any]:
    """The record of a new A/B test, which the scheduled evaluation (ABTestFunction) picks up;
    a new deployment of the endpoint replaces the record of the test before it."""
    record = {
        "endpoint": endpoint,
        "phase": "testing",
        "started": now.strftime("%Y-%m-%dT%H:%M:%S.%fZ"),
        "problem_type": problem_type,
        "settings": settings["ab"],
        "config_name": config_name,
        "champion": {"variant": "Champion", "model": champion_model},
        "challenger": {
            "variant": "Challenger",
            "model": challenger_model,
            "model_package_arn": model_package_arn,
        },
        "looks_done": 0,
        "verdict": None,
        "history": [{"at": now.strftime("%Y-%m-%dT%H:%M:%S.%fZ"), "event": "started"}],
    }
    s3.put_object(
        Bucket=bucket,
        Key=AB_TEST_KEY.format(endpoint=endpoint),
        Body=json.dumps(record, indent=2).encode(),
        ContentType="application/json",
    )
    return record
