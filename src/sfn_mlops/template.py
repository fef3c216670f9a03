"""Read template.yaml, the one wiring list, and resolve it for the local cloud.

Local mode does not keep a second list of functions, environments, timeouts or definition
substitutions: it resolves the SAM template's intrinsic functions with local physical names.
"""

from __future__ import annotations

import re
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import yaml

from sfn_mlops import settings
from sfn_mlops.intrinsics import Stack, Unresolved, is_custom_resource

_SHORT_TAGS = {
    "Ref": "Ref",
    "Condition": "Condition",
    "GetAtt": "Fn::GetAtt",
    "Sub": "Fn::Sub",
    "Join": "Fn::Join",
    "If": "Fn::If",
    "Equals": "Fn::Equals",
    "Not": "Fn::Not",
    "And": "Fn::And",
    "Or": "Fn::Or",
    "FindInMap": "Fn::FindInMap",
    "Select": "Fn::Select",
    "Split": "Fn::Split",
    "Base64": "Fn::Base64",
    "GetAZs": "Fn::GetAZs",
    "ImportValue": "Fn::ImportValue",
}
_RULE_EVENT_TYPES = ("EventBridgeRule", "CloudWatchEvent", "Schedule")
_RULE_EVENT_PROPERTIES = {
    "Pattern", "Schedule", "Input", "InputPath", "State", "Enabled", "Name", "RuleName",
    "Target", "Description",
}  # fmt: skip
_SUB_VARIABLE = re.compile(r"\$\{([^}!][^}]*)\}")
# SAM names a function's or state machine's generated role after it; locally each role signs
# its own calls with keys of its own (sfn_mlops.local.credentials).
_IAM_ROLE_PREFIX = f"arn:aws:iam::{settings.LOCAL_ACCOUNT}:role/"
STATE_MACHINE_TARGET = "StepFunctionsTarget"  # SAM's target id suffix


class TemplateError(ValueError):
    """template.yaml cannot be resolved locally; the message names the resource and key."""


class _Loader(yaml.SafeLoader):
    """YAML loader that understands CloudFormation's short tags (!Ref, !Sub, ...)."""


def _construct(tag: str) -> Any:
    def construct(loader: yaml.SafeLoader, node: yaml.Node) -> dict[str, Any]:
        if isinstance(node, yaml.ScalarNode):
            value: Any = loader.construct_scalar(node)
            if tag == "Fn::GetAtt":
                value = str(value).split(".", 1)
        elif isinstance(node, yaml.SequenceNode):
            value = loader.construct_sequence(node, deep=True)
        else:
            value = loader.construct_mapping(node, deep=True)  # type: ignore[arg-type]
        return {tag: value}

    return construct


for _short, _full in _SHORT_TAGS.items():
    _Loader.add_constructor(f"!{_short}", _construct(_full))


def load(path: Path) -> dict[str, Any]:
    with open(path, encoding="utf-8") as stream:
        document = yaml.load(stream, Loader=_Loader)  # noqa: S506 - SafeLoader subclass
    if not isinstance(document, dict) or "Resources" not in document:
        raise TemplateError(f"{path} is not a CloudFormation template (no Resources)")
    return document


@dataclass(frozen=True)
class FunctionSpec:
    logical_id: str
    name: str
    arn: str
    code_dir: Path
    handler: str
    runtime: str
    timeout: int
    memory_size: int
    environment: dict[str, str]
    role_arn: str = ""  # its Role, or the execution role SAM generates (<LogicalId>Role)


@dataclass(frozen=True)
class StateMachineSpec:
    logical_id: str
    name: str
    arn: str
    definition_path: Path
    substitutions: dict[str, str]
    role_arn: str


