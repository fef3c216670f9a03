"""IAM as the checks need it: who is granted what, and what a state machine Task needs.

Policies are read from the plain CloudFormation template (after the SAM transform, so SAM policy
templates such as `S3ReadPolicy` are already statements) with every intrinsic function resolved
in the stand-in stack of `sfn_mlops.intrinsics`. Matching follows IAM: `*` and `?` wildcards,
actions case-insensitive, resources case-sensitive; an explicit unconditional Deny wins.
Conditions on an Allow are taken as met (the checks ask "is it granted at all, on the right
resource").

A needed resource may itself contain `*` where the name is only known at run time (a job named
after the execution). It counts as covered only by a grant that covers *every* name there, so
`training-job/*` covers `training-job/*`, but `training-job/abc*` does not.
"""

from __future__ import annotations

import re
from dataclasses import dataclass, field
from functools import lru_cache
from typing import Any

from sfn_mlops.intrinsics import PARTITION, Stack, arn
from sfn_mlops.policies import (
    SAGEMAKER_JOBS,
    SYNC_JOB_VERBS,
    SYNC_RULE_ACTIONS,
    as_list,
    role_policies,
)

#: A stand-in for "any name" in a needed resource; no grant narrower than `*` matches it.
ANY = "\u2217any\u2217"

@dataclass(frozen=True)
class Statement:
    """One policy statement, resolved; `where` names the policy and statement for messages."""

    effect: str
    actions: tuple[str, ...]
    resources: tuple[str, ...]
    has_condition: bool
    where: str
    sid: str | None = None
    not_action: bool = False
    not_resource: bool = False


@dataclass(frozen=True)
class Need:
    """An action a principal needs on a resource (`None`: on any resource), and why."""

    action: str
    resource: str | None
    reason: str


@dataclass
class Principal:
    role: str
    statements: list[Statement] = field(default_factory=list)
    unknown_managed: list[str] = field(default_factory=list)



def read_statements(document: Any, where: str) -> list[Statement]:
    """The statements of a resolved policy document."""
    statements = []
    body = document.get("Statement", []) if isinstance(document, dict) else []
    for index, raw in enumerate(as_list(body)):
        sid = raw.get("Sid")
        statements.append(
            Statement(
                effect=str(raw.get("Effect", "")),
                actions=tuple(str(a) for a in as_list(raw.get("Action", raw.get("NotAction")))),
                resources=tuple(
                    str(r) for r in as_list(raw.get("Resource", raw.get("NotResource")))
                ),
                has_condition=bool(raw.get("Condition")),
                where=f"{where}.Statement[{sid or index}]",
                sid=sid,
                not_action="NotAction" in raw,
                not_resource="NotResource" in raw,
            )
        )
    return statements


def identity_policies(stack: Stack) -> list[tuple[str, list[Statement]]]:
    """Every identity policy of the template: (where, statements), roles' inline ones included."""
    found = []
    for logical_id in stack.of_type("AWS::IAM::Role"):
        properties = stack.resolve(stack.resources[logical_id].get("Properties", {}))
        for policy in as_list(properties.get("Policies")):
            where = f"Resources.{logical_id}.Policies[{policy.get('PolicyName')}]"
            found.append((where, read_statements(policy.get("PolicyDocument"), where)))
    for logical_id in stack.of_type("AWS::IAM::Policy", "AWS::IAM::ManagedPolicy"):
        properties = stack.resolve(stack.resources[logical_id].get("Properties", {}))
        where = f"Resources.{logical_id}"
        found.append((where, read_statements(properties.get("PolicyDocument"), where)))
    return found


def principal(stack: Stack, role_logical_id: str) -> Principal:
    """What the role `role_logical_id` is granted, from every policy attached to it."""
    attached = role_policies(stack, role_logical_id)
    result = Principal(role=role_logical_id, unknown_managed=list(attached.unknown_managed))
    for policy in attached.documents:
        result.statements += read_statements(policy.document, policy.where)
    return result


