"""The A/B test function's tally against the local services: each variant's captures (SageMaker's
per-variant layout) joined with the ground truth through the local S3, and its CloudWatch
numbers (AWS/SageMaker, EndpointName + VariantName) through the local CloudWatch."""

from __future__ import annotations

import importlib
import json
import sys
from datetime import UTC, datetime, timedelta
from pathlib import Path
from types import ModuleType
from typing import Any

import boto3
import pytest

from sfn_mlops.local.cloud import LocalCloud

LAMBDAS = Path(__file__).resolve().parents[2] / "lambdas"
BUCKET = "artifacts"
ENDPOINT = "ep"
STARTED = datetime.now(UTC).replace(microsecond=0) - timedelta(minutes=30)


@pytest.fixture
def ab_test() -> ModuleType:
    sys.path.insert(0, str(LAMBDAS / "ab_test"))
    try:
        for name in ("ab_test", "verdict", "stats", "capture_join"):
            sys.modules.pop(name, None)
        return importlib.import_module("ab_test")
    finally:
        sys.path.remove(str(LAMBDAS / "ab_test"))


def _capture(event_id: str, output: str, when: datetime, inference_id: str | None = None) -> str:
    metadata = {"eventId": event_id, "inferenceTime": when.strftime("%Y-%m-%dT%H:%M:%SZ")}
    if inference_id:
        metadata["inferenceId"] = inference_id
    return json.dumps({
        "captureData": {
            "endpointInput": {"observedContentType": "text/csv", "mode": "INPUT",
                              "data": "M,0.5", "encoding": "CSV"},
            "endpointOutput": {"observedContentType": "text/csv", "mode": "OUTPUT",
                               "data": output, "encoding": "CSV"},
        },
        "eventMetadata": metadata,
        "eventVersion": "0",
    })  # fmt: skip


def _label(event_id: str, data: str) -> str:
    return json.dumps({"groundTruthData": {"data": data, "encoding": "CSV"},
                       "eventMetadata": {"eventId": event_id}, "eventVersion": "0"})  # fmt: skip


def _put(s3: Any, key: str, lines: list[str]) -> None:
    s3.put_object(Bucket=BUCKET, Key=key, Body="\n".join(lines).encode() + b"\n")


def _stage(s3: Any, cloud: LocalCloud) -> None:
    s3.create_bucket(Bucket=BUCKET)
    now = datetime.now(UTC)
    hour = f"{now:%Y/%m/%d/%H}"
    _put(s3, f"data-capture/{ENDPOINT}/Champion/{hour}/a.jsonl", [
        _capture("c1", "10.0\n", now),  # label 12: error 2
        _capture("c2", "9.0\n8.0\n", now, inference_id="rows-2"),  # labels 7, 6: errors 2, 2
        _capture("c3", "5.0\n", now),  # no label
        "{broken",
    ])  # fmt: skip
    _put(s3, f"data-capture/{ENDPOINT}/Challenger/{hour}/b.jsonl", [
        _capture("d1", "11.5\n", now),  # label 12: error 0.5
        _capture("d2", "7.0\n", STARTED - timedelta(minutes=5)),  # served before the test
        _capture("d3", "6.0\n", now),  # label "many": not a number
    ])  # fmt: skip
    # an hour folder before the test's start is not read at all
    early = STARTED - timedelta(hours=2)
    _put(s3, f"data-capture/{ENDPOINT}/Challenger/{early:%Y/%m/%d/%H}/old.jsonl",
         [_capture("d0", "1.0\n", early)])  # fmt: skip
    _put(s3, f"ground-truth/{ENDPOINT}/{hour}/labels.jsonl", [
        _label("c1", "12"), _label("rows-2", "7\n6"), _label("d1", "12"), _label("d2", "7"),
        _label("d3", "many"), _label("d0", "100"),
    ])  # fmt: skip
    for variant, calls, errors, latencies in (
        ("Champion", 40, 0, [1000.0, 3000.0]),
        ("Challenger", 10, 1, [2000.0]),
    ):
        dimensions = [{"Name": "EndpointName", "Value": ENDPOINT},
                      {"Name": "VariantName", "Value": variant}]  # fmt: skip
        # as a serving endpoint publishes them (AWS/ is refused to PutMetricData callers)
        cloud.service("cloudwatch").record_metrics({"Namespace": "AWS/SageMaker", "MetricData": [
            {"MetricName": "Invocations", "Dimensions": dimensions, "Value": calls},
            {"MetricName": "Invocation5XXErrors", "Dimensions": dimensions, "Value": errors},
            *({"MetricName": "ModelLatency", "Dimensions": dimensions, "Value": v,
               "Unit": "Microseconds"} for v in latencies),
        ]})  # fmt: skip


