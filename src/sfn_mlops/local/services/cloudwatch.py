"""Amazon CloudWatch: metrics kept durably, and metric alarms evaluated as CloudWatch does.

Datapoints live in their own SQLite file (``metrics.db`` in the workspace, WAL mode) so they
outlive the service; alarms and their history live in the shared metadata store.

Alarm evaluation follows CloudWatch's rules: the statistic (``Statistic`` or a ``pNN``
``ExtendedStatistic``) of each of the ``EvaluationPeriods`` periods of the evaluation window
(CloudWatch User Guide, "Alarm evaluation window"): by default a ``SlidingWindow`` that ends at
the latest evaluation (every minute, every 10 s for a period under a minute: "Using Amazon
CloudWatch alarms"), so a datapoint counts for a whole period after its timestamp; with
``EvaluationWindow.WallClockWindow`` the periods are the complete ones aligned to the clock in
its ``Timezone`` (UTC by default). The alarm goes to ALARM when at least ``DatapointsToAlarm``
of them breach, otherwise to OK, and
``TreatMissingData`` decides what an empty period is (``missing``: all empty gives
INSUFFICIENT_DATA; ``ignore``: all empty keeps the state; ``breaching``/``notBreaching``: an
empty period counts as one). Local time runs at the workspace's ``time_scale``, the factor every
local wait is multiplied by (tests use e.g. 0.001): an alarm's period lasts ``Period *
time_scale`` seconds of wall time, and the background evaluation runs every ``time_scale``
seconds (at least every 50 ms). ``evaluate_alarms(now)`` runs one evaluation synchronously with
an injected clock.

When an alarm changes state it sends ``CloudWatch Alarm State Change`` to the local EventBridge
(when there is one; AWS sends it whether or not actions are enabled) and, with ActionsEnabled,
publishes the classic alarm notification to the SNS topics of the new state's actions.
"""

from __future__ import annotations

import datetime as dt
import json
import logging
import math
import re
import sqlite3
import threading
import time
import zoneinfo
from collections.abc import Iterable, Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np

from sfn_mlops.local.errors import AwsError

log = logging.getLogger("sfn_mlops.local.cloudwatch")

ALARMS = "cloudwatch/alarm"
HISTORY = "cloudwatch/history"
OK, ALARM, INSUFFICIENT = "OK", "ALARM", "INSUFFICIENT_DATA"
STATE_CHANGE = "CloudWatch Alarm State Change"
STATISTICS = ("SampleCount", "Average", "Sum", "Minimum", "Maximum")
MAX_DATAPOINTS = 1440
#: Seconds between two background evaluations, before the time scale (CloudWatch: a minute).
EVALUATION_INTERVAL = 1.0
_MIN_INTERVAL = 0.05
_PERCENTILE = re.compile(r"^p(\d{1,2}(\.\d{1,2})?|100(\.0{1,2})?)$")
_OPERATORS = {
    "GreaterThanOrEqualToThreshold": ("greater than or equal to", lambda v, t: v >= t),
    "GreaterThanThreshold": ("greater than", lambda v, t: v > t),
    "LessThanThreshold": ("less than", lambda v, t: v < t),
    "LessThanOrEqualToThreshold": ("less than or equal to", lambda v, t: v <= t),
}
_SCHEMA = """
CREATE TABLE IF NOT EXISTS datapoints (
    namespace TEXT NOT NULL,
    metric TEXT NOT NULL,
    dimensions TEXT NOT NULL,
    ts REAL NOT NULL,
    unit TEXT NOT NULL,
    sample_count REAL NOT NULL,
    sum REAL NOT NULL,
    minimum REAL NOT NULL,
    maximum REAL NOT NULL,
    distribution TEXT
);
CREATE INDEX IF NOT EXISTS datapoints_metric ON datapoints (namespace, metric, dimensions, ts);
"""


def invalid(message: str) -> AwsError:
    return AwsError("InvalidParameterValue", message)


def combination(message: str) -> AwsError:
    return AwsError("InvalidParameterCombination", message)


def unsupported(message: str) -> AwsError:
    return AwsError("ValidationError", f"{message} is not supported by sfn-mlops local mode")


# datapoints --------------------------------------------------------------------------------
@dataclass(frozen=True)
class Datapoint:
    """One stored MetricDatum: a statistic set, plus its values when they were sent."""

    ts: float
    unit: str
    sample_count: float
    sum: float
    minimum: float
    maximum: float
    values: tuple[tuple[float, float], ...] | None  # (value, count); None for a statistic set


def _dimension_key(dimensions: Iterable[dict[str, str]]) -> str:
    """CloudWatch identifies a metric by its exact set of dimensions, in any order."""
    return json.dumps(sorted((d["Name"], d["Value"]) for d in dimensions))


def _dimensions(key: str) -> list[dict[str, str]]:
    return [{"Name": name, "Value": value} for name, value in json.loads(key)]


def _epoch(value: Any) -> float:
    if isinstance(value, dt.datetime):
        if value.tzinfo is None:
            value = value.replace(tzinfo=dt.timezone.utc)
        return value.timestamp()
    return float(value)


def _moment(epoch: float) -> dt.datetime:
    return dt.datetime.fromtimestamp(epoch, tz=dt.timezone.utc)


