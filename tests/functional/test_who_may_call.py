"""Who may call the local service and its endpoints: refused as AWS refuses, the server stays up.

A request must be addressed to the server's own loopback port (no foreign ``Host``, as DNS
rebinding would give a web page), come from no other site (``Origin``), and be signed with a
key of the workspace (SigV4, verified as AWS verifies it). Each refusal is asserted with the
exact code and status the service's protocol family answers with; each principal's own keys
are the ones its code signs with.
"""

from __future__ import annotations

import hashlib
import hmac
import http.client
import json
import time
import urllib.error
import urllib.request
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any
from xml.etree import ElementTree

import boto3
import pytest
from botocore.auth import S3SigV4Auth
from botocore.awsrequest import AWSRequest
from botocore.config import Config
from botocore.credentials import Credentials
from botocore.exceptions import ClientError
from endpoint_models import put_inference_code, put_model, train_booster

from sfn_mlops.local import server as gateway_module
from sfn_mlops.local.cloud import LocalCloud
from sfn_mlops.local.credentials import ADMIN_ARN, TOKEN_HEADER, Principal
from sfn_mlops.local.endpoints import EndpointHosts
from sfn_mlops.local.server import LocalServer

ROLE = "arn:aws:iam::123456789012:role/caller"
IMAGE = "683313688378.dkr.ecr.us-east-1.amazonaws.com/sagemaker-xgboost:3.0-5"
NO_RETRY = Config(retries={"total_max_attempts": 1})
# One call each of the services the gateway answers: (service, operation, its arguments).
CALLS = {
    "s3": ("list_buckets", {}),
    "stepfunctions": ("list_state_machines", {}),
    "sagemaker": ("list_models", {}),
    "events": ("list_rules", {}),
    "lambda": ("list_functions", {}),
    "sns": ("list_topics", {}),
    "cloudwatch": ("describe_alarms", {}),
    "sagemaker-runtime": ("invoke_endpoint", {"EndpointName": "ep", "Body": b"1,2"}),
}


def client(service: str, **overrides: Any) -> Any:
    """A client of the served workspace: its administrator's keys unless overridden."""
    return boto3.client(service, config=overrides.pop("config", NO_RETRY), **overrides)


def error_of(call: Callable[..., Any], **kwargs: Any) -> tuple[str, int, str]:
    with pytest.raises(ClientError) as caught:
        call(**kwargs)
    response = caught.value.response
    error = response["Error"]
    return error["Code"], response["ResponseMetadata"]["HTTPStatusCode"], error.get("Message", "")


def call_of(service_client: Any, service: str) -> tuple[str, int, str]:
    operation, kwargs = CALLS[service]
    return error_of(getattr(service_client, operation), **kwargs)


def raw(
    port: int, method: str, path: str, headers: dict[str, str], body: bytes = b""
) -> tuple[int, bytes]:
    """One request as a browser page (or anything else) sends it, Host included."""
    connection = http.client.HTTPConnection("127.0.0.1", port, timeout=10)
    connection.request(method, path, body=body, headers=headers)
    response = connection.getresponse()
    return response.status, response.read()


# the service: a foreign Host, another site's Origin -------------------------------------------
MADE_UP_SIGNATURE = {
    "Authorization": "AWS4-HMAC-SHA256 Credential=AKIAIOSFODNN7EXAMPLE/20260101/us-east-1/s3/"
    "aws4_request, SignedHeaders=host;x-amz-date, Signature=" + "0" * 64,
    "X-Amz-Date": "20260101T000000Z",
}


@pytest.mark.parametrize("host", ["evil.example", "evil.example:{port}", "127.0.0.1:1"])
def test_a_foreign_host_is_refused_and_the_service_stays_up(server: LocalServer, host: str) -> None:
    headers = {"Host": host.format(port=server.port), **MADE_UP_SIGNATURE}
    status, body = raw(server.port, "GET", "/", headers)
    answer = json.loads(body)
    assert (status, answer["__type"]) == (403, "Forbidden")
    assert answer["message"].startswith(f"Host {host.format(port=server.port)!r} is not this")
    assert client("s3").list_buckets()["Buckets"] == []


def test_the_admin_paths_refuse_a_foreign_host_even_with_the_token(server: LocalServer) -> None:
    token = server.gateway.cloud.credentials.service_token()
    headers = {"Host": "evil.example", TOKEN_HEADER: token}
    status, body = raw(server.port, "POST", "/_sfn-mlops/status", headers, b"{}")
    assert (status, json.loads(body)["__type"]) == (403, "Forbidden")


