"""Find the user's data, check its columns early, and stage it where the jobs read it.

The processing job validates the data in full; this check only reads the header so that a
missing target or a wrong path is reported in a second, before any job starts.
"""

from __future__ import annotations

import csv
import difflib
import importlib.resources
import os
import zipfile
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from sfn_mlops.config import EXAMPLE_DATASET, PipelineConfig

DATA_SUFFIXES = (".csv", ".parquet", ".pq")
DATASETS_PREFIX = "datasets"


class DataError(ValueError):
    """The data the config points at is missing or does not fit the config."""


@dataclass(frozen=True)
class LocalData:
    files: list[Path]
    columns: list[str]
    description: str


def example_dataset(cache_dir: Path) -> Path:
    """The abalone data set scikit-lego ships (4,177 rows), written once as CSV.

    The CSV is copied out of the zip that ``sklego.datasets.load_abalone`` reads: the same
    bytes, without importing scikit-learn (2 s of every cold start).
    """
    path = cache_dir / "abalone.csv"
    if not path.is_file():
        archive = importlib.resources.files("sklego") / "data" / "abalone.zip"
        with archive.open("rb") as stream, zipfile.ZipFile(stream) as bundle:
            (member,) = bundle.namelist()
            content = bundle.read(member)
        cache_dir.mkdir(parents=True, exist_ok=True)
        # One temporary name per process: first runs started together each write their own
        # copy and the last rename wins (a shared name let one rename away another's file).
        tmp = path.with_suffix(f".{os.getpid()}.tmp")
        tmp.write_bytes(content)
        tmp.replace(path)
    return path


def data_files(path: Path) -> list[Path]:
    if not path.exists():
        raise DataError(
            f"data path {path} does not exist; set data to a CSV or Parquet file or folder"
        )
    if path.is_file():
        files = [path]
    else:
        files = sorted(p for p in path.iterdir() if p.is_file() and not p.name.startswith("."))
        if not files:
            raise DataError(f"data folder {path} holds no files")
    wrong = [p.name for p in files if p.suffix.lower() not in DATA_SUFFIXES]
    if wrong:
        raise DataError(
            f"data file(s) {', '.join(wrong)} in {path}: expected {', '.join(DATA_SUFFIXES)} files"
        )
    return files


def read_columns(path: Path, delimiter: str = ",") -> list[str]:
    if path.suffix.lower() == ".csv":
        with open(path, newline="", encoding="utf-8") as stream:
            rows = csv.reader(stream, delimiter=delimiter)
            header = next(rows, None)
            first_row = next(rows, None)
        if not header:
            raise DataError(f"{path} is empty: expected a header row naming the columns, then data")
        if first_row is None:
            raise DataError(f"{path} has a header but no data rows")
        return header
    import pyarrow.parquet as pq

    return list(pq.read_schema(path).names)


def inspect_local(config: PipelineConfig, workspace: Path) -> LocalData:
    """Resolve ``config.data`` to local files and check the configured columns exist."""
    if config.data == EXAMPLE_DATASET:
        files = [example_dataset(workspace / "datasets")]
        description = "abalone (bundled with scikit-lego)"
    else:
        files = data_files(Path(config.data).expanduser())
        description = str(Path(config.data))
    from sfn_mlops.columns import detect_delimiter

    delimiter = config.csv_delimiter or detect_delimiter(files[0])
    columns = read_columns(files[0], delimiter)
    check_columns(config, columns, str(files[0]))
    check_clarify_values(config, files)
    return LocalData(files=files, columns=columns, description=description)


def check_columns(config: PipelineConfig, columns: list[str], source: str) -> None:
    clarify = config.clarify
    clarify_columns: list[tuple[str, list[str]]] = []
    if clarify.enabled:
        clarify_columns = [("clarify.facets", [facet.name for facet in clarify.facets])]
        if clarify.group_variable is not None:
            clarify_columns.append(("clarify.group_variable", [clarify.group_variable]))
    for role, wanted in [
        ("target", [config.target]),
        ("categorical_columns", config.categorical_columns),
        *clarify_columns,
    ]:
        for column in wanted:
            if column not in columns:
                close = difflib.get_close_matches(column, columns, n=1)
                hint = f" (did you mean {close[0]!r}?)" if close else ""
                raise DataError(
                    f"{role}: column {column!r} is not in {source}{hint}. "
                    f"Columns there: {', '.join(columns)}"
                )


def _column_values(files: list[Path], column: str, config_delimiter: str | None) -> set[str]:
    """The distinct values of one column, as text (what a CSV holds)."""
    import pandas as pd

    from sfn_mlops.columns import detect_delimiter

    values: set[str] = set()
    for path in files:
        if path.suffix.lower() == ".csv":
            delimiter = config_delimiter or detect_delimiter(path)
            series = pd.read_csv(path, usecols=[column], dtype=str, sep=delimiter)[column]
        else:
            series = pd.read_parquet(path, columns=[column])[column].astype(str)
        values.update(series.dropna().unique().tolist())
    return values


def _as_text(value: object) -> str:
    return str(int(value)) if isinstance(value, float) and value.is_integer() else str(value)


def check_clarify_values(config: PipelineConfig, files: list[Path]) -> None:
    """Categorical facet values and label values that the data does not hold (item: bad input
    is the user's, named before any job starts)."""
    clarify = config.clarify
    if not clarify.enabled:
        return
    wanted = [
        (f"clarify.facets {facet.name!r} value", facet.name, facet.values)
        for facet in clarify.facets
        if facet.values is not None
    ]
    if clarify.label_values is not None:
        wanted.append((f"clarify.label_values: target {config.target!r} value", config.target,
                       clarify.label_values))  # fmt: skip
    for role, column, values in wanted:
        present = _column_values(files, column, config.csv_delimiter)
        numeric = {_as_text(float(v)) for v in present if _is_number(v)}
        for value in values:
            text = _as_text(value)
            if text not in present and text not in numeric:
                shown = sorted(present)[:20]
                raise DataError(
                    f"{role} {value!r} is not in the data; it holds: {', '.join(shown)}"
                )


def _is_number(text: str) -> bool:
    try:
        float(text)
    except ValueError:
        return False
    return True


def stage_data(s3: Any, data: LocalData, bucket: str, run_name: str) -> str:
    """Upload the data files under ``datasets/<run name>/``; return the URI the jobs read.

    The same layout in both modes: ``s3`` is a plain boto3 client, local or real.
    """
    prefix = f"{DATASETS_PREFIX}/{run_name}"
    for path in data.files:
        s3.upload_file(str(path), bucket, f"{prefix}/{path.name}")
    if len(data.files) > 1:
        return f"s3://{bucket}/{prefix}/"
    return f"s3://{bucket}/{prefix}/{data.files[0].name}"
