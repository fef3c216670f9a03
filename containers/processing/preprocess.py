"""Preprocessing job: validate a tabular data set, encode it, and split it for XGBoost.

Reads one CSV/Parquet file or a folder of them, checks the data against the pipeline settings
(every problem is a UserError that names the column or value), encodes categoricals and
classification labels as integer codes, and writes SageMaker's built-in XGBoost CSV layout
(target first, no header, empty field for missing) plus a schema.json that later jobs and the
endpoint use to decode, and the training rows' raw features with a header (baseline/), the
data the Model Monitor baseline describes. Runs in a SageMaker Processing job; every path is an
argument.
"""

from __future__ import annotations

import argparse
import difflib
import json
import os
import sys
import time
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from typing import Any

import collected
import jobkit
import numpy as np
import pandas as pd
import pyarrow as pa
import pyarrow.csv as pacsv
import pyarrow.parquet as pq
from jobkit import UserError

ENV_TARGET = "SFN_MLOPS_TARGET"
ENV_PROBLEM_TYPE = "SFN_MLOPS_PROBLEM_TYPE"
ENV_CATEGORICAL_COLUMNS = "SFN_MLOPS_CATEGORICAL_COLUMNS"
ENV_SPLIT = "SFN_MLOPS_SPLIT"
ENV_DELIMITER = "SFN_MLOPS_CSV_DELIMITER"  # optional: the CLI detects it (default ",")

CSV_SUFFIXES = (".csv",)
PARQUET_SUFFIXES = (".parquet", ".pq")
SPLITS = ("train", "validation", "test")
BASELINE_FILE = "baseline.csv"  # under <output>/baseline/: the monitoring baseline's data
# XGBoost rejects feature names with these characters; catch it here, before training.
FORBIDDEN_NAME_CHARS = ("[", "]", "<", ",")
SHOW = 5  # how many offending values or rows a message lists


@dataclass(frozen=True)
class Split:
    """Fractions of rows for each split and the shuffle seed."""

    train: float
    validation: float
    test: float
    seed: int


@dataclass(frozen=True)
class Settings:
    """The pipeline settings this job needs, parsed from the environment once."""

    target: str
    problem_type: str
    categorical_columns: tuple[str, ...]
    split: Split
    delimiter: str = ","


# ---------------------------------------------------------------- settings


def settings_from_env(env: Mapping[str, str]) -> Settings:
    """Parse the SFN_MLOPS_* variables; each problem is a UserError naming the variable."""
    target = _required(env, ENV_TARGET).strip()
    if not target:
        raise UserError(f"{ENV_TARGET} is empty; set it to the name of the target column")
    problem_type = _required(env, ENV_PROBLEM_TYPE).strip()
    if problem_type not in jobkit.PROBLEM_TYPES:
        raise UserError(
            f"{ENV_PROBLEM_TYPE}={problem_type!r} is not valid; "
            f"use one of {list(jobkit.PROBLEM_TYPES)}"
        )
    return Settings(
        target=target,
        problem_type=problem_type,
        categorical_columns=parse_categorical_columns(_required(env, ENV_CATEGORICAL_COLUMNS)),
        split=parse_split(_required(env, ENV_SPLIT)),
        delimiter=parse_delimiter(env.get(ENV_DELIMITER, ",")),
    )


def parse_delimiter(text: str) -> str:
    if len(text) != 1 or text in '\r\n"':
        raise UserError(f"{ENV_DELIMITER}={text!r} must be one character (csv_delimiter)")
    return text


def _required(env: Mapping[str, str], name: str) -> str:
    if name not in env:
        raise UserError(f"environment variable {name} is not set")
    return env[name]


def parse_categorical_columns(text: str) -> tuple[str, ...]:
    """Parse a JSON list of column names, e.g. '["sex"]'."""
    value = _json(ENV_CATEGORICAL_COLUMNS, text, example='["sex"]')
    if not isinstance(value, list) or not all(isinstance(item, str) for item in value):
        raise UserError(
            f"{ENV_CATEGORICAL_COLUMNS} must be a JSON list of column names "
            f'like ["sex"], got {text!r}'
        )
    return tuple(dict.fromkeys(value))