def with_origin(service_client: Any, origin: str) -> Any:
    def add(request: Any, **_: Any) -> None:
        request.headers["Origin"] = origin

    service_client.meta.events.register("before-send", add)
    return service_client


def test_a_cross_origin_request_is_refused_even_signed(server: LocalServer) -> None:
    s3 = with_origin(client("s3"), "http://evil.example")
    assert error_of(s3.list_buckets)[:2] == ("403", 403)  # a JSON body S3's parser cannot read
    status, body = raw(
        server.port,
        "GET",
        "/",
        {"Host": f"127.0.0.1:{server.port}", "Origin": "http://evil.example"},
    )
    answer = json.loads(body)
    assert (status, answer["__type"]) == (403, "Forbidden")
    assert answer["message"].startswith("Origin 'http://evil.example' is another site")
    same_site = with_origin(client("sns"), f"http://127.0.0.1:{server.port}")
    assert same_site.list_topics()["Topics"] == []


# the service: signatures -----------------------------------------------------------------------
@pytest.mark.parametrize(
    ("service", "code", "status"),
    [
        ("s3", "SignatureDoesNotMatch", 403),
        ("stepfunctions", "InvalidSignatureException", 400),
        ("sagemaker", "InvalidSignatureException", 400),
        ("events", "InvalidSignatureException", 400),
        ("lambda", "InvalidSignatureException", 403),
        ("sns", "SignatureDoesNotMatch", 403),
        ("cloudwatch", "SignatureDoesNotMatch", 403),
        ("sagemaker-runtime", "InvalidSignatureException", 403),
    ],
)
def test_a_wrong_secret_is_refused_as_each_service_refuses_it(
    cloud: LocalCloud, service: str, code: str, status: int
) -> None:
    admin = cloud.credentials.admin()
    wrong = client(service, aws_access_key_id=admin.access_key_id, aws_secret_access_key="x" * 40)
    refused = call_of(wrong, service)
    assert refused[:2] == (code, status)
    assert refused[2].startswith("The request signature we calculated does not match")


@pytest.mark.parametrize(
    ("service", "code", "status", "message"),
    [
        ("s3", "InvalidAccessKeyId", 403, "The AWS Access Key Id you provided does not exist"),
        ("stepfunctions", "UnrecognizedClientException", 400, "The security token included"),
        ("sagemaker", "UnrecognizedClientException", 400, "The security token included"),
        ("events", "UnrecognizedClientException", 400, "The security token included"),
        ("lambda", "UnrecognizedClientException", 403, "The security token included"),
        ("sns", "InvalidClientTokenId", 403, "The security token included"),
        ("cloudwatch", "InvalidClientTokenId", 403, "The security token included"),
        ("sagemaker-runtime", "UnrecognizedClientException", 403, "The security token included"),
    ],
)
def test_an_unknown_key_is_refused_as_each_service_refuses_it(
    cloud: LocalCloud, service: str, code: str, status: int, message: str
) -> None:
    stranger = client(
        service, aws_access_key_id="AKIAIOSFODNN7EXAMPLE", aws_secret_access_key="x" * 40
    )
    refused = call_of(stranger, service)
    assert refused[:2] == (code, status)
    assert refused[2].startswith(message)


def test_a_clock_more_than_15_minutes_off_is_refused(server: LocalServer) -> None:
    server.gateway.verifier.clock = lambda: time.time() + 16 * 60
    assert error_of(client("s3").list_buckets)[:2] == ("RequestTimeTooSkewed", 403)
    code, status, message = error_of(client("stepfunctions").list_state_machines)
    assert (code, status) == ("InvalidSignatureException", 400)
    assert message.startswith("Signature expired: ") and message.endswith(" - 15 min.)")
    server.gateway.verifier.clock = lambda: time.time() + 14 * 60
    assert client("stepfunctions").list_state_machines()["stateMachines"] == []


def test_a_session_token_and_another_region_are_refused(cloud: LocalCloud) -> None:
    admin = cloud.credentials.admin().client_kwargs()
    with_token = client("stepfunctions", aws_session_token="token", **admin)
    assert error_of(with_token.list_state_machines)[:2] == ("UnrecognizedClientException", 400)
    assert error_of(client("s3", aws_session_token="t", **admin).list_buckets)[:2] == (
        "InvalidToken",
        400,
    )
    elsewhere = client("stepfunctions", region_name="eu-west-1")
    refused = error_of(elsewhere.list_state_machines)
    assert refused == (
        "InvalidSignatureException",
        400,
        "Credential should be scoped to a valid region. ",
    )
    s3 = client("s3", region_name="eu-west-1")
    assert error_of(s3.list_buckets)[:2] == ("AuthorizationHeaderMalformed", 400)


