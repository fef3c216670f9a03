"""A/B tests that conclude: the scheduled evaluation of every running test, and the manual
promote and end.

DeployModel (``deployment.strategy: ab``) starts a test: the production model stays as variant
``Champion`` beside the new ``Challenger`` and the test's record is written to
``s3://<bucket>/ab-tests/<endpoint>.json``. Each evaluation (an EventBridge schedule invokes this
function) reads every running record and, for each:

1. tallies each variant since the test started: its captured requests (SageMaker writes them
   per variant, ``data-capture/<endpoint>/<variant>/yyyy/mm/dd/hh/``) joined with the ground
   truth (capture_join.py, the data collection Lambda's join), and its ``Invocations``,
   ``Invocation5XXErrors`` and ``ModelLatency`` from CloudWatch (``AWS/SageMaker``, dimensions
   ``EndpointName`` and ``VariantName``; SageMaker Developer Guide, "Amazon SageMaker AI
   metrics in Amazon CloudWatch",
   https://docs.aws.amazon.com/sagemaker/latest/dg/monitoring-cloudwatch.html);
2. decides (verdict.py);
3. acts: a win moves ``step_percent`` more of the traffic to the challenger per evaluation
   (``UpdateEndpointWeightsAndCapacities``; SageMaker API Reference,
   https://docs.aws.amazon.com/sagemaker/latest/APIReference/API_UpdateEndpointWeightsAndCapacities.html)
   until it has it all; then, or at once on a loss, the endpoint is updated to a config of one
   variant, the winner, named ``AllTraffic`` (``CreateEndpointConfig`` + ``UpdateEndpoint``);
4. records the verdict in the registry on the challenger's version and the champion's (found
   in the challenger's group by its model archive) (``UpdateModelPackage``:
   ``ApprovalDescription`` and ``CustomerMetadataProperties``, whose values must match
   ``[\\p{L}\\p{Z}\\p{N}_.:/=+\\-@]*`` and have at most 256 characters; SageMaker API Reference,
   https://docs.aws.amazon.com/sagemaker/latest/APIReference/API_UpdateModelPackage.html); a
   retired challenger is ``Rejected`` with the reason; the champion's status stays.

Nothing here reads a clock or makes a client: the handler passes both in.
"""

from __future__ import annotations

import json
import math
import unicodedata
import uuid
from collections import Counter
from collections.abc import Callable
from datetime import UTC, datetime, timedelta
from typing import Any

import capture_join
import verdict as decision
from botocore.exceptions import ClientError

STATE_PREFIX = "ab-tests/"
GROUND_TRUTH_PREFIX = "ground-truth/"
CHAMPION, CHALLENGER, SINGLE = "Champion", "Challenger", "AllTraffic"
TESTING, SHIFTING, DONE = "testing", "shifting", "done"
NAMESPACE = "AWS/SageMaker"
#: GetMetricStatistics returns at most 1,440 datapoints (CloudWatch API Reference,
#: https://docs.aws.amazon.com/AmazonCloudWatch/latest/APIReference/API_GetMetricStatistics.html).
MAX_DATAPOINTS = 1440
METADATA_MAX = 256
#: How many of the group's newest versions are searched for the champion's.
MAX_SCANNED = 50
_METADATA_EXTRA = set("_.:/=+-@")


class ABTestError(Exception):
    """No such test, or one that cannot take the action asked (names the endpoint)."""


def state_key(endpoint: str) -> str:
    return f"{STATE_PREFIX}{endpoint}.json"


def iso(moment: datetime) -> str:
    return moment.astimezone(UTC).strftime("%Y-%m-%dT%H:%M:%S.%fZ")


def parse_time(text: str) -> datetime:
    return datetime.fromisoformat(text.replace("Z", "+00:00"))


class Overtaken(Exception):
    """Another evaluation (the schedule's, or a decision by hand) changed the test's record
    since this one read it: this one acts on nothing and writes nothing."""


