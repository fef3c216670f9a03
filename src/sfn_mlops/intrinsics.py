"""Resolve a CloudFormation or SAM template's intrinsic functions to stand-in physical values.

One resolver serves both users of template.yaml. Local mode deploys the template with these
values as its physical names (template.py). The offline AWS checks compare ARNs, what a state
machine or a Lambda needs with what a policy grants, and resolve both sides here in the same
made-up stack (account 123456789012, us-east-1, each resource named after its logical id,
buckets prefixed with the stack name), so a policy scoped by `!Ref`/`!GetAtt`/`!Sub` to a
resource resolves to exactly the ARN that the definition, after `DefinitionSubstitutions`,
refers to. `Stack.owner_of` maps such a value back to the resource it stands for.
"""

from __future__ import annotations

import re
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any

ACCOUNT = "123456789012"
REGION = "us-east-1"
PARTITION = "aws"
STACK_NAME = "sfn-mlops"

_SUB_VARIABLE = re.compile(r"\$\{([^}!][^}]*)\}")


class Unresolved(ValueError):
    """The template cannot be resolved here; the message names the function, key or parameter."""


class _NoValue:
    """`AWS::NoValue`: the property or list item is dropped."""


NO_VALUE = _NoValue()


def arn(service: str, resource: str, *, region: str = REGION) -> str:
    return f"arn:{PARTITION}:{service}:{region}:{ACCOUNT}:{resource}"


def _s3(name: str) -> dict[str, str]:
    return {"Ref": name, "Arn": f"arn:{PARTITION}:s3:::{name}", "BucketName": name}


def _sns(name: str) -> dict[str, str]:
    topic = arn("sns", name)
    return {"Ref": topic, "TopicArn": topic, "TopicName": name}


def _lambda(name: str) -> dict[str, str]:
    return {"Ref": name, "Arn": arn("lambda", f"function:{name}")}


def _role(name: str) -> dict[str, str]:
    return {"Ref": name, "Arn": f"arn:{PARTITION}:iam::{ACCOUNT}:role/{name}", "RoleId": name}


def _state_machine(name: str) -> dict[str, str]:
    machine = arn("states", f"stateMachine:{name}")
    return {"Ref": machine, "Arn": machine, "Name": name}


def _rule(name: str) -> dict[str, str]:
    return {"Ref": name, "Arn": arn("events", f"rule/{name}")}


def _queue(name: str) -> dict[str, str]:
    return {
        "Ref": f"https://sqs.{REGION}.amazonaws.com/{ACCOUNT}/{name}",
        "Arn": arn("sqs", name),
        "QueueName": name,
    }


def _model_package_group(name: str) -> dict[str, str]:
    group = arn("sagemaker", f"model-package-group/{name.lower()}")
    return {"Ref": group, "ModelPackageGroupArn": group, "ModelPackageGroupName": name}


def _alarm(name: str) -> dict[str, str]:
    return {"Ref": name, "Arn": arn("cloudwatch", f"alarm:{name}")}


def _log_group(name: str) -> dict[str, str]:
    return {"Ref": name, "Arn": arn("logs", f"log-group:{name}:*")}


def _key(name: str) -> dict[str, str]:
    return {"Ref": name, "Arn": arn("kms", f"key/{name}"), "KeyId": name}


#: Resource type -> the values of its `Ref` and attributes, given its stand-in physical name.
_VALUES: dict[str, Callable[[str], dict[str, str]]] = {
    "AWS::S3::Bucket": _s3,
    "AWS::SNS::Topic": _sns,
    "AWS::Lambda::Function": _lambda,
    "AWS::Serverless::Function": _lambda,
    "AWS::IAM::Role": _role,
    "AWS::StepFunctions::StateMachine": _state_machine,
    "AWS::Serverless::StateMachine": _state_machine,
    "AWS::Events::Rule": _rule,
    "AWS::SQS::Queue": _queue,
    "AWS::SageMaker::ModelPackageGroup": _model_package_group,
    "AWS::CloudWatch::Alarm": _alarm,
    "AWS::Logs::LogGroup": _log_group,
    "AWS::KMS::Key": _key,
}


def is_custom_resource(resource_type: str | None) -> bool:
    return resource_type == "AWS::CloudFormation::CustomResource" or str(resource_type).startswith(
        "Custom::"
    )


def physical_name(logical_id: str, resource_type: str, stack_name: str = STACK_NAME) -> str:
    """Bucket names are lowercase and global (so prefixed); everything else keeps its logical id."""
    if resource_type == "AWS::S3::Bucket":
        return f"{stack_name}-{logical_id}".lower()
    return logical_id


@dataclass(frozen=True)
class Owner:
    logical_id: str
    resource_type: str
    attribute: str