@lru_cache(maxsize=4096)
def _pattern(glob: str, case_sensitive: bool) -> re.Pattern[str]:
    body = "".join(
        ".*" if char == "*" else "." if char == "?" else re.escape(char) for char in glob
    )
    return re.compile(f"^{body}$", 0 if case_sensitive else re.IGNORECASE | re.DOTALL)


def glob_covers(granted: str, needed: str, *, case_sensitive: bool = True) -> bool:
    """Whether the IAM pattern `granted` covers `needed` (whose `*` means any name)."""
    return bool(_pattern(granted, case_sensitive).match(needed.replace("*", ANY)))


def _statement_covers(statement: Statement, need: Need) -> bool:
    action_match = any(glob_covers(a, need.action, case_sensitive=False) for a in statement.actions)
    if statement.not_action:
        action_match = not action_match
    if not action_match:
        return False
    if need.resource is None:
        return True
    resource_match = any(glob_covers(r, need.resource) for r in statement.resources)
    return not resource_match if statement.not_resource else resource_match


def is_granted(principal: Principal, need: Need) -> bool:
    """An Allow covers the need and no unconditional Deny takes it away."""
    allowed = any(s.effect == "Allow" and _statement_covers(s, need) for s in principal.statements)
    denied = any(
        s.effect == "Deny" and not s.has_condition and _statement_covers(s, need)
        for s in principal.statements
    )
    return allowed and not denied


# What state machine Tasks need -----------------------------------------------------------------

#: Request-response SageMaker integrations: integration -> [(action, ARN type, name parameter)].
SAGEMAKER_CALLS: dict[str, list[tuple[str, str, str]]] = {
    "createModel": [("CreateModel", "model", "ModelName")],
    "createEndpointConfig": [("CreateEndpointConfig", "endpoint-config", "EndpointConfigName")],
    "createEndpoint": [
        ("CreateEndpoint", "endpoint", "EndpointName"),
        ("CreateEndpoint", "endpoint-config", "EndpointConfigName"),
    ],
    "updateEndpoint": [
        ("UpdateEndpoint", "endpoint", "EndpointName"),
        ("UpdateEndpoint", "endpoint-config", "EndpointConfigName"),
    ],
}
#: Parameters through which a SageMaker integration passes a role to SageMaker.
ROLE_PARAMETERS = ("RoleArn", "ExecutionRoleArn")

_INTEGRATION = re.compile(
    r"^arn:[\w-]+:states:::(?P<service>[\w-]+):(?P<action>[^.]+)(?P<suffix>\..+)?$"
)


class UnknownIntegration(ValueError):
    """A Task resource this module cannot say the permissions of."""


def _param(parameters: dict[str, Any], name: str) -> str:
    """A parameter's literal value; a dynamic one (`Name.$`) or a missing one is any name."""
    value = parameters.get(name)
    return str(value) if isinstance(value, str) and value else "*"


def _sagemaker_arn(resource_type: str, name: str) -> str:
    # SageMaker ARNs carry names in lowercase.
    return arn("sagemaker", f"{resource_type}/{name.lower() if name != '*' else '*'}")


