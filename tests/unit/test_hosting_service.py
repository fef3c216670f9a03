"""The local SageMaker hosting control plane (sagemaker_hosting) with a recording data plane.

The provider is called in-process; ``cloud.endpoint_hosts`` is a recorder with the interface of
``sfn_mlops.local.endpoints.EndpointHosts``. Until that module exists, a stand-in of its
dataclasses (CONTRACTS interface 5) is installed for these tests only.
"""

from __future__ import annotations

import sys
import threading
import time
import types
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import pytest

from sfn_mlops.local.cloud import LocalCloud
from sfn_mlops.local.errors import AwsError
from sfn_mlops.local.services.sagemaker import SageMaker

IMAGE = "683313688378.dkr.ecr.us-east-1.amazonaws.com/sagemaker-xgboost:3.0-5"
ARN = "arn:aws:sagemaker:us-east-1:123456789012"


def _stand_in() -> types.ModuleType:
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
    return module


@pytest.fixture(scope="module")
def endpoints() -> Iterator[Any]:
    try:
        import sfn_mlops.local.endpoints as real

        yield real
    except ImportError:
        module = _stand_in()
        sys.modules["sfn_mlops.local.endpoints"] = module
        yield module
        del sys.modules["sfn_mlops.local.endpoints"]


class RecordingHost:
    def __init__(self, endpoints: Any) -> None:
        self.endpoints = endpoints
        self.calls: list[tuple[str, list[tuple[Any, float]], Any]] = []
        self.stopped: list[str] = []
        self.broken_models: set[str] = set()
        self.gate = threading.Event()
        self.gate.set()
        self.lock = threading.Lock()

    def serve(self, endpoint_name: str, fleets: list[tuple[Any, float]], capture: Any) -> int:
        self.gate.wait(10)
        for fleet, _ in fleets:
            for variant in fleet.variants:
                if variant.model_name in self.broken_models:
                    raise self.endpoints.EndpointError(
                        f"Failed to load model {variant.model_name}: no model file"
                    )
        with self.lock:
            self.calls.append((endpoint_name, list(fleets), capture))
        return 9000

    def stop(self, endpoint_name: str) -> None:
        self.stopped.append(endpoint_name)

    def stop_all(self) -> None:
        self.stopped.append("*")

    def tables(self, name: str) -> list[list[tuple[str, tuple[tuple[str, float], ...], float]]]:
        return [
            [
                (fleet.fleet_id, tuple((v.name, v.weight) for v in fleet.variants), round(share, 6))
                for fleet, share in fleets
            ]
            for endpoint, fleets, _ in self.calls
            if endpoint == name
        ]


@pytest.fixture
def cloud(tmp_path: Path, endpoints: Any) -> LocalCloud:
    local = LocalCloud(tmp_path / "ws", time_scale=0.001)
    local.endpoint_hosts = RecordingHost(endpoints)  # type: ignore[attr-defined]
    return local


@pytest.fixture
def sm(cloud: LocalCloud) -> Iterator[SageMaker]:
    service = SageMaker(cloud)
    for name in ("model-a", "model-b", "broken"):
        service.create_model(
            {
                "ModelName": name,
                "PrimaryContainer": {
                    "Image": IMAGE,
                    "ModelDataUrl": f"s3://b/{name}/model.tar.gz",
                    "Environment": {"SAGEMAKER_PROGRAM": "inference.py"},
                },
                "ExecutionRoleArn": "arn:aws:iam::123456789012:role/r",
            }
        )
    cloud.endpoint_hosts.broken_models.add("broken")  # type: ignore[attr-defined]
    yield service
    service.shutdown_endpoints()


def config(sm: SageMaker, name: str, *variants: tuple[str, str, float], **extra: Any) -> None:
    sm.create_endpoint_config(
        {
            "EndpointConfigName": name,
            "ProductionVariants": [
                {
                    "VariantName": variant,
                    "ModelName": model,
                    "InstanceType": "ml.m5.large",
                    "InitialInstanceCount": 1,
                    "InitialVariantWeight": weight,
                }
                for variant, model, weight in variants
            ],
            **extra,
        }
    )


