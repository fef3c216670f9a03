"""read_evaluation's error paths, as the AWS side sees them.

Step Functions sees a Python Lambda's failure as ``errorType`` = the exception's class name;
the Task's Retry and Catch match on it. Each test runs the handler through the local Lambda
runtime's ``_invoke`` (what local mode's ``lambda:invoke`` returns) and asserts that name.
Not-found cases use moto's S3; throttling, which moto cannot produce, uses botocore's Stubber
or a ``before-send`` hook that answers with S3's 503 ``SlowDown``.
"""

from __future__ import annotations

import json
from dataclasses import dataclass
from pathlib import Path
from types import ModuleType
from typing import Any

import boto3
import pytest
from botocore.awsrequest import AWSResponse
from botocore.config import Config
from botocore.exceptions import ClientError
from botocore.stub import Stubber
from moto import mock_aws

EVENT = json.loads(
    (Path(__file__).resolve().parents[2] / "events" / "read_evaluation.json").read_text()
)
BUCKET = "sfn-mlops-artifacts"
KEY = "runs/run-2024-01-01/evaluation/evaluation.json"
URI = f"s3://{BUCKET}/{KEY}"
FUNCTION_ARN = "arn:aws:lambda:us-east-1:123456789012:function:ReadEvaluationFunction"


@dataclass
class FakeLambdaContext:
    function_name: str = "ReadEvaluationFunction"
    memory_limit_in_mb: int = 512
    invoked_function_arn: str = FUNCTION_ARN
    aws_request_id: str = "00000000-0000-0000-0000-000000000000"


@pytest.fixture
def invoke(app, monkeypatch):
    """Invokes the handler as local mode's Lambda runtime does; returns its reply."""
    from sfn_mlops.local.lambda_worker import _invoke

    monkeypatch.setenv("AWS_LAMBDA_FUNCTION_NAME", "ReadEvaluationFunction")
    monkeypatch.setenv("SFN_MLOPS_FUNCTION_ARN", FUNCTION_ARN)

    def call(event: dict[str, Any]) -> dict[str, Any]:
        return _invoke(
            app.lambda_handler, {"event": event, "request_id": "r-1", "deadline_ms": 2**62}
        )

    return call


def _s3(**config: Any) -> Any:
    return boto3.client("s3", region_name="us-east-1", config=Config(**config))


def _raised(app: ModuleType) -> BaseException:
    with pytest.raises(Exception) as raised:
        app.lambda_handler(EVENT, FakeLambdaContext())
    return raised.value


# --- not found (moto) ------------------------------------------------------------------------


def test_missing_key_is_evaluation_report_not_found(app, invoke):
    with mock_aws():
        s3 = _s3()
        s3.create_bucket(Bucket=BUCKET)
        app.set_s3_client(s3)

        error = _raised(app)
        reply = invoke(EVENT)

    assert type(error).__name__ == "EvaluationReportNotFound"
    assert str(error) == f"no evaluation report at {URI}"
    assert error.__cause__.response["Error"]["Code"] == "NoSuchKey"
    assert reply["error"]["errorType"] == "EvaluationReportNotFound"
    assert reply["error"]["errorMessage"] == f"no evaluation report at {URI}"


def test_missing_bucket_is_evaluation_report_not_found(app, invoke):
    with mock_aws():
        app.set_s3_client(_s3())

        error = _raised(app)
        reply = invoke(EVENT)

    assert type(error).__name__ == "EvaluationReportNotFound"
    assert error.__cause__.response["Error"]["Code"] == "NoSuchBucket"
    assert reply["error"]["errorType"] == "EvaluationReportNotFound"


# --- throttling and other service errors (Stubber) -------------------------------------------


