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
_SUB_VARIABLE = re.compile(r"\$\{([^}!][^}]*)\}")


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


@dataclass(frozen=True)
class StateMachineSpec:
    logical_id: str
    name: str
    arn: str
    definition_path: Path
    substitutions: dict[str, str]
    role_arn: str


class LocalStack:
    """A template resolved with the physical names local mode gives its resources."""

    def __init__(
        self, path: Path, *, stack_name: str = "sfn-mlops", parameters: dict[str, str] | None = None
    ) -> None:
        self.path = path
        self.root = path.parent
        self.stack_name = stack_name
        self.template = load(path)
        self.resources: dict[str, dict[str, Any]] = self.template["Resources"]
        self.parameters = self._parameters(parameters or {})
        self.conditions = {
            name: bool(self.resolve(expr, f"Conditions.{name}"))
            for name, expr in self.template.get("Conditions", {}).items()
        }

    def _parameters(self, given: dict[str, str]) -> dict[str, str]:
        declared = self.template.get("Parameters", {})
        unknown = sorted(set(given) - set(declared))
        if unknown:
            raise TemplateError(
                f"{self.path}: unknown parameter(s) {unknown}; declared: {sorted(declared)}"
            )
        values = {}
        for name, spec in declared.items():
            if name in given:
                values[name] = given[name]
            elif "Default" in spec:
                values[name] = str(spec["Default"])
            else:
                raise TemplateError(f"{self.path}: parameter {name} has no Default; pass a value")
        return values

    # physical names --------------------------------------------------------------------
    def resource_type(self, logical_id: str) -> str:
        if logical_id not in self.resources:
            raise TemplateError(f"{self.path}: no resource named {logical_id}")
        return str(self.resources[logical_id]["Type"])

    def physical_name(self, logical_id: str) -> str:
        """Bucket names must be lowercase and globally unique; others keep their logical id."""
        kind = self.resource_type(logical_id)
        if kind == "AWS::S3::Bucket":
            return f"{self.stack_name}-{logical_id}".lower()
        return logical_id

    def ref(self, logical_id: str) -> str:
        kind = self.resource_type(logical_id)
        name = self.physical_name(logical_id)
        return {
            "AWS::SNS::Topic": _arn("sns", name),
            "AWS::Serverless::StateMachine": _arn("states", f"stateMachine:{name}"),
            "AWS::StepFunctions::StateMachine": _arn("states", f"stateMachine:{name}"),
        }.get(kind, name)

    def get_att(self, logical_id: str, attribute: str) -> str:
        kind = self.resource_type(logical_id)
        name = self.physical_name(logical_id)
        arns = {
            "AWS::Serverless::Function": _arn("lambda", f"function:{name}"),
            "AWS::Lambda::Function": _arn("lambda", f"function:{name}"),
            "AWS::IAM::Role": f"arn:aws:iam::{settings.LOCAL_ACCOUNT}:role/{name}",
            "AWS::S3::Bucket": f"arn:aws:s3:::{name}",
            "AWS::SNS::Topic": _arn("sns", name),
        }
        if attribute == "Arn" and kind in arns:
            return arns[kind]
        if attribute in ("Name", "TopicName", "BucketName"):
            return name
        raise TemplateError(
            f"{self.path}: !GetAtt {logical_id}.{attribute} is not resolved locally"
        )

    # intrinsic functions ----------------------------------------------------------------
    def resolve(self, value: Any, where: str) -> Any:
        if isinstance(value, list):
            return [self.resolve(item, where) for item in value]
        if not isinstance(value, dict):
            return value
        if len(value) == 1:
            ((key, arg),) = value.items()
            handler = _INTRINSICS.get(key)
            if handler is not None:
                return handler(self, arg, where)
        return {k: self.resolve(v, f"{where}.{k}") for k, v in value.items()}

    def _ref(self, name: str) -> str:
        pseudo = {
            "AWS::Region": settings.LOCAL_REGION,
            "AWS::AccountId": settings.LOCAL_ACCOUNT,
            "AWS::Partition": "aws",
            "AWS::StackName": self.stack_name,
            "AWS::URLSuffix": "amazonaws.com",
            "AWS::NoValue": None,
        }
        if name in pseudo:
            return pseudo[name]  # type: ignore[return-value]
        if name in self.parameters:
            return self.parameters[name]
        return self.ref(name)

    def _sub(self, arg: Any, where: str) -> str:
        text, variables = (
            (arg, {}) if isinstance(arg, str) else (arg[0], self.resolve(arg[1], where))
        )

        def replace(match: re.Match[str]) -> str:
            name = match.group(1)
            if name in variables:
                return str(variables[name])
            if "." in name:
                logical_id, attribute = name.split(".", 1)
                return self.get_att(logical_id, attribute)
            return str(self._ref(name))

        return _SUB_VARIABLE.sub(replace, text).replace("${!", "${")

    # what local mode needs --------------------------------------------------------------
    def _properties(self, logical_id: str) -> dict[str, Any]:
        properties = self.resources[logical_id].get("Properties", {})
        return self.resolve(properties, f"Resources.{logical_id}.Properties")  # type: ignore[no-any-return]

    def of_type(self, *types: str) -> list[str]:
        return [lid for lid, res in self.resources.items() if res["Type"] in types]

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
                    arn=self.get_att(logical_id, "Arn"),
                    code_dir=(self.root / props["CodeUri"]).resolve(),
                    handler=props["Handler"],
                    runtime=props.get("Runtime", "python3.12"),
                    timeout=int(props.get("Timeout", 3)),
                    memory_size=int(props.get("MemorySize", 128)),
                    environment={k: str(v) for k, v in env.items() if v is not None},
                )
            )
        return specs

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
                    role_arn=str(props.get("Role") or _arn("iam", f"role/{logical_id}Role")),
                )
            )
        return specs


