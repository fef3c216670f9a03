"""Serving functions: raw values in, predictions out, InvalidInput for bad requests."""

from __future__ import annotations

import csv
import json
import math
from collections.abc import Callable
from pathlib import Path
from typing import Any

import inference
import numpy as np
import pytest
import xgboost as xgb
from inference import InvalidInput

from sfn_mlops.local import endpoint_server


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


# ---------------------------------------------------------------- the fast paths
# Large CSV bodies are read by pyarrow, and inference.output_fn formats in one numpy cast; the
# value-by-value path stays for small bodies and for whatever the fast path gives up on. The
# oracles: each handler with its fast path switched off (FAST_CSV_BYTES out of reach), which is
# exactly the code as it was, and inference.output_fn as it was, kept here verbatim.


def old_output_fn(prediction: np.ndarray, accept: str | None) -> tuple[str, str]:
    """inference.output_fn before the fast path."""
    media = inference._media_type(accept) or "*/*"
    if media == "*/*":
        media = inference.CSV
    if media == inference.CSV:
        lines = (",".join(str(np.float32(v)) for v in np.atleast_1d(row)) for row in prediction)
        return "\n".join(lines) + "\n", inference.CSV
    values = [
        [old_number(v) for v in row] if np.ndim(row) else old_number(row) for row in prediction
    ]
    return json.dumps({"predictions": values}), inference.JSON


def old_number(value: float) -> float | None:
    number = float(str(np.float32(value)))
    return number if math.isfinite(number) else None


def random_floats(rng: np.random.Generator, count: int) -> np.ndarray:
    """float32 values of every kind: any bit pattern (NaN, infinities, subnormals, huge, tiny),
    predictions' range, and the special values."""
    bits = rng.integers(0, 2**32, size=count, dtype=np.uint64).astype(np.uint32)
    special = [0.0, -0.0, np.inf, -np.inf, np.nan, 1e16, 1e-4, 9.999999e15, 1e-5, 2**24, 0.1]
    return np.concatenate(
        [
            np.array(special, dtype=np.float32),
            bits.view(np.float32),
            (rng.random(count) * 30).astype(np.float32),
        ]
    )


