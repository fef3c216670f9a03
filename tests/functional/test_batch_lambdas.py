"""The batch state machine's Lambdas against the local S3 and Model Registry."""

from __future__ import annotations

import importlib
import sys
from pathlib import Path
from types import ModuleType
from typing import Any

import boto3
import pytest

from sfn_mlops.local.cloud import LocalCloud

LAMBDAS = Path(__file__).resolve().parents[2] / "lambdas"
CONTAINER = {"Image": "img", "ModelDataUrl": "s3://artifacts/runs/r/model.tar.gz"}


def _load(function: str, module: str) -> ModuleType:
    sys.path.insert(0, str(LAMBDAS / function))
    try:
        sys.modules.pop(module, None)
        return importlib.import_module(module)
    finally:
        sys.path.remove(str(LAMBDAS / function))


@pytest.fixture
def sagemaker(cloud: LocalCloud) -> Any:
    client = boto3.client("sagemaker")
    client.create_model_package_group(ModelPackageGroupName="g")
    return client


def _version(sagemaker: Any, status: str, data: str = CONTAINER["ModelDataUrl"]) -> None:
    sagemaker.create_model_package(
        ModelPackageGroupName="g",
        InferenceSpecification={
            "Containers": [{**CONTAINER, "ModelDataUrl": data, "Environment": {"A": "1"}}],
            "SupportedContentTypes": ["text/csv"],
            "SupportedResponseMIMETypes": ["text/csv"],
        },
        ModelApprovalStatus=status,
    )


def test_the_newest_approved_version_or_the_named_one(sagemaker: Any) -> None:
    versions = _load("find_model_version", "versions")
    _version(sagemaker, "Approved", "s3://artifacts/v1/model.tar.gz")
    _version(sagemaker, "Approved", "s3://artifacts/v2/model.tar.gz")
    _version(sagemaker, "Rejected", "s3://artifacts/v3/model.tar.gz")
    newest = versions.find_version(sagemaker, "g")
    assert (newest["ModelPackageVersion"], newest["ModelDataUrl"]) == (
        2,
        "s3://artifacts/v2/model.tar.gz",
    )
    assert newest["Environment"] == {"A": "1"} and newest["Image"] == "img"
    assert versions.find_version(sagemaker, "g", 1)["ModelPackageVersion"] == 1
    with pytest.raises(versions.ModelVersionNotApproved, match="g/3 is Rejected"):
        versions.find_version(sagemaker, "g", 3)
    with pytest.raises(versions.ModelVersionNotFound, match="g/9 does not exist"):
        versions.find_version(sagemaker, "g", 9)


def test_a_group_without_an_approved_version_says_how_to_get_one(sagemaker: Any) -> None:
    versions = _load("find_model_version", "versions")
    _version(sagemaker, "PendingManualApproval")
    with pytest.raises(versions.NoApprovedModel, match="g has no Approved version"):
        versions.find_version(sagemaker, "g")
    with pytest.raises(versions.NoApprovedModel, match="model package group nope"):
        versions.find_version(sagemaker, "nope")


def test_publish_copies_every_prediction_file_under_the_destination(cloud: LocalCloud) -> None:
    publish = _load("publish_batch_output", "publish")
    s3 = boto3.client("s3")
    for bucket in ("artifacts", "results"):
        s3.create_bucket(Bucket=bucket)
    for key in ("batches/b1/output/a.csv.out", "batches/b1/output/sub/b.csv.out"):
        s3.put_object(Bucket="artifacts", Key=key, Body=b"1,9.5\n")
    result = publish.publish(s3, "s3://artifacts/batches/b1/output/", "s3://results/scored")
    assert result == {
        "objects": 2,
        "outputs": ["s3://results/scored/a.csv.out", "s3://results/scored/sub/b.csv.out"],
    }
    body = s3.get_object(Bucket="results", Key="scored/sub/b.csv.out")["Body"].read()
    assert body == b"1,9.5\n"


def test_a_scheduled_batch_publishes_under_its_executions_name(cloud: LocalCloud) -> None:
    publish = _load("publish_batch_output", "publish")
    s3 = boto3.client("s3")
    for bucket in ("artifacts", "results"):
        s3.create_bucket(Bucket=bucket)
    s3.put_object(Bucket="artifacts", Key="batches/b2/output/a.csv.out", Body=b"1,9.5\n")
    result = publish.publish(
        s3, "s3://artifacts/batches/b2/output/", "s3://results/nightly/{execution}/", "run-7"
    )
    assert result["outputs"] == ["s3://results/nightly/run-7/a.csv.out"]