def _sagemaker_needs(action: str, suffix: str, parameters: dict[str, Any]) -> list[Need]:
    needs: list[Need] = []
    if action in SAGEMAKER_JOBS:
        noun, kind, name_param, rule = SAGEMAKER_JOBS[action]
        job = _sagemaker_arn(kind, _param(parameters, name_param))
        verbs = SYNC_JOB_VERBS if suffix == ".sync" else ("Create",)
        needs += [
            Need(f"sagemaker:{verb}{noun}", job, f"sagemaker:{action}{suffix}") for verb in verbs
        ]
        needs.append(Need("sagemaker:AddTags", job, f"sagemaker:{action}{suffix} tags the job"))
        needs.append(Need("sagemaker:ListTags", job, f"sagemaker:{action}{suffix}"))
        if suffix == ".sync":
            rule_arn = arn("events", f"rule/{rule}")
            why = f"sagemaker:{action}.sync learns of the job's end through the rule {rule}"
            needs += [
                Need(f"events:{verb}", rule_arn, why)
                for verb in SYNC_RULE_ACTIONS
            ]
    elif action in SAGEMAKER_CALLS and not suffix:
        for verb, kind, name_param in SAGEMAKER_CALLS[action]:
            needs.append(
                Need(
                    f"sagemaker:{verb}",
                    _sagemaker_arn(kind, _param(parameters, name_param)),
                    f"sagemaker:{action}",
                )
            )
    else:
        raise UnknownIntegration(f"sagemaker:{action}{suffix}")
    # A tuning job passes its training jobs' role, in its TrainingJobDefinition.
    for where in (parameters, parameters.get("TrainingJobDefinition") or {}):
        for role_param in ROLE_PARAMETERS:
            if role_param in where or f"{role_param}.$" in where:
                why = f"sagemaker:{action}{suffix} passes {role_param} to SageMaker"
                needs.append(Need("iam:PassRole", _param(where, role_param), why))
    return needs


#: SageMaker Clarify's processing image, by repository name (any account, region and tag).
CLARIFY_REPOSITORY = "/sagemaker-clarify-processing:"
#: What the role a Clarify processing job runs as needs beyond any processing job's: Clarify
#: reads the model its analysis config names and scores it through a shadow endpoint it
#: creates from that model and deletes when it is done (SageMaker Developer Guide, "Clarify
#: processing jobs": the execution role's permissions). Clarify names the endpoint
#: sm-clarify-<model>-<time>-<hex> and its config sm-clarify-config-<time>-<hex>, the names
#: AWS's mlops-workload-orchestrator grants (iam_policies.py).
CLARIFY_SHADOW_ENDPOINT_ACTIONS = (
    ("CreateEndpointConfig", "endpoint-config"),
    ("DescribeEndpointConfig", "endpoint-config"),
    ("DeleteEndpointConfig", "endpoint-config"),
    ("CreateEndpoint", "endpoint"),
    ("DescribeEndpoint", "endpoint"),
    ("DeleteEndpoint", "endpoint"),
    ("InvokeEndpoint", "endpoint"),
    ("AddTags", "endpoint"),
    ("AddTags", "endpoint-config"),
)
#: The names Clarify gives its shadow endpoint and endpoint config, as IAM resource globs.
CLARIFY_SHADOW_NAMES = {"endpoint": "sm-clarify-*", "endpoint-config": "sm-clarify-config-*"}


def job_role_needs(resource: str, parameters: dict[str, Any]) -> list[Need]:
    """What the role passed to a SageMaker job (its `RoleArn`) needs because of the job's image.

    Today: a Clarify processing job's shadow endpoint and its model. Other jobs: nothing beyond
    what the template grants any job (not checked here).
    """
    match = _INTEGRATION.match(resource)
    if match is None or (match["service"], match["action"]) != ("sagemaker", "createProcessingJob"):
        return []
    image = str((parameters.get("AppSpecification") or {}).get("ImageUri", ""))
    if CLARIFY_REPOSITORY not in image:
        return []
    why = "a Clarify processing job scores the model through a shadow endpoint it creates"
    needs = [
        Need(f"sagemaker:{verb}", _sagemaker_arn(kind, CLARIFY_SHADOW_NAMES[kind]), why)
        for verb, kind in CLARIFY_SHADOW_ENDPOINT_ACTIONS
    ]
    needs.append(
        Need("sagemaker:DescribeModel", _sagemaker_arn("model", "*"), "Clarify reads its model")
    )
    return needs