def _arn(service: str, resource: str) -> str:
    if service == "iam":
        return f"arn:aws:iam::{settings.LOCAL_ACCOUNT}:{resource}"
    return f"arn:aws:{service}:{settings.LOCAL_REGION}:{settings.LOCAL_ACCOUNT}:{resource}"


def substitute(definition: str, substitutions: dict[str, str], where: str) -> str:
    """Fill ``${Name}`` placeholders as DefinitionSubstitutions does; a missing one is an error."""
    missing = sorted({m for m in _SUB_VARIABLE.findall(definition) if m not in substitutions})
    if missing:
        raise TemplateError(f"{where}: no DefinitionSubstitutions entry for {missing}")
    return _SUB_VARIABLE.sub(lambda m: substitutions[m.group(1)], definition)


def _get_att(stack: LocalStack, arg: Any, where: str) -> str:
    logical_id, attribute = arg if isinstance(arg, list) else str(arg).split(".", 1)
    return stack.get_att(logical_id, attribute)


def _join(stack: LocalStack, arg: Any, where: str) -> str:
    delimiter, items = arg
    return str(delimiter).join(str(i) for i in stack.resolve(items, where))


def _if(stack: LocalStack, arg: Any, where: str) -> Any:
    name, when_true, when_false = arg
    if name not in stack.conditions:
        raise TemplateError(f"{where}: unknown condition {name}")
    return stack.resolve(when_true if stack.conditions[name] else when_false, where)


def _find_in_map(stack: LocalStack, arg: Any, where: str) -> Any:
    name, first, second = stack.resolve(arg, where)
    try:
        return stack.template["Mappings"][name][first][second]
    except KeyError as err:
        raise TemplateError(f"{where}: !FindInMap [{name}, {first}, {second}] not found") from err


_INTRINSICS: dict[str, Any] = {
    "Ref": lambda s, a, w: s._ref(a),
    "Fn::GetAtt": _get_att,
    "Fn::Sub": lambda s, a, w: s._sub(a, w),
    "Fn::Join": _join,
    "Fn::If": _if,
    "Fn::Equals": lambda s, a, w: str(s.resolve(a[0], w)) == str(s.resolve(a[1], w)),
    "Fn::Not": lambda s, a, w: not s.resolve(a[0], w),
    "Fn::And": lambda s, a, w: all(s.resolve(a, w)),
    "Fn::Or": lambda s, a, w: any(s.resolve(a, w)),
    "Condition": lambda s, a, w: s.conditions[a],
    "Fn::FindInMap": _find_in_map,
    "Fn::Select": lambda s, a, w: s.resolve(a[1], w)[int(s.resolve(a[0], w))],
    "Fn::Split": lambda s, a, w: str(s.resolve(a[1], w)).split(a[0]),
}
