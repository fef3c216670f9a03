"""A policy statement's `Condition` block, compiled once and tested per request.

Semantics from the IAM User Guide, "IAM JSON policy elements: Condition operators"
(https://docs.aws.amazon.com/IAM/latest/UserGuide/reference_policies_elements_condition_operators.html)
and "Single-valued vs. multivalued context keys"
(https://docs.aws.amazon.com/IAM/latest/UserGuide/reference_policies_condition-single-vs-multi-valued-context-keys.html):

- every operator in a block, and every key under an operator, must hold (AND); a key's values
  are alternatives (OR);
- condition key names are case-insensitive;
- a key missing from the request context makes the condition false, except for the negated
  operators (`StringNotEquals`, `ArnNotLike`, ...), which are then true; `...IfExists` makes it
  true; `Null` tests for the key's presence;
- `ForAnyValue:` holds if any of the request's values matches (false when there are none),
  `ForAllValues:` if every one does (true when there are none).

An operator this module does not know is an error when the policy is compiled (at deploy),
never a silent allow or deny at request time.
"""

from __future__ import annotations

import base64
import ipaddress
import re
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass
from datetime import datetime, timezone
from functools import lru_cache
from typing import Any

#: A request context: condition key (lowercase) -> a value, or a list of values.
Context = Mapping[str, Any]
Match = Callable[[str, Any], bool]  # (request value, compiled policy value) -> matches


class PolicyError(ValueError):
    """A policy the evaluator cannot evaluate as AWS would; the message names where it is."""


@lru_cache(maxsize=8192)
def wildcard(pattern: str, case_sensitive: bool = True) -> re.Pattern[str]:
    """IAM's `*` (any run of characters) and `?` (any one character), nothing else special."""
    body = "".join(".*" if c == "*" else "." if c == "?" else re.escape(c) for c in pattern)
    return re.compile(body, re.DOTALL if case_sensitive else re.DOTALL | re.IGNORECASE)


def _number(text: str) -> float:
    return float(text)


def _date(text: str) -> float:
    """An ISO 8601 date or time, or seconds since the epoch, as epoch seconds."""
    text = str(text).strip()
    if re.fullmatch(r"-?\d+(\.\d+)?", text):
        return float(text)
    when = datetime.fromisoformat(text.replace("Z", "+00:00"))
    if when.tzinfo is None:
        when = when.replace(tzinfo=timezone.utc)
    return when.timestamp()


def _arn_parts(arn: str) -> list[str] | None:
    parts = arn.split(":", 5)
    return parts if len(parts) == 6 and parts[0] == "arn" else None


def _arn_like(value: str, pattern: Any) -> bool:
    """ArnLike/ArnEquals: each of the six colon-separated parts matched with wildcards."""
    parts = _arn_parts(value)
    return parts is not None and all(
        p.fullmatch(v) is not None for p, v in zip(pattern, parts, strict=True)
    )


def _compile_arn(value: str) -> list[re.Pattern[str]]:
    parts = _arn_parts(value)
    if parts is None:
        raise ValueError(f"{value!r} is not an ARN")
    return [wildcard(part) for part in parts]


def _number_test(compare: Callable[[float, float], bool]) -> Match:
    def test(value: str, policy: Any) -> bool:
        try:
            return compare(float(value), policy)
        except ValueError:
            return False

    return test


def _date_test(compare: Callable[[float, float], bool]) -> Match:
    def test(value: str, policy: Any) -> bool:
        try:
            return compare(_date(value), policy)
        except ValueError:
            return False

    return test


def _in_network(value: str, network: Any) -> bool:
    try:
        return ipaddress.ip_address(value) in network
    except ValueError:
        return False


@dataclass(frozen=True)
class _Operator:
    match: Match
    negated: bool
    compile: Callable[[str], Any] = str  # a policy value -> what `match` compares against


def _eq(value: str, policy: Any) -> bool:
    return value == policy


def _bool(text: str) -> str:
    if text.lower() not in ("true", "false"):
        raise ValueError(f"{text!r} is not true or false")
    return text.lower()


_STRING = _Operator(_eq, False)
_STRING_IC = _Operator(lambda v, p: v.lower() == p, False, lambda t: t.lower())
_LIKE = _Operator(lambda v, p: p.fullmatch(v) is not None, False, wildcard)
_ARN = _Operator(_arn_like, False, _compile_arn)
_BINARY = _Operator(_eq, False, lambda t: base64.b64encode(base64.b64decode(t)).decode())
_IP = _Operator(_in_network, False, lambda t: ipaddress.ip_network(t, strict=False))

