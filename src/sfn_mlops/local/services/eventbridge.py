"""Amazon EventBridge: rules on the default event bus, their targets, events and schedules.

Rules (with their targets) are documents in the shared metadata store, so every process of a
workspace sees the same rules. An event - from PutEvents, or from another local service through
``emit`` (CloudWatch alarm state changes, SageMaker model package state changes) - is matched
against every ENABLED rule's pattern (``sfn_mlops.local.event_patterns``) and handed to a
delivery thread: PutEvents never waits for a target, and a failing target is logged and recorded,
never raised to the sender, as in AWS. Each delivery attempt is appended to the
``eventbridge/delivery`` stream (``deliveries(cloud)``) so tests and the CLI can see it.

Targets are the local Lambda (invoked asynchronously, InvocationType ``Event``), Step Functions
(StartExecution) and SNS (Publish); any other target ARN is rejected at PutTargets rather than
silently dropped. ``Input``, ``InputPath`` (``$.a.b[0]`` paths) and ``InputTransformer`` shape
what a target receives.

Schedules: ``rate(N minute|minutes|hour|hours|day|days)`` rules fire from a daemon thread
(``start``/``shutdown``; started by the first PutRule of a schedule) every ``N * unit *
time_scale`` seconds of wall time (at least 50 ms), delivering the ``Scheduled Event`` envelope
to that rule's own targets. ``cron(...)`` rules (``sfn_mlops.local.cron``: EventBridge's
fields, wildcards and rules; an invalid one is PutRule's ValidationException "Parameter
ScheduleExpression is not valid.") fire at their times, in UTC, from the same thread: with
``time_scale`` 1 at the cron times themselves; with a scale s < 1 (tests), local time starts
when the scheduler first sees the rule and runs 1/s times as fast, so the firing at cron time t
comes ``(t - now) * s`` seconds of wall time later (an hourly rule then fires every 3600 * s
seconds); the event's ``time`` is the cron time.
"""

from __future__ import annotations

import datetime as dt
import json
import logging
import queue
import re
import threading
import time
import uuid
from dataclasses import dataclass
from typing import Any

from sfn_mlops.local import cron
from sfn_mlops.local.errors import AwsError, validation
from sfn_mlops.local.event_patterns import InvalidEventPattern, check_pattern, matches

log = logging.getLogger("sfn_mlops.local.eventbridge")

RULES = "eventbridge/rule"
DELIVERIES = "eventbridge/delivery"
DEFAULT_BUS = "default"
MAX_TARGETS_PER_RULE = 5
SCHEDULED_EVENT = "Scheduled Event"
_MIN_INTERVAL = 0.05
_MAX_TICK = 1.0
_RATE = re.compile(r"^rate\((\d+) (minute|minutes|hour|hours|day|days)\)$")
_UNIT_SECONDS = {"minute": 60, "hour": 3600, "day": 86400}
_PATH_STEP = re.compile(r"\.([A-Za-z0-9_$@-]+)|\[(\d+)\]")
_TARGET_SERVICES = ("lambda", "states", "sns")
_ENVELOPE_FIELDS = ("id", "account", "source", "time", "region", "detail-type")


def not_found(message: str) -> AwsError:
    return AwsError("ResourceNotFoundException", message)


def invalid_pattern(err: Exception) -> AwsError:
    return AwsError("InvalidEventPatternException", f"Event pattern is not valid. Reason: {err}")


# pure helpers -----------------------------------------------------------------------------
def check_schedule(expression: str) -> cron.Cron | None:
    """A valid schedule expression's cron (None for a rate), or AWS's ValidationException."""
    if not expression.startswith("cron("):
        schedule_interval(expression)
        return None
    try:
        return cron.parse(expression)
    except ValueError as err:
        log.info("invalid schedule expression %r: %s", expression, err)
        raise validation("Parameter ScheduleExpression is not valid.") from err


def schedule_interval(expression: str) -> float:
    """Seconds between two firings of a rate expression (before the time scale)."""
    found = _RATE.match(expression)
    if found is None:
        raise validation("Parameter ScheduleExpression is not valid.")
    value, unit = int(found.group(1)), found.group(2)
    if value < 1 or (value == 1) == unit.endswith("s"):  # AWS: rate(1 minute), rate(5 minutes)
        raise validation("Parameter ScheduleExpression is not valid.")
    return float(value * _UNIT_SECONDS[unit.rstrip("s")])


