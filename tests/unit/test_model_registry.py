"""The local Model Registry (sagemaker_registry): groups, versions, approval and its events.

The provider is called in-process (no server); state-change events go to a recording emitter.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

import pytest

from sfn_mlops.local import cloud as cloud_module
from sfn_mlops.local.cloud import LocalCloud
from sfn_mlops.local.errors import AwsError
from sfn_mlops.local.services.sagemaker import SageMaker

IMAGE = "683313688378.dkr.ecr.us-east-1.amazonaws.com/sagemaker-xgboost:3.0-5"
ARN = "arn:aws:sagemaker:us-east-1:123456789012"


class Recorder:
    def __init__(self) -> None:
        self.events: list[tuple[str, str, dict[str, Any], list[str]]] = []

    def __call__(
        self, source: str, detail_type: str, detail: dict[str, Any], resources: list[str]
    ) -> None:
        self.events.append((source, detail_type, detail, resources))


@pytest.fixture
def events() -> Recorder:
    return Recorder()


@pytest.fixture
def sm(tmp_path: Path, events: Recorder) -> SageMaker:
    service = SageMaker(LocalCloud(tmp_path / "ws", time_scale=0.0))
    service.event_emitter = events
    service.create_model_package_group(
        {"ModelPackageGroupName": "abalone", "ModelPackageGroupDescription": "rings"}
    )
    return service


def version(sm: SageMaker, **extra: Any) -> str:
    request = {
        "ModelPackageGroupName": "abalone",
        "InferenceSpecification": {
            "Containers": [{"Image": IMAGE, "ModelDataUrl": "s3://b/run/model.tar.gz"}],
            "SupportedContentTypes": ["text/csv"],
            "SupportedResponseMIMETypes": ["text/csv"],
        },
        **extra,
    }
    return str(sm.create_model_package(request)["ModelPackageArn"])


def error(call: Any, *args: Any, **kwargs: Any) -> AwsError:
    with pytest.raises(AwsError) as caught:
        call(*args, **kwargs)
    return caught.value


def test_versions_are_numbered_per_group_and_pending_by_default(sm: SageMaker) -> None:
    first = version(sm)
    second = version(sm, ModelApprovalStatus="Approved")
    assert first == f"{ARN}:model-package/abalone/1"
    assert second == f"{ARN}:model-package/abalone/2"
    described = sm.describe_model_package({"ModelPackageName": first})
    assert described["ModelPackageVersion"] == 1
    assert described["ModelPackageGroupName"] == "abalone"
    assert described["ModelApprovalStatus"] == "PendingManualApproval"
    assert described["ModelPackageStatus"] == "Completed"
    assert described["InferenceSpecification"]["Containers"][0]["Image"] == IMAGE
    assert "ClientToken" not in described and "Key" not in described
    by_name = sm.describe_model_package({"ModelPackageName": "abalone/2"})
    assert by_name["ModelApprovalStatus"] == "Approved"


def test_a_deleted_version_number_is_never_given_again(sm: SageMaker) -> None:
    version(sm)
    second = version(sm)
    sm.delete_model_package({"ModelPackageName": second})
    assert version(sm).endswith("/abalone/3")


def test_metrics_baselines_and_metadata_are_recorded(sm: SageMaker) -> None:
    metrics = {
        "ModelQuality": {
            "Statistics": {"ContentType": "application/json", "S3Uri": "s3://b/e.json"}
        },
        "Bias": {"Report": {"ContentType": "application/json", "S3Uri": "s3://b/bias.json"}},
        "Explainability": {
            "Report": {"ContentType": "application/json", "S3Uri": "s3://b/shap.json"}
        },
    }
    baselines = {
        "ModelDataQuality": {
            "Statistics": {"ContentType": "application/json", "S3Uri": "s3://b/statistics.json"},
            "Constraints": {"ContentType": "application/json", "S3Uri": "s3://b/constraints.json"},
        }
    }
    arn = version(
        sm,
        ModelMetrics=metrics,
        DriftCheckBaselines=baselines,
        CustomerMetadataProperties={"execution": "arn:x", "digest": "abc"},
        MetadataProperties={"GeneratedBy": "arn:aws:states:us-east-1:123456789012:execution:a:b"},
    )
    described = sm.describe_model_package({"ModelPackageName": arn})
    assert described["ModelMetrics"] == metrics
    assert described["DriftCheckBaselines"] == baselines
    assert described["CustomerMetadataProperties"] == {"execution": "arn:x", "digest": "abc"}


def test_creation_and_approval_changes_emit_the_state_change_event(
    sm: SageMaker, events: Recorder
) -> None:
    arn = version(sm)
    sm.update_model_package(
        {"ModelPackageArn": arn, "ModelApprovalStatus": "Approved", "ApprovalDescription": "ok"}
    )
    sm.update_model_package({"ModelPackageArn": arn, "ModelApprovalStatus": "Approved"})  # same
    sm.update_model_package({"ModelPackageArn": arn, "CustomerMetadataProperties": {"a": "1"}})
    assert [(e[0], e[1], e[2]["ModelApprovalStatus"], e[3]) for e in events.events] == [
        ("aws.sagemaker", "SageMaker Model Package State Change", "PendingManualApproval", [arn]),
        ("aws.sagemaker", "SageMaker Model Package State Change", "Approved", [arn]),
    ]
    detail = events.events[1][2]
    assert detail["ModelPackageGroupName"] == "abalone"
    assert detail["ModelPackageVersion"] == 1
    assert detail["ModelPackageArn"] == arn
    assert detail["ModelPackageStatus"] == "Completed"
    assert detail["ApprovalDescription"] == "ok"
    assert detail["CertifyForMarketplace"] is False
    assert detail["CreationTime"].endswith("Z") and "T" in detail["CreationTime"]
    assert "ModelPackageName" not in detail


def test_a_missing_eventbridge_is_skipped(sm: SageMaker, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.delitem(cloud_module.SERVICES, "eventbridge", raising=False)
    sm.event_emitter = None
    assert version(sm).endswith("/1")


def test_rejected_can_be_approved_again_and_metadata_merges(sm: SageMaker) -> None:
    arn = version(sm, CustomerMetadataProperties={"keep": "1", "drop": "2"})
    sm.update_model_package({"ModelPackageArn": arn, "ModelApprovalStatus": "Rejected"})
    sm.update_model_package(
        {
            "ModelPackageArn": arn,
            "ModelApprovalStatus": "Approved",
            "CustomerMetadataProperties": {"new": "3"},
            "CustomerMetadataPropertiesToRemove": ["drop"],
        }
    )
    described = sm.describe_model_package({"ModelPackageName": arn})
    assert described["ModelApprovalStatus"] == "Approved"
    assert described["CustomerMetadataProperties"] == {"keep": "1", "new": "3"}


def test_client_token_makes_create_idempotent(sm: SageMaker, events: Recorder) -> None:
    first = version(sm, ClientToken="run-1")
    assert version(sm, ClientToken="run-1") == first
    assert len(events.events) == 1
    err = error(version, sm, ClientToken="run-1", ModelApprovalStatus="Approved")
    assert err.code == "ValidationException" and "already used" in err.message


def test_list_filters_sorts_and_pages(sm: SageMaker) -> None:
    for status in ("Approved", "Rejected", "Approved"):
        version(sm, ModelApprovalStatus=status)
    listed = sm.list_model_packages(
        {"ModelPackageGroupName": "abalone", "ModelApprovalStatus": "Approved"}
    )
    assert [s["ModelPackageVersion"] for s in listed["ModelPackageSummaryList"]] == [1, 3]
    newest = sm.list_model_packages(
        {
            "ModelPackageGroupName": f"{ARN}:model-package-group/abalone",
            "SortOrder": "Descending",
            "MaxResults": 2,
        }
    )
    assert [s["ModelPackageVersion"] for s in newest["ModelPackageSummaryList"]] == [3, 2]
    rest = sm.list_model_packages(
        {
            "ModelPackageGroupName": "abalone",
            "SortOrder": "Descending",
            "NextToken": newest["NextToken"],
        }
    )
    assert [s["ModelPackageVersion"] for s in rest["ModelPackageSummaryList"]] == [1]
    assert "NextToken" not in rest
    assert "ModelPackageName" not in rest["ModelPackageSummaryList"][0]
    assert sm.list_model_packages({})["ModelPackageSummaryList"] == []  # unversioned only


def test_groups_list_describe_and_delete(sm: SageMaker) -> None:
    sm.create_model_package_group({"ModelPackageGroupName": "churn"})
    listed = sm.list_model_package_groups({})["ModelPackageGroupSummaryList"]
    assert [g["ModelPackageGroupName"] for g in listed] == ["abalone", "churn"]
    described = sm.describe_model_package_group({"ModelPackageGroupName": "abalone"})
    assert described["ModelPackageGroupArn"] == f"{ARN}:model-package-group/abalone"
    assert described["ModelPackageGroupStatus"] == "Completed"
    assert described["ModelPackageGroupDescription"] == "rings"
    arn = version(sm)
    err = error(sm.delete_model_package_group, {"ModelPackageGroupName": "abalone"})
    assert err.code == "ConflictException"
    sm.delete_model_package({"ModelPackageName": arn})
    sm.delete_model_package_group({"ModelPackageGroupName": "abalone"})
    err = error(sm.describe_model_package_group, {"ModelPackageGroupName": "abalone"})
    assert err.code == "ValidationException"
    assert err.message == f"ModelPackageGroup {ARN}:model-package-group/abalone does not exist."


def test_errors_as_sagemaker_gives_them(sm: SageMaker) -> None:
    err = error(sm.create_model_package_group, {"ModelPackageGroupName": "abalone"})
    assert (err.code, err.message) == (
        "ValidationException",
        f"Model Package Group already exists: {ARN}:model-package-group/abalone",
    )
    err = error(version, sm, ModelPackageGroupName="missing")
    assert err.message == f"ModelPackageGroup {ARN}:model-package-group/missing does not exist."
    err = error(version, sm, ModelPackageName="both")
    assert "Both ModelPackageName and ModelPackageGroupName are provided" in err.message
    err = error(sm.create_model_package, {"InferenceSpecification": {"Containers": []}})
    assert err.message == "Missing ARN."
    err = error(version, sm, Tags=[{"Key": "a", "Value": "b"}])
    assert "Tags cannot be given for a versioned model package" in err.message
    err = error(sm.describe_model_package, {"ModelPackageName": "abalone/9"})
    assert err.message == f"ModelPackage {ARN}:model-package/abalone/9 does not exist."
    err = error(
        sm.update_model_package,
        {"ModelPackageArn": f"{ARN}:model-package/abalone/9", "ModelApprovalStatus": "Approved"},
    )
    assert err.code == "ValidationException"
