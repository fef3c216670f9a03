"""The local Clarify runtime behind the Clarify image: a processing job with no entrypoint of
ours reads analysis_config.json and the data and writes analysis.json and report.html, asking
the model CreateModel named through a shadow endpoint it makes, as AWS's Clarify does: under
the job's role (the template's SageMakerExecutionRole, IAM enforced), with Clarify's names,
tagged, and deleted afterwards."""

from __future__ import annotations

import copy
import io
import json
import re
import tarfile
import time
from html.parser import HTMLParser
from pathlib import Path
from typing import Any

import boto3
import numpy as np
import pytest

from sfn_mlops.aws.translate import translate
from sfn_mlops.local import server as local_server
from sfn_mlops.local.cloud import LocalCloud
from sfn_mlops.template import load

ROOT = Path(__file__).resolve().parents[2]
ACCOUNT = "123456789012"
BUCKET = "sfn-mlops-artifactbucket"  # the deployed template's, which the job's role may use
CLARIFY = "205585389593.dkr.ecr.us-east-1.amazonaws.com/sagemaker-clarify-processing:1.0"
XGBOOST = "683313688378.dkr.ecr.us-east-1.amazonaws.com/sagemaker-xgboost:3.0-5"
ROLE = f"arn:aws:iam::{ACCOUNT}:role/SageMakerExecutionRole"
HEADERS = ["y", "group", "x1", "x2"]
CLARIFY_DIR = ROOT / "containers" / "clarify"
HAS_EXPLAIN = (CLARIFY_DIR / "explain.py").is_file()
SHADOW = (
    "Resources.SageMakerExecutionRole.Policies[sagemaker-jobs].Statement[ClarifyShadowEndpoint]"
)


@pytest.fixture(scope="module")
def translated() -> dict[str, Any]:
    return translate(load(ROOT / "template.yaml"), ROOT)


def _deploy(cloud: LocalCloud, template: dict[str, Any], without: str = "") -> None:
    """The template's roles, IAM enforced; ``without``: a ClarifyShadowEndpoint action left out
    ("*": the whole statement)."""
    template = copy.deepcopy(template)
    role = template["Resources"]["SageMakerExecutionRole"]["Properties"]
    for policy in role["Policies"]:
        statements = policy["PolicyDocument"]["Statement"]
        for statement in list(statements):
            if isinstance(statement, dict) and statement.get("Sid") == "ClarifyShadowEndpoint":
                if without == "*":
                    statements.remove(statement)
                elif without:
                    statement["Action"] = [a for a in statement["Action"] if a != without]
    cloud.authorization.deployed(template, {})


@pytest.fixture
def clients(
    cloud: LocalCloud, monkeypatch: pytest.MonkeyPatch, translated: dict[str, Any]
) -> tuple[Any, Any]:
    monkeypatch.setenv("AWS_DEFAULT_REGION", "us-east-1")
    monkeypatch.setenv("AWS_EC2_METADATA_DISABLED", "true")
    _deploy(cloud, translated)
    s3 = boto3.client("s3")
    s3.create_bucket(Bucket=BUCKET)
    return boto3.client("sagemaker"), s3


@pytest.fixture
def calls(monkeypatch: pytest.MonkeyPatch) -> list[tuple[str, str, dict[str, Any]]]:
    """(service, operation, request) of each SageMaker call the job's role made, in order."""
    made: list[tuple[str, str, dict[str, Any]]] = []
    dispatch = local_server.dispatch

    def recording(cloud: Any, service: str, operation: str, params: dict[str, Any],
                  caller: Any = None) -> dict[str, Any]:  # fmt: skip
        if caller is not None and caller.arn == ROLE and service.startswith("sagemaker"):
            made.append((service, operation, copy.deepcopy(params)))
        return dispatch(cloud, service, operation, params, caller)

    monkeypatch.setattr(local_server, "dispatch", recording)
    return made


def _targz(name: str, data: bytes) -> bytes:
    """A .tar.gz of one file, as model.tar.gz and sourcedir.tar.gz are."""
    buffer = io.BytesIO()
    with tarfile.open(fileobj=buffer, mode="w:gz") as tar:
        info = tarfile.TarInfo(name)
        info.size = len(data)
        tar.addfile(info, io.BytesIO(data))
    return buffer.getvalue()


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
    archive = _targz("xgboost-model", bytes(booster.save_raw(raw_format="ubj")))
    s3.put_object(Bucket=BUCKET, Key="model/model.tar.gz", Body=archive)
    rows = np.column_stack([y, features])
    body = "\n".join(",".join(repr(float(v)) for v in row) for row in rows) + "\n"
    s3.put_object(Bucket=BUCKET, Key="data/test.csv", Body=body.encode())
    return rows


