"""What a run trains and is judged on, written down before the processing job reads it.

The run's manifest (``<run>/data/manifest.json``) lists every object of the configured data
as it is now (key, ETag, size, LastModified), so a file an upstream system added under the
prefix since the last run is used, and the run says exactly which bytes it read. Beside it,
the endpoint's labelled production traffic (captured requests joined with ground truth) is
written as CSV in the data's columns: ``captured/recent.csv`` and ``captured/older.csv``.

Recent data is what the production model never saw. Its run's manifest (found from the
model's artifact, ``runs/<run>/...``) says when its data was collected and which objects it
read: a source object is recent when its content (ETag) is not among them, and a captured row
when its inference time is later. ``retraining.window`` narrows that: a duration (recent =
newer than that) or a row count (the newest N labelled captured rows). With no production
model, or none whose manifest is known, everything is recent: a first run trains as before.
The processing job keeps at most ``older_share`` of its training rows from older data and
draws the test split from recent rows only, so champion and challenger are judged on the
present.
"""

from __future__ import annotations

import datetime as dt
import json
import re
from dataclasses import dataclass
from typing import Any

from botocore.exceptions import ClientError
from capture_join import split_uri
from captured_data import CapturedDataError, header, labelled_rows, write_csv

MANIFEST = "manifest.json"
RECENT_CAPTURES, OLDER_CAPTURES = "captured/recent.csv", "captured/older.csv"
DEFAULTS: dict[str, Any] = {
    "captured_data": "auto",
    "window": None,
    "older_share": None,
    "min_recent_rows": 30,
}
#: older_share when the config leaves it out: none after a model-quality alarm (the world's
#: labels changed, so older rows would teach the old one), this much otherwise.
OLDER_SHARE = 0.2
_SHORT = re.compile(r"^(\d+)([dhm])$")
_ISO = re.compile(r"^P(?:(\d+)D)?(?:T(?:(\d+)H)?(?:(\d+)M)?)?$")
_RUN = re.compile(r"^s3://([^/]+)/runs/([^/]+)/")


class CollectError(Exception):
    """The data cannot be collected as configured (names the object or key and why)."""


@dataclass(frozen=True)
class Window:
    """Where recent data starts: a moment, the newest N captured rows, or nothing (all)."""

    since: dt.datetime | None
    rows: int | None
    why: str


def collect(
    s3: Any, *, config: dict[str, Any], destination: str, champion_model_url: str | None,
    now: dt.datetime, retraining: dict[str, Any] | None = None,
) -> dict[str, Any]:  # fmt: skip
    """Write the run's captured rows and manifest under ``destination``; a summary of both.
    ``retraining`` is why the run retrains (the Retrain Lambda's execution input), if it does."""
    settings = {**DEFAULTS, **(config.get("retraining") or {})}
    if settings["older_share"] is None:
        settings["older_share"] = older_share_for(retraining)
    data_uri = str(config["data_uri"])
    objects = source_objects(s3, data_uri)
    previous = champion_manifest(s3, champion_model_url)
    window = window_for(settings, previous, now)
    known = {o["etag"] for o in (previous or {}).get("objects", []) if o.get("etag")}
    for item in objects:
        item["recent"] = _source_is_recent(item, known, window, previous is not None)
    captured = _captures(s3, config, settings, objects, destination, window)
    bucket, prefix = split_uri(destination)
    manifest = {
        "collected_at": _iso(now),
        "data_uri": data_uri,
        "window": {
            "since": _iso(window.since) if window.since else None,
            "rows": window.rows,
            "why": window.why,
        },
        "policy": {k: settings[k] for k in ("older_share", "min_recent_rows")},
        "previous_manifest": (previous or {}).get("uri"),
        "objects": objects + captured.pop("files"),
        "captured": captured,
    }
    s3.put_object(Bucket=bucket, Key=prefix + MANIFEST, Body=json.dumps(manifest).encode())
    recent = [o for o in manifest["objects"] if o["recent"]]
    return {
        "manifest_uri": f"s3://{bucket}/{prefix}{MANIFEST}",
        "objects": len(manifest["objects"]),
        "recent_objects": len(recent),
        "since": manifest["window"]["since"],
        "why": window.why,
        "captured_rows": captured["rows"],
        "skipped": captured["skipped"],
    }


def older_share_for(retraining: dict[str, Any] | None) -> float:
    """0 after a model-quality alarm (``<endpoint>-model-quality``), else OLDER_SHARE."""
    alarm = str((retraining or {}).get("alarm") or "")
    return 0.0 if alarm.endswith("-model-quality") else OLDER_SHARE


def source_objects(s3: Any, data_uri: str) -> list[dict[str, Any]]:
    """The configured data's files as the processing job will see them under its input
    folder: their keys relative to the URI's folder, ETag, size and LastModified."""
    bucket, prefix = split_uri(data_uri)
    folder = prefix if prefix.endswith("/") or not prefix else prefix.rpartition("/")[0] + "/"
    found = []
    for page in s3.get_paginator("list_objects_v2").paginate(Bucket=bucket, Prefix=prefix):
        for item in page.get("Contents", []):
            name = item["Key"].rsplit("/", 1)[-1]
            if name and not name.startswith((".", "_")):  # as a processing input reads them
                found.append({
                    "uri": f"s3://{bucket}/{item['Key']}",
                    "kind": "source",
                    "path": item["Key"].removeprefix(folder),
                    "etag": str(item["ETag"]).strip('"'),
                    "size": int(item["Size"]),
                    "last_modified": _iso(item["LastModified"]),
                })  # fmt: skip
    if not found:
        raise CollectError(f"{data_uri} holds no data files (.csv, .parquet) to train on")
    return sorted(found, key=lambda o: o["uri"])


