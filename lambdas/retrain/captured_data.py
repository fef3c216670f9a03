"""Newer training data for a retraining: the endpoint's captured requests joined with the
ground truth users uploaded, beside the configured data (``monitoring.retrain_with_captured_data``).

The retraining's data is a new prefix, ``s3://<bucket>/retraining-data/<execution>/``: the
configured data's files, copied as they are, and ``captured-labelled.csv``, one row per captured
request row that has a label, in the configured CSV's columns (its header, its delimiter). The
processing job reads the prefix as it reads any data folder. The join is Model Monitor's: a
ground truth record names a capture's ``inferenceId`` or ``eventId``; a request of several rows
takes as many labels. Every capture and ground truth file of the endpoint is read, whichever
model answered: a label is a label. What cannot be used is counted, never fatal: malformed
lines, captures without a label, rows of the wrong width, labels that are not numbers for a
regression. The copy is keyed by the execution name, so a repeat writes the same objects.
"""

from __future__ import annotations

import csv
import io
import json
import math
import tempfile
from collections import Counter
from collections.abc import Iterator
from typing import Any

from capture_join import decoded, labels_of, list_keys, split_uri
from capture_join import ground_truth as _ground_truth
from capture_join import jsonl as _jsonl

CAPTURED_FILE = "captured-labelled.csv"
#: The processing job reads ``.csv`` files as CSV (containers/processing CSV_SUFFIXES).
CSV_SUFFIX = ".csv"
#: The header of the configured CSV is in its first bytes.
HEADER_BYTES = 1 << 20


class CapturedDataError(Exception):
    """The configured data cannot take the captured rows (names the file and why)."""


def build(
    s3: Any,
    *,
    bucket: str,
    endpoint: str,
    base_data_uri: str,
    config: dict[str, Any],
    destination: str,
) -> dict[str, Any]:
    """Write the retraining's data at ``destination`` (an s3:// prefix ending in '/')."""
    base_bucket, base_prefix = split_uri(base_data_uri)
    base_keys = list_keys(s3, base_bucket, base_prefix)
    if not base_keys:
        raise CapturedDataError(f"{base_data_uri} holds no data files to retrain on")
    delimiter = config.get("processing_env", {}).get("SFN_MLOPS_CSV_DELIMITER", ",")
    columns = _header(s3, base_bucket, base_keys[0], delimiter)
    target = str(config["target"])
    if target not in columns:
        raise CapturedDataError(
            f"s3://{base_bucket}/{base_keys[0]} has no column {target!r} (the target); "
            f"its header is {columns}"
        )
    labels, counts = _ground_truth(s3, bucket, f"ground-truth/{endpoint}/")
    rows = _labelled_rows(
        s3, bucket, f"data-capture/{endpoint}/", labels, columns, target, config, counts
    )
    out_bucket, out_prefix = split_uri(destination)
    written = _write_csv(s3, out_bucket, out_prefix + CAPTURED_FILE, columns, rows, delimiter)
    folder = base_prefix if base_prefix.endswith("/") else base_prefix.rpartition("/")[0] + "/"
    for key in base_keys:
        s3.copy_object(
            Bucket=out_bucket,
            Key=out_prefix + key.removeprefix(folder).replace("/", "-"),
            CopySource={"Bucket": base_bucket, "Key": key},
        )
    return {
        "data_uri": destination,
        "base_data_uri": base_data_uri,
        "captured_rows": written,
        "skipped": dict(counts),
    }


def _header(s3: Any, bucket: str, key: str, delimiter: str) -> list[str]:
    if not key.lower().endswith(CSV_SUFFIX):
        raise CapturedDataError(
            f"s3://{bucket}/{key} is not a plain CSV file; captured rows are added as CSV, so "
            "retrain_with_captured_data needs CSV data (or turn it off)"
        )
    head = s3.get_object(Bucket=bucket, Key=key, Range=f"bytes=0-{HEADER_BYTES - 1}")
    first = head["Body"].read().decode("utf-8-sig", errors="replace").splitlines()[:1]
    if not first:
        raise CapturedDataError(f"s3://{bucket}/{key} is empty; it needs a header line")
    return next(csv.reader(first, delimiter=delimiter))


def _labelled_rows(
    s3: Any,
    bucket: str,
    prefix: str,
    labels: dict[str, list[str]],
    columns: list[str],
    target: str,
    config: dict[str, Any],
    counts: Counter[str],
) -> Iterator[list[str]]:
    features = [column for column in columns if column != target]
    regression = config.get("problem_type") == "regression"
    for record in _jsonl(s3, bucket, prefix, "malformed_capture_lines", counts):
        try:
            metadata = record.get("eventMetadata") or {}
            rows = _request_rows(record["captureData"]["endpointInput"], features)
        except (KeyError, TypeError, AttributeError, ValueError):
            counts["malformed_capture_lines"] += 1
            continue
        found = labels_of(labels, metadata)
        if found is None:
            counts["captures_without_ground_truth"] += 1
        elif len(found) != len(rows):
            counts["label_count_mismatches"] += 1
        else:
            for row, label in zip(rows, found, strict=True):
                if len(row) != len(features):
                    counts["rows_of_the_wrong_width"] += 1
                elif regression and not _is_number(label):
                    counts["labels_of_the_wrong_type"] += 1
                else:
                    values = dict(zip(features, row, strict=True))
                    values[target] = label
                    yield [values[column] for column in columns]


def _request_rows(capture: dict[str, Any], features: list[str]) -> list[list[str]]:
    """A captured request's rows as feature values (CSV lines, or JSON lists or objects)."""
    data = decoded(capture)
    if "json" not in str(capture.get("observedContentType", "")).lower():
        return [row for row in csv.reader(io.StringIO(data)) if row]
    body = json.loads(data)
    body = body.get("instances", body) if isinstance(body, dict) else body
    items = body if isinstance(body, list) and body and isinstance(body[0], list | dict) else [body]
    return [
        [_text(item.get(name, "")) for name in features]
        if isinstance(item, dict)
        else [_text(value) for value in item]
        for item in items
    ]


def _text(value: Any) -> str:
    return "" if value is None else str(value)


def _is_number(text: str) -> bool:
    try:
        return math.isfinite(float(text))
    except ValueError:
        return False


def _write_csv(
    s3: Any, bucket: str, key: str, columns: list[str], rows: Iterator[list[str]], delimiter: str
) -> int:
    """Spooled to a temporary file (Lambda's /tmp), uploaded once; nothing when no row."""
    written = 0
    with tempfile.TemporaryFile("w+b") as spool:
        text = io.TextIOWrapper(spool, encoding="utf-8", newline="")
        writer = csv.writer(text, delimiter=delimiter)
        writer.writerow(columns)
        for row in rows:
            writer.writerow(row)
            written += 1
        text.flush()
        text.detach()  # the spool stays open for the upload
        if written:
            spool.seek(0)
            s3.upload_fileobj(spool, bucket, key)
    return written