def _create_model(sm: Any, name: str = "tiny", environment: dict[str, str] | None = None) -> None:
    container = {"Image": XGBOOST, "ModelDataUrl": f"s3://{BUCKET}/model/model.tar.gz"}
    if environment:
        container["Environment"] = environment
    sm.create_model(ModelName=name, ExecutionRoleArn=ROLE, PrimaryContainer=container)


#: An inference script whose model answers 100 for every record, whatever the booster says.
CONSTANT_SCRIPT = b"""
import numpy as np

def predict_fn(rows, model):
    return np.full(len(rows), 100.0)
"""


def _constant_model(sm: Any, s3: Any) -> None:
    """A model of the same booster whose endpoint answers a constant (script mode)."""
    archive = _targz("constant.py", CONSTANT_SCRIPT)
    s3.put_object(Bucket=BUCKET, Key="code/sourcedir.tar.gz", Body=archive)
    code = f"s3://{BUCKET}/code/sourcedir.tar.gz"
    environment = {"SAGEMAKER_PROGRAM": "constant.py", "SAGEMAKER_SUBMIT_DIRECTORY": code}
    _create_model(sm, "constant", environment)


def _config(methods: dict[str, Any], model: str = "tiny") -> dict[str, Any]:
    return {
        "version": "1.0",
        "dataset_type": "text/csv",
        "headers": HEADERS,
        "label": "y",
        "label_values_or_threshold": [9],
        "facet": [{"name_or_index": "group", "value_or_threshold": [0]}],
        "predictor": {
            "model_name": model,
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
    deadline = time.monotonic() + 180
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


def _analysis(s3: Any, name: str) -> dict[str, Any]:
    body = s3.get_object(Bucket=BUCKET, Key=f"{name}/report/analysis.json")["Body"].read()
    return json.loads(body)  # type: ignore[no-any-return]


def _dppl(analysis: dict[str, Any]) -> float:
    post = analysis["post_training_bias_metrics"]["facets"]["group"][0]["metrics"]
    return float(next(m["value"] for m in post if m["name"] == "DPPL"))


def test_bias_job_asks_a_shadow_endpoint_and_writes_both_reports(
    cloud: LocalCloud, clients: tuple[Any, Any], calls: list[tuple[str, str, dict[str, Any]]]
) -> None:
    sm, s3 = clients
    _tiny_model_and_data(s3)
    _create_model(sm)
    methods = {"pre_training_bias": {"methods": "all"}, "post_training_bias": {"methods": "all"}}
    job = _run(sm, s3, "bias-job", _config(methods))
    assert job["ProcessingJobStatus"] == "Completed", job
    analysis = _analysis(s3, "bias-job")
    pre = analysis["pre_training_bias_metrics"]["facets"]["group"][0]
    post = analysis["post_training_bias_metrics"]["facets"]["group"][0]
    names = {m["name"] for m in pre["metrics"]} | {m["name"] for m in post["metrics"]}
    assert {"CI", "DPL", "KL", "CDDL", "DPPL", "DI", "AD", "FT"} <= names
    assert _sections(s3, "bias-job/report/report.html").sections == ["bias"]

    # Clarify's calls, as the job's role, in Clarify's order; nothing left behind
    operations = [operation for _, operation, _ in calls]
    polls = operations.count("DescribeEndpoint")
    assert polls >= 1
    assert operations == [
        "CreateEndpointConfig", "CreateEndpoint", *["DescribeEndpoint"] * polls,
        "InvokeEndpoint", "DeleteEndpointConfig", "DeleteEndpoint",
    ]  # fmt: skip
    create_config, create_endpoint = calls[0][2], calls[1][2]
    config_name = create_config["EndpointConfigName"]
    endpoint_name = create_endpoint["EndpointName"]
    assert re.fullmatch(r"sm-clarify-config-\d{10}-[0-9a-f]{4}", config_name)
    assert re.fullmatch(r"sm-clarify-tiny-\d{10}-[0-9a-f]{4}", endpoint_name)
    assert create_config["ProductionVariants"] == [
        {"VariantName": "AllTraffic", "ModelName": "tiny", "InitialVariantWeight": 1.0,
         "InitialInstanceCount": 1, "InstanceType": "ml.m5.xlarge"},
    ]  # fmt: skip
    tags = [{"Key": "sm-clarify-processing-job", "Value": "bias-job"}]
    assert create_config["Tags"] == create_endpoint["Tags"] == tags
    assert create_endpoint["EndpointConfigName"] == config_name
    invoke = calls[-3]
    assert invoke[0] == "sagemaker-runtime"
    assert (invoke[2]["EndpointName"], invoke[2]["ContentType"], invoke[2]["Accept"]) == (
        endpoint_name, "text/csv", "text/csv"
    )  # fmt: skip
    body = invoke[2]["Body"]  # a stream, as the service reads it
    assert len(body.getvalue().decode().splitlines()) == 200  # one batch, every record
    assert calls[-2][2] == {"EndpointConfigName": config_name}
    assert calls[-1][2] == {"EndpointName": endpoint_name}
    assert sm.list_endpoints()["Endpoints"] == []
    assert sm.list_endpoint_configs()["EndpointConfigs"] == []
    assert SHADOW not in cloud.authorization.unused()  # the template's statement for it


def test_the_predicted_labels_are_the_endpoints_answers(clients: tuple[Any, Any]) -> None:
    """Two models of one booster: the one whose endpoint answers 100 for every record has
    every prediction positive, so no difference between the groups (DPPL 0)."""
    sm, s3 = clients
    _tiny_model_and_data(s3)
    _create_model(sm)
    _constant_model(sm, s3)
    post = {"post_training_bias": {"methods": ["DPPL"]}}
    served = _run(sm, s3, "booster-served", _config(post))
    constant = _run(sm, s3, "constant-served", _config(post, model="constant"))
    assert served["ProcessingJobStatus"] == constant["ProcessingJobStatus"] == "Completed"
    assert _dppl(_analysis(s3, "booster-served")) != 0.0
    assert _dppl(_analysis(s3, "constant-served")) == 0.0


@pytest.mark.parametrize(
    ("left_out", "action", "resource"),
    [
        ("*", "sagemaker:CreateEndpointConfig", "endpoint-config/sm-clarify-config-"),
        ("sagemaker:AddTags", "sagemaker:AddTags", "endpoint-config/sm-clarify-config-"),
        ("sagemaker:InvokeEndpoint", "sagemaker:InvokeEndpoint", "endpoint/sm-clarify-tiny-"),
    ],
)
def test_a_role_without_the_shadow_endpoint_statement_fails_the_job_naming_the_action(
    cloud: LocalCloud,
    clients: tuple[Any, Any],
    translated: dict[str, Any],
    left_out: str,
    action: str,
    resource: str,
) -> None:
    """As an AWS user's Clarify job failed: "ClientError: ClientError: An error occurred
    (AccessDeniedException) when calling the CreateEndpointConfig operation: ... is not
    authorized to perform: sagemaker:AddTags on resource: ...endpoint-config/sm-clarify-config-
    1746251067-14e5 because no identity-based policy allows the sagemaker:AddTags action, exit
    code: 1". What was made is deleted all the same."""
    sm, s3 = clients
    _deploy(cloud, translated, without=left_out)
    _tiny_model_and_data(s3)
    _create_model(sm)
    job = _run(sm, s3, "denied", _config({"post_training_bias": {"methods": "all"}}))
    assert job["ProcessingJobStatus"] == "Failed"
    operation = "InvokeEndpoint" if action.endswith("InvokeEndpoint") else "CreateEndpointConfig"
    session = "arn:aws:sts::123456789012:assumed-role/SageMakerExecutionRole/SageMaker"
    prefix = (
        f"ClientError: ClientError: An error occurred (AccessDeniedException) when calling the "
        f"{operation} operation: User: {session} is not authorized to perform: {action} on "
        f"resource: arn:aws:sagemaker:us-east-1:{ACCOUNT}:{resource}"
    )
    assert job["FailureReason"].startswith(prefix), job["FailureReason"]
    assert job["FailureReason"].endswith(
        f"because no identity-based policy allows the {action} action, exit code: 1"
    )
    assert job["ExitMessage"] == job["FailureReason"].removeprefix("ClientError: ").removesuffix(
        ", exit code: 1"
    )
    assert sm.list_endpoints()["Endpoints"] == []
    assert sm.list_endpoint_configs()["EndpointConfigs"] == []


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
    analysis = _analysis(s3, "explain-job")
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
    job = _run(sm, s3, "no-model", _config({"post_training_bias": {"methods": "all"}}))
    assert job["ProcessingJobStatus"] == "Failed"
    assert job["ExitMessage"] == (
        "ClientError: An error occurred (ValidationException) when calling the "
        'CreateEndpointConfig operation: Could not find model "arn:aws:sagemaker:us-east-1:'
        f'{ACCOUNT}:model/tiny".'
    )
    assert job["FailureReason"] == f"ClientError: {job['ExitMessage']}, exit code: 1"
