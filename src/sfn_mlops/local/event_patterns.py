"""EventBridge event patterns: checked as PutRule checks them, matched as EventBridge matches.

A pattern is a JSON object mirroring the event. A key whose value is an object descends into the
event's object of that key; a key whose value is an array is a leaf: the event's value there
matches when it (or, for an event array, any of its elements) matches any element of the array.
An element is an exact value (string, number, boolean, null) or a one-key object naming an
operator: ``prefix``, ``suffix``, ``equals-ignore-case``, ``wildcard``, ``anything-but`` (a
value, a list, or a ``prefix``/``suffix``/``equals-ignore-case``/``wildcard`` object),
``numeric`` (comparison pairs such as ``[">", 0, "<=", 5]``) and ``exists``. ``$or`` takes a list
of patterns of which one must match at that level. ``cidr`` is not emulated: a pattern using it
is rejected rather than silently never matching.

Every key of a pattern must match; a key absent from the event (or under a parent the event does
not have) matches only ``exists: false``; an array of objects matches when one of them does.
Exact numbers compare by value (``5`` matches ``5.0``), never a string with a number, and
booleans are not numbers.
"""

from __future__ import annotations

import math
import re
from collections.abc import Callable
from functools import lru_cache
from typing import Any

_MISSING = object()
_LOWER = {">": lambda v, b: v > b, ">=": lambda v, b: v >= b}
_UPPER = {"<": lambda v, b: v < b, "<=": lambda v, b: v <= b}
_STRING_OPERATORS = ("prefix", "suffix", "equals-ignore-case", "wildcard")


class InvalidEventPattern(ValueError):
    """The pattern is not one EventBridge accepts; the message says where and why."""


# checking ---------------------------------------------------------------------------------
def check_pattern(pattern: Any) -> None:
    """Raise ``InvalidEventPattern`` for a pattern EventBridge would reject at PutRule."""
    if not isinstance(pattern, dict):
        raise InvalidEventPattern("Filter is not an object")
    _check_object(pattern, "")


def _check_object(pattern: dict[str, Any], path: str) -> None:
    for key, value in pattern.items():
        where = f"{path}.{key}" if path else key
        if key == "$or":
            _check_or(value, where)
        elif isinstance(value, dict):
            if not value:
                raise InvalidEventPattern(f"Empty objects are not allowed (at {where})")
            _check_object(value, where)
        elif isinstance(value, list):
            if not value:
                raise InvalidEventPattern(f"Empty arrays are not allowed (at {where})")
            for element in value:
                _check_element(element, where)
        else:
            raise InvalidEventPattern(
                f"Match value must be String, number, true, false, or null (at {where}: "
                "leaf values must be in an array)"
            )


def _check_or(value: Any, where: str) -> None:
    if not isinstance(value, list) or len(value) < 2:
        raise InvalidEventPattern(f"$or must be an array of at least two patterns (at {where})")
    for branch in value:
        if not isinstance(branch, dict) or not branch:
            raise InvalidEventPattern(f"Each $or branch must be a non-empty object (at {where})")
        _check_object(branch, where)


def _check_element(element: Any, where: str) -> None:
    if not isinstance(element, dict):
        if isinstance(element, list):
            raise InvalidEventPattern(f"Arrays inside arrays are not allowed (at {where})")
        return
    if len(element) != 1:
        raise InvalidEventPattern(f"An operator object must have exactly one key (at {where})")
    ((operator, argument),) = element.items()
    checker = _CHECKERS.get(operator)
    if checker is None:
        hint = "" if operator != "cidr" else ": not supported by sfn-mlops local mode"
        raise InvalidEventPattern(f"Unrecognized match type {operator}{hint} (at {where})")
    checker(argument, where)


def _check_string_argument(operator: str) -> Callable[[Any, str], None]:
    def check(argument: Any, where: str) -> None:
        if operator in ("prefix", "suffix") and isinstance(argument, dict):
            if list(argument) != ["equals-ignore-case"]:
                raise InvalidEventPattern(f"{operator} only nests equals-ignore-case ({where})")
            argument = argument["equals-ignore-case"]
        if not isinstance(argument, str):
            raise InvalidEventPattern(f"{operator} match pattern must be a string (at {where})")

    return check


def _check_exists(argument: Any, where: str) -> None:
    if not isinstance(argument, bool):
        raise InvalidEventPattern(f"exists match pattern must be either true or false ({where})")


def _check_anything_but(argument: Any, where: str) -> None:
    if isinstance(argument, dict):
        if len(argument) != 1 or next(iter(argument)) not in _STRING_OPERATORS:
            raise InvalidEventPattern(
                "anything-but takes a value, a list, or one of "
                f"{', '.join(_STRING_OPERATORS)} (at {where})"
            )
        ((operator, value),) = argument.items()
        values = value if isinstance(value, list) and operator != "prefix" else [value]
        for item in values:
            _check_string_argument(operator)(item, where)
        return
    values = argument if isinstance(argument, list) else [argument]
    if not values or any(isinstance(v, (dict, list)) or v is None for v in values):
        raise InvalidEventPattern(
            f"anything-but values must be strings or numbers, not empty (at {where})"
        )


