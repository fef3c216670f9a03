"""Model Monitor's data-quality analysis: a baseline's statistics and suggested constraints, or a
monitoring run's statistics and the violations against the baseline.

Environment (Model Monitor's names; run.py passes the message file and metrics folder):

- ``dataset_format`` (JSON): ``{"csv": {"header": true|false, "output_columns_position":
  "START"}}``, ``{"json": {"lines": true|false}}``, ``{"parquet": {}}`` or
  ``{"sagemakerCaptureJson": {"captureIndexNames": ["endpointInput", "endpointOutput"]}}``.
  Default: csv with a header.
- ``dataset_source``: a file or a folder (every file below it; ``*.jsonl`` for captures).
- ``output_path``: statistics.json and constraints.json (baseline), statistics.json and
  constraint_violations.json (monitoring), and monitoring_report.json (ours, see below).
- ``baseline_statistics``, ``baseline_constraints``: a file, or a folder holding
  statistics.json/constraints.json. ``baseline_statistics`` present: a monitoring run.
- ``start_time``, ``end_time`` (ISO 8601): captures whose ``eventMetadata.inferenceTime`` is
  outside ``[start_time, end_time)`` are left out.
- ``publish_cloudwatch_metrics`` (``Enabled``|``Disabled``), ``sagemaker_endpoint_name``,
  ``sagemaker_monitoring_schedule_name``: the metrics and their dimensions.

Formats are Model Monitor's ("Schema for Statistics", "Schema for Constraints", "Schema for
Violations"). Headerless CSV columns are ``_c0``, ``_c1``, ... in a baseline job; in a monitoring
run every headerless table (captures included) takes the baseline's feature names by position,
so the baseline's features must be in the order the endpoint receives them. Captured rows are
the endpointOutput columns (when captured) then the endpointInput columns (``"END"`` as
``output_columns_position`` in the capture options puts them last). Numerical distributions
are Apache DataSketches KLL sketches (k 2048, c 0.64, as the built-in container writes them):
``sketch.data`` holds the retained items by compactor level (an item of level i weighs 2^i);
``buckets`` are 10 equal-width counts between min and max, read from the sketch (within its
rank error; exact below k values).

Checks, with the thresholds of the baseline constraints' ``monitoring_config``:
``data_type_check`` (the share of present values of the baseline type below
``datatype_check_threshold``), ``completeness_check`` (completeness below the feature's),
``baseline_drift_check`` (distance above ``comparison_threshold``, or
``categorical_comparison_threshold`` for a string feature), ``missing_column_check`` /
``extra_column_check`` (fewer/more columns than the baseline: one violation naming the
columns; a missing column gets no other check and no metric), ``categorical_values_check``
(the share of values inside the constraint's ``domains`` below ``domain_content_threshold``).

Distance: numerical, L-infinity between the cumulative distributions of the baseline's and the
window's KLL sketches (the largest absolute difference of the two CDFs, at every retained
item of either); categorical (``categorical_drift_method`` ``LInfinity``, the default), the
largest absolute difference of the normalized value frequencies. ``comparison_method``:
``Simple`` (linf_simple) flags a distance above the threshold; ``Robust`` (linf_robust, the
default) is for small samples, after the two-sample Kolmogorov-Smirnov test: the distance must
also exceed the test's critical value at alpha 0.01, ``1.628 * sqrt((n + m) / (n m))``, so
the sampling noise of a small window is no drift. Model Monitor documents no formula for
``Robust``: this is our reading of "based on the two-sample Kolmogorov-Smirnov test".
``ChiSquared`` is not emulated: a ClientError says so.

CloudWatch metrics, when ``publish_cloudwatch_metrics`` is Enabled and the constraints'
``emit_metrics`` is not Disabled: ``data_quality_metrics.jsonl`` in the metrics folder, one
datum a line (see ``common``), namespace ``aws/sagemaker/Endpoints/data-metrics`` in a
``Namespace`` key, dimensions Endpoint and MonitoringSchedule, Timestamp the moment they are
written (not the window's end: a job that outlasts the alarm's period would otherwise publish
into a period already judged):
``feature_non_null_<f>`` (completeness, Value), ``feature_baseline_drift_<f>`` (the distance,
Value) and, for numerical features, ``feature_data_<f>`` (StatisticValues SampleCount, Sum,
Minimum, Maximum: the built-in container's Min/Max/Sum/SampleCount/Average).

Bad input is never fatal and is counted in ``monitoring_report.json`` (``{"counts": {...}}``;
not a violation: the violation check types are a closed list): malformed capture lines,
records outside the window, captures whose request and response row counts differ, unreadable
captured bodies and rows whose column count differs from the first row's. A window (or a
baseline data set) with no rows ends as Model Monitor's does: "Job inputs had no data" in the
exit message, exit code 1, no statistics and no metrics.
"""

