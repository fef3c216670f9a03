"""The local Clarify runtime behind the Clarify image: a processing job with no entrypoint of
ours reads analysis_config.json and the data, scores the model CreateModel named (its
ModelDataUrl, no endpoint) and writes analysis.json and report.html."""

from __future__ import annotations

import io
import json
import tarfile
import time
from html.parser import HTMLParser
from pathlib import Path
from typing import Any

import boto3
import numpy as np
import pytest

from sfn_mlops.local.cloud import LocalCloud

BUCKET = "clarify-bucket"
CLARIFY = "205585389593.dkr.ecr.us-east-1.amazonaws.com/sagemaker-clarify-processing:1.0"
XGBOOST = "683313688378.dkr.ecr.us-east-1.amazonaws.com/sagemaker-xgboost:3.0-5"
ROLE = "arn:aws:iam::123456789012:role/SageMakerRole"
HEADERS = ["y", "group", "x1", "x2"]
CLARIFY_DIR = Path(__file__).resolve().parents[2] / "containers" / "clarify"
HAS_EXPLAIN = (CLARIFY_DIR / "explain.py").is_file()


@pytest.fixture
def clients(cloud: LocalCloud, monkeypatch: pytest.MonkeyPatch) -> tuple[Any, Any]:
    monkeypatch.setenv("AWS_DEFAULT_REGION", "us-east-1")
    monkeypatch.setenv("AWS_EC2_METADATA_DISABLED", "true")
    s3 = boto3.client("s3")
    s3.create_bucket(Bucket=BUCKET)
    return boto3.client("sagemaker"), s3


def _tiny_model_and_data(s3: Any) -> np.ndarray:
    import xgboost

    rng = np.random.default_rng(7)
    n = 200
    group = rng.integers(0, 3, n).astype(float)
    x1, x2 = rng.normal(size=n), rng.normal(size=n)
    y = np.round(8 + 2 * x1 + (group == 0) * 1.5 + rng.normal(scale=0.5, size=n))
    features = np.column_stack([group, x1, x2])
    booster = xgboost.train(
        {"max_depth": 3, "eta": 0.3, "objective": "reg:squarederror"},
        xgboost.DMatrix(features, label=y),
        num_boost_round=10,
    )
    raw = bytes(booster.save_raw(raw_format="ubj"))
    buffer = io.BytesIO()
    with tarfile.open(fileobj=buffer, mode="w:gz") as tar:
        info = tarfile.TarInfo("xgboost-model")
        info.size = len(raw)
        tar.addfile(info, io.BytesIO(raw))
    s3.put_object(Bucket=BUCKET, Key="model/model.tar.gz", Body=buffer.getvalue())
    rows = np.column_stack([y, features])
    body = "\n".join(",".join(repr(float(v)) for v in row) for row in rows) + "\n"
    s3.put_object(Bucket=BUCKET, Key="data/test.csv", Body=body.encode())
    return rows


def _create_model(sm: Any) -> None:
    model_data = f"s3://{BUCKET}/model/model.tar.gz"
    sm.create_model(
        ModelName="tiny",
        ExecutionRoleArn=ROLE,
        PrimaryContainer={"Image": XGBOOST, "ModelDataUrl": model_data},
    )


def _config(methods: dict[str, Any]) -> dict[str, Any]:
    return {
        "version": "1.0",
        "dataset_type": "text/csv",
        "headers": HEADERS,
        "label": "y",
        "label_values_or_threshold": [9],
        "facet": [{"name_or_index": "group", "value_or_threshold": [0]}],
        "predictor": {
            "model_name": "tiny",
            "instance_type": "ml.m5.xlarge",
            "initial_instance_count": 1,
            "content_type": "text/csv",
        },  # fmt: skip
        "methods": methods,
    }


def _run(sm: Any, s3: Any, name: str, config: dict[str, Any]) -> dict[str, Any]:
    s3.put_object(Bucket=BUCKET, Key=f"{name}/config/analysis_config.json",
                  Body=json.dumps(config).encode())  # fmt: skip

    def source(input_name: str, uri: str, path: str) -> dict[str, Any]:
        s3_input = {"S3Uri": uri, "LocalPath": path, "S3DataType": "S3Prefix"}
        return {"InputName": input_name, "S3Input": {**s3_input, "S3InputMode": "File"}}

    sm.create_processing_job(
        ProcessingJobName=name,
        AppSpecification={"ImageUri": CLARIFY},
        ProcessingInputs=[
            source(
                "analysis_config",
                f"s3://{BUCKET}/{name}/config/",
                "/opt/ml/processing/input/config",
            ),
            source("dataset", f"s3://{BUCKET}/data/", "/opt/ml/processing/input/data"),
        ],  # fmt: skip
        ProcessingOutputConfig={
            "Outputs": [
                {
                    "OutputName": "analysis_result",
                    "S3Output": {
                        "S3Uri": f"s3://{BUCKET}/{name}/report",
                        "LocalPath": "/opt/ml/processing/output",
                        "S3UploadMode": "EndOfJob",
                    },
                }
            ]
        },  # fmt: skip
        ProcessingResources={
            "ClusterConfig": {
                "InstanceCount": 1,
                "InstanceType": "ml.m5.xlarge",
                "VolumeSizeInGB": 30,
            }
        },  # fmt: skip
        Environment={"SFN_MLOPS_BIAS_THRESHOLDS": json.dumps({"DPPL": 0.05})},
        RoleArn=ROLE,
    )
    deadline = time.monotonic() + 60
    while True:
        job = sm.describe_processing_job(ProcessingJobName=name)
        if job["ProcessingJobStatus"] in ("Completed", "Failed", "Stopped"):
            return job  # type: ignore[no-any-return]
        assert time.monotonic() < deadline, job
        time.sleep(0.05)