class MetricStore:
    """Datapoints in ``metrics.db``: one connection per thread, WAL so readers never wait."""

    def __init__(self, path: Path) -> None:
        self.path = path
        self._local = threading.local()
        self._connection().executescript(_SCHEMA)

    def _connection(self) -> sqlite3.Connection:
        db = getattr(self._local, "db", None)
        if db is None:
            db = sqlite3.connect(self.path, timeout=30, isolation_level=None)
            db.execute("PRAGMA journal_mode=WAL")
            db.execute("PRAGMA synchronous=NORMAL")
            self._local.db = db
        return db

    @contextmanager
    def _tx(self) -> Iterator[sqlite3.Connection]:
        db = self._connection()
        db.execute("BEGIN IMMEDIATE")
        try:
            yield db
        except BaseException:
            db.execute("ROLLBACK")
            raise
        db.execute("COMMIT")

    def add(self, namespace: str, metric: str, dims: str, points: list[Datapoint]) -> None:
        rows = [
            (
                namespace,
                metric,
                dims,
                p.ts,
                p.unit,
                p.sample_count,
                p.sum,
                p.minimum,
                p.maximum,
                None if p.values is None else json.dumps(p.values),
            )
            for p in points
        ]
        with self._tx() as db:
            db.executemany("INSERT INTO datapoints VALUES (?, ?, ?, ?, ?, ?, ?, ?, ?, ?)", rows)

    def query(
        self, namespace: str, metric: str, dims: str, start: float, end: float, unit: str | None
    ) -> list[Datapoint]:
        sql = (
            "SELECT ts, unit, sample_count, sum, minimum, maximum, distribution FROM datapoints "
            "WHERE namespace = ? AND metric = ? AND dimensions = ? AND ts >= ? AND ts < ?"
        )
        args: list[Any] = [namespace, metric, dims, start, end]
        if unit is not None:
            sql += " AND unit = ?"
            args.append(unit)
        rows = self._connection().execute(sql + " ORDER BY ts", args).fetchall()
        return [_row_datapoint(row) for row in rows]

    def metrics(self, since: float | None = None) -> list[tuple[str, str, str]]:
        sql = "SELECT DISTINCT namespace, metric, dimensions FROM datapoints"
        args: list[Any] = []
        if since is not None:
            sql += " WHERE ts >= ?"
            args.append(since)
        rows = self._connection().execute(sql + " ORDER BY 1, 2, 3", args).fetchall()
        return [(str(n), str(m), str(d)) for n, m, d in rows]


def _row_datapoint(row: tuple[Any, ...]) -> Datapoint:
    ts, unit, count, total, low, high, distribution = row
    pairs = None if distribution is None else tuple((v, c) for v, c in json.loads(distribution))
    return Datapoint(ts, unit, count, total, low, high, pairs)


def _datapoints(datum: dict[str, Any], now: float) -> list[Datapoint]:
    """A MetricDatum as stored: one Value, a Values/Counts distribution, or a statistic set."""
    ts = _epoch(datum["Timestamp"]) if "Timestamp" in datum else now
    unit = datum.get("Unit", "None")
    name = datum["MetricName"]
    present = [key for key in ("Value", "Values", "StatisticValues") if key in datum]
    if len(present) > 1:
        raise combination(
            f"The parameters MetricData.member.Value, MetricData.member.Values and "
            f"MetricData.member.StatisticValues are mutually exclusive (metric {name!r})."
        )
    if "StatisticValues" in datum:
        stats = datum["StatisticValues"]
        return [
            Datapoint(ts, unit, stats["SampleCount"], stats["Sum"], stats["Minimum"],
                      stats["Maximum"], None)
        ]  # fmt: skip
    if "Values" in datum:
        values = [float(v) for v in datum["Values"]]
        counts = [float(c) for c in datum.get("Counts") or [1.0] * len(values)]
        if len(counts) != len(values):
            raise combination(
                f"The parameters MetricData.member.Values and MetricData.member.Counts must "
                f"be of the same size (metric {name!r})."
            )
    elif "Value" in datum:
        values, counts = [float(datum["Value"])], [1.0]
    else:
        raise AwsError(
            "MissingParameter",
            f"The parameter MetricData.member.Value is required for metric {name!r}.",
        )
    for value in values:
        if not math.isfinite(value):
            raise invalid(f"The value {value} for parameter MetricData.member.Value is invalid.")
    total = sum(v * c for v, c in zip(values, counts, strict=True))
    pairs = tuple(zip(values, counts, strict=True))
    return [Datapoint(ts, unit, sum(counts), total, min(values), max(values), pairs)]


def _percentile(points: list[Datapoint], name: str) -> float | None:
    """CloudWatch's percentiles are nearest-rank; statistic sets carry no values to rank."""
    pairs = [pair for p in points if p.values for pair in p.values]
    if not pairs:
        return None
    values, counts = zip(*pairs, strict=True)
    q = float(name[1:])
    return float(np.percentile(values, q, weights=counts, method="inverted_cdf"))


def statistic(points: list[Datapoint], name: str) -> float | None:
    """One statistic (``Average``, ``p90``, ...) of a period's datapoints; None when empty."""
    if not points:
        return None
    count = sum(p.sample_count for p in points)
    if name == "SampleCount":
        return count
    if name == "Sum":
        return sum(p.sum for p in points)
    if name == "Average":
        return sum(p.sum for p in points) / count if count else None
    if name == "Minimum":
        return min(p.minimum for p in points)
    if name == "Maximum":
        return max(p.maximum for p in points)
    return _percentile(points, name)


def _check_extended(names: Iterable[str], parameter: str) -> None:
    for name in names:
        if not _PERCENTILE.match(name):
            raise invalid(f"The value {name} for parameter {parameter} is not supported.")


