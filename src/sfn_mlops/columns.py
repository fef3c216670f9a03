"""The user's data read as they meant it, and every problem in it found at once, up front.

Before anything is deployed or started, the CLI reads local data in full (pyarrow: about a
second for a million rows) and decides what the processing job will be told:

- **the delimiter** of each CSV, detected from its first lines (`,` `;` tab `|`) or the config's
  `csv_delimiter`; every file of a folder must use the same one;
- **each column's kind**: numeric when every value reads as a number, categorical when some
  value is text (or when `categorical_columns` says so); `numeric_columns` forces numeric and
  then names the values that are not numbers;
- **the problems** it can see in the data itself: files of a folder that disagree on their
  columns, a target with missing values, a non-numeric regression target, too few rows for the
  split, a test split smaller than `split.min_test_rows`, a class too rare to reach every split
  (the split is the processing job's own: the same seeded permutation).

The processing job keeps its own checks (it runs in AWS on S3 data this module never sees).
"""

from __future__ import annotations

import csv
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from sfn_mlops.config import PipelineConfig
from sfn_mlops.data import DataError, LocalData, inspect_local

DELIMITERS = ",;\t|"
SNIFF_BYTES = 64 * 1024
SHOWN_VALUES = 5
SPLITS = ("train", "validation", "test")


class DataProblems(DataError):
    """Everything wrong with the data, one problem per line."""

    def __init__(self, problems: Sequence[str]) -> None:
        super().__init__(
            "the data does not fit the config:\n" + "\n".join(f"  - {p}" for p in problems)
        )
        self.problems = list(problems)


@dataclass(frozen=True)
class DataProfile:
    delimiter: str | None  # None: Parquet
    kinds: dict[str, str]  # feature -> "numeric" | "categorical", in file order
    rows: int

    @property
    def categorical(self) -> list[str]:
        return [name for name, kind in self.kinds.items() if kind == "categorical"]

    def describe(self, target: str) -> str:
        """The run header's line: each feature with its kind, and the delimiter."""
        shown = ", ".join(
            f"{name} ({kind[:3] if kind == 'numeric' else 'cat'})"
            for name, kind in self.kinds.items()
        )
        where = "" if self.delimiter is None else f"; delimiter {self.delimiter!r}"
        return f"{self.rows:,} rows; target {target}; features {shown}{where}"


def check_local_data(
    config: PipelineConfig, workspace: Path
) -> tuple[LocalData, PipelineConfig, str]:
    """The files, the config with the kinds and delimiter the data showed (what the jobs are
    told), and the run header's line; DataError (DataProblems: all of them) when wrong."""
    local = inspect_local(config, workspace)
    shape = profile(config, local.files)
    inferred = {"categorical_columns": shape.categorical, "csv_delimiter": shape.delimiter}
    line = f"Data: {local.description}: {shape.describe(config.target)}"
    return local, config.model_copy(update=inferred), line


def detect_delimiter(path: Path) -> str:
    """The CSV's delimiter, from its header and first rows (the csv module's sniffer)."""
    with open(path, newline="", encoding="utf-8", errors="replace") as stream:
        sample = stream.read(SNIFF_BYTES)
    lines = sample.splitlines()
    if len(lines) > 1 and len(sample) == SNIFF_BYTES:
        sample = "\n".join(lines[:-1])  # the last line may be cut
    try:
        return csv.Sniffer().sniff(sample, delimiters=DELIMITERS).delimiter
    except csv.Error:
        return ","  # one column, or nothing to tell from: the default


def profile(config: PipelineConfig, files: list[Path]) -> DataProfile:
    """Read the files, infer the kinds and check the data; raise DataProblems with all."""
    problems: list[str] = []
    delimiter = _delimiter(config, files, problems)
    tables = [_read(path, delimiter) for path in files]
    _check_same_columns(files, tables, problems)
    if problems:
        raise DataProblems(problems)
    data = _stack(tables)
    kinds = _kinds(config, data, problems)
    spans = [(path, table.num_rows) for path, table in zip(files, tables, strict=True)]
    _check_target(config, data, spans, problems)
    _check_split(config, data, problems)
    if problems:
        raise DataProblems(problems)
    return DataProfile(delimiter=delimiter, kinds=kinds, rows=data.num_rows)


