"""Manual approval's Lambda code (lambdas/model_approval) against the local S3, SageMaker and
Step Functions: a real execution waits on a real task token until the version is decided."""

from __future__ import annotations

import importlib
import json
import sys
from pathlib import Path
from types import ModuleType
from typing import Any

import boto3
import pytest
from test_local_task_tokens import finish, start, token_of, waiting_task

from sfn_mlops.local.cloud import LocalCloud

FOLDER = Path(__file__).resolve().parents[2] / "lambdas" / "model_approval"
BUCKET = "artifacts"
CONTAINER = {"Image": "img", "ModelDataUrl": "s3://artifacts/runs/r/model.tar.gz"}


@pytest.fixture
def approval() -> ModuleType:
    sys.path.insert(0, str(FOLDER))
    try:
        sys.modules.pop("approval", None)
        return importlib.import_module("approval")
    finally:
        sys.path.remove(str(FOLDER))


@pytest.fixture
def clients(cloud: LocalCloud) -> dict[str, Any]:
    s3 = boto3.client("s3")
    s3.create_bucket(Bucket=BUCKET)
    sagemaker = boto3.client("sagemaker")
    sagemaker.create_model_package_group(ModelPackageGroupName="g")
    return {"s3": s3, "sagemaker": sagemaker, "sfn": boto3.client("stepfunctions")}


def _pending_version(sagemaker: Any) -> str:
    return str(
        sagemaker.create_model_package(
            ModelPackageGroupName="g",
            InferenceSpecification={
                "Containers": [CONTAINER],
                "SupportedContentTypes": ["text/csv"],
                "SupportedResponseMIMETypes": ["text/csv"],
            },
            ModelApprovalStatus="PendingManualApproval",
        )["ModelPackageArn"]
    )


def _decide(sagemaker: Any, arn: str, status: str, why: str | None = None) -> dict[str, Any]:
    extra = {"ApprovalDescription": why} if why else {}
    sagemaker.update_model_package(ModelPackageArn=arn, ModelApprovalStatus=status, **extra)
    return dict(sagemaker.describe_model_package(ModelPackageName=arn))


def _held(s3: Any) -> list[str]:
    listed = s3.list_objects_v2(Bucket=BUCKET, Prefix="approvals/")
    return [item["Key"] for item in listed.get("Contents", [])]


def test_an_approval_resumes_the_execution_with_the_registration(
    cloud: LocalCloud, clients: dict[str, Any], approval: ModuleType
) -> None:
    arn = _pending_version(clients["sagemaker"])
    topic = boto3.client("sns").create_topic(Name="t")["TopicArn"]
    execution = start("approve", waiting_task(topic))
    token = token_of(cloud)
    status = approval.hold_token(
        clients["s3"], clients["sagemaker"], clients["sfn"],
        bucket=BUCKET, package_arn=arn, token=token, execution=execution,
    )  # fmt: skip
    assert status == "PendingManualApproval"
    assert _held(clients["s3"]) == ["approvals/g/1.json"]

    package = _decide(clients["sagemaker"], arn, "Approved")
    outcome = approval.answer_decision(
        clients["s3"], clients["sfn"], bucket=BUCKET, package=package
    )

    assert outcome == f"g/1 Approved: resumed {execution}"
    result = finish(cloud, execution)
    assert result["status"] == "SUCCEEDED"
    assert json.loads(result["output"]) == {
        "ModelPackageArn": arn,
        "ModelPackageVersion": 1,
        "ModelApprovalStatus": "Approved",
    }
    assert _held(clients["s3"]) == []  # a second event finds nothing to answer
    again = approval.answer_decision(clients["s3"], clients["sfn"], bucket=BUCKET, package=package)
    assert again == "g/1 Approved: no execution waits for it"


def test_a_version_rejected_before_the_token_was_kept_fails_the_execution_at_once(
    cloud: LocalCloud, clients: dict[str, Any], approval: ModuleType
) -> None:
    arn = _pending_version(clients["sagemaker"])
    _decide(clients["sagemaker"], arn, "Rejected", why="drifts on sex=I")
    topic = boto3.client("sns").create_topic(Name="t")["TopicArn"]
    execution = start("reject", waiting_task(topic))
    status = approval.hold_token(
        clients["s3"], clients["sagemaker"], clients["sfn"],
        bucket=BUCKET, package_arn=arn, token=token_of(cloud), execution=execution,
    )  # fmt: skip

    assert status == "Rejected"
    result = finish(cloud, execution)
    assert result["status"] == "FAILED"
    assert (result["error"], result["cause"]) == (
        "ModelRejected",
        "Model package version g/1 was rejected: drifts on sex=I",
    )
    assert _held(clients["s3"]) == []


def test_a_decision_for_an_execution_that_ended_drops_the_token(
    cloud: LocalCloud, clients: dict[str, Any], approval: ModuleType
) -> None:
    arn = _pending_version(clients["sagemaker"])
    topic = boto3.client("sns").create_topic(Name="t")["TopicArn"]
    execution = start("stopped", waiting_task(topic))
    approval.hold_token(
        clients["s3"], clients["sagemaker"], clients["sfn"],
        bucket=BUCKET, package_arn=arn, token=token_of(cloud), execution=execution,
    )  # fmt: skip
    clients["sfn"].stop_execution(executionArn=execution)
    finish(cloud, execution)

    package = _decide(clients["sagemaker"], arn, "Approved")
    outcome = approval.answer_decision(
        clients["s3"], clients["sfn"], bucket=BUCKET, package=package
    )

    assert outcome.startswith("g/1 Approved: its execution no longer waits (")
    assert _held(clients["s3"]) == []


def test_a_pending_status_is_no_decision_and_an_unversioned_arn_is_refused(
    clients: dict[str, Any], approval: ModuleType
) -> None:
    package = {"ModelApprovalStatus": "PendingManualApproval"}
    assert approval.answer_decision(
        clients["s3"], clients["sfn"], bucket=BUCKET, package=package
    ) == ("PendingManualApproval: not a decision")
    with pytest.raises(ValueError, match="not the ARN of a versioned model package"):
        approval.hold_token(
            clients["s3"], clients["sagemaker"], clients["sfn"], bucket=BUCKET,
            package_arn="arn:aws:sagemaker:us-east-1:123456789012:model-package/solo",
            token="t", execution="e",
        )  # fmt: skip
