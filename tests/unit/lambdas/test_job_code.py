"""job_code: the Custom::JobCode handler against moto's S3, answering a loopback ResponseURL.

Each test runs the handler on a CloudFormation request from tests/events/ (its ResponseURL
pointed at a local HTTP server the test starts) and asserts what is in the bucket and the one
response CloudFormation would read.
"""

from __future__ import annotations

import json
import threading
import time
from dataclasses import dataclass
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path
from types import ModuleType
from typing import Any

import boto3
import pytest
from moto import mock_aws

EVENTS = Path(__file__).resolve().parents[2] / "events"
BUCKET = "sfn-mlops-artifactbucket-1a2b3c4d5e6f"
STACK_ID = (
    "arn:aws:cloudformation:us-east-1:123456789012:stack/sfn-mlops/"
    "5b9a3e10-7a1c-11ef-9c2a-0a1b2c3d4e5f"
)
REQUEST_ID = "0e6f8a7c-1d2b-4c3d-9e8f-112233445566"
LOG_STREAM = "2025/01/01/[$LATEST]0123456789abcdef0123456789abcdef"
V1 = {"processing/preprocess.py": b"print('v1')\n", "training/sourcedir.tar.gz": b"tarball v1"}
V2 = {"processing/preprocess.py": b"print('v2')\n", "training/sourcedir.tar.gz": b"tarball v1"}
V1_PREFIX = "code/2c7b9d790a8b0950"
V2_PREFIX = "code/edd1e2b6ce670ee8"
OLDER_PREFIX = "code/0000000000000000"


@dataclass
class FakeLambdaContext:
    remaining_ms: int = 300_000
    function_name: str = "sfn-mlops-JobCodeFunction-AbCdEf123456"
    memory_limit_in_mb: int = 512
    invoked_function_arn: str = (
        "arn:aws:lambda:us-east-1:123456789012:function:sfn-mlops-JobCodeFunction-AbCdEf123456"
    )
    aws_request_id: str = "11111111-2222-3333-4444-555555555555"
    log_stream_name: str = LOG_STREAM

    def get_remaining_time_in_millis(self) -> int:
        return self.remaining_ms


class CloudFormationStub:
    """A loopback HTTP server standing in for the presigned ResponseURL; keeps every PUT."""

    def __init__(self) -> None:
        self.puts: list[dict[str, Any]] = []
        stub = self

        class Handler(BaseHTTPRequestHandler):
            def do_PUT(self) -> None:  # noqa: N802 - http.server's naming
                body = self.rfile.read(int(self.headers["Content-Length"]))
                stub.puts.append(
                    {
                        "path": self.path,
                        "content_type": self.headers["Content-Type"],
                        "body": json.loads(body),
                    }
                )
                self.send_response(200)
                self.send_header("Content-Length", "0")
                self.end_headers()

            def log_message(self, *args: Any) -> None:
                pass

        self.server = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
        self.url = f"http://127.0.0.1:{self.server.server_address[1]}/response?signed=1"
        self.thread = threading.Thread(target=self.server.serve_forever, daemon=True)
        self.thread.start()

    def close(self) -> None:
        self.server.shutdown()
        self.server.server_close()


@pytest.fixture
def cloudformation():
    stub = CloudFormationStub()
    yield stub
    stub.close()


@pytest.fixture
def s3():
    with mock_aws():
        client = boto3.client("s3", region_name="us-east-1")
        client.create_bucket(Bucket=BUCKET)
        client.put_bucket_versioning(Bucket=BUCKET, VersioningConfiguration={"Status": "Enabled"})
        yield client


@pytest.fixture
def app(load_lambda, s3, tmp_path, monkeypatch) -> ModuleType:
    (module,) = load_lambda("job_code", "app")
    module.set_s3_client(s3)
    monkeypatch.setattr(module, "bundle_dir", lambda: tmp_path / "bundle")
    yield module
    module.set_s3_client(None)


@pytest.fixture
def job_code(app) -> ModuleType:
    import job_code as module  # the one app imported, from lambdas/job_code

    return module


def ship(tmp_path: Path, files: dict[str, bytes]) -> None:
    """The function's package holds `files` as its bundle (what `sam build` writes)."""
    for name, content in files.items():
        path = tmp_path / "bundle" / name
        path.parent.mkdir(parents=True, exist_ok=True)
        path.write_bytes(content)


def event(name: str, cloudformation: CloudFormationStub) -> dict[str, Any]:
    loaded = json.loads((EVENTS / f"job_code_{name}.json").read_text())
    loaded["ResponseURL"] = cloudformation.url
    return loaded


def objects(s3: Any) -> dict[str, bytes]:
    listing = s3.list_objects_v2(Bucket=BUCKET).get("Contents", [])
    return {
        item["Key"]: s3.get_object(Bucket=BUCKET, Key=item["Key"])["Body"].read()
        for item in listing
    }


def under(prefix: str, files: dict[str, bytes]) -> dict[str, bytes]:
    return {f"{prefix}/{name}": content for name, content in files.items()}