def parse_split(text: str) -> Split:
    """Parse '{"train":0.7,"validation":0.15,"test":0.15,"seed":42}' and check the ratios."""
    example = '{"train": 0.7, "validation": 0.15, "test": 0.15, "seed": 42}'
    value = _json(ENV_SPLIT, text, example=example)
    if not isinstance(value, dict):
        raise UserError(f"{ENV_SPLIT} must be a JSON object like {example}, got {text!r}")
    expected = {*SPLITS, "seed"}
    if set(value) != expected:
        raise UserError(
            f"{ENV_SPLIT} must have exactly the keys {sorted(expected)}, got {sorted(value)}"
        )
    for key in SPLITS:
        ratio = value[key]
        if isinstance(ratio, bool) or not isinstance(ratio, (int, float)) or not ratio > 0:
            raise UserError(f"{ENV_SPLIT}: {key}={ratio!r} must be a number greater than 0")
    total = sum(value[key] for key in SPLITS)
    if abs(total - 1.0) > 1e-6:
        raise UserError(f"{ENV_SPLIT}: train + validation + test = {total:g}; they must sum to 1")
    seed = value["seed"]
    if isinstance(seed, bool) or not isinstance(seed, int) or seed < 0:
        raise UserError(f"{ENV_SPLIT}: seed={seed!r} must be a non-negative integer")
    return Split(
        train=value["train"], validation=value["validation"], test=value["test"], seed=seed
    )


def _json(name: str, text: str, *, example: str) -> Any:
    try:
        return json.loads(text)
    except json.JSONDecodeError as exc:
        raise UserError(
            f"{name} is not valid JSON ({exc.msg}); expected something like {example}"
        ) from exc


# ---------------------------------------------------------------- reading


def list_input_files(input_dir: str) -> list[str]:
    """The data files to read: the path itself, or the files of a folder (sorted by name).

    Names starting with '.' or '_' (e.g. Spark's _SUCCESS, .DS_Store) are metadata, not data.
    """
    if os.path.isfile(input_dir):
        paths = [input_dir]
    elif os.path.isdir(input_dir):
        names = sorted(n for n in os.listdir(input_dir) if not n.startswith((".", "_")))
        paths = [os.path.join(input_dir, name) for name in names]
    else:
        raise UserError(f"input {input_dir} does not exist; point the processing input at the data")
    if not paths:
        raise UserError(f"no input files in {input_dir}; expected .csv or .parquet files")
    for path in paths:
        if os.path.isdir(path) or not path.lower().endswith(CSV_SUFFIXES + PARQUET_SUFFIXES):
            raise UserError(
                f"input {path} is not a .csv, .parquet or .pq file; remove it from the input"
            )
    return paths


def read_file(path: str, categorical: Sequence[str], delimiter: str = ",") -> pd.DataFrame:
    """Read one CSV (with pyarrow, fast) or Parquet file into a DataFrame."""
    if path.lower().endswith(PARQUET_SUFFIXES):
        try:
            return pq.read_table(path).to_pandas()
        except (pa.ArrowException, OSError) as exc:
            raise UserError(f"cannot read Parquet file {path}: {exc}") from exc
    return _read_csv(path, categorical, delimiter)


def _read_csv(path: str, categorical: Sequence[str], delimiter: str) -> pd.DataFrame:
    read_options = pacsv.ReadOptions(block_size=16 << 20)
    parse = pacsv.ParseOptions(delimiter=delimiter)
    try:
        names = pacsv.open_csv(path, read_options=read_options, parse_options=parse).schema.names
    except pa.ArrowInvalid as exc:
        raise UserError(f"cannot read CSV file {path}: {exc}") from exc
    # Categorical columns stay strings so '01' and '1' remain different categories.
    types = {name: pa.string() for name in names if name in set(categorical)}
    try:
        table = pacsv.read_csv(
            path, read_options=read_options, parse_options=parse, convert_options=_convert(types)
        )
    except pa.ArrowInvalid:
        # A value deep in the file broke type inference; read everything as text and let the
        # column checks name the offending values.
        table = pacsv.read_csv(
            path,
            read_options=read_options,
            parse_options=parse,
            convert_options=_convert(dict.fromkeys(names, pa.string())),
        )
    return table.to_pandas()


def _convert(types: dict[str, pa.DataType]) -> pacsv.ConvertOptions:
    return pacsv.ConvertOptions(column_types=types, strings_can_be_null=True)


def read_inputs(
    paths: Sequence[str], categorical: Sequence[str], delimiter: str = ","
) -> tuple[pd.DataFrame, list[tuple[str, int]]]:
    """Read and stack all files; return the frame and (file, rows) to locate row indexes."""
    frames: list[pd.DataFrame] = []
    for path in paths:
        frame = read_file(path, categorical, delimiter)
        if frames and list(frame.columns) != list(frames[0].columns):
            raise UserError(
                f"{path} has columns {list(frame.columns)} but {paths[0]} has "
                f"{list(frames[0].columns)}; "
                "all input files need the same columns in the same order"
            )
        frames.append(frame)
    spans = [
        (os.path.basename(path), len(frame)) for path, frame in zip(paths, frames, strict=True)
    ]
    data = frames[0] if len(frames) == 1 else pd.concat(frames, ignore_index=True)
    return data, spans