def tamper(service_client: Any, body: bytes) -> Any:
    """The body replaced after signing (same length), as a man in the middle would."""

    def swap(request: Any, **_: Any) -> None:
        request.body = body

    service_client.meta.events.register("before-send", swap)
    return service_client


def test_a_body_changed_after_signing_is_refused(cloud: LocalCloud) -> None:
    client("s3").create_bucket(Bucket="data")
    s3 = tamper(client("s3"), b"HELLO")
    refused = error_of(s3.put_object, Bucket="data", Key="k", Body=b"hello")
    assert refused[:2] == ("XAmzContentSHA256Mismatch", 400)
    sfn = tamper(client("stepfunctions"), b'{"maxResults": 6}')
    assert error_of(sfn.list_state_machines, maxResults=5)[:2] == ("InvalidSignatureException", 400)
    assert client("s3").list_objects_v2(Bucket="data")["KeyCount"] == 0


class _StreamingSigner(S3SigV4Auth):
    """botocore's S3 signer for the seed signature of a chunked upload (botocore itself never
    streams over plain HTTP, the AWS SDK for Java and others do)."""

    def payload(self, request: Any) -> str:
        return "STREAMING-AWS4-HMAC-SHA256-PAYLOAD"


def chunked_upload(url: str, key: Any, chunks: list[bytes]) -> tuple[dict[str, str], bytes]:
    """Headers and body of an ``aws-chunked`` PUT, each chunk signed after the one before it
    as https://docs.aws.amazon.com/AmazonS3/latest/API/sigv4-streaming.html says."""
    sizes = [*map(len, chunks), 0]
    length = sum(len(f"{size:x};chunk-signature=") + 64 + 2 + size + 2 for size in sizes)
    request = AWSRequest(
        "PUT",
        url,
        headers={
            "Content-Encoding": "aws-chunked",
            "Content-Length": str(length),
            "x-amz-decoded-content-length": str(sum(sizes)),
        },
    )
    signer = _StreamingSigner(
        Credentials(key.access_key_id, key.secret_access_key), "s3", "us-east-1"
    )
    signer.add_auth(request)
    stamp = request.context["timestamp"]
    scope = f"{stamp[:8]}/us-east-1/s3/aws4_request"
    signing_key = f"AWS4{key.secret_access_key}".encode()
    for part in (stamp[:8], "us-east-1", "s3", "aws4_request"):
        signing_key = hmac.new(signing_key, part.encode(), hashlib.sha256).digest()
    previous = request.headers["Authorization"].rpartition("Signature=")[2]
    body = b""
    for data in [*chunks, b""]:
        to_sign = "\n".join(
            [
                "AWS4-HMAC-SHA256-PAYLOAD",
                stamp,
                scope,
                previous,
                hashlib.sha256(b"").hexdigest(),
                hashlib.sha256(data).hexdigest(),
            ]
        )
        previous = hmac.new(signing_key, to_sign.encode(), hashlib.sha256).hexdigest()
        body += f"{len(data):x};chunk-signature={previous}\r\n".encode() + data + b"\r\n"
    assert len(body) == length
    return {name: str(value) for name, value in request.headers.items()}, body


def test_a_chunked_upload_is_verified_chunk_by_chunk_and_stored_decoded(
    server: LocalServer,
) -> None:
    s3 = client("s3")
    s3.create_bucket(Bucket="uploads")
    key = server.gateway.cloud.credentials.admin()
    chunks = [b"a" * 65536, b"b" * 100]
    headers, body = chunked_upload(f"{server.url}/uploads/object", key, chunks)
    assert raw(server.port, "PUT", "/uploads/object", headers, body)[0] == 200
    assert s3.get_object(Bucket="uploads", Key="object")["Body"].read() == b"".join(chunks)
    tampered = body.replace(b"b" * 100, b"c" * 100)
    status, answer = raw(server.port, "PUT", "/uploads/other", headers, tampered)
    error = ElementTree.fromstring(answer)
    assert (status, error.findtext("Code")) == (403, "SignatureDoesNotMatch")
    assert s3.list_objects_v2(Bucket="uploads")["KeyCount"] == 1


def s3_error(url: str) -> tuple[int, str, str]:
    with pytest.raises(urllib.error.HTTPError) as caught:
        urllib.request.urlopen(url, timeout=10)  # noqa: S310 - loopback
    error = ElementTree.fromstring(caught.value.read())
    return caught.value.code, error.findtext("Code") or "", error.findtext("Message") or ""


