"""The retraining and monitoring set-up Lambdas' domain code against the local services.

Each function folder is its own import root, as in Lambda; the clients are plain boto3 pointed
at the test's local server, so what Step Functions and CloudWatch accept and answer is the local
service's, which follows AWS's.
"""

from __future__ import annotations

import datetime as dt
import importlib
import io
import json
import re
import sys
import threading
import time
from pathlib import Path
from types import ModuleType, SimpleNamespace
from typing import Any

import boto3
import pytest

from sfn_mlops.local.cloud import LocalCloud

LAMBDAS = Path(__file__).resolve().parents[2] / "lambdas"
#: Waits $.wait seconds (scaled by the test's time_scale): 0 ends at once, 1_000_000 keeps
#: running (an integer: a SecondsPath of 1e6, a float, fails the execution, as in AWS).
WAITING = {"StartAt": "W", "States": {"W": {"Type": "Wait", "SecondsPath": "$.wait", "End": True}}}
CONFIG = {"config": {"data_uri": "s3://data/abalone/", "monitoring": {"retrain_on_alarm": True}}}


def _load(function: str, module: str) -> ModuleType:
    sys.path.insert(0, str(LAMBDAS / function))
    try:
        sys.modules.pop(module, None)
        return importlib.import_module(module)
    finally:
        sys.path.remove(str(LAMBDAS / function))


@pytest.fixture
def retrain() -> ModuleType:
    return _load("retrain", "retrain")


def _alarm_event(
    name: str,
    state: str = "ALARM",
    since: str = "2026-12-03T10:00:00.000+0000",
    breached: str | None = None,
) -> dict[str, Any]:
    """CloudWatch's event; `breached` is the evaluated datapoint's period (reasonData)."""
    detail: dict[str, Any] = {"value": state, "reason": "Threshold Crossed", "timestamp": since}
    if breached is not None:
        detail["reasonData"] = json.dumps(
            {
                "version": "1.0",
                "startDate": breached,
                "statistic": "Maximum",
                "period": 60,
                "recentDatapoints": [0.4],
                "threshold": 0.1,
                "evaluatedDatapoints": [{"timestamp": breached, "value": 0.4}],
            }
        )
    return {
        "source": "aws.cloudwatch",
        "detail-type": "CloudWatch Alarm State Change",
        "detail": {"alarmName": name, "state": detail, "previousState": {"value": "OK"}},
    }


def _all_at_once(calls: list[Any]) -> list[Any]:
    results: list[Any] = []
    threads = [threading.Thread(target=lambda call=call: results.append(call())) for call in calls]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join()
    return results


def _pipeline(sfn: Any, last_input: dict[str, Any] | None = CONFIG) -> str:
    arn = sfn.create_state_machine(
        name="TrainingPipeline", definition=json.dumps(WAITING), roleArn="arn:aws:iam::1:role/r"
    )["stateMachineArn"]
    if last_input is not None:
        done = sfn.start_execution(
            stateMachineArn=arn, name="first", input=json.dumps({**last_input, "wait": 0})
        )["executionArn"]
        _wait_status(sfn, done, "SUCCEEDED")
    return str(arn)


def _wait_status(sfn: Any, arn: str, status: str) -> None:
    deadline = time.monotonic() + 10
    while sfn.describe_execution(executionArn=arn)["status"] != status:
        assert time.monotonic() < deadline, f"{arn} never reached {status}"
        time.sleep(0.02)


def _retrainings(sfn: Any, arn: str) -> list[dict[str, Any]]:
    executions = sfn.list_executions(stateMachineArn=arn)["executions"]
    return [e for e in executions if e["name"] != "first" and e["name"] != "busy"]


def test_an_alarm_storm_starts_exactly_one_retraining(cloud: LocalCloud, retrain: Any) -> None:
    sfn = boto3.client("stepfunctions")
    arn = _pipeline(sfn)
    event = _alarm_event("sfn-mlops-drift-length")
    results = _all_at_once([lambda: retrain.retrain(sfn, arn, event)] * 20)
    started = _retrainings(sfn, arn)
    assert len(started) == 1, started
    assert sum(result["started"] for result in results) >= 1
    payload = json.loads(sfn.describe_execution(executionArn=started[0]["executionArn"])["input"])
    assert payload["config"] == CONFIG["config"]
    assert payload["retraining"]["alarm"] == "sfn-mlops-drift-length"
    assert payload["retraining"]["previous_execution"] == "first"