def _check_period(period: int, parameter: str = "Period") -> None:
    if period not in (1, 5, 10, 20, 30) and period % 60:
        raise invalid(
            f"The parameter {parameter} must be 1, 5, 10, 20, 30, or a multiple of 60 "
            f"(got {period})."
        )


def _buckets(points: list[Datapoint], period: float) -> dict[float, list[Datapoint]]:
    grouped: dict[float, list[Datapoint]] = {}
    for p in points:
        grouped.setdefault(math.floor(p.ts / period) * period, []).append(p)
    return grouped


def _page(items: list[Any], params: dict[str, Any], limit: int) -> tuple[list[Any], str | None]:
    """A page of ``items`` and the next token (an offset: the lists here are small)."""
    token = params.get("NextToken")
    try:
        start = int(token) if token else 0
    except ValueError as err:
        raise AwsError("InvalidNextToken", "The service cannot process the NextToken.") from err
    size = params.get("MaxRecords") or params.get("MaxDatapoints") or limit
    end = start + size
    return items[start:end], str(end) if end < len(items) else None


# alarm evaluation ----------------------------------------------------------------------------
@dataclass(frozen=True)
class Verdict:
    """The state the evaluated periods call for, and CloudWatch's words for why."""

    state: str
    reason: str
    data: dict[str, Any]


def _stamp(epoch: float) -> str:
    return _moment(epoch).strftime("%d/%m/%y %H:%M:%S")


def _iso(epoch: float) -> str:
    return _moment(epoch).strftime("%Y-%m-%dT%H:%M:%S.%f")[:-3] + "+0000"


def _plural(count: int, noun: str) -> str:
    return f"{count} {noun}" if count == 1 else f"{count} {noun}s"


def _crossing(alarm: dict[str, Any], state: str, hits: list[tuple[float, float]]) -> str:
    """``Threshold Crossed: 1 datapoint [5.0 (03/12/26 10:00:00)] was greater than ...``."""
    words = _OPERATORS[alarm["ComparisonOperator"]][0]
    if state == OK:
        words = f"not {words}"
    shown = ", ".join(f"{value} ({_stamp(ts)})" for ts, value in hits)
    n = alarm["EvaluationPeriods"]
    verb = "was" if len(hits) == 1 else "were"
    if n == 1:
        counted = f"{_plural(len(hits), 'datapoint')} [{shown}] {verb}"
    else:
        counted = f"{len(hits)} out of the last {n} datapoints [{shown}] {verb}"
    reason = f"Threshold Crossed: {counted} {words} the threshold ({float(alarm['Threshold'])})"
    if n > 1 and state == ALARM:
        minimum = _plural(alarm.get("DatapointsToAlarm") or n, "datapoint")
        reason += f" (minimum {minimum} for {alarm['StateValue']} -> ALARM transition)"
    return reason + "."


def judge(alarm: dict[str, Any], values: list[tuple[float, float | None]]) -> Verdict | None:
    """The verdict on the evaluated periods (most recent first); None keeps the state."""
    treat = alarm.get("TreatMissingData", "missing")
    compare = _OPERATORS[alarm["ComparisonOperator"]][1]
    threshold = float(alarm["Threshold"])
    present = [(ts, v) for ts, v in values if v is not None]
    missing = len(values) - len(present)
    breaching = [(ts, v) for ts, v in present if compare(v, threshold)]
    breach_count = len(breaching) + (missing if treat == "breaching" else 0)
    needed = alarm.get("DatapointsToAlarm") or alarm["EvaluationPeriods"]
    data = _reason_data(alarm, values)
    if not present:
        if treat == "ignore":
            return None
        if treat == "missing":
            return Verdict(
                INSUFFICIENT,
                f"Insufficient Data: {_plural(missing, 'datapoint')} "
                f"{'was' if missing == 1 else 'were'} unknown.",
                data,
            )
        state = ALARM if breach_count >= needed else OK
        label = "Breaching" if treat == "breaching" else "NonBreaching"
        return Verdict(
            state,
            f"Threshold Crossed: no datapoints were received for {_plural(missing, 'period')} "
            f"and {_plural(missing, 'missing datapoint')} {'was' if missing == 1 else 'were'} "
            f"treated as [{label}].",
            data,
        )
    if breach_count >= needed:
        return Verdict(ALARM, _crossing(alarm, ALARM, breaching or present), data)
    return Verdict(OK, _crossing(alarm, OK, present), data)


def _reason_data(alarm: dict[str, Any], values: list[tuple[float, float | None]]) -> dict[str, Any]:
    stat = alarm.get("Statistic") or alarm.get("ExtendedStatistic")
    return {
        "version": "1.0",
        **({"startDate": _iso(min(ts for ts, _ in values))} if values else {}),
        "statistic": stat,
        "period": alarm["Period"],
        "recentDatapoints": [v for _, v in values if v is not None],
        "threshold": float(alarm["Threshold"]),
        "evaluatedDatapoints": [
            {"timestamp": _iso(ts), **({"value": v} if v is not None else {})} for ts, v in values
        ],
    }