from __future__ import annotations

import io
import json
import math
from collections import Counter
from collections.abc import Iterable, Mapping
from dataclasses import dataclass, field
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import numpy as np
import pyarrow as pa
import pyarrow.compute as pc
import pyarrow.csv as pacsv
from common import (
    MESSAGE_FILE,
    METRICS_DIR,
    NO_DATA,
    CaptureCounts,
    Window,
    capture_files,
    decode_payload,
    dimensions,
    iso,
    metric_line,
    read_captures,
    write_json,
    write_message,
    write_metrics,
)

NAMESPACE = "aws/sagemaker/Endpoints/data-metrics"
METRICS_FILE = "data_quality_metrics.jsonl"
REPORT_FILE = "monitoring_report.json"
KLL_K = 2048
KLL_C = 0.64
HISTOGRAM_BUCKETS = 10
MAX_DOMAIN = 20  # string_constraints.domains for columns of at most this many distinct values
MAX_CATEGORIES = 1000  # categorical buckets kept in statistics.json
KS_99 = 1.628  # two-sample Kolmogorov-Smirnov critical coefficient at alpha = 0.01
INPUT, OUTPUT = "endpointInput", "endpointOutput"
MONITORING_CONFIG: dict[str, Any] = {
    "evaluate_constraints": "Enabled",
    "emit_metrics": "Enabled",
    "datatype_check_threshold": 1.0,
    "domain_content_threshold": 1.0,
    "distribution_constraints": {
        "perform_comparison": "Enabled",
        "comparison_threshold": 0.1,
        "comparison_method": "Robust",
        "categorical_comparison_threshold": 0.1,
        "categorical_drift_method": "LInfinity",
    },
}
INTEGRAL, FRACTIONAL, STRING, UNKNOWN = "Integral", "Fractional", "String", "Unknown"
NUMERIC = (INTEGRAL, FRACTIONAL)
COMPLETED = "Completed: Job completed successfully with no violations."


class ClientError(Exception):
    """The job's settings or baseline are unusable (the message names which)."""


@dataclass
class Counts:
    """What the run read and skipped, and why: monitoring_report.json."""

    files: int = 0
    records: int = 0
    rows: int = 0
    malformed_capture_lines: int = 0
    records_outside_window: int = 0
    row_count_mismatches: int = 0
    unreadable_payloads: int = 0
    malformed_rows: int = 0

    def report(self) -> dict[str, int]:
        return dict(vars(self))


@dataclass
class Profile:
    """One column's statistics, with what the comparison needs beside them."""

    statistics: dict[str, Any]
    sketch: Any = None  # numerical columns
    frequencies: Counter[str] = field(default_factory=Counter)  # string columns
    type_share: float = 1.0  # share of the present values that are of the baseline's type

    @property
    def common(self) -> dict[str, int]:
        section = self.statistics.get("numerical_statistics") or self.statistics.get(
            "string_statistics", {}
        )
        return section["common"]  # type: ignore[no-any-return]


# ------------------------------------------------------------------ entry point


def main(
    env: Mapping[str, str],
    *,
    message_file: str = MESSAGE_FILE,
    metrics_dir: str = METRICS_DIR,
    now: datetime | None = None,
) -> int:
    """The DATA_QUALITY analysis for run.py: the exit code; the message file says why."""
    counts = Counts()
    try:
        code, message = run(env, metrics_dir=metrics_dir, counts=counts, now=now)
    except ClientError as err:
        code, message = 1, f"ClientError: {err}"
    output = env.get("output_path")
    if output:
        write_json(Path(output) / REPORT_FILE, {"counts": counts.report()})
    write_message(message_file, message)
    print(message, json.dumps(counts.report()), flush=True)
    return code