def _check_numeric(argument: Any, where: str) -> None:
    if not isinstance(argument, list) or len(argument) not in (2, 4):
        raise InvalidEventPattern(f"numeric takes one or two comparisons (at {where})")
    pairs = [(argument[i], argument[i + 1]) for i in range(0, len(argument), 2)]
    seen: set[str] = set()
    for operator, bound in pairs:
        if operator not in ("=", *_LOWER, *_UPPER):
            raise InvalidEventPattern(f"Unrecognized numeric range operator: {operator} ({where})")
        if not _is_number(bound):
            raise InvalidEventPattern(f"Value of {operator} must be numeric (at {where})")
        side = "=" if operator == "=" else ("lower" if operator in _LOWER else "upper")
        if side in seen or (side == "=" and len(pairs) > 1):
            raise InvalidEventPattern(f"Bad numeric range operator: {operator} (at {where})")
        seen.add(side)
    if len(pairs) == 2 and "lower" in seen and "upper" in seen:
        low = next(b for o, b in pairs if o in _LOWER)
        high = next(b for o, b in pairs if o in _UPPER)
        if low >= high:
            raise InvalidEventPattern(f"Bottom must be less than top (at {where})")


_CHECKERS: dict[str, Callable[[Any, str], None]] = {
    **{operator: _check_string_argument(operator) for operator in _STRING_OPERATORS},
    "exists": _check_exists,
    "anything-but": _check_anything_but,
    "numeric": _check_numeric,
}


# matching ---------------------------------------------------------------------------------
def matches(pattern: dict[str, Any], event: dict[str, Any]) -> bool:
    """Whether ``event`` (the whole envelope: source, detail-type, detail, ...) matches."""
    return _match_object(pattern, event)


def _match_object(pattern: dict[str, Any], event: Any) -> bool:
    for key, expected in pattern.items():
        if key == "$or":
            if not any(_match_object(branch, event) for branch in expected):
                return False
            continue
        actual = event.get(key, _MISSING) if isinstance(event, dict) else _MISSING
        if isinstance(expected, dict):
            if not _match_nested(expected, actual):
                return False
        elif not _match_leaf(expected, actual):
            return False
    return True


def _match_nested(expected: dict[str, Any], actual: Any) -> bool:
    """EventBridge matches flattened paths: an array of objects matches when one of them does,
    and where there is no object at all only ``exists: false`` leaves can match."""
    if isinstance(actual, list) and any(isinstance(item, dict) for item in actual):
        return any(_match_object(expected, item) for item in actual if isinstance(item, dict))
    return _match_object(expected, actual if isinstance(actual, dict) else {})


def _match_leaf(expected: list[Any], actual: Any) -> bool:
    for element in expected:
        if isinstance(element, dict) and "exists" in element:
            if _exists(actual) == element["exists"]:
                return True
            continue
        if actual is _MISSING:
            continue
        values = actual if isinstance(actual, list) else [actual]
        if any(_match_value(element, value) for value in values):
            return True
    return False


def _exists(actual: Any) -> bool:
    """``exists`` works on leaves only: an object there does not count as existing."""
    if actual is _MISSING or isinstance(actual, dict):
        return False
    return not (isinstance(actual, list) and not actual)


def _match_value(element: Any, value: Any) -> bool:
    if not isinstance(element, dict):
        return _equal(element, value)
    ((operator, argument),) = element.items()
    if operator == "numeric":
        return _is_number(value) and _in_range(argument, value)
    if operator == "anything-but":
        return _anything_but(argument, value)
    return isinstance(value, str) and _string_match(operator, argument, value)


def _equal(expected: Any, value: Any) -> bool:
    if _is_number(expected) and _is_number(value):
        return math.isclose(expected, value, rel_tol=0, abs_tol=1e-9)
    return type(expected) is type(value) and bool(expected == value)


def _string_match(operator: str, argument: Any, value: str) -> bool:
    if isinstance(argument, dict):  # {"prefix": {"equals-ignore-case": "x"}}
        argument, value = argument["equals-ignore-case"].lower(), value.lower()
    if operator == "prefix":
        return value.startswith(argument)
    if operator == "suffix":
        return value.endswith(argument)
    if operator == "equals-ignore-case":
        return value.casefold() == str(argument).casefold()
    return _wildcard(argument).fullmatch(value) is not None


def _anything_but(argument: Any, value: Any) -> bool:
    if isinstance(argument, dict):
        ((operator, inner),) = argument.items()
        if not isinstance(value, str):
            return False
        options = inner if isinstance(inner, list) and operator != "prefix" else [inner]
        return not any(_string_match(operator, option, value) for option in options)
    options = argument if isinstance(argument, list) else [argument]
    return not any(_equal(option, value) for option in options)


def _in_range(argument: list[Any], value: float) -> bool:
    for i in range(0, len(argument), 2):
        operator, bound = argument[i], argument[i + 1]
        if operator == "=":
            ok = _equal(bound, value)
        else:
            ok = {**_LOWER, **_UPPER}[operator](value, bound)
        if not ok:
            return False
    return True


def _is_number(value: Any) -> bool:
    return isinstance(value, (int, float)) and not isinstance(value, bool)


@lru_cache(maxsize=256)
def _wildcard(pattern: str) -> re.Pattern[str]:
    """``*`` matches any run of characters; ``\\*`` is a literal star."""
    parts = re.split(r"(\\\*|\*)", pattern)
    regex = "".join(".*" if p == "*" else re.escape("*" if p == "\\*" else p) for p in parts)
    return re.compile(regex, re.DOTALL)