def function_arn(name_or_arn: str) -> str:
    """A Lambda FunctionName parameter (name, partial or full ARN, maybe qualified) -> its ARN."""
    if name_or_arn == "*":
        return arn("lambda", "function:*")
    if name_or_arn.startswith("arn:"):
        parts = name_or_arn.split(":")
        return ":".join(parts[:7])  # drop a version or alias qualifier
    name = name_or_arn.split(":")[0]
    return arn("lambda", f"function:{name}")


def task_needs(resource: str, parameters: dict[str, Any]) -> list[Need]:
    """What the state machine's role needs to run a Task with this `Resource` and `Parameters`.

    Raises `UnknownIntegration` for an integration not described here, so a new one fails the
    gate until its permissions are written down.
    """
    if resource.startswith(f"arn:{PARTITION}:lambda:"):
        return [Need("lambda:InvokeFunction", function_arn(resource), "a Lambda Task resource")]
    match = _INTEGRATION.match(resource)
    if match is None:
        raise UnknownIntegration(resource)
    service, action, suffix = match["service"], match["action"], match["suffix"] or ""
    if service == "sagemaker":
        return _sagemaker_needs(action, suffix, parameters)
    if service == "lambda" and action == "invoke" and suffix in ("", ".waitForTaskToken"):
        target = function_arn(_param(parameters, "FunctionName"))
        return [Need("lambda:InvokeFunction", target, f"lambda:invoke{suffix}")]
    if service == "sns" and action == "publish" and suffix in ("", ".waitForTaskToken"):
        topic = (
            _param(parameters, "TopicArn")
            if "TargetArn" not in parameters
            else _param(parameters, "TargetArn")
        )
        return [
            Need("sns:Publish", topic if topic != "*" else arn("sns", "*"), f"sns:publish{suffix}")
        ]
    if service == "aws-sdk" and not suffix:
        sdk_service, _, sdk_action = action.partition(":")
        if not sdk_action:
            raise UnknownIntegration(resource)
        iam_action = f"{sdk_service}:{sdk_action[:1].upper()}{sdk_action[1:]}"
        return [Need(iam_action, None, f"aws-sdk:{sdk_service}:{sdk_action}")]
    raise UnknownIntegration(resource)


#: Actions for which IAM accepts only `Resource: "*"` (or that have no resource-level
#: permissions): the only ones a `*` resource is allowed for, each with the reason.
UNSCOPED_ACTIONS: dict[str, str] = {
    "cloudwatch:PutMetricData": "CloudWatch metrics have no resource-level permissions; "
    "scope with the cloudwatch:namespace condition",
    "cloudwatch:GetMetricStatistics": "CloudWatch metric reads have no resource-level "
    "permissions (Service Authorization Reference, Amazon CloudWatch)",
    "ecr:GetAuthorizationToken": "the token is for the registry, not a repository",
    "sagemaker:ListTags": "AWS's policy for SageMaker integrations grants it on *",
    "xray:PutTraceSegments": "X-Ray has no resource-level permissions",
    "xray:PutTelemetryRecords": "X-Ray has no resource-level permissions",
    "xray:GetSamplingRules": "X-Ray has no resource-level permissions",
    "xray:GetSamplingTargets": "X-Ray has no resource-level permissions",
    "xray:GetSamplingStatisticSummaries": "X-Ray has no resource-level permissions",
    "logs:CreateLogDelivery": "CloudWatch Logs log delivery has no resource-level permissions",
    "logs:GetLogDelivery": "CloudWatch Logs log delivery has no resource-level permissions",
    "logs:UpdateLogDelivery": "CloudWatch Logs log delivery has no resource-level permissions",
    "logs:DeleteLogDelivery": "CloudWatch Logs log delivery has no resource-level permissions",
    "logs:ListLogDeliveries": "CloudWatch Logs log delivery has no resource-level permissions",
    "logs:PutResourcePolicy": "CloudWatch Logs resource policies have no resource ARN",
    "logs:DescribeResourcePolicies": "CloudWatch Logs resource policies have no resource ARN",
    "logs:DescribeLogGroups": "listing log groups has no resource-level permissions",
}