def _revision(state: dict[str, Any]) -> tuple[Any, Any]:
    """What tells one writing of a record from another: its start and its revision."""
    return state.get("started"), state.get("revision")


def _check(s3: Any, bucket: str, state: dict[str, Any], read: tuple[Any, Any]) -> None:
    """Raise Overtaken when the stored record is no longer the one read. Evaluations can run at
    once (a scheduled one and `sfn-mlops endpoints end`); this read just before acting or
    writing keeps a slow one from undoing a quick one's decision."""
    if _revision(load(s3, bucket, state["endpoint"])) != read:
        raise Overtaken(f"the A/B test on {state['endpoint']} changed meanwhile")


def _save(s3: Any, bucket: str, state: dict[str, Any]) -> None:
    state["revision"] = uuid.uuid4().hex
    s3.put_object(
        Bucket=bucket,
        Key=state_key(state["endpoint"]),
        Body=json.dumps(state, indent=2).encode(),
        ContentType="application/json",
    )


def load(s3: Any, bucket: str, endpoint: str) -> dict[str, Any]:
    keys = capture_join.list_keys(s3, bucket, state_key(endpoint))
    if state_key(endpoint) not in keys:
        raise ABTestError(
            f"endpoint {endpoint} has no A/B test (no s3://{bucket}/"
            f"{state_key(endpoint)}); deploy with deployment.strategy=ab"
        )
    body = s3.get_object(Bucket=bucket, Key=state_key(endpoint))["Body"].read()
    return dict(json.loads(body))


def running(s3: Any, bucket: str) -> list[str]:
    """The endpoints whose test has not ended."""
    names = []
    for key in capture_join.list_keys(s3, bucket, STATE_PREFIX):
        if key.endswith(".json"):
            state = json.loads(s3.get_object(Bucket=bucket, Key=key)["Body"].read())
            if state.get("phase") != DONE:
                names.append(str(state["endpoint"]))
    return names


# ------------------------------------------------------------------ the tally


def _hour_folder(key: str, prefix: str) -> str:
    """``yyyy/mm/dd/hh`` of a capture key under ``<prefix>`` ('' when not in that layout)."""
    parts = key.removeprefix(prefix).split("/")
    return "/".join(parts[:4]) if len(parts) >= 5 else ""


def _outcome(problem_type: str, prediction: list[str], label: str) -> float | None:
    """Regression: |prediction - label|; classification: 1.0 when the predicted class (a
    probability at or above 0.5 for binary, the arg max of a probability vector, or the class
    itself) is the label, else 0.0. None for what cannot be read."""
    try:
        truth = float(label)
        values = [float(v) for v in prediction]
    except ValueError:
        return None
    if not values or not math.isfinite(truth) or not all(math.isfinite(v) for v in values):
        return None
    if problem_type == decision.REGRESSION:
        return abs(values[0] - truth)
    if len(values) > 1:
        predicted = float(max(range(len(values)), key=values.__getitem__))
    elif problem_type == "binary":
        predicted = 1.0 if values[0] >= 0.5 else 0.0
    else:
        predicted = values[0]
    return 1.0 if predicted == truth else 0.0


def labelled_outcomes(
    s3: Any,
    bucket: str,
    state: dict[str, Any],
    variant: str,
    labels: dict[str, list[str]],
    counts: Counter[str],
) -> list[float]:
    """The variant's per-request outcomes since the test started."""
    started = parse_time(state["started"])
    # DeployModel captures each endpoint config under its own name (the test's config here)
    config = f"{state['config_name']}/" if state.get("config_name") else ""
    prefix = f"{capture_join.CAPTURE_ROOT}{config}{state['endpoint']}/{variant}/"
    first_hour = f"{started:%Y/%m/%d/%H}"
    outcomes: list[float] = []
    for key in capture_join.list_keys(s3, bucket, prefix):
        if not key.endswith(".jsonl") or _hour_folder(key, prefix) < first_hour:
            continue
        for line in s3.get_object(Bucket=bucket, Key=key)["Body"].iter_lines():
            if line.strip():
                _add(state, line, started, labels, counts, outcomes)
    return outcomes