def window_end(alarm: dict[str, Any], now: float, scale: float = 1.0) -> float:
    """Where the alarm's evaluated periods end at ``now`` (local time runs ``scale`` times the
    real pace). A sliding window ends at the latest evaluation: CloudWatch evaluates every
    minute, every 10 s for a period under a minute; a wall clock window at the start of the
    current period in its time zone (that period is not complete yet)."""
    clock = (alarm.get("EvaluationWindow") or {}).get("WallClockWindow")
    if clock is None:
        tick = (10 if alarm["Period"] < 60 else 60) * scale
        return math.floor(now / tick) * tick
    period = alarm["Period"] * scale
    offset = utc_offset(clock.get("Timezone"), now) * scale
    return math.floor((now + offset) / period) * period - offset


_FIXED_OFFSET = re.compile(r"^(?:UTC)?([+-])(\d{2}):(\d{2})$")


def utc_offset(zone: str | None, at: float) -> float:
    """Seconds east of UTC of a WallClockWindow ``Timezone`` (an IANA name, ``+05:30`` or
    ``UTC+05:30``) at ``at``; ValueError says what is wrong."""
    if not zone or zone == "UTC":
        return 0.0
    fixed = _FIXED_OFFSET.match(zone)
    if fixed:
        sign, hours, minutes = fixed.groups()
        if int(minutes) % 5 or int(minutes) >= 60 or int(hours) > 14:
            raise ValueError("a UTC offset must be at most 14:00 and a multiple of 5 minutes")
        return (1 if sign == "+" else -1) * (int(hours) * 3600 + int(minutes) * 60)
    try:
        found = zoneinfo.ZoneInfo(zone).utcoffset(_moment(at))
    except (zoneinfo.ZoneInfoNotFoundError, ValueError) as err:
        raise ValueError(
            "not a time zone: use an IANA name (America/New_York) or an offset (+05:30)"
        ) from err
    return found.total_seconds() if found is not None else 0.0