#: Base operators: the name -> how a request value is matched against one policy value.
OPERATORS: dict[str, _Operator] = {
    "StringEquals": _STRING,
    "StringNotEquals": _Operator(_STRING.match, True),
    "StringEqualsIgnoreCase": _STRING_IC,
    "StringNotEqualsIgnoreCase": _Operator(_STRING_IC.match, True, _STRING_IC.compile),
    "StringLike": _LIKE,
    "StringNotLike": _Operator(_LIKE.match, True, _LIKE.compile),
    "NumericEquals": _Operator(_number_test(lambda a, b: a == b), False, _number),
    "NumericNotEquals": _Operator(_number_test(lambda a, b: a == b), True, _number),
    "NumericLessThan": _Operator(_number_test(lambda a, b: a < b), False, _number),
    "NumericLessThanEquals": _Operator(_number_test(lambda a, b: a <= b), False, _number),
    "NumericGreaterThan": _Operator(_number_test(lambda a, b: a > b), False, _number),
    "NumericGreaterThanEquals": _Operator(_number_test(lambda a, b: a >= b), False, _number),
    "DateEquals": _Operator(_date_test(lambda a, b: a == b), False, _date),
    "DateNotEquals": _Operator(_date_test(lambda a, b: a == b), True, _date),
    "DateLessThan": _Operator(_date_test(lambda a, b: a < b), False, _date),
    "DateLessThanEquals": _Operator(_date_test(lambda a, b: a <= b), False, _date),
    "DateGreaterThan": _Operator(_date_test(lambda a, b: a > b), False, _date),
    "DateGreaterThanEquals": _Operator(_date_test(lambda a, b: a >= b), False, _date),
    "Bool": _Operator(lambda v, p: v.lower() == p, False, _bool),
    "BinaryEquals": _BINARY,
    "IpAddress": _IP,
    "NotIpAddress": _Operator(_IP.match, True, _IP.compile),
    "ArnEquals": _ARN,
    "ArnLike": _ARN,
    "ArnNotEquals": _Operator(_ARN.match, True, _ARN.compile),
    "ArnNotLike": _Operator(_ARN.match, True, _ARN.compile),
}
_SET_OPERATORS = ("ForAnyValue:", "ForAllValues:")
#: Policy variables (`${aws:username}`) are not substituted here; only IAM's escapes are plain.
_VARIABLE = re.compile(r"\$\{(?![*?$]\})")


def has_policy_variable(text: str) -> bool:
    return _VARIABLE.search(text) is not None


def _values(request: Any) -> list[str]:
    """A context value as the list of strings IAM compares (bools as true/false)."""
    items = request if isinstance(request, list | tuple) else [request]
    return [str(v).lower() if isinstance(v, bool) else str(v) for v in items]


@dataclass(frozen=True)
class Condition:
    """One (operator, key, values) triple of a Condition block."""

    operator: str  # as the policy spells it, e.g. ForAnyValue:StringLikeIfExists
    key: str  # lowercase
    values: tuple[Any, ...]  # compiled policy values
    base: _Operator | None  # None: Null
    qualifier: str  # "", "ForAnyValue:" or "ForAllValues:"
    if_exists: bool

    def holds(self, context: Context) -> bool:
        request = context.get(self.key)
        if self.base is None:  # Null: "true" -> the key is absent
            return (request is None) == (self.values[0] == "true")
        if request is None or (self.qualifier and not _values(request)):
            if self.if_exists:
                return True
            if self.qualifier == "ForAllValues:":
                return True
            return self.base.negated and not self.qualifier
        found = [self._matches_any(value) for value in _values(request)]
        if self.base.negated:
            found = [not hit for hit in found]
        if self.qualifier == "ForAllValues:":
            return all(found)
        if self.qualifier == "ForAnyValue:":
            return any(found)
        return all(found) if self.base.negated else any(found)

    def _matches_any(self, value: str) -> bool:
        match = self.base.match if self.base else _eq
        return any(match(value, policy) for policy in self.values)


def _parse_operator(name: str) -> tuple[str, str, bool]:
    """(set qualifier, base operator, IfExists) of an operator name."""
    qualifier = next((q for q in _SET_OPERATORS if name.startswith(q)), "")
    base = name[len(qualifier) :]
    if_exists = base.endswith("IfExists") and base != "IfExists"
    if if_exists:
        base = base[: -len("IfExists")]
    return qualifier, base, if_exists


def _compile_one(name: str, key: str, raw_values: Sequence[Any], where: str) -> Condition:
    qualifier, base, if_exists = _parse_operator(name)
    texts = [str(v).lower() if isinstance(v, bool) else str(v) for v in raw_values]
    for text in texts:
        if has_policy_variable(text):
            raise PolicyError(
                f"{where}: the condition {name} {key} uses the policy variable in {text!r}; "
                "the local evaluator does not substitute policy variables"
            )
    if base == "Null":
        if qualifier or if_exists or len(texts) != 1 or texts[0].lower() not in ("true", "false"):
            raise PolicyError(f"{where}: Null takes one value, true or false, and no qualifier")
        return Condition(name, key.lower(), (texts[0].lower(),), None, "", False)
    operator = OPERATORS.get(base)
    if operator is None:
        raise PolicyError(
            f"{where}: the condition operator {name!r} is not one the local IAM evaluator "
            f"knows ({', '.join(sorted(OPERATORS))}, Null, with IfExists, ForAnyValue:, "
            "ForAllValues:); it would be evaluated differently from AWS, so it is refused"
        )
    try:
        compiled = tuple(operator.compile(text) for text in texts)
    except (ValueError, TypeError) as error:
        raise PolicyError(f"{where}: {name} {key}: {error}") from error
    return Condition(name, key.lower(), compiled, operator, qualifier, if_exists)


def compile_conditions(block: Any, where: str) -> tuple[Condition, ...]:
    """The conditions of a statement's `Condition` element (absent: none)."""
    if block is None:
        return ()
    if not isinstance(block, Mapping):
        raise PolicyError(f"{where}: Condition must be an object, not {block!r}")
    found = []
    for name, keys in block.items():
        if not isinstance(keys, Mapping):
            raise PolicyError(f"{where}: Condition {name} must map keys to values")
        for key, values in keys.items():
            items = values if isinstance(values, list) else [values]
            found.append(_compile_one(str(name), str(key), items, f"{where}.Condition"))
    return tuple(found)


def all_hold(conditions: tuple[Condition, ...], context: Context) -> bool:
    return all(condition.holds(context) for condition in conditions)
