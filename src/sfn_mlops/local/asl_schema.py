"""The deploy-time schema check AWS makes on optimized-integration Task Parameters.

CreateStateMachine rejects a definition whose ``arn:aws:states:::sagemaker:<action>`` (and
``lambda:invoke``, ``sns:publish``) Task names a Parameters field the API does not accept, with
``SCHEMA_VALIDATION_FAILED: The field "<name>" is not supported by Step Functions at
/States/<state>/Parameters``. The engine runs such a definition and fails later, so local mode
checks it here, from botocore's own service models: a typo is caught before anything runs.
"""

from __future__ import annotations

import re
from collections.abc import Iterator
from functools import cache
from typing import Any

import botocore.session
from botocore.model import OperationModel, Shape

# arn:<partition>:states:::<service>:<action>[.sync|.waitForTaskToken][:<version>]
_OPTIMIZED = re.compile(
    r"^arn:[^:]+:states:[^:]*:[^:]*:(?P<service>sagemaker|lambda|sns):(?P<action>[A-Za-z]+)"
    r"(?:\.sync|\.waitForTaskToken)?(?::\d+)?$"
)
_BRANCH_KEYS = ("Branches",)
_ITERATOR_KEYS = ("ItemProcessor", "Iterator")


def check_definition_schema(definition: dict[str, Any]) -> list[str]:
    """Every Parameters field AWS would reject, one message per field, in definition order."""
    return [
        _message(field, f"{path}/Parameters")
        for path, state in _states(definition, "")
        for field in _unknown_fields(state)
    ]


def _message(field: str, path: str) -> str:
    return (
        f'SCHEMA_VALIDATION_FAILED: The field "{field}" is not supported by Step Functions '
        f"at {path}"
    )


def _states(machine: dict[str, Any], prefix: str) -> Iterator[tuple[str, dict[str, Any]]]:
    """Every state with its JSON-pointer path, nested Parallel branches and Map processors too."""
    for name, state in (machine.get("States") or {}).items():
        if not isinstance(state, dict):
            continue
        path = f"{prefix}/States/{name}"
        yield path, state
        for key in _BRANCH_KEYS:
            for index, branch in enumerate(state.get(key) or []):
                if isinstance(branch, dict):
                    yield from _states(branch, f"{path}/{key}/{index}")
        for key in _ITERATOR_KEYS:
            if isinstance(state.get(key), dict):
                yield from _states(state[key], f"{path}/{key}")


def _unknown_fields(state: dict[str, Any]) -> list[str]:
    if state.get("Type") != "Task" or not isinstance(state.get("Parameters"), dict):
        return []
    match = _OPTIMIZED.match(str(state.get("Resource", "")))
    if match is None:
        return []
    operation = _operation(match["service"], match["action"])
    if operation is None or operation.input_shape is None:
        return []
    return list(_unknown_in(state["Parameters"], operation.input_shape))


@cache
def _operation(service: str, action: str) -> OperationModel | None:
    """The API action a Task names: ``createTrainingJob`` is botocore's ``CreateTrainingJob``."""
    model = botocore.session.get_session().get_service_model(service)
    name = action[:1].upper() + action[1:]
    return model.operation_model(name) if name in model.operation_names else None


def _unknown_in(value: Any, shape: Shape) -> Iterator[str]:
    """Unknown members of a static value, recursing into nested structures and their lists."""
    if shape.type_name == "structure" and isinstance(value, dict):
        members = shape.members  # type: ignore[attr-defined]
        for key, item in value.items():
            name, dynamic = (key[:-2], True) if key.endswith(".$") else (key, False)
            if name not in members:
                yield name
            elif not dynamic:
                yield from _unknown_in(item, members[name])
    elif shape.type_name == "list" and isinstance(value, list):
        for item in value:
            yield from _unknown_in(item, shape.member)  # type: ignore[attr-defined]
    elif shape.type_name == "map" and isinstance(value, dict):
        for key, item in value.items():
            if not key.endswith(".$"):
                yield from _unknown_in(item, shape.value)  # type: ignore[attr-defined]