def test_the_features_one_monitoring_run_trips_start_one_retraining(
    cloud: LocalCloud, retrain: Any
) -> None:
    """Each feature's alarm goes to ALARM at its own moment, on the same breached period."""
    sfn = boto3.client("stepfunctions")
    arn = _pipeline(sfn)
    events = [
        _alarm_event(
            f"sfn-mlops-drift-{feature}",
            since=f"2026-12-03T10:01:{second:02d}.000+0000",
            breached="2026-12-03T10:00:00.000+0000",
        )
        for second, feature in enumerate(["length", "diameter", "height", "whole_weight"] * 5)
    ]
    _all_at_once([lambda event=event: retrain.retrain(sfn, arn, event) for event in events])
    (started,) = _retrainings(sfn, arn)
    assert started["name"].startswith("drift-20261203T1000-")


def test_the_next_breached_period_is_a_new_episode(retrain: Any) -> None:
    first = retrain.trigger(_alarm_event("ep-drift-a", breached="2026-12-03T10:00:00.000+0000"))
    other_feature = retrain.trigger(
        _alarm_event("ep-drift-b", breached="2026-12-03T10:00:00.000+0000")
    )
    next_hour = retrain.trigger(_alarm_event("ep-drift-a", breached="2026-12-03T11:00:00.000+0000"))
    other_endpoint = retrain.trigger(
        _alarm_event("other-drift-a", breached="2026-12-03T10:00:00.000+0000")
    )
    quality = retrain.trigger(
        _alarm_event("ep-model-quality", breached="2026-12-03T10:00:00.000+0000")
    )
    assert first["name"] == other_feature["name"]
    assert len({first["name"], next_hour["name"], other_endpoint["name"], quality["name"]}) == 4
    assert quality["name"].startswith("quality-")


def test_no_retraining_beside_a_running_execution(cloud: LocalCloud, retrain: Any) -> None:
    sfn = boto3.client("stepfunctions")
    arn = _pipeline(sfn)
    busy = sfn.start_execution(
        stateMachineArn=arn, name="busy", input=json.dumps({"wait": 1_000_000})
    )
    result = retrain.retrain(sfn, arn, _alarm_event("sfn-mlops-model-quality"))
    sfn.stop_execution(executionArn=busy["executionArn"])
    assert result["started"] is False and "busy" in result["why"]
    assert _retrainings(sfn, arn) == []


def test_events_that_are_no_alarm_are_ignored(cloud: LocalCloud, retrain: Any) -> None:
    sfn = boto3.client("stepfunctions")
    arn = _pipeline(sfn)
    for event in (_alarm_event("sfn-mlops-drift-x", state="OK"), {"detail-type": "Other"}):
        assert retrain.retrain(sfn, arn, event)["started"] is False
    assert _retrainings(sfn, arn) == []


def test_a_retraining_needs_an_earlier_run(cloud: LocalCloud, retrain: Any) -> None:
    sfn = boto3.client("stepfunctions")
    arn = _pipeline(sfn, last_input=None)
    with pytest.raises(retrain.RetrainError, match="no succeeded execution"):
        retrain.retrain(sfn, arn, _alarm_event("sfn-mlops-drift-x"))


def test_retrain_on_alarm_off_keeps_the_model(cloud: LocalCloud, retrain: Any) -> None:
    sfn = boto3.client("stepfunctions")
    arn = _pipeline(sfn, {"config": {"monitoring": {"retrain_on_alarm": False}}})
    result = retrain.retrain(sfn, arn, _alarm_event("sfn-mlops-drift-x"))
    assert result["started"] is False and "retrain_on_alarm" in result["why"]


def test_the_schedule_retrains_with_the_last_config(cloud: LocalCloud, retrain: Any) -> None:
    sfn = boto3.client("stepfunctions")
    arn = _pipeline(sfn)
    event = {
        "detail-type": "Scheduled Event",
        "time": "2026-12-07T03:00:00Z",
        "source": "aws.events",
    }
    result = retrain.retrain(sfn, arn, event)
    assert result["started"] is True and result["reason"] == "schedule"
    (started,) = _retrainings(sfn, arn)
    assert started["name"] == "scheduled-20261207T0300"


