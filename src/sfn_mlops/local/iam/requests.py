"""What a request needs: the IAM actions and resources AWS authorizes it against.

The action, its resource types, their ARN formats and its dependent actions come from the
Service Authorization Reference (`catalog`); the ARNs are built from the request's parameters
with those formats. What the database does not say is written here by hand, each with the AWS
page it comes from:

- S3 operations whose action has another name (`S3_ACTIONS`);
- iam:PassRole on every role a request passes (`*RoleArn` parameters, at any depth), with
  `iam:PassedToService`;
- cloudwatch:DescribeAlarms on the rollback alarms of a deployment guardrail;
- the request's own condition keys (`cloudwatch:namespace`, `s3:prefix`, `aws:RequestTag/...`).

The same `needs()` decides the calls the service makes itself as a role, from the parameters
AWS's own component sends: SageMaker pulling a job's image from ECR and writing its logs to
CloudWatch Logs (`ecr`, `logs`: no local service answers them, but their actions and ARN formats
are the SAR's all the same), and publishing its metrics (`cloudwatch:PutMetricData`).

`needs()` raises `UnmappedOperation` for an operation (or a dependent action) it cannot map, so
a new operation, or a database that learns a new dependent action, fails the tests until it is
written down.
"""

from __future__ import annotations

import re
from collections.abc import Callable, Mapping
from dataclasses import dataclass
from functools import lru_cache
from typing import Any

from sfn_mlops.local.iam.catalog import ActionSpec, ResourceType, catalog
from sfn_mlops.local.iam.policy import ANY

PARTITION = "aws"
#: botocore service name (as the local server knows it) -> IAM service prefix.
PREFIXES: dict[str, str] = {
    "s3": "s3",
    "sagemaker": "sagemaker",
    "sagemaker-runtime": "sagemaker",
    "stepfunctions": "states",
    "lambda": "lambda",
    "sns": "sns",
    "cloudwatch": "cloudwatch",
    "events": "events",
    # Called only by the service itself, as a role (jobs.aws_calls): not served.
    "logs": "logs",
    "ecr": "ecr",
}
#: The service a role passed through each prefix's API is passed to (`iam:PassedToService`).
PASSED_TO: dict[str, str] = {
    "sagemaker": "sagemaker.amazonaws.com",
    "states": "states.amazonaws.com",
    "events": "events.amazonaws.com",
    "sns": "sns.amazonaws.com",
}


class UnmappedOperation(LookupError):
    """An operation (or a dependent action) whose permissions are not known here."""


@dataclass(frozen=True)
class Need:
    """An action the caller must be allowed on a resource (an ARN; `ANY` for an unknown name,
    `ANY` alone for an action without resource types), why, and the condition keys the
    request itself sets."""

    action: str
    resource: str
    reason: str
    context: tuple[tuple[str, Any], ...] = ()


# Resource ARNs ---------------------------------------------------------------------------------

_VARIABLE = re.compile(r"\$\{([^}]+)\}")


@lru_cache(maxsize=1024)
def _arn_pattern(arn_format: str) -> re.Pattern[str]:
    """A regex matching ARNs of a format (a request may name its resource by ARN)."""
    parts = _VARIABLE.split(arn_format)
    body = "".join(".+" if i % 2 else re.escape(part) for i, part in enumerate(parts))
    return re.compile(body)


def _first(*names: str) -> Callable[[Mapping[str, Any]], str | None]:
    def value(params: Mapping[str, Any]) -> str | None:
        for name in names:
            found = params.get(name)
            if isinstance(found, str) and found:
                return found
        return None

    return value


def _custom_bus(params: Mapping[str, Any]) -> str | None:
    """A rule's event bus, when not the default one (whose rules are `rule/NAME`)."""
    bus = _first("EventBusName")(params)
    if bus is None:
        return None
    name = bus.rsplit("/", 1)[-1] if bus.startswith("arn:") else bus
    return None if name == "default" else name


def _function_name(params: Mapping[str, Any]) -> str | None:
    """Lambda's FunctionName: a name, `name:qualifier`, or a partial ARN `ACCOUNT:function:NAME`
    (a full ARN is matched as an ARN)."""
    name = _first("FunctionName")(params)
    if name is None or name.startswith("arn:"):
        return None
    return name.split(":function:", 1)[-1]


