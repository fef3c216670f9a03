"""The RegisterModel and DeployModel Lambdas' domain code against the local SageMaker.

Each function folder is its own import root, as in Lambda; the SageMaker client is plain boto3
pointed at the test's local server, so what the registry and the endpoints accept and answer
is the local service's, which follows SageMaker's.
"""

from __future__ import annotations

import importlib
import sys
import time
from collections.abc import Iterator
from pathlib import Path
from types import ModuleType
from typing import Any

import boto3
import pytest
from endpoint_models import put_inference_code, put_model, train_booster

from sfn_mlops.config import load_config
from sfn_mlops.local.cloud import LocalCloud

LAMBDAS = Path(__file__).resolve().parents[2] / "lambdas"
IMAGE = "683313688378.dkr.ecr.us-east-1.amazonaws.com/sagemaker-xgboost:3.0-5"
CAPTURE = "s3://models/data-capture"


def _load(function: str, module: str) -> ModuleType:
    sys.path.insert(0, str(LAMBDAS / function))
    try:
        sys.modules.pop(module, None)
        return importlib.import_module(module)
    finally:
        sys.path.remove(str(LAMBDAS / function))


@pytest.fixture
def registry() -> ModuleType:
    return _load("register_model", "registry")


@pytest.fixture
def deployment() -> Iterator[ModuleType]:
    yield _load("deploy_model", "deployment")
    sys.modules.pop("deployment", None)


@pytest.fixture
def sagemaker(cloud: LocalCloud) -> Iterator[Any]:
    yield boto3.client("sagemaker")
    cloud.endpoint_hosts.stop_all()
    cloud.service("sagemaker").shutdown_endpoints()


def _model(cloud: LocalCloud, sagemaker: Any, name: str, seed: int = 0) -> str:
    sagemaker.create_model(
        ModelName=name,
        PrimaryContainer={
            "Image": IMAGE,
            "ModelDataUrl": put_model(cloud, name, train_booster(seed)),
            "Environment": put_inference_code(cloud),
        },
        ExecutionRoleArn="arn:aws:iam::123456789012:role/sagemaker",
    )
    return name


def _settings(**overrides: str) -> dict[str, Any]:
    items = [f"deployment.{key}={value}" for key, value in overrides.items()]
    config = load_config(None, items).execution_input("s3://data/abalone.csv")["config"]
    return dict(config["deployment"])


def _wait(sagemaker: Any, name: str, config: str | None = None) -> dict[str, Any]:
    deadline = time.monotonic() + 60
    while True:
        endpoint = sagemaker.describe_endpoint(EndpointName=name)
        done = endpoint["EndpointStatus"] in ("InService", "Failed")
        if done and (config is None or "PendingDeploymentSummary" not in endpoint):
            return dict(endpoint)
        assert time.monotonic() < deadline, endpoint
        time.sleep(0.1)


