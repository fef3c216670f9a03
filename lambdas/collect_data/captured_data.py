"""The endpoint's labelled production traffic: captured requests joined with the ground truth
users uploaded, as rows of the configured data's columns.

The join is Model Monitor's: a ground truth record names a capture's ``inferenceId`` or
``eventId``; a request of several rows takes as many labels. Every capture and ground truth file
of the endpoint is read, whichever model answered (every deployment's capture destination): a
label is a label. What cannot be used is
counted, never fatal: malformed lines, captures without a label, rows of the wrong width, labels
that are not numbers for a regression.
"""

from __future__ import annotations

import csv
import functools
import io
import json
import math
import tempfile
from collections import Counter
from collections.abc import Iterable, Iterator
from typing import Any

from capture_join import CAPTURE_ROOT, decoded, labels_of, of_endpoint
from capture_join import ground_truth as _ground_truth
from capture_join import jsonl as _jsonl

#: The processing job reads ``.csv`` files as CSV (containers/processing CSV_SUFFIXES).
CSV_SUFFIX = ".csv"
#: The header of the configured CSV is in its first bytes.
HEADER_BYTES = 1 << 20


class CapturedDataError(Exception):
    """The configured data cannot take the captured rows (names the file and why)."""






def labelled_rows(
    s3: Any, *, bucket: str, endpoint: str, columns: list[str], target: str,
    config: dict[str, Any],
) -> tuple[list[tuple[str, list[str]]], dict[str, int]]:
    """(inference time, row in ``columns``) of every labelled captured row, oldest first, and
    what could not be used, counted."""
    labels, counts = _ground_truth(s3, bucket, f"ground-truth/{endpoint}/")
    rows = sorted(
        _labelled_rows(s3, bucket, endpoint, labels, columns, target, config, counts),
        key=lambda item: item[0],
    )
    return rows, dict(counts)


def header(s3: Any, bucket: str, key: str, delimiter: str) -> list[str]:
    """The column names of a CSV data file (its first line)."""
    if not key.lower().endswith(CSV_SUFFIX):
        raise CapturedDataError(
            f"s3://{bucket}/{key} is not a plain CSV file; captured rows are added as CSV, so "
            "retraining.captured_data needs CSV data (set it to false, or auto to skip them)"
        )
    head = s3.get_object(Bucket=bucket, Key=key, Range=f"bytes=0-{HEADER_BYTES - 1}")
    first = head["Body"].read().decode("utf-8-sig", errors="replace").splitlines()[:1]
    if not first:
        raise CapturedDataError(f"s3://{bucket}/{key} is empty; it needs a header line")
    return next(csv.reader(first, delimiter=delimiter))








def _labelled_rows(
    s3: Any,
    bucket: str,
    endpoint: str,
    labels: dict[str, list[str]],
    columns: list[str],
    target: str,
    config: dict[str, Any],
    counts: Counter[str],
) -> Iterator[tuple[str, list[str]]]:
    features = [column for column in columns if column != target]
    regression = config.get("problem_type") == "regression"
    keep = functools.partial(of_endpoint, root=CAPTURE_ROOT, endpoint=endpoint)
    for record in _jsonl(s3, bucket, CAPTURE_ROOT, "malformed_capture_lines", counts, keep):
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
                    yield str(metadata.get("inferenceTime", "")), [values[c] for c in columns]


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


def write_csv(
    s3: Any, bucket: str, key: str, columns: list[str], rows: Iterable[list[str]], delimiter: str
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