class CloudWatch:
    """PutMetricData ... DescribeAlarmHistory, and the alarm evaluator."""

    def __init__(self, cloud: Any, *, background: bool = True) -> None:
        self.cloud = cloud
        self.db = cloud.metadata
        self.store = MetricStore(Path(cloud.root) / "metrics.db")
        self.background = background
        self._lock = threading.RLock()  # one writer of alarm state at a time
        self._stop = threading.Event()
        self._thread: threading.Thread | None = None

    # evaluator lifecycle ---------------------------------------------------------------------
    def start(self) -> None:
        """Evaluate alarms in a daemon thread until ``shutdown`` (idempotent)."""
        with self._lock:
            if self._thread is not None and self._thread.is_alive():
                return
            self._stop.clear()
            self._thread = threading.Thread(target=self._run, name="cloudwatch-alarms", daemon=True)
            self._thread.start()

    def shutdown(self) -> None:
        self._stop.set()
        if self._thread is not None:
            self._thread.join(5)
            self._thread = None

    def _run(self) -> None:
        interval = max(EVALUATION_INTERVAL * self.cloud.time_scale, _MIN_INTERVAL)
        while not self._stop.wait(interval):
            try:
                self.evaluate_alarms()
            except Exception:  # noqa: BLE001 - one bad evaluation must not stop the next
                log.exception("alarm evaluation failed")

    def _started(self) -> None:
        if self.background:
            self.start()

    # metrics ---------------------------------------------------------------------------------
    def put_metric_data(self, params: dict[str, Any]) -> dict[str, Any]:
        if params["Namespace"].startswith("AWS/"):
            raise invalid("The value AWS/ for parameter Namespace is invalid.")
        return self.record_metrics(params)

    def record_metrics(self, params: dict[str, Any]) -> dict[str, Any]:
        """PutMetricData as the local services publish their own (``AWS/...``) metrics."""
        namespace = params["Namespace"]
        if not params.get("MetricData"):
            raise AwsError("MissingParameter", "The parameter MetricData is required.")
        now = time.time()
        for datum in params["MetricData"]:
            points = _datapoints(datum, now)
            dims = _dimension_key(datum.get("Dimensions", []))
            self.store.add(namespace, datum["MetricName"], dims, points)
        self._started()
        return {}

    def _points(
        self, metric: dict[str, Any], start: float, end: float, unit: str | None
    ) -> list[Datapoint]:
        dims = _dimension_key(metric.get("Dimensions", []))
        return self.store.query(metric["Namespace"], metric["MetricName"], dims, start, end, unit)

    def get_metric_statistics(self, params: dict[str, Any]) -> dict[str, Any]:
        stats = params.get("Statistics") or []
        extended = params.get("ExtendedStatistics") or []
        if not stats and not extended:
            raise AwsError(
                "MissingParameter", "Must specify either Statistics or ExtendedStatistics."
            )
        _check_extended(extended, "ExtendedStatistics")
        period = params["Period"]
        _check_period(period)
        start, end = _epoch(params["StartTime"]), _epoch(params["EndTime"])
        if start >= end:
            raise invalid("The parameter StartTime must be less than the parameter EndTime.")
        requested = math.ceil((end - start) / period)
        if requested > MAX_DATAPOINTS:
            raise combination(
                f"You have requested up to {requested:,} datapoints, which exceeds the limit "
                f"of {MAX_DATAPOINTS:,}. You may reduce the datapoints requested by increasing "
                "Period, or decreasing the time range."
            )
        points = self._points(params, start, end, params.get("Unit"))
        datapoints = [
            _statistics_datapoint(ts, group, stats, extended)
            for ts, group in sorted(_buckets(points, period).items())
        ]
        return {"Label": params["MetricName"], "Datapoints": datapoints}

    def get_metric_data(self, params: dict[str, Any]) -> dict[str, Any]:
        start, end = _epoch(params["StartTime"]), _epoch(params["EndTime"])
        descending = params.get("ScanBy", "TimestampDescending") == "TimestampDescending"
        results = [
            self._query_result(query, start, end, descending)
            for query in params["MetricDataQueries"]
            if query.get("ReturnData", True)
        ]
        return {"MetricDataResults": results, "Messages": []}

    def _query_result(
        self, query: dict[str, Any], start: float, end: float, descending: bool
    ) -> dict[str, Any]:
        if "Expression" in query:
            raise AwsError(
                "ValidationError",
                f"Metric math expressions (query {query['Id']!r}: {query['Expression']!r}) are "
                "not supported by sfn-mlops local mode; use MetricStat queries.",
            )
        stat = query.get("MetricStat")
        if stat is None:
            raise AwsError(
                "ValidationError", f"Query {query['Id']!r} needs a MetricStat or an Expression."
            )
        _check_period(stat["Period"], "MetricStat.Period")
        if stat["Stat"] not in STATISTICS:
            _check_extended([stat["Stat"]], "MetricStat.Stat")
        points = self._points(stat["Metric"], start, end, stat.get("Unit"))
        series = sorted(
            ((ts, statistic(group, stat["Stat"])) for ts, group in
             _buckets(points, stat["Period"]).items()),
            reverse=descending,
        )  # fmt: skip
        kept = [(ts, v) for ts, v in series if v is not None]
        return {
            "Id": query["Id"],
            "Label": query.get("Label", stat["Metric"]["MetricName"]),
            "Timestamps": [_moment(ts) for ts, _ in kept],
            "Values": [v for _, v in kept],
            "StatusCode": "Complete",
        }

    def list_metrics(self, params: dict[str, Any]) -> dict[str, Any]:
        since = time.time() - 3 * 3600 if params.get("RecentlyActive") == "PT3H" else None
        wanted = params.get("Dimensions", [])
        metrics = [
            {"Namespace": ns, "MetricName": name, "Dimensions": _dimensions(dims)}
            for ns, name, dims in self.store.metrics(since)
            if params.get("Namespace", ns) == ns
            and params.get("MetricName", name) == name
            and _has_dimensions(_dimensions(dims), wanted)
        ]
        page, token = _page(metrics, params, 500)
        return {"Metrics": page, **({"NextToken": token} if token else {})}

    # alarms ----------------------------------------------------------------------------------
    def _arn(self, name: str) -> str:
        return self.cloud.arn("cloudwatch", f"alarm:{name}")

    def _alarm(self, name: str) -> dict[str, Any]:
        alarm = self.db.get(ALARMS, name)
        if alarm is None:
            raise AwsError("ResourceNotFound", f"Alarm {name} not found", 404)
        return alarm

    def _alarms(self) -> list[dict[str, Any]]:
        return sorted(self.db.list(ALARMS), key=lambda a: a["AlarmName"])

    def put_metric_alarm(self, params: dict[str, Any]) -> dict[str, Any]:
        _check_alarm(params)
        name = params["AlarmName"]
        now = time.time()
        with self._lock:
            existing = self.db.get(ALARMS, name)
            alarm = _new_alarm(params, self._arn(name), now, existing)
            self.db.put(ALARMS, name, alarm)
            verb = "updated" if existing else "created"
            self._history(name, now, "ConfigurationUpdate", f"Alarm {verb}", {
                "version": "1.0", "type": "Update" if existing else "Create",
                f"{'updated' if existing else 'created'}Alarm": _public(alarm),
            })  # fmt: skip
        self._started()
        return {}

    def describe_alarms(self, params: dict[str, Any]) -> dict[str, Any]:
        if params.get("AlarmNames") and params.get("AlarmNamePrefix"):
            raise combination("AlarmNames and AlarmNamePrefix cannot be used together.")
        types = params.get("AlarmTypes") or ["MetricAlarm"]
        alarms = [a for a in self._alarms() if _selected(a, params)]
        if "MetricAlarm" not in types:
            alarms = []
        page, token = _page(alarms, params, 50)
        result: dict[str, Any] = {"MetricAlarms": [_public(a) for a in page]}
        if "CompositeAlarm" in types:
            result["CompositeAlarms"] = []
        return result | ({"NextToken": token} if token else {})

    def describe_alarms_for_metric(self, params: dict[str, Any]) -> dict[str, Any]:
        dims = _dimension_key(params.get("Dimensions", []))
        optional = ("Statistic", "ExtendedStatistic", "Period", "Unit")
        alarms = [
            _public(a)
            for a in self._alarms()
            if a["Namespace"] == params["Namespace"]
            and a["MetricName"] == params["MetricName"]
            and ("Dimensions" not in params or _dimension_key(a["Dimensions"]) == dims)
            and all(key not in params or a.get(key) == params[key] for key in optional)
        ]
        return {"MetricAlarms": alarms}

    def delete_alarms(self, params: dict[str, Any]) -> dict[str, Any]:
        names = params["AlarmNames"]
        with self._lock:
            unknown = [name for name in names if self.db.get(ALARMS, name) is None]
            if unknown:
                raise AwsError(
                    "ResourceNotFound", f"{_plural(len(unknown), 'alarm')} not found: {unknown}"
                )  # CloudWatch deletes none of them then, as here
            for name in names:
                self.db.delete(ALARMS, name)
                self._history(name, time.time(), "ConfigurationUpdate", "Alarm deleted", {
                    "version": "1.0", "type": "Delete",
                })  # fmt: skip
        return {}

    def set_alarm_state(self, params: dict[str, Any]) -> dict[str, Any]:
        data: dict[str, Any] | None = None
        if "StateReasonData" in params:
            try:
                data = json.loads(params["StateReasonData"])
            except ValueError as err:
                raise AwsError(
                    "InvalidFormat", f"StateReasonData is not valid JSON: {err}"
                ) from err
        with self._lock:
            alarm = self._alarm(params["AlarmName"])
            verdict = Verdict(params["StateValue"], params["StateReason"], data or {})
            self._transition(alarm, verdict, time.time(), force=True)
        return {}

    def enable_alarm_actions(self, params: dict[str, Any]) -> dict[str, Any]:
        return self._set_actions(params["AlarmNames"], True)

    def disable_alarm_actions(self, params: dict[str, Any]) -> dict[str, Any]:
        return self._set_actions(params["AlarmNames"], False)

    def _set_actions(self, names: list[str], enabled: bool) -> dict[str, Any]:
        with self._lock:
            for name in names:  # CloudWatch ignores unknown names here
                if self.db.get(ALARMS, name) is not None:
                    self.db.update(ALARMS, name, ActionsEnabled=enabled)
        return {}

    def describe_alarm_history(self, params: dict[str, Any]) -> dict[str, Any]:
        start = _epoch(params["StartDate"]) if "StartDate" in params else -math.inf
        end = _epoch(params["EndDate"]) if "EndDate" in params else math.inf
        items = [
            item
            for item in self.db.read(HISTORY)
            if params.get("AlarmName", item["AlarmName"]) == item["AlarmName"]
            and params.get("HistoryItemType", item["HistoryItemType"]) == item["HistoryItemType"]
            and start <= item["Timestamp"] <= end
        ]
        items.sort(
            key=lambda i: i["Timestamp"],
            reverse=params.get("ScanBy", "TimestampDescending") == "TimestampDescending",
        )
        page, token = _page(items, params, 100)
        listed = [item | {"Timestamp": _moment(item["Timestamp"])} for item in page]
        return {"AlarmHistoryItems": listed, **({"NextToken": token} if token else {})}

    def _history(
        self, name: str, when: float, kind: str, summary: str, data: dict[str, Any]
    ) -> None:
        self.db.append(
            HISTORY,
            {
                "AlarmName": name,
                "AlarmType": "MetricAlarm",
                "Timestamp": when,
                "HistoryItemType": kind,
                "HistorySummary": summary,
                "HistoryData": json.dumps(data, default=str),
            },
        )

    # evaluation ------------------------------------------------------------------------------
    def evaluate_alarms(self, now: float | None = None) -> None:
        """Evaluate every metric alarm once at ``now`` (default: the wall clock)."""
        moment = time.time() if now is None else now
        with self._lock:
            for alarm in self._alarms():
                verdict = judge(alarm, self._period_values(alarm, moment))
                if verdict is not None:
                    self._transition(alarm, verdict, moment)

    def _period_values(self, alarm: dict[str, Any], now: float) -> list[tuple[float, float | None]]:
        """The statistic of each evaluated period, most recent first, keyed by its start."""
        scale = max(self.cloud.time_scale, 1e-6)
        period = alarm["Period"] * scale
        end = window_end(alarm, now, scale)
        points = self._points(alarm, end - alarm["EvaluationPeriods"] * period, end,
                              alarm.get("Unit"))  # fmt: skip
        stat = alarm.get("Statistic") or alarm["ExtendedStatistic"]
        values: list[tuple[float, float | None]] = []
        for i in range(alarm["EvaluationPeriods"]):
            start = end - (i + 1) * period
            held = [p for p in points if start <= p.ts < start + period]
            values.append((start, statistic(held, stat)))
        return values

    def _transition(
        self, alarm: dict[str, Any], verdict: Verdict, now: float, force: bool = False
    ) -> None:
        """Record a change of state and act on it; SetAlarmState to the same state only
        replaces the reason."""
        old = alarm["StateValue"]
        if verdict.state == old and not force:
            return
        updated = self.db.update(
            ALARMS,
            alarm["AlarmName"],
            StateValue=verdict.state,
            StateReason=verdict.reason,
            StateReasonData=json.dumps(verdict.data) if verdict.data else None,
            StateUpdatedTimestamp=now,
        )
        if verdict.state == old:
            return
        updated = self.db.update(ALARMS, alarm["AlarmName"], StateTransitionedTimestamp=now)
        self._history(
            alarm["AlarmName"], now, "StateUpdate", f"Alarm updated from {old} to {verdict.state}",
            {
                "version": "1.0",
                "oldState": {"stateValue": old, "stateReason": alarm["StateReason"]},
                "newState": {"stateValue": verdict.state, "stateReason": verdict.reason,
                             "stateReasonData": verdict.data},
            },
        )  # fmt: skip
        self._emit(alarm, updated)
        if updated.get("ActionsEnabled", True):
            self._act(alarm, updated, now)

    def _emit(self, before: dict[str, Any], after: dict[str, Any]) -> None:
        """``CloudWatch Alarm State Change`` to the local EventBridge, when there is one."""
        try:
            emit = self.cloud.service("eventbridge").emit
        except AwsError as err:
            if err.code != "NotImplemented":
                raise
            log.debug("no local EventBridge: %s not emitted", STATE_CHANGE)
            return
        try:
            emit(
                source="aws.cloudwatch",
                detail_type=STATE_CHANGE,
                detail=_event_detail(before, after),
                resources=[after["AlarmArn"]],
            )
        except Exception:  # noqa: BLE001 - the state changed; a lost event must not undo it
            log.exception("emitting %s for %s failed", STATE_CHANGE, after["AlarmName"])

    def _act(self, before: dict[str, Any], after: dict[str, Any], now: float) -> None:
        """Publish the alarm notification to each SNS topic of the new state's actions."""
        key = {ALARM: "AlarmActions", OK: "OKActions"}.get(after["StateValue"])
        for arn in after.get(key or "InsufficientDataActions", []):
            try:
                if ":sns:" not in arn:
                    raise AwsError("NotImplemented", "only SNS actions are emulated locally")
                self.cloud.service("sns").publish(_notification(before, after, arn))
            except AwsError as err:
                summary = f"Failed to execute action {arn}. Received error: {err.message}"
            else:
                summary = f"Successfully executed action {arn}"
            self._history(after["AlarmName"], now, "Action", summary, {"actionState": summary})