def test_register_records_the_container_reports_and_provenance(
    cloud: LocalCloud, sagemaker: Any, registry: ModuleType
) -> None:
    container = {
        "Image": IMAGE,
        "ModelDataUrl": put_model(cloud, "run1-model", train_booster()),
        "Environment": put_inference_code(cloud),
    }
    config = {"target": "rings", "gate": {"metric": "rmse"}}
    result = registry.register(
        sagemaker,
        group="models",
        container=container,
        approval="auto",
        reports={"evaluation": "s3://b/runs/run1/evaluation/evaluation.json"},
        execution_arn="arn:aws:states:us-east-1:123456789012:execution:Pipeline:run1",
        data_uri="s3://b/data/abalone.csv",
        config=config,
        description="rmse 2.29 on the test set (run run1)",
        scores={"rmse_new": "2.29"},
    )
    assert (result["ModelPackageVersion"], result["ModelApprovalStatus"]) == (1, "Approved")
    package = sagemaker.describe_model_package(ModelPackageName=result["ModelPackageArn"])
    container = package["InferenceSpecification"]["Containers"][0]
    assert container["Environment"]["SAGEMAKER_PROGRAM"] == "inference.py"
    assert container["ModelDataUrl"].endswith("run1-model/model.tar.gz")
    assert package["ModelMetrics"]["ModelQuality"]["Statistics"]["S3Uri"].endswith(
        "evaluation.json"
    )
    metadata = package["CustomerMetadataProperties"]
    assert metadata["config_digest"] == registry.config_digest(dict(reversed(config.items())))
    assert metadata["execution_arn"].endswith(":run1") and metadata["rmse_new"] == "2.29"

    second = registry.register(
        sagemaker,
        group="models",
        container=container,
        approval="manual",
        reports={},
        execution_arn="arn:aws:states:us-east-1:123456789012:execution:Pipeline:run2",
        data_uri="s3://b/data/abalone.csv",
        config=config,
        description="",
    )
    assert (second["ModelPackageVersion"], second["ModelApprovalStatus"]) == (
        2,
        "PendingManualApproval",
    )
    lost = registry.register(
        sagemaker,
        group="models",
        container=container,
        approval="auto",
        reports={},
        execution_arn="arn:aws:states:us-east-1:123456789012:execution:Pipeline:run3",
        data_uri="s3://b/data/abalone.csv",
        config=config,
        description="",
        scores={"production_model": "endpoint sfn-mlops (model run2-model)"},
        rejected_because=CHAMPION_CAUSE,
    )
    assert lost["ModelApprovalStatus"] == "Rejected"
    package = sagemaker.describe_model_package(ModelPackageName=lost["ModelPackageArn"])
    metadata = package["CustomerMetadataProperties"]
    assert metadata["rejected_because"] == (
        "the new model s rmse 3.1 does not beat the production model s 2.3 endpoint sfn-mlops "
        "model run2-model required = 2.3"
    )
    assert metadata["production_model"] == "endpoint sfn-mlops model run2-model"
    assert package["ModelPackageDescription"] == f"Rejected: {CHAMPION_CAUSE}"


#: ReadEvaluation's comparison with the production model, word for word: its `'`, `(`, `;` and
#: `<=` are outside CustomerMetadataProperties' value pattern, so SageMaker refuses them there.
CHAMPION_CAUSE = (
    "the new model's rmse 3.1 does not beat the production model's 2.3 "
    "(endpoint sfn-mlops (model run2-model); required <= 2.3)"
)


def test_the_gate_metric_is_registered_with_its_intervals(
    cloud: LocalCloud, sagemaker: Any, registry: ModuleType
) -> None:
    champion = {
        "present": True,
        "value": 2.4,
        "source": "endpoint sfn-mlops (model run2-model)",
        "interval": {"lower": 2.2, "upper": 2.61, "level": 0.95},
        "difference": {
            "mean": -0.114,
            "confidence_interval": {"lower": -0.2, "upper": -0.03, "level": 0.95},
            "share_not_better": 0.004,
        },
    }
    interval = {"lower": 2.1, "upper": 2.5, "level": 0.95}
    scores, description = registry.quality_scores("rmse", 2.286, interval, champion, "run4")
    assert description == (
        "rmse 2.286 (interval 2.1 to 2.5 at 95 percent) on the test set (run run4); production "
        "model 2.4 (interval 2.2 to 2.61 at 95 percent); paired difference new less production "
        "-0.114 (interval -0.2 to -0.03 at 95 percent; not better in 0.4% of resamples)"
    )
    result = registry.register(
        sagemaker,
        group="models",
        container={"Image": IMAGE, "ModelDataUrl": put_model(cloud, "run4", train_booster())},
        approval="auto",
        reports={},
        execution_arn="arn:aws:states:us-east-1:123456789012:execution:Pipeline:run4",
        data_uri="s3://b/data/abalone.csv",
        config={},
        description=description,
        scores=scores,
    )
    package = sagemaker.describe_model_package(ModelPackageName=result["ModelPackageArn"])
    metadata = package["CustomerMetadataProperties"]
    assert {key: metadata[key] for key in scores if key != "production_model"} == {
        "rmse_new": "2.286",
        "rmse_new_interval": "2.1 to 2.5 at 95 percent",
        "rmse_production": "2.4",
        "rmse_production_interval": "2.2 to 2.61 at 95 percent",
        "rmse_difference": "-0.114",
        "rmse_difference_interval": "-0.2 to -0.03 at 95 percent",
        "rmse_share_not_better": "0.004",
    }
    assert package["ModelPackageDescription"] == description
    alone, sentence = registry.quality_scores("rmse", 2.286, None, {"present": False}, "run5")
    assert (alone, sentence) == ({"rmse_new": "2.286"}, "rmse 2.286 on the test set (run run5)")


