"""The A/B test function's pure parts: outcomes from captured answers, metadata values,
the captured output's records, the traffic step."""

from __future__ import annotations

import json
from collections.abc import Callable
from types import ModuleType
from typing import Any

import pytest


@pytest.fixture
def ab_test(load_lambda: Callable[..., list[ModuleType]]) -> ModuleType:
    (module,) = load_lambda("ab_test", "ab_test")
    return module


@pytest.mark.parametrize(
    ("problem", "prediction", "label", "expected"),
    [
        ("regression", ["9.5"], "11", 1.5),
        ("binary", ["0.7"], "1", 1.0),
        ("binary", ["0.49"], "1", 0.0),
        ("multiclass", ["0.1", "0.7", "0.2"], "1", 1.0),
        ("multiclass", ["0.1", "0.7", "0.2"], "2", 0.0),
        ("multiclass", ["2"], "2", 1.0),
        ("regression", ["nan"], "1", None),
        ("regression", ["1.0"], "young", None),
    ],
)
def test_outcome(ab_test: ModuleType, problem: str, prediction: list[str], label: str,
                 expected: float | None) -> None:  # fmt: skip
    assert ab_test._outcome(problem, prediction, label) == expected


def test_metadata_values_keep_to_sagemakers_pattern(ab_test: ModuleType) -> None:
    import regex

    value = ab_test.metadata_value("look 1 of 5: mae 1.2 (n 300/300), Welch's t-test p<0.01 — ok")
    assert value == "look 1 of 5: mae 1.2 n 300/300 Welch s t-test p 0.01 ok"
    assert regex.fullmatch(r"[\p{L}\p{Z}\p{N}_.:/=+\-@]*", value)
    assert len(ab_test.metadata_value("x" * 300)) == 256
    assert ab_test.metadata_value("()") == "none"


def test_captured_output_records(ab_test: ModuleType) -> None:
    join = ab_test.capture_join
    assert join.output_rows({"data": "1.5\n2.5\n", "encoding": "CSV",
                             "observedContentType": "text/csv"}) == [["1.5"], ["2.5"]]  # fmt: skip
    assert join.output_rows({"data": '{"predictions": [[0.1, 0.9], [0.8, 0.2]]}',
                             "encoding": "JSON", "observedContentType": "application/json"}) == [
        ["0.1", "0.9"], ["0.8", "0.2"]
    ]  # fmt: skip
    assert join.output_rows({"data": "MS41Cg==", "encoding": "BASE64",
                             "observedContentType": "text/csv"}) == [["1.5"]]  # fmt: skip


class _SageMaker:
    def __init__(self) -> None:
        self.calls: list[dict[str, Any]] = []

    def update_endpoint_weights_and_capacities(self, **request: Any) -> None:
        self.calls.append(request)


def test_a_shift_step_and_the_last_one(ab_test: ModuleType) -> None:
    sagemaker = _SageMaker()
    state = {"endpoint": "ep", "settings": {"step_percent": 25}}
    assert ab_test.shift(sagemaker, state, {"Champion": 0.9, "Challenger": 0.1}) == 0.35
    assert sagemaker.calls == [{
        "EndpointName": "ep",
        "DesiredWeightsAndCapacities": [
            {"VariantName": "Champion", "DesiredWeight": 0.65},
            {"VariantName": "Challenger", "DesiredWeight": 0.35},
        ],
    }]  # fmt: skip
    # weights are relative: 1 and 3 is a share of 0.75; one more step gives it all
    assert ab_test.shift(sagemaker, state, {"Champion": 1.0, "Challenger": 3.0}) is None
    assert len(sagemaker.calls) == 1


def test_a_shift_goes_on_unless_the_challenger_fails_requests(ab_test: ModuleType) -> None:
    verdict = ab_test.decision
    settings = {"max_error_rate_increase": 0.01}
    state = {"phase": "shifting", "settings": settings, "looks_done": 2,
             "verdict": {"reason": "look 2 of 5: the challenger is better"}}  # fmt: skip
    now = ab_test.parse_time("2026-12-07T12:00:00Z")

    def tallies(challenger_errors: int) -> dict[str, Any]:
        return {
            "champion": verdict.VariantTally("Champion", "m1", 0.5, [], 1000, 1),
            "challenger": verdict.VariantTally("Challenger", "m2", 0.5, [], 1000,
                                               challenger_errors),  # fmt: skip
        }

    going_on = ab_test._verdict_now(state, tallies(5), now, "evaluate")
    assert going_on.action == "promote"
    assert going_on.reason == "look 2 of 5: the challenger is better"
    stopped = ab_test._verdict_now(state, tallies(30), now, "evaluate")
    assert stopped.action == "retire"
    assert stopped.reason.startswith("the challenger's server error rate 3.00% exceeds")
    assert ab_test._verdict_now(state, tallies(0), now, "end").reason == "ended by hand"


def test_an_evaluation_overtaken_by_another_writes_nothing(ab_test: ModuleType) -> None:
    import boto3
    from moto import mock_aws

    with mock_aws():
        s3 = boto3.client("s3", region_name="us-east-1")
        s3.create_bucket(Bucket="ab-bucket")
        record = {"endpoint": "ep", "started": "2026-12-07T12:00:00.000000Z", "phase": "testing"}
        s3.put_object(Bucket="ab-bucket", Key="ab-tests/ep.json", Body=json.dumps(record).encode())
        slow = ab_test.load(s3, "ab-bucket", "ep")
        read = ab_test._revision(slow)
        ab_test._check(s3, "ab-bucket", slow, read)  # nobody wrote meanwhile
        quick = ab_test.load(s3, "ab-bucket", "ep")
        quick["phase"] = "done"
        ab_test._save(s3, "ab-bucket", quick)  # e.g. `sfn-mlops endpoints end`
        with pytest.raises(ab_test.Overtaken, match="the A/B test on ep changed meanwhile"):
            ab_test._check(s3, "ab-bucket", slow, read)