class _Sections(HTMLParser):
    def __init__(self) -> None:
        super().__init__()
        self.sections: list[str] = []
        self.svgs = 0

    def handle_starttag(self, tag: str, attrs: list[tuple[str, str | None]]) -> None:
        if tag == "section":
            self.sections.append(dict(attrs).get("id") or "")
        self.svgs += tag == "svg"


def _sections(s3: Any, key: str) -> _Sections:
    page = s3.get_object(Bucket=BUCKET, Key=key)["Body"].read().decode()
    assert "http://" not in page.replace('xmlns="http://www.w3.org/2000/svg"', "")
    parser = _Sections()
    parser.feed(page)
    return parser


def test_bias_job_scores_the_model_data_and_writes_both_reports(clients: tuple[Any, Any]) -> None:
    sm, s3 = clients
    _tiny_model_and_data(s3)
    _create_model(sm)
    methods = {"pre_training_bias": {"methods": "all"}, "post_training_bias": {"methods": "all"}}
    job = _run(sm, s3, "bias-job", _config(methods))
    assert job["ProcessingJobStatus"] == "Completed", job
    analysis = json.loads(
        s3.get_object(Bucket=BUCKET, Key="bias-job/report/analysis.json")["Body"].read()
    )
    pre = analysis["pre_training_bias_metrics"]["facets"]["group"][0]
    post = analysis["post_training_bias_metrics"]["facets"]["group"][0]
    names = {m["name"] for m in pre["metrics"]} | {m["name"] for m in post["metrics"]}
    assert {"CI", "DPL", "KL", "CDDL", "DPPL", "DI", "AD", "FT"} <= names
    assert _sections(s3, "bias-job/report/report.html").sections == ["bias"]


@pytest.mark.skipif(not HAS_EXPLAIN, reason="containers/clarify/explain.py has not landed")
def test_explainability_job_writes_shap_values_that_add_up(clients: tuple[Any, Any]) -> None:
    import xgboost

    sm, s3 = clients
    rows = _tiny_model_and_data(s3)
    _create_model(sm)
    methods = {
        "shap": {"num_clusters": 4, "agg_method": "mean_abs", "save_local_shap_values": True}
    }
    job = _run(sm, s3, "explain-job", _config(methods))
    assert job["ProcessingJobStatus"] == "Completed", job
    analysis = json.loads(
        s3.get_object(Bucket=BUCKET, Key="explain-job/report/analysis.json")["Body"].read()
    )
    entry = analysis["explanations"]["kernel_shap"]["label0"]
    assert set(entry["global_shap_values"]) == {"group", "x1", "x2"}
    local = np.loadtxt(
        io.BytesIO(s3.get_object(Bucket=BUCKET, Key="explain-job/report/explanations_shap/"
                                 "out.csv")["Body"].read()), delimiter=",", skiprows=1)  # fmt: skip
    archive = s3.get_object(Bucket=BUCKET, Key="model/model.tar.gz")["Body"].read()
    with tarfile.open(fileobj=io.BytesIO(archive)) as tar:
        member = tar.extractfile("xgboost-model")
        assert member is not None
        booster = xgboost.Booster()
        booster.load_model(bytearray(member.read()))
    margin = booster.predict(xgboost.DMatrix(rows[:, 1:]), output_margin=True)
    np.testing.assert_allclose(local.sum(axis=1) + entry["expected_value"], margin, atol=1e-4)
    sections = _sections(s3, "explain-job/report/report.html")
    assert sections.sections == ["global-shap", "shap-summary"]
    assert sections.svgs == 2


def test_a_facet_that_is_not_in_the_data_fails_with_clarifys_text(
    clients: tuple[Any, Any],
) -> None:
    sm, s3 = clients
    _tiny_model_and_data(s3)
    _create_model(sm)
    config = _config({"pre_training_bias": {"methods": "all"}})
    config["facet"] = [{"name_or_index": "colour", "value_or_threshold": [0]}]
    job = _run(sm, s3, "bad-facet", config)
    assert job["ProcessingJobStatus"] == "Failed"
    assert job["ExitMessage"].startswith("ClientError: ")
    assert "colour" in job["ExitMessage"]


def test_the_model_must_exist(clients: tuple[Any, Any]) -> None:
    sm, s3 = clients
    _tiny_model_and_data(s3)
    job = _run(sm, s3, "no-model", _config({"pre_training_bias": {"methods": "all"}}))
    assert job["ProcessingJobStatus"] == "Failed"
    assert job["ExitMessage"] == (
        "ClientError: predictor.model_name 'tiny': Could not find model "
        '"arn:aws:sagemaker:us-east-1:123456789012:model/tiny".'
    )