def _delimiter(config: PipelineConfig, files: list[Path], problems: list[str]) -> str | None:
    csvs = [path for path in files if path.suffix.lower() == ".csv"]
    if not csvs:
        return None
    if config.csv_delimiter is not None:
        return config.csv_delimiter
    found = {path: detect_delimiter(path) for path in csvs}
    if len(set(found.values())) > 1:
        listed = ", ".join(f"{path.name} {d!r}" for path, d in found.items())
        problems.append(f"the files use different delimiters ({listed}); set csv_delimiter")
    return found[csvs[0]]


def _read(path: Path, delimiter: str | None) -> Any:
    """One file as a pyarrow Table, typed as pyarrow infers (text where any value is text).

    pyarrow only, no pandas: importing pandas would cost every run 0.4 s."""
    import pyarrow as pa
    import pyarrow.csv as pacsv
    import pyarrow.parquet as pq

    if delimiter is None or path.suffix.lower() != ".csv":
        return pq.read_table(path)
    parse = pacsv.ParseOptions(delimiter=delimiter)
    convert = pacsv.ConvertOptions(strings_can_be_null=True)
    read = pacsv.ReadOptions(block_size=16 << 20)
    try:
        table = pacsv.read_csv(
            path, read_options=read, parse_options=parse, convert_options=convert
        )
    except pa.ArrowInvalid:
        # A value far down a column broke the type guess: read text, decide per column below.
        names = pacsv.open_csv(path, read_options=read, parse_options=parse).schema.names
        as_text = pacsv.ConvertOptions(
            column_types=dict.fromkeys(names, pa.string()), strings_can_be_null=True
        )
        table = pacsv.read_csv(
            path, read_options=read, parse_options=parse, convert_options=as_text
        )
    return table


def _check_same_columns(files: list[Path], tables: list[Any], problems: list[str]) -> None:
    first = tables[0].column_names
    for path, table in zip(files[1:], tables[1:], strict=True):
        columns = table.column_names
        if columns != first:
            missing = [c for c in first if c not in columns]
            extra = [c for c in columns if c not in first]
            what = "; ".join(
                text
                for text in (
                    f"lacks {', '.join(missing)}" if missing else "",
                    f"adds {', '.join(extra)}" if extra else "",
                    "orders them differently" if not missing and not extra else "",
                )
                if text
            )
            problems.append(f"{path} has other columns than {files[0].name}: it {what}")


def _stack(tables: list[Any]) -> Any:
    """The files as one table: a column numeric in every file stays a number, else text."""
    import pyarrow as pa

    if len(tables) == 1:
        return tables[0]

    def common(name: str) -> Any:
        types = [table.schema.field(name).type for table in tables]
        if all(_is_number_type(kind) for kind in types):
            return pa.float64()
        return types[0] if all(kind == types[0] for kind in types) else pa.string()

    schema = pa.schema([(name, common(name)) for name in tables[0].column_names])
    return pa.concat_tables([table.cast(schema) for table in tables])


def _is_number_type(kind: Any) -> bool:
    import pyarrow.types as pat

    return bool(pat.is_integer(kind) or pat.is_floating(kind) or pat.is_boolean(kind))


def _kinds(config: PipelineConfig, data: Any, problems: list[str]) -> dict[str, str]:
    kinds: dict[str, str] = {}
    for name in data.column_names:
        if name == config.target:
            continue  # its checks are the target's own
        column = data.column(name)
        if name in config.categorical_columns:
            kinds[name] = "categorical"
        elif name in config.numeric_columns:
            kinds[name] = "numeric"
            bad = _non_numbers(column)
            if bad:
                problems.append(
                    f"numeric_columns: column {name!r} holds values that are not numbers: "
                    f"{', '.join(map(repr, bad))}; fix them, or remove it from numeric_columns"
                )
        else:
            kinds[name] = "categorical" if _non_numbers(column) else "numeric"
    return kinds