# helpers of the alarm operations -------------------------------------------------------------
def _statistics_datapoint(
    ts: float, group: list[Datapoint], stats: list[str], extended: list[str]
) -> dict[str, Any]:
    point: dict[str, Any] = {"Timestamp": _moment(ts), "Unit": group[0].unit}
    point.update({name: statistic(group, name) for name in stats})
    if extended:
        values = {name: statistic(group, name) for name in extended}
        point["ExtendedStatistics"] = {k: v for k, v in values.items() if v is not None}
    return point


def _has_dimensions(dims: list[dict[str, str]], wanted: list[dict[str, str]]) -> bool:
    have = {d["Name"]: d["Value"] for d in dims}
    return all(w["Name"] in have and w.get("Value", have[w["Name"]]) == have[w["Name"]]
               for w in wanted)  # fmt: skip


def _selected(alarm: dict[str, Any], params: dict[str, Any]) -> bool:
    name = alarm["AlarmName"]
    actions = [*alarm["AlarmActions"], *alarm["OKActions"], *alarm["InsufficientDataActions"]]
    return (
        ("AlarmNames" not in params or name in params["AlarmNames"])
        and name.startswith(params.get("AlarmNamePrefix", ""))
        and params.get("StateValue", alarm["StateValue"]) == alarm["StateValue"]
        and ("ActionPrefix" not in params or any(a.startswith(params["ActionPrefix"])
                                                 for a in actions))
    )  # fmt: skip