#: ARN format variables whose request parameter has another name: (prefix, variable) -> value.
VARIABLES: dict[tuple[str, str], Callable[[Mapping[str, Any]], str | None]] = {
    ("s3", "BucketName"): _first("Bucket"),
    ("s3", "ObjectName"): _first("Key"),
    ("sagemaker", "DataQualityJobDefinitionName"): _first("JobDefinitionName"),
    ("sagemaker", "ModelQualityJobDefinitionName"): _first("JobDefinitionName"),
    ("states", "StateMachineName"): _first("name"),
    ("sns", "TopicName"): _first("Name"),
    ("events", "RuleName"): _first("Name", "Rule"),
    ("events", "EventBusName"): _custom_bus,
    ("lambda", "FunctionName"): _function_name,
    ("logs", "LogGroupName"): _first("logGroupName"),
    ("logs", "LogStreamName"): _first("logStreamName"),
    ("ecr", "RepositoryName"): _first("repositoryName"),
}


def _variable(
    prefix: str, name: str, params: Mapping[str, Any], known: Mapping[str, str], where: Any
) -> str | None:
    if name in known:
        return known[name]
    if name == "Partition":
        return PARTITION
    if name in ("Region", "Account"):
        return str(where[name])
    special = VARIABLES.get((prefix, name))
    if special is not None:
        value = special(params)
    else:
        found = params.get(name)
        value = found if isinstance(found, str) and found else None
    if value is not None and prefix == "sagemaker":
        value = value.lower()  # SageMaker ARNs carry names in lowercase
    return value


@lru_cache(maxsize=1024)
def _format_parts(arn_format: str) -> tuple[tuple[str, bool], ...]:
    """An ARN format as (text, is a variable) parts, split once."""
    parts = _VARIABLE.split(arn_format)
    return tuple((part, i % 2 == 1) for i, part in enumerate(parts) if part)


def _build(
    prefix: str,
    kind: ResourceType,
    params: Mapping[str, Any],
    known: Mapping[str, str],
    where: Mapping[str, str],
    *,
    any_name: bool = False,
) -> str | None:
    """The ARN of `kind` the request names: a parameter that is such an ARN, or the format
    filled from the parameters; with `any_name`, names it does not give become `ANY`."""
    pattern = _arn_pattern(kind.arn_format)
    for value in params.values():
        if isinstance(value, str) and value.startswith("arn:") and pattern.fullmatch(value):
            return value
    built = []
    for text, variable in _format_parts(kind.arn_format):
        if not variable:
            built.append(text)
            continue
        value = _variable(prefix, text, params, known, where)
        if value is None:
            if not any_name:
                return None
            value = ANY
        built.append(value)
    return "".join(built)


def resources_of(
    spec: ActionSpec,
    params: Mapping[str, Any],
    where: Mapping[str, str],
    known: Mapping[str, str] | None = None,
) -> list[str]:
    """The ARNs the request authorizes `spec` against, from the SAR's resource types.

    Every required type the request names (CreateEndpoint: the endpoint and its config; the
    alternatives of DescribeExecution, execution or express, build one); else the first
    optional type it names; else, where the action has resource types, the first of them with
    `ANY` for the names the request does not give; else `ANY` (no resource-level permissions).
    """
    known = known or {}
    required = [t for t in spec.resource_types if t.required]
    optional = [t for t in spec.resource_types if not t.required]
    found = [a for t in required if (a := _build(spec.prefix, t, params, known, where))]
    if not found:
        found = [a for t in optional if (a := _build(spec.prefix, t, params, known, where))][:1]
    if not found and spec.resource_types:
        kind = (required or optional)[0]
        found = [str(_build(spec.prefix, kind, params, known, where, any_name=True))]
    return list(dict.fromkeys(found)) or [ANY]


# Actions by hand -------------------------------------------------------------------------------