def run(
    env: Mapping[str, str],
    *,
    metrics_dir: str,
    counts: Counts,
    now: datetime | None = None,
) -> tuple[int, str]:
    """(exit code, exit message) of one job; writes its outputs. Without ``now`` (tests give
    one) the metrics are stamped when written, after the analysis."""
    stamp = now
    now = now or datetime.now(UTC)
    output = Path(_required(env, "output_path"))
    source = Path(_required(env, "dataset_source"))
    dataset_format = parse_dataset_format(env.get("dataset_format"))
    try:
        window = Window.from_env(env)
    except ValueError as err:
        raise ClientError(str(err)) from err
    stats_path = env.get("baseline_statistics")
    baseline = _read_json(_resolve(stats_path, "statistics.json")) if stats_path else None
    constraints_path = env.get("baseline_constraints")
    constraints = (
        _read_json(_resolve(constraints_path, "constraints.json")) if constraints_path else {}
    )
    names = [f["name"] for f in baseline["features"]] if baseline else None
    if baseline is not None:
        _distribution_config(constraints)  # validated before the data is read
    table = read_dataset(source, dataset_format, names, counts, window)
    if table is None or table.num_rows == 0:
        return 1, NO_DATA
    counts.rows = table.num_rows
    if baseline is None:
        profiles = profile_table(table, None)
        stats = statistics_document(table.num_rows, profiles, now)
        write_json(output / "statistics.json", stats)
        write_json(output / "constraints.json", suggest_constraints(stats))
        return 0, COMPLETED
    profiles = profile_table(table, baseline)
    write_json(output / "statistics.json", statistics_document(table.num_rows, profiles, now))
    found, drift = violations(table.num_rows, profiles, baseline, constraints)
    write_json(output / "constraint_violations.json", {"violations": found})
    config = {**MONITORING_CONFIG, **(constraints.get("monitoring_config") or {})}
    if (
        env.get("publish_cloudwatch_metrics", "Disabled") == "Enabled"
        and config.get("emit_metrics", "Enabled") != "Disabled"
    ):
        timestamp = iso(stamp or datetime.now(UTC))  # the alarm's current period sees it
        known = {name: p for name, p in profiles.items() if name in names_set(baseline)}
        write_metrics(metrics_dir, METRICS_FILE, metric_lines(env, known, drift, timestamp))
    if found:
        return (
            0,
            f"CompletedWithViolations: Job completed successfully with {len(found)} violations.",
        )
    return 0, COMPLETED


def names_set(baseline: Mapping[str, Any]) -> set[str]:
    return {f["name"] for f in baseline["features"]}


def _required(env: Mapping[str, str], name: str) -> str:
    value = env.get(name)
    if not value:
        raise ClientError(f"the environment variable {name} is required")
    return value


def parse_dataset_format(text: str | None) -> tuple[str, dict[str, Any]]:
    """(kind, options) of ``dataset_format``; ClientError when it is not one AWS defines."""
    kinds = ("csv", "json", "parquet", "sagemakerCaptureJson")
    try:
        value = json.loads(text) if text else {"csv": {"header": True}}
    except ValueError as err:
        raise ClientError(f"dataset_format {text!r} is not JSON: {err}") from err
    if not isinstance(value, dict) or len(value) != 1 or next(iter(value)) not in kinds:
        raise ClientError(f"dataset_format {text!r}: expected one key of {', '.join(kinds)}")
    ((kind, options),) = value.items()
    if options is not None and not isinstance(options, dict):
        raise ClientError(f"dataset_format {text!r}: the {kind} options must be an object")
    return kind, dict(options or {})


def _resolve(path: str, name: str) -> str:
    candidate = Path(path)
    if candidate.is_dir():
        inside = candidate / name
        if inside.is_file():
            return str(inside)
        files = sorted(p for p in candidate.rglob("*.json") if p.is_file())
        if len(files) == 1:
            return str(files[0])
    return path


def _read_json(path: str) -> dict[str, Any]:
    try:
        with open(path, encoding="utf-8") as stream:
            value = json.load(stream)
    except (OSError, ValueError) as err:
        raise ClientError(f"cannot read {path}: {err}") from err
    if not isinstance(value, dict):
        raise ClientError(f"{path} is not a JSON object")
    if "features" in value and not isinstance(value["features"], list):
        raise ClientError(f"{path}: features must be a list")
    value.setdefault("features", [])
    return value


# ------------------------------------------------------------------ reading


def _files(source: Path) -> list[Path]:
    if source.is_file():
        return [source]
    return sorted(
        p for p in source.rglob("*")
        if p.is_file() and not p.name.startswith(".") and not p.name.startswith("_")
    )  # fmt: skip


def read_dataset(
    source: Path,
    dataset_format: tuple[str, dict[str, Any]],
    names: list[str] | None,
    counts: Counts,
    window: Window,
) -> pa.Table | None:
    """The data set as a table (None when there is nothing to read)."""
    kind, options = dataset_format
    if kind == "sagemakerCaptureJson":
        indexes = options.get("captureIndexNames") or [INPUT, OUTPUT]
        unknown = [i for i in indexes if i not in (INPUT, OUTPUT)]
        if unknown:
            raise ClientError(f"captureIndexNames {unknown} are not {INPUT} or {OUTPUT}")
        ordered = [OUTPUT, INPUT] if options.get("output_columns_position") != "END" else [
            INPUT, OUTPUT]  # fmt: skip
        text = capture_csv(source, [i for i in ordered if i in indexes], window, counts)
        return csv_table(text, header=False, names=names, counts=counts) if text else None
    files = _files(source)
    counts.files = len(files)
    if not files:
        return None
    if kind == "csv":
        header = bool(options.get("header", True))
        tables = [csv_table(f, header=header, names=names, counts=counts) for f in files]
    elif kind == "json":
        tables = [_json_table(f, bool(options.get("lines", True))) for f in files]
    else:
        import pyarrow.parquet as pq

        tables = [pq.read_table(f) for f in files]
    tables = [t for t in tables if t.num_rows]
    if not tables:
        return None
    try:
        return pa.concat_tables(tables, promote_options="permissive")
    except (pa.ArrowInvalid, pa.ArrowTypeError) as err:
        raise ClientError(f"the files of {source} do not have the same columns: {err}") from err


