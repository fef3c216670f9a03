"""Local endpoints for real: a serving process per endpoint, reached by HTTP and by boto3.

The data plane (``sfn_mlops.local.endpoints``) with the project's inference code in script
mode; the control plane (CreateEndpoint ...) through the local server, as a user drives it.
"""

from __future__ import annotations

import http.client
import json
import os
import signal
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import boto3
import numpy as np
import pytest
from botocore.exceptions import ClientError
from endpoint_models import BUCKET, put_inference_code, put_model, train_booster

from sfn_mlops.local.cloud import LocalCloud
from sfn_mlops.local.endpoints import (
    CaptureSpec,
    EndpointError,
    EndpointHosts,
    Fleet,
    VariantSpec,
)

IMAGE = "683313688378.dkr.ecr.us-east-1.amazonaws.com/sagemaker-xgboost:3.0-5"
ROLE = "arn:aws:iam::123456789012:role/sagemaker"
CAPTURE = CaptureSpec(f"s3://{BUCKET}/capture", 100, True, True, ("text/csv",), ())


@pytest.fixture(scope="module")
def booster() -> Any:
    return train_booster()


@pytest.fixture
def hosts(cloud: LocalCloud) -> Iterator[EndpointHosts]:
    yield cloud.endpoint_hosts
    cloud.endpoint_hosts.stop_all()


def variant(cloud: LocalCloud, booster: Any, name: str = "AllTraffic", **kw: Any) -> VariantSpec:
    url = put_model(cloud, kw.pop("model", "m1"), booster)
    environment = kw.pop("environment", None) or put_inference_code(cloud)
    return VariantSpec(name, "m1", IMAGE, url, environment, 1, kw.pop("weight", 1.0))


def post(port: int, body: bytes, content_type: str = "text/csv") -> tuple[int, bytes, Any]:
    connection = http.client.HTTPConnection("127.0.0.1", port, timeout=10)
    connection.request("POST", "/invocations", body=body, headers={"Content-Type": content_type})
    response = connection.getresponse()
    return response.status, response.read(), response.headers


def captured(cloud: LocalCloud, endpoint: str) -> list[tuple[Path, dict[str, Any]]]:
    folder = cloud.objects.root / BUCKET / "capture" / endpoint
    return [
        (path.relative_to(folder), json.loads(line))
        for path in sorted(folder.rglob("*.jsonl"))
        for line in path.read_text().splitlines()
    ]


def test_serves_the_models_predictions_over_plain_http(
    cloud: LocalCloud, hosts: EndpointHosts, booster: Any
) -> None:
    port = hosts.serve("ep", [(Fleet("c#1", (variant(cloud, booster),)), 1.0)], None)
    connection = http.client.HTTPConnection("127.0.0.1", port, timeout=10)
    connection.request("GET", "/ping")
    assert connection.getresponse().status == 200

    status, body, headers = post(port, b"M,0.5,0.3\nF,0.1,0.9\n")
    expected = booster.inplace_predict(np.array([[2, 0.5, 0.3], [0, 0.1, 0.9]], np.float32))
    assert status == 200, body
    assert headers["X-Amzn-Invoked-Production-Variant"] == "AllTraffic"
    assert np.allclose([float(v) for v in body.split()], expected, atol=1e-6)

    instances = json.dumps({"instances": [{"sex": "M", "length": 0.5, "weight": 0.3}]})
    status, body, _ = post(port, instances.encode(), "application/json")
    assert status == 200 and np.isclose(float(body), expected[0], atol=1e-6)


@pytest.mark.parametrize(
    ("body", "content_type", "status", "message"),
    [
        (b"M,0.5\n", "text/csv", 400, "row 1 has 2 values; expected 3"),
        (b"M,heavy,0.3\n", "text/csv", 400, "feature 'length' must be a number, got 'heavy'"),
        (b"", "text/csv", 400, "the request has no rows"),
        (b"M,0.5,0.3", "image/png", 415, "content type 'image/png' is not supported"),
        (b'{"instances": [', "application/json", 400, "the body is not valid JSON"),
        (b"x" * (6 * 1024 * 1024 + 1), "text/csv", 413, "HTTP content length exceeded 6291456"),
    ],
)
def test_bad_requests_get_sagemakers_status_and_the_endpoint_keeps_serving(
    cloud: LocalCloud,
    hosts: EndpointHosts,
    booster: Any,
    body: bytes,
    content_type: str,
    status: int,
    message: str,
) -> None:
    port = hosts.serve("ep", [(Fleet("c#1", (variant(cloud, booster),)), 1.0)], None)
    got, answer, _ = post(port, body, content_type)
    assert (got, message in answer.decode()) == (status, True), answer
    assert post(port, b"M,0.5,0.3")[0] == 200
    metrics = hosts.take_metrics("ep")["AllTraffic"]
    assert (metrics["Invocations"], metrics["Invocation4XXErrors"]) == (2, 1)