def settle(sm: SageMaker, name: str, timeout: float = 10.0) -> dict[str, Any]:
    deadline = time.monotonic() + timeout
    while True:
        described = sm.describe_endpoint({"EndpointName": name})
        if described["EndpointStatus"] not in ("Creating", "Updating"):
            return described
        assert time.monotonic() < deadline, described
        time.sleep(0.01)


def error(call: Any, params: dict[str, Any]) -> AwsError:
    with pytest.raises(AwsError) as caught:
        call(params)
    return caught.value


CAPTURE = {
    "EnableCapture": True,
    "InitialSamplingPercentage": 100,
    "DestinationS3Uri": "s3://b/capture",
    "CaptureOptions": [{"CaptureMode": "Input"}, {"CaptureMode": "Output"}],
    "CaptureContentTypeHeader": {"CsvContentTypes": ["text/csv"]},
}


def test_create_serves_every_variant_with_its_weight_and_capture(sm: SageMaker) -> None:
    config(sm, "cfg-1", ("A", "model-a", 3.0), ("B", "model-b", 1.0), DataCaptureConfig=CAPTURE)
    sm.create_endpoint({"EndpointName": "ep", "EndpointConfigName": "cfg-1"})
    described = settle(sm, "ep")
    assert described["EndpointStatus"] == "InService"
    assert described["EndpointArn"] == f"{ARN}:endpoint/ep"
    assert [
        (v["VariantName"], v["CurrentWeight"], v["CurrentInstanceCount"])
        for v in described["ProductionVariants"]
    ] == [("A", 3.0, 1), ("B", 1.0, 1)]
    assert described["DataCaptureConfig"] == {
        "EnableCapture": True,
        "CaptureStatus": "Started",
        "CurrentSamplingPercentage": 100,
        "DestinationS3Uri": "s3://b/capture",
    }
    host = sm.cloud.endpoint_hosts
    assert host.tables("ep") == [[("cfg-1#1", (("A", 3.0), ("B", 1.0)), 1.0)]]
    _, fleets, capture = host.calls[0]
    variant = fleets[0][0].variants[0]
    assert (variant.image, variant.model_data_url) == (IMAGE, "s3://b/model-a/model.tar.gz")
    assert variant.environment == {"SAGEMAKER_PROGRAM": "inference.py"}
    assert (capture.destination_s3_uri, capture.sampling_percentage) == ("s3://b/capture", 100)
    assert (capture.capture_input, capture.capture_output) == (True, True)
    assert (capture.csv_content_types, capture.json_content_types) == (("text/csv",), ())


def test_a_model_that_cannot_load_fails_the_endpoint(sm: SageMaker) -> None:
    config(sm, "bad", ("A", "broken", 1.0))
    sm.create_endpoint({"EndpointName": "ep", "EndpointConfigName": "bad"})
    described = settle(sm, "ep")
    assert described["EndpointStatus"] == "Failed"
    assert "Failed to load model broken" in described["FailureReason"]
    assert sm.active_endpoints() == []


def test_update_is_blue_green_and_moves_to_the_new_config(sm: SageMaker) -> None:
    config(sm, "cfg-1", ("A", "model-a", 1.0))
    config(sm, "cfg-2", ("A", "model-b", 1.0))
    sm.create_endpoint({"EndpointName": "ep", "EndpointConfigName": "cfg-1"})
    settle(sm, "ep")
    sm.update_endpoint({"EndpointName": "ep", "EndpointConfigName": "cfg-2"})
    described = settle(sm, "ep")
    assert (described["EndpointStatus"], described["EndpointConfigName"]) == ("InService", "cfg-2")
    assert "FailureReason" not in described and "PendingDeploymentSummary" not in described
    assert [
        [(f, share) for f, _, share in table] for table in sm.cloud.endpoint_hosts.tables("ep")
    ] == [
        [("cfg-1#1", 1.0)],
        [("cfg-1#1", 1.0), ("cfg-2#2", 0.0)],
        [("cfg-1#1", 0.0), ("cfg-2#2", 1.0)],
        [("cfg-2#2", 1.0)],
    ]


