"""Local IAM for every principal, decided on the deployed template as AWS decides it.

The defects a review against AWS's documentation found (issue 21: D1, D2, D7), re-introduced
one at a time in the template the local service deploys, are refused with AWS's own error; the
template as it is allows the same calls. Through the server: a Lambda's role is refused what its
policies do not grant, and S3 tells such a caller AccessDenied, not NoSuchKey.
"""

from __future__ import annotations

import copy
import json
from pathlib import Path
from typing import Any

import boto3
import pytest

from sfn_mlops.aws.translate import translate
from sfn_mlops.local.authorization import Authorization, write_mode
from sfn_mlops.local.cloud import LocalCloud
from sfn_mlops.local.iam import AccessDenied
from sfn_mlops.local.server import LocalServer
from sfn_mlops.template import load

ROOT = Path(__file__).resolve().parents[2]
ACCOUNT = "123456789012"
BUCKET = "sfn-mlops-artifactbucket"


@pytest.fixture(scope="module")
def translated() -> dict[str, Any]:
    return translate(load(ROOT / "template.yaml"), ROOT)


def _authorization(tmp_path: Path, template: dict[str, Any]) -> Authorization:
    iam = Authorization(tmp_path, "us-east-1", ACCOUNT)
    iam.deployed(template, {})
    return iam


def _role(iam: Authorization, role: str, session: str) -> Any:
    return iam.caller(f"arn:aws:iam::{ACCOUNT}:role/{role}", session)


def _without(template: dict[str, Any], role: str, sid: str) -> dict[str, Any]:
    changed = copy.deepcopy(template)
    for policy in changed["Resources"][role]["Properties"]["Policies"]:
        statements = policy["PolicyDocument"]["Statement"]
        policy["PolicyDocument"]["Statement"] = [s for s in statements if s.get("Sid") != sid]
    return changed


GUARDED_UPDATE = {
    "EndpointName": "sfn-mlops",
    "EndpointConfigName": "run-2-config",
    "DeploymentConfig": {
        "BlueGreenUpdatePolicy": {
            "TrafficRoutingConfiguration": {"Type": "ALL_AT_ONCE", "WaitIntervalInSeconds": 0}
        },
        "AutoRollbackConfiguration": {"Alarms": [{"AlarmName": "sfn-mlops-5xx-errors"}]},
    },
}


def test_d2_a_guarded_update_needs_describe_alarms(
    tmp_path: Path, translated: dict[str, Any]
) -> None:
    role = ("DeployModelFunctionRole", "DeployModelFunction")
    allowed = _authorization(tmp_path / "real", translated)
    allowed.authorize(_role(allowed, *role), "sagemaker", "UpdateEndpoint", GUARDED_UPDATE)
    broken = _authorization(
        tmp_path / "d2", _without(translated, "DeployModelFunctionRole", "RollbackAlarms")
    )
    with pytest.raises(AccessDenied) as denied:
        broken.authorize(_role(broken, *role), "sagemaker", "UpdateEndpoint", GUARDED_UPDATE)
    assert (denied.value.code, denied.value.status) == ("AccessDeniedException", 400)
    assert denied.value.message == (
        f"User: arn:aws:sts::{ACCOUNT}:assumed-role/DeployModelFunctionRole/DeployModelFunction"
        " is not authorized to perform: cloudwatch:DescribeAlarms on resource: "
        f"arn:aws:cloudwatch:us-east-1:{ACCOUNT}:alarm:sfn-mlops-5xx-errors because no "
        "identity-based policy allows the cloudwatch:DescribeAlarms action"
    )


def test_d1_clarify_shadow_endpoint_by_the_name_clarify_gives_it(
    tmp_path: Path, translated: dict[str, Any]
) -> None:
    create = {"EndpointName": "sm-clarify-run-1-model-1733570000-ab12", "EndpointConfigName": (
        "sm-clarify-config-1733570000-ab12"
    )}  # fmt: skip
    real = _authorization(tmp_path / "real", translated)
    clarify = ("SageMakerExecutionRole", "Clarify")
    real.authorize(_role(real, *clarify), "sagemaker", "CreateEndpoint", create)
    text = json.dumps(translated)  # the names granted before the review
    text = text.replace("sm-clarify-config-*", "sagemaker-clarify-*")
    old = json.loads(text.replace("sm-clarify-*", "sagemaker-clarify-*"))
    broken = _authorization(tmp_path / "d1", old)
    with pytest.raises(AccessDenied, match="not authorized to perform: sagemaker:CreateEndpoint"):
        broken.authorize(_role(broken, *clarify), "sagemaker", "CreateEndpoint", create)