def _check_alarm(params: dict[str, Any]) -> None:
    """PutMetricAlarm's checks that the model cannot express, in CloudWatch's words."""
    _check_alarm_kind(params)
    operator = params["ComparisonOperator"]
    if operator not in _OPERATORS:
        raise unsupported(f"Anomaly detection alarms (ComparisonOperator {operator})")
    for member in ("MetricName", "Namespace", "Period"):
        if member not in params:
            raise AwsError("MissingParameter", f"The parameter {member} is required.")
    if "Threshold" not in params:
        raise AwsError("ValidationError", "Threshold is required for static threshold alarms.")
    if ("Statistic" in params) == ("ExtendedStatistic" in params):
        raise combination(
            "Exactly one element of the Statistic and ExtendedStatistic parameters must be "
            "specified."
        )
    _check_extended([params["ExtendedStatistic"]] if "ExtendedStatistic" in params else [],
                    "ExtendedStatistic")  # fmt: skip
    _check_period(params["Period"])
    if params["Period"] < 10:
        raise invalid("The parameter Period must be 10, 20, 30, or a multiple of 60.")
    to_alarm = params.get("DatapointsToAlarm", params["EvaluationPeriods"])
    if to_alarm > params["EvaluationPeriods"]:
        raise AwsError(
            "ValidationError",
            "DatapointsToAlarm must be less than or equal to EvaluationPeriods.",
        )
    treat = params.get("TreatMissingData", "missing")
    if treat not in ("missing", "ignore", "breaching", "notBreaching"):
        raise invalid(f"The value {treat} for parameter TreatMissingData is not supported.")
    _check_evaluation_range(params["Period"], params["EvaluationPeriods"])
    _check_time_zone(params)


def _check_time_zone(params: dict[str, Any]) -> None:
    clock = (params.get("EvaluationWindow") or {}).get("WallClockWindow")
    if clock is not None and clock.get("Timezone"):
        try:
            utc_offset(clock["Timezone"], time.time())
        except ValueError as err:
            raise invalid(
                f"The value {clock['Timezone']} for parameter "
                f"EvaluationWindow.WallClockWindow.Timezone is invalid: {err}."
            ) from err


def _check_alarm_kind(params: dict[str, Any]) -> None:
    """Static-threshold alarms on one metric only; the rest is named, not ignored."""
    if "EvaluationCriteria" in params:
        raise unsupported("PromQL alarms (the EvaluationCriteria parameter)")
    if "Metrics" in params:
        raise unsupported("Metric math alarms (the Metrics parameter)")
    for member in ("WarmUpConfiguration", "ActionConfiguration"):
        if member in params:
            raise unsupported(f"The {member} parameter")
    if "EvaluationInterval" in params:  # PutMetricAlarm, "EvaluationInterval"
        raise combination(
            "EvaluationInterval cannot be specified for alarms configured with MetricName or "
            "Metrics."
        )