def _json_table(path: Path, lines: bool) -> pa.Table:
    try:
        if lines:
            import pyarrow.json as pajson

            return pajson.read_json(path)
        rows = json.loads(path.read_text(encoding="utf-8"))
        return pa.Table.from_pylist(rows if isinstance(rows, list) else [rows])
    except (pa.ArrowInvalid, ValueError, TypeError) as err:
        raise ClientError(f"{path.name} is not the JSON the dataset_format says: {err}") from err


def csv_table(
    data: bytes | Path, *, header: bool, names: list[str] | None, counts: Counts
) -> pa.Table:
    """A CSV's table; headerless columns take ``names`` by position (else ``_c<i>``). Rows of
    another column count than the first are counted and skipped."""

    def skip(_row: Any) -> str:
        counts.malformed_rows += 1
        return "skip"

    read = pacsv.ReadOptions(autogenerate_column_names=not header, block_size=1 << 22)
    parse = pacsv.ParseOptions(invalid_row_handler=skip)
    convert = pacsv.ConvertOptions(strings_can_be_null=True)
    try:
        source = io.BytesIO(data) if isinstance(data, bytes) else str(data)
        table = pacsv.read_csv(
            source, read_options=read, parse_options=parse, convert_options=convert
        )
    except pa.ArrowInvalid as err:
        if "Empty CSV file" in str(err):
            return pa.table({})
        raise ClientError(f"the data set is not CSV: {err}") from err
    if not header:
        known = names or []
        table = table.rename_columns(
            [known[i] if i < len(known) else f"_c{i}" for i in range(table.num_columns)]
        )
    return table


def capture_csv(source: Path, indexes: list[str], window: Window, counts: Counts) -> bytes:
    """The window's captured rows as one headerless CSV, ``indexes``' columns side by side."""
    capture = CaptureCounts()
    out = io.StringIO()
    for record in read_captures(capture_files(source), window, capture):
        rows = record_rows(record["captureData"], indexes, counts)
        if rows:
            counts.records += 1
            out.write("\n".join(rows))
            out.write("\n")
    counts.files += capture.files
    counts.malformed_capture_lines += capture.malformed_capture_lines
    counts.records_outside_window += capture.records_outside_window
    return out.getvalue().encode()


def record_rows(data: Mapping[str, Any], indexes: list[str], counts: Counts) -> list[str]:
    """One capture's CSV rows; [] (and counted) when a body is unreadable or absent, or the
    request and response hold different numbers of rows."""
    parts: list[list[str]] = []
    for index in indexes:
        payload = data.get(index)
        try:
            if not isinstance(payload, dict):
                raise TypeError(f"no {index}")
            parts.append(payload_rows(payload, index))
        except (ValueError, TypeError, KeyError) as err:
            del err
            counts.unreadable_payloads += 1
            return []
    if len({len(p) for p in parts}) > 1:
        counts.row_count_mismatches += 1
        return []
    return [",".join(cells) for cells in zip(*parts, strict=True)]


def payload_rows(payload: Mapping[str, Any], index: str = INPUT) -> list[str]:
    """A captured body's rows as CSV text lines, whatever its encoding."""
    text, kind = decode_payload(payload)
    if kind == "csv":
        return [row for row in text.replace("\r", "").split("\n") if row.strip()]
    return [",".join(_csv_cell(v) for v in row) for row in json_rows(json.loads(text), index)]


def json_rows(body: Any, index: str) -> list[list[Any]]:
    """Rows of a JSON body: ``{"instances"|"features"|"predictions"|...: [...]}`` or a list;
    a flat list is one request row, or one prediction per row of an output."""
    if isinstance(body, dict):
        if len(body) == 1 or not all(_scalar(v) for v in body.values()):
            body = next(iter(body.values())) if len(body) == 1 else list(body.values())
        else:  # one record: its values
            return [list(body.values())]
    if not isinstance(body, list):
        return [[body]]
    if all(_scalar(v) for v in body):
        return [list(body)] if index == INPUT else [[v] for v in body]
    return [_cells(row) for row in body]