def champion_manifest(s3: Any, model_url: str | None) -> dict[str, Any] | None:
    """The manifest of the production model's run, None when it is not known (no champion, a
    model from outside this pipeline's runs, or a run from before manifests)."""
    found = _RUN.match(model_url or "")
    if not found:
        return None
    bucket, run = found.groups()
    key = f"runs/{run}/data/{MANIFEST}"
    try:
        body = s3.get_object(Bucket=bucket, Key=key)["Body"].read()
    except ClientError as err:
        if err.response["Error"]["Code"] in ("NoSuchKey", "404"):
            return None
        raise
    return {**json.loads(body), "uri": f"s3://{bucket}/{key}"}


def window_for(
    settings: dict[str, Any], previous: dict[str, Any] | None, now: dt.datetime
) -> Window:
    window = settings.get("window")
    if isinstance(window, int) and not isinstance(window, bool):
        return Window(None, window, f"the newest {window} labelled captured rows")
    if isinstance(window, str):
        since = now - duration(window)
        return Window(since, None, f"data newer than {window} (since {_iso(since)})")
    if previous is not None:
        since = _moment(previous["collected_at"])
        return Window(since, None, f"data the production model never saw (since {_iso(since)})")
    return Window(None, None, "all data: no production model whose data is known")


def duration(text: str) -> dt.timedelta:
    """``14d``, ``36h``, ``90m``, ``P14D``, ``PT36H``, ``P1DT2H``."""
    short = _SHORT.match(text)
    if short:
        unit = {"d": "days", "h": "hours", "m": "minutes"}[short[2]]
        return dt.timedelta(**{unit: int(short[1])})
    iso = _ISO.match(text)
    if not iso or not any(iso.groups()):
        raise CollectError(f"retraining.window {text!r} is not a duration (14d, PT36H, ...)")
    days, hours, minutes = (int(part or 0) for part in iso.groups())
    return dt.timedelta(days=days, hours=hours, minutes=minutes)


def _source_is_recent(
    item: dict[str, Any], known: set[str], window: Window, has_previous: bool
) -> bool:
    """New or changed since the production model's run (by content: the CLI stages the same
    file under each run's own prefix); within a duration window too."""
    if window.since is None and window.rows is None:
        return True
    if has_previous and item["etag"] in known:
        return False  # these bytes were read by the production model's run
    return window.since is None or _moment(item["last_modified"]) >= window.since


def _captures(
    s3: Any, config: dict[str, Any], settings: dict[str, Any], objects: list[dict[str, Any]],
    destination: str, window: Window,
) -> dict[str, Any]:  # fmt: skip
    """Write the labelled captured rows, split by the window; what was written and skipped."""
    nothing: dict[str, Any] = {"rows": {"recent": 0, "older": 0}, "skipped": {}, "files": []}
    mode = settings.get("captured_data", "auto")
    endpoint = (config.get("deployment") or {}).get("endpoint_name")
    if mode is False or not endpoint:
        return {**nothing, "note": "captured data off" if mode is False else "no endpoint"}
    data_bucket, _ = split_uri(str(config["data_uri"]))
    delimiter = (config.get("processing_env") or {}).get("SFN_MLOPS_CSV_DELIMITER", ",")
    first = objects[0]
    try:
        columns = header(s3, data_bucket, split_uri(first["uri"])[1], delimiter)
    except CapturedDataError as err:
        if mode == "auto":
            return {**nothing, "note": str(err)}
        raise CollectError(str(err)) from err
    target = str(config["target"])
    if target not in columns:
        raise CollectError(f"{first['uri']} has no column {target!r} (the target): {columns}")
    rows, skipped = labelled_rows(
        s3, bucket=data_bucket, endpoint=endpoint, columns=columns, target=target, config=config
    )
    recent_from = _first_recent(rows, window)
    parts = {RECENT_CAPTURES: rows[recent_from:], OLDER_CAPTURES: rows[:recent_from]}
    bucket, prefix = split_uri(destination)
    files = []
    for name, part in parts.items():
        if write_csv(s3, bucket, prefix + name, columns, [row for _, row in part], delimiter):
            files.append({
                "uri": f"s3://{bucket}/{prefix}{name}",
                "kind": "captured",
                "path": name,
                "rows": len(part),
                "first_inference": part[0][0],
                "last_inference": part[-1][0],
                "recent": name == RECENT_CAPTURES,
            })  # fmt: skip
    counts = {"recent": len(rows) - recent_from, "older": recent_from}
    return {"rows": counts, "skipped": skipped, "files": files}


def _first_recent(rows: list[tuple[str, list[str]]], window: Window) -> int:
    """Index of the first recent row of rows sorted by inference time."""
    if window.rows is not None:
        return max(len(rows) - window.rows, 0)
    if window.since is None:
        return 0
    since = window.since
    return next((i for i, (moment, _) in enumerate(rows) if _after(moment, since)), len(rows))


def _after(moment: str, since: dt.datetime) -> bool:
    try:
        return _moment(moment) >= since
    except ValueError:
        return False  # a capture without a readable time is not known to be recent


def _moment(value: Any) -> dt.datetime:
    if isinstance(value, dt.datetime):
        moment = value
    else:
        moment = dt.datetime.fromisoformat(str(value).replace("Z", "+00:00"))
    return moment if moment.tzinfo else moment.replace(tzinfo=dt.UTC)


def _iso(value: Any) -> str:
    return _moment(value).astimezone(dt.UTC).strftime("%Y-%m-%dT%H:%M:%S.%fZ")