def test_what_a_version_was_trained_and_judged_on_is_in_its_metadata(
    cloud: LocalCloud, sagemaker: Any, registry: ModuleType
) -> None:
    data = {"manifest_uri": "s3://b/runs/run6/data/manifest.json",
            "captured_rows": {"recent": 3000, "older": 0}}  # fmt: skip
    judged = {"recent_rows": 3000, "older_rows": 4177, "older_kept": 0, "test_from": "recent",
              "since": "2026-12-07T19:45:30.755051Z"}  # fmt: skip
    provenance = registry.data_provenance(data, judged)
    assert provenance == {
        "data_manifest": "s3://b/runs/run6/data/manifest.json",
        "captured_rows": "3000 recent 0 older",
        "judged_on": "3000 recent rows since 2026-12-07T19:45:30.755051Z",
        "older_rows_kept": "0 of 4177",
    }
    result = registry.register(
        sagemaker, group="models", approval="auto", reports={}, config={}, description="d",
        container={"Image": IMAGE, "ModelDataUrl": put_model(cloud, "run6", train_booster())},
        execution_arn="arn:aws:states:us-east-1:123456789012:execution:Pipeline:run6",
        data_uri="s3://b/data/abalone.csv", scores=provenance,
    )  # fmt: skip  (SageMaker checks each value against its pattern)
    package = sagemaker.describe_model_package(ModelPackageName=result["ModelPackageArn"])
    assert package["CustomerMetadataProperties"]["judged_on"] == provenance["judged_on"]
    assert registry.data_provenance({}, {"test_from": "all", "older_rows": 0}) == {
        "judged_on": "all the data", "older_rows_kept": "0 of 0",
    }  # fmt: skip


def test_metadata_values_are_cut_to_what_sagemaker_takes(registry: ModuleType) -> None:
    assert registry.metadata_value("x" * 300) == "x" * 256
    assert registry.metadata_value("();") == "-"
    assert registry.metadata_value("s3://b/k_1.csv a=b+c@d") == "s3://b/k_1.csv a=b+c@d"
    assert registry.description_text("line\nbreak") == "line break"


def test_first_deploy_creates_the_endpoint_and_a_canary_update_shifts_to_the_new_model(
    cloud: LocalCloud, sagemaker: Any, deployment: ModuleType
) -> None:
    first = deployment.deploy(
        sagemaker,
        model_name=_model(cloud, sagemaker, "run1-model"),
        settings=_settings(),
        capture_destination=CAPTURE,
    )
    assert (first["Operation"], first["EndpointConfigName"]) == ("create", "run1-config")
    endpoint = _wait(sagemaker, "sfn-mlops")
    assert endpoint["EndpointStatus"] == "InService"
    assert endpoint["DataCaptureConfig"]["CurrentSamplingPercentage"] == 100
    # one capture destination per config: Model Monitor then judges only this model's traffic
    captured = sagemaker.describe_endpoint_config(EndpointConfigName="run1-config")
    assert captured["DataCaptureConfig"]["DestinationS3Uri"] == f"{CAPTURE}/run1-config"

    second = deployment.deploy(
        sagemaker,
        model_name=_model(cloud, sagemaker, "run2-model", seed=1),
        settings=_settings(strategy="canary", wait_seconds="0"),
        capture_destination=CAPTURE,
    )
    assert (second["Operation"], second["Strategy"]) == ("update", "canary")
    assert second["PreviousConfigName"] == "run1-config"
    endpoint = _wait(sagemaker, "sfn-mlops", config="run2-config")
    assert (endpoint["EndpointStatus"], endpoint["EndpointConfigName"]) == (
        "InService",
        "run2-config",
    )
    policy = endpoint["LastDeploymentConfig"]["BlueGreenUpdatePolicy"]
    assert policy["TrafficRoutingConfiguration"]["CanarySize"] == {
        "Type": "CAPACITY_PERCENT",
        "Value": 10,
    }