def _cells(row: Any) -> list[Any]:
    if isinstance(row, dict):
        return [v for v in row.values() if _scalar(v)]
    return list(row) if isinstance(row, list) else [row]


def _scalar(value: Any) -> bool:
    return value is None or isinstance(value, (str, int, float, bool))


def _csv_cell(value: Any) -> str:
    if value is None:
        return ""
    text = str(value)
    if any(c in text for c in ',"\n'):
        return '"' + text.replace('"', '""') + '"'
    return text


# ------------------------------------------------------------------ statistics


def _kind(column: pa.ChunkedArray) -> str:
    if pa.types.is_integer(column.type):
        return INTEGRAL
    if pa.types.is_floating(column.type) or pa.types.is_decimal(column.type):
        return FRACTIONAL
    if pa.types.is_null(column.type):
        return UNKNOWN
    return STRING


def profile(name: str, column: pa.ChunkedArray, expected: str | None = None) -> Profile:
    """Statistics of one column; ``expected`` (the baseline's type) says how to read it."""
    kind = _kind(column)
    total, missing = len(column), column.null_count
    common = {"num_present": total - missing, "num_missing": missing}
    if (expected in NUMERIC or (expected is None and kind in NUMERIC)) and kind != UNKNOWN:
        values, share = _numbers(column, kind, expected)
        return _numerical_profile(name, kind, common, values, share)
    frequencies = _frequencies(column)
    share = 1.0
    if expected in NUMERIC and frequencies:  # text where numbers were
        share = 0.0
    statistics = {
        "name": name,
        "inferred_type": kind,
        "string_statistics": {
            "common": common,
            "distinct_count": float(len(frequencies)),
            "distribution": {
                "categorical": {
                    "buckets": [
                        {"value": value, "count": count}
                        for value, count in frequencies.most_common(MAX_CATEGORIES)
                    ]
                }
            },
        },
    }
    return Profile(statistics, frequencies=frequencies, type_share=share)


def _frequencies(column: pa.ChunkedArray) -> Counter[str]:
    if pa.types.is_null(column.type):
        return Counter()
    counted = pc.value_counts(pc.cast(column.drop_null(), pa.string()))
    values = counted.field("values").to_pylist()
    numbers = counted.field("counts").to_pylist()
    return Counter(dict(zip(values, numbers, strict=True)))


def _numbers(column: pa.ChunkedArray, kind: str, expected: str | None) -> tuple[np.ndarray, float]:
    """The column's numbers, and the share of its present values of the expected type."""
    if kind == STRING:  # a numerical baseline column with text in it now
        present = column.drop_null()
        parsed = np.array([_float(v) for v in pc.cast(present, pa.string()).to_pylist()])
        ok = ~np.isnan(parsed) if len(parsed) else np.zeros(0, dtype=bool)
        values = parsed[ok] if len(parsed) else np.zeros(0)
        share = float(ok.mean()) if len(ok) else 1.0
    else:
        values, share = present_floats(column), 1.0
    if expected == INTEGRAL and len(values) and kind != INTEGRAL:
        share *= float(np.mean(values == np.floor(values)))
    return values, share


def present_floats(column: pa.ChunkedArray) -> np.ndarray:
    """The present values as one writable float64 array (what the sketch's vectorized update
    takes), read from the chunks' buffers: ChunkedArray/Array.to_numpy import pandas (0.3 s
    of a job), and drop_null first is ten times slower."""
    parts = [_chunk_floats(chunk) for chunk in column.chunks]
    return np.concatenate(parts) if parts else np.zeros(0)


def _chunk_floats(chunk: pa.Array) -> np.ndarray:
    kind = chunk.type
    if pa.types.is_integer(kind) or pa.types.is_floating(kind):
        code = (
            "f"
            if pa.types.is_floating(kind)
            else "u"
            if pa.types.is_unsigned_integer(kind)
            else "i"
        )
        dtype = np.dtype(f"{code}{kind.bit_width // 8}")
        data = chunk.buffers()[1]
        values = np.frombuffer(
            data, dtype=dtype, count=len(chunk), offset=chunk.offset * dtype.itemsize
        )
        values = values.astype(np.float64)
        if chunk.null_count:
            bits = np.frombuffer(chunk.buffers()[0], dtype=np.uint8)
            valid = np.unpackbits(bits, bitorder="little")[chunk.offset : chunk.offset + len(chunk)]
            values = values[valid.astype(bool)]
        return values
    present = chunk.drop_null()  # decimals: rare
    return np.asarray(present.to_numpy(zero_copy_only=False), dtype=np.float64)


