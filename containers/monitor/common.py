"""Helpers the local Model Monitor analyzer's analyses share (``data_quality``, ``model_quality``).

The container contract (BYOC "Container Contract Inputs/Outputs", "CloudWatch Metrics for Bring
Your Own Containers"): settings arrive as environment variables; the exit message goes to
``/opt/ml/output/message``; CloudWatch metrics are JSON lines under
``/opt/ml/output/metrics/cloudwatch/``, one PutMetricData datum a line (``MetricName``,
``Timestamp``, ``Dimensions``, and ``Value`` or ``StatisticValues``). AWS's container names no
namespace in the file; ours adds ``Namespace`` to every line so the local service publishes it
where the built-in analyzer's metrics go. The local service passes where this machine has the
two fixed paths as ``SFN_MLOPS_MESSAGE_FILE`` and ``SFN_MLOPS_METRICS_DIR`` (the request's own
``/opt/ml/...`` values are re-rooted by the runner; these two are not in the request).

Captures are SageMaker data capture JSON lines (``captureData.endpointInput|endpointOutput``
with ``data``, ``encoding``, ``observedContentType``; ``eventMetadata.inferenceTime``).
:func:`read_captures` yields the parsed records of the window and counts what it skips: a line
that is not JSON, not an object, has no ``captureData`` object or an unreadable
``inferenceTime`` is malformed; a record whose ``inferenceTime`` is outside
``[start_time, end_time)`` is outside the window.
"""

from __future__ import annotations

import base64
import binascii
import json
import os
from collections.abc import Iterable, Iterator, Mapping
from dataclasses import dataclass
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

MESSAGE_FILE = "/opt/ml/output/message"
METRICS_DIR = "/opt/ml/output/metrics/cloudwatch"
MESSAGE_FILE_ENV, METRICS_DIR_ENV = "SFN_MLOPS_MESSAGE_FILE", "SFN_MLOPS_METRICS_DIR"
NO_DATA = "Job inputs had no data"


def message_file(env: Mapping[str, str]) -> str:
    return env.get(MESSAGE_FILE_ENV) or MESSAGE_FILE


def metrics_dir(env: Mapping[str, str]) -> str:
    return env.get(METRICS_DIR_ENV) or METRICS_DIR


# ---------------------------------------------------------------- time and the window


def parse_time(text: str) -> datetime:
    """An ISO 8601 moment (``Z`` or an offset; naive means UTC); ValueError if unreadable."""
    moment = datetime.fromisoformat(text.strip().replace("Z", "+00:00"))
    return moment if moment.tzinfo else moment.replace(tzinfo=UTC)


def iso(moment: datetime) -> str:
    return moment.astimezone(UTC).strftime("%Y-%m-%dT%H:%M:%SZ")


@dataclass(frozen=True)
class Window:
    """``[start, end)``; an open side is unbounded."""

    start: datetime | None = None
    end: datetime | None = None

    @classmethod
    def from_env(cls, env: Mapping[str, str]) -> Window:
        """From ``start_time``/``end_time``; ValueError naming the variable when unreadable."""
        bounds: list[datetime | None] = []
        for name in ("start_time", "end_time"):
            text = env.get(name)
            try:
                bounds.append(parse_time(text) if text else None)
            except ValueError as err:
                raise ValueError(f"{name} {text!r} is not an ISO 8601 time: {err}") from err
        return cls(bounds[0], bounds[1])

    @property
    def bounded(self) -> bool:
        return self.start is not None or self.end is not None

    def contains(self, moment: datetime) -> bool:
        return (self.start is None or moment >= self.start) and (
            self.end is None or moment < self.end
        )


# ---------------------------------------------------------------- captures


@dataclass
class CaptureCounts:
    files: int = 0
    records: int = 0  # yielded
    malformed_capture_lines: int = 0
    records_outside_window: int = 0


def capture_files(source: str | Path) -> list[Path]:
    """Every ``*.jsonl`` below ``source`` (``<endpoint>/<variant>/yyyy/mm/dd/hh/``), in order."""
    root = Path(source)
    if root.is_file():
        return [root]
    return sorted(p for p in root.rglob("*.jsonl") if p.is_file())


