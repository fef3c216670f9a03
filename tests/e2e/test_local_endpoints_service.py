"""Endpoints and the registry belong to the real local service; the CLI shows and drives them.

A real service process (``control.ensure_running``), boto3 at its URL, the ``sfn-mlops`` CLI in
this process: an endpoint outlives the calls that made it, answers on its own port and through
``sagemaker-runtime``, is listed by ``local status`` and comes back after a restart.
"""

from __future__ import annotations

import http.client
import re
import sys
import time
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

import boto3
import pytest

sys.path.insert(0, str(Path(__file__).resolve().parents[1] / "functional"))

from endpoint_models import put_inference_code, put_model, train_booster  # noqa: E402

from sfn_mlops.local import control  # noqa: E402
from sfn_mlops.local.cloud import LocalCloud  # noqa: E402

pytestmark = pytest.mark.e2e

IMAGE = "683313688378.dkr.ecr.us-east-1.amazonaws.com/sagemaker-xgboost:3.0-5"
ROLE = "arn:aws:iam::123456789012:role/sagemaker"


@pytest.fixture
def service(tmp_path: Path) -> Iterator[tuple[Path, Any]]:
    root = tmp_path / "workspace"
    info = control.ensure_running(root)
    yield root, info
    control.stop(root)


def _clients(info: control.ServiceInfo) -> tuple[Any, Any]:
    """SageMaker and its runtime at the service, as the workspace's administrator."""
    keys = control.admin_key(info.workspace).client_kwargs()
    return boto3.client("sagemaker", endpoint_url=info.url, **keys), boto3.client(
        "sagemaker-runtime", endpoint_url=info.url, **keys
    )


def _create_endpoint(root: Path, sagemaker: Any) -> None:
    cloud = LocalCloud(root)  # the object store is files: this process can fill it
    sagemaker.create_model(
        ModelName="m1",
        PrimaryContainer={
            "Image": IMAGE,
            "ModelDataUrl": put_model(cloud, "m1", train_booster()),
            "Environment": put_inference_code(cloud),
        },
        ExecutionRoleArn=ROLE,
    )
    sagemaker.create_endpoint_config(
        EndpointConfigName="c1",
        ProductionVariants=[
            {
                "VariantName": "AllTraffic",
                "ModelName": "m1",
                "InitialInstanceCount": 1,
                "InstanceType": "ml.m5.large",
            }
        ],
    )
    sagemaker.create_endpoint(EndpointName="ep", EndpointConfigName="c1")
    sagemaker.get_waiter("endpoint_in_service").wait(
        EndpointName="ep", WaiterConfig={"Delay": 1, "MaxAttempts": 60}
    )


def _port(root: Path) -> int:
    info = control.find(root)
    assert info is not None
    return int(control.admin(info, "status")["endpoints"]["ep"])


def _plain_post(port: int, body: bytes) -> tuple[int, bytes]:
    connection = http.client.HTTPConnection("127.0.0.1", port, timeout=10)
    connection.request("POST", "/invocations", body=body, headers={"Content-Type": "text/csv"})
    response = connection.getresponse()
    return response.status, response.read()


def test_an_endpoint_serves_is_listed_and_comes_back_after_a_restart(
    service: tuple[Path, Any], cli: Callable[..., Any]
) -> None:
    root, info = service
    sagemaker, runtime = _clients(info)
    _create_endpoint(root, sagemaker)
    port = _port(root)
    status, body = _plain_post(port, b"M,0.5,0.3")
    assert status == 200 and float(body) > 0
    answer = runtime.invoke_endpoint(EndpointName="ep", Body=b"M,0.5,0.3", ContentType="text/csv")
    assert answer["Body"].read() == body

    listed = cli(root, "endpoints", "list")
    assert listed.code == 0, listed.err
    assert f"AllTraffic 100%  http://127.0.0.1:{port}" in listed.out
    invoked = cli(root, "endpoints", "invoke", "ep", "M,0.5,0.3")
    assert (invoked.code, invoked.out.encode()) == (0, body)
    assert "served by variant AllTraffic" in invoked.err
    bad = cli(root, "endpoints", "invoke", "ep", "M,0.5")
    assert bad.code == 2 and "ModelError" in bad.err and "row 1 has 2 values" in bad.err
    assert f"ep (http://127.0.0.1:{port})" in cli(root, "local", "status").out

    assert cli(root, "local", "down").code == 0
    restarted = control.ensure_running(root)
    sagemaker, _ = _clients(restarted)
    deadline = time.monotonic() + 60
    while _status(sagemaker) != "InService" or not control.admin(restarted, "status")[
        "endpoints"
    ].get("ep"):
        assert time.monotonic() < deadline, "the endpoint did not come back"
        time.sleep(0.2)
    assert _port(root) == port  # the same URL as before the restart
    assert _plain_post(port, b"M,0.5,0.3") == (200, body)


def _status(sagemaker: Any) -> str:
    return str(sagemaker.describe_endpoint(EndpointName="ep")["EndpointStatus"])


def test_models_approve_and_reject_decide_a_pending_version_once(
    service: tuple[Path, Any], cli: Callable[..., Any]
) -> None:
    root, info = service
    sagemaker, _ = _clients(info)
    sagemaker.create_model_package_group(ModelPackageGroupName="g")
    container = {"Image": IMAGE, "ModelDataUrl": "s3://models/m1/model.tar.gz"}
    for _ in range(2):
        sagemaker.create_model_package(
            ModelPackageGroupName="g",
            InferenceSpecification={
                "Containers": [container],
                "SupportedContentTypes": ["text/csv"],
                "SupportedResponseMIMETypes": ["text/csv"],
            },
            ModelApprovalStatus="PendingManualApproval",
        )
    listed = cli(root, "models", "list")
    assert listed.code == 0 and re.search(r"g/2 +PendingManualApproval", listed.out), listed.out

    approved = cli(root, "models", "approve", "g/1", "--reason", "looks good")
    assert approved.code == 0 and "g/1: PendingManualApproval -> Approved" in approved.out
    package = sagemaker.describe_model_package(ModelPackageName="g/1")
    assert (package["ModelApprovalStatus"], package["ApprovalDescription"]) == (
        "Approved",
        "looks good",
    )
    again = cli(root, "models", "reject", "g/1")
    assert again.code == 2 and "g/1 is already Approved" in again.err
    rejected = cli(root, "models", "reject", "g/2")
    assert rejected.code == 0 and "-> Rejected" in rejected.out
    missing = cli(root, "models", "approve", "g/9")
    assert missing.code == 2 and "no model version 'g/9'" in missing.err
    described = cli(root, "models", "describe", "g/1")
    assert "approval    Approved (looks good)" in described.out
