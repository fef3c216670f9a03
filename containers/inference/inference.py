"""Serving functions for the SageMaker XGBoost image in script mode (and the local endpoint).

Requests carry RAW feature values in the schema's feature order: categorical values as their
original strings (mapped to the training codes through schema.json) or as codes already.
Errors in a request raise InvalidInput, which the server turns into HTTP 400.

Large CSV bodies (a batch transform's mini-batches) take a fast path: pyarrow reads the whole
body in one call (the SageMaker XGBoost image has pyarrow, and jobkit needs it anyway), each
categorical column is encoded once per distinct value, and the predictions are formatted by
numpy in one cast. The fast path only takes bodies it reads exactly as the value-by-value path
does; on anything else (a parse error, a value pyarrow reads differently) it gives up and the
value-by-value path answers, so the answers and the error messages are the same either way.
"""

from __future__ import annotations

import csv
import io
import json
import math
import os
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from typing import Any

import jobkit
import numpy as np
import pyarrow as pa
import pyarrow.compute as pc
import pyarrow.csv as pacsv

xgb = jobkit.import_xgboost()

THREADS_ENV = "SFN_MLOPS_INFERENCE_THREADS"  # the server pins threads per worker through this
CSV = "text/csv"
JSON = "application/json"
MISSING = float("nan")
# A CSV body this large or larger is read by pyarrow in one call; below it pyarrow's fixed cost
# per call (0.4 ms) is more than the value-by-value path's (a single record: 20 us).
FAST_CSV_BYTES = 16 * 1024


class InvalidInput(ValueError):
    """The request cannot be scored as sent; the message says what to change."""

    status_code = 400  # the serving toolkit's convention: the HTTP status the server answers


class UnsupportedMediaType(InvalidInput):
    status_code = 415


@dataclass(frozen=True)
class Model:
    """The booster plus what serving needs from the schema, prepared once at load."""

    booster: xgb.Booster
    schema: dict[str, Any]
    features: tuple[str, ...]
    codes: dict[str, dict[str, float]]  # categorical column -> category -> code

    @property
    def problem_type(self) -> str:
        return str(self.schema["problem_type"])


# The serving toolkit passes an extra `context` argument to a handler whose parameter count
# differs from what it sends, so model_fn/input_fn/predict_fn/output_fn keep their exact arity.


def model_fn(model_dir: str) -> Model:
    """Load the model for the server; SFN_MLOPS_INFERENCE_THREADS, if set, pins its threads."""
    threads = os.environ.get(THREADS_ENV)
    return load_model(model_dir, nthread=int(threads) if threads else None)


def load_model(model_dir: str, *, nthread: int | None) -> Model:
    """Load `xgboost-model` and `schema.json`; nthread=None leaves xgboost's default."""
    schema = jobkit.load_schema(os.path.join(model_dir, jobkit.SCHEMA_FILE))
    booster = xgb.Booster()
    booster.load_model(os.path.join(model_dir, jobkit.MODEL_FILE))
    if nthread is not None:
        booster.set_param({"nthread": nthread})
    codes = {
        column: {category: float(code) for code, category in enumerate(categories)}
        for column, categories in schema["categorical"].items()
    }
    return Model(booster=booster, schema=schema, features=tuple(schema["features"]), codes=codes)


# ---------------------------------------------------------------- input


@dataclass(frozen=True)
class RawRows:
    """Parsed but not yet encoded rows: lists of values, or dicts of feature -> value."""

    rows: list[Any]


@dataclass(frozen=True)
class CsvBody:
    """A large CSV body, read in predict_fn (which has the schema the reader needs)."""

    text: str
    data: bytes


def _media_type(value: str | None) -> str:
    return (value or "").split(";", 1)[0].strip().lower()


def input_fn(request_body: str | bytes, content_type: str) -> RawRows | CsvBody:
    """Parse a request into rows of raw values; predict_fn encodes them (it has the model).
    A large plain CSV body is kept whole for predict_fn's reader (``CsvBody``)."""
    text = request_body.decode("utf-8") if isinstance(request_body, bytes) else request_body
    media = _media_type(content_type)
    if media == CSV:
        if isinstance(request_body, bytes) and _plain_csv(request_body):
            return CsvBody(text, request_body)
        rows = _csv_rows(text)
    elif media == JSON:
        rows = _json_rows(text)
    else:
        raise UnsupportedMediaType(
            f"content type {content_type!r} is not supported; use {CSV} or {JSON}"
        )
    if not rows:
        raise InvalidInput("the request has no rows")
    return RawRows(rows)


