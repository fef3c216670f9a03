"""Which registered model a batch scores with: the group's newest Approved version, or the
version the input names (which must be Approved: a rejected or pending model scores nothing)."""

from __future__ import annotations

from typing import Any


class NoApprovedModel(Exception):
    """The group has no Approved version (or does not exist)."""


class ModelVersionNotApproved(Exception):
    """The named version exists but is not Approved."""


class ModelVersionNotFound(Exception):
    """The named version does not exist in the group."""


def find_version(sagemaker: Any, group: str, version: int | None = None) -> dict[str, Any]:
    """The version's ARN, number and serving container (image, model data, environment)."""
    package = _named(sagemaker, group, version) if version else _newest_approved(sagemaker, group)
    (container,) = package["InferenceSpecification"]["Containers"][:1]
    return {
        "ModelPackageArn": package["ModelPackageArn"],
        "ModelPackageVersion": package["ModelPackageVersion"],
        "Image": container["Image"],
        "ModelDataUrl": container["ModelDataUrl"],
        "Environment": container.get("Environment", {}),
    }


def _newest_approved(sagemaker: Any, group: str) -> dict[str, Any]:
    try:
        listed = sagemaker.list_model_packages(
            ModelPackageGroupName=group,
            ModelApprovalStatus="Approved",
            SortBy="CreationTime",
            SortOrder="Descending",
            MaxResults=1,
        )["ModelPackageSummaryList"]
    except sagemaker.exceptions.ClientError as err:
        raise NoApprovedModel(f"model package group {group}: {err}") from err
    if not listed:
        raise NoApprovedModel(
            f"model package group {group} has no Approved version: train one with "
            "`sfn-mlops run` (or approve one with `sfn-mlops models approve`)"
        )
    return _describe(sagemaker, listed[0]["ModelPackageArn"])


def _named(sagemaker: Any, group: str, version: int) -> dict[str, Any]:
    try:
        package = _describe(sagemaker, f"{group}/{version}")
    except sagemaker.exceptions.ClientError as err:
        raise ModelVersionNotFound(f"{group}/{version} does not exist: {err}") from err
    status = package.get("ModelApprovalStatus")
    if status != "Approved":
        raise ModelVersionNotApproved(
            f"{group}/{version} is {status}; only an Approved version scores batches "
            f"(`sfn-mlops models approve {group}/{version}`, or name another)"
        )
    return package


def _describe(sagemaker: Any, reference: str) -> dict[str, Any]:
    return dict(sagemaker.describe_model_package(ModelPackageName=reference))