def _float(value: str) -> float:
    try:
        number = float(value)
    except ValueError:
        return math.nan
    return number if math.isfinite(number) else math.nan


def _numerical_profile(
    name: str,
    kind: str,
    common: dict[str, int],
    values: np.ndarray,
    share: float,
) -> Profile:
    sketch = _sketch(values)
    stats: dict[str, Any] = {"common": common}
    buckets: list[dict[str, float]] = []
    if len(values):
        low, high = float(values.min()), float(values.max())
        total = float(values.sum())
        mean = total / len(values)
        # Model Monitor's 10 buckets, from the sketch (a pass over the retained items only):
        # [lower, upper), the last one closed, as numpy's histogram.
        edges = np.linspace(low, high, HISTOGRAM_BUCKETS + 1)
        inner = edges[1:-1].tolist() if high > low else []
        masses = sketch.get_pmf(inner, False) if inner else [1.0] + [0.0] * 9
        counts = np.asarray(masses) * len(values)
        stats.update(
            mean=mean, sum=total, std_dev=float(values.std()), min=low, max=high
        )  # fmt: skip
        buckets = [
            {"lower_bound": float(edges[i]), "upper_bound": float(edges[i + 1]),
             "count": float(counts[i])}
            for i in range(HISTOGRAM_BUCKETS)
        ]  # fmt: skip
    else:
        stats.update(mean=0.0, sum=0.0, std_dev=0.0, min=0.0, max=0.0)
    stats["distribution"] = {
        "kll": {
            "buckets": buckets,
            "sketch": {
                "parameters": {"c": KLL_C, "k": float(KLL_K)},
                "data": sketch_levels(sketch),
            },
        }
    }
    feature = {"name": name, "inferred_type": kind, "numerical_statistics": stats}
    return Profile(feature, sketch=sketch, type_share=share)


def sketch_levels(sketch: Any) -> list[list[float]]:
    """The sketch's retained items by compactor level (an item of level i weighs 2^i)."""
    levels = _serialized_levels(sketch)
    if levels is not None:
        return levels
    levels = []
    for item, weight in sketch:
        level = int(weight).bit_length() - 1
        while len(levels) <= level:
            levels.append([])
        levels[level].append(float(item))
    return levels


def _serialized_levels(sketch: Any) -> list[list[float]] | None:
    """The levels read from the sketch's serialized form (DataSketches' KLL layout: 8 preamble
    bytes, n, min_k, num_levels, the levels' start offsets, min, max, then the retained items
    level by level), ten times faster than iterating; None for any other layout."""
    data = sketch.serialize()
    if len(data) < 20 or data[0] != 5:  # a sketch of 0 or 1 item: a shorter preamble
        return None
    count = data[18]
    starts = np.frombuffer(data, dtype="<u4", count=count, offset=20).astype(np.int64)
    items = np.frombuffer(data, dtype="<f8", offset=20 + 4 * count + 16)
    if len(items) != sketch.num_retained:
        return None
    bounds = np.append(starts - starts[0], len(items))
    return [items[bounds[i] : bounds[i + 1]].tolist() for i in range(count)]


def _sketch(values: np.ndarray) -> Any:
    from datasketches import kll_doubles_sketch

    sketch = kll_doubles_sketch(KLL_K)
    if len(values):
        sketch.update(values)
    return sketch


def profile_table(table: pa.Table, baseline: Mapping[str, Any] | None) -> dict[str, Profile]:
    expected = {f["name"]: f.get("inferred_type") for f in (baseline or {}).get("features", [])}
    return {
        name: profile(name, table.column(name), expected.get(name)) for name in table.column_names
    }


def statistics_document(
    rows: int, profiles: Mapping[str, Profile], now: datetime
) -> dict[str, Any]:
    return {
        "version": 0.0,
        "dataset": {"item_count": rows, "evaluation_time": iso(now)},
        "features": [p.statistics for p in profiles.values()],
    }


def suggest_constraints(stats: Mapping[str, Any]) -> dict[str, Any]:
    features = []
    for feature in stats["features"]:
        section = feature.get("numerical_statistics") or feature["string_statistics"]
        common = section["common"]
        total = common["num_present"] + common["num_missing"]
        entry: dict[str, Any] = {
            "name": feature["name"],
            "inferred_type": feature["inferred_type"],
            "completeness": common["num_present"] / total if total else 0.0,
        }
        if "numerical_statistics" in feature:
            entry["num_constraints"] = {"is_non_negative": bool(section["min"] >= 0)}
        else:
            buckets = section["distribution"]["categorical"]["buckets"]
            if 0 < len(buckets) <= MAX_DOMAIN:
                entry["string_constraints"] = {"domains": [b["value"] for b in buckets]}
        features.append(entry)
    return {"version": 0.0, "features": features, "monitoring_config": MONITORING_CONFIG}