def test_a_presigned_url_works_until_it_expires_and_only_for_its_object(
    server: LocalServer,
) -> None:
    s3 = client("s3")
    s3.create_bucket(Bucket="shared")
    s3.put_object(Bucket="shared", Key="a.json", Body=b"{}")
    url = s3.generate_presigned_url(
        "get_object", Params={"Bucket": "shared", "Key": "a.json"}, ExpiresIn=60
    )
    with urllib.request.urlopen(url, timeout=10) as response:  # noqa: S310 - loopback
        assert response.read() == b"{}"
    assert s3_error(url.replace("/a.json?", "/b.json?"))[:2] == (403, "SignatureDoesNotMatch")
    server.gateway.verifier.clock = lambda: time.time() + 61
    assert s3_error(url) == (403, "AccessDenied", "Request has expired")


def test_signature_version_2_is_verified_too(cloud: LocalCloud) -> None:
    v2 = Config(signature_version="s3", retries={"total_max_attempts": 1})
    assert client("s3", config=v2).list_buckets()["Buckets"] == []
    admin = cloud.credentials.admin()
    wrong = client(
        "s3", config=v2, aws_access_key_id=admin.access_key_id, aws_secret_access_key="x" * 40
    )
    assert error_of(wrong.list_buckets)[:2] == ("SignatureDoesNotMatch", 403)


def test_the_admin_paths_need_the_service_token(server: LocalServer) -> None:
    headers = {"Host": f"127.0.0.1:{server.port}"}
    status, body = raw(server.port, "POST", "/_sfn-mlops/status", headers, b"{}")
    assert (status, json.loads(body)["__type"]) == (403, "AccessDenied")
    headers[TOKEN_HEADER] = server.gateway.cloud.credentials.service_token()
    status, body = raw(server.port, "POST", "/_sfn-mlops/status", headers, b"{}")
    assert (status, json.loads(body)["__type"]) == (404, "NotFound")  # no actions here: past it


# who called: each principal signs with its own keys ---------------------------------------------
@pytest.fixture
def callers(monkeypatch: pytest.MonkeyPatch) -> list[tuple[str, Principal | None]]:
    """(operation, caller) of every provider call, as dispatch receives them."""
    seen: list[tuple[str, Principal | None]] = []
    original = gateway_module.dispatch

    def spy(
        cloud: Any,
        service: str,
        operation: str,
        params: dict[str, Any],
        caller: Principal | None = None,
    ) -> dict[str, Any]:
        seen.append((operation, caller))
        return original(cloud, service, operation, params, caller)

    monkeypatch.setattr(gateway_module, "dispatch", spy)
    return seen


def test_the_caller_is_on_each_request(
    cloud: LocalCloud, callers: list[tuple[str, Principal | None]]
) -> None:
    client("sns").list_topics()
    role_key = cloud.credentials.for_role(ROLE, "session")
    client("sns", **role_key.client_kwargs()).list_topics()
    assert callers == [
        ("ListTopics", Principal(ADMIN_ARN)),
        ("ListTopics", Principal(ROLE, "session")),
    ]


def test_the_state_machine_calls_services_as_its_role(
    cloud: LocalCloud, callers: list[tuple[str, Principal | None]]
) -> None:
    sns, sfn = client("sns"), client("stepfunctions")
    topic = sns.create_topic(Name="done")["TopicArn"]
    definition = {
        "StartAt": "Tell",
        "States": {
            "Tell": {
                "Type": "Task",
                "Resource": "arn:aws:states:::sns:publish",
                "Parameters": {"TopicArn": topic, "Message": "done"},
                "End": True,
            }
        },
    }
    machine = sfn.create_state_machine(
        name="Teller", definition=json.dumps(definition), roleArn=ROLE
    )["stateMachineArn"]
    arn = sfn.start_execution(stateMachineArn=machine, name="tell")["executionArn"]
    cloud.service("sfn").wait(arn, 30)
    assert sfn.describe_execution(executionArn=arn)["status"] == "SUCCEEDED"
    assert ("Publish", Principal(ROLE, "StepFunctions")) in callers
    assert ("StartExecution", Principal(ADMIN_ARN)) in callers