def _add(
    state: dict[str, Any],
    line: bytes,
    started: datetime,
    labels: dict[str, list[str]],
    counts: Counter[str],
    outcomes: list[float],
) -> None:
    try:
        record = json.loads(line)
        metadata = record.get("eventMetadata") or {}
        when = parse_time(str(metadata["inferenceTime"]))
        rows = capture_join.output_rows(record["captureData"]["endpointOutput"])
    except (ValueError, KeyError, TypeError, AttributeError):
        counts["malformed_capture_lines"] += 1
        return
    if when < started.replace(microsecond=0):
        return  # served before the test (inferenceTime has whole seconds)
    found = capture_join.labels_of(labels, metadata)
    if found is None:
        counts["captures_without_ground_truth"] += 1
    elif len(found) != len(rows):
        counts["label_count_mismatches"] += 1
    else:
        for row, label in zip(rows, found, strict=True):
            outcome = _outcome(state["problem_type"], row, label)
            if outcome is None:
                counts["unreadable_predictions_or_labels"] += 1
            else:
                outcomes.append(outcome)


def _metric(
    cloudwatch: Any,
    endpoint: str,
    variant: str,
    name: str,
    statistics: list[str],
    start: datetime,
    end: datetime,
) -> list[dict[str, Any]]:
    seconds = max((end - start).total_seconds(), 60.0)
    period = max(60, math.ceil(seconds / MAX_DATAPOINTS / 60) * 60)
    answer = cloudwatch.get_metric_statistics(
        Namespace=NAMESPACE,
        MetricName=name,
        Dimensions=[
            {"Name": "EndpointName", "Value": endpoint},
            {"Name": "VariantName", "Value": variant},
        ],
        StartTime=start,
        EndTime=end,
        Period=period,
        Statistics=statistics,
    )
    return list(answer.get("Datapoints", []))


def cloudwatch_numbers(
    cloudwatch: Any, endpoint: str, variant: str, start: datetime, end: datetime
) -> dict[str, Any]:
    """Invocations, Invocation5XXErrors (sums) and ModelLatency (mean, microseconds)."""
    # to a minute past now: the current minute's datapoints count (a timestamp sent with whole
    # seconds would otherwise end the window before them); CloudWatch accepts a future EndTime
    end = max(end, start) + timedelta(seconds=60)
    sums = {
        name: int(
            sum(p["Sum"] for p in _metric(cloudwatch, endpoint, variant, name, ["Sum"], start, end))
        )
        for name in ("Invocations", "Invocation5XXErrors")
    }
    points = _metric(
        cloudwatch, endpoint, variant, "ModelLatency", ["Average", "SampleCount"], start, end
    )
    count = sum(p["SampleCount"] for p in points)
    latency = sum(p["Average"] * p["SampleCount"] for p in points) / count if count else None
    return {
        "invocations": sums["Invocations"],
        "errors_5xx": sums["Invocation5XXErrors"],
        "model_latency_us": latency,
    }


def tally(
    s3: Any,
    cloudwatch: Any,
    *,
    bucket: str,
    state: dict[str, Any],
    weights: dict[str, float],
    now: datetime,
) -> tuple[dict[str, decision.VariantTally], Counter[str]]:
    labels, counts = capture_join.ground_truth(
        s3, bucket, f"{GROUND_TRUTH_PREFIX}{state['endpoint']}/"
    )
    started = parse_time(state["started"])
    tallies = {}
    for role in ("champion", "challenger"):
        variant = state[role]["variant"]
        tallies[role] = decision.VariantTally(
            name=variant,
            model=state[role]["model"],
            weight=weights.get(variant, 0.0),
            outcomes=labelled_outcomes(s3, bucket, state, variant, labels, counts),
            **cloudwatch_numbers(cloudwatch, state["endpoint"], variant, started, now),
        )
    return tallies, counts