def parse_path(path: str) -> list[str | int]:
    """The steps of a JSONPath such as ``$.detail.items[0]`` (the subset EventBridge uses)."""
    if not path.startswith("$"):
        raise validation(f"Invalid JSONPath {path!r}: it must start with $")
    steps: list[str | int] = []
    position = 1
    while position < len(path):
        found = _PATH_STEP.match(path, position)
        if found is None:
            raise validation(f"Invalid JSONPath {path!r} at character {position}")
        steps.append(found.group(1) if found.group(1) is not None else int(found.group(2)))
        position = found.end()
    return steps


def select(document: Any, path: str) -> Any:
    """The value at ``path`` in ``document``, or None where the path leads nowhere."""
    value = document
    for step in parse_path(path):
        if isinstance(step, int):
            value = value[step] if isinstance(value, list) and step < len(value) else None
        else:
            value = value.get(step) if isinstance(value, dict) else None
        if value is None:
            return None
    return value


def envelope(
    cloud: Any, source: str, detail_type: str, detail: Any, resources: list[str], when: float
) -> dict[str, Any]:
    """The event as rules match it and targets receive it (AWS's envelope, version 0)."""
    return {
        "version": "0",
        "id": str(uuid.uuid4()),
        "detail-type": detail_type,
        "source": source,
        "account": cloud.account,
        "time": dt.datetime.fromtimestamp(when, tz=dt.timezone.utc).strftime("%Y-%m-%dT%H:%M:%SZ"),
        "region": cloud.region,
        "resources": list(resources),
        "detail": detail,
    }


def transform(target: dict[str, Any], event: dict[str, Any], rule: dict[str, Any]) -> str:
    """The text a target receives: the event, its Input, its InputPath or its template."""
    if "Input" in target:
        return str(target["Input"])
    if "InputPath" in target:
        return json.dumps(select(event, target["InputPath"]))
    if "InputTransformer" in target:
        return _fill_template(target["InputTransformer"], event, rule)
    return json.dumps(event)


def _fill_template(transformer: dict[str, Any], event: dict[str, Any], rule: dict[str, Any]) -> str:
    """``<name>`` placeholders replaced: strings as their text (so ``"<name>"`` stays valid
    JSON), other values as JSON, and a path that leads nowhere as an empty string."""
    values = {
        name: select(event, path) for name, path in transformer.get("InputPathsMap", {}).items()
    }
    values |= {
        "aws.events.rule-arn": rule["Arn"],
        "aws.events.rule-name": rule["Name"],
        "aws.events.event.ingestion-time": event["time"],
        "aws.events.event": event,
        "aws.events.event.json": event,
    }

    def text(found: re.Match[str]) -> str:
        name = found.group(1)
        if name not in values:
            return found.group(0)
        value = values[name]
        if value is None:
            return ""
        if isinstance(value, str):
            return json.dumps(value)[1:-1]
        return json.dumps(value)

    return re.sub(r"<([A-Za-z0-9_.-]+)>", text, str(transformer["InputTemplate"]))


def _target_service(arn: str) -> str:
    parts = arn.split(":")
    return parts[2] if len(parts) >= 6 and parts[0] == "arn" else ""


def _rule_view(rule: dict[str, Any]) -> dict[str, Any]:
    """A stored rule as DescribeRule and ListRules answer it (no targets, no bookkeeping)."""
    keys = ("Name", "Arn", "EventPattern", "ScheduleExpression", "State", "Description")
    view = {key: rule[key] for key in (*keys, "RoleArn") if key in rule}
    view["EventBusName"] = DEFAULT_BUS
    return view


def _page(items: list[Any], params: dict[str, Any], limit: int) -> tuple[list[Any], str | None]:
    start = int(params.get("NextToken") or 0)
    size = int(params.get("Limit") or limit)
    end = start + size
    return items[start:end], (str(end) if end < len(items) else None)


@dataclass(frozen=True)
class _Delivery:
    """One event on its way to the targets of one rule."""

    event: dict[str, Any]
    rule: dict[str, Any]