def _non_numbers(column: Any) -> list[str]:
    """Up to SHOWN_VALUES distinct values that do not read as numbers (missing ones aside)."""
    import pyarrow.compute as pc

    if _is_number_type(column.type):
        return []
    bad = []
    for value in pc.unique(column.drop_null()).to_pylist():
        try:
            float(value)
        except (TypeError, ValueError):
            bad.append(str(value))
            if len(bad) == SHOWN_VALUES:
                break
    return bad


def _check_target(
    config: PipelineConfig, data: Any, spans: list[tuple[Path, int]], problems: list[str]
) -> None:
    import pyarrow.compute as pc

    target = data.column(config.target)
    if target.null_count:
        indexes = pc.indices_nonzero(pc.is_null(target)).to_pylist()
        places = ", ".join(_place(int(i), spans) for i in indexes[:SHOWN_VALUES])
        more = ", ..." if len(indexes) > SHOWN_VALUES else ""
        problems.append(
            f"target: column {config.target!r} has {len(indexes)} missing value(s) "
            f"({places}{more}); drop or fill those rows"
        )
    if config.problem_type == "regression":
        bad = _non_numbers(target)
        if bad:
            problems.append(
                f"target: column {config.target!r} must be numeric for regression; it holds "
                f"{', '.join(map(repr, bad))} (use problem_type binary or multiclass)"
            )


def _place(index: int, spans: list[tuple[Path, int]]) -> str:
    """Row `index` of the stacked files as `<file> line N` (the header is line 1)."""
    for path, rows in spans:
        if index < rows:
            return f"{path.name} line {index + 2}"
        index -= rows
    raise IndexError(index)


def split_sizes(rows: int, fractions: Sequence[float]) -> dict[str, int]:
    """The processing job's rule (containers/processing/preprocess.py:split_sizes)."""
    import math

    train = math.floor(round(rows * fractions[0], 9))
    validation = math.floor(round(rows * fractions[1], 9))
    return {"train": train, "validation": validation, "test": rows - train - validation}


def _check_split(config: PipelineConfig, data: Any, problems: list[str]) -> None:
    split = config.split
    sizes = split_sizes(data.num_rows, (split.train, split.validation, split.test))
    shown = f"train={sizes['train']}, validation={sizes['validation']}, test={sizes['test']}"
    if min(sizes.values()) < 1:
        problems.append(
            f"split: {data.num_rows} rows are too few for {split.train:g}/{split.validation:g}/"
            f"{split.test:g} ({shown}); each split needs at least 1 row"
        )
        return
    if sizes["test"] < split.min_test_rows:
        problems.append(
            f"split.min_test_rows: the test split would hold {sizes['test']} rows ({shown}), "
            f"too few to trust its metrics; at least {split.min_test_rows} are required. Add "
            f"data, raise split.test, or lower split.min_test_rows"
        )
    if config.problem_type != "regression" and not data.column(config.target).null_count:
        _check_classes(config, data, sizes, problems)


def _check_classes(
    config: PipelineConfig, data: Any, sizes: dict[str, int], problems: list[str]
) -> None:
    """Every class in every split, by the job's own seeded permutation of the rows."""
    import numpy as np
    import pyarrow as pa
    import pyarrow.compute as pc

    encoded = pc.dictionary_encode(data.column(config.target).cast(pa.string())).combine_chunks()
    codes = encoded.indices.to_numpy(zero_copy_only=False)
    names = encoded.dictionary.to_pylist()
    counts = np.bincount(codes, minlength=len(names))
    order = np.random.default_rng(config.split.seed).permutation(len(codes))
    start = 0
    missing: dict[str, list[str]] = {}
    for split in SPLITS:
        present = np.bincount(codes[order[start : start + sizes[split]]], minlength=len(names))
        start += sizes[split]
        for code in sorted(np.flatnonzero(present == 0), key=lambda c: names[c]):
            missing.setdefault(names[code], []).append(split)
    for label, splits in missing.items():
        problems.append(
            f"target: class {label!r} has {counts[names.index(label)]} row(s) and would be "
            "absent from the "
            f"{' and '.join(splits)} split(s); add rows of it, or change split.seed / the split"
        )