def test_execution_names_fit_step_functions(retrain: Any) -> None:
    why = retrain.trigger(_alarm_event("sfn-mlops-drift-" + "a very long feature name " * 9))
    assert len(why["name"]) <= 52  # the CLI's run-name limit: <name>-preprocess fits 63
    assert re.fullmatch(r"[A-Za-z0-9](-?[A-Za-z0-9])*", why["name"]), why["name"]
    again = retrain.trigger(_alarm_event("sfn-mlops-drift-" + "a very long feature name " * 9))
    later = retrain.trigger(
        _alarm_event(
            "sfn-mlops-drift-" + "a very long feature name " * 9,
            since="2026-12-04T10:00:00.000+0000",
        )
    )
    assert why["name"] == again["name"] != later["name"]


# ------------------------------------------------ a run's data: the manifest, labelled traffic

ENDPOINT = "sfn-mlops"
BUCKET = "artifacts"
HEADER = "sex,length,rings"
RUN_CONFIG = {
    "data_uri": f"s3://{BUCKET}/data/abalone/",
    "target": "rings",
    "problem_type": "regression",
    "deployment": {"endpoint_name": ENDPOINT},
}
DESTINATION = f"s3://{BUCKET}/runs/now/data/"
NOW = dt.datetime(2026, 12, 4, 12, 0, tzinfo=dt.UTC)


@pytest.fixture
def collect() -> ModuleType:
    sys.path.insert(0, str(LAMBDAS / "collect_data"))
    try:
        for name in ("collect", "captured_data"):
            sys.modules.pop(name, None)
        return importlib.import_module("collect")
    finally:
        sys.path.remove(str(LAMBDAS / "collect_data"))


def _capture(
    event_id: str, data: str, content_type: str = "text/csv", at: str = "2026-12-04T10:00:00Z"
) -> str:
    """One line of a SageMaker capture file."""
    return json.dumps(
        {
            "captureData": {
                "endpointInput": {
                    "observedContentType": content_type,
                    "mode": "INPUT",
                    "data": data,
                    "encoding": "CSV" if content_type == "text/csv" else "JSON",
                },
                "endpointOutput": {
                    "observedContentType": "text/csv",
                    "data": "9",
                    "mode": "OUTPUT",
                },
            },
            "eventMetadata": {"eventId": event_id, "inferenceTime": at},
            "eventVersion": "0",
        }
    )


def _label(event_id: str, data: str) -> str:
    return json.dumps(
        {
            "groundTruthData": {"data": data, "encoding": "CSV"},
            "eventMetadata": {"eventId": event_id},
            "eventVersion": "0",
        }
    )


def _put(s3: Any, key: str, lines: list[str]) -> None:
    s3.put_object(Bucket=BUCKET, Key=key, Body="\n".join(lines).encode() + b"\n")


def _stage_captures_and_labels(s3: Any) -> None:
    s3.create_bucket(Bucket=BUCKET)
    _put(s3, "data/abalone/part-1.csv", [HEADER, "M,0.45,10", "F,0.5,11"])
    _put(s3, "data/abalone/_SUCCESS", [""])
    _put(
        s3,
        f"data-capture/{ENDPOINT}/AllTraffic/2026/12/04/10/a.jsonl",
        [
            _capture("one", "M,0.6", at="2026-12-04T11:00:00Z"),  # labelled
            _capture("two", "F,0.3\nI,0.2"),  # two rows, two labels
            _capture("json", json.dumps([{"sex": "I", "length": 0.25}]), "application/json"),
            _capture("unlabelled", "M,0.7"),
            _capture("wide", "M,0.7,1"),  # three values for two features
            _capture("text", "F,0.4"),  # a text label for a regression
            "{not json",
        ],
    )
    _put(
        s3,
        f"ground-truth/{ENDPOINT}/2026/12/04/11/labels.jsonl",
        [
            _label("one", "12"),
            _label("two", "7\n6"),
            _label("json", "5"),
            _label("wide", "4"),
            _label("text", "many"),
            _label("nobody", "3"),  # no such capture: unused
            "[broken",
        ],
    )