# ------------------------------------------------------------------ acting


def _weights(endpoint: dict[str, Any]) -> dict[str, float]:
    return {
        v["VariantName"]: float(v.get("CurrentWeight", v.get("DesiredWeight", 0.0)))
        for v in endpoint.get("ProductionVariants", [])
    }


def challenger_share(weights: dict[str, float]) -> float:
    total = sum(weights.values())
    return weights.get(CHALLENGER, 0.0) / total if total else 0.0


def shift(sagemaker: Any, state: dict[str, Any], weights: dict[str, float]) -> float | None:
    """One step of the traffic towards the challenger; returns its new share, or None when the
    step would give it all (then it replaces the champion instead)."""
    share = challenger_share(weights) + int(state["settings"]["step_percent"]) / 100
    if share >= 1 - 1e-9:
        return None
    share = round(share, 4)
    sagemaker.update_endpoint_weights_and_capacities(
        EndpointName=state["endpoint"],
        DesiredWeightsAndCapacities=[
            {"VariantName": CHAMPION, "DesiredWeight": round(1 - share, 4)},
            {"VariantName": CHALLENGER, "DesiredWeight": share},
        ],
    )
    return share


def single_variant(sagemaker: Any, state: dict[str, Any], winner: str) -> str:
    """Update the endpoint to one variant, the winner's model (``AllTraffic``, the name the
    stack's alarms watch), with the test's data capture; returns the new config's name."""
    endpoint = sagemaker.describe_endpoint(EndpointName=state["endpoint"])
    config = sagemaker.describe_endpoint_config(EndpointConfigName=endpoint["EndpointConfigName"])
    variant = next(v for v in config["ProductionVariants"] if v["VariantName"] == winner)
    suffix = "-ab-won" if winner == CHALLENGER else "-ab-kept"
    name = state["config_name"][: 63 - len(suffix)] + suffix
    request: dict[str, Any] = {
        "EndpointConfigName": name,
        "ProductionVariants": [
            {
                "VariantName": SINGLE,
                "ModelName": variant["ModelName"],
                "InitialInstanceCount": variant.get("InitialInstanceCount", 1),
                "InstanceType": variant["InstanceType"],
                "InitialVariantWeight": 1.0,
            }
        ],
    }
    if config.get("DataCaptureConfig"):
        request["DataCaptureConfig"] = config["DataCaptureConfig"]
    try:
        sagemaker.create_endpoint_config(**request)
    except ClientError as error:  # a repeat after a lost answer: the config is this one
        if "already exist" not in error.response["Error"]["Message"]:
            raise
    sagemaker.update_endpoint(EndpointName=state["endpoint"], EndpointConfigName=name)
    return name


def metadata_value(text: str) -> str:
    """``text`` as CustomerMetadataProperties takes it: letters, separators, digits and
    ``_.:/=+-@`` only (others become spaces), at most 256 characters."""
    kept = "".join(
        c if unicodedata.category(c)[0] in "LZN" or c in _METADATA_EXTRA else " " for c in text
    )
    return " ".join(kept.split())[:METADATA_MAX] or "none"