def test_capture_is_sagemakers_jsonl_with_every_request_once(
    cloud: LocalCloud, hosts: EndpointHosts, booster: Any
) -> None:
    port = hosts.serve("ep", [(Fleet("c#1", (variant(cloud, booster),)), 1.0)], CAPTURE)
    bodies = [f"M,{i / 100},0.3".encode() for i in range(30)]
    answers = [post(port, body)[1] for body in bodies]
    hosts.stop("ep")  # a stop publishes the open capture files
    records = captured(cloud, "ep")
    assert sorted(r["captureData"]["endpointInput"]["data"].encode() for _, r in records) == sorted(
        bodies
    )
    path, first = records[0]
    assert path.parts[0] == "AllTraffic" and len(path.parts) == 6  # variant/yyyy/mm/dd/hh/file
    assert path.name.endswith(".jsonl")
    assert first["captureData"]["endpointInput"]["encoding"] == "CSV"
    assert first["captureData"]["endpointOutput"]["data"].encode() in answers
    assert first["eventVersion"] == "0" and first["eventMetadata"]["eventId"]


def test_capture_without_content_types_is_base64(
    cloud: LocalCloud, hosts: EndpointHosts, booster: Any
) -> None:
    plain = CaptureSpec(f"s3://{BUCKET}/capture", 100, True, False)
    port = hosts.serve("ep", [(Fleet("c#1", (variant(cloud, booster),)), 1.0)], plain)
    post(port, b"M,0.5,0.3")
    hosts.stop("ep")
    [(_, record)] = captured(cloud, "ep")
    assert record["captureData"] == {
        "endpointInput": {
            "observedContentType": "text/csv",
            "mode": "INPUT",
            "data": "TSwwLjUsMC4z",
            "encoding": "BASE64",
        }
    }


def test_traffic_follows_fleet_shares_and_variant_weights(
    cloud: LocalCloud, hosts: EndpointHosts, booster: Any
) -> None:
    blue = Fleet("c#1", (variant(cloud, booster, "Blue"),))
    green = Fleet("c#2", (variant(cloud, booster, "Green", model="m2"),))
    port = hosts.serve("ep", [(blue, 1.0)], None)
    assert hosts.serve("ep", [(blue, 0.5), (green, 0.5)], None) == port  # same port throughout
    seen = {post(port, b"M,0.5,0.3")[2]["X-Amzn-Invoked-Production-Variant"] for _ in range(60)}
    assert seen == {"Blue", "Green"}
    hosts.serve("ep", [(blue, 0.0), (green, 1.0)], None)
    seen = {post(port, b"M,0.5,0.3")[2]["X-Amzn-Invoked-Production-Variant"] for _ in range(20)}
    assert seen == {"Green"}


def test_a_model_that_cannot_load_fails_with_its_reason_and_the_old_one_keeps_serving(
    cloud: LocalCloud, hosts: EndpointHosts, booster: Any
) -> None:
    good = Fleet("c#1", (variant(cloud, booster),))
    port = hosts.serve("ep", [(good, 1.0)], None)
    broken = VariantSpec("AllTraffic", "m2", IMAGE, f"s3://{BUCKET}/nothing/model.tar.gz", {}, 1, 1)
    with pytest.raises(EndpointError, match="nothing/model.tar.gz: the object does not exist"):
        hosts.serve("ep", [(good, 0.5), (Fleet("c#2", (broken,)), 0.5)], None)
    assert post(port, b"M,0.5,0.3")[0] == 200
    with pytest.raises(EndpointError, match="does not exist"):
        hosts.serve("other", [(Fleet("c#1", (broken,)), 1.0)], None)


def test_a_killed_endpoint_leaves_whole_capture_lines_that_the_next_start_publishes(
    cloud: LocalCloud, hosts: EndpointHosts, booster: Any
) -> None:
    fleet = Fleet("c#1", (variant(cloud, booster),))
    port = hosts.serve("ep", [(fleet, 1.0)], CAPTURE)
    for _ in range(10):
        post(port, b"M,0.5,0.3")
    time.sleep(0.5)  # the capture writer flushes whole lines every 0.2 s
    pid = hosts.pid("ep")
    assert pid is not None
    os.kill(pid, signal.SIGKILL)
    hosts.stop("ep")
    hosts.serve("ep", [(fleet, 1.0)], CAPTURE)
    assert len(captured(cloud, "ep")) == 10  # every line parses (captured() loads each)


def test_a_capture_line_torn_by_a_kill_mid_write_is_cut_when_the_next_start_publishes(
    cloud: LocalCloud, hosts: EndpointHosts, booster: Any
) -> None:
    # A SIGKILL during the writer's os.write ends the write at a page boundary (Linux stops a
    # file write at a fatal signal): the spool file's last line can be torn.
    fleet = Fleet("c#1", (variant(cloud, booster),))
    spool = hosts.folder("ep") / "spool"
    spool.mkdir(parents=True)
    line = b'{"captureData":{},"eventVersion":"0"}\n'
    key = f"{BUCKET}/capture/ep/AllTraffic/2026/12/03/12"
    for name, data in (("torn", line * 3 + b'{"captureData":{"endpointIn'), ("only", b'{"ca')):
        (spool / f"{name}.part").write_bytes(data)
        (spool / f"{name}.key").write_text(f"{key}/00-00-000-{name}.jsonl")
    hosts.serve("ep", [(fleet, 1.0)], CAPTURE)  # the start publishes what the killed one left
    assert captured(cloud, "ep") == [(Path("AllTraffic/2026/12/03/12/00-00-000-torn.jsonl"),
                                      {"captureData": {}, "eventVersion": "0"})] * 3  # fmt: skip
    assert list(spool.iterdir()) == []


