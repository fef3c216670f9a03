"""Manual approval as a paused execution: the task token waits in S3 for the version's decision.

The state machine's `WaitForApproval` Task (``lambda:invoke.waitForTaskToken``) hands its token
to ``hold_token``, which keeps it at ``approvals/<group>/<version>.json`` in the artifact bucket.
An approval or a rejection in the Model Registry emits "SageMaker Model Package State Change";
an EventBridge rule hands that event to ``answer_decision``, which finds the token and answers
the task: SendTaskSuccess with the version's registration, or SendTaskFailure ``ModelRejected``.

A decision made before the token is kept (a quick reviewer, or an event that came first) is not
lost: ``hold_token`` reads the version's status after writing the token and answers at once, with
the token in hand (it never reads the key back, so a decision that answered and removed it in
between costs nothing but a closed-task error, which both sides take as done).
"""

from __future__ import annotations

import json
import logging
from typing import Any

log = logging.getLogger(__name__)

PREFIX = "approvals"
REJECTED_ERROR = "ModelRejected"
DECIDED = ("Approved", "Rejected")
# What SendTask* raises for a task that has ended (answered, timed out, execution stopped).
_CLOSED_TASK_ERRORS = ("TaskTimedOut", "TaskDoesNotExist", "InvalidToken")


def token_key(group: str, version: int) -> str:
    return f"{PREFIX}/{group}/{version}.json"


def _parse_arn(package_arn: str) -> tuple[str, int]:
    """(group, version) of ``arn:...:model-package/<group>/<version>``."""
    resource = package_arn.split(":", 5)[-1]
    kind, _, rest = resource.partition("/")
    group, _, version = rest.rpartition("/")
    if kind != "model-package" or not group or not version.isdigit():
        raise ValueError(f"{package_arn} is not the ARN of a versioned model package")
    return group, int(version)


def registration(package: dict[str, Any]) -> dict[str, Any]:
    """The task's output: the same keys as RegisterModel's result, with the decision."""
    return {
        "ModelPackageArn": package["ModelPackageArn"],
        "ModelPackageVersion": package["ModelPackageVersion"],
        "ModelApprovalStatus": package["ModelApprovalStatus"],
    }


def hold_token(
    s3: Any, sagemaker: Any, sfn: Any, *, bucket: str, package_arn: str, token: str, execution: str
) -> str:
    """Keep the token where the decision will look; answer now if the version is decided."""
    group, version = _parse_arn(package_arn)
    key = token_key(group, version)
    body = {"taskToken": token, "executionArn": execution, "modelPackageArn": package_arn}
    s3.put_object(Bucket=bucket, Key=key, Body=json.dumps(body).encode())
    package = sagemaker.describe_model_package(ModelPackageName=package_arn)
    status = package["ModelApprovalStatus"]
    if status in DECIDED:
        answer_decision(s3, sfn, bucket=bucket, package=package, held=body)
    return status


def answer_decision(
    s3: Any, sfn: Any, *, bucket: str, package: dict[str, Any], held: dict[str, Any] | None = None
) -> str:
    """Resume the execution waiting on this version, if one is (its token `held`, or kept in
    S3); what was done, in words."""
    status = package.get("ModelApprovalStatus")
    if status not in DECIDED:
        return f"{status}: not a decision"
    group, version = package["ModelPackageGroupName"], int(package["ModelPackageVersion"])
    key = token_key(group, version)
    if held is None:
        try:
            held = json.loads(s3.get_object(Bucket=bucket, Key=key)["Body"].read())
        except s3.exceptions.NoSuchKey:
            return f"{group}/{version} {status}: no execution waits for it"
    token = held["taskToken"]
    try:
        if status == "Approved":
            sfn.send_task_success(taskToken=token, output=json.dumps(registration(package)))
        else:
            sfn.send_task_failure(
                taskToken=token, error=REJECTED_ERROR, cause=rejection_cause(package)
            )
        outcome = f"{group}/{version} {status}: resumed {held['executionArn']}"
    except sfn.exceptions.ClientError as err:
        if err.response["Error"]["Code"] not in _CLOSED_TASK_ERRORS:
            raise  # the token stays: a retried event can still answer
        outcome = f"{group}/{version} {status}: its execution no longer waits ({err})"
    s3.delete_object(Bucket=bucket, Key=key)
    return outcome


def rejection_cause(package: dict[str, Any]) -> str:
    group, version = package["ModelPackageGroupName"], package["ModelPackageVersion"]
    why = package.get("ApprovalDescription")
    return f"Model package version {group}/{version} was rejected" + (f": {why}" if why else "")
