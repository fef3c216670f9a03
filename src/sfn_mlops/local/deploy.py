"""``sam deploy`` for the local cloud: the resources of template.yaml, made through boto3.

Idempotent and quick when nothing changed, so every ``sfn-mlops run`` deploys first.

Custom resources: ``Custom::JobCode`` is the one local mode knows. In AWS, CloudFormation invokes
its function, which copies the job code bundle from its package into the artifact bucket. Here
deploy runs that function's own plain module (``job_code.publish``, loaded from the function's
``CodeUri``) on the bundle of ``containers/`` against the local S3, so ``!GetAtt JobCode.CodeUri``
resolves to the same ``s3://<bucket>/code/<hash>`` as in AWS. It runs as the function runs: its
S3 client signs with the keys of the function's execution role, a session named after the
function, as the local Lambda runtime gives them, so the role's policies decide its calls. A
refusal fails the deploy as CloudFormation reports a custom resource's FAILED response
("Received response status [FAILED] from custom resource. Message returned: ...", the Reason
the function's ``cfn_response`` sends; AWS CloudFormation User Guide, "Custom resources",
https://docs.aws.amazon.com/AWSCloudFormation/latest/UserGuide/template-custom-resources.html).
The function is registered like every other (its handler is never invoked locally: it would
answer a CloudFormation ResponseURL).

State machines: Step Functions refuses one whose role may not make the managed EventBridge rules
of its ``.sync`` integrations (the local service decides it at CreateStateMachine and
UpdateStateMachine); deploy reports that refusal as CloudFormation reports the resource's
failure.

Parameters: the template's defaults, overridden by ``parameter_overrides`` in samconfig.toml
(``[default.deploy.parameters]``), checked as CloudFormation checks them (AllowedValues,
AllowedPattern, the template's Rules).
"""

from __future__ import annotations

import hashlib
import importlib.util
import json
import shlex
import sys
from dataclasses import dataclass
from pathlib import Path
from types import ModuleType
from typing import Any

import boto3
import tomllib

from sfn_mlops.local.services.lambda_ import FUNCTIONS
from sfn_mlops.packaging import build_bundle
from sfn_mlops.template import (
    CustomResourceSpec,
    FunctionSpec,
    LocalStack,
    StateMachineSpec,
    TemplateError,
    substitute,
)

ARTIFACT_BUCKET = "ArtifactBucket"
PIPELINE = "TrainingPipeline"
BATCH = "BatchInference"
JOB_CODE_TYPE = "Custom::JobCode"
#: The plain module, in the job code function's CodeUri, whose ``publish`` copies the bundle.
JOB_CODE_MODULE = "job_code.py"


@dataclass(frozen=True)
class Deployment:
    stack: LocalStack
    bucket: str
    state_machine_arn: str
    code_prefix: str
    state_machines: dict[str, str]  # logical id -> ARN (the pipeline and the batch machine)


def samconfig_parameters(project: Path) -> dict[str, str]:
    """``sam deploy``'s ``parameter_overrides`` in samconfig.toml: local deploy takes the same
    values, so turning a schedule on there turns it on in both modes."""
    path = project / "samconfig.toml"
    if not path.is_file():
        return {}
    try:
        config = tomllib.loads(path.read_text(encoding="utf-8"))
    except tomllib.TOMLDecodeError as err:
        raise TemplateError(f"{path}: not TOML: {err}") from err
    overrides = config.get("default", {}).get("deploy", {}).get("parameters", {})
    raw = overrides.get("parameter_overrides", [])
    pairs = shlex.split(raw) if isinstance(raw, str) else [str(item) for item in raw]
    parameters = {}
    for pair in pairs:
        key, sep, value = pair.partition("=")
        if not sep or not key:
            raise TemplateError(
                f"{path}: parameter_overrides entry {pair!r} is not Key=Value (quote a value "
                "with spaces, as sam deploy needs too: BatchSchedule='cron(0 2 * * ? *)')"
            )
        parameters[key] = value
    return parameters