def _manifest(s3: Any, uri: str = DESTINATION + "manifest.json") -> dict[str, Any]:
    bucket, _, key = uri.removeprefix("s3://").partition("/")
    return json.loads(s3.get_object(Bucket=bucket, Key=key)["Body"].read())


def _preprocessed(s3: Any, manifest: dict[str, Any], tmp_path: Path) -> dict[str, Any]:
    """The processing job's own reader on the run's inputs, as SageMaker stages them."""
    containers = [str(LAMBDAS.parent / "containers" / name) for name in ("common", "processing")]
    sys.path[:0] = containers
    try:
        import preprocess
    finally:
        del sys.path[: len(containers)]
    for item in manifest["objects"]:
        root = "data" if item["kind"] == "source" else "collected"
        local = tmp_path / root / item["path"]
        local.parent.mkdir(parents=True, exist_ok=True)
        bucket, _, key = item["uri"].removeprefix("s3://").partition("/")
        s3.download_file(bucket, key, str(local))
    manifest_file = tmp_path / "collected" / "manifest.json"
    s3.download_file(BUCKET, "runs/now/data/manifest.json", str(manifest_file))
    return preprocess.preprocess(
        input_dir=str(tmp_path / "data"), collected_dir=str(tmp_path / "collected"),
        output_dir=str(tmp_path / "out"), target="rings", problem_type="regression",
        categorical_columns=["sex"], split=preprocess.Split(0.5, 0.25, 0.25, 7),
    )  # fmt: skip


def test_a_first_run_lists_its_data_and_adds_the_labelled_traffic(
    cloud: LocalCloud, collect: Any, tmp_path: Path
) -> None:
    s3 = boto3.client("s3")
    _stage_captures_and_labels(s3)
    summary = collect.collect(
        s3, config=RUN_CONFIG, destination=DESTINATION, champion_model_url=None, now=NOW
    )
    assert summary["captured_rows"] == {"recent": 4, "older": 0}
    assert summary["skipped"] == {
        "malformed_capture_lines": 1,
        "malformed_ground_truth_lines": 1,
        "captures_without_ground_truth": 1,
        "rows_of_the_wrong_width": 1,
        "labels_of_the_wrong_type": 1,
    }
    manifest = _manifest(s3)
    source, captured = manifest["objects"]
    etag = s3.head_object(Bucket=BUCKET, Key="data/abalone/part-1.csv")["ETag"].strip('"')
    assert source == {
        "uri": f"s3://{BUCKET}/data/abalone/part-1.csv", "kind": "source", "path": "part-1.csv",
        "etag": etag, "size": 36, "last_modified": source["last_modified"], "recent": True,
    }  # fmt: skip
    assert captured["path"] == "captured/recent.csv" and captured["rows"] == 4
    assert manifest["window"]["why"] == "all data: no production model whose data is known"
    schema = _preprocessed(s3, manifest, tmp_path)
    assert sum(schema["rows"].values()) == 6  # 2 configured rows and 4 captured
    assert schema["data"]["test_from"] == "all"


def test_recent_data_is_what_the_production_model_never_saw(
    cloud: LocalCloud, collect: Any, tmp_path: Path
) -> None:
    """The production model's run read part-1 as it is and was collected at 10:30: the capture
    of 11:00 and a file added since are recent; the captures of 10:00 are older."""
    s3 = boto3.client("s3")
    _stage_captures_and_labels(s3)
    etag = s3.head_object(Bucket=BUCKET, Key="data/abalone/part-1.csv")["ETag"].strip('"')
    earlier = {
        "collected_at": "2026-12-04T10:30:00.000000Z",
        "objects": [{"uri": f"s3://{BUCKET}/data/abalone/part-1.csv", "etag": etag}],
    }
    s3.put_object(Bucket=BUCKET, Key="runs/old/data/manifest.json", Body=json.dumps(earlier))
    _put(s3, "data/abalone/part-2.csv", [HEADER, "I,0.3,8"])
    summary = collect.collect(
        s3, config=RUN_CONFIG, destination=DESTINATION, now=NOW,
        champion_model_url=f"s3://{BUCKET}/runs/old/training/old-train/output/model.tar.gz",
    )  # fmt: skip
    assert summary["since"] == "2026-12-04T10:30:00.000000Z"
    assert summary["captured_rows"] == {"recent": 1, "older": 3}
    recent = {o["path"]: o["recent"] for o in _manifest(s3)["objects"]}
    assert recent == {
        "part-1.csv": False, "part-2.csv": True,
        "captured/recent.csv": True, "captured/older.csv": False,
    }  # fmt: skip
    assert _manifest(s3)["previous_manifest"] == f"s3://{BUCKET}/runs/old/data/manifest.json"


