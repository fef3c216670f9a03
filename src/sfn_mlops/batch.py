"""Batch scoring's inputs: a user's file made into what a transform job reads, checked first.

The model reads headerless CSV rows of its schema's features in order (containers/inference).
A user's file has a header, maybe other columns (the target, an id) and another order; so the
CLI names what does not fit before any job starts, writes the id columns then the features,
and asks the transform job to drop the ids on the way in (``InputFilter``) and to join them
back beside the prediction on the way out (``JoinSource: Input`` with an ``OutputFilter``).
"""

from __future__ import annotations

import io
import json
import tarfile
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

SCHEMA_FILE = "schema.json"  # in model.tar.gz, beside xgboost-model (containers/common/jobkit)


class BatchError(Exception):
    """The batch's data, model or destination does not fit (the user's to fix)."""


@dataclass(frozen=True)
class PreparedData:
    path: Path  # headerless CSV: the id columns, then the model's features
    rows: int
    ignored: list[str]  # columns of the file the model does not read
    data_processing: dict[str, str]


def model_schema(s3: Any, model_data_url: str) -> dict[str, Any]:
    """The schema the training job wrote into the model archive."""
    bucket, _, key = model_data_url.removeprefix("s3://").partition("/")
    archive = s3.get_object(Bucket=bucket, Key=key)["Body"].read()
    with tarfile.open(fileobj=io.BytesIO(archive), mode="r:gz") as tar:
        for member in tar.getmembers():
            if member.name.removeprefix("./") == SCHEMA_FILE and member.isfile():
                handle = tar.extractfile(member)
                assert handle is not None
                return dict(json.load(handle))
    raise BatchError(f"{model_data_url} has no {SCHEMA_FILE}: it was not trained by sfn-mlops")


def data_processing(id_columns: int) -> dict[str, str]:
    """Ids pass through: dropped before the model, joined back beside its prediction."""
    if id_columns == 0:
        return {}
    ids = "0" if id_columns == 1 else f"0:{id_columns - 1}"
    return {
        "InputFilter": f"$[{id_columns}:]",
        "JoinSource": "Input",
        "OutputFilter": f"$[{ids},-1]",
    }


def prepare(
    source: Path, features: Sequence[str], id_columns: Sequence[str], out: Path
) -> PreparedData:
    """``source`` (CSV or Parquet with a header) as the transform job's input at ``out``."""
    import pyarrow as pa
    import pyarrow.csv as pa_csv

    from sfn_mlops.data import DataError, data_files, read_columns

    try:
        files = data_files(source)
        columns = _columns(files[0], read_columns)
    except DataError as err:
        raise BatchError(str(err)) from err
    _check_columns(source, columns, features, id_columns)
    wanted = [*id_columns, *features]
    out.parent.mkdir(parents=True, exist_ok=True)
    rows = 0
    # Unquoted, as SageMaker's DataProcessing splits CSV records on commas; a value holding a
    # comma or a quote is refused by the writer (and named below).
    options = pa_csv.WriteOptions(include_header=False, quoting_style="none")
    writer = None
    try:
        for path in files:
            found = _columns(path, read_columns)
            if found != columns:
                raise BatchError(f"{path} has other columns than {files[0]}: {found}")
            table = _read(path, columns).select(wanted)
            if writer is None:
                writer = pa_csv.CSVWriter(out, table.schema, write_options=options)
            try:
                writer.write_table(table)
            except pa.ArrowInvalid as err:
                raise BatchError(
                    f"{path}: a value holds a comma, a quote or a line break, which a transform "
                    f"job's CSV records cannot carry ({err})"
                ) from err
            rows += table.num_rows
    finally:
        if writer is not None:
            writer.close()
    ignored = [name for name in columns if name not in wanted]
    return PreparedData(out, rows, ignored, data_processing(len(id_columns)))


def _columns(path: Path, read_columns: Any) -> list[str]:
    from sfn_mlops.columns import detect_delimiter

    delimiter = detect_delimiter(path) if path.suffix.lower() == ".csv" else ","
    return list(read_columns(path, delimiter))


def _check_columns(
    source: Path, columns: list[str], features: Sequence[str], id_columns: Sequence[str]
) -> None:
    problems = []
    missing = [name for name in features if name not in columns]
    if missing:
        problems.append(f"the model's features {missing} are not columns of the data")
    missing_ids = [name for name in id_columns if name not in columns]
    if missing_ids:
        problems.append(f"--id-column {missing_ids} is not a column")
    clash = [name for name in id_columns if name in features]
    if clash:
        problems.append(f"--id-column {clash} is one of the model's features")
    if problems:
        raise BatchError(f"{source}: {'; '.join(problems)} (its columns: {columns})")


def _read(path: Path, columns: list[str]) -> Any:
    """Every column as text: the model's input code parses the values, as at the endpoint."""
    import pyarrow.csv as pa_csv
    import pyarrow.parquet as pq

    from sfn_mlops.columns import detect_delimiter

    if path.suffix.lower() != ".csv":
        return pq.read_table(path)
    return pa_csv.read_csv(
        path,
        parse_options=pa_csv.ParseOptions(delimiter=detect_delimiter(path)),
        convert_options=pa_csv.ConvertOptions(column_types={name: "string" for name in columns}),
    )