#: S3 operations authorized by an action of another name, and on which resource. From
#: "Required permissions for Amazon S3 API operations" (Amazon S3 User Guide,
#: https://docs.aws.amazon.com/AmazonS3/latest/userguide/using-with-s3-policy-actions.html) and
#: the operations' API pages (HeadObject: "you must have s3:GetObject"; HeadBucket:
#: "s3:ListBucket"; multipart upload: s3:PutObject for CreateMultipartUpload, UploadPart and
#: CompleteMultipartUpload; CopyObject: s3:GetObject on the source, s3:PutObject on the target).
S3_ACTIONS: dict[str, str] = {
    "HeadObject": "GetObject",
    "HeadBucket": "ListBucket",
    "CreateMultipartUpload": "PutObject",
    "UploadPart": "PutObject",
    "CompleteMultipartUpload": "PutObject",
    "CopyObject": "PutObject",
}
#: Step Functions' task-token calls: the SAR names no resource type for them, yet SAM's
#: StepFunctionsCallbackPolicy and the CDK's StateMachine.grantTaskResponse grant them on the
#: state machine's ARN, so Step Functions authorizes them against the state machine that issued
#: the token. The caller passes it as `known={"StateMachineName": ...}`; without it, any state
#: machine of the account.
TASK_TOKEN_ACTIONS = frozenset({"SendTaskSuccess", "SendTaskFailure", "SendTaskHeartbeat"})


@lru_cache(maxsize=1024)
def action_spec(service: str, operation: str) -> ActionSpec:
    """The SAR entry of the action an operation of a botocore service is authorized as."""
    prefix = PREFIXES.get(service)
    if prefix is None:
        raise UnmappedOperation(f"no IAM service prefix known for the service {service!r}")
    if prefix == "s3" and operation in S3_ACTIONS:
        return catalog().action("s3", S3_ACTIONS[operation])
    spec = catalog().for_operation(prefix, operation)
    if spec is None:
        raise UnmappedOperation(
            f"{service}:{operation} is no action of the Service Authorization Reference and "
            "no action there links its API page; map it in sfn_mlops/local/iam/requests.py"
        )
    return spec


# Dependent actions and documented extras -------------------------------------------------------


def _role_arns(value: Any, path: tuple[str, ...], found: list[tuple[str, str]]) -> None:
    if isinstance(value, Mapping):
        for key, item in value.items():
            if isinstance(item, str):
                if key.lower().endswith("rolearn") and item.startswith("arn:"):
                    found.append((".".join((*path, key)), item))
            elif isinstance(item, Mapping | list):
                _role_arns(item, (*path, key), found)
    elif isinstance(value, list):
        for index, item in enumerate(value):
            if isinstance(item, Mapping | list):
                last = f"{path[-1]}[{index}]" if path else f"[{index}]"
                _role_arns(item, (*path[:-1], last), found)


def passed_roles(params: Mapping[str, Any]) -> list[tuple[str, str]]:
    """(where, role ARN) of every role a request passes: any `...RoleArn` member, at any depth
    (a tuning job's TrainingJobDefinition.RoleArn, a monitoring schedule's job definition's,
    EventBridge targets', an SNS topic's `...FeedbackRoleArn` attributes)."""
    found: list[tuple[str, str]] = []
    _role_arns(params, (), found)
    return found


def _pass_role(spec: ActionSpec, params: Mapping[str, Any], primary: list[str]) -> list[Need]:
    """iam:PassRole: "To pass a role to an AWS service, a user must have permissions to pass
    the role" (IAM User Guide, "Grant a user permissions to pass a role to an AWS service",
    https://docs.aws.amazon.com/IAM/latest/UserGuide/id_roles_use_passrole.html)."""
    to = PASSED_TO.get(spec.prefix)
    context = (("iam:PassedToService", to),) if to else ()
    return [
        Need("iam:PassRole", role, f"{spec.action} passes {where}", context)
        for where, role in passed_roles(params)
    ]


def _add_tags(spec: ActionSpec, params: Mapping[str, Any], primary: list[str]) -> list[Need]:
    """sagemaker:AddTags when a create request carries Tags (the SAR's dependent action)."""
    if not params.get("Tags"):
        return []
    why = f"{spec.action} tags what it creates"
    return [Need("sagemaker:AddTags", arn, why) for arn in primary]