def _places(indexes: Sequence[int], spans: Sequence[tuple[str, int]]) -> str:
    """Describe row indexes of the stacked frame as 'row N of file' (N counts data rows from 1)."""
    bounds = np.cumsum([rows for _, rows in spans])
    places = []
    for index in indexes:
        part = int(np.searchsorted(bounds, index, side="right"))
        start = int(bounds[part - 1]) if part else 0
        places.append(f"row {index - start + 1} of {spans[part][0]}")
    return ", ".join(places)


# ---------------------------------------------------------------- validation


def validate(data: pd.DataFrame, settings: Settings, spans: Sequence[tuple[str, int]]) -> None:
    """Check the data against the settings before any expensive work; raise UserError."""
    files = ", ".join(name for name, _ in spans)
    if len(data) == 0:
        raise UserError(f"input {files} has no data rows (only a header, or empty)")
    columns = [str(c) for c in data.columns]
    _check_target_present(settings.target, columns)
    _check_categoricals(settings, columns)
    features = [c for c in columns if c != settings.target]
    if not features:
        raise UserError(
            f"input {files} has only the target column {settings.target!r}; "
            "no features to learn from"
        )
    _check_names(features)
    empty = [c for c in features if data[c].isna().all()]
    if empty:
        raise UserError(f"column(s) {empty} have no values at all; drop them from the data")
    _check_missing_target(data[settings.target], settings.target, spans)
    _check_target_values(data[settings.target], settings)


def _check_target_present(target: str, columns: list[str]) -> None:
    if target in columns:
        return
    close = difflib.get_close_matches(target, columns, n=1, cutoff=0.6)
    if not close:  # case-only differences score low with difflib
        close = [c for c in columns if c.lower() == target.lower()]
    hint = f"; did you mean {close[0]!r}?" if close else ""
    raise UserError(f"target column {target!r} is not in the data; columns are {columns}{hint}")


def _check_categoricals(settings: Settings, columns: list[str]) -> None:
    absent = [c for c in settings.categorical_columns if c not in columns]
    if absent:
        raise UserError(
            f"categorical column(s) {absent} in categorical_columns are not in the data; "
            f"columns are {columns}"
        )
    if settings.target in settings.categorical_columns:
        raise UserError(
            f"target {settings.target!r} is listed in categorical_columns; remove it "
            "(classification labels are encoded from the problem type)"
        )


def _check_names(features: list[str]) -> None:
    bad = [c for c in features if any(ch in c for ch in FORBIDDEN_NAME_CHARS)]
    if bad:
        raise UserError(
            f"column name(s) {bad} contain one of {list(FORBIDDEN_NAME_CHARS)}, "
            "which XGBoost rejects; rename them"
        )


def _check_missing_target(target: pd.Series, name: str, spans: Sequence[tuple[str, int]]) -> None:
    missing = np.flatnonzero(target.isna().to_numpy())
    if missing.size:
        raise UserError(
            f"target column {name!r} is missing in {missing.size} row(s), "
            f"e.g. {_places(missing[:SHOW].tolist(), spans)}; "
            "drop or fill those rows"
        )


def _check_target_values(target: pd.Series, settings: Settings) -> None:
    name = settings.target
    if settings.problem_type == "regression":
        bad = [] if _is_numeric(target) else _non_numeric_values(target)
        if bad:
            raise UserError(
                f"target column {name!r} must be numeric for regression; found values like {bad}"
            )
        return
    labels = pd.unique(target)
    if settings.problem_type == "binary" and len(labels) != 2:
        raise UserError(
            f"binary target column {name!r} needs exactly 2 distinct values; found {len(labels)}: "
            f"{_show(labels)}" + ("; use problem type multiclass" if len(labels) > 2 else "")
        )
    if settings.problem_type == "multiclass" and len(labels) < 3:
        hint = "; use problem type binary" if len(labels) == 2 else ""
        raise UserError(
            f"multiclass target column {name!r} needs at least 3 classes; "
            f"found {len(labels)}: {_show(labels)}{hint}"
        )


def _show(values: Any) -> str:
    listed = [v.item() if isinstance(v, np.generic) else v for v in list(values)[: SHOW * 2]]
    return repr(listed) + (" ..." if len(values) > SHOW * 2 else "")


