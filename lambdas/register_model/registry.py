"""Registers a run's model as a version of a SageMaker Model Registry group.

Plain functions over an injected SageMaker client. The version records what a reviewer and a
later deployment need: the serving container (image, model data, script-mode environment),
`ModelMetrics` pointing at the evaluation report and the Clarify reports, and where it came
from (execution, data, a digest of the run's config) in `CustomerMetadataProperties`.
"""

from __future__ import annotations

import hashlib
import json
from typing import Any

from botocore.exceptions import ClientError

CONTENT_TYPES = ["text/csv", "application/json"]
APPROVAL = {"auto": "Approved", "manual": "PendingManualApproval"}


def config_digest(config: dict[str, Any]) -> str:
    """sha256 of the run's config as canonical JSON: equal configs, equal digests."""
    text = json.dumps(config, sort_keys=True, separators=(",", ":"), default=str)
    return "sha256:" + hashlib.sha256(text.encode()).hexdigest()


def ensure_group(sagemaker: Any, group: str) -> None:
    """Create the group unless it exists (CloudFormation makes it in AWS; a first local run)."""
    try:
        sagemaker.describe_model_package_group(ModelPackageGroupName=group)
        return
    except ClientError as error:
        if error.response["Error"]["Code"] != "ValidationException":
            raise
    try:
        sagemaker.create_model_package_group(
            ModelPackageGroupName=group,
            ModelPackageGroupDescription="Models trained by the sfn-mlops pipeline",
        )
    except ClientError as error:  # created meanwhile by a concurrent run
        if "already exists" not in error.response["Error"]["Message"]:
            raise


def model_metrics(reports: dict[str, str | None]) -> dict[str, Any]:
    """`ModelMetrics` in the registry's layout, for the reports this run wrote."""
    metrics: dict[str, Any] = {}
    if reports.get("evaluation"):
        metrics["ModelQuality"] = {
            "Statistics": {"ContentType": "application/json", "S3Uri": reports["evaluation"]}
        }
    if reports.get("bias"):
        metrics["Bias"] = {"Report": {"ContentType": "application/json", "S3Uri": reports["bias"]}}
    if reports.get("explainability"):
        metrics["Explainability"] = {
            "Report": {"ContentType": "application/json", "S3Uri": reports["explainability"]}
        }
    return metrics


def register(
    sagemaker: Any,
    *,
    group: str,
    container: dict[str, Any],
    approval: str,
    reports: dict[str, str | None],
    execution_arn: str,
    data_uri: str,
    config: dict[str, Any],
    description: str,
    scores: dict[str, str] | None = None,
    rejected_because: str | None = None,
) -> dict[str, Any]:
    """Create the version; `rejected_because` registers it as Rejected (kept for the record:
    a challenger that lost to the production model). `scores` (e.g. the new and the
    production model's gate metric) go into its metadata beside the provenance."""
    ensure_group(sagemaker, group)
    status = "Rejected" if rejected_because else APPROVAL[approval]
    metadata = {
        "execution_arn": execution_arn,
        "data_uri": data_uri,
        "config_digest": config_digest(config),
        **(scores or {}),
    }
    if rejected_because:
        metadata["rejected_because"] = rejected_because
    request: dict[str, Any] = {
        "ModelPackageGroupName": group,
        "ModelPackageDescription": description[:1024],
        "InferenceSpecification": {
            "Containers": [container],
            "SupportedContentTypes": CONTENT_TYPES,
            "SupportedResponseMIMETypes": CONTENT_TYPES,
        },
        "ModelApprovalStatus": status,
        "CustomerMetadataProperties": {k: v[:1024] for k, v in metadata.items()},
    }
    metrics = model_metrics(reports)
    if metrics:
        request["ModelMetrics"] = metrics
    arn = sagemaker.create_model_package(**request)["ModelPackageArn"]
    return {
        "ModelPackageArn": arn,
        "ModelPackageVersion": int(arn.rsplit("/", 1)[1]),
        "ModelApprovalStatus": status,
    }