@pytest.mark.parametrize("accept", ["text/csv", "application/json"])
def test_output_matches_the_value_by_value_text(accept: str) -> None:
    rng = np.random.default_rng(7)
    values = random_floats(rng, 100_000)
    with np.errstate(invalid="ignore"):  # casting a signalling NaN
        wide = values[:900].astype(np.float64) * 1.1
    predictions = [
        values,
        values[: 3 * (len(values) // 3)].reshape(-1, 3),
        values[:500].reshape(-1, 1),
        wide,  # a float64 prediction: cast as np.float32(v)
        values[:0],
        values[:0].reshape(0, 3),
        values[:10].tolist(),  # not an array: the value-by-value path
    ]
    for prediction in predictions:
        assert inference.output_fn(prediction, accept) == old_output_fn(prediction, accept)


CATEGORY_TOKENS = ["M", "F", "I"]
ODD_CATEGORY_TOKENS = ["", " ", " M", "m", "0", "1", "2", "2.0", "3", "-0", "X", "1e0", "nan"]
ODD_NUMBER_TOKENS = [
    "", " 0.5", "0.5\t", "+0.5", ".5", "5.", "1e-3", "1E+2", "-0", "007", "nan", "NaN", "inf",
    "-Infinity", "1e999", "1e-400", "nan(1)", "1_0", "  ", "heavy", "0x10", "1d5", "\u0661",
    "\u00a01", "1e", ".", "NA", "N/A", "#N/A", "NULL", "null", "None", "-nan", "true",
]  # fmt: skip
ODD_LINES = [
    "", " ", "\t", "1,2", "1,2,3,4", '"M",0.5,0.3', 'M,"0.5",0.3', "M,0.5,0.3\r",
    "M,0.5,0.3\rF,0.3,1", "M,\x000.5,0.3",
]  # fmt: skip


def number_token(rng: np.random.Generator) -> str:
    value = float(rng.uniform(-2, 2))
    return str(rng.choice([repr(value), f"{value:.3f}", f"{value:.2e}", str(round(value))]))


def random_body(
    rng: np.random.Generator, rows: int, odd: int, odd_lines: list[str], category: bool
) -> str:
    """``rows`` CSV lines of 3 values (the first a category if ``category``), with ``odd`` of
    its values or lines replaced by something unusual or wrong (or a line inserted)."""
    width = 3
    lines = []
    for _ in range(rows):
        first = str(rng.choice(CATEGORY_TOKENS)) if category else number_token(rng)
        lines.append([first] + [number_token(rng) for _ in range(width - 1)])
    text_lines = [",".join(line) for line in lines]
    for _ in range(odd):
        row, column = int(rng.integers(rows)), int(rng.integers(width))
        kind = rng.integers(3)
        if kind == 0:
            tokens = ODD_CATEGORY_TOKENS if category and column == 0 else ODD_NUMBER_TOKENS
            lines[row][column] = str(rng.choice(tokens))
            text_lines[row] = ",".join(lines[row])
        elif kind == 1:
            text_lines[row] = str(rng.choice(odd_lines))
        else:
            text_lines.insert(row, str(rng.choice(odd_lines)))
    end = "\n" if rng.random() < 0.9 else ""
    return "\n".join(text_lines) + end


def same_floats(fast: np.ndarray | None, old: np.ndarray | None) -> bool:
    """Whether the fast path's matrix is bit for bit the old path's (None: it gave up)."""
    if fast is None:
        return True
    return old is not None and fast.dtype == old.dtype and fast.tobytes() == old.tobytes()


def script_handlers(model: inference.Model, output_fn: Any) -> Any:
    return endpoint_server.Handlers(
        model, inference.input_fn, inference.predict_fn, output_fn, InvalidInput
    )


@pytest.fixture(params=["regression", "multiclass"])
def scoring_model(request: pytest.FixtureRequest, trained: Callable[[str], Path]) -> Any:
    return inference.model_fn(str(trained(request.param) / "model"))


def test_large_csv_bodies_answer_as_value_by_value(
    scoring_model: inference.Model, monkeypatch: pytest.MonkeyPatch
) -> None:
    """Random bodies, clean and with odd or wrong values and lines: the fast path's answer
    (status, body, content type: predictions or the error message) is the old code's, and so is
    every matrix it reads (the model may not split on every value)."""
    rng = np.random.default_rng(11)
    fast, old = (
        script_handlers(scoring_model, inference.output_fn),
        script_handlers(scoring_model, old_output_fn),
    )
    for case in range(400):
        odd = 0 if case % 4 == 0 else int(rng.integers(1, 4))
        text = random_body(rng, int(rng.integers(1, 60)), odd, ODD_LINES, category=True)
        body = text.encode()
        accept = "application/json" if case % 5 == 0 else "text/csv"
        monkeypatch.setattr(inference, "FAST_CSV_BYTES", 0)
        matrix = inference._read_csv(body, scoring_model) if inference._plain_csv(body) else None
        if odd == 0:  # a clean body is read by pyarrow, not handed back
            assert isinstance(inference.input_fn(body, "text/csv"), inference.CsvBody)
            assert matrix is not None
        try:
            expected = inference.encode_rows(inference._csv_rows(text), scoring_model)
        except (InvalidInput, csv.Error):
            expected = None
        assert same_floats(matrix, expected), text
        got = endpoint_server.answer(fast, body, "text/csv", accept)
        monkeypatch.setattr(inference, "FAST_CSV_BYTES", 1 << 62)
        assert got == endpoint_server.answer(old, body, "text/csv", accept), text


def big_body(lines: list[str]) -> bytes:
    filler = ["F,0.7,1.2", "I,0.1,0.01", "M,0.5,"] * (inference.FAST_CSV_BYTES // 20)
    return "\n".join(lines + filler).encode() + b"\n"


def test_large_csv_body_at_the_default_threshold(regression: inference.Model) -> None:
    body = big_body(["M,0.5,0.3"])
    assert len(body) >= inference.FAST_CSV_BYTES
    assert isinstance(inference.input_fn(body, "text/csv"), inference.CsvBody)
    assert isinstance(inference.input_fn(b"M,0.5,0.3\n", "text/csv"), inference.RawRows)
    matrix = inference.encode_rows(inference._csv_rows(body.decode()), regression)
    expected = old_output_fn(regression.booster.inplace_predict(matrix), "text/csv")
    assert serve(regression, body, "text/csv", "text/csv") == expected


@pytest.mark.parametrize(
    ("lines", "message"),
    [
        (
            ["M,0.5,0.3", "M,0.5"],
            "row 2 has 2 values; expected 3 in this order: ['sex', 'length', 'whole_weight']",
        ),
        (
            ["M,0.5,0.3", "M,0.5,0.3", "F,heavy,0.3"],
            "row 3: feature 'length' must be a number, got 'heavy'",
        ),
    ],
)
def test_large_csv_body_errors_are_the_value_by_value_ones(
    regression: inference.Model, lines: list[str], message: str
) -> None:
    with pytest.raises(InvalidInput) as caught:
        serve(regression, big_body(lines), "text/csv", "text/csv")
    assert str(caught.value) == message


def test_a_field_over_the_csv_limit_fails_as_before(
    regression: inference.Model, monkeypatch: pytest.MonkeyPatch
) -> None:
    """The csv module refuses a field longer than its limit (a 500 today); so does the fast path."""
    limit = csv.field_size_limit()
    body = big_body(["M" * (limit + 10) + ",0.5,0.3"])
    fast = endpoint_server.answer(
        script_handlers(regression, inference.output_fn), body, "text/csv", "text/csv"
    )
    assert fast == (500, f"Error: field larger than field limit ({limit})".encode(), "text/plain")
    monkeypatch.setattr(inference, "FAST_CSV_BYTES", 1 << 62)
    assert fast == endpoint_server.answer(
        script_handlers(regression, old_output_fn), body, "text/csv", "text/csv"
    )


NUMERIC_ODD_LINES = [
    "", " ", "\t", "1,2", "1,2,3,4", '"1",2,3', "1,2,3\r", "1,2,3\r\n4,5,6", "1,2\r3,4,5",
    "1,2,3\x0b4,5,6", "1,2,3\x0c", "1,2,3\x1c", "1,2,3\x85", "1,2,3\u2028", "1,\x002,3",
    "1,2,\u0661",
]  # fmt: skip


def test_default_handler_large_bodies_answer_as_value_by_value(
    trained: Callable[[str], Path], monkeypatch: pytest.MonkeyPatch
) -> None:
    """The XGBoost container's numeric-CSV handler: the same comparison, with its own line
    breaks (str.splitlines) and its own errors (including numpy's for ragged rows)."""
    folder = Path(trained("regression") / "model")
    default = endpoint_server._default_handlers(folder)
    rng = np.random.default_rng(12)
    for case in range(400):
        odd = 0 if case % 4 == 0 else int(rng.integers(1, 4))
        text = random_body(rng, int(rng.integers(1, 60)), odd, NUMERIC_ODD_LINES, category=False)
        body = text.encode()
        if case % 50 == 1:
            body += b"\xff"  # not UTF-8
        monkeypatch.setattr(endpoint_server, "FAST_CSV_BYTES", 1 << 62)
        try:
            expected = np.asarray(endpoint_server._csv_input(body, "text/csv"), dtype=np.float32)
        except ValueError:
            expected = None
        matrix = endpoint_server._numeric_csv(body)
        assert same_floats(matrix, expected), body
        if odd == 0 and case % 50 != 1:  # a clean body is read by pyarrow
            assert matrix is not None
        monkeypatch.setattr(endpoint_server, "FAST_CSV_BYTES", 0)
        got = endpoint_server.answer(default, body, "text/csv", "text/csv")
        monkeypatch.setattr(endpoint_server, "FAST_CSV_BYTES", 1 << 62)
        assert got == endpoint_server.answer(default, body, "text/csv", "text/csv"), body