def deploy(cloud: Any, project: Path, stack_name: str = "sfn-mlops") -> Deployment:
    parameters = samconfig_parameters(project)
    stack = LocalStack(project / "template.yaml", stack_name=stack_name, parameters=parameters)
    _deploy_policies(cloud, stack, parameters)
    bucket = stack.physical_name(ARTIFACT_BUCKET)
    for logical_id in stack.of_type("AWS::S3::Bucket"):
        cloud.objects.create_bucket(stack.physical_name(logical_id))
    sns = boto3.client("sns")
    for logical_id in stack.of_type("AWS::SNS::Topic"):
        sns.create_topic(Name=stack.physical_name(logical_id))
    functions = stack.functions()
    for function in functions:
        _register_function(cloud, function)
    code_prefix = ""
    for resource in stack.custom_resources():
        data = _job_code(cloud, stack, resource, functions, project)
        stack.provide(resource.logical_id, data)
        code_prefix = data["CodePrefix"]
    machines = stack.state_machines()
    for machine in machines:
        _deploy_state_machine(stack, machine)
    _deploy_alarms(stack)
    _deploy_event_rules(cloud, stack)
    return Deployment(
        stack=stack,
        bucket=bucket,
        state_machine_arn=stack.ref(PIPELINE),
        code_prefix=code_prefix,
        state_machines={machine.logical_id: machine.arn for machine in machines},
    )


def _deploy_policies(cloud: Any, stack: LocalStack, parameters: dict[str, str]) -> None:
    """The template's IAM as SAM makes it (roles for the functions' Policies, SAM's policy
    templates), compiled for local enforcement; a policy IAM would refuse fails the deploy. A
    deploy of the same template and parameters (every ``sfn-mlops run``) skips the SAM
    translation (0.1 s; 1 s the first time in a process)."""
    from sfn_mlops.aws.translate import TranslationError, translate
    from sfn_mlops.local.iam import PolicyError

    text = stack.path.read_bytes() + json.dumps(parameters, sort_keys=True).encode()
    digest = hashlib.sha256(text).hexdigest()
    if cloud.authorization.digest == digest:
        return
    try:
        cloud.authorization.deployed(translate(stack.template, stack.root), parameters, digest)
    except (TranslationError, PolicyError) as err:
        raise TemplateError(f"{stack.path}: {err}") from err


def _job_code(
    cloud: Any,
    stack: LocalStack,
    resource: CustomResourceSpec,
    functions: list[FunctionSpec],
    project: Path,
) -> dict[str, str]:
    """What the Custom::JobCode resource answers in AWS, made by the same code as the same
    role."""
    where = f"{stack.path}: Resources.{resource.logical_id}"
    if resource.resource_type != JOB_CODE_TYPE:
        raise TemplateError(
            f"{where}: local mode does not emulate custom resources of type "
            f"{resource.resource_type} (it knows {JOB_CODE_TYPE})"
        )
    function = next((f for f in functions if f.arn == resource.service_token), None)
    if function is None:
        raise TemplateError(
            f"{where}: its ServiceToken {resource.service_token} is no function of the template"
        )
    module = _load(function.code_dir / JOB_CODE_MODULE)
    bundle = build_bundle(project / "containers")
    as_function = cloud.credentials.for_role(function.role_arn, function.name).client_kwargs()
    try:
        published = module.publish(
            boto3.client("s3", **as_function), str(resource.properties["BucketName"]), bundle.files
        )
    except module.CodeBucketError as error:  # what cfn_response answers: FAILED, this Reason
        raise TemplateError(
            f"{where}: CREATE_FAILED: Received response status [FAILED] from custom resource. "
            f"Message returned: {type(error).__name__}: {error}"
        ) from error
    return dict(published.data)


def _load(path: Path) -> ModuleType:
    """The module at ``path``, imported under a name of its own (Lambda folders repeat names)."""
    if not path.is_file():
        raise TemplateError(f"{path}: the job code function has no {JOB_CODE_MODULE}")
    name = f"_sfn_mlops_local_{hashlib.sha256(str(path).encode()).hexdigest()[:12]}"
    spec = importlib.util.spec_from_file_location(name, path)
    assert spec is not None and spec.loader is not None
    module = importlib.util.module_from_spec(spec)
    sys.modules[name] = module
    spec.loader.exec_module(module)
    return module