def test_a_window_of_rows_takes_the_newest_labelled_captures(
    cloud: LocalCloud, collect: Any
) -> None:
    s3 = boto3.client("s3")
    _stage_captures_and_labels(s3)
    config = {**RUN_CONFIG, "retraining": {"window": 1}}
    summary = collect.collect(
        s3, config=config, destination=DESTINATION, champion_model_url=None, now=NOW
    )
    assert summary["captured_rows"] == {"recent": 1, "older": 3}
    recent_rows = s3.get_object(Bucket=BUCKET, Key="runs/now/data/captured/recent.csv")
    assert recent_rows["Body"].read().decode().splitlines() == [HEADER, "M,0.6,12"]


@pytest.mark.parametrize(
    ("data", "mode", "message"),
    [
        ("parquet/", True, "is not a plain CSV file"),
        ("empty/", "auto", "holds no data files"),
    ],
)
def test_data_that_cannot_be_collected_is_named(
    cloud: LocalCloud, collect: Any, data: str, mode: Any, message: str
) -> None:
    s3 = boto3.client("s3")
    _stage_captures_and_labels(s3)
    _put(s3, "parquet/part-1.parquet", ["PAR1"])
    config = {**RUN_CONFIG, "data_uri": f"s3://{BUCKET}/{data}",
              "retraining": {"captured_data": mode}}  # fmt: skip
    with pytest.raises(collect.CollectError, match=message):
        collect.collect(
            s3, config=config, destination=DESTINATION, champion_model_url=None, now=NOW
        )


def test_parquet_data_trains_without_captures_when_they_are_optional(
    cloud: LocalCloud, collect: Any
) -> None:
    s3 = boto3.client("s3")
    _stage_captures_and_labels(s3)
    _put(s3, "parquet/part-1.parquet", ["PAR1"])
    config = {**RUN_CONFIG, "data_uri": f"s3://{BUCKET}/parquet/"}
    summary = collect.collect(
        s3, config=config, destination=DESTINATION, champion_model_url=None, now=NOW
    )
    assert summary["captured_rows"] == {"recent": 0, "older": 0}
    assert "is not a plain CSV file" in _manifest(s3)["captured"]["note"]


def test_the_handler_starts_a_retraining_and_logs_it(
    cloud: LocalCloud, monkeypatch: pytest.MonkeyPatch
) -> None:
    """As EventBridge invokes it: environment, lazy clients, the log line of the result."""
    sfn = boto3.client("stepfunctions")
    arn = _pipeline(sfn)
    monkeypatch.setenv("PIPELINE_ARN", arn)
    monkeypatch.setenv("POWERTOOLS_TRACE_DISABLED", "true")
    _load("retrain", "retrain")
    app = _load("retrain", "app")
    log = io.StringIO()  # Powertools' handler is shared by the loggers of one service name
    handler = app.logger.registered_handler
    earlier = handler.setStream(log)
    context = SimpleNamespace(
        function_name="RetrainFunction", memory_limit_in_mb=512, aws_request_id="1",
        invoked_function_arn="arn:aws:lambda:us-east-1:123456789012:function:RetrainFunction",
    )  # fmt: skip
    try:
        result = app.lambda_handler(_alarm_event("sfn-mlops-drift-length"), context)
    finally:
        handler.setStream(earlier)
    assert result["started"] is True
    logged = json.loads(log.getvalue().strip().splitlines()[-1])
    assert logged["retraining"]["name"] == result["name"]