@dataclass(frozen=True)
class EventRuleSpec:
    """A function's or state machine's EventBridge event source as SAM makes it: a rule whose
    target is that function (invoked) or state machine (an execution started)."""

    name: str  # SAM's logical id for the rule: <resource logical id><event id>
    pattern: dict[str, Any] | None  # EventBridgeRule / CloudWatchEvent
    schedule: str | None  # Schedule
    enabled: bool
    target_arn: str
    target_id: str
    input: str | None
    input_path: str | None
    # A state machine target's role, which SAM makes as <rule>Role; a Lambda target has none
    # (its permission lets events.amazonaws.com invoke it).
    role_arn: str | None = None


@dataclass(frozen=True)
class CustomResourceSpec:
    logical_id: str
    resource_type: str
    service_token: str
    properties: dict[str, Any]  # resolved, ServiceToken included


class LocalStack:
    """template.yaml resolved with the physical names local mode gives its resources."""

    def __init__(
        self, path: Path, *, stack_name: str = "sfn-mlops", parameters: dict[str, str] | None = None
    ) -> None:
        self.path = path
        self.root = path.parent
        self.template = load(path)
        self.resources: dict[str, dict[str, Any]] = self.template["Resources"]
        try:
            self._stack = Stack(self.template, stack_name=stack_name, parameters=parameters)
        except Unresolved as err:
            raise TemplateError(f"{path}: {err}") from err

    def physical_name(self, logical_id: str) -> str:
        return self._resolved(self._stack.physical_name, logical_id)

    def ref(self, logical_id: str) -> str:
        return str(self._resolved(self._stack.ref, logical_id))

    def resolve(self, value: Any, where: str) -> Any:
        try:
            return self._stack.resolve(value)
        except Unresolved as err:
            raise TemplateError(f"{self.path}: {where}: {err}") from err

    def _resolved(self, method: Any, logical_id: str) -> Any:
        try:
            return method(logical_id)
        except Unresolved as err:
            raise TemplateError(f"{self.path}: {err}") from err

    # what local mode needs --------------------------------------------------------------
    def _properties(self, logical_id: str) -> dict[str, Any]:
        properties = self.resources[logical_id].get("Properties", {})
        return self.resolve(properties, f"Resources.{logical_id}.Properties")  # type: ignore[no-any-return]

    def of_type(self, *types: str) -> list[str]:
        return self._stack.of_type(*types)

    def functions(self) -> list[FunctionSpec]:
        defaults = self.resolve(self.template.get("Globals", {}).get("Function", {}), "Globals")
        specs = []
        for logical_id in self.of_type("AWS::Serverless::Function"):
            props = {**defaults, **self._properties(logical_id)}
            env = {
                **defaults.get("Environment", {}).get("Variables", {}),
                **props.get("Environment", {}).get("Variables", {}),
            }
            for key in ("CodeUri", "Handler"):
                if key not in props:
                    raise TemplateError(f"{self.path}: Resources.{logical_id} has no {key}")
            specs.append(
                FunctionSpec(
                    logical_id=logical_id,
                    name=self.physical_name(logical_id),
                    arn=self._resolved(lambda lid: self._stack.get_att(lid, "Arn"), logical_id),
                    code_dir=(self.root / props["CodeUri"]).resolve(),
                    handler=props["Handler"],
                    runtime=props.get("Runtime", "python3.12"),
                    timeout=int(props.get("Timeout", 3)),
                    memory_size=int(props.get("MemorySize", 128)),
                    environment={k: str(v) for k, v in env.items() if v is not None},
                    role_arn=str(props.get("Role") or f"{_IAM_ROLE_PREFIX}{logical_id}Role"),
                )
            )
        return specs

    def event_rules(self) -> list[EventRuleSpec]:
        """The rules SAM makes of the functions' and state machines' ``Events``
        (EventBridgeRule, CloudWatchEvent, Schedule); other event source types are an error,
        not silently dropped."""
        targets = [(f.logical_id, f.arn, "LambdaTarget") for f in self.functions()]
        targets += [(m.logical_id, m.arn, STATE_MACHINE_TARGET) for m in self.state_machines()]
        rules = []
        for logical_id, arn, target_suffix in targets:
            events = self.resources[logical_id]["Properties"].get("Events") or {}
            for event_id, event in events.items():
                where = f"Resources.{logical_id}.Properties.Events.{event_id}"
                rules.append(
                    self._event_rule(logical_id, arn, target_suffix, event_id, event, where)
                )
        return rules

    def _event_rule(
        self,
        logical_id: str,
        target_arn: str,
        target_suffix: str,
        event_id: str,
        event: dict[str, Any],
        where: str,
    ) -> EventRuleSpec:
        kind = event.get("Type")
        props = self.resolve(event.get("Properties", {}), where)
        if kind not in _RULE_EVENT_TYPES:
            raise TemplateError(
                f"{self.path}: {where}: local mode makes rules of Events of type "
                f"{', '.join(_RULE_EVENT_TYPES)}, not {kind}"
            )
        unknown = sorted(set(props) - _RULE_EVENT_PROPERTIES)
        if unknown:
            raise TemplateError(f"{self.path}: {where}: not emulated locally: {unknown}")
        state = props.get("State", "DISABLED" if props.get("Enabled") is False else "ENABLED")
        name = f"{logical_id}{event_id}"
        return EventRuleSpec(
            name=props.get("Name") or props.get("RuleName") or name,
            pattern=props.get("Pattern"),
            schedule=props.get("Schedule"),
            enabled=state == "ENABLED",
            target_arn=target_arn,
            target_id=(props.get("Target") or {}).get("Id") or f"{name}{target_suffix}",
            input=props.get("Input"),
            input_path=props.get("InputPath"),
            role_arn=(
                f"{_IAM_ROLE_PREFIX}{name}Role" if target_suffix == STATE_MACHINE_TARGET else None
            ),
        )

    def alarms(self) -> list[dict[str, Any]]:
        """The AWS::CloudWatch::Alarm resources' properties: PutMetricAlarm's parameters."""
        return [self._properties(lid) for lid in self.of_type("AWS::CloudWatch::Alarm")]

    def custom_resources(self) -> list[CustomResourceSpec]:
        specs = []
        for logical_id, resource in self.resources.items():
            if not is_custom_resource(resource.get("Type")):
                continue
            props = self._properties(logical_id)
            if "ServiceToken" not in props:
                raise TemplateError(f"{self.path}: Resources.{logical_id} has no ServiceToken")
            specs.append(
                CustomResourceSpec(
                    logical_id=logical_id,
                    resource_type=str(resource["Type"]),
                    service_token=str(props["ServiceToken"]),
                    properties=props,
                )
            )
        return specs

    def provide(self, logical_id: str, attributes: dict[str, str]) -> None:
        """A custom resource's answer (its `Data`): what `!GetAtt <logical_id>.<key>` gives."""
        self._resolved(lambda lid: self._stack.provide(lid, attributes), logical_id)

    def state_machines(self) -> list[StateMachineSpec]:
        specs = []
        for logical_id in self.of_type("AWS::Serverless::StateMachine"):
            props = self._properties(logical_id)
            if "DefinitionUri" not in props:
                raise TemplateError(f"{self.path}: Resources.{logical_id} needs a DefinitionUri")
            specs.append(
                StateMachineSpec(
                    logical_id=logical_id,
                    name=self.physical_name(logical_id),
                    arn=self.ref(logical_id),
                    definition_path=(self.root / props["DefinitionUri"]).resolve(),
                    substitutions={
                        k: str(v) for k, v in props.get("DefinitionSubstitutions", {}).items()
                    },
                    role_arn=str(props.get("Role") or f"{_IAM_ROLE_PREFIX}{logical_id}Role"),
                )
            )
        return specs


def substitute(definition: str, substitutions: dict[str, str], where: str) -> str:
    """Fill ``${Name}`` placeholders as DefinitionSubstitutions does; a missing one is an error."""
    missing = sorted({m for m in _SUB_VARIABLE.findall(definition) if m not in substitutions})
    if missing:
        raise TemplateError(f"{where}: no DefinitionSubstitutions entry for {missing}")
    return _SUB_VARIABLE.sub(lambda m: substitutions[m.group(1)], definition)
