"""Requests checked against the service model as AWS checks them, before a service sees them.

JSON-protocol services (SageMaker, Step Functions) reject a value of the wrong JSON type with a
``SerializationException``; every service then checks required members, lengths, ranges, enums
and patterns and answers ``1 validation error detected: Value ... at 'member' failed to satisfy
constraint: ...`` (AWS's wording), the members named in camelCase with ``.``-joined paths.
"""

from __future__ import annotations

import json
from typing import Any

from botocore.model import ListShape, MapShape, OperationModel, Shape, StructureShape

from sfn_mlops.local.errors import AwsError
from sfn_mlops.local.java_regex import compile_java

#: The error each protocol's services answer a constraint violation with.
_ERROR_CODE = {
    "json": "ValidationException",
    "rest-json": "ValidationException",
    "query": "InvalidParameter",
    "rest-xml": "InvalidArgument",
}
_JSON_TYPES: dict[str, tuple[type, ...]] = {
    "string": (str,),
    "integer": (int,),
    "long": (int,),
    "float": (int, float),
    "double": (int, float),
    "boolean": (bool,),
    "timestamp": (int, float, str),
    "blob": (str,),
    "structure": (dict,),
    "map": (dict,),
    "list": (list,),
}
_CORAL_NAMES = {
    "string": "String",
    "integer": "Integer",
    "long": "Long",
    "float": "Float",
    "double": "Double",
    "boolean": "Boolean",
    "structure": "Structure",
    "map": "Map",
    "list": "List",
    "timestamp": "Date",
    "blob": "Blob",
}


def validate_request(
    operation: OperationModel, params: dict[str, Any], request: Any, protocol: str
) -> None:
    """Raise the service's error for the first kind of problem found (types, then constraints)."""
    shape = operation.input_shape
    if shape is None:
        return
    if protocol == "json":
        body = request.get_data() or b"{}"
        try:
            raw = json.loads(body)
        except ValueError as err:
            raise AwsError("SerializationException", f"Malformed JSON body: {err}") from err
        problem = _type_problem(raw, shape)
        if problem:
            raise AwsError("SerializationException", problem)
    problems: list[str] = []
    _check(params, shape, "", problems)
    if problems:
        count = len(problems)
        noun = "error" if count == 1 else "errors"
        raise AwsError(
            _ERROR_CODE.get(
                protocol, "InvalidParameterValue" if protocol == "query" else "InvalidArgument"
            ),
            f"{count} validation {noun} detected: " + "; ".join(problems),
        )


def _type_problem(value: Any, shape: Shape) -> str | None:
    """The first JSON value whose type the shape does not allow, in Coral's words."""
    if value is None:
        return None
    allowed = _JSON_TYPES.get(shape.type_name)
    if allowed is not None and (
        not isinstance(value, allowed) or (isinstance(value, bool) and bool not in allowed)
    ):
        return f"{_json_kind(value)} can not be converted to an {_CORAL_NAMES[shape.type_name]}"
    for item, item_shape in _children(value, shape):
        if problem := _type_problem(item, item_shape):
            return problem
    return None


def _children(value: Any, shape: Shape) -> list[tuple[Any, Shape]]:
    """The (value, shape) pairs one level down, for the members the caller sent."""
    if isinstance(shape, StructureShape) and isinstance(value, dict):
        return [(value[name], member) for name, member in shape.members.items() if name in value]
    if isinstance(shape, ListShape) and isinstance(value, list):
        return [(item, shape.member) for item in value]
    if isinstance(shape, MapShape) and isinstance(value, dict):
        return [(item, shape.value) for item in value.values()]
    return []


def _json_kind(value: Any) -> str:
    if isinstance(value, bool):
        return "BOOLEAN_VALUE"
    if isinstance(value, str):
        return "STRING_VALUE"
    if isinstance(value, (int, float)):
        return "NUMBER_VALUE"
    if isinstance(value, list):
        return "START_ARRAY"
    return "START_OBJECT"


def _camel(name: str) -> str:
    return name[:1].lower() + name[1:]


def _join(path: str, name: str) -> str:
    return f"{path}.{name}" if path else name


def _check(value: Any, shape: Shape, path: str, problems: list[str]) -> None:
    if isinstance(shape, StructureShape):
        if isinstance(value, dict):
            _check_structure(value, shape, path, problems)
        return
    _check_constraints(value, shape, path, problems)
    if isinstance(shape, ListShape) and isinstance(value, list):
        for index, item in enumerate(value, start=1):
            _check(item, shape.member, f"{path}.{index}.member", problems)
    elif isinstance(shape, MapShape) and isinstance(value, dict):
        for key, item in value.items():
            _check_key(key, shape.key, path, problems)
            _check(item, shape.value, f"{path}.{key}.member", problems)


def _check_key(key: Any, shape: Shape, path: str, problems: list[str]) -> None:
    """A map's keys have constraints of their own; AWS names the map and lists what failed."""
    failed: list[str] = []
    _check_constraints(key, shape, path, failed)
    if failed:
        reasons = ", ".join(f"Member must{f.split('Member must', 1)[1]}" for f in failed)
        problems.append(
            f"Value {_shown(key)} at '{path}' failed to satisfy constraint: "
            f"Map keys must satisfy constraint: [{reasons}]"
        )


def _check_structure(
    value: dict[str, Any], shape: StructureShape, path: str, problems: list[str]
) -> None:
    for name in shape.required_members:
        if value.get(name) is None:
            problems.append(
                f"Value null at '{_join(path, _camel(name))}' failed to satisfy constraint: "
                "Member must not be null"
            )
    for name, member in shape.members.items():
        if value.get(name) is not None:
            _check(value[name], member, _join(path, _camel(name)), problems)
    if shape.metadata.get("union"):
        chosen = [name for name in shape.members if value.get(name) is not None]
        if len(chosen) != 1:  # a union sets exactly one of its members
            problems.append(
                f"Value at '{path}' failed to satisfy constraint: Member must set exactly one "
                f"of [{', '.join(_camel(name) for name in shape.members)}] "
                f"(got {len(chosen)})"
            )


def _check_constraints(value: Any, shape: Shape, path: str, problems: list[str]) -> None:
    meta = shape.metadata
    shown = _shown(value)
    prefix = f"Value {shown} at '{path}' failed to satisfy constraint: Member must"
    if isinstance(value, (str, bytes, list, dict)):
        size = len(value)
        if "min" in meta and size < meta["min"]:
            problems.append(f"{prefix} have length greater than or equal to {meta['min']}")
        if "max" in meta and size > meta["max"]:
            problems.append(f"{prefix} have length less than or equal to {meta['max']}")
    elif isinstance(value, (int, float)) and not isinstance(value, bool):
        if "min" in meta and value < meta["min"]:
            problems.append(f"{prefix} have value greater than or equal to {meta['min']}")
        if "max" in meta and value > meta["max"]:
            problems.append(f"{prefix} have value less than or equal to {meta['max']}")
    if isinstance(value, str):
        if shape.enum and value not in shape.enum:
            problems.append(f"{prefix} satisfy enum value set: [{', '.join(shape.enum)}]")
        pattern = meta.get("pattern")
        if pattern and not compile_java(pattern).fullmatch(value):
            problems.append(f"{prefix} satisfy regular expression pattern: {meta['pattern']}")


def _shown(value: Any) -> str:
    if isinstance(value, str):
        return f"'{value}'" if len(value) <= 200 else f"'{value[:200]}...'"
    return f"'{value}'" if isinstance(value, (int, float)) else "[...]"