def test_an_update_whose_model_cannot_load_keeps_the_old_config_serving(sm: SageMaker) -> None:
    config(sm, "cfg-1", ("A", "model-a", 1.0))
    config(sm, "bad", ("A", "broken", 1.0))
    sm.create_endpoint({"EndpointName": "ep", "EndpointConfigName": "cfg-1"})
    settle(sm, "ep")
    sm.update_endpoint({"EndpointName": "ep", "EndpointConfigName": "bad"})
    described = settle(sm, "ep")
    assert (described["EndpointStatus"], described["EndpointConfigName"]) == ("InService", "cfg-1")
    assert "Failed to load model broken" in described["FailureReason"]


def test_an_alarm_in_alarm_rolls_the_deployment_back(sm: SageMaker) -> None:
    class CloudWatch:
        def describe_alarms(self, params: dict[str, Any]) -> dict[str, Any]:
            return {
                "MetricAlarms": [
                    {"AlarmName": n, "StateValue": "ALARM"} for n in params["AlarmNames"]
                ]
            }

    sm.cloud._services["cloudwatch"] = CloudWatch()
    config(sm, "cfg-1", ("A", "model-a", 1.0))
    config(sm, "cfg-2", ("A", "model-b", 1.0))
    sm.create_endpoint({"EndpointName": "ep", "EndpointConfigName": "cfg-1"})
    settle(sm, "ep")
    deployment = {
        "BlueGreenUpdatePolicy": {
            "TrafficRoutingConfiguration": {
                "Type": "CANARY",
                "CanarySize": {"Type": "CAPACITY_PERCENT", "Value": 10},
                "WaitIntervalInSeconds": 60,
            },
            "TerminationWaitInSeconds": 60,
        },
        "AutoRollbackConfiguration": {"Alarms": [{"AlarmName": "ep-errors"}]},
    }
    sm.update_endpoint(
        {"EndpointName": "ep", "EndpointConfigName": "cfg-2", "DeploymentConfig": deployment}
    )
    described = settle(sm, "ep")
    assert (described["EndpointStatus"], described["EndpointConfigName"]) == ("InService", "cfg-1")
    assert "ep-errors" in described["FailureReason"]
    assert described["LastDeploymentConfig"] == deployment
    tables = sm.cloud.endpoint_hosts.tables("ep")
    assert [(f, share) for f, _, share in tables[-1]] == [("cfg-1#1", 1.0)]
    assert max(share for table in tables for f, _, share in table if f == "cfg-2#2") == 0.1


def test_weights_change_live(sm: SageMaker) -> None:
    config(sm, "ab", ("A", "model-a", 1.0), ("B", "model-b", 1.0))
    sm.create_endpoint({"EndpointName": "ep", "EndpointConfigName": "ab"})
    settle(sm, "ep")
    sm.update_endpoint_weights_and_capacities(
        {
            "EndpointName": "ep",
            "DesiredWeightsAndCapacities": [{"VariantName": "B", "DesiredWeight": 0.0}],
        }
    )
    described = settle(sm, "ep")
    assert [(v["VariantName"], v["CurrentWeight"]) for v in described["ProductionVariants"]] == [
        ("A", 1.0),
        ("B", 0.0),
    ]
    assert sm.cloud.endpoint_hosts.tables("ep")[-1] == [("ab#1", (("A", 1.0), ("B", 0.0)), 1.0)]
    err = error(
        sm.update_endpoint_weights_and_capacities,
        {
            "EndpointName": "ep",
            "DesiredWeightsAndCapacities": [{"VariantName": "C", "DesiredWeight": 1.0}],
        },
    )
    assert "['C'] are not present" in err.message