def test_a_lambda_function_calls_services_as_its_execution_role(
    cloud: LocalCloud, tmp_path: Path, callers: list[tuple[str, Principal | None]]
) -> None:
    from sfn_mlops.local.services.lambda_ import FUNCTIONS

    code = tmp_path / "fn"
    code.mkdir()
    (code / "app.py").write_text(
        "import os, boto3\n"
        "def handler(event, context):\n"
        "    boto3.client('sns').list_topics()\n"
        "    return os.environ['AWS_ACCESS_KEY_ID']\n"
    )
    spec = {
        "FunctionName": "fn",
        "FunctionArn": cloud.arn("lambda", "function:fn"),
        "Handler": "app.handler",
        "CodeDir": str(code),
        "Timeout": 10,
        "MemorySize": 128,
        "Role": ROLE,
    }
    cloud.metadata.put(FUNCTIONS, "fn", spec)
    answer = client("lambda").invoke(FunctionName="fn", Payload=b"{}")
    assert "FunctionError" not in answer
    key = cloud.credentials.lookup(json.loads(answer["Payload"].read()))
    assert key is not None and key.principal == Principal(ROLE, "fn")
    assert ("ListTopics", Principal(ROLE, "fn")) in callers


# an endpoint: its own server, and InvokeEndpoint ---------------------------------------------
@pytest.fixture
def endpoint_port(cloud: LocalCloud) -> Iterator[int]:
    """Endpoint "ep" in service (created through the control plane); its server's port."""
    sagemaker = client("sagemaker")
    model = {
        "Image": IMAGE,
        "ModelDataUrl": put_model(cloud, "m1", train_booster()),
        "Environment": put_inference_code(cloud),
    }
    sagemaker.create_model(ModelName="m1", ExecutionRoleArn=ROLE, PrimaryContainer=model)
    variant = {
        "VariantName": "AllTraffic",
        "ModelName": "m1",
        "InitialInstanceCount": 1,
        "InstanceType": "ml.m5.large",
    }
    sagemaker.create_endpoint_config(EndpointConfigName="c1", ProductionVariants=[variant])
    sagemaker.create_endpoint(EndpointName="ep", EndpointConfigName="c1")
    sagemaker.get_waiter("endpoint_in_service").wait(
        EndpointName="ep", WaiterConfig={"Delay": 1, "MaxAttempts": 60}
    )
    hosts: EndpointHosts = cloud.endpoint_hosts
    port = hosts.port("ep")
    assert port is not None
    yield port
    hosts.stop_all()


def test_an_endpoint_refuses_a_foreign_host_and_another_sites_origin(endpoint_port: int) -> None:
    own, row = f"127.0.0.1:{endpoint_port}", b"M,0.5,0.3"
    status, body = raw(endpoint_port, "POST", "/invocations", {"Host": "evil.example"}, row)
    assert status == 403
    assert body.decode() == (
        f"Host 'evil.example' is not this server (127.0.0.1:{endpoint_port}, "
        f"localhost:{endpoint_port} or [::1]:{endpoint_port}): refused, as a request from a web "
        "page through DNS rebinding would be"
    )
    headers = {"Host": own, "Origin": "http://evil.example", "Content-Type": "text/csv"}
    status, body = raw(endpoint_port, "POST", "/invocations", headers, row)
    assert status == 403
    assert body.startswith(b"Origin 'http://evil.example' is another site")
    headers = {"Host": own, "Content-Type": "text/csv"}
    status, body = raw(endpoint_port, "POST", "/invocations", headers, row)
    assert status == 200 and float(body) > 0  # SageMaker's container contract: no signature


def test_an_endpoints_own_paths_need_the_service_token(
    cloud: LocalCloud, endpoint_port: int
) -> None:
    headers = {"Host": f"127.0.0.1:{endpoint_port}"}
    status, body = raw(endpoint_port, "GET", "/_sfn-mlops/metrics", headers)
    assert (status, body) == (
        403,
        b"the endpoint's own paths (/_sfn-mlops/) need the service's token",
    )
    headers[TOKEN_HEADER] = cloud.credentials.service_token()
    assert raw(endpoint_port, "GET", "/_sfn-mlops/metrics", headers)[0] == 200


def test_invoking_an_endpoint_needs_a_valid_signature(
    cloud: LocalCloud, endpoint_port: int
) -> None:
    request = {"EndpointName": "ep", "Body": b"M,0.5,0.3", "ContentType": "text/csv"}
    assert float(client("sagemaker-runtime").invoke_endpoint(**request)["Body"].read()) > 0
    admin = cloud.credentials.admin()
    wrong = client(
        "sagemaker-runtime", aws_access_key_id=admin.access_key_id, aws_secret_access_key="x" * 40
    )
    assert error_of(wrong.invoke_endpoint, **request)[:2] == ("InvalidSignatureException", 403)
    stranger = client(
        "sagemaker-runtime",
        aws_access_key_id="AKIAIOSFODNN7EXAMPLE",
        aws_secret_access_key="x" * 40,
    )
    refused = error_of(stranger.invoke_endpoint, **request)
    assert refused[:2] == ("UnrecognizedClientException", 403)
