"""Decides the bias gate from a Clarify bias analysis.json. Plain functions, no AWS at import.

analysis.json (Clarify's layout): `pre_training_bias_metrics` and `post_training_bias_metrics`,
each `{"label", "label_value_or_threshold", "facets": {name: [{"value_or_threshold",
"metrics": [{"name", "description", "value"[, "error"]}]}]}}`. A threshold `{"DPPL": 0.1}`
means |DPPL| <= 0.1 for every facet value. A metric Clarify could not compute (`value` null,
`error` set) fails a threshold set on it: the gate cannot tell that it holds.
"""

from __future__ import annotations

import json
import math
from typing import Any

from botocore.exceptions import ClientError

SECTIONS = ("pre_training_bias_metrics", "post_training_bias_metrics")
#: The metrics `sfn-mlops run` prints (class imbalance, label and prediction differences, DI).
HEADLINE = ("CI", "DPL", "DPPL", "DI")


class BiasReportNotFound(Exception):
    """The bias job wrote no analysis.json where the pipeline expects it (the platform's)."""


class InvalidBiasReport(ValueError):
    """analysis.json is not in Clarify's layout (the bias job's fault)."""


def read_report(uri: str, s3_client: Any) -> dict[str, Any]:
    bucket, _, key = uri.removeprefix("s3://").partition("/")
    try:
        body = s3_client.get_object(Bucket=bucket, Key=key)["Body"].read()
    except ClientError as error:
        if error.response.get("Error", {}).get("Code") in ("NoSuchKey", "NoSuchBucket", "404"):
            raise BiasReportNotFound(f"no bias analysis at {uri}") from error
        raise
    try:
        report = json.loads(body)
    except ValueError as error:
        raise InvalidBiasReport(f"the bias analysis at {uri} is not JSON") from error
    if not isinstance(report, dict) or not any(section in report for section in SECTIONS):
        raise InvalidBiasReport(f"the bias analysis at {uri} has none of {', '.join(SECTIONS)}")
    return report


def metric_rows(report: dict[str, Any]) -> list[dict[str, Any]]:
    """Every (facet, value, metric) of the report, flattened."""
    rows = []
    for section in SECTIONS:
        for facet, groups in (report.get(section) or {}).get("facets", {}).items():
            for group in groups:
                for metric in group.get("metrics", []):
                    rows.append(
                        {
                            "facet": facet,
                            "facet_value": group.get("value_or_threshold"),
                            "metric": metric["name"],
                            "value": metric.get("value"),
                            "error": metric.get("error"),
                        }
                    )
    return rows


def _number(value: float) -> str:
    return repr(float(f"{value:.6g}"))


def _facet_label(row: dict[str, Any], display: dict[str, str]) -> str:
    return display.get(row["facet"], f"{row['facet']}={row['facet_value']}")


def decide(
    report: dict[str, Any], thresholds: dict[str, float], facets: list[dict[str, Any]]
) -> dict[str, Any]:
    """`passed`, the violations, the cause (the first violation, for the Fail state) and the
    headline metrics. ``facets`` are the config's (for the values as the user wrote them)."""
    display = {
        facet["name_or_index"]: f"{facet['name_or_index']}="
        + ",".join(str(v) for v in facet["value_or_threshold"])
        for facet in facets
    }
    rows = metric_rows(report)
    violations = []
    for row in rows:
        threshold = thresholds.get(row["metric"])
        if threshold is None:
            continue
        value = row["value"]
        label = _facet_label(row, display)
        if value is None or not math.isfinite(value):
            reason = row["error"] or "no value"
            violations.append(
                {**row, "threshold": threshold, "cause": (
                    f"{row['metric']} for facet {label} could not be computed ({reason}); the "
                    f"bias gate requires |{row['metric']}| <= {_number(threshold)}"
                )}
            )  # fmt: skip
        elif abs(value) > threshold:
            violations.append(
                {**row, "threshold": threshold, "cause": (
                    f"{row['metric']} for facet {label} is {_number(value)}; the bias gate "
                    f"requires |{row['metric']}| <= {_number(threshold)}"
                )}
            )  # fmt: skip
    headline = [
        {"facet": _facet_label(row, display), "metric": row["metric"], "value": row["value"]}
        for row in rows
        if row["metric"] in HEADLINE
    ]
    if violations:
        more = f" (and {len(violations) - 1} more)" if len(violations) > 1 else ""
        cause = violations[0]["cause"] + more
    else:
        cause = "every configured bias threshold holds" if thresholds else "no bias thresholds set"
    return {
        "passed": not violations,
        "violations": violations,
        "cause": cause,
        "headline": headline,
    }