def mark_registry(sagemaker: Any, state: dict[str, Any], won: bool, reason: str) -> bool:
    """The verdict on both versions: the challenger's (Rejected when retired) and the
    champion's, when the registry holds it; False when the challenger has none (deployed by
    hand)."""
    arn = state["challenger"].get("model_package_arn")
    if not arn:
        return False
    verdict = state.get("verdict") or {}
    common = {
        "ab_endpoint": state["endpoint"],
        "ab_reason": metadata_value(reason),
        "ab_decided_at": metadata_value(str(verdict.get("at", ""))),
        "ab_winner_model": metadata_value(state["challenger" if won else "champion"]["model"]),
    }
    if verdict.get("p_value") is not None:
        common["ab_p_value"] = f"{float(verdict['p_value']):.6g}"
    text = ("Won" if won else "Retired in") + f" the A/B test on {state['endpoint']}: {reason}"
    request: dict[str, Any] = {
        "ModelPackageArn": arn,
        "ApprovalDescription": text[:1024],
        "CustomerMetadataProperties": {"ab_verdict": "won" if won else "retired", **common},
    }
    if not won:
        request["ModelApprovalStatus"] = "Rejected"
    sagemaker.update_model_package(**request)
    champion = state["champion"].get("model_package_arn") or champion_version(sagemaker, state)
    if champion:
        state["champion"]["model_package_arn"] = champion
        # Its own keys (a version may have won its own test before), and its status stays:
        # it served until now (replaced) or serves on (kept).
        sagemaker.update_model_package(
            ModelPackageArn=champion,
            CustomerMetadataProperties={
                "ab_champion_verdict": "replaced" if won else "kept",
                "ab_champion_endpoint": common["ab_endpoint"],
                "ab_champion_reason": common["ab_reason"],
                "ab_champion_decided_at": common["ab_decided_at"],
            },
        )
    return True


def champion_version(sagemaker: Any, state: dict[str, Any], scan: int = MAX_SCANNED) -> str | None:
    """The champion's registered version: in the challenger's group, the newest of the last
    ``scan`` versions whose model archive is the champion model's (the test's record names the
    model; the registry knows archives). None for a model the registry does not hold."""
    challenger = state["challenger"]["model_package_arn"]
    group = sagemaker.describe_model_package(ModelPackageName=challenger)["ModelPackageGroupName"]
    try:
        model = sagemaker.describe_model(ModelName=state["champion"]["model"])
    except ClientError:
        return None  # deleted since: nothing to match
    archive = (model.get("PrimaryContainer") or model["Containers"][0]).get("ModelDataUrl")
    pages = sagemaker.get_paginator("list_model_packages").paginate(
        ModelPackageGroupName=group, SortBy="CreationTime", SortOrder="Descending",
        PaginationConfig={"MaxItems": scan},
    )  # fmt: skip
    for page in pages:
        for summary in page["ModelPackageSummaryList"]:
            if summary["ModelPackageArn"] == challenger:
                continue
            package = sagemaker.describe_model_package(ModelPackageName=summary["ModelPackageArn"])
            containers = package.get("InferenceSpecification", {}).get("Containers", [])
            if containers and containers[0].get("ModelDataUrl") == archive:
                return str(summary["ModelPackageArn"])
    return None


# ------------------------------------------------------------------ one test, one evaluation


def _record(state: dict[str, Any], now: datetime, event: str) -> None:
    state["history"] = [*state.get("history", []), {"at": iso(now), "event": event}][-50:]


def _finish(sagemaker: Any, state: dict[str, Any], now: datetime, won: bool, reason: str) -> str:
    config = single_variant(sagemaker, state, CHALLENGER if won else CHAMPION)
    marked = mark_registry(sagemaker, state, won, reason)
    state["phase"] = DONE
    state["final_config"] = config
    state["ended"] = iso(now)
    winner = "the challenger replaced the champion" if won else "the champion stays"
    _record(
        state,
        now,
        f"{winner}: one variant ({config})" + ("; the registry says so" if marked else ""),
    )
    return f"{winner} (endpoint config {config})"


def _decide(state: dict[str, Any], verdict: decision.Verdict, now: datetime, by: str) -> None:
    state["verdict"] = {
        "action": verdict.action,
        "reason": verdict.reason,
        "p_value": verdict.test.p_value if verdict.test else None,
        "test": verdict.test.name if verdict.test else None,
        "at": iso(now),
        "by": by,
    }
    _record(state, now, f"verdict ({by}): {verdict.action}: {verdict.reason}")