def test_retain_all_variant_properties_keeps_the_live_weights(sm: SageMaker) -> None:
    config(sm, "ab", ("A", "model-a", 1.0), ("B", "model-b", 1.0))
    config(sm, "ab-2", ("A", "model-b", 5.0), ("B", "model-a", 5.0))
    sm.create_endpoint({"EndpointName": "ep", "EndpointConfigName": "ab"})
    settle(sm, "ep")
    sm.update_endpoint_weights_and_capacities(
        {
            "EndpointName": "ep",
            "DesiredWeightsAndCapacities": [{"VariantName": "B", "DesiredWeight": 3.0}],
        }
    )
    settle(sm, "ep")
    sm.update_endpoint(
        {"EndpointName": "ep", "EndpointConfigName": "ab-2", "RetainAllVariantProperties": True}
    )
    described = settle(sm, "ep")
    assert [(v["VariantName"], v["CurrentWeight"]) for v in described["ProductionVariants"]] == [
        ("A", 1.0),
        ("B", 3.0),
    ]


def test_an_update_in_progress_shows_the_pending_deployment(sm: SageMaker) -> None:
    config(sm, "cfg-1", ("A", "model-a", 1.0))
    config(sm, "cfg-2", ("A", "model-b", 1.0))
    sm.create_endpoint({"EndpointName": "ep", "EndpointConfigName": "cfg-1"})
    settle(sm, "ep")
    sm.cloud.time_scale = 1.0
    sm.update_endpoint(
        {
            "EndpointName": "ep",
            "EndpointConfigName": "cfg-2",
            "DeploymentConfig": {
                "BlueGreenUpdatePolicy": {
                    "TrafficRoutingConfiguration": {
                        "Type": "ALL_AT_ONCE",
                        "WaitIntervalInSeconds": 0,
                    },
                    "TerminationWaitInSeconds": 600,
                }
            },
        }
    )
    deadline = time.monotonic() + 5
    while True:
        described = sm.describe_endpoint({"EndpointName": "ep"})
        pending = described.get("PendingDeploymentSummary")
        status = pending and pending["ProductionVariants"][0]["VariantStatus"][0]["Status"]
        if status == "Baking":
            break
        assert time.monotonic() < deadline, described
        time.sleep(0.01)
    assert described["EndpointStatus"] == "Updating"
    assert described["EndpointConfigName"] == "cfg-1"
    assert pending["EndpointConfigName"] == "cfg-2"
    variant = pending["ProductionVariants"][0]
    assert variant["CurrentInstanceCount"] == 1 and variant["DesiredInstanceCount"] == 1
    assert "TerminationWaitInSeconds" in variant["VariantStatus"][0]["StatusMessage"]
    assert error(
        sm.update_endpoint, {"EndpointName": "ep", "EndpointConfigName": "cfg-1"}
    ).message == (f'Cannot update in-progress endpoint "{ARN}:endpoint/ep".')
    assert sm.active_endpoints() == ["ep"]
    sm.delete_endpoint({"EndpointName": "ep"})  # stops the deployment and the host
    assert sm.cloud.endpoint_hosts.stopped == ["ep"]
    assert error(sm.describe_endpoint, {"EndpointName": "ep"}).message == (
        f'Could not find endpoint "{ARN}:endpoint/ep".'
    )


def test_after_a_restart_endpoints_serve_again_and_an_interrupted_update_rolls_back(
    sm: SageMaker, cloud: LocalCloud
) -> None:
    config(sm, "cfg-1", ("A", "model-a", 1.0))
    config(sm, "cfg-2", ("A", "model-b", 1.0))
    for name in ("steady", "moving"):
        sm.create_endpoint({"EndpointName": name, "EndpointConfigName": "cfg-1"})
        settle(sm, name)
    cloud.time_scale = 1.0
    sm.update_endpoint(
        {
            "EndpointName": "moving",
            "EndpointConfigName": "cfg-2",
            "DeploymentConfig": {
                "BlueGreenUpdatePolicy": {
                    "TrafficRoutingConfiguration": {
                        "Type": "ALL_AT_ONCE",
                        "WaitIntervalInSeconds": 0,
                    },
                    "TerminationWaitInSeconds": 600,
                }
            },
        }
    )
    time.sleep(0.2)
    sm.shutdown_endpoints()  # the service stops mid-deployment

    restarted = LocalCloud(cloud.root, time_scale=0.001)
    host = RecordingHost(cloud.endpoint_hosts.endpoints)  # type: ignore[attr-defined]
    restarted.endpoint_hosts = host  # type: ignore[attr-defined]
    again = SageMaker(restarted)
    assert sorted(again.recover_endpoints()) == [
        ("moving", "deployment rolled back"),
        ("steady", "serving again"),
    ]
    moving, steady = settle(again, "moving"), settle(again, "steady")
    assert (steady["EndpointStatus"], "FailureReason" in steady) == ("InService", False)
    assert (moving["EndpointStatus"], moving["EndpointConfigName"]) == ("InService", "cfg-1")
    assert "rolled back" in moving["FailureReason"]
    # "steady" stays InService while it is served again: wait for its recovery to serve it.
    deadline = time.monotonic() + 10
    while not (host.tables("moving") and host.tables("steady")) and time.monotonic() < deadline:
        time.sleep(0.01)
    assert sorted(host.tables("moving") + host.tables("steady")) == [
        [("cfg-1#1", (("A", 1.0),), 1.0)],
        [("cfg-1#1", (("A", 1.0),), 1.0)],
    ]
    again.shutdown_endpoints()