def _csv_rows(text: str) -> list[list[str]]:
    return [row for row in csv.reader(io.StringIO(text)) if row]


def _plain_csv(data: bytes) -> bool:
    """Whether ``data`` is large and its rows are what ``_csv_rows`` makes of it by splitting:
    no quote, CR or NUL (so every row is a line and every field is between commas), at least
    one non-empty line (so it has a row) and no line as long as the csv module's field limit
    (which it would refuse)."""
    if len(data) < FAST_CSV_BYTES or len(data) == data.count(b"\n"):
        return False
    if b'"' in data or b"\r" in data or b"\0" in data:
        return False
    limit = csv.field_size_limit()
    if len(data) < limit:
        return True
    ends = np.flatnonzero(np.frombuffer(data, dtype=np.uint8) == ord("\n"))
    starts = np.concatenate(([0], ends + 1))
    lengths = np.append(ends, len(data)) - starts
    return int(lengths.max()) < limit


def _read_csv(data: bytes, model: Model) -> np.ndarray | None:
    """The float matrix ``encode_rows(_csv_rows(...))`` makes of a ``_plain_csv`` body, read
    by pyarrow; None where pyarrow cannot read it or might read a value differently."""
    names = [f"c{index}" for index in range(len(model.features))]
    types = {
        column: pa.string() if feature in model.codes else pa.float64()
        for column, feature in zip(names, model.features, strict=True)
    }
    try:
        table = pacsv.read_csv(
            pa.BufferReader(data),
            read_options=pacsv.ReadOptions(column_names=names),
            parse_options=pacsv.ParseOptions(quote_char=False, escape_char=False),
            convert_options=pacsv.ConvertOptions(
                column_types=types,
                null_values=[""],  # an empty field; a blank one ("  ") fails as a number
                strings_can_be_null=False,
            ),
        )
    except pa.ArrowInvalid:  # a row of another width, a value that is not a number
        return None
    matrix = np.empty((table.num_rows, len(names)), dtype=np.float64)
    for index, feature in enumerate(model.features):
        column = table.column(index)
        codes = model.codes.get(feature)
        if codes is not None:  # each distinct text once, as _value maps it
            encoded = pc.dictionary_encode(column).combine_chunks()
            categories = encoded.dictionary.to_pylist()
            lookup = np.array([_value(text, feature, 0, codes) for text in categories])
            matrix[:, index] = lookup[encoded.indices.to_numpy()]
            continue
        numbers = column.to_numpy()  # an empty field (a null) is NaN
        if np.count_nonzero(~np.isfinite(numbers)) != column.null_count:
            return None  # "nan", "inf", "1e999", "nan(1)": float() decides what they are
        matrix[:, index] = numbers
    return matrix.astype(np.float32)  # double, then float32: what assigning float() does


def _json_rows(text: str) -> list[Any]:
    try:
        payload = json.loads(text)
    except json.JSONDecodeError as exc:
        raise InvalidInput(f"the body is not valid JSON: {exc.msg}") from exc
    if not isinstance(payload, dict) or not isinstance(payload.get("instances"), list):
        raise InvalidInput('JSON requests look like {"instances": [[...], ...]}')
    return list(payload["instances"])


def encode_rows(rows: Sequence[Any], model: Model) -> np.ndarray:
    """Turn raw rows (lists in feature order, or dicts by feature name) into a float matrix."""
    matrix = np.empty((len(rows), len(model.features)), dtype=np.float32)
    for index, row in enumerate(rows):
        values = _ordered(row, index, model.features)
        for column, (name, value) in enumerate(zip(model.features, values, strict=True)):
            matrix[index, column] = _value(value, name, index, model.codes.get(name))
    return matrix


def _ordered(row: Any, index: int, features: Sequence[str]) -> Sequence[Any]:
    if isinstance(row, Mapping):
        unknown = sorted(set(row) - set(features))
        if unknown:
            raise InvalidInput(
                f"row {index + 1}: unknown feature(s) {unknown}; features are {list(features)}"
            )
        return [row.get(name) for name in features]  # a feature left out is missing
    if not isinstance(row, (list, tuple)):
        raise InvalidInput(
            f"row {index + 1} must be a list of values or an object of feature: value"
        )
    if len(row) != len(features):
        raise InvalidInput(
            f"row {index + 1} has {len(row)} values; expected {len(features)} "
            f"in this order: {list(features)}"
        )
    return row