def response(status: str, physical_id: str, data: dict[str, str], reason: str = "OK") -> dict:
    return {
        "Status": status,
        "Reason": reason,
        "PhysicalResourceId": physical_id,
        "StackId": STACK_ID,
        "RequestId": REQUEST_ID,
        "LogicalResourceId": "JobCode",
        "NoEcho": False,
        "Data": data,
    }


def data(prefix: str) -> dict[str, str]:
    return {
        "CodePrefix": prefix,
        "CodeUri": f"s3://{BUCKET}/{prefix}",
        "CodeHash": prefix.split("/")[1],
    }


def test_create_copies_the_bundle_under_its_hash_and_answers_success(
    app, s3, cloudformation, tmp_path
):
    ship(tmp_path, V1)

    answered = app.lambda_handler(event("create", cloudformation), FakeLambdaContext())

    assert objects(s3) == under(V1_PREFIX, V1)
    expected = response("SUCCESS", f"s3://{BUCKET}/{V1_PREFIX}", data(V1_PREFIX))
    assert [put["body"] for put in cloudformation.puts] == [expected]
    assert answered == expected
    assert cloudformation.puts[0]["path"] == "/response?signed=1"
    assert cloudformation.puts[0]["content_type"] == ""


def test_update_with_new_code_writes_a_new_prefix_and_keeps_the_old_one(
    app, s3, cloudformation, tmp_path
):
    for name, content in V1.items():
        s3.put_object(Bucket=BUCKET, Key=f"{V1_PREFIX}/{name}", Body=content)
    ship(tmp_path, V2)

    app.lambda_handler(event("update", cloudformation), FakeLambdaContext())

    assert objects(s3) == {**under(V1_PREFIX, V1), **under(V2_PREFIX, V2)}
    assert [put["body"] for put in cloudformation.puts] == [
        response("SUCCESS", f"s3://{BUCKET}/{V2_PREFIX}", data(V2_PREFIX))
    ]


def test_the_clean_up_delete_after_an_update_keeps_the_previous_prefix_and_drops_older_ones(
    app, s3, cloudformation, tmp_path
):
    """CloudFormation deletes the old physical id once the update succeeded: executions that
    started on V1 still read it, so only prefixes older than V1 go."""
    for prefix, files in ((OLDER_PREFIX, V1), (V1_PREFIX, V1), (V2_PREFIX, V2)):
        for name, content in files.items():
            s3.put_object(Bucket=BUCKET, Key=f"{prefix}/{name}", Body=content)
    s3.put_object(Bucket=BUCKET, Key="runs/run-1/evaluation/evaluation.json", Body=b"{}")
    ship(tmp_path, V2)

    app.lambda_handler(event("delete", cloudformation), FakeLambdaContext())

    assert objects(s3) == {
        **under(V1_PREFIX, V1),
        **under(V2_PREFIX, V2),
        "runs/run-1/evaluation/evaluation.json": b"{}",
    }
    versions = s3.list_object_versions(Bucket=BUCKET, Prefix=f"{OLDER_PREFIX}/")
    assert "Versions" not in versions and "DeleteMarkers" not in versions
    assert [put["body"] for put in cloudformation.puts] == [
        response("SUCCESS", f"s3://{BUCKET}/{V1_PREFIX}", {})
    ]


def test_update_with_the_same_code_copies_nothing(app, s3, cloudformation, tmp_path):
    """A new function version whose bundle is unchanged (e.g. a handler fix): same prefix."""
    for name, content in V1.items():
        s3.put_object(Bucket=BUCKET, Key=f"{V1_PREFIX}/{name}", Body=content)
    ship(tmp_path, V1)
    puts: list[str] = []
    s3.meta.events.register("before-call.s3.PutObject", lambda params, **_: puts.append("put"))

    app.lambda_handler(event("update", cloudformation), FakeLambdaContext())

    assert puts == []
    assert objects(s3) == under(V1_PREFIX, V1)
    assert [put["body"] for put in cloudformation.puts] == [
        response("SUCCESS", f"s3://{BUCKET}/{V1_PREFIX}", data(V1_PREFIX))
    ]


def test_deleting_the_stack_removes_every_code_prefix_and_every_version(
    app, s3, cloudformation, tmp_path
):
    for prefix, files in ((OLDER_PREFIX, V2), (V1_PREFIX, V1)):
        for name, content in files.items():
            s3.put_object(Bucket=BUCKET, Key=f"{prefix}/{name}", Body=content)
    s3.put_object(Bucket=BUCKET, Key=f"{V1_PREFIX}/processing/preprocess.py", Body=b"again")
    s3.put_object(Bucket=BUCKET, Key="datasets/run-1/abalone.csv", Body=b"sex,length\n")
    ship(tmp_path, V1)  # the deleted id is this function's own prefix: the stack is going

    app.lambda_handler(event("delete", cloudformation), FakeLambdaContext())

    assert objects(s3) == {"datasets/run-1/abalone.csv": b"sex,length\n"}
    versions = s3.list_object_versions(Bucket=BUCKET, Prefix="code/")
    assert "Versions" not in versions and "DeleteMarkers" not in versions
    assert [put["body"] for put in cloudformation.puts] == [
        response("SUCCESS", f"s3://{BUCKET}/{V1_PREFIX}", {})
    ]


