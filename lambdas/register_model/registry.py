"""Registers a run's model as a version of a SageMaker Model Registry group.

Plain functions over an injected SageMaker client. The version records what a reviewer and a
later deployment need: the serving container (image, model data, script-mode environment),
`ModelMetrics` pointing at the evaluation report and the Clarify reports, and where it came
from (execution, data, a digest of the run's config) in `CustomerMetadataProperties`.
"""

from __future__ import annotations

import hashlib
import json
import re
import unicodedata
from typing import Any

from botocore.exceptions import ClientError

CONTENT_TYPES = ["text/csv", "application/json"]
APPROVAL = {"auto": "Approved", "manual": "PendingManualApproval"}

# CreateModelPackage's limits (botocore's sagemaker model, shapes CustomerMetadataKey/Value and
# EntityDescription): metadata values are 1-256 characters of letters, separators, digits and
# `_.:/=+-@`; the description is up to 1024 letters, marks, separators, symbols, digits and
# punctuation. SageMaker refuses anything else with a ValidationException.
METADATA_VALUE_MAX = 256
DESCRIPTION_MAX = 1024
_METADATA_CATEGORIES = ("L", "Z", "N")
_METADATA_PUNCTUATION = frozenset("_.:/=+-@")
_DESCRIPTION_CATEGORIES = ("L", "M", "Z", "S", "N", "P")


def _fits(text: str, categories: tuple[str, ...], extra: frozenset[str], limit: int) -> str:
    """`text` with each character SageMaker's pattern refuses turned into a space (runs of
    spaces made one), cut to `limit`: the words survive, the request is accepted."""
    kept = "".join(
        char if char in extra or unicodedata.category(char)[0] in categories else " "
        for char in text
    )
    return re.sub(r"\s{2,}", " ", kept).strip()[:limit].rstrip()


def metadata_value(text: str) -> str:
    """A value CustomerMetadataProperties takes ("-" for one with nothing left: at least 1)."""
    return _fits(text, _METADATA_CATEGORIES, _METADATA_PUNCTUATION, METADATA_VALUE_MAX) or "-"


def description_text(text: str) -> str:
    return _fits(text, _DESCRIPTION_CATEGORIES, frozenset(), DESCRIPTION_MAX)


def config_digest(config: dict[str, Any]) -> str:
    """sha256 of the run's config as canonical JSON: equal configs, equal digests."""
    text = json.dumps(config, sort_keys=True, separators=(",", ":"), default=str)
    return "sha256:" + hashlib.sha256(text.encode()).hexdigest()


def _interval_words(interval: dict[str, Any] | None) -> str:
    """`2.1 to 2.5 at 95 percent`: words and digits, so a metadata value takes them."""
    if not interval:
        return ""
    return (
        f"{interval['lower']:.6g} to {interval['upper']:.6g} at {interval['level'] * 100:g} percent"
    )


def quality_scores(
    metric: str,
    value: float,
    interval: dict[str, Any] | None,
    champion: dict[str, Any],
    run: str,
) -> tuple[dict[str, str], str]:
    """The gate metric for the version's metadata and its description: the new model's value
    and bootstrap interval, and beside a production model, its value and interval and the
    paired difference (new less production on the same resampled rows) with its interval."""
    scores = {f"{metric}_new": f"{value:.6g}"}
    sentence = f"{metric} {value:.6g}"
    if interval:
        scores[f"{metric}_new_interval"] = _interval_words(interval)
        sentence += f" (interval {_interval_words(interval)})"
    sentence += f" on the test set (run {run})"
    if champion.get("present"):
        scores[f"{metric}_production"] = f"{champion['value']:.6g}"
        scores["production_model"] = str(champion.get("source"))
        sentence += f"; production model {champion['value']:.6g}"
        if champion.get("interval"):
            scores[f"{metric}_production_interval"] = _interval_words(champion["interval"])
            sentence += f" (interval {_interval_words(champion['interval'])})"
        difference = champion.get("difference") or {}
        if difference.get("confidence_interval"):
            words = _interval_words(difference["confidence_interval"])
            scores[f"{metric}_difference"] = f"{difference['mean']:.6g}"
            scores[f"{metric}_difference_interval"] = words
            scores[f"{metric}_share_not_better"] = f"{difference['share_not_better']:.4g}"
            sentence += (
                f"; paired difference new less production {difference['mean']:.6g} "
                f"(interval {words}; not better in {difference['share_not_better']:.1%} of "
                "resamples)"
            )
    return scores, sentence


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


def data_provenance(data: dict[str, Any], judged_on: dict[str, Any] | None) -> dict[str, str]:
    """What the version was trained on (the run's manifest: every object and its ETag) and
    judged on (recent rows since when, or all the data), as metadata values."""
    found: dict[str, str] = {}
    if data.get("manifest_uri"):
        found["data_manifest"] = str(data["manifest_uri"])
    rows = data.get("captured_rows") or {}
    if rows:
        found["captured_rows"] = f"{rows.get('recent', 0)} recent {rows.get('older', 0)} older"
    if judged_on:
        if judged_on.get("test_from") == "recent":
            since = judged_on.get("since") or "the newest rows"
            found["judged_on"] = f"{judged_on.get('recent_rows')} recent rows since {since}"
        else:
            found["judged_on"] = "all the data"
        kept, older = judged_on.get("older_kept", 0), judged_on.get("older_rows", 0)
        found["older_rows_kept"] = f"{kept} of {older}"
    return found


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
        # The metadata keeps the words; the description, which takes punctuation, the sentence.
        metadata["rejected_because"] = rejected_because
        description = (
            f"{description}. Rejected: {rejected_because}"
            if description
            else (f"Rejected: {rejected_because}")
        )
    request: dict[str, Any] = {
        "ModelPackageGroupName": group,
        "ModelPackageDescription": description_text(description),
        "InferenceSpecification": {
            "Containers": [container],
            "SupportedContentTypes": CONTENT_TYPES,
            "SupportedResponseMIMETypes": CONTENT_TYPES,
        },
        "ModelApprovalStatus": status,
        "CustomerMetadataProperties": {k: metadata_value(v) for k, v in metadata.items()},
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