class Stack:
    """A CloudFormation template (plain, after the SAM transform) in the stand-in stack."""

    def __init__(
        self,
        template: dict[str, Any],
        *,
        stack_name: str = STACK_NAME,
        parameters: dict[str, str] | None = None,
    ) -> None:
        self.template = template
        self.stack_name = stack_name
        self.resources: dict[str, dict[str, Any]] = template.get("Resources", {})
        self.parameters = _parameter_values(template.get("Parameters", {}), parameters or {})
        self.conditions: dict[str, bool] = {}
        for name, expression in template.get("Conditions", {}).items():
            self.conditions[name] = bool(self.resolve(expression))
        self._check_rules(template.get("Rules", {}))
        self._provided: dict[str, dict[str, str]] = {}
        self._owners: dict[str, Owner] = {}
        for logical_id, resource in self.resources.items():
            for attribute, value in self._values(logical_id).items():
                self._owners.setdefault(value, Owner(logical_id, resource["Type"], attribute))

    def _check_rules(self, rules: dict[str, Any]) -> None:
        """The template's Rules: an assertion that fails stops the deploy with its description."""
        for name, rule in rules.items():
            if "RuleCondition" in rule and not self.resolve(rule["RuleCondition"]):
                continue
            for assertion in rule.get("Assertions", []):
                if not self.resolve(assertion["Assert"]):
                    description = assertion.get("AssertDescription", "an assertion failed")
                    raise Unresolved(f"template rule {name}: {description}")

    def provide(self, logical_id: str, attributes: dict[str, str]) -> None:
        """The attributes a custom resource answered with (its `Data`), for `!GetAtt`."""
        if not is_custom_resource(self.type_of(logical_id)):
            raise Unresolved(f"{logical_id} is no custom resource of the template")
        self._provided[logical_id] = dict(attributes)
        resource_type = str(self.type_of(logical_id))
        for attribute, value in attributes.items():
            self._owners.setdefault(value, Owner(logical_id, resource_type, attribute))

    def type_of(self, logical_id: str) -> str | None:
        resource = self.resources.get(logical_id)
        return None if resource is None else str(resource.get("Type"))

    def of_type(self, *types: str) -> list[str]:
        return [lid for lid, res in self.resources.items() if res.get("Type") in types]

    def owner_of(self, value: str) -> Owner | None:
        """The resource whose `Ref` or attribute resolves to `value`, if any."""
        return self._owners.get(value)

    def physical_name(self, logical_id: str) -> str:
        if logical_id not in self.resources:
            raise Unresolved(f"no resource named {logical_id}")
        resource = self.resources[logical_id]
        named = (resource.get("Properties") or {}).get("Name")
        if resource.get("Type") == "AWS::Events::Rule" and named is not None:
            # A rule's Name is its physical name (AWS CloudFormation User Guide,
            # AWS::Events::Rule, "Name"; https://docs.aws.amazon.com/AWSCloudFormation/latest/
            # TemplateReference/aws-resource-events-rule.html), so its ARN is rule/<Name>.
            return str(self.resolve(named))
        return physical_name(
            logical_id, str(self.resources[logical_id].get("Type")), self.stack_name
        )

    def _values(self, logical_id: str) -> dict[str, str]:
        kind = str(self.resources[logical_id].get("Type"))
        make = _VALUES.get(kind)
        if make is None:
            return {"Ref": logical_id, **self._provided.get(logical_id, {})}
        return make(self.physical_name(logical_id))

    def ref(self, name: str) -> Any:
        pseudo = {
            "AWS::Region": REGION,
            "AWS::AccountId": ACCOUNT,
            "AWS::Partition": PARTITION,
            "AWS::StackName": self.stack_name,
            "AWS::StackId": arn("cloudformation", f"stack/{self.stack_name}/0"),
            "AWS::URLSuffix": "amazonaws.com",
            "AWS::NoValue": NO_VALUE,
        }
        if name in pseudo:
            return pseudo[name]
        if name in self.parameters:
            return self.parameters[name]
        if name in self.resources:
            return self._values(name)["Ref"]
        logical_id, _, prop = name.partition(".")
        if self.type_of(logical_id) == "AWS::Serverless::Function" and prop in ("Version", "Alias"):
            # SAM's AutoPublishAlias references: the qualified ARN of the version or alias.
            function = self._values(logical_id)["Arn"]
            properties = self.resources[logical_id].get("Properties") or {}
            alias = properties.get("AutoPublishAlias")
            if alias is None:
                raise Unresolved(f"!Ref {name}: {logical_id} has no AutoPublishAlias")
            return f"{function}:$LATEST" if prop == "Version" else f"{function}:{alias}"
        raise Unresolved(f"!Ref {name}: no parameter or resource of that name")

    def get_att(self, logical_id: str, attribute: str) -> str:
        if logical_id not in self.resources:
            raise Unresolved(f"!GetAtt {logical_id}.{attribute}: no resource {logical_id}")
        values = self._values(logical_id)
        if attribute in values:
            return values[attribute]
        return f"{logical_id}.{attribute}"

    def resolve(self, value: Any) -> Any:
        """`value` with every intrinsic function evaluated; `AWS::NoValue` items dropped."""
        if isinstance(value, list):
            items = [self.resolve(item) for item in value]
            return [item for item in items if item is not NO_VALUE]
        if not isinstance(value, dict):
            return value
        if len(value) == 1:
            ((key, argument),) = value.items()
            handler = _INTRINSICS.get(key)
            if handler is not None:
                return handler(self, argument)
        resolved = {key: self.resolve(item) for key, item in value.items()}
        return {key: item for key, item in resolved.items() if item is not NO_VALUE}

    def sub(self, argument: Any) -> str:
        text, variables = (
            (argument, {}) if isinstance(argument, str) else (argument[0], argument[1])
        )
        values = {name: self.resolve(item) for name, item in variables.items()}

        def replace(match: re.Match[str]) -> str:
            name = match.group(1)
            if name in values:
                return str(values[name])
            if "." in name and not name.startswith("AWS::"):
                logical_id, attribute = name.split(".", 1)
                return self.get_att(logical_id, attribute)
            return str(self.ref(name))

        return _SUB_VARIABLE.sub(replace, str(text)).replace("${!", "${")


