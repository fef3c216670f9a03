"""Reads an evaluation report and decides the quality gate. Plain functions, no AWS at import.

The report is the one the evaluation job writes, in SageMaker Model Monitor's model quality
layout: metric groups (`regression_metrics`, `binary_classification_metrics`,
`multiclass_classification_metrics`), each metric `{"value": v, "standard_deviation": s}`.
"""

from __future__ import annotations

import json
import math
from typing import Any

from botocore.exceptions import ClientError

METRIC_GROUPS = (
    "regression_metrics",
    "binary_classification_metrics",
    "multiclass_classification_metrics",
)
#: Gate direction -> the comparison a passing value satisfies, as written in the cause.
COMPARISONS = {"minimize": "<=", "maximize": ">="}
_NOT_FOUND_CODES = frozenset({"NoSuchKey", "NoSuchBucket", "404"})
_TRANSIENT_CODES = frozenset(
    {
        "SlowDown",
        "ThrottlingException",
        "ServiceUnavailable",
        "RequestTimeout",
        "InternalError",
        "503",
    }
)


class EvaluationReportUnavailable(Exception):
    """S3 throttled or failed for a moment; the state machine retries this error by name."""


class EvaluationReportNotFound(Exception):
    """The evaluation job wrote no report where the pipeline expects it (the platform's fault)."""


class InvalidEvaluationReport(ValueError):
    """The report is not JSON in the expected layout (the evaluation job's fault)."""


class GateConfigError(ValueError):
    """The quality gate's configuration does not fit the report (the user's fault)."""


def parse_s3_uri(uri: str) -> tuple[str, str]:
    """`s3://bucket/key` -> `("bucket", "key")`."""
    scheme, _, rest = uri.partition("://")
    bucket, _, key = rest.partition("/")
    if scheme != "s3" or not bucket or not key:
        raise ValueError(f"expected an s3://bucket/key URI, got {uri!r}")
    return bucket, key


def read_report(uri: str, s3_client: Any) -> dict[str, Any]:
    """Loads the JSON report at `uri`."""
    bucket, key = parse_s3_uri(uri)
    try:
        response = s3_client.get_object(Bucket=bucket, Key=key)
    except ClientError as error:
        code = error.response.get("Error", {}).get("Code")
        if code in _NOT_FOUND_CODES:
            raise EvaluationReportNotFound(f"no evaluation report at {uri}") from error
        if code in _TRANSIENT_CODES:
            raise EvaluationReportUnavailable(f"S3 answered {code} for {uri}; retry") from error
        raise
    try:
        report = json.loads(response["Body"].read())
    except ValueError as error:
        raise InvalidEvaluationReport(f"the evaluation report at {uri} is not JSON") from error
    if not isinstance(report, dict):
        raise InvalidEvaluationReport(f"the evaluation report at {uri} is not a JSON object")
    return report


def flatten_metrics(report: dict[str, Any]) -> dict[str, float]:
    """`{"regression_metrics": {"rmse": {"value": 3.4, ...}}}` -> `{"rmse": 3.4}`."""
    groups = [group for group in METRIC_GROUPS if group in report]
    if not groups:
        raise InvalidEvaluationReport(
            f"the evaluation report has none of {', '.join(METRIC_GROUPS)}"
        )
    metrics: dict[str, float] = {}
    for group in groups:
        for name, entry in report[group].items():
            metrics[name] = _metric_value(group, name, entry)
    return metrics


def _metric_value(group: str, name: str, entry: Any) -> float:
    value = entry.get("value") if isinstance(entry, dict) else None
    if isinstance(value, bool) or not isinstance(value, int | float):
        raise InvalidEvaluationReport(f"{group}.{name} has no numeric 'value': {entry!r}")
    if not math.isfinite(value):
        # Step Functions cannot carry NaN or infinity in JSON, and no gate can compare them.
        raise InvalidEvaluationReport(f"{group}.{name} is {value}, not a finite number")
    return float(value)


def decide(metrics: dict[str, float], gate: dict[str, Any]) -> dict[str, Any]:
    """Compares the gate's metric with its threshold.

    `gate` is `{"metric": "rmse", "direction": "minimize", "threshold": 3.0}`.
    """
    metric, direction, threshold = _check_gate(metrics, gate)
    value = metrics[metric]
    passed = value <= threshold if direction == "minimize" else value >= threshold
    cause = (
        f"{metric} is {_format_number(value)} on the test set; the quality gate requires "
        f"{metric} {COMPARISONS[direction]} {_format_number(threshold)}"
    )
    return {
        "metric": metric,
        "value": value,
        "threshold": threshold,
        "direction": direction,
        "passed": passed,
        "metrics": dict(metrics),
        "cause": cause,
    }


