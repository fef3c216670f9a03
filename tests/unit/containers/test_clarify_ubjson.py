"""The UBJSON reader the local Clarify runtime loads XGBoost models with.

Oracle: XGBoost's own JSON of the same model (`save_raw("json")`) read by `json.loads`; the
reader must give the same document, typed arrays as numpy arrays of the same numbers.
"""

from __future__ import annotations

import json
import struct
import sys
from pathlib import Path
from typing import Any

import numpy as np
import pytest

CLARIFY_DIR = Path(__file__).resolve().parents[3] / "containers" / "clarify"
if str(CLARIFY_DIR) not in sys.path:  # flat imports, as the job scripts use (conftest.py)
    sys.path.insert(0, str(CLARIFY_DIR))

import jobkit  # noqa: E402
import ubjson  # noqa: E402

xgb = jobkit.import_xgboost()


def as_json(value: Any) -> Any:
    """The document with numpy arrays as lists and float32 numbers as JSON prints them."""
    if isinstance(value, np.ndarray):
        return (
            [as_json(v) for v in value.tolist()]
            if value.dtype.kind != "f"
            else [float(np.float32(v)) for v in value.tolist()]
        )
    if isinstance(value, dict):
        return {key: as_json(v) for key, v in value.items()}
    if isinstance(value, list):
        return [as_json(v) for v in value]
    return value


def float32_json(value: Any) -> Any:
    """json.loads' document with every float rounded to float32, as the model stores it."""
    if isinstance(value, float):
        return float(np.float32(value))
    if isinstance(value, dict):
        return {key: float32_json(v) for key, v in value.items()}
    if isinstance(value, list):
        return [float32_json(v) for v in value]
    return value


@pytest.mark.parametrize(
    "params",
    [
        {"objective": "reg:squarederror", "max_depth": 4},
        {"objective": "binary:logistic", "max_depth": 3},
        {"objective": "multi:softprob", "num_class": 3, "max_depth": 2},
    ],
)
def test_an_xgboost_model_reads_as_its_json(params: dict[str, Any]) -> None:
    rng = np.random.default_rng(0)
    x = rng.normal(size=(300, 5))
    y = {"reg": x[:, 0].copy(), "bin": x[:, 1] > 0, "mul": rng.integers(0, 3, 300)}[
        params["objective"][:3]
    ]
    x[rng.random(x.shape) < 0.1] = np.nan  # missing values: default_left in the trees
    booster = xgb.train({**params, "nthread": 1}, xgb.DMatrix(x, y), 6)

    document = ubjson.loads(booster.save_raw(raw_format="ubj"))

    expected = float32_json(json.loads(bytes(booster.save_raw(raw_format="json"))))
    assert float32_json(as_json(document)) == expected
    tree = document["learner"]["gradient_booster"]["model"]["trees"][0]
    assert tree["split_conditions"].dtype == np.dtype(">f4")
    assert tree["left_children"].dtype.kind == "i"


def string(text: str) -> bytes:
    raw = text.encode()
    return b"i" + struct.pack(">b", len(raw)) + raw


@pytest.mark.parametrize(
    ("data", "expected"),
    [
        (b"Z", None),
        (b"T", True),
        (b"NNF", False),  # no-ops before a value
        (b"U\xff", 255),
        (b"I\x01\x00", 256),
        (b"l\xff\xff\xff\xfe", -2),
        (b"D" + struct.pack(">d", 0.1), 0.1),
        (b"Ca", "a"),
        (b"S" + string("héllo"), "héllo"),
        (b"H" + string("12345678901234567890"), 12345678901234567890),
        (b"[i\x01SU\x01x[]]", [1, "x", []]),  # untyped, unsized
        (b"[#U\x02i\x05Z", [5, None]),  # sized, each element with its marker
        (b"[$S#U\x02" + string("a") + string("b"), ["a", "b"]),  # typed, not numbers
        (b"{" + string("a") + b"T" + b"N" + string("b") + b"{}}", {"a": True, "b": {}}),
        (b"{#U\x01" + string("k") + b"i\x07", {"k": 7}),
        (b"{$i#U\x02" + string("k") + b"\x01" + string("m") + b"\x02", {"k": 1, "m": 2}),
    ],
)
def test_every_value_kind(data: bytes, expected: Any) -> None:
    assert ubjson.loads(data) == expected


def test_typed_number_arrays_are_numpy_views_of_the_bytes() -> None:
    data = b"[$d#U\x03" + struct.pack(">3f", 1.5, -2.0, 3.25)

    values = ubjson.loads(data)

    assert isinstance(values, np.ndarray)
    assert values.tolist() == [1.5, -2.0, 3.25]
    assert values.astype(np.float64).sum() == 2.75


@pytest.mark.parametrize(
    ("data", "message"),
    [
        (b"", "ends inside a value"),
        (b"l\x00\x01", "ends inside a value"),
        (b"S" + b"i\x05" + b"abc", "ends inside a value"),
        (b"[$d#U\x04" + b"\x00" * 8, "ends inside a value"),
        (b"[i\x01", "ends inside a value"),
        (b"Q", "unknown marker b'Q' at byte 0"),
        (b"TT", "1 bytes after the value"),
        (b"[$d" + b"\x00" * 4, "a typed container without a count"),
        (b"Si\xff", "bad length -1"),
        (b"{SU\x01aT}", "an object key without a length"),
    ],
)
def test_bad_bytes_are_named(data: bytes, message: str) -> None:
    with pytest.raises(ubjson.UBJSONError, match=message.replace("(", r"\(")):
        ubjson.loads(data)