class EventBridge:
    """PutRule ... TestEventPattern on the default bus, ``emit`` for the other local services."""

    def __init__(self, cloud: Any, *, background: bool = True) -> None:
        self.cloud = cloud
        self.db = cloud.metadata
        self.background = background
        self._lock = threading.Lock()
        self._queue: queue.Queue[_Delivery | None] = queue.Queue()
        self._sender: threading.Thread | None = None
        self._stop = threading.Event()
        self._scheduler: threading.Thread | None = None
        self._timers: dict[str, cron.ScaledTimer] = {}  # cron rules, by name

    # the bus and its rules -------------------------------------------------------------------
    def _bus(self, params: dict[str, Any], key: str = "EventBusName") -> None:
        name = params.get(key) or DEFAULT_BUS
        if name not in (DEFAULT_BUS, self.cloud.arn("events", f"event-bus/{DEFAULT_BUS}")):
            raise not_found(
                f"Event bus {name} does not exist. (sfn-mlops local mode has only the default bus)"
            )

    def _rule(self, name: str) -> dict[str, Any]:
        rule = self.db.get(RULES, name)
        if rule is None:
            raise not_found(f"Rule {name} does not exist on EventBus {DEFAULT_BUS}.")
        return rule

    def put_rule(self, params: dict[str, Any]) -> dict[str, Any]:
        self._bus(params)
        pattern, schedule = params.get("EventPattern"), params.get("ScheduleExpression")
        if pattern is None and schedule is None:
            raise validation("Parameter(s) EventPattern or ScheduleExpression must be specified.")
        if pattern is not None:
            _parsed_pattern(pattern)
        if schedule is not None:
            check_schedule(schedule)
        name = params["Name"]
        existing = self.db.get(RULES, name) or {}
        rule = {
            "Name": name,
            "Arn": self.cloud.arn("events", f"rule/{name}"),
            "State": params.get("State", "ENABLED"),
            "Targets": existing.get("Targets", []),
            "Created": existing.get("Created", time.time()),
        }
        optional = ("EventPattern", "ScheduleExpression", "Description", "RoleArn")
        rule |= {key: params[key] for key in optional if key in params}
        self.db.put(RULES, name, rule)
        if schedule is not None and self.background:
            self.start()
        return {"RuleArn": rule["Arn"]}

    def describe_rule(self, params: dict[str, Any]) -> dict[str, Any]:
        self._bus(params)
        return {**_rule_view(self._rule(params["Name"])), "CreatedBy": self.cloud.account}

    def list_rules(self, params: dict[str, Any]) -> dict[str, Any]:
        self._bus(params)
        prefix = params.get("NamePrefix", "")
        rules = sorted(
            (r for r in self.db.list(RULES) if r["Name"].startswith(prefix)),
            key=lambda r: str(r["Name"]),
        )
        page, token = _page(rules, params, 100)
        result: dict[str, Any] = {"Rules": [_rule_view(r) for r in page]}
        if token:
            result["NextToken"] = token
        return result

    def delete_rule(self, params: dict[str, Any]) -> dict[str, Any]:
        self._bus(params)
        rule = self.db.get(RULES, params["Name"])
        if rule is None:
            return {}  # AWS: deleting a rule that is gone succeeds
        if rule["Targets"]:
            raise validation("Rule can't be deleted since it has targets.")
        self.db.delete(RULES, params["Name"])
        return {}

    def enable_rule(self, params: dict[str, Any]) -> dict[str, Any]:
        return self._set_state(params, "ENABLED")

    def disable_rule(self, params: dict[str, Any]) -> dict[str, Any]:
        return self._set_state(params, "DISABLED")

    def _set_state(self, params: dict[str, Any], state: str) -> dict[str, Any]:
        self._bus(params)
        self._rule(params["Name"])
        self.db.update(RULES, params["Name"], State=state)
        return {}

    # targets ---------------------------------------------------------------------------------
    def put_targets(self, params: dict[str, Any]) -> dict[str, Any]:
        self._bus(params)
        rule = self._rule(params["Rule"])
        for target in params["Targets"]:
            _check_target(target)
        targets = {t["Id"]: t for t in rule["Targets"]}
        targets |= {t["Id"]: _stored_target(t) for t in params["Targets"]}
        if len(targets) > MAX_TARGETS_PER_RULE:
            raise AwsError(
                "LimitExceededException",
                f"The requested resource exceeds the maximum number allowed: a rule has at most "
                f"{MAX_TARGETS_PER_RULE} targets.",
            )
        self.db.update(RULES, rule["Name"], Targets=list(targets.values()))
        return {"FailedEntryCount": 0, "FailedEntries": []}

    def list_targets_by_rule(self, params: dict[str, Any]) -> dict[str, Any]:
        self._bus(params)
        page, token = _page(self._rule(params["Rule"])["Targets"], params, 100)
        result: dict[str, Any] = {"Targets": page}
        if token:
            result["NextToken"] = token
        return result

    def remove_targets(self, params: dict[str, Any]) -> dict[str, Any]:
        self._bus(params)
        rule = self._rule(params["Rule"])
        ids = set(params["Ids"])
        kept = [t for t in rule["Targets"] if t["Id"] not in ids]
        self.db.update(RULES, rule["Name"], Targets=kept)
        return {"FailedEntryCount": 0, "FailedEntries": []}

    # events ----------------------------------------------------------------------------------
    def put_events(self, params: dict[str, Any]) -> dict[str, Any]:
        results = [self._put_entry(entry) for entry in params["Entries"]]
        failed = sum(1 for r in results if "ErrorCode" in r)
        return {"FailedEntryCount": failed, "Entries": results}

    def _put_entry(self, entry: dict[str, Any]) -> dict[str, Any]:
        """One PutEvents entry: its event id, or AWS's per-entry error (the others still go)."""
        for member in ("Source", "DetailType", "Detail"):
            if not entry.get(member):
                return _entry_error(
                    "InvalidArgument",
                    f"Parameter {member} is not valid. Reason: {member} is a required argument.",
                )
        if entry["Source"].startswith("aws."):
            return _entry_error("NotAuthorizedForSourceException", "Not authorized for the source.")
        try:
            self._bus(entry)
        except AwsError as err:
            return _entry_error(err.code, err.message)
        try:
            detail = json.loads(entry["Detail"])
        except ValueError:
            return _entry_error("MalformedDetail", "Detail is malformed.")
        if not isinstance(detail, dict):
            return _entry_error("MalformedDetail", "Detail is malformed.")
        when = entry.get("Time")
        epoch = when.timestamp() if isinstance(when, dt.datetime) else time.time()
        event = envelope(
            self.cloud,
            entry["Source"],
            entry["DetailType"],
            detail,
            entry.get("Resources", []),
            epoch,
        )
        self._route(event)
        return {"EventId": event["id"]}

    def emit(self, source: str, detail_type: str, detail: dict, resources: list[str]) -> str:
        """Send an event from another local service (``aws.*`` sources allowed); its id."""
        event = envelope(self.cloud, source, detail_type, detail, resources, time.time())
        self._route(event)
        return str(event["id"])

    def test_event_pattern(self, params: dict[str, Any]) -> dict[str, Any]:
        pattern = _parsed_pattern(params["EventPattern"])
        try:
            event = json.loads(params["Event"])
        except ValueError as err:
            raise validation(f"Parameter Event is not valid. Reason: {err}") from err
        if not isinstance(event, dict):
            raise validation("Parameter Event is not valid. Reason: it must be a JSON object")
        missing = [field for field in _ENVELOPE_FIELDS if field not in event]
        if missing:
            raise validation(f"Parameter Event is not valid. Reason: missing {', '.join(missing)}")
        return {"Result": matches(pattern, event)}

    def _route(self, event: dict[str, Any]) -> None:
        """Queue the event for every enabled pattern rule it matches."""
        for rule in self.db.list(RULES):
            if rule["State"] != "ENABLED" or "EventPattern" not in rule or not rule["Targets"]:
                continue
            if matches(json.loads(rule["EventPattern"]), event):
                self._send(_Delivery(event, rule))

    # delivery ----------------------------------------------------------------------------------
    def _send(self, delivery: _Delivery) -> None:
        with self._lock:
            if self._sender is None or not self._sender.is_alive():
                self._sender = threading.Thread(
                    target=self._deliver_all, name="eventbridge-delivery", daemon=True
                )
                self._sender.start()
        self._queue.put(delivery)

    def _deliver_all(self) -> None:
        while (delivery := self._queue.get()) is not None:
            for target in delivery.rule["Targets"]:
                self._deliver(delivery, target)

    def _deliver(self, delivery: _Delivery, target: dict[str, Any]) -> None:
        """Hand the event to one target; record the outcome, whatever it is."""
        record: dict[str, Any] = {
            "EventId": delivery.event["id"],
            "Rule": delivery.rule["Name"],
            "TargetId": target["Id"],
            "TargetArn": target["Arn"],
            "Timestamp": time.time(),
        }
        try:
            payload = transform(target, delivery.event, delivery.rule)
            record["Input"] = payload
            self._authorize(delivery.rule, target, payload)
            record["Result"] = self._invoke(target["Arn"], payload)
            record["Status"] = "Delivered"
        except Exception as err:  # noqa: BLE001 - a failing target must not stop the others
            log.warning("event %s to %s failed: %s", delivery.event["id"], target["Arn"], err)
            record["Status"] = "Failed"
            record["Error"] = err.message if isinstance(err, AwsError) else str(err)
            record["ErrorCode"] = err.code if isinstance(err, AwsError) else type(err).__name__
        self.db.append(DELIVERIES, record)

    def _authorize(self, rule: dict[str, Any], target: dict[str, Any], payload: str) -> None:
        """EventBridge calls a target as the target's RoleArn, or as events.amazonaws.com with
        the rule as aws:SourceArn, which the target's resource policy (a Lambda permission) must
        allow (EventBridge User Guide, "Using resource-based policies for Amazon EventBridge"
        and "Using IAM roles to deliver events to targets")."""
        iam = self.cloud.authorization
        role = target.get("RoleArn")
        caller = iam.caller(role, "EventBridge") if role else iam.service("events.amazonaws.com")
        service, operation, params = _target_call(target["Arn"], payload)
        iam.authorize(caller, service, operation, params, **{"aws:SourceArn": rule["Arn"]})

    def _invoke(self, arn: str, payload: str) -> dict[str, Any]:
        service = _target_service(arn)
        if service == "lambda":
            answer = self.cloud.service("lambda").invoke(
                {"FunctionName": arn, "InvocationType": "Event", "Payload": payload.encode()}
            )
            return {"StatusCode": answer["StatusCode"]}
        if service == "states":
            started = self.cloud.service("sfn").start_execution(
                {"stateMachineArn": arn, "input": payload}
            )
            return {"executionArn": started["executionArn"]}
        if service == "sns":
            published = self.cloud.service("sns").publish({"TopicArn": arn, "Message": payload})
            return {"MessageId": published["MessageId"]}
        raise AwsError("NotImplemented", f"targets of {service!r} are not emulated locally")

    # schedules ---------------------------------------------------------------------------------
    def start(self) -> None:
        """Fire schedule rules from a daemon thread until ``shutdown`` (idempotent)."""
        with self._lock:
            if self._scheduler is not None and self._scheduler.is_alive():
                return
            self._stop.clear()
            self._scheduler = threading.Thread(
                target=self._run_schedules, name="eventbridge-schedules", daemon=True
            )
            self._scheduler.start()

    def shutdown(self) -> None:
        """Stop the scheduler and, once the queued events are delivered, the sender."""
        self._stop.set()
        if self._scheduler is not None:
            self._scheduler.join(5)
            self._scheduler = None
        with self._lock:
            sender, self._sender = self._sender, None
        if sender is not None and sender.is_alive():
            self._queue.put(None)
            sender.join(5)

    def _run_schedules(self) -> None:
        due: dict[str, float] = {}  # rule name -> monotonic time of its next firing
        tick = _MIN_INTERVAL
        while not self._stop.wait(tick):
            try:
                tick = self.fire_due_schedules(due, time.monotonic())
            except Exception:  # noqa: BLE001 - one bad round must not stop the schedules
                log.exception("schedule round failed")

    def fire_due_schedules(self, due: dict[str, float], now: float) -> float:
        """Fire every enabled schedule rule whose time has come; the wait until the next round.

        A rate rule seen for the first time fires one interval later (as a new rate rule does);
        a rule that fell behind fires once and starts over, rather than in a burst. A cron rule
        fires at its next cron time (``_fire_cron``).
        """
        waits: dict[str, float] = {}  # rule name -> the longest wait before its next round
        for rule in self.db.list(RULES):
            if rule["State"] != "ENABLED" or "ScheduleExpression" not in rule:
                continue
            if rule["ScheduleExpression"].startswith("cron("):
                waits[rule["Name"]] = self._fire_cron(rule, now)
                continue
            seconds = schedule_interval(rule["ScheduleExpression"]) * self.cloud.time_scale
            interval = max(seconds, _MIN_INTERVAL)
            waits[rule["Name"]] = interval / 4
            next_time = due.setdefault(rule["Name"], now + interval)
            if now >= next_time:
                due[rule["Name"]] = max(next_time + interval, now)
                self._fire(rule)
        for name in set(due) - set(waits):
            del due[name]  # deleted or disabled: a re-enabled rule starts a fresh interval
        for name in set(self._timers) - set(waits):
            del self._timers[name]
        return min([_MAX_TICK, *waits.values()])

    def _fire_cron(self, rule: dict[str, Any], now: float) -> float:
        """Fire a cron rule whose time has come (``cron.ScaledTimer``); the wait until its next."""
        expression, scale = rule["ScheduleExpression"], self.cloud.time_scale
        timer = self._timers.get(rule["Name"])
        if timer is None or timer.cron.expression != expression or timer.scale != scale:
            timer = cron.ScaledTimer(cron.parse(expression), scale, time.time(), now)
            self._timers[rule["Name"]] = timer
        due = timer.due()
        if due is not None and now >= due and timer.next is not None:
            self._fire(rule, timer.next.timestamp())
            timer.advance(now)
            due = timer.due()
        return _MAX_TICK if due is None else max(due - now, _MIN_INTERVAL / 10)

    def _fire(self, rule: dict[str, Any], when: float | None = None) -> None:
        if rule["Targets"]:
            event = envelope(
                self.cloud, "aws.events", SCHEDULED_EVENT, {}, [rule["Arn"]],
                time.time() if when is None else when,
            )  # fmt: skip
            self._send(_Delivery(event, rule))