def read_captures(
    files: Iterable[Path], window: Window, counts: CaptureCounts
) -> Iterator[dict[str, Any]]:
    """The capture records of the window, parsed; malformed lines are counted and skipped."""
    for path in files:
        counts.files += 1
        with open(path, encoding="utf-8", errors="replace") as stream:
            for line in stream:
                if not line.strip():
                    continue
                record = _record(line, window, counts)
                if record is not None:
                    counts.records += 1
                    yield record


def _record(line: str, window: Window, counts: CaptureCounts) -> dict[str, Any] | None:
    try:
        record = json.loads(line)
    except ValueError:
        record = None
    if not isinstance(record, dict) or not isinstance(record.get("captureData"), dict):
        counts.malformed_capture_lines += 1
        return None
    if window.bounded:
        meta = record.get("eventMetadata")
        moment = meta.get("inferenceTime") if isinstance(meta, dict) else None
        if moment is not None:  # a record without a time is not filtered out
            try:
                when = parse_time(str(moment))
            except ValueError:
                counts.malformed_capture_lines += 1
                return None
            if not window.contains(when):
                counts.records_outside_window += 1
                return None
    return record


def decode_payload(payload: Mapping[str, Any]) -> tuple[str, str]:
    """(text, kind) of a captured body: kind ``json`` or ``csv`` (by encoding, else content
    type). ValueError/TypeError when it cannot be read."""
    data = payload["data"]
    encoding = str(payload.get("encoding") or "CSV").upper()
    content_type = str(payload.get("observedContentType") or "")
    if encoding == "BASE64":
        if not isinstance(data, str):
            raise TypeError("BASE64 capture data is not text")
        try:
            data = base64.b64decode(data, validate=True).decode("utf-8")
        except (binascii.Error, UnicodeDecodeError) as err:
            raise ValueError(f"capture data is not base64 UTF-8 text: {err}") from err
        kind = "json" if "json" in content_type.lower() else "csv"
    elif encoding == "JSON":
        kind = "json"
        if not isinstance(data, str):  # a JSON body stored as a value
            data = json.dumps(data)
    else:
        kind = "json" if "json" in content_type.lower() and encoding != "CSV" else "csv"
    if not isinstance(data, str):
        raise TypeError("capture data is not text")
    return data, kind


# ---------------------------------------------------------------- outputs


def write_json(path: str | Path, document: Any) -> None:
    target = Path(path)
    target.parent.mkdir(parents=True, exist_ok=True)
    tmp = target.with_name(target.name + ".tmp")
    # Compact: json's C encoder (indent= takes its pure-Python path, 10x slower on sketches).
    tmp.write_text(json.dumps(document), encoding="utf-8")
    os.replace(tmp, target)


def write_message(path: str, message: str) -> None:
    """The exit message (DescribeProcessingJob's ExitMessage: its first 1 KB)."""
    os.makedirs(os.path.dirname(path) or ".", exist_ok=True)
    with open(path, "w", encoding="utf-8") as stream:
        stream.write(message)


def dimensions(env: Mapping[str, str]) -> list[dict[str, str]]:
    """Endpoint and MonitoringSchedule (a batch transform's monitoring has no endpoint)."""
    out = []
    if env.get("sagemaker_endpoint_name"):
        out.append({"Name": "Endpoint", "Value": env["sagemaker_endpoint_name"]})
    out.append(
        {"Name": "MonitoringSchedule", "Value": env.get("sagemaker_monitoring_schedule_name", "")}
    )
    return out


def metric_line(
    name: str,
    timestamp: str,
    dims: list[dict[str, str]],
    namespace: str,
    *,
    value: float | None = None,
    statistic_values: Mapping[str, float] | None = None,
) -> dict[str, Any]:
    """One datum: exactly one of ``value`` and ``statistic_values`` (SampleCount, Sum,
    Minimum, Maximum)."""
    if (value is None) == (statistic_values is None):
        raise ValueError("exactly one of value and statistic_values")
    line: dict[str, Any] = {"MetricName": name, "Timestamp": timestamp, "Dimensions": dims}
    if value is not None:
        line["Value"] = float(value)
    else:
        line["StatisticValues"] = {k: float(v) for k, v in (statistic_values or {}).items()}
    line["Namespace"] = namespace
    return line


def write_metrics(folder: str, file_name: str, lines: Iterable[Mapping[str, Any]]) -> Path:
    os.makedirs(folder, exist_ok=True)
    path = Path(folder) / file_name
    with open(path, "w", encoding="utf-8") as out:
        out.writelines(json.dumps(line) + "\n" for line in lines)
    return path