# ------------------------------------------------------------------ comparison


def _distribution_config(constraints: Mapping[str, Any]) -> dict[str, Any]:
    config = (constraints.get("monitoring_config") or {}).get("distribution_constraints") or {}
    merged = {**MONITORING_CONFIG["distribution_constraints"], **config}
    method = merged.get("categorical_drift_method", "LInfinity")
    if method != "LInfinity":
        raise ClientError(
            f"categorical_drift_method {method!r} is not emulated locally (only LInfinity)"
        )
    if merged.get("comparison_method", "Robust") not in ("Robust", "Simple"):
        raise ClientError(
            f"comparison_method {merged['comparison_method']!r} is not Simple or Robust"
        )
    return merged


def violations(
    rows: int,
    profiles: Mapping[str, Profile],
    baseline: Mapping[str, Any],
    constraints: Mapping[str, Any],
) -> tuple[list[dict[str, str]], dict[str, float]]:
    """The violations, and each compared feature's drift distance."""
    checker = _Checker(rows, baseline, constraints)
    checker.columns(len(profiles), profiles)
    if checker.config.get("evaluate_constraints", "Enabled") != "Disabled":
        for name, current in profiles.items():
            if name in checker.expected:
                checker.feature(name, current)
    return checker.found, checker.drift


class _Checker:
    """Model Monitor's checks of one window against the baseline, in its words."""

    def __init__(
        self, rows: int, baseline: Mapping[str, Any], constraints: Mapping[str, Any]
    ) -> None:
        self.rows = rows
        self.config = {**MONITORING_CONFIG, **(constraints.get("monitoring_config") or {})}
        self.distribution = _distribution_config(constraints)
        self.expected = {f["name"]: f for f in baseline["features"]}
        self.limits = {f["name"]: f for f in constraints.get("features") or []}
        self.found: list[dict[str, str]] = []
        self.drift: dict[str, float] = {}

    def flag(self, name: str, check: str, description: str) -> None:
        self.found.append(
            {"feature_name": name, "constraint_check_type": check, "description": description}
        )

    def columns(self, count: int, profiles: Mapping[str, Profile]) -> None:
        missing = [name for name in self.expected if name not in profiles]
        extra = [name for name in profiles if name not in self.expected]
        sizes = (
            f"Number of columns in current dataset: {count}, Number of columns in baseline "
            f"constraints: {len(self.expected)}"
        )
        if missing:
            self.flag(", ".join(missing), "missing_column_check",
                      f"There are missing columns in current dataset. {sizes}")  # fmt: skip
        if extra:
            self.flag(", ".join(extra), "extra_column_check",
                      f"There are extra columns in current dataset. {sizes}")  # fmt: skip

    def feature(self, name: str, current: Profile) -> None:
        base, limit = self.expected[name], self.limits.get(name, {})
        kind = base.get("inferred_type", UNKNOWN)
        threshold = float(self.config.get("datatype_check_threshold", 1.0))
        if current.type_share < threshold - 1e-12:
            self.flag(name, "data_type_check",
                      f"Data type match requirement is not met. Expected data type: {kind}, "
                      f"Expected match: {threshold:.2%}. Observed: Only "
                      f"{current.type_share:.2%} of data is {kind}.")  # fmt: skip
        completeness = current.common["num_present"] / self.rows if self.rows else 0.0
        wanted = float(limit.get("completeness", 0.0))
        if completeness < wanted - 1e-12:
            self.flag(name, "completeness_check",
                      f"Data completeness requirement is not met. Expected: {wanted:.2%}, "
                      f"Observed: {completeness:.2%}")  # fmt: skip
        self._domain(name, current, (limit.get("string_constraints") or {}).get("domains"))
        if self.distribution.get("perform_comparison", "Enabled") != "Disabled":
            self._drift(name, base, current)

    def _domain(self, name: str, current: Profile, domain: list[str] | None) -> None:
        if domain is None or not current.frequencies:
            return
        allowed = set(domain)
        inside = sum(c for v, c in current.frequencies.items() if v in allowed)
        share = inside / sum(current.frequencies.values())
        need = float(self.config.get("domain_content_threshold", 1.0))
        if share < need - 1e-12:
            unknown = sorted(v for v in current.frequencies if v not in allowed)[:10]
            self.flag(name, "categorical_values_check",
                      f"Data type match requirement is not met. Expected: {need:.2%} of values "
                      f"in the baseline domain, Observed: {share:.2%}. Values outside it: "
                      f"{', '.join(unknown)}")  # fmt: skip

    def _drift(self, name: str, base: Mapping[str, Any], current: Profile) -> None:
        measured = distance(base, current)
        if measured is None:
            return
        value, sizes = measured
        self.drift[name] = value
        numerical = "numerical_statistics" in base
        key = "comparison_threshold" if numerical else "categorical_comparison_threshold"
        limit = float(self.distribution[key])
        robust = self.distribution.get("comparison_method", "Robust") == "Robust"
        if value > limit and (not robust or value > ks_critical(*sizes)):
            message = f"Baseline drift distance: {value:.6g} exceeds threshold: {limit:g}"
            self.flag(name, "baseline_drift_check", message)