def _parameter_values(declared: dict[str, Any], given: dict[str, str]) -> dict[str, Any]:
    """Given values over defaults (an empty string where there is neither); unknown names fail."""
    unknown = sorted(set(given) - set(declared))
    if unknown:
        raise Unresolved(f"unknown parameter(s) {unknown}; declared: {sorted(declared)}")
    values = {name: given.get(name, spec.get("Default", "")) for name, spec in declared.items()}
    for name, value in values.items():
        _check_parameter(name, str(value), declared[name])
    return values


def _check_parameter(name: str, value: str, spec: dict[str, Any]) -> None:
    """CloudFormation's own checks of a parameter value (AllowedValues, AllowedPattern)."""
    allowed = spec.get("AllowedValues")
    if allowed is not None and value not in [str(v) for v in allowed]:
        raise Unresolved(
            f"Parameter '{name}' must be one of AllowedValues {allowed}, not {value!r}"
        )
    pattern = spec.get("AllowedPattern")
    if pattern is not None and re.fullmatch(pattern, value) is None:
        hint = spec.get("ConstraintDescription") or f"the pattern {pattern}"
        raise Unresolved(f"Parameter '{name}' failed to satisfy constraint: {hint} ({value!r})")


def _get_att(stack: Stack, argument: Any) -> str:
    logical_id, attribute = argument if isinstance(argument, list) else str(argument).split(".", 1)
    return stack.get_att(str(logical_id), str(stack.resolve(attribute)))


def _if(stack: Stack, argument: Any) -> Any:
    name, when_true, when_false = argument
    if name not in stack.conditions:
        raise Unresolved(f"!If [{name}, ...]: no condition {name}")
    return stack.resolve(when_true if stack.conditions[name] else when_false)


def _find_in_map(stack: Stack, argument: Any) -> Any:
    name, first, second = stack.resolve(argument)
    try:
        return stack.template["Mappings"][name][first][second]
    except KeyError as error:
        raise Unresolved(f"!FindInMap [{name}, {first}, {second}]: not in Mappings") from error


_INTRINSICS: dict[str, Callable[[Stack, Any], Any]] = {
    "Ref": lambda s, a: s.ref(str(a)),
    "Fn::GetAtt": _get_att,
    "Fn::Sub": lambda s, a: s.sub(a),
    "Fn::Join": lambda s, a: str(a[0]).join(str(i) for i in s.resolve(a[1])),
    "Fn::If": _if,
    "Fn::Equals": lambda s, a: str(s.resolve(a[0])) == str(s.resolve(a[1])),
    "Fn::Not": lambda s, a: not s.resolve(a[0]),
    "Fn::And": lambda s, a: all(s.resolve(a)),
    "Fn::Or": lambda s, a: any(s.resolve(a)),
    "Condition": lambda s, a: s.conditions.get(str(a), False),
    "Fn::FindInMap": _find_in_map,
    "Fn::Select": lambda s, a: s.resolve(a[1])[int(s.resolve(a[0]))],
    "Fn::Split": lambda s, a: str(s.resolve(a[1])).split(a[0]),
    "Fn::ImportValue": lambda s, a: f"imported:{s.resolve(a)}",
    "Fn::GetAZs": lambda s, a: [f"{REGION}a", f"{REGION}b"],
    "Fn::Base64": lambda s, a: s.resolve(a),
}