def test_a_missing_bucket_answers_failed_naming_it_and_the_handler_returns(
    app, s3, cloudformation, tmp_path
):
    ship(tmp_path, V1)
    request = event("create", cloudformation)
    request["ResourceProperties"]["BucketName"] = "sfn-mlops-no-such-bucket"

    answered = app.lambda_handler(request, FakeLambdaContext())

    reason = (
        "CodeBucketError: cannot write the job code to bucket 'sfn-mlops-no-such-bucket': "
        "S3 answered NoSuchBucket: The specified bucket does not exist"
    )
    assert [put["body"] for put in cloudformation.puts] == [
        response("FAILED", LOG_STREAM, {}, reason=reason)
    ]
    assert answered == cloudformation.puts[0]["body"]


def test_deleting_when_the_bucket_is_gone_succeeds(app, s3, cloudformation, tmp_path):
    """A retained bucket emptied and deleted by hand must not block deleting the stack."""
    ship(tmp_path, V1)
    request = event("delete", cloudformation)
    request["PhysicalResourceId"] = f"s3://sfn-mlops-no-such-bucket/{V1_PREFIX}"

    app.lambda_handler(request, FakeLambdaContext())

    assert [put["body"] for put in cloudformation.puts] == [
        response("SUCCESS", f"s3://sfn-mlops-no-such-bucket/{V1_PREFIX}", {})
    ]


def test_deleting_a_resource_whose_create_failed_touches_nothing(app, s3, cloudformation, tmp_path):
    """A failed Create answered with the log stream as its id; the rollback deletes that id."""
    s3.put_object(Bucket=BUCKET, Key=f"{V1_PREFIX}/processing/preprocess.py", Body=b"x")
    ship(tmp_path, V2)
    request = event("delete", cloudformation)
    request["PhysicalResourceId"] = LOG_STREAM

    app.lambda_handler(request, FakeLambdaContext())

    assert objects(s3) == {f"{V1_PREFIX}/processing/preprocess.py": b"x"}
    assert [put["body"]["Status"] for put in cloudformation.puts] == ["SUCCESS"]


def test_a_malformed_request_answers_failed(app, cloudformation, tmp_path):
    ship(tmp_path, V1)
    request = event("create", cloudformation)
    del request["ResourceProperties"]["BucketName"]

    app.lambda_handler(request, FakeLambdaContext())

    (put,) = cloudformation.puts
    assert put["body"]["Status"] == "FAILED"
    assert put["body"]["Reason"].startswith("ValidationError: ")
    assert "BucketName" in put["body"]["Reason"]


def test_a_package_without_a_bundle_answers_failed(app, cloudformation, tmp_path):
    app.lambda_handler(event("create", cloudformation), FakeLambdaContext())

    (put,) = cloudformation.puts
    assert put["body"]["Status"] == "FAILED"
    assert put["body"]["Reason"] == (
        f"MissingBundle: no job code bundle at {tmp_path / 'bundle'}: build the function with "
        "`sam build` (its Makefile target writes the bundle)"
    )


def test_work_that_outlives_the_lambda_is_answered_failed_before_the_timeout(
    app, cloudformation, monkeypatch
):
    """10.2 s left with a 10 s margin: the guard answers after 0.2 s; the late work sends
    nothing more."""
    finished = threading.Event()

    def slow(_: dict) -> Any:
        time.sleep(0.6)
        finished.set()
        raise AssertionError("too late to be answered")

    monkeypatch.setattr(app, "handle", slow)

    app.lambda_handler(event("create", cloudformation), FakeLambdaContext(remaining_ms=10_200))

    assert finished.is_set()
    assert [put["body"] for put in cloudformation.puts] == [
        response(
            "FAILED",
            LOG_STREAM,
            {},
            reason="timed out: the work did not finish 10 s before the Lambda's timeout; "
            f"see log stream {LOG_STREAM}",
        )
    ]


def test_an_unreachable_response_url_is_logged_and_the_handler_returns(app, tmp_path):
    ship(tmp_path, V1)
    request = json.loads((EVENTS / "job_code_create.json").read_text())
    request["ResponseURL"] = "http://127.0.0.1:9/unreachable"  # the discard port: refused

    answered = app.lambda_handler(request, FakeLambdaContext())

    assert answered is not None and answered["Status"] == "SUCCESS"


def test_the_hash_is_the_packaging_bundles_and_reads_back_from_the_built_folder(job_code, tmp_path):
    """`sam build` writes the bundle with `python -m sfn_mlops.packaging`; the function reads
    it back and gets the prefix local mode computes from the same containers/."""
    from sfn_mlops import packaging

    containers = Path(__file__).resolve().parents[3] / "containers"
    assert packaging.main([str(containers), str(tmp_path / "bundle")]) == 0

    read = job_code.read_bundle(tmp_path / "bundle")

    assert read == packaging.build_bundle(containers).files
    jobs_read = {"processing/preprocess.py", "evaluation/evaluate.py", "training/sourcedir.tar.gz"}
    assert jobs_read <= set(read)