def _value(value: Any, name: str, index: int, codes: Mapping[str, float] | None) -> float:
    """One raw value as a float: category -> code (unknown -> NaN), numbers as numbers."""
    if value is None or (isinstance(value, str) and not value.strip()):
        return MISSING
    if codes is not None:
        return _category(value, codes)
    if isinstance(value, bool):
        return float(value)
    try:
        return float(value)
    except (TypeError, ValueError):
        raise InvalidInput(
            f"row {index + 1}: feature {name!r} must be a number, got {value!r}"
        ) from None


def _category(value: Any, codes: Mapping[str, float]) -> float:
    """Original category strings first; a number that is a valid code is taken as the code."""
    text = value if isinstance(value, str) else str(value)
    if text in codes:
        return codes[text]
    try:
        number = float(value)
    except (TypeError, ValueError):
        return MISSING
    return number if number.is_integer() and 0 <= number < len(codes) else MISSING


# ---------------------------------------------------------------- predict and output


def predict_fn(data: Any, model: Model) -> np.ndarray:
    """Regression values, P(positive label) for binary, per-class probabilities for multiclass."""
    if isinstance(data, CsvBody):
        matrix = _read_csv(data.data, model)
        if matrix is None:  # the value-by-value path: its answer, or its precise error
            matrix = encode_rows(_csv_rows(data.text), model)
    elif isinstance(data, RawRows):
        matrix = encode_rows(data.rows, model)
    else:
        matrix = np.asarray(data)
    if matrix.ndim != 2 or matrix.shape[1] != len(model.features):
        raise InvalidInput(f"expected rows of {len(model.features)} features, got {matrix.shape}")
    # inplace_predict: no DMatrix per request (its construction is most of a one-row request)
    return model.booster.inplace_predict(matrix)


def _number(value: float) -> float | None:
    """Shortest text of the float32 prediction, back as a float (0.3, not 0.30000001192092896)."""
    return _json_number(str(np.float32(value)))


def _json_number(text: str) -> float | None:
    number = float(text)
    return number if math.isfinite(number) else None


def _texts(prediction: Any) -> list[Any] | None:
    """``str(np.float32(v))`` of each value (a list, or a list of rows), in one numpy cast:
    numpy's float-to-str cast writes the same shortest text as ``str`` of its scalar (the
    tests compare them). None for what is not a 1-D or 2-D float array."""
    if not isinstance(prediction, np.ndarray) or prediction.dtype.kind != "f":
        return None
    if prediction.ndim not in (1, 2):
        return None
    texts: list[Any] = prediction.astype(np.float32).astype(str).tolist()
    return texts


def output_fn(prediction: np.ndarray, accept: str | None) -> tuple[str, str]:
    """Serialize predictions; returns (body, content type). '*/*' or none means text/csv."""
    media = _media_type(accept) or "*/*"
    if media == "*/*":
        media = CSV
    if media == CSV:
        return _csv_body(prediction, _texts(prediction)), CSV
    if media == JSON:
        return json.dumps({"predictions": _json_values(prediction, _texts(prediction))}), JSON
    raise UnsupportedMediaType(f"accept type {accept!r} is not supported; use {CSV} or {JSON}")


def _csv_body(prediction: Any, texts: list[Any] | None) -> str:
    """A line per row, its values comma-separated."""
    if texts is None:
        lines = (",".join(str(np.float32(v)) for v in np.atleast_1d(row)) for row in prediction)
        return "\n".join(lines) + "\n"
    return "\n".join(map(",".join, texts) if prediction.ndim == 2 else texts) + "\n"


def _json_values(prediction: Any, texts: list[Any] | None) -> list[Any]:
    """A number per row, or a list of numbers per row; NaN and infinities as null."""
    if texts is None:
        return [[_number(v) for v in row] if np.ndim(row) else _number(row) for row in prediction]
    if prediction.ndim == 2:
        return [[_json_number(text) for text in row] for row in texts]
    return [_json_number(text) for text in texts]