def test_configs_validate_list_and_delete(sm: SageMaker) -> None:
    err = error(
        sm.create_endpoint_config,
        {
            "EndpointConfigName": "x",
            "ProductionVariants": [
                {
                    "VariantName": "A",
                    "ModelName": "nope",
                    "InstanceType": "ml.m5.large",
                    "InitialInstanceCount": 1,
                }
            ],
        },
    )
    assert err.message == f'Could not find model "{ARN}:model/nope".'
    config(sm, "cfg-1", ("A", "model-a", 1.0))
    config(sm, "cfg-2", ("A", "model-b", 1.0))
    err = error(
        sm.create_endpoint_config,
        {
            "EndpointConfigName": "cfg-1",
            "ProductionVariants": [
                {
                    "VariantName": "A",
                    "ModelName": "model-a",
                    "InstanceType": "ml.m5.large",
                    "InitialInstanceCount": 1,
                }
            ],
        },
    )
    assert (
        err.message
        == f'Cannot create already existing endpoint configuration "{ARN}:endpoint-config/cfg-1".'
    )
    described = sm.describe_endpoint_config({"EndpointConfigName": "cfg-1"})
    assert described["ProductionVariants"][0]["InitialVariantWeight"] == 1.0
    names = [c["EndpointConfigName"] for c in sm.list_endpoint_configs({})["EndpointConfigs"]]
    assert names == ["cfg-2", "cfg-1"]
    sm.delete_endpoint_config({"EndpointConfigName": "cfg-2"})
    err = error(sm.describe_endpoint_config, {"EndpointConfigName": "cfg-2"})
    assert err.message == f'Could not find endpoint configuration "{ARN}:endpoint-config/cfg-2".'
    err = error(sm.create_endpoint, {"EndpointName": "ep", "EndpointConfigName": "cfg-2"})
    assert err.code == "ValidationException"
    sm.create_endpoint({"EndpointName": "ep", "EndpointConfigName": "cfg-1"})
    err = error(sm.create_endpoint, {"EndpointName": "ep", "EndpointConfigName": "cfg-1"})
    assert err.message == f'Cannot create already existing endpoint "{ARN}:endpoint/ep".'
    settle(sm, "ep")
    assert [
        e["EndpointName"] for e in sm.list_endpoints({"StatusEquals": "InService"})["Endpoints"]
    ] == ["ep"]


def test_the_service_does_not_stop_for_idleness_while_an_endpoint_is_in_service(
    sm: SageMaker, cloud: LocalCloud
) -> None:
    from sfn_mlops.local.daemon import Service

    service = Service(cloud.root, idle_timeout=1.0)
    service.server = types.SimpleNamespace(
        gateway=types.SimpleNamespace(last_request=time.monotonic() - 100)
    )
    assert service._idle_for() > 99
    config(sm, "cfg-1", ("A", "model-a", 1.0))
    sm.create_endpoint({"EndpointName": "ep", "EndpointConfigName": "cfg-1"})
    settle(sm, "ep")
    assert service._idle_for() == 0.0
    sm.delete_endpoint({"EndpointName": "ep"})
    service.server.gateway.last_request = time.monotonic() - 100
    assert service._idle_for() > 99