def status(
    state: dict[str, Any],
    tallies: dict[str, decision.VariantTally],
    counts: Counter[str],
    note: str,
) -> dict[str, Any]:
    """The running tally as the CLI shows it."""
    problem = state["problem_type"]
    current = None
    champion, challenger = tallies.get("champion"), tallies.get("challenger")
    if champion and challenger and champion.n >= 2 and challenger.n >= 2:
        current = decision.compare(problem, champion, challenger)
    variants = [
        {
            "variant": t.name,
            "model": t.model,
            "weight": t.weight,
            "labelled": t.n,
            "metric": t.metric(),
            "invocations": t.invocations,
            "errors_5xx": t.errors_5xx,
            "model_latency_us": t.model_latency_us,
        }
        for t in tallies.values()
    ]
    return {
        "endpoint": state["endpoint"],
        "phase": state["phase"],
        "started": state["started"],
        "problem_type": problem,
        "metric": decision.METRICS[problem][0],
        "test": current.name if current else None,
        "p_value": current.p_value if current else None,
        "alpha_per_look": decision.per_look_alpha(state["settings"]),
        "looks_done": state.get("looks_done", 0),
        "max_looks": state["settings"]["max_looks"],
        # an ended test shows its last tally (kept in its record)
        "variants": variants or state.get("tally", []),
        "verdict": state.get("verdict"),
        "next": note,
        "skipped": dict(counts),
        "history": state.get("history", []),
    }


def _described(sagemaker: Any, endpoint: str) -> dict[str, Any] | None:
    """DescribeEndpoint; None when the endpoint is gone (SageMaker answers an unknown endpoint
    with ValidationException "Could not find endpoint ...": SageMaker API Reference,
    DescribeEndpoint, https://docs.aws.amazon.com/sagemaker/latest/APIReference/API_DescribeEndpoint.html)."""
    try:
        return dict(sagemaker.describe_endpoint(EndpointName=endpoint))
    except ClientError as error:
        if error.response["Error"]["Code"] == "ValidationException":
            return None
        raise


def evaluate(
    s3: Any,
    sagemaker: Any,
    cloudwatch: Any,
    *,
    bucket: str,
    endpoint: str,
    now: datetime,
    action: str = "evaluate",
) -> dict[str, Any]:
    """One evaluation of the test on ``endpoint``: ``evaluate`` (the schedule: decide and
    act), ``status`` (the tally and what the next evaluation would do, nothing changed),
    ``promote`` or ``end`` (decide by hand: the challenger wins, or is retired)."""
    state = load(s3, bucket, endpoint)
    read = _revision(state)
    if state["phase"] == DONE:
        if action in ("promote", "end"):
            raise ABTestError(f"the A/B test on {endpoint} has ended: {state['verdict']}")
        return status(state, {}, Counter(), "the test has ended")
    described = _described(sagemaker, endpoint)
    if described is None or described["EndpointConfigName"] != state["config_name"]:
        serves = "nothing" if described is None else described["EndpointConfigName"]
        if action != "status":
            state["phase"] = DONE
            _record(
                state,
                now,
                f"ended: the endpoint now serves {serves}"
                " (deleted, or another deployment replaced the test's config)",
            )
            _check(s3, bucket, state, read)
            _save(s3, bucket, state)
        return status(state, {}, Counter(), f"the test has ended: the endpoint serves {serves}")
    weights = _weights(described)
    tallies, counts = tally(s3, cloudwatch, bucket=bucket, state=state, weights=weights, now=now)
    if action != "status":
        state["tally"] = status(state, tallies, counts, "")["variants"]
    verdict = _verdict_now(state, tallies, now, action)
    if action == "status":
        return status(state, tallies, counts, _preview(state, verdict))
    if described["EndpointStatus"] != "InService":
        return status(
            state,
            tallies,
            counts,
            f"the endpoint is {described['EndpointStatus']}: the next evaluation acts",
        )
    try:
        _check(s3, bucket, state, read)  # the tally took a while: still the test it read?
    except Overtaken as overtaken:
        if action in ("promote", "end"):
            raise ABTestError(f"{overtaken}: look at `ab-status` and decide again") from None
        return status(state, tallies, counts, f"{overtaken}: this evaluation did nothing")
    note = _act(s3, sagemaker, bucket, state, verdict, weights, now, action)
    return status(state, tallies, counts, note)


