"""Serving functions: raw values in, predictions out, InvalidInput for bad requests."""

from __future__ import annotations

import json
import math
from collections.abc import Callable
from pathlib import Path

import inference
import numpy as np
import pytest
import xgboost as xgb
from inference import InvalidInput


def serve(
    model: inference.Model, body: str | bytes, content_type: str, accept: str
) -> tuple[str, str]:
    """What the serving toolkit does with the four handlers."""
    return inference.output_fn(
        inference.predict_fn(inference.input_fn(body, content_type), model), accept
    )


@pytest.fixture(scope="module")
def regression(trained: Callable[[str], Path]) -> inference.Model:
    return inference.model_fn(str(trained("regression") / "model"))


def direct(model: inference.Model, rows: list[list[float]]) -> np.ndarray:
    """Predictions on already-encoded rows, straight from the booster."""
    matrix = xgb.DMatrix(np.array(rows, dtype=np.float32), feature_names=list(model.features))
    return model.booster.predict(matrix)


def test_model_fn_loads_booster_and_schema(regression: inference.Model) -> None:
    assert regression.features == ("sex", "length", "whole_weight")
    assert regression.codes == {"sex": {"F": 0.0, "I": 1.0, "M": 2.0}}
    assert regression.problem_type == "regression"


def test_csv_raw_categories_match_the_codes(regression: inference.Model) -> None:
    body, content_type = serve(regression, b"M,0.5,0.3\nI,0.2,0.05\n", "text/csv", "text/csv")
    expected = direct(regression, [[2, 0.5, 0.3], [1, 0.2, 0.05]])
    assert content_type == "text/csv"
    assert body == "".join(str(np.float32(v)) + "\n" for v in expected)


def test_json_lists_dicts_and_csv_agree(regression: inference.Model) -> None:
    as_csv, _ = serve(
        regression, "M,0.5,0.3\n2,0.2,\n", "text/csv; charset=utf-8", "application/json"
    )
    lists = json.dumps({"instances": [["M", 0.5, 0.3], [2, 0.2, None]]})
    as_lists, _ = serve(regression, lists, "application/json", "application/json")
    dicts = json.dumps(
        {
            "instances": [
                {"sex": "M", "length": 0.5, "whole_weight": 0.3},
                {"sex": "M", "length": 0.2},
            ]
        }
    )
    as_dicts, content_type = serve(regression, dicts, "application/json", "application/json")
    assert as_csv == as_lists == as_dicts
    assert content_type == "application/json"
    predictions = json.loads(as_csv)["predictions"]
    expected = direct(regression, [[2, 0.5, 0.3], [2, 0.2, math.nan]])
    assert predictions == [float(str(v)) for v in expected]


def test_unknown_category_is_missing() -> None:
    codes = {"F": 0.0, "I": 1.0, "M": 2.0}
    assert math.isnan(inference._category("X", codes))
    assert math.isnan(inference._category("7", codes))  # not a valid code either
    assert inference._category("1", codes) == 1.0  # a code given as text
    assert inference._category("M", codes) == 2.0


def test_binary_returns_probability_of_the_positive_label(trained: Callable[[str], Path]) -> None:
    model = inference.model_fn(str(trained("binary") / "model"))
    assert model.schema["labels"] == ["no", "yes"]
    body, _ = serve(model, "F,0.7,1.2\nI,0.1,0.01\n", "text/csv", "text/csv")
    probabilities = [float(line) for line in body.splitlines()]
    assert len(probabilities) == 2 and all(0 <= p <= 1 for p in probabilities)
    assert probabilities[0] > probabilities[1]  # large and old vs small infant


def test_multiclass_returns_per_class_probabilities(trained: Callable[[str], Path]) -> None:
    model = inference.model_fn(str(trained("multiclass") / "model"))
    body, _ = serve(model, "F,0.7,1.2\nI,0.1,0.01\n", "text/csv", "*/*")
    rows = [[float(v) for v in line.split(",")] for line in body.splitlines()]
    assert [len(row) for row in rows] == [3, 3]
    assert all(sum(row) == pytest.approx(1, abs=1e-5) for row in rows)
    as_json, _ = serve(
        model, '{"instances": [["F", 0.7, 1.2]]}', "application/json", "application/json"
    )
    assert len(json.loads(as_json)["predictions"][0]) == 3


def test_thread_count_is_pinned_from_the_environment(
    trained: Callable[[str], Path], monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setenv(inference.THREADS_ENV, "1")
    model = inference.model_fn(str(trained("regression") / "model"))
    config = json.loads(model.booster.save_config())
    assert config["learner"]["generic_param"]["nthread"] == "1"


@pytest.mark.parametrize(
    ("body", "content_type", "message"),
    [
        (
            "M,0.5\n",
            "text/csv",
            "row 1 has 2 values; expected 3 in this order: ['sex', 'length', 'whole_weight']",
        ),
        (
            "M,0.5,0.3\nM,long,0.3\n",
            "text/csv",
            "row 2: feature 'length' must be a number, got 'long'",
        ),
        ("M,0.5,0.3", "application/x-npy", "content type 'application/x-npy' is not supported"),
        ("{not json", "application/json", "the body is not valid JSON"),
        ('{"rows": []}', "application/json", 'JSON requests look like {"instances": [[...], ...]}'),
        (
            '{"instances": [{"sex": "M", "weight": 1}]}',
            "application/json",
            "unknown feature(s) ['weight']",
        ),
        (
            '{"instances": [{"sex": "M", "length": [1]}]}',
            "application/json",
            "feature 'length' must be a number",
        ),
        ("", "text/csv", "the request has no rows"),
    ],
)
def test_invalid_input(
    regression: inference.Model, body: str, content_type: str, message: str
) -> None:
    with pytest.raises(InvalidInput) as caught:
        serve(regression, body, content_type, "text/csv")
    assert message in str(caught.value)
    assert isinstance(caught.value, ValueError)


def test_unsupported_accept(regression: inference.Model) -> None:
    with pytest.raises(InvalidInput, match="accept type 'application/x-protobuf' is not supported"):
        serve(regression, "M,0.5,0.3\n", "text/csv", "application/x-protobuf")