def against_champion(
    report: dict[str, Any], decision: dict[str, Any], margin: float = 0.0
) -> dict[str, Any]:
    """The new model against the production model scored on the same test rows.

    `required` is what the new model's gate metric must reach: the champion's value less the
    margin (minimize) or plus it (maximize); a margin of 0 means "not worse". `present` is
    false when there is no champion or it cannot be compared (then nothing blocks the new one).
    """
    champion = report.get("champion")
    if not isinstance(champion, dict):
        return {"present": False, "cause": "no model in production yet"}
    if not champion.get("comparable"):
        return {"present": False, "cause": f"not compared: {champion.get('reason')}"}
    metric, direction, value = decision["metric"], decision["direction"], decision["value"]
    scores = flatten_metrics({k: v for k, v in champion.items() if k in METRIC_GROUPS})
    if metric not in scores:
        return {"present": False, "cause": f"not compared: the champion has no {metric}"}
    champion_value = scores[metric]
    required = champion_value - margin if direction == "minimize" else champion_value + margin
    beats = value <= required if direction == "minimize" else value >= required
    verdict = "beats" if beats else "does not beat"
    cause = (
        f"the new model's {metric} {_format_number(value)} {verdict} the production model's "
        f"{_format_number(champion_value)} ({champion.get('source')}; required "
        f"{COMPARISONS[direction]} {_format_number(required)})"
    )
    return {
        "present": True,
        "source": champion.get("source"),
        "value": champion_value,
        "required": required,
        "beats": beats,
        "metrics": scores,
        "cause": cause,
    }


#: Without gate.max_train_test_gap, the summary calls a model overfit when its test metric is
#: worse than its training metric by more than this share of the training value.
OVERFIT_RELATIVE_GAP = 0.25


def overfitting(
    report: dict[str, Any], decision: dict[str, Any], limit: float | None = None
) -> dict[str, Any]:
    """The gate metric on the training, validation and test splits, and the train/test gap:
    how much worse the test value is than the training one (positive: worse on unseen data).

    `passed` holds when no `limit` is set or the gap is within it; `overfits` says what the
    summary says: over the limit, or without one, worse by more than OVERFIT_RELATIVE_GAP.
    """
    metric, direction, test = decision["metric"], decision["direction"], decision["value"]
    splits = report.get("splits") if isinstance(report.get("splits"), dict) else {}
    values = {"train": None, "validation": None, "test": test}
    for split in ("train", "validation"):
        if isinstance(splits.get(split), dict):
            values[split] = flatten_metrics(splits[split]).get(metric)
    train = values["train"]
    result: dict[str, Any] = {"metric": metric, **values, "limit": limit}
    if train is None:
        why = "the training split was not scored"
        return {**result, "gap": None, "overfits": False, "passed": limit is None, "cause": why}
    gap = test - train if direction == "minimize" else train - test
    overfits = gap > (limit if limit is not None else OVERFIT_RELATIVE_GAP * abs(train))
    cause = (
        f"{metric} is {_format_number(train)} on the training set and {_format_number(test)} on "
        f"the test set: a train/test gap of {_format_number(gap)}"
        + (f"; gate.max_train_test_gap allows {_format_number(limit)}" if limit is not None else "")
    )
    return {
        **result,
        "gap": gap,
        "overfits": overfits,
        "passed": limit is None or gap <= limit,
        "cause": cause,
    }


def _check_gate(metrics: dict[str, float], gate: dict[str, Any]) -> tuple[str, str, float]:
    metric, direction, threshold = gate.get("metric"), gate.get("direction"), gate.get("threshold")
    if direction not in COMPARISONS:
        raise GateConfigError(
            f"gate direction must be one of {', '.join(COMPARISONS)}, got {direction!r}"
        )
    if isinstance(threshold, bool) or not isinstance(threshold, int | float):
        raise GateConfigError(f"gate threshold must be a number, got {threshold!r}")
    if not math.isfinite(threshold):
        raise GateConfigError(f"gate threshold must be a finite number, got {threshold!r}")
    if metric not in metrics:
        raise GateConfigError(
            f"the gate metric {metric!r} is not in the evaluation report; "
            f"it has: {', '.join(sorted(metrics))}"
        )
    return metric, direction, float(threshold)


def _format_number(number: float) -> str:
    """Six significant digits, keeping a trailing `.0` (3.0 stays `3.0`)."""
    return repr(float(f"{number:.6g}"))
