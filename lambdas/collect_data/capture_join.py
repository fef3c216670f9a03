"""Captured requests joined with their ground truth, as Model Monitor joins them: read-only.

Shared by two functions (one module, one copy): the data collection Lambda (captured_data.py
adds the labelled requests to a run's data) and the A/B test Lambda (lambdas/ab_test, where this
file is a symbolic link: `sam build` copies the file it points at into that function's package)
scores each variant's predictions against the labels.

A ground truth record (SageMaker's JSONL: ``groundTruthData.data``, ``eventMetadata.eventId``)
names a capture's ``eventMetadata.inferenceId``, else its ``eventId`` (SageMaker Developer
Guide, "Ingest Ground Truth Labels and Merge Them With Predictions",
https://docs.aws.amazon.com/sagemaker/latest/dg/model-monitor-model-quality-merge.html); a
request of several rows takes as many labels (one per line, or a JSON list). Captures are
written per variant, under ``<prefix>/<endpoint>/<variant>/yyyy/mm/dd/hh/`` (SageMaker
Developer Guide, "Capture data from real-time endpoint",
https://docs.aws.amazon.com/sagemaker/latest/dg/model-monitor-data-capture-endpoint.html).
"""

from __future__ import annotations

import base64
import binascii
import csv
import io
import json
from collections import Counter
from collections.abc import Callable, Iterator
from typing import Any

#: Where the pipeline's endpoints capture: DeployModel gives each endpoint config its own
#: destination under it (``data-capture/<config>/``).
CAPTURE_ROOT = "data-capture/"


def split_uri(uri: str) -> tuple[str, str]:
    bucket, _, key = uri.removeprefix("s3://").partition("/")
    return bucket, key


def list_keys(s3: Any, bucket: str, prefix: str) -> list[str]:
    """Data files under a prefix, as a processing input sees them ('.' and '_' names skipped)."""
    keys = []
    for page in s3.get_paginator("list_objects_v2").paginate(Bucket=bucket, Prefix=prefix):
        for item in page.get("Contents", []):
            name = item["Key"].rsplit("/", 1)[-1]
            if name and not name.startswith((".", "_")):
                keys.append(item["Key"])
    return sorted(keys)


def of_endpoint(key: str, root: str, endpoint: str) -> bool:
    """Whether a capture file under ``root`` is the endpoint's: SageMaker writes
    ``<destination>/<endpoint>/<variant>/yyyy/mm/dd/hh/<file>``, and the pipeline's destination
    is ``<root><endpoint config>`` (one per deployment) or, before, ``<root>`` itself."""
    parts = key[len(root) :].split("/")
    return (len(parts) == 7 and parts[0] == endpoint) or (len(parts) == 8 and parts[1] == endpoint)


def jsonl(
    s3: Any, bucket: str, prefix: str, kind: str, counts: Counter[str],
    keep: Callable[[str], bool] = lambda key: True,
) -> Iterator[Any]:  # fmt: skip
    """The records of every ``.jsonl`` file under the prefix that ``keep`` keeps; bad lines
    counted as ``kind``."""
    for key in list_keys(s3, bucket, prefix):
        if not key.endswith(".jsonl") or not keep(key):
            continue
        for line in s3.get_object(Bucket=bucket, Key=key)["Body"].iter_lines():
            if not line.strip():
                continue
            try:
                yield json.loads(line)
            except ValueError:
                counts[kind] += 1


def ground_truth(s3: Any, bucket: str, prefix: str) -> tuple[dict[str, list[str]], Counter[str]]:
    """eventId -> labels (one per line of the data, or a JSON list)."""
    counts: Counter[str] = Counter()
    found: dict[str, list[str]] = {}
    for record in jsonl(s3, bucket, prefix, "malformed_ground_truth_lines", counts):
        try:
            event_id = str(record["eventMetadata"]["eventId"])
            data = str(record["groundTruthData"]["data"])
        except (KeyError, TypeError):
            counts["malformed_ground_truth_lines"] += 1
            continue
        found[event_id] = labels(data)
    return found, counts


def labels(data: str) -> list[str]:
    text = data.strip()
    if text.startswith("["):
        try:
            values = json.loads(text)
        except ValueError:
            return [text]
        if isinstance(values, list):
            return [str(value) for value in values]
    return [line.strip() for line in text.splitlines() if line.strip()]


def labels_of(found: dict[str, list[str]], metadata: dict[str, Any]) -> list[str] | None:
    """A capture's labels: matched on its inferenceId, else on its eventId."""
    return found.get(str(metadata.get("inferenceId"))) or found.get(str(metadata.get("eventId")))


def decoded(payload: dict[str, Any]) -> str:
    """A captured input's or output's text (``encoding`` CSV, JSON or BASE64)."""
    data = str(payload["data"])
    if payload.get("encoding") == "BASE64":
        try:
            return base64.b64decode(data, validate=True).decode("utf-8")
        except (binascii.Error, UnicodeDecodeError) as exc:
            raise ValueError("undecodable capture") from exc
    return data


def output_rows(payload: dict[str, Any]) -> list[list[str]]:
    """A captured response's records, each a list of values: a CSV line per record (one value,
    or a class-probability vector), or JSON ``{"predictions": [...]}`` / a JSON list."""
    text = decoded(payload)
    if "json" not in str(payload.get("observedContentType", "")).lower():
        return [row for row in csv.reader(io.StringIO(text)) if row]
    body = json.loads(text)
    body = body.get("predictions", body) if isinstance(body, dict) else body
    items = body if isinstance(body, list) else [body]
    return [[str(v) for v in item] if isinstance(item, list) else [str(item)] for item in items]
