"""Finds the model in production, the champion a new model must beat, and stages it for the
evaluation job. Plain functions over injected SageMaker and S3 clients.

The champion is the model the endpoint serves (its heaviest variant), else the group's latest
Approved version, else none. Its `model.tar.gz` is copied into the run's `champion/` prefix, so
the evaluation job scores it on this run's test set beside the new model; with no champion a
`champion.json` saying so is written there instead (a processing input must not be empty).
"""

from __future__ import annotations

import json
from typing import Any

from botocore.exceptions import ClientError


def _split(uri: str) -> tuple[str, str]:
    bucket, _, key = uri.removeprefix("s3://").partition("/")
    return bucket, key


def serving_model(sagemaker: Any, endpoint_name: str) -> tuple[str, str] | None:
    """(model data URL, where it was found) of the endpoint's heaviest variant, if it serves."""
    try:
        endpoint = sagemaker.describe_endpoint(EndpointName=endpoint_name)
    except ClientError as error:
        if error.response["Error"]["Code"] == "ValidationException":
            return None  # no such endpoint yet
        raise
    if endpoint["EndpointStatus"] not in ("InService", "Updating", "SystemUpdating"):
        return None
    config = sagemaker.describe_endpoint_config(EndpointConfigName=endpoint["EndpointConfigName"])
    variant = max(config["ProductionVariants"], key=lambda v: v.get("InitialVariantWeight", 1.0))
    model = sagemaker.describe_model(ModelName=variant["ModelName"])
    container = model.get("PrimaryContainer") or model["Containers"][0]
    where = f"endpoint {endpoint_name} (model {variant['ModelName']})"
    return str(container["ModelDataUrl"]), where


def latest_approved(sagemaker: Any, group: str) -> tuple[str, str] | None:
    """(model data URL, version) of the group's newest Approved version."""
    try:
        page = sagemaker.list_model_packages(
            ModelPackageGroupName=group,
            ModelApprovalStatus="Approved",
            SortBy="CreationTime",
            SortOrder="Descending",
            MaxResults=1,
        )
    except ClientError as error:
        if error.response["Error"]["Code"] == "ValidationException":
            return None  # no such group yet
        raise
    if not page["ModelPackageSummaryList"]:
        return None
    arn = page["ModelPackageSummaryList"][0]["ModelPackageArn"]
    package = sagemaker.describe_model_package(ModelPackageName=arn)
    container = package["InferenceSpecification"]["Containers"][0]
    return str(container["ModelDataUrl"]), f"{group}/{package['ModelPackageVersion']}"


def stage_champion(
    sagemaker: Any, s3: Any, *, endpoint_name: str, group: str, destination: str
) -> dict[str, Any]:
    """Copy the champion's archive to `destination` (a prefix); returns what was found."""
    found = serving_model(sagemaker, endpoint_name) or latest_approved(sagemaker, group)
    bucket, prefix = _split(destination.rstrip("/") + "/")
    if found is None:
        marker = {
            "present": False,
            "reason": f"no endpoint {endpoint_name} and no Approved version in {group}",
        }
        s3.put_object(Bucket=bucket, Key=f"{prefix}champion.json", Body=json.dumps(marker).encode())
        return {"present": False, "source": None, "model_data_url": None}
    url, source = found
    source_bucket, source_key = _split(url)
    s3.copy_object(
        Bucket=bucket,
        Key=f"{prefix}model.tar.gz",
        CopySource={"Bucket": source_bucket, "Key": source_key},
    )
    info = {"present": True, "source": source, "model_data_url": url}
    s3.put_object(Bucket=bucket, Key=f"{prefix}champion.json", Body=json.dumps(info).encode())
    return info
