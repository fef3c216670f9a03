"""The Model Registry and the hosting control plane through plain boto3 and the local server.

Wire-level checks: AWS's shapes, timestamps, errors. The endpoint data plane is a recorder
with the interface of ``sfn_mlops.local.endpoints.EndpointHosts``.
"""

from __future__ import annotations

import importlib
import sys
import time
import types
from collections.abc import Iterator
from dataclasses import dataclass
from typing import Any

import boto3
import pytest
from botocore.exceptions import ClientError

from sfn_mlops.local.cloud import LocalCloud

IMAGE = "683313688378.dkr.ecr.us-east-1.amazonaws.com/sagemaker-xgboost:3.0-5"
ROLE = "arn:aws:iam::123456789012:role/SageMakerRole"
ARN = "arn:aws:sagemaker:us-east-1:123456789012"


@pytest.fixture(scope="module")
def endpoints_module() -> Iterator[Any]:
    """B's module when it exists; else a stand-in of its dataclasses (CONTRACTS interface 5)."""
    try:
        yield importlib.import_module("sfn_mlops.local.endpoints")
        return
    except ImportError:
        pass
    module = types.ModuleType("sfn_mlops.local.endpoints")

    @dataclass(frozen=True)
    class VariantSpec:
        name: str
        model_name: str
        image: str
        model_data_url: str
        environment: dict[str, str]
        instance_count: int
        weight: float

    @dataclass(frozen=True)
    class Fleet:
        fleet_id: str
        variants: tuple[VariantSpec, ...]

    @dataclass(frozen=True)
    class CaptureSpec:
        destination_s3_uri: str
        sampling_percentage: int
        capture_input: bool
        capture_output: bool
        csv_content_types: tuple[str, ...]
        json_content_types: tuple[str, ...]

    class EndpointError(Exception):
        pass

    module.__dict__.update(
        VariantSpec=VariantSpec, Fleet=Fleet, CaptureSpec=CaptureSpec, EndpointError=EndpointError
    )
    sys.modules["sfn_mlops.local.endpoints"] = module
    yield module
    del sys.modules["sfn_mlops.local.endpoints"]


class RecordingHost:
    def __init__(self) -> None:
        self.shares: list[dict[str, float]] = []
        self.stopped: list[str] = []

    def serve(self, endpoint_name: str, fleets: list[tuple[Any, float]], capture: Any) -> int:
        self.shares.append({fleet.fleet_id: round(share, 6) for fleet, share in fleets})
        return 9000

    def stop(self, endpoint_name: str) -> None:
        self.stopped.append(endpoint_name)

    def stop_all(self) -> None:
        pass


@pytest.fixture
def sm(cloud: LocalCloud, endpoints_module: Any) -> Iterator[Any]:
    cloud.endpoint_hosts = RecordingHost()  # type: ignore[attr-defined]
    client = boto3.client("sagemaker")
    yield client
    cloud.service("sagemaker").shutdown_endpoints()


def _error(call: Any, **kwargs: Any) -> dict[str, str]:
    with pytest.raises(ClientError) as caught:
        call(**kwargs)
    return dict(caught.value.response["Error"])


def _wait(sm: Any, name: str) -> dict[str, Any]:
    deadline = time.monotonic() + 20
    while True:
        described = sm.describe_endpoint(EndpointName=name)
        if described["EndpointStatus"] not in ("Creating", "Updating"):
            return described  # type: ignore[no-any-return]
        assert time.monotonic() < deadline, described
        time.sleep(0.02)


def test_register_approve_and_list_through_boto3(sm: Any) -> None:
    sm.create_model_package_group(ModelPackageGroupName="abalone")
    created = sm.create_model_package(
        ModelPackageGroupName="abalone",
        InferenceSpecification={
            "Containers": [{"Image": IMAGE, "ModelDataUrl": "s3://b/model.tar.gz"}],
            "SupportedContentTypes": ["text/csv"],
            "SupportedResponseMIMETypes": ["text/csv"],
        },
        ModelMetrics={
            "ModelQuality": {
                "Statistics": {"ContentType": "application/json", "S3Uri": "s3://b/e.json"}
            }
        },
        CustomerMetadataProperties={"gate": "rmse"},
    )
    arn = created["ModelPackageArn"]
    assert arn == f"{ARN}:model-package/abalone/1"
    described = sm.describe_model_package(ModelPackageName=arn)
    assert described["ModelApprovalStatus"] == "PendingManualApproval"
    assert described["CreationTime"].tzinfo is not None
    sm.update_model_package(ModelPackageArn=arn, ModelApprovalStatus="Approved")
    approved = sm.list_model_packages(
        ModelPackageGroupName="abalone", ModelApprovalStatus="Approved", SortOrder="Descending"
    )["ModelPackageSummaryList"]
    assert [(p["ModelPackageArn"], p["ModelPackageVersion"]) for p in approved] == [(arn, 1)]
    group = sm.describe_model_package_group(ModelPackageGroupName="abalone")
    assert group["ModelPackageGroupStatus"] == "Completed"
    error = _error(
        sm.create_model_package,
        ModelPackageGroupName="nope",
        InferenceSpecification={
            "Containers": [{"Image": IMAGE}],
            "SupportedContentTypes": ["text/csv"],
            "SupportedResponseMIMETypes": ["text/csv"],
        },
    )
    assert error["Code"] == "ValidationException"
    assert error["Message"] == f"ModelPackageGroup {ARN}:model-package-group/nope does not exist."
    error = _error(sm.update_model_package, ModelPackageArn=arn, ModelApprovalStatus="Maybe")
    assert error["Code"] == "ValidationException"  # the service model's enum, before the provider