def test_each_variant_is_tallied_from_its_own_captures_and_metrics(
    cloud: LocalCloud, ab_test: ModuleType
) -> None:
    s3, cloudwatch = boto3.client("s3"), boto3.client("cloudwatch")
    _stage(s3, cloud)
    state = {
        "endpoint": ENDPOINT, "started": ab_test.iso(STARTED), "problem_type": "regression",
        "champion": {"variant": "Champion", "model": "m1"},
        "challenger": {"variant": "Challenger", "model": "m2"},
    }  # fmt: skip
    tallies, counts = ab_test.tally(
        s3, cloudwatch, bucket=BUCKET, state=state,
        weights={"Champion": 0.9, "Challenger": 0.1}, now=datetime.now(UTC),
    )  # fmt: skip
    champion, challenger = tallies["champion"], tallies["challenger"]
    assert champion.outcomes == [2.0, 2.0, 2.0]
    assert challenger.outcomes == [0.5]
    assert (champion.invocations, champion.errors_5xx, champion.model_latency_us) == (
        40, 0, 2000.0
    )  # fmt: skip
    assert (challenger.invocations, challenger.errors_5xx) == (10, 1)
    assert (champion.weight, challenger.weight) == (0.9, 0.1)
    assert dict(counts) == {
        "malformed_capture_lines": 1,
        "captures_without_ground_truth": 1,
        "unreadable_predictions_or_labels": 1,
    }


IMAGE = "683313688378.dkr.ecr.us-east-1.amazonaws.com/sagemaker-xgboost:3.0-5"
ROLE = "arn:aws:iam::123456789012:role/SageMakerRole"


def _register(sagemaker: Any, group: str, archive: str) -> str:
    spec = {
        "Containers": [{"Image": IMAGE, "ModelDataUrl": archive}],
        "SupportedContentTypes": ["text/csv"],
        "SupportedResponseMIMETypes": ["text/csv"],
    }
    return str(sagemaker.create_model_package(
        ModelPackageGroupName=group, InferenceSpecification=spec, ModelApprovalStatus="Approved",
    )["ModelPackageArn"])  # fmt: skip


@pytest.mark.parametrize("won", [True, False])
def test_the_verdict_is_recorded_on_both_versions(
    cloud: LocalCloud, ab_test: ModuleType, won: bool
) -> None:
    """The champion's version is found by its model archive in the challenger's group; the
    loser's status is Rejected only for a retired challenger."""
    s3, sagemaker = boto3.client("s3"), boto3.client("sagemaker")
    s3.create_bucket(Bucket=BUCKET)
    archives = {name: f"s3://{BUCKET}/{name}/model.tar.gz" for name in ("old", "champ", "chall")}
    for uri in archives.values():
        s3.put_object(Bucket=BUCKET, Key=uri.split("/", 3)[3], Body=b"archive")
    sagemaker.create_model_package_group(ModelPackageGroupName="models")
    old, champion, challenger = (_register(sagemaker, "models", archives[n]) for n in archives)
    sagemaker.create_model(
        ModelName="m1", ExecutionRoleArn=ROLE,
        PrimaryContainer={"Image": IMAGE, "ModelDataUrl": archives["champ"]},
    )  # fmt: skip
    state = {
        "endpoint": ENDPOINT, "verdict": {"at": "2026-12-07T23:00:00Z", "p_value": 0.001},
        "champion": {"variant": "Champion", "model": "m1"},
        "challenger": {"variant": "Challenger", "model": "m2", "model_package_arn": challenger},
    }  # fmt: skip
    assert ab_test.mark_registry(sagemaker, state, won, "a reason (with; marks)")
    assert state["champion"]["model_package_arn"] == champion

    def described(arn: str) -> dict[str, Any]:
        return dict(sagemaker.describe_model_package(ModelPackageName=arn))

    kept, new = described(champion), described(challenger)
    assert kept["CustomerMetadataProperties"] == {
        "ab_champion_verdict": "replaced" if won else "kept",
        "ab_champion_endpoint": ENDPOINT,
        "ab_champion_reason": "a reason with marks",
        "ab_champion_decided_at": "2026-12-07T23:00:00Z",
    }
    assert new["CustomerMetadataProperties"]["ab_verdict"] == ("won" if won else "retired")
    assert kept["ModelApprovalStatus"] == "Approved"
    assert new["ModelApprovalStatus"] == ("Approved" if won else "Rejected")
    assert "CustomerMetadataProperties" not in described(old)


def test_a_champion_the_registry_does_not_hold_is_left_alone(
    cloud: LocalCloud, ab_test: ModuleType
) -> None:
    s3, sagemaker = boto3.client("s3"), boto3.client("sagemaker")
    s3.create_bucket(Bucket=BUCKET)
    s3.put_object(Bucket=BUCKET, Key="chall/model.tar.gz", Body=b"archive")
    sagemaker.create_model_package_group(ModelPackageGroupName="models")
    challenger = _register(sagemaker, "models", f"s3://{BUCKET}/chall/model.tar.gz")
    state = {
        "endpoint": ENDPOINT, "verdict": {"at": "2026-12-07T23:00:00Z"},
        "champion": {"variant": "Champion", "model": "deployed-by-hand"},
        "challenger": {"variant": "Challenger", "model": "m2", "model_package_arn": challenger},
    }  # fmt: skip
    assert ab_test.champion_version(sagemaker, state) is None
    assert ab_test.mark_registry(sagemaker, state, True, "better")
    assert "model_package_arn" not in state["champion"]