def test_d7_a_missing_key_is_access_denied_without_list_bucket(
    tmp_path: Path, translated: dict[str, Any]
) -> None:
    role = ("ApprovalDecisionFunctionRole", "ApprovalDecisionFunction")
    real = _authorization(tmp_path / "real", translated)
    assert real.may_list_bucket(_role(real, *role), BUCKET)
    broken = _authorization(
        tmp_path / "d7", _without(translated, "ApprovalDecisionFunctionRole", "TellMissingKeys")
    )
    assert not broken.may_list_bucket(_role(broken, *role), BUCKET)


def test_warn_and_off_let_a_denied_request_through(
    tmp_path: Path, translated: dict[str, Any], caplog: pytest.LogCaptureFixture
) -> None:
    iam = _authorization(tmp_path, translated)
    caller = _role(iam, "ReadEvaluationFunctionRole", "ReadEvaluationFunction")
    with pytest.raises(AccessDenied):
        iam.authorize(caller, "sagemaker", "ListEndpoints", {})
    write_mode(tmp_path, "warn")
    iam.authorize(caller, "sagemaker", "ListEndpoints", {})
    assert "not authorized to perform: sagemaker:ListEndpoints" in caplog.text
    write_mode(tmp_path, "off")
    iam.authorize(caller, "sagemaker", "ListEndpoints", {})


def test_a_lambda_role_is_refused_through_the_server(
    server: LocalServer, cloud: LocalCloud, translated: dict[str, Any]
) -> None:
    cloud.authorization.deployed(translated, {})
    cloud.objects.create_bucket(BUCKET)
    role = f"arn:aws:iam::{ACCOUNT}:role/BiasGateFunctionRole"
    keys = cloud.credentials.for_role(role, "BiasGateFunction").client_kwargs()
    sagemaker = boto3.client("sagemaker", **keys)
    with pytest.raises(sagemaker.exceptions.ClientError) as refused:
        sagemaker.list_endpoints()
    assert refused.value.response["Error"]["Code"] == "AccessDeniedException"
    s3 = boto3.client("s3", **keys)
    with pytest.raises(s3.exceptions.NoSuchKey):  # it may list the bucket: the key is missing
        s3.get_object(Bucket=BUCKET, Key="runs/r/clarify/bias/analysis.json")
    with pytest.raises(s3.exceptions.ClientError) as outside:
        s3.get_object(Bucket=BUCKET, Key="code/x")
    assert outside.value.response["Error"]["Code"] == "AccessDenied"
    boto3.client("sagemaker").list_endpoints()  # the administrator may


def test_the_statements_no_request_used_are_listed(
    tmp_path: Path, translated: dict[str, Any]
) -> None:
    """Least privilege, measured: each allowing statement is recorded once per action, with
    its request; the template's statements never used are what `local iam --unused` lists."""
    iam = _authorization(tmp_path, translated)
    deploy = "Resources.DeployModelFunctionRole.Policies[DeployModelFunctionRolePolicy0]"
    assert {f"{deploy}.Statement[Endpoints]", f"{deploy}.Statement[RollbackAlarms]"} <= set(
        iam.unused()
    )
    caller = _role(iam, "DeployModelFunctionRole", "DeployModelFunction")
    iam.authorize(caller, "sagemaker", "UpdateEndpoint", GUARDED_UPDATE)
    iam.authorize(caller, "sagemaker", "UpdateEndpoint", GUARDED_UPDATE)  # recorded once
    unused = iam.unused()
    assert f"{deploy}.Statement[Endpoints]" not in unused
    assert f"{deploy}.Statement[RollbackAlarms]" not in unused
    assert all(where.startswith("Resources.") for where in unused)  # not AWS managed ones
    lines = (tmp_path / "iam-used.jsonl").read_text().splitlines()
    recorded = sorted((json.loads(line)["statement"], json.loads(line)["action"]) for line in lines)
    assert recorded == [
        (f"{deploy}.Statement[Endpoints]", "sagemaker:UpdateEndpoint"),
        (f"{deploy}.Statement[RollbackAlarms]", "cloudwatch:DescribeAlarms"),
    ]
    # a new process of the same workspace reads what was used
    assert Authorization(tmp_path, "us-east-1", ACCOUNT).unused() == unused
