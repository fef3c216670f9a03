"""IAM facts that both the offline AWS checks (`sfn_mlops.aws.iam`) and the local IAM engine
(`sfn_mlops.local.iam`) read: a floor below both, so imports only go down.

- The policy documents attached to a template's role: its inline `Policies`, the template's
  `AWS::IAM::Policy`/`AWS::IAM::ManagedPolicy` resources that name it, and the AWS managed
  policies of its `ManagedPolicyArns` (SAM adds `AWSLambdaBasicExecutionRole` to every function's
  role and `AWSXrayWriteOnlyAccess` with `Tracing`).
- AWS managed policy documents, pinned with their version id in `data/aws_managed_policies.json`
  (taken from a maintained mirror of IAM's managed policies; the file names it and its version).
- The SageMaker jobs whose Step Functions `.sync` integration learns of the job's end through a
  managed EventBridge rule, with the rule's name.
"""

from __future__ import annotations

import json
from dataclasses import dataclass, field
from functools import cache
from importlib import resources
from typing import Any

from sfn_mlops.intrinsics import Stack

MANAGED_POLICIES_FILE = "data/aws_managed_policies.json"


@dataclass(frozen=True)
class ManagedPolicy:
    """An AWS managed policy's document at one version (IAM's GetPolicyVersion)."""

    arn: str
    name: str
    version_id: str
    update_date: str
    document: dict[str, Any]


@cache
def managed_policies() -> dict[str, ManagedPolicy]:
    """Every AWS managed policy shipped with the package, by ARN."""
    raw = json.loads(resources.files("sfn_mlops").joinpath(MANAGED_POLICIES_FILE).read_text())
    return {
        arn: ManagedPolicy(
            arn=arn,
            name=entry["name"],
            version_id=entry["versionId"],
            update_date=entry["updateDate"],
            document=entry["document"],
        )
        for arn, entry in raw["policies"].items()
    }


@dataclass(frozen=True)
class PolicyDocument:
    """A resolved policy document; `where` names it for messages (template path or policy ARN)."""

    where: str
    document: dict[str, Any]


@dataclass
class RolePolicies:
    """What is attached to one role of a template."""

    logical_id: str
    role_name: str
    role_arn: str
    documents: list[PolicyDocument] = field(default_factory=list)
    #: AWS managed policy ARNs whose documents are not shipped (nothing is known they grant).
    unknown_managed: list[str] = field(default_factory=list)


def as_list(value: Any) -> list[Any]:
    """A policy field that holds one value or a list of them, as a list."""
    if value is None:
        return []
    return value if isinstance(value, list) else [value]


def role_policies(stack: Stack, role_logical_id: str) -> RolePolicies:
    """The policy documents attached to the role `role_logical_id`, every intrinsic resolved."""
    role = stack.resolve(stack.resources[role_logical_id].get("Properties", {}))
    role_name = str(stack.ref(role_logical_id))
    found = RolePolicies(role_logical_id, role_name, stack.get_att(role_logical_id, "Arn"))
    for policy in as_list(role.get("Policies")):
        where = f"Resources.{role_logical_id}.Policies[{policy.get('PolicyName')}]"
        found.documents.append(PolicyDocument(where, policy.get("PolicyDocument") or {}))
    for logical_id in stack.of_type("AWS::IAM::Policy", "AWS::IAM::ManagedPolicy"):
        properties = stack.resolve(stack.resources[logical_id].get("Properties", {}))
        if role_name in as_list(properties.get("Roles")):
            found.documents.append(
                PolicyDocument(f"Resources.{logical_id}", properties.get("PolicyDocument") or {})
            )
    for policy_arn in (str(arn) for arn in as_list(role.get("ManagedPolicyArns"))):
        if stack.owner_of(policy_arn) is not None:
            continue  # a template ManagedPolicy: read above through its Roles
        managed = managed_policies().get(policy_arn)
        if managed is None:
            found.unknown_managed.append(policy_arn)
        else:
            found.documents.append(PolicyDocument(policy_arn, managed.document))
    return found


# What Step Functions' SageMaker `.sync` integrations need ------------------------------------

#: SageMaker jobs whose `.sync` integration Step Functions watches through a managed EventBridge
#: rule: integration -> (IAM action suffix, ARN resource type, name parameter, rule name). From
#: AWS's "IAM policies for Amazon SageMaker" (Step Functions developer guide,
#: https://docs.aws.amazon.com/step-functions/latest/dg/connect-sagemaker.html), which lists
#: Create/Describe/Stop on the job, ListTags, iam:PassRole on the role passed, and
#: events:PutTargets/PutRule/DescribeRule on the rule; `.sync` also tags the job it starts
#: (MANAGED_BY_AWS = STARTED_BY_STEP_FUNCTIONS), hence sagemaker:AddTags.
SAGEMAKER_JOBS: dict[str, tuple[str, str, str, str]] = {
    "createTrainingJob": (
        "TrainingJob",
        "training-job",
        "TrainingJobName",
        "StepFunctionsGetEventsForSageMakerTrainingJobsRule",
    ),
    "createProcessingJob": (
        "ProcessingJob",
        "processing-job",
        "ProcessingJobName",
        "StepFunctionsGetEventsForSageMakerProcessingJobsRule",
    ),
    "createTransformJob": (
        "TransformJob",
        "transform-job",
        "TransformJobName",
        "StepFunctionsGetEventsForSageMakerTransformJobsRule",
    ),
    "createHyperParameterTuningJob": (
        "HyperParameterTuningJob",
        "hyper-parameter-tuning-job",
        "HyperParameterTuningJobName",
        "StepFunctionsGetEventsForSageMakerTuningJobsRule",
    ),
}
#: The job calls a `.sync` integration makes (prefixed to the job noun): it starts the job,
#: describes it when the rule reports its end, and stops it when the execution is stopped.
SYNC_JOB_VERBS = ("Create", "Describe", "Stop")
#: What a `.sync` integration does to its managed rule (on the rule's ARN).
SYNC_RULE_ACTIONS = ("PutTargets", "PutRule", "DescribeRule")