def _is_numeric(series: pd.Series) -> bool:
    return pd.api.types.is_numeric_dtype(series.dtype) or pd.api.types.is_bool_dtype(series.dtype)


def _non_numeric_values(series: pd.Series) -> list[Any]:
    present = series.dropna()
    coerced = pd.to_numeric(present.astype("object"), errors="coerce")
    bad = pd.unique(present[coerced.isna().to_numpy()].astype("object"))
    return [str(v) for v in bad[:SHOW]]


# ---------------------------------------------------------------- encoding


def _strings(series: pd.Series) -> np.ndarray:
    """Values as Python strings (None where missing), the form categories are compared in."""
    values = series.astype("object").to_numpy()
    missing = series.isna().to_numpy()
    return np.array(
        [None if m else str(v) for v, m in zip(values, missing, strict=True)], dtype=object
    )


def encode_categorical(series: pd.Series) -> tuple[np.ndarray, list[str]]:
    """Integer codes over the categories sorted as strings; missing becomes NaN."""
    values = _strings(series)
    categories = sorted({v for v in values if v is not None})
    codes = pd.Categorical(values, categories=categories).codes.astype(np.float64)
    codes[codes < 0] = np.nan
    return codes, categories


def encode_numeric(series: pd.Series, name: str) -> np.ndarray:
    """Numeric feature as float64; a text value means the column needs declaring categorical."""
    if _is_numeric(series):
        return series.to_numpy(dtype=np.float64, na_value=np.nan)
    coerced = pd.to_numeric(series.astype("object"), errors="coerce")
    if coerced.isna().sum() > series.isna().sum():
        raise UserError(
            f"column {name!r} is not numeric (values like {_non_numeric_values(series)}); "
            "add it to categorical_columns if it is categorical, or fix the values"
        )
    return coerced.to_numpy(dtype=np.float64, na_value=np.nan)


def encode_labels(target: pd.Series) -> tuple[np.ndarray, list[Any]]:
    """Class labels as codes 0..k-1 over the sorted labels (numeric order if numeric, else text)."""
    if _is_numeric(target):
        values = target.to_numpy()
        labels = np.unique(values)
        codes = np.searchsorted(labels, values).astype(np.float64)
        return codes, [label.item() for label in labels]
    codes, labels = encode_categorical(target)
    return codes, labels


def encode(data: pd.DataFrame, settings: Settings) -> tuple[list[np.ndarray], dict[str, Any]]:
    """Encode target and features; return the columns (target first) and the schema."""
    target = data[settings.target]
    if settings.problem_type == "regression":
        columns = [encode_numeric(target, settings.target)]
        labels = None
    else:
        codes, labels = encode_labels(target)
        columns = [codes]
    features = [str(c) for c in data.columns if c != settings.target]
    categorical: dict[str, list[str]] = {}
    for name in features:
        if name in settings.categorical_columns:
            codes, categories = encode_categorical(data[name])
            categorical[name] = categories
            columns.append(codes)
        else:
            columns.append(encode_numeric(data[name], name))
    schema = {
        "target": settings.target,
        "problem_type": settings.problem_type,
        "features": features,
        "categorical": categorical,
        "labels": labels,
    }
    return columns, schema


# ---------------------------------------------------------------- split and write


def split_sizes(rows: int, split: Split) -> dict[str, int]:
    """Rows per split: floor for train and validation, the rest to test; each needs one row."""
    train = int(np.floor(round(rows * split.train, 9)))
    validation = int(np.floor(round(rows * split.validation, 9)))
    sizes = {"train": train, "validation": validation, "test": rows - train - validation}
    if min(sizes.values()) < 1:
        raise UserError(
            f"{rows} row(s) are too few for split "
            f"{split.train:g}/{split.validation:g}/{split.test:g}: it gives "
            f"train={sizes['train']}, validation={sizes['validation']}, test={sizes['test']}; "
            "each split needs at least 1 row"
        )
    return sizes


def usual_split(count: int, split: Split) -> dict[str, np.ndarray]:
    """Every row shuffled with the seed, then cut at the split's sizes."""
    sizes = split_sizes(count, split)
    order = np.random.default_rng(split.seed).permutation(count)
    cuts = np.cumsum([sizes[name] for name in SPLITS])[:-1]
    return dict(zip(SPLITS, np.split(order, cuts), strict=True))