def _parsed_pattern(text: str) -> dict[str, Any]:
    try:
        pattern = json.loads(text)
        check_pattern(pattern)
    except (ValueError, InvalidEventPattern) as err:
        raise invalid_pattern(err) from err
    return pattern  # type: ignore[no-any-return]


def _check_target(target: dict[str, Any]) -> None:
    """Reject, before storing, a target local mode could never deliver to."""
    shaping = [key for key in ("Input", "InputPath", "InputTransformer") if key in target]
    if len(shaping) > 1:
        raise validation(
            f"Only one of Input, InputPath, or InputTransformer may be set for target "
            f"{target['Id']}."
        )
    if "Input" in target:
        try:
            json.loads(target["Input"])
        except ValueError as err:
            raise validation(f"Input of target {target['Id']} is not valid JSON text.") from err
    if "InputPath" in target:
        parse_path(target["InputPath"])
    for path in target.get("InputTransformer", {}).get("InputPathsMap", {}).values():
        parse_path(path)
    service = _target_service(target["Arn"])
    if service not in _TARGET_SERVICES:
        raise validation(
            f"Target {target['Id']} ({target['Arn']}): sfn-mlops local mode delivers to Lambda "
            "functions, Step Functions state machines and SNS topics only"
        )


def _stored_target(target: dict[str, Any]) -> dict[str, Any]:
    keys = ("Id", "Arn", "RoleArn", "Input", "InputPath", "InputTransformer")
    return {key: target[key] for key in keys if key in target}


def _entry_error(code: str, message: str) -> dict[str, Any]:
    return {"ErrorCode": code, "ErrorMessage": message}


def _target_call(arn: str, payload: str) -> tuple[str, str, dict[str, Any]]:
    """The API call EventBridge makes to deliver to ``arn``: (botocore service, operation,
    parameters), for IAM."""
    service = _target_service(arn)
    if service == "lambda":
        return "lambda", "Invoke", {"FunctionName": arn, "InvocationType": "Event"}
    if service == "states":
        return "stepfunctions", "StartExecution", {"stateMachineArn": arn, "input": payload}
    return "sns", "Publish", {"TopicArn": arn, "Message": payload}


def deliveries(cloud: Any, after: int = 0) -> list[dict[str, Any]]:
    """Every delivery attempt of the local EventBridge, oldest first."""
    return list(cloud.metadata.read(DELIVERIES, after))