def _publish_version(spec: ActionSpec, params: Mapping[str, Any], primary: list[str]) -> list[Need]:
    """states:PublishStateMachineVersion when the request publishes a version (`publish`)."""
    if params.get("publish") is not True:
        return []
    why = f"{spec.action} with publish=true publishes a version"
    return [Need("states:PublishStateMachineVersion", arn, why) for arn in primary]


Rule = Callable[[ActionSpec, Mapping[str, Any], list[str]], list[Need]]
#: Each dependent action the SAR lists for a served operation, and when a request needs it.
DEPENDENT_ACTIONS: dict[str, Rule] = {
    "iam:PassRole": _pass_role,
    "sagemaker:AddTags": _add_tags,
    "states:PublishStateMachineVersion": _publish_version,
}


def _rollback_alarms(
    spec: ActionSpec, params: Mapping[str, Any], where: Mapping[str, str]
) -> list[Need]:
    """cloudwatch:DescribeAlarms on a deployment guardrail's rollback alarms: "Ensure that your
    IAM execution role has permission to perform the cloudwatch:DescribeAlarms action on the
    auto-rollback alarms you specify" (SageMaker Developer Guide, "Auto-Rollback Configuration
    and Monitoring", https://docs.aws.amazon.com/sagemaker/latest/dg/deployment-guardrails-configuration.html)."""
    config = (params.get("DeploymentConfig") or {}).get("AutoRollbackConfiguration") or {}
    alarms = [a.get("AlarmName") for a in config.get("Alarms") or [] if isinstance(a, Mapping)]
    region, account = where["Region"], where["Account"]
    why = f"{spec.action} rolls back on the alarm"
    return [
        Need("cloudwatch:DescribeAlarms", f"arn:aws:cloudwatch:{region}:{account}:alarm:{a}", why)
        for a in alarms
        if isinstance(a, str)
    ]


def _target_roles(
    spec: ActionSpec, params: Mapping[str, Any], where: Mapping[str, str]
) -> list[Need]:
    """EventBridge passes a target's (or a rule's) RoleArn: "you must have iam:PassRole
    permissions" to set it (EventBridge User Guide, "Using identity-based policies for
    EventBridge", https://docs.aws.amazon.com/eventbridge/latest/userguide/eb-use-identity-based.html);
    the SAR lists no dependent action for PutTargets and PutRule."""
    return _pass_role(spec, params, [])


def _copy_source(
    spec: ActionSpec, params: Mapping[str, Any], where: Mapping[str, str]
) -> list[Need]:
    """CopyObject reads its source: s3:GetObject on it (Amazon S3 API Reference, CopyObject,
    "Permissions", https://docs.aws.amazon.com/AmazonS3/latest/API/API_CopyObject.html)."""
    source = str(params.get("CopySource") or "").lstrip("/").split("?", 1)[0]
    bucket, _, key = source.partition("/")
    if not bucket or not key:
        return []
    return [Need("s3:GetObject", f"arn:aws:s3:::{bucket}/{key}", "s3:CopyObject reads its source")]


Extra = Callable[[ActionSpec, Mapping[str, Any], Mapping[str, str]], list[Need]]
#: What AWS requires of an operation beyond its action and the SAR's dependent actions.
EXTRAS: dict[tuple[str, str], Extra] = {
    ("sagemaker", "CreateEndpoint"): _rollback_alarms,
    ("sagemaker", "UpdateEndpoint"): _rollback_alarms,
    ("events", "PutTargets"): _target_roles,
    ("events", "PutRule"): _target_roles,
    ("s3", "CopyObject"): _copy_source,
}


# The request's own condition keys ------------------------------------------------------------


def _tags(params: Mapping[str, Any]) -> list[tuple[str, str]]:
    tags = params.get("Tags") or params.get("tags") or []
    if isinstance(tags, Mapping):  # Lambda's and SageMaker runtime's maps
        return [(str(k), str(v)) for k, v in tags.items()]
    pairs = []
    for tag in tags if isinstance(tags, list) else []:
        if isinstance(tag, Mapping):
            key = tag.get("Key", tag.get("key"))
            if key is not None:
                pairs.append((str(key), str(tag.get("Value", tag.get("value", "")))))
    return pairs