def test_ab_keeps_the_production_model_as_champion_beside_the_challenger(
    cloud: LocalCloud, sagemaker: Any, deployment: ModuleType
) -> None:
    deployment.deploy(
        sagemaker,
        model_name=_model(cloud, sagemaker, "run1-model"),
        settings=_settings(),
        capture_destination=CAPTURE,
    )
    _wait(sagemaker, "sfn-mlops")
    deployment.deploy(
        sagemaker,
        model_name=_model(cloud, sagemaker, "run2-model", seed=1),
        settings=_settings(strategy="ab", ab_challenger_share="0.25"),
        capture_destination=CAPTURE,
    )
    endpoint = _wait(sagemaker, "sfn-mlops", config="run2-config")
    weights = {v["VariantName"]: v["CurrentWeight"] for v in endpoint["ProductionVariants"]}
    assert weights == {"Champion": 0.75, "Challenger": 0.25}
    config = sagemaker.describe_endpoint_config(EndpointConfigName="run2-config")
    models = {v["VariantName"]: v["ModelName"] for v in config["ProductionVariants"]}
    assert models == {"Champion": "run1-model", "Challenger": "run2-model"}


def test_every_strategy_gives_a_deployment_config_sagemaker_accepts(
    deployment: ModuleType,
) -> None:
    stub = boto3.client("sagemaker")  # only for request validation: no call is made
    shape = stub.meta.service_model.operation_model("UpdateEndpoint").input_shape
    validator = __import__("botocore.validate", fromlist=["ParamValidator"]).ParamValidator()
    for strategy in ("all_at_once", "canary", "linear", "rolling"):
        settings = _settings(strategy=strategy)
        settings["rollback_alarms"] = ["endpoint-5xx"]
        request = {
            "EndpointName": "e",
            "EndpointConfigName": "c",
            "DeploymentConfig": deployment.deployment_config(settings),
        }
        report = validator.validate(request, shape)
        assert not report.has_errors(), (strategy, report.generate_report())
    assert deployment.deployment_config(_settings(strategy="ab")) is None


def test_the_champion_is_the_endpoints_model_else_the_latest_approved_version(
    cloud: LocalCloud, sagemaker: Any, deployment: ModuleType, registry: ModuleType
) -> None:
    champion = _load("find_champion", "champion")
    s3 = boto3.client("s3")
    s3.create_bucket(Bucket="runs")

    def stage(run: str) -> dict[str, Any]:
        return dict(
            champion.stage_champion(
                sagemaker, s3, endpoint_name="sfn-mlops", group="models",
                destination=f"s3://runs/{run}/champion/",
            )
        )  # fmt: skip

    assert stage("r1") == {"present": False, "source": None, "model_data_url": None}
    marker = s3.get_object(Bucket="runs", Key="r1/champion/champion.json")["Body"].read()
    assert b'"present": false' in marker

    approved_url = put_model(cloud, "approved", train_booster(seed=2))
    registry.register(
        sagemaker, group="models", container={"Image": IMAGE, "ModelDataUrl": approved_url},
        approval="auto", reports={}, execution_arn="arn:aws:states:::execution:P:r0",
        data_uri="s3://b/d.csv", config={}, description="",
    )  # fmt: skip
    found = stage("r2")
    assert (found["present"], found["source"], found["model_data_url"]) == (
        True,
        "models/1",
        approved_url,
    )
    staged = s3.get_object(Bucket="runs", Key="r2/champion/model.tar.gz")["Body"].read()
    assert staged == cloud.objects.get_bytes("models", "approved/model.tar.gz")

    deployment.deploy(
        sagemaker, model_name=_model(cloud, sagemaker, "serving-model"), settings=_settings(),
        capture_destination=CAPTURE,
    )  # fmt: skip
    _wait(sagemaker, "sfn-mlops")
    found = stage("r3")
    assert found["source"] == "endpoint sfn-mlops (model serving-model)"
    assert found["model_data_url"].endswith("serving-model/model.tar.gz")


def test_the_endpoint_wait_starts_short_and_is_bounded_by_the_timeout(
    deployment: ModuleType,
) -> None:
    schedule = deployment.poll_schedule(timeout_seconds=60, poll_seconds=5)
    waits = schedule["waits"]
    # Used from the back: polls_left counts down and the loop waits waits[polls_left].
    forwards = [waits[left] for left in range(schedule["polls_left"], 0, -1)]
    assert forwards[:5] == [1, 2, 4, 5, 5]
    assert sum(forwards) >= 60 > sum(forwards[:-1])
    assert waits[0] == 0 and len(waits) == schedule["polls_left"] + 1
    assert deployment.poll_schedule(timeout_seconds=3600, poll_seconds=300)["polls_left"] == 20