def ks_critical(n: float, m: float) -> float:
    """The two-sample Kolmogorov-Smirnov critical distance at alpha 0.01."""
    if n <= 0 or m <= 0:
        return math.inf
    return KS_99 * math.sqrt((n + m) / (n * m))


def distance(base: Mapping[str, Any], current: Profile) -> tuple[float, tuple[float, float]] | None:
    """The distance between the baseline's and the window's distributions, and their sizes;
    None when either side has none."""
    if "numerical_statistics" in base:
        if current.sketch is None or current.sketch.is_empty():
            return None
        levels = _kll(base)["sketch"]["data"]
        items, weights = level_items(levels)
        if not len(items):
            return None
        now_items, now_weights = level_items(_kll(current.statistics)["sketch"]["data"])
        value = cdf_distance(items, weights, now_items, now_weights)
        return value, (float(weights.sum()), float(now_weights.sum()))
    section = base.get("string_statistics") or {}
    buckets = ((section.get("distribution") or {}).get("categorical") or {}).get("buckets") or []
    if not current.frequencies or not buckets:
        return None
    base_total = float(sum(b["count"] for b in buckets))
    now_total = float(sum(current.frequencies.values()))
    reference = {str(b["value"]): b["count"] / base_total for b in buckets}
    values = set(reference) | set(current.frequencies)
    value = max(
        abs(reference.get(v, 0.0) - current.frequencies.get(v, 0) / now_total) for v in values
    )
    return float(value), (base_total, now_total)


def _kll(feature: Mapping[str, Any]) -> dict[str, Any]:
    return feature["numerical_statistics"]["distribution"]["kll"]  # type: ignore[no-any-return]


def level_items(levels: Iterable[Iterable[float]]) -> tuple[np.ndarray, np.ndarray]:
    """(items, weights) of a KLL sketch's levels."""
    items: list[float] = []
    weights: list[float] = []
    for i, level in enumerate(levels):
        row = [float(x) for x in level]
        items += row
        weights += [2.0**i] * len(row)
    return np.asarray(items, dtype=np.float64), np.asarray(weights, dtype=np.float64)


def cdf_distance(
    items: np.ndarray, weights: np.ndarray, other: np.ndarray, other_weights: np.ndarray
) -> float:
    """max |F(x) - G(x)| of two weighted samples, F(x) = weight of items <= x / total."""
    points = np.unique(np.concatenate([items, other]))
    return float(np.max(np.abs(_cdf(items, weights, points) - _cdf(other, other_weights, points))))


def _cdf(items: np.ndarray, weights: np.ndarray, points: np.ndarray) -> np.ndarray:
    order = np.argsort(items, kind="stable")
    cumulative = np.concatenate([[0.0], np.cumsum(weights[order])]) / weights.sum()
    return cumulative[np.searchsorted(items[order], points, side="right")]  # type: ignore[no-any-return]


# ------------------------------------------------------------------ metrics


def metric_lines(
    env: Mapping[str, str],
    profiles: Mapping[str, Profile],
    drift: Mapping[str, float],
    timestamp: str,
) -> list[dict[str, Any]]:
    dims = dimensions(env)
    lines = []
    for name, current in profiles.items():
        common = current.common
        total = common["num_present"] + common["num_missing"]
        completeness = common["num_present"] / total if total else 0.0
        lines.append(metric_line(f"feature_non_null_{name}", timestamp, dims, NAMESPACE,
                                 value=completeness))  # fmt: skip
        if name in drift:
            lines.append(metric_line(f"feature_baseline_drift_{name}", timestamp, dims,
                                     NAMESPACE, value=drift[name]))  # fmt: skip
        stats = current.statistics.get("numerical_statistics")
        if stats and common["num_present"]:
            values = {"SampleCount": common["num_present"], "Sum": stats["sum"],
                      "Minimum": stats["min"], "Maximum": stats["max"]}  # fmt: skip
            lines.append(metric_line(f"feature_data_{name}", timestamp, dims, NAMESPACE,
                                     statistic_values=values))  # fmt: skip
    return lines