def _verdict_now(
    state: dict[str, Any], tallies: dict[str, decision.VariantTally], now: datetime, action: str
) -> decision.Verdict:
    champion, challenger = tallies["champion"], tallies["challenger"]
    if action == "promote":
        return decision.Verdict(
            "promote",
            "promoted by hand",
            state.get("looks_done", 0),
            None,
            "traffic moves to the challenger step by step",
        )
    if action == "end":
        return decision.Verdict(
            "retire", "ended by hand", state.get("looks_done", 0), None, "the challenger is retired"
        )
    if state["phase"] == SHIFTING:
        troubled = decision.issues(state["settings"], champion, challenger, state["looks_done"])
        if troubled is not None:
            return troubled
        return decision.Verdict(
            "promote",
            state["verdict"]["reason"],
            state["looks_done"],
            None,
            "traffic moves to the challenger step by step",
        )
    return decision.decide(
        state["problem_type"],
        state["settings"],
        champion,
        challenger,
        started=parse_time(state["started"]),
        now=now,
        looks_done=int(state.get("looks_done", 0)),
    )


def _preview(state: dict[str, Any], verdict: decision.Verdict) -> str:
    if verdict.action == "wait":
        return verdict.next_step
    if state["phase"] == SHIFTING and verdict.action == "promote":
        return f"shifting: the next evaluation moves {state['settings']['step_percent']} % more"
    return f"the next evaluation decides: {verdict.action} ({verdict.reason})"


def _act(
    s3: Any,
    sagemaker: Any,
    bucket: str,
    state: dict[str, Any],
    verdict: decision.Verdict,
    weights: dict[str, float],
    now: datetime,
    action: str,
) -> str:
    by = "hand" if action in ("promote", "end") else "evaluation"
    state["looks_done"] = max(int(state.get("looks_done", 0)), verdict.look)
    if verdict.action == "wait":
        _save(s3, bucket, state)
        return verdict.next_step
    if verdict.action == "retire":
        if state["phase"] == SHIFTING and by == "evaluation":
            _record(state, now, f"shift stopped: {verdict.reason}")
        _decide(state, verdict, now, by)
        note = _finish(sagemaker, state, now, False, verdict.reason)
        _save(s3, bucket, state)
        return note
    if state["phase"] == TESTING:
        _decide(state, verdict, now, by)
        state["phase"] = SHIFTING
    share = shift(sagemaker, state, weights)
    if share is None:
        note = _finish(sagemaker, state, now, True, state["verdict"]["reason"])
    else:
        _record(state, now, f"shifted: the challenger takes {share:.0%} of the traffic")
        note = f"the challenger takes {share:.0%}; the next evaluation moves more"
    _save(s3, bucket, state)
    return note


def evaluate_all(
    s3: Any, sagemaker: Any, cloudwatch: Any, *, bucket: str, now: datetime,
    turn_off: Callable[[], None] | None = None,
) -> list[dict[str, Any]]:  # fmt: skip
    """The schedule's work: one evaluation of every running test; then, when none is left
    running, ``turn_off`` (the schedule's DisableRule: DeployModel turns it on again)."""
    results, failed = [], []
    for name in running(s3, bucket):
        try:
            results.append(
                evaluate(s3, sagemaker, cloudwatch, bucket=bucket, endpoint=name, now=now)
            )
        except (ClientError, ABTestError) as error:  # the others are still evaluated
            failed.append(f"{name}: {type(error).__name__}: {error}")
    if failed:
        raise ABTestError("; ".join(failed))
    if turn_off is not None and not any(r["phase"] != DONE for r in results):
        turn_off()
    return results