#: Service condition keys read from a request parameter: (action) -> [(key, parameter)]. From
#: each service's "Condition keys" table in the SAR (cloudwatch:namespace is PutMetricData's
#: Namespace; s3:prefix, s3:delimiter and s3:max-keys are ListBucket's Prefix, Delimiter, MaxKeys).
REQUEST_KEYS: dict[str, tuple[tuple[str, str], ...]] = {
    "cloudwatch:PutMetricData": (("cloudwatch:namespace", "Namespace"),),
    "s3:ListBucket": (
        ("s3:prefix", "Prefix"),
        ("s3:delimiter", "Delimiter"),
        ("s3:max-keys", "MaxKeys"),
    ),
}


def request_keys(action: str, params: Mapping[str, Any]) -> tuple[tuple[str, Any], ...]:
    """The condition keys a request sets by its own content."""
    found: list[tuple[str, Any]] = [
        (key, str(params[name])) for key, name in REQUEST_KEYS.get(action, ()) if name in params
    ]
    tags = _tags(params)
    if tags:
        found.append(("aws:TagKeys", tuple(k for k, _ in tags)))
        found += [(f"aws:RequestTag/{k}", v) for k, v in tags]
    return tuple(found)


# needs() ---------------------------------------------------------------------------------------


def _list_known(service: str, operation: str, params: Mapping[str, Any]) -> list[dict[str, str]]:
    """Requests that name several resources of one type: one `known` mapping per resource."""
    if service == "cloudwatch" and "AlarmNames" in params:
        return [{"AlarmName": str(n)} for n in params.get("AlarmNames") or []] or [{}]
    if service == "cloudwatch" and "AlarmNamePrefix" in params:
        return [{"AlarmName": f"{params['AlarmNamePrefix']}{ANY}"}]
    if (service, operation) == ("events", "PutEvents"):
        buses = [str(e.get("EventBusName") or "default") for e in params.get("Entries") or []]
        names = [b.rsplit("/", 1)[-1] if b.startswith("arn:") else b for b in buses]
        return [{"EventBusName": n} for n in dict.fromkeys(names)] or [{}]
    return [{}]


def needs(
    service: str,
    operation: str,
    params: Mapping[str, Any],
    region: str,
    account: str,
    *,
    known: Mapping[str, str] | None = None,
) -> list[Need]:
    """What `service:operation` with `params` needs, as AWS authorizes it.

    `service` is the botocore service name the local server uses (`stepfunctions`, `events`,
    `sagemaker-runtime`, ...). `known` gives ARN-format variables the request does not carry
    (e.g. `{"StateMachineName": ...}` for a task token's state machine)."""
    spec = action_spec(service, operation)
    where = {"Region": region, "Account": account}
    extra_known = dict(known or {})
    if spec.prefix == "states" and spec.name in TASK_TOKEN_ACTIONS:
        spec = _with_state_machine(spec)
    primary: list[str] = []
    for names in _list_known(service, operation, params):
        primary += resources_of(spec, params, where, {**extra_known, **names})
    primary = list(dict.fromkeys(primary))
    why = f"{service}:{operation}"
    keys = request_keys(spec.action, params)
    found = [Need(spec.action, arn, why, keys) for arn in primary]
    for dependent in spec.dependent_actions:
        rule = DEPENDENT_ACTIONS.get(dependent)
        if rule is None:
            raise UnmappedOperation(
                f"{spec.action} has the dependent action {dependent}, which "
                "sfn_mlops/local/iam/requests.py (DEPENDENT_ACTIONS) does not know"
            )
        found += rule(spec, params, primary)
    extra = EXTRAS.get((spec.prefix, operation))
    if extra is not None:
        found += extra(spec, params, where)
    return list(dict.fromkeys(found))


@lru_cache(maxsize=8)
def _with_state_machine(spec: ActionSpec) -> ActionSpec:
    machine = catalog().action("states", "StartExecution").resource_types
    return ActionSpec(spec.prefix, spec.name, machine, spec.dependent_actions, spec.api_page)
