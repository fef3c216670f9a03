"""bias_gate: the bias gate's decision and wording on a Clarify analysis.json, exact values."""

from __future__ import annotations

from types import ModuleType
from typing import Any

import pytest

FACETS = [{"name_or_index": "sex", "value_or_threshold": ["F"]}]


def _metric(name: str, value: float | None, error: str | None = None) -> dict[str, Any]:
    entry: dict[str, Any] = {"name": name, "description": name, "value": value}
    if error:
        entry["error"] = error
    return entry


REPORT = {
    "pre_training_bias_metrics": {
        "label": "rings",
        "label_value_or_threshold": "10",
        "facets": {
            "sex": [
                {
                    "value_or_threshold": "0",
                    "metrics": [
                        _metric("CI", 0.37),
                        _metric("DPL", -0.125),
                        _metric("CDDL", None, "Group variable is empty or not provided"),
                    ],
                }
            ]
        },
    },
    "post_training_bias_metrics": {
        "label": "rings",
        "label_value_or_threshold": "10",
        "facets": {
            "sex": [
                {
                    "value_or_threshold": "0",
                    "metrics": [_metric("DPPL", -0.2143), _metric("DI", 1.5)],
                }
            ]
        },
    },
}


@pytest.fixture
def gate(load_lambda: Any) -> ModuleType:
    (module,) = load_lambda("bias_gate", "bias_gate")
    return module


def test_no_thresholds_pass_and_report_the_headline(gate: ModuleType) -> None:
    decision = gate.decide(REPORT, {}, FACETS)
    assert decision["passed"] is True
    assert decision["cause"] == "no bias thresholds set"
    assert decision["headline"] == [
        {"facet": "sex=F", "metric": "CI", "value": 0.37},
        {"facet": "sex=F", "metric": "DPL", "value": -0.125},
        {"facet": "sex=F", "metric": "DPPL", "value": -0.2143},
        {"facet": "sex=F", "metric": "DI", "value": 1.5},
    ]


def test_thresholds_bound_the_absolute_value(gate: ModuleType) -> None:
    assert gate.decide(REPORT, {"DPPL": 0.2143, "DPL": 0.2}, FACETS)["passed"] is True
    decision = gate.decide(REPORT, {"DPPL": 0.1, "CI": 0.5}, FACETS)
    assert decision["passed"] is False
    assert decision["cause"] == (
        "DPPL for facet sex=F is -0.2143; the bias gate requires |DPPL| <= 0.1"
    )
    assert [v["metric"] for v in decision["violations"]] == ["DPPL"]


def test_several_violations_and_an_uncomputable_metric(gate: ModuleType) -> None:
    decision = gate.decide(REPORT, {"CDDL": 0.1, "DPPL": 0.1}, FACETS)
    assert decision["passed"] is False
    assert decision["cause"] == (
        "CDDL for facet sex=F could not be computed (Group variable is empty or not "
        "provided); the bias gate requires |CDDL| <= 0.1 (and 1 more)"
    )


def test_facet_named_by_its_code_without_config(gate: ModuleType) -> None:
    decision = gate.decide(REPORT, {"DI": 0.5}, [])
    assert decision["cause"] == "DI for facet sex=0 is 1.5; the bias gate requires |DI| <= 0.5"


def test_report_layout_is_checked(gate: ModuleType) -> None:
    class Body:
        def __init__(self, data: bytes) -> None:
            self.data = data

        def read(self) -> bytes:
            return self.data

    class S3:
        def __init__(self, data: bytes) -> None:
            self.data = data

        def get_object(self, Bucket: str, Key: str) -> dict[str, Any]:  # noqa: N803
            return {"Body": Body(self.data)}

    with pytest.raises(gate.InvalidBiasReport, match="has none of"):
        gate.read_report("s3://b/k", S3(b"{}"))
    with pytest.raises(gate.InvalidBiasReport, match="is not JSON"):
        gate.read_report("s3://b/k", S3(b"nope"))
