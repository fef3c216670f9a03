"""Reads an evaluation report and decides the quality gate. Plain functions, no AWS at import.

The report is the one the evaluation job writes, in SageMaker Model Monitor's model quality
layout: metric groups (`regression_metrics`, `binary_classification_metrics`,
`multiclass_classification_metrics`), each metric `{"value": v, "standard_deviation": s,
"confidence_interval": {"lower", "upper", "level"}}`; the champion section adds the gate
metric's paired bootstrap difference (`paired_difference`).
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
#: Gate direction -> the interval's pessimistic bound, the one gate.confidence gates on.
PESSIMISTIC_BOUND = {"minimize": "upper", "maximize": "lower"}
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


def interval_of(section: dict[str, Any], metric: str) -> dict[str, float] | None:
    """The metric's `confidence_interval` in a report (or its champion section), if any."""
    for group in METRIC_GROUPS:
        entry = (section.get(group) or {}).get(metric)
        interval = entry.get("confidence_interval") if isinstance(entry, dict) else None
        if isinstance(interval, dict) and all(
            _is_number(interval.get(key)) for key in ("lower", "upper", "level")
        ):
            return {key: float(interval[key]) for key in ("lower", "upper", "level")}
    return None


def format_interval(interval: dict[str, float] | None) -> str:
    """`[2.1, 2.5] at 95%`, or "" without an interval."""
    if not interval:
        return ""
    return (
        f"[{_format_number(interval['lower'])}, {_format_number(interval['upper'])}] "
        f"at {interval['level']:.0%}"
    )


def decide(
    metrics: dict[str, float],
    gate: dict[str, Any],
    interval: dict[str, float] | None = None,
) -> dict[str, Any]:
    """Compares the gate's metric with its threshold.

    `gate` is `{"metric": "rmse", "direction": "minimize", "threshold": 3.0}`, with
    `"confidence": 0.95` to gate on the pessimistic bound of the metric's bootstrap `interval`
    (the upper one when minimizing) instead of its value. `gated_value` is the number the
    state machine compares with the threshold; `bound` says which it is.
    """
    metric, direction, threshold = _check_gate(metrics, gate)
    value = metrics[metric]
    confidence = gate.get("confidence")
    bound = "value"
    gated_value = value
    if confidence is not None:
        if interval is None:
            raise InvalidEvaluationReport(
                f"gate.confidence is set but the evaluation report has no confidence interval "
                f"for {metric}"
            )
        if not math.isclose(interval["level"], confidence):
            raise InvalidEvaluationReport(
                f"gate.confidence is {confidence} but the report's interval for {metric} is at "
                f"{interval['level']}: the evaluation job ran with another level"
            )
        bound = PESSIMISTIC_BOUND[direction]
        gated_value = interval[bound]
    passed = gated_value <= threshold if direction == "minimize" else gated_value >= threshold
    shown = f"{_format_number(value)}"
    if interval:
        shown += f" ({format_interval(interval)})"
    cause = f"{metric} is {shown} on the test set; the quality gate requires "
    if bound == "value":
        cause += f"{metric} {COMPARISONS[direction]} {_format_number(threshold)}"
    else:
        cause += (
            f"the {bound} bound of its {confidence:.0%} interval {COMPARISONS[direction]} "
            f"{_format_number(threshold)} (gate.confidence); the {bound} bound "
            f"{_format_number(gated_value)} decided"
        )
    return {
        "metric": metric,
        "value": value,
        "threshold": threshold,
        "direction": direction,
        "passed": passed,
        "metrics": dict(metrics),
        "cause": cause,
        "interval": interval,
        "bound": bound,
        "gated_value": gated_value,
    }


def against_champion(
    report: dict[str, Any],
    decision: dict[str, Any],
    margin: float = 0.0,
    significance: float | None = None,
) -> dict[str, Any]:
    """The new model against the production model scored on the same test rows.

    `required` is what the new model's gate metric must reach: the champion's value less the
    margin (minimize) or plus it (maximize); a margin of 0 means "not worse". `present` is
    false when there is no champion or it cannot be compared (then nothing blocks the new one).

    `difference` is the paired bootstrap difference (new less champion, on the same resampled
    rows) the evaluation job wrote. With a `significance` level (gate.champion_significance),
    the new model beats the champion only if the difference's one-sided bound is past
    `required_difference` (-margin when minimizing, +margin when maximizing): the improvement,
    margin included, is significant. The state machine compares those two numbers itself.
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
    difference = _paired_difference(champion, metric)
    required_difference = 0.0 - margin if direction == "minimize" else margin  # never -0.0
    result: dict[str, Any] = {
        "present": True,
        "source": champion.get("source"),
        "value": champion_value,
        "required": required,
        "interval": interval_of(champion, metric),
        "difference": difference,
        "significance": significance,
        "required_difference": required_difference,
        "difference_bound": None,
        "metrics": scores,
    }
    if significance is None:
        beats = value <= required if direction == "minimize" else value >= required
        decided = f"required {COMPARISONS[direction]} {_format_number(required)}"
    else:
        bound = _significance_bound(difference, metric, significance)
        result["difference_bound"] = bound["value"]
        beats = (
            bound["value"] < required_difference
            if direction == "minimize"
            else bound["value"] > required_difference
        )
        decided = (
            f"gate.champion_significance {significance:g}: the paired difference's "
            f"{bound['level']:.0%} {bound['side']} bound {_format_number(bound['value'])} must "
            f"be {'below' if direction == 'minimize' else 'above'} "
            f"{_format_number(required_difference)}"
        )
    verdict = "beats" if beats else "does not beat"
    paired = ""
    if difference and difference.get("confidence_interval"):
        paired = (
            f"; paired difference {_format_number(difference['mean'])} "
            f"{format_interval(difference['confidence_interval'])}, not better in "
            f"{difference['share_not_better']:.1%} of resamples"
        )
    result["beats"] = beats
    result["cause"] = (
        f"the new model's {metric} {_format_number(value)} {verdict} the production model's "
        f"{_format_number(champion_value)} ({champion.get('source')}; {decided}{paired})"
    )
    return result


def _paired_difference(champion: dict[str, Any], metric: str) -> dict[str, Any] | None:
    difference = champion.get("paired_difference")
    if not isinstance(difference, dict) or difference.get("metric") != metric:
        return None
    return difference


def _significance_bound(
    difference: dict[str, Any] | None, metric: str, significance: float
) -> dict[str, Any]:
    bound = (difference or {}).get("bound")
    if not isinstance(bound, dict) or not _is_number(bound.get("value")):
        raise InvalidEvaluationReport(
            f"gate.champion_significance is set but the evaluation report has no paired "
            f"bootstrap bound for {metric} under champion.paired_difference"
        )
    if not math.isclose(float((difference or {}).get("significance", -1)), significance):
        raise InvalidEvaluationReport(
            f"gate.champion_significance is {significance} but the report's paired bound is "
            f"for {(difference or {}).get('significance')}: the evaluation job ran with another"
        )
    return {**bound, "value": float(bound["value"])}


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


def _is_number(value: Any) -> bool:
    return isinstance(value, int | float) and not isinstance(value, bool) and math.isfinite(value)


def _format_number(number: float) -> str:
    """Six significant digits, keeping a trailing `.0` (3.0 stays `3.0`)."""
    return repr(float(f"{number:.6g}"))