def _check_evaluation_range(period: int, periods: int) -> None:
    """PutMetricAlarm, "Period": Period x EvaluationPeriods is at most seven days, and at most
    one day for a period under an hour."""
    limit = 604_800 if period >= 3600 else 86_400
    if period * periods > limit:
        raise invalid(
            f"The evaluation range (Period {period} x EvaluationPeriods {periods} = "
            f"{period * periods} s) must be at most {limit} s"
            + ("" if period >= 3600 else " for a period under an hour")
            + "."
        )


_PUBLIC_EXCLUDED = ("Tags",)


def _public(alarm: dict[str, Any]) -> dict[str, Any]:
    """An alarm as DescribeAlarms gives it: timestamps as datetimes, no stored-only keys."""
    timestamps = ("AlarmConfigurationUpdatedTimestamp", "StateUpdatedTimestamp",
                  "StateTransitionedTimestamp")  # fmt: skip
    doc = {k: v for k, v in alarm.items() if k not in _PUBLIC_EXCLUDED and v is not None}
    doc.update({k: _moment(alarm[k]) for k in timestamps if k in alarm})
    return doc


def _new_alarm(
    params: dict[str, Any], arn: str, now: float, existing: dict[str, Any] | None
) -> dict[str, Any]:
    """The stored alarm: the request's configuration; an update keeps the current state."""
    alarm: dict[str, Any] = {
        "ActionsEnabled": True,
        "OKActions": [],
        "AlarmActions": [],
        "InsufficientDataActions": [],
        "Dimensions": [],
        **{k: v for k, v in params.items() if k != "Tags"},
        "AlarmArn": arn,
        "AlarmConfigurationUpdatedTimestamp": now,
        "StateValue": INSUFFICIENT,
        "StateReason": "Unchecked: Initial alarm creation",
        "StateUpdatedTimestamp": now,
        "StateTransitionedTimestamp": now,
    }
    alarm["Threshold"] = float(alarm["Threshold"])
    if existing is not None:
        for key in ("StateValue", "StateReason", "StateReasonData", "StateUpdatedTimestamp",
                    "StateTransitionedTimestamp"):  # fmt: skip
            if key in existing:
                alarm[key] = existing[key]
    return alarm


def _state(alarm: dict[str, Any]) -> dict[str, Any]:
    state = {
        "value": alarm["StateValue"],
        "reason": alarm["StateReason"],
        "timestamp": _iso(alarm["StateUpdatedTimestamp"]),
    }
    if alarm.get("StateReasonData"):
        state["reasonData"] = alarm["StateReasonData"]
    return state


def _event_detail(before: dict[str, Any], after: dict[str, Any]) -> dict[str, Any]:
    """The ``detail`` of AWS's ``CloudWatch Alarm State Change`` event."""
    stat = after.get("Statistic") or after.get("ExtendedStatistic")
    metric = {
        "namespace": after["Namespace"],
        "name": after["MetricName"],
        "dimensions": {d["Name"]: d["Value"] for d in after["Dimensions"]},
    }
    configuration: dict[str, Any] = {
        "metrics": [
            {
                "id": "m1",
                "metricStat": {"metric": metric, "period": after["Period"], "stat": stat},
                "returnData": True,
            }
        ]
    }
    if "AlarmDescription" in after:
        configuration["description"] = after["AlarmDescription"]
    return {
        "alarmName": after["AlarmName"],
        "state": _state(after),
        "previousState": _state(before),
        "configuration": configuration,
    }


def _notification(before: dict[str, Any], after: dict[str, Any], topic: str) -> dict[str, Any]:
    """The SNS message CloudWatch publishes for an alarm action."""
    region, account = topic.split(":")[3:5]
    message = {
        "AlarmName": after["AlarmName"],
        "AlarmDescription": after.get("AlarmDescription"),
        "AWSAccountId": account,
        "AlarmConfigurationUpdatedTimestamp": _iso(after["AlarmConfigurationUpdatedTimestamp"]),
        "NewStateValue": after["StateValue"],
        "NewStateReason": after["StateReason"],
        "StateChangeTime": _iso(after["StateUpdatedTimestamp"]),
        "Region": region,
        "AlarmArn": after["AlarmArn"],
        "OldStateValue": before["StateValue"],
        "OKActions": after["OKActions"],
        "AlarmActions": after["AlarmActions"],
        "InsufficientDataActions": after["InsufficientDataActions"],
        "Trigger": {
            "MetricName": after["MetricName"],
            "Namespace": after["Namespace"],
            "StatisticType": "Statistic" if "Statistic" in after else "ExtendedStatistic",
            "Statistic": after.get("Statistic") or after.get("ExtendedStatistic"),
            "Unit": after.get("Unit"),
            "Dimensions": [{"value": d["Value"], "name": d["Name"]} for d in after["Dimensions"]],
            "Period": after["Period"],
            "EvaluationPeriods": after["EvaluationPeriods"],
            "DatapointsToAlarm": after.get("DatapointsToAlarm", after["EvaluationPeriods"]),
            "ComparisonOperator": after["ComparisonOperator"],
            "Threshold": after["Threshold"],
            "TreatMissingData": after.get("TreatMissingData", "missing"),
            "EvaluateLowSampleCountPercentile": after.get("EvaluateLowSampleCountPercentile", ""),
        },
    }
    subject = f'{after["StateValue"]}: "{after["AlarmName"]}" in {region}'
    return {"TopicArn": topic, "Subject": subject[:100], "Message": json.dumps(message)}