def test_create_update_with_canary_and_delete_through_boto3(sm: Any, cloud: LocalCloud) -> None:
    for name in ("model-a", "model-b"):
        sm.create_model(
            ModelName=name,
            PrimaryContainer={"Image": IMAGE, "ModelDataUrl": f"s3://b/{name}/model.tar.gz"},
            ExecutionRoleArn=ROLE,
        )
    for config, model in (("cfg-1", "model-a"), ("cfg-2", "model-b")):
        sm.create_endpoint_config(
            EndpointConfigName=config,
            ProductionVariants=[
                {
                    "VariantName": "AllTraffic",
                    "ModelName": model,
                    "InstanceType": "ml.m5.large",
                    "InitialInstanceCount": 1,
                    "InitialVariantWeight": 1.0,
                }
            ],
            DataCaptureConfig={
                "EnableCapture": True,
                "InitialSamplingPercentage": 100,
                "DestinationS3Uri": "s3://b/capture",
                "CaptureOptions": [{"CaptureMode": "Input"}, {"CaptureMode": "Output"}],
            },
        )
    sm.create_endpoint(EndpointName="abalone", EndpointConfigName="cfg-1")
    described = _wait(sm, "abalone")
    assert described["EndpointStatus"] == "InService"
    assert described["ProductionVariants"][0]["CurrentWeight"] == 1.0
    assert described["DataCaptureConfig"]["CaptureStatus"] == "Started"
    deployment = {
        "BlueGreenUpdatePolicy": {
            "TrafficRoutingConfiguration": {
                "Type": "CANARY",
                "CanarySize": {"Type": "CAPACITY_PERCENT", "Value": 20},
                "WaitIntervalInSeconds": 60,
            },
            "TerminationWaitInSeconds": 60,
            "MaximumExecutionTimeoutInSeconds": 600,
        }
    }
    sm.update_endpoint(
        EndpointName="abalone", EndpointConfigName="cfg-2", DeploymentConfig=deployment
    )
    described = _wait(sm, "abalone")
    assert (described["EndpointStatus"], described["EndpointConfigName"]) == ("InService", "cfg-2")
    assert described["LastDeploymentConfig"] == deployment
    host = cloud.endpoint_hosts  # type: ignore[attr-defined]
    assert host.shares == [
        {"cfg-1#1": 1.0},
        {"cfg-1#1": 1.0, "cfg-2#2": 0.0},
        {"cfg-1#1": 0.8, "cfg-2#2": 0.2},
        {"cfg-1#1": 0.0, "cfg-2#2": 1.0},
        {"cfg-2#2": 1.0},
    ]
    error = _error(
        sm.update_endpoint,
        EndpointName="abalone",
        EndpointConfigName="cfg-1",
        DeploymentConfig={
            "BlueGreenUpdatePolicy": {
                "TrafficRoutingConfiguration": {
                    "Type": "LINEAR",
                    "LinearStepSize": {"Type": "CAPACITY_PERCENT", "Value": 90},
                    "WaitIntervalInSeconds": 1,
                }
            }
        },
    )
    assert "LinearStepSize CAPACITY_PERCENT 90" in error["Message"]
    listed = sm.list_endpoints(StatusEquals="InService")["Endpoints"]
    assert [e["EndpointName"] for e in listed] == ["abalone"]
    sm.delete_endpoint(EndpointName="abalone")
    assert host.stopped == ["abalone"]
    error = _error(sm.describe_endpoint, EndpointName="abalone")
    assert error == {
        "Code": "ValidationException",
        "Message": f'Could not find endpoint "{ARN}:endpoint/abalone".',
    }
