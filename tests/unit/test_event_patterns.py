"""EventBridge pattern matching, pure: each operator, nesting, arrays, and what must not match."""

from __future__ import annotations

from typing import Any

import pytest

from sfn_mlops.local.event_patterns import InvalidEventPattern, check_pattern, matches

EVENT: dict[str, Any] = {
    "version": "0",
    "id": "6a7e8feb-b491-4cf7-a9f1-bf3703467718",
    "detail-type": "CloudWatch Alarm State Change",
    "source": "aws.cloudwatch",
    "account": "123456789012",
    "time": "2024-05-01T12:00:00Z",
    "region": "us-east-1",
    "resources": ["arn:aws:cloudwatch:us-east-1:123456789012:alarm:drift"],
    "detail": {
        "alarmName": "model-drift",
        "state": {"value": "ALARM", "reason": "Threshold Crossed"},
        "previousState": {"value": "OK"},
        "score": 0.42,
        "count": 7,
        "flag": True,
        "nothing": None,
        "tags": ["prod", "tabular"],
        "empty": [],
        "path": "models/xgb/model.tar.gz",
    },
}


def ok(pattern: dict[str, Any]) -> bool:
    check_pattern(pattern)
    return matches(pattern, EVENT)


@pytest.mark.parametrize(
    ("pattern", "expected"),
    [
        ({"source": ["aws.cloudwatch"]}, True),
        ({"source": ["aws.sagemaker", "aws.cloudwatch"]}, True),  # a list is any of
        ({"source": ["aws.sagemaker"]}, False),
        ({"source": ["aws.cloudwatch"], "detail-type": ["Scheduled Event"]}, False),  # all keys
        ({"detail": {"state": {"value": ["ALARM"]}}}, True),  # nested objects
        ({"detail": {"state": {"value": ["OK"]}}}, False),
        ({"detail": {"missing": {"value": ["ALARM"]}}}, False),
        ({"detail": {"alarmName": {"value": ["x"]}}}, False),  # a string is not an object
        ({"detail": {"tags": ["prod"]}}, True),  # an event array: any element
        ({"detail": {"tags": ["staging"]}}, False),
        ({"detail": {"count": [7]}}, True),
        ({"detail": {"count": [7.0]}}, True),  # numbers by value
        ({"detail": {"count": ["7"]}}, False),  # never a string with a number
        ({"detail": {"flag": [True]}}, True),
        ({"detail": {"flag": [1]}}, False),  # booleans are not numbers
        ({"detail": {"flag": ["true"]}}, False),
        ({"detail": {"nothing": [None]}}, True),
        ({"detail": {"absent": [None]}}, False),  # absent is not null
        ({"detail": {"alarmName": ["Model-Drift"]}}, False),  # exact is case-sensitive
    ],
)
def test_exact_values_nesting_and_arrays(pattern: dict[str, Any], expected: bool) -> None:
    assert ok(pattern) is expected


@pytest.mark.parametrize(
    ("element", "expected"),
    [
        ({"prefix": "model-"}, True),
        ({"prefix": "drift"}, False),
        ({"prefix": {"equals-ignore-case": "MODEL-"}}, True),
        ({"suffix": "-drift"}, True),
        ({"suffix": "-model"}, False),
        ({"suffix": {"equals-ignore-case": "-DRIFT"}}, True),
        ({"equals-ignore-case": "MODEL-DRIFT"}, True),
        ({"equals-ignore-case": "model-drif"}, False),
        ({"wildcard": "model-*"}, True),
        ({"wildcard": "*-dr*t"}, True),
        ({"wildcard": "model"}, False),
        ({"wildcard": "model\\*"}, False),  # an escaped star is a literal star
        ({"anything-but": "other"}, True),
        ({"anything-but": "model-drift"}, False),
        ({"anything-but": ["a", "model-drift"]}, False),
        ({"anything-but": {"prefix": "model"}}, False),
        ({"anything-but": {"prefix": "data"}}, True),
        ({"anything-but": {"suffix": "drift"}}, False),
        ({"anything-but": {"equals-ignore-case": ["MODEL-DRIFT"]}}, False),
        ({"anything-but": {"wildcard": "*-drift"}}, False),
    ],
)
def test_string_operators(element: dict[str, Any], expected: bool) -> None:
    assert ok({"detail": {"alarmName": [element]}}) is expected


def test_wildcard_escape_matches_a_literal_star() -> None:
    event = {"detail": {"name": "model*"}}
    assert matches({"detail": {"name": [{"wildcard": "model\\*"}]}}, event)
    assert not matches({"detail": {"name": [{"wildcard": "model\\*"}]}}, {"detail": {"name": "mx"}})