def test_a_killed_endpoint_process_is_started_again_on_its_port_with_its_routing(
    cloud: LocalCloud, hosts: EndpointHosts, booster: Any
) -> None:
    other = train_booster(seed=1)
    old, new = variant(cloud, booster), variant(cloud, other, model="m2")
    port = hosts.serve("ep", [(Fleet("c#1", (old,)), 0.0), (Fleet("c#2", (new,)), 1.0)], None)
    pid = hosts.pid("ep")
    assert pid is not None and hosts.revive() == []  # alive: nothing to do
    os.kill(pid, signal.SIGKILL)
    deadline = time.monotonic() + 20
    while hosts.pid("ep") in (None, pid) and time.monotonic() < deadline:
        hosts.revive()  # or the metrics pump's own call, every second, does it first
        time.sleep(0.05)
    assert hosts.port("ep") == port and hosts.pid("ep") not in (None, pid)
    status, body, _ = post(port, b"M,0.5,0.3\n")
    expected = other.inplace_predict(np.array([[2, 0.5, 0.3]], np.float32))  # the new fleet's
    assert status == 200 and np.isclose(float(body), expected[0], atol=1e-6), body


# ------------------------------------------------------------------ through boto3


def create_endpoint(cloud: LocalCloud, booster: Any, name: str = "ep") -> Any:
    sm = boto3.client("sagemaker")
    sm.create_model(
        ModelName="m1",
        PrimaryContainer={
            "Image": IMAGE,
            "ModelDataUrl": put_model(cloud, "m1", booster),
            "Environment": put_inference_code(cloud),
        },
        ExecutionRoleArn=ROLE,
    )
    sm.create_endpoint_config(
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
    sm.create_endpoint(EndpointName=name, EndpointConfigName="c1")
    sm.get_waiter("endpoint_in_service").wait(
        EndpointName=name, WaiterConfig={"Delay": 1, "MaxAttempts": 60}
    )
    return sm


def test_invoke_endpoint_through_the_runtime_api(
    cloud: LocalCloud, hosts: EndpointHosts, booster: Any
) -> None:
    create_endpoint(cloud, booster)
    runtime = boto3.client("sagemaker-runtime")
    answer = runtime.invoke_endpoint(EndpointName="ep", Body=b"M,0.5,0.3", ContentType="text/csv")
    expected = booster.inplace_predict(np.array([[2, 0.5, 0.3]], np.float32))[0]
    assert np.isclose(float(answer["Body"].read()), expected, atol=1e-6)
    assert (answer["ContentType"], answer["InvokedProductionVariant"]) == ("text/csv", "AllTraffic")

    with pytest.raises(ClientError) as caught:
        runtime.invoke_endpoint(EndpointName="ep", Body=b"M,0.5", ContentType="text/csv")
    error = caught.value.response
    assert error["Error"]["Code"] == "ModelError"
    assert error["OriginalStatusCode"] == 400
    assert 'Received client error (400) from primary with message "row 1 has 2' in str(caught.value)

    with pytest.raises(ClientError, match=r"\(413\).*HTTP content length exceeded 6291456"):
        runtime.invoke_endpoint(EndpointName="ep", Body=b"1" * (6 * 1024 * 1024 + 1))
    with pytest.raises(ClientError, match="ValidationError.*Endpoint nope of account"):
        runtime.invoke_endpoint(EndpointName="nope", Body=b"M,0.5,0.3", ContentType="text/csv")
    with pytest.raises(ClientError, match="ValidationError.*variant 'B' is not part"):
        runtime.invoke_endpoint(
            EndpointName="ep", Body=b"M,0.5,0.3", ContentType="text/csv", TargetVariant="B"
        )
    cloudwatch = boto3.client("cloudwatch")
    dimensions = [
        {"Name": "EndpointName", "Value": "ep"},
        {"Name": "VariantName", "Value": "AllTraffic"},
    ]

    def total(metric: str) -> float:
        points = cloudwatch.get_metric_statistics(
            Namespace="AWS/SageMaker",
            MetricName=metric,
            Dimensions=dimensions,
            StartTime=time.time() - 600,
            EndTime=time.time() + 60,
            Period=60,
            Statistics=["Sum"],
        )["Datapoints"]
        return sum(point["Sum"] for point in points)

    deadline = time.monotonic() + 10  # the service publishes the counters every second
    while total("Invocations") < 3 and time.monotonic() < deadline:
        hosts.publish_metrics()
        time.sleep(0.05)
    sums = {m: total(m) for m in ("Invocations", "Invocation4XXErrors", "Invocation5XXErrors")}
    assert sums == {"Invocations": 3.0, "Invocation4XXErrors": 2.0, "Invocation5XXErrors": 0.0}