def write_split(path: str, columns: Sequence[np.ndarray], rows: np.ndarray) -> None:
    """Write the chosen rows as headerless CSV; NaN becomes an empty field."""
    os.makedirs(os.path.dirname(path), exist_ok=True)
    arrays = [pa.array(column[rows], from_pandas=True) for column in columns]
    table = pa.Table.from_arrays(arrays, names=[f"c{i}" for i in range(len(arrays))])
    pacsv.write_csv(table, path, write_options=pacsv.WriteOptions(include_header=False))


def write_baseline(path: str, features: pd.DataFrame, rows: np.ndarray) -> None:
    """The training rows' features as the endpoint receives them (raw values, the schema's
    order) with a header: the data Model Monitor's baseline describes."""
    os.makedirs(os.path.dirname(path), exist_ok=True)
    table = pa.Table.from_pandas(features.iloc[rows], preserve_index=False)
    pacsv.write_csv(table, path)


def preprocess(
    *,
    input_dir: str,
    output_dir: str,
    target: str,
    problem_type: str,
    categorical_columns: Sequence[str],
    split: Split,
    delimiter: str = ",",
    collected_dir: str | None = None,
) -> dict[str, Any]:
    """Validate, encode, split and write the data; return the schema written to schema.json."""
    started = time.perf_counter()
    settings = Settings(target, problem_type, tuple(categorical_columns), split, delimiter)
    manifest = collected.read_manifest(collected_dir)
    if manifest is None:
        files = [collected.DataFile(path, True) for path in list_input_files(input_dir)]
    else:
        files = collected.listed_files(manifest, input_dir, str(collected_dir))
    paths = [file.path for file in files]
    data, spans = read_inputs(paths, settings.categorical_columns, delimiter)
    recent = np.repeat([file.recent for file in files], [rows for _, rows in spans]).astype(bool)
    print(
        f"read {len(data)} rows x {data.shape[1]} columns from {len(paths)} file(s) "
        f"in {time.perf_counter() - started:.2f}s",
        flush=True,
    )
    validate(data, settings, spans)
    columns, schema = encode(data, settings)
    policy = (manifest or {}).get("policy", {})
    fractions = (split.train, split.validation, split.test)
    chosen, summary = collected.choose_rows(recent, fractions, split.seed, policy)
    rows = chosen or usual_split(len(data), split)
    for name in SPLITS:
        write_split(os.path.join(output_dir, name, f"{name}.csv"), columns, rows[name])
    # Model Monitor's baseline: what the endpoint should see from now on, so the training rows
    # that are recent when recent rows decide (older ones would hide the drift just learned).
    baseline = rows["train"][recent[rows["train"]]] if chosen else rows["train"]
    write_baseline(
        os.path.join(output_dir, "baseline", BASELINE_FILE), data[schema["features"]], baseline
    )
    sizes = {name: len(rows[name]) for name in SPLITS}
    schema["rows"] = sizes
    schema["data"] = {**summary, **(manifest or {}).get("window", {})}
    if summary["test_from"] == "recent":
        print(
            f"test rows from the {summary['recent_rows']} recent rows "
            f"({schema['data'].get('why')}); {summary['older_kept']} of "
            f"{summary['older_rows']} older rows kept for training",
            flush=True,
        )
    jobkit.write_json(os.path.join(output_dir, "schema", jobkit.SCHEMA_FILE), schema)
    print(
        f"split train={sizes['train']} validation={sizes['validation']} test={sizes['test']}; "
        f"done in {time.perf_counter() - started:.2f}s",
        flush=True,
    )
    return schema


def parse_args(argv: Sequence[str] | None = None) -> argparse.Namespace:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--input-dir", default="/opt/ml/processing/input/data")
    parser.add_argument("--collected-dir", default=None)  # the run's manifest and captures
    parser.add_argument("--output-dir", default="/opt/ml/processing/output")
    # A processing job's failure reason goes where DescribeProcessingJob reads ExitMessage from.
    parser.add_argument("--message-file", default=jobkit.PROCESSING_MESSAGE_FILE)
    return parser.parse_args(argv)


def main(argv: Sequence[str] | None = None, env: Mapping[str, str] | None = None) -> int:
    """Read the arguments and the environment once, then run the job under the failure handler."""
    args = parse_args(argv)
    environ = os.environ if env is None else env

    def body() -> None:
        settings = settings_from_env(environ)
        preprocess(
            input_dir=args.input_dir,
            output_dir=args.output_dir,
            target=settings.target,
            problem_type=settings.problem_type,
            categorical_columns=settings.categorical_columns,
            split=settings.split,
            delimiter=settings.delimiter,
            collected_dir=args.collected_dir,
        )

    return jobkit.run_job(body, reason_file=args.message_file)


if __name__ == "__main__":
    sys.exit(main())