def test_string_operators_never_match_numbers() -> None:
    assert not ok({"detail": {"count": [{"prefix": "7"}]}})


@pytest.mark.parametrize(
    ("numeric", "expected"),
    [
        ([">", 0], True),
        ([">", 0, "<=", 0.42], True),
        ([">", 0, "<", 0.42], False),
        ([">=", 0.5], False),
        (["=", 0.42], True),
        (["<", 1], True),
    ],
)
def test_numeric_ranges(numeric: list[Any], expected: bool) -> None:
    assert ok({"detail": {"score": [{"numeric": numeric}]}}) is expected


def test_numeric_never_matches_strings_or_booleans() -> None:
    assert not ok({"detail": {"alarmName": [{"numeric": [">", 0]}]}})
    assert not ok({"detail": {"flag": [{"numeric": [">", 0]}]}})


def test_anything_but_needs_the_field_and_skips_numbers_in_the_list() -> None:
    assert not ok({"detail": {"absent": [{"anything-but": "x"}]}})
    assert ok({"detail": {"count": [{"anything-but": [1, 2]}]}})
    assert not ok({"detail": {"count": [{"anything-but": [7]}]}})


@pytest.mark.parametrize(
    ("field", "exists", "expected"),
    [
        ("alarmName", True, True),
        ("alarmName", False, False),
        ("absent", True, False),
        ("absent", False, True),
        ("nothing", True, True),  # null is a value that exists
        ("state", True, False),  # exists works on leaves only
        ("empty", True, False),
    ],
)
def test_exists(field: str, exists: bool, expected: bool) -> None:
    assert ok({"detail": {field: [{"exists": exists}]}}) is expected


def test_exists_false_under_a_missing_parent() -> None:
    """EventBridge matches flattened paths: ``detail.nowhere.deeper`` does not exist."""
    assert ok({"detail": {"nowhere": {"deeper": [{"exists": False}]}}})
    assert ok({"detail": {"alarmName": {"deeper": [{"exists": False}]}}})
    assert not ok({"detail": {"nowhere": {"deeper": [{"exists": True}]}}})


def test_an_array_of_objects_matches_when_one_does() -> None:
    event = {"detail": {"variants": [{"name": "blue", "weight": 0}, {"name": "green"}]}}
    assert matches({"detail": {"variants": {"name": ["green"]}}}, event)
    assert not matches({"detail": {"variants": {"name": ["red"]}}}, event)


def test_or_of_patterns() -> None:
    pattern = {
        "source": ["aws.cloudwatch"],
        "$or": [{"detail": {"count": [{"numeric": [">", 10]}]}}, {"detail": {"flag": [True]}}],
    }
    assert ok(pattern)
    pattern["$or"] = [{"detail": {"count": [1]}}, {"detail": {"flag": [False]}}]
    assert not ok(pattern)


def test_a_list_mixing_values_and_operators_is_any_of() -> None:
    assert ok({"detail": {"alarmName": ["x", {"prefix": "model"}]}})


@pytest.mark.parametrize(
    "pattern",
    [
        [],
        "source",
        {"source": "aws.cloudwatch"},  # leaves must be arrays
        {"source": []},
        {"detail": {}},
        {"source": [["nested"]]},
        {"source": [{"prefix": 1}]},
        {"source": [{"prefix": "a", "suffix": "b"}]},
        {"source": [{"unknown-op": "x"}]},
        {"source": [{"cidr": "10.0.0.0/24"}]},
        {"detail": {"n": [{"numeric": [">", "1"]}]}},
        {"detail": {"n": [{"numeric": ["~", 1]}]}},
        {"detail": {"n": [{"numeric": [">", 5, "<", 1]}]}},
        {"detail": {"n": [{"numeric": [">", 1, ">=", 2]}]}},
        {"detail": {"n": [{"numeric": ["=", 1, "<", 2]}]}},
        {"detail": {"n": [{"exists": "yes"}]}},
        {"detail": {"n": [{"anything-but": {"numeric": [">", 1]}}]}},
        {"detail": {"n": [{"anything-but": [{"prefix": "a"}]}]}},
        {"$or": [{"source": ["a"]}]},
        {"$or": "x"},
    ],
)
def test_bad_patterns_are_rejected(pattern: Any) -> None:
    with pytest.raises(InvalidEventPattern):
        check_pattern(pattern)


def test_rejection_names_where() -> None:
    with pytest.raises(InvalidEventPattern, match=r"detail\.state"):
        check_pattern({"detail": {"state": "ALARM"}})
