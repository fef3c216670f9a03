"""Shared helpers for the SageMaker job scripts: the error taxonomy, the file each job type
reports its failure reason in, and the headerless CSV and schema formats the jobs hand to each
other.

At deploy and run time this file is copied next to each job's script, so jobs `import jobkit`.
It must stay Python 3.10 compatible and need only numpy, pandas, pyarrow and xgboost.
"""

from __future__ import annotations

import json
import os
import sys
import traceback
from collections.abc import Callable
from typing import Any

import numpy as np
import pyarrow as pa
import pyarrow.csv as pacsv

FAILURE_REASON_LIMIT = 1024  # SageMaker truncates FailureReason and ExitMessage at 1 KB.
# Where SageMaker reads a failing job's own words from, per job type:
# - training: this file becomes DescribeTrainingJob's FailureReason;
TRAINING_FAILURE_FILE = "/opt/ml/output/failure"
# - processing: this file's first KB becomes DescribeProcessingJob's ExitMessage (on any
#   terminal status; AWS reads no failure file for processing jobs).
PROCESSING_MESSAGE_FILE = "/opt/ml/output/message"
SCHEMA_FILE = "schema.json"
MODEL_FILE = "xgboost-model"
PROBLEM_TYPES = ("regression", "binary", "multiclass")


def import_xgboost() -> Any:
    """Import xgboost without the scikit-learn it pulls in whenever scikit-learn is installed.

    xgboost imports scikit-learn (the SageMaker image has it) only for its scikit-learn
    estimator classes, which no job here uses; that import was 1.5 s of each job's 2.5 s
    start (docs/benchmarks.md). scikit-learn stays importable afterwards.
    """
    if "xgboost" not in sys.modules and "sklearn" not in sys.modules:
        sys.modules["sklearn"] = None  # type: ignore[assignment]
        try:
            import xgboost
        finally:
            del sys.modules["sklearn"]
    import xgboost

    return xgboost


class JobError(Exception):
    """Base of the errors that say whose fault a failure is."""

    kind = "AlgorithmError"


class UserError(JobError):
    """Bad data or config: the message names the file, column, key or value and what is right."""

    kind = "UserError"


class AlgorithmError(JobError):
    """The algorithm failed on valid input (e.g. xgboost rejected a parameter mid-training)."""

    kind = "AlgorithmError"


class PlatformError(JobError):
    """The machine or the service failed (disk, permissions, a missing mount)."""

    kind = "PlatformError"


def failure_reason(exc: BaseException) -> str:
    """Format an exception as SageMaker's FailureReason: the fault class first, then the message."""
    if isinstance(exc, JobError):
        reason = f"{exc.kind}: {exc}"
    else:
        reason = f"AlgorithmError: {type(exc).__name__}: {exc}"
    return reason[:FAILURE_REASON_LIMIT]


def write_failure(path: str, reason: str) -> None:
    """Write the reason where SageMaker reads it for this job type; never raise from here."""
    try:
        folder = os.path.dirname(path)
        if folder:
            os.makedirs(folder, exist_ok=True)
        with open(path, "w", encoding="utf-8") as handle:
            handle.write(reason)
    except OSError as exc:  # the job is failing already; the log keeps the reason
        print(f"could not write failure file {path}: {exc}", file=sys.stderr)


def run_job(body: Callable[[], Any], *, reason_file: str) -> int:
    """Run a job body; on any exception log the traceback, write the reason file, return 1.

    ``reason_file`` is TRAINING_FAILURE_FILE for a training job and PROCESSING_MESSAGE_FILE
    for a processing job (each re-rooted where the job runs).

    Returns the exit code so `main()` stays testable; scripts call `sys.exit(main())`.
    """
    try:
        body()
    except Exception as exc:  # noqa: BLE001 - every failure must reach the reason file
        traceback.print_exc(file=sys.stderr)
        reason = failure_reason(exc)
        print(reason, file=sys.stderr)
        write_failure(reason_file, reason)
        return 1
    return 0


def find_file(folder: str, suffix: str, *, what: str) -> str:
    """Return the first file (sorted by name) in `folder` ending with `suffix`."""
    if os.path.isfile(folder):
        return folder
    if not os.path.isdir(folder):
        raise UserError(f"{what}: folder {folder} does not exist")
    names = sorted(n for n in os.listdir(folder) if n.endswith(suffix) and not n.startswith("."))
    if not names:
        raise UserError(
            f"{what}: no {suffix} file in {folder} (found: {sorted(os.listdir(folder))})"
        )
    return os.path.join(folder, names[0])


def read_target_first_csv(path: str) -> tuple[np.ndarray, np.ndarray]:
    """Read a headerless CSV with the target first (SageMaker XGBoost layout) as (y, X) floats.

    Empty fields become NaN. pyarrow reads this about 10x faster than the csv module.
    """
    try:
        table = pacsv.read_csv(
            path,
            read_options=pacsv.ReadOptions(autogenerate_column_names=True),
            convert_options=pacsv.ConvertOptions(strings_can_be_null=True),
        )
    except pa.ArrowInvalid as exc:
        raise UserError(f"{path} is not a numeric CSV with the target first: {exc}") from exc
    if table.num_columns < 2:
        raise UserError(
            f"{path} has {table.num_columns} column(s); expected the target then features"
        )
    columns = []
    for index, column in enumerate(table.columns):
        try:
            columns.append(column.cast(pa.float64()).to_numpy())
        except (pa.ArrowInvalid, pa.ArrowNotImplementedError) as exc:
            raise UserError(f"{path}: column {index + 1} is not numeric ({exc})") from exc
    matrix = np.column_stack(columns) if columns[0].size else np.empty((0, len(columns)))
    return matrix[:, 0], np.ascontiguousarray(matrix[:, 1:], dtype=np.float32)


def load_schema(path: str) -> dict[str, Any]:
    """Load and check the schema.json written by the preprocessing job."""
    try:
        with open(path, encoding="utf-8") as handle:
            schema = json.load(handle)
    except FileNotFoundError as exc:
        raise UserError(
            f"schema file {path} not found; it is written by the preprocessing job"
        ) from exc
    except json.JSONDecodeError as exc:
        raise UserError(f"schema file {path} is not valid JSON: {exc}") from exc
    missing = [
        key for key in ("target", "problem_type", "features", "categorical") if key not in schema
    ]
    if missing:
        raise UserError(f"schema file {path} lacks key(s) {missing}")
    if schema["problem_type"] not in PROBLEM_TYPES:
        raise UserError(
            f"schema file {path}: problem_type {schema['problem_type']!r} "
            f"is not one of {list(PROBLEM_TYPES)}"
        )
    if schema["problem_type"] != "regression" and not schema.get("labels"):
        raise UserError(f"schema file {path}: a {schema['problem_type']} schema needs 'labels'")
    return schema


def write_json(path: str, payload: Any) -> None:
    """Write JSON atomically enough for a job output (temp file, then rename)."""
    os.makedirs(os.path.dirname(path) or ".", exist_ok=True)
    tmp = f"{path}.tmp"
    with open(tmp, "w", encoding="utf-8") as handle:
        json.dump(payload, handle, indent=2, allow_nan=False)
        handle.write("\n")
    os.replace(tmp, path)