def _register_function(cloud: Any, function: FunctionSpec) -> None:
    cloud.metadata.put(
        FUNCTIONS,
        function.name,
        {
            "FunctionName": function.name,
            "FunctionArn": function.arn,
            "Handler": function.handler,
            "Runtime": function.runtime,
            "CodeDir": str(function.code_dir),
            "Role": function.role_arn,
            "Timeout": function.timeout,
            "MemorySize": function.memory_size,
            "Environment": {"Variables": function.environment},
        },
    )


def _deploy_alarms(stack: LocalStack) -> None:
    """Each AWS::CloudWatch::Alarm, made or updated (PutMetricAlarm keeps an alarm's state)."""
    alarms = stack.alarms()
    if not alarms:
        return
    cloudwatch = boto3.client("cloudwatch")
    for alarm in alarms:
        cloudwatch.put_metric_alarm(**alarm)


#: The template's definition of each rule at its last deploy (a digest). CloudFormation updates
#: a resource only when its definition in the template changed ("CloudFormation updates
#: resources based on differences between what you submit and the stack's current template",
#: AWS CloudFormation User Guide, "Update behaviors of stack resources",
#: https://docs.aws.amazon.com/AWSCloudFormation/latest/UserGuide/using-cfn-updating-stacks-update-behaviors.html),
#: so a rule's state changed since by EnableRule/DisableRule (the A/B tests' schedule, which
#: DeployModel turns on) outlives a deploy of the same template, as in AWS.
DEPLOYED_RULES = "deployed_rules"


def _deploy_event_rules(cloud: Any, stack: LocalStack) -> None:
    """The rules SAM makes of the functions' and state machines' Events, each with its
    resource as the target; a rule the template defines as at the last deploy is left as it
    is."""
    rules = stack.event_rules()
    if not rules:
        return
    events = boto3.client("events")
    for rule in rules:
        source = (
            {"ScheduleExpression": rule.schedule}
            if rule.schedule
            else {"EventPattern": json.dumps(rule.pattern)}
        )
        request = {"Name": rule.name, "State": "ENABLED" if rule.enabled else "DISABLED"}
        target: dict[str, Any] = {"Id": rule.target_id, "Arn": rule.target_arn}
        if rule.input is not None:
            target["Input"] = rule.input
        if rule.input_path is not None:
            target["InputPath"] = rule.input_path
        if rule.role_arn is not None:
            target["RoleArn"] = rule.role_arn
        digest = hashlib.sha256(
            json.dumps([request, source, target], sort_keys=True).encode()
        ).hexdigest()
        known = cloud.metadata.get(DEPLOYED_RULES, rule.name)
        if known and known.get("digest") == digest and _rule_exists(events, rule.name):
            continue
        events.put_rule(**request, **source)
        events.put_targets(Rule=rule.name, Targets=[target])
        cloud.metadata.put(DEPLOYED_RULES, rule.name, {"digest": digest})


def _rule_exists(events: Any, name: str) -> bool:
    try:
        events.describe_rule(Name=name)
    except events.exceptions.ResourceNotFoundException:
        return False
    return True


def _deploy_state_machine(stack: LocalStack, machine: StateMachineSpec) -> None:
    definition = substitute(
        machine.definition_path.read_text(encoding="utf-8"),
        machine.substitutions,
        f"{stack.path}: Resources.{machine.logical_id}",
    )
    sfn = boto3.client("stepfunctions")
    try:
        current = sfn.describe_state_machine(stateMachineArn=machine.arn)
    except sfn.exceptions.StateMachineDoesNotExist:
        current = None
    try:
        if current is None:
            sfn.create_state_machine(
                name=machine.name, definition=definition, roleArn=machine.role_arn
            )
        elif current["definition"] != definition or current["roleArn"] != machine.role_arn:
            sfn.update_state_machine(
                stateMachineArn=machine.arn, definition=definition, roleArn=machine.role_arn
            )
    except sfn.exceptions.ClientError as error:
        if error.response["Error"]["Code"] != "AccessDeniedException":
            raise
        verb = "CREATE" if current is None else "UPDATE"
        raise TemplateError(
            f"{stack.path}: Resources.{machine.logical_id}: {verb}_FAILED: "
            f"{error.response['Error']['Message']} (Service: AWSStepFunctions; Status Code: 400; "
            "Error Code: AccessDeniedException)"
        ) from error
