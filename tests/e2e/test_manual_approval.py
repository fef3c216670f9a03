"""Manual approval for real: the run pauses at WaitForApproval until `sfn-mlops models
approve|reject` decides the version from another process, or its approval time runs out.

One workspace: a rejected run (nothing in production yet), then an approved one that deploys,
then one whose approval times out. Each run is a CLI process of its own, as a user's terminal.
"""

from __future__ import annotations

import json
import os
import subprocess
import sys
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any

import pytest
from waiting import until

from sfn_mlops.intrinsics import physical_name
from sfn_mlops.settings import TIME_SCALE_ENV

pytestmark = pytest.mark.e2e

MANUAL = ("--set", "registry.approval=manual", "--set", "clarify.enabled=false")
GROUP = "sfn-mlops-models"
WAIT_SECONDS = 120.0
BUCKET = physical_name("ArtifactBucket", "AWS::S3::Bucket")


def _start(workspace: Path, name: str, *extra: str) -> subprocess.Popen[str]:
    env = dict(os.environ, **{TIME_SCALE_ENV: "0.01"})
    env.pop("AWS_ENDPOINT_URL", None)  # the CLI finds the workspace's service itself
    return subprocess.Popen(
        [sys.executable, "-m", "sfn_mlops.cli", "--workspace", str(workspace), "run"]
        + ["--name", name, *MANUAL, *extra],
        env=env,
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        text=True,
    )



def _waiting(aws: Any, name: str) -> bool:
    if name not in aws.execution_names():
        return False
    return "WaitForApproval" in aws.entered_states(name)


def _decided_run(
    workspace: Path, cli: Callable[..., Any], open_aws: Any, name: str, action: str, version: int
) -> dict[str, Any]:
    process = _start(workspace, name)
    with open_aws(workspace) as aws:
        until(lambda: _waiting(aws, name), f"{name} to wait for approval")
        time.sleep(0.5)  # a decision may come before or after the token is kept: both work
        decided = cli(workspace, "models", action, f"{GROUP}/{version}", "--reason", "reviewed")
        out, err = process.communicate(timeout=WAIT_SECONDS)
        return {
            "decided": decided,
            "code": process.returncode,
            "out": out,
            "err": err,
            "execution": aws.describe(name),
            "states": aws.entered_states(name),
            "package": aws.sagemaker.describe_model_package(ModelPackageName=f"{GROUP}/{version}"),
        }


@pytest.fixture(scope="module")
def rejected(workspace: Path, cli: Any, open_aws: Any) -> dict[str, Any]:
    return _decided_run(workspace, cli, open_aws, "rejected", "reject", 1)


@pytest.fixture(scope="module")
def approved(workspace: Path, cli: Any, open_aws: Any, rejected: Any) -> dict[str, Any]:
    return _decided_run(workspace, cli, open_aws, "approved", "approve", 2)


@pytest.fixture(scope="module")
def timed_out(workspace: Path, approved: Any) -> subprocess.CompletedProcess[str]:
    process = _start(workspace, "timed-out", "--set", "registry.approval_timeout_seconds=2")
    out, err = process.communicate(timeout=WAIT_SECONDS)
    return subprocess.CompletedProcess(process.args, process.returncode, out, err)


def test_the_run_says_how_to_resume_it_and_a_rejection_fails_it(rejected: dict[str, Any]) -> None:
    assert rejected["decided"].code == 0, rejected["decided"].err
    assert "⏸ WaitForApproval" in rejected["out"]
    assert f"`sfn-mlops models approve {GROUP}/1` (or reject) resumes the run" in rejected["out"]
    execution = rejected["execution"]
    assert execution["status"] == "FAILED" and rejected["code"] == 1
    assert rejected["states"][-3:] == ["ApprovalNeeded", "WaitForApproval", "ModelRejected"]
    assert f"Model package version {GROUP}/1 was rejected: reviewed" in rejected["out"]
    assert rejected["package"]["ModelApprovalStatus"] == "Rejected"


def test_an_approval_from_another_process_resumes_the_run_to_the_endpoint(
    approved: dict[str, Any], open_aws: Any, workspace: Path
) -> None:
    assert approved["decided"].code == 0, approved["decided"].err
    assert approved["execution"]["status"] == "SUCCEEDED", approved["out"] + approved["err"]
    states = approved["states"]
    start = states.index("WaitForApproval")
    assert states[start - 1 : start + 3] == [
        "ApprovalNeeded", "WaitForApproval", "DeploymentWanted", "DeployModel",
    ]  # fmt: skip
    assert states[-1] == "ModelDeployed"
    assert (
        f"Registered {GROUP}/2 (PendingManualApproval)\n  then Approved by a reviewer"
        in (approved["out"])
    )
    output = json.loads(approved["execution"]["output"])
    assert output["registration"]["ModelApprovalStatus"] == "Approved"
    with open_aws(workspace) as aws:
        endpoint = aws.sagemaker.describe_endpoint(EndpointName="sfn-mlops")
        config = aws.sagemaker.describe_endpoint_config(
            EndpointConfigName=endpoint["EndpointConfigName"]
        )
    assert endpoint["EndpointStatus"] == "InService"
    (variant,) = config["ProductionVariants"]
    assert variant["ModelName"] == output["run"]["job_names"]["model"]


def test_an_approval_that_never_comes_times_out_and_deploys_nothing(
    timed_out: subprocess.CompletedProcess[str], cli: Any, open_aws: Any, workspace: Path
) -> None:
    assert timed_out.returncode == 1, timed_out.stdout + timed_out.stderr
    assert "ApprovalTimedOut" in timed_out.stdout
    assert "was neither approved nor rejected within 2 s" in timed_out.stdout
    with open_aws(workspace) as aws:
        assert aws.entered_states("timed-out")[-1] == "ApprovalTimedOut"
        package = aws.sagemaker.describe_model_package(ModelPackageName=f"{GROUP}/3")
        assert package["ModelApprovalStatus"] == "PendingManualApproval"
        # A late approval finds the execution gone: it is recorded, and its token dropped.
        assert cli(workspace, "models", "approve", f"{GROUP}/3").code == 0
        until(lambda: not _held(aws), "the late decision to drop the token")


def _held(aws: Any) -> list[str]:
    listed = aws.s3.list_objects_v2(Bucket=BUCKET, Prefix="approvals/")
    return [item["Key"] for item in listed.get("Contents", [])]