@pytest.mark.parametrize(
    ("code", "status"),
    [("SlowDown", 503), ("ThrottlingException", 400), ("ServiceUnavailable", 503)],
)
def test_throttling_is_a_named_transient_error(app, invoke, code, status):
    """A throttle is not a missing report: it gets a name the state machine's Retry lists."""
    s3 = _s3()
    app.set_s3_client(s3)
    with Stubber(s3) as stubber:
        for _ in range(2):  # one for the direct call, one for the runtime's
            stubber.add_client_error(
                "get_object",
                service_error_code=code,
                service_message="Please reduce your request rate.",
                http_status_code=status,
                expected_params={"Bucket": BUCKET, "Key": KEY},
            )
        error = _raised(app)
        reply = invoke(EVENT)
        stubber.assert_no_pending_responses()

    assert isinstance(error, app.gate.EvaluationReportUnavailable)
    cause = error.__cause__
    assert isinstance(cause, ClientError)
    assert cause.response["Error"]["Code"] == code
    assert cause.response["ResponseMetadata"]["HTTPStatusCode"] == status
    assert reply["error"]["errorType"] == "EvaluationReportUnavailable"
    assert code in reply["error"]["errorMessage"]


def test_access_denied_is_not_reported_as_not_found(app, invoke):
    """A role without s3:GetObject gets AccessDenied: the platform's fault, not a missing file.

    botocore models S3's AccessDenied as its own ClientError subclass, so that class name is
    the errorType (SlowDown and ThrottlingException are not modeled: plain ClientError).
    """
    s3 = _s3()
    app.set_s3_client(s3)
    with Stubber(s3) as stubber:
        for _ in range(2):
            stubber.add_client_error(
                "get_object", service_error_code="AccessDenied", http_status_code=403
            )
        error = _raised(app)
        reply = invoke(EVENT)

    assert isinstance(error, ClientError)
    assert not isinstance(error, app.gate.EvaluationReportNotFound)
    assert reply["error"]["errorType"] == "AccessDenied"


def test_throttling_is_retried_by_botocore_before_the_handler_fails(app, invoke):
    """S3's 503 SlowDown goes through the client's retries first; only the last one surfaces."""
    body = (
        b'<?xml version="1.0" encoding="UTF-8"?><Error><Code>SlowDown</Code>'
        b"<Message>Please reduce your request rate.</Message><RequestId>R1</RequestId></Error>"
    )
    sent: list[str] = []

    class _Raw:
        def stream(self, **_: Any):
            yield body

    def slow_down(request: Any, **_: Any) -> AWSResponse:
        sent.append(request.url)
        return AWSResponse(request.url, 503, {}, _Raw())

    s3 = _s3(retries={"mode": "standard", "max_attempts": 1})
    s3.meta.events.register("before-send.s3.GetObject", slow_down)
    app.set_s3_client(s3)

    reply = invoke(EVENT)

    assert len(sent) == 2  # the call and its one retry
    assert reply["error"]["errorType"] == "EvaluationReportUnavailable"
    assert "SlowDown" in reply["error"]["errorMessage"]


# --- the report itself -----------------------------------------------------------------------


def test_report_that_is_not_an_object_is_invalid_evaluation_report(app, invoke):
    with mock_aws():
        s3 = _s3()
        s3.create_bucket(Bucket=BUCKET)
        s3.put_object(Bucket=BUCKET, Key=KEY, Body=b"[1, 2]")
        app.set_s3_client(s3)

        reply = invoke(EVENT)

    assert reply["error"]["errorType"] == "InvalidEvaluationReport"
    assert reply["error"]["errorMessage"] == f"the evaluation report at {URI} is not a JSON object"


def test_gate_metric_missing_from_report_is_gate_config_error(app, invoke):
    report = {"regression_metrics": {"rmse": {"value": 3.4, "standard_deviation": 0.1}}}
    event = {**EVENT, "gate": {"metric": "mae", "direction": "minimize", "threshold": 2.0}}
    with mock_aws():
        s3 = _s3()
        s3.create_bucket(Bucket=BUCKET)
        s3.put_object(Bucket=BUCKET, Key=KEY, Body=json.dumps(report).encode())
        app.set_s3_client(s3)

        reply = invoke(event)

    assert reply["error"]["errorType"] == "GateConfigError"
    assert reply["error"]["errorMessage"] == (
        "the gate metric 'mae' is not in the evaluation report; it has: rmse"
    )


def test_malformed_event_is_validation_error_before_any_s3_call(app, invoke):
    s3 = _s3()
    app.set_s3_client(s3)
    with Stubber(s3):  # no responses queued: any S3 call would fail the test
        reply = invoke({"evaluation_uri": "not-an-s3-uri", "gate": EVENT["gate"]})

    assert reply["error"]["errorType"] == "ValidationError"
