"""Policy documents compiled once (at deploy) into statements that answer in microseconds.

Matching follows the IAM User Guide's policy element reference
(https://docs.aws.amazon.com/IAM/latest/UserGuide/reference_policies_elements.html): `Action`
and `NotAction` with `*`/`?` wildcards, case-insensitive; `Resource` and `NotResource` with the
same wildcards, case-sensitive; `Principal`/`NotPrincipal` in resource-based policies only;
`Condition` as `conditions` compiles it. A document the evaluator cannot evaluate as AWS does
(an unknown element or condition operator, a policy variable, a Principal in an identity
policy) raises `PolicyError` when it is compiled.

A needed resource may contain `ANY` where its name is not known (a `DescribeAlarms` without
alarm names, an action with no resource types at all: `ANY` alone, which AWS writes `*`). Only
a statement whose pattern covers every name there covers it: `alarm:*` covers `alarm:ANY`,
`alarm:x-*` does not.
"""

from __future__ import annotations

import re
from collections.abc import Mapping
from dataclasses import dataclass, field
from functools import lru_cache
from typing import Any, Literal

from sfn_mlops.local.iam.conditions import (
    Condition,
    Context,
    PolicyError,
    all_hold,
    compile_conditions,
    has_policy_variable,
    wildcard,
)
from sfn_mlops.policies import as_list

#: Stands for "any name" in a needed resource (printed as `*`).
ANY = "\u2217any\u2217"
PolicyKind = Literal["identity-based", "resource-based"]
_STATEMENT_KEYS = frozenset(
    {"Sid", "Effect", "Action", "NotAction", "Resource", "NotResource", "Principal"}
    | {"NotPrincipal", "Condition"}
)
_PRINCIPAL_KINDS = frozenset({"AWS", "Service", "Federated", "CanonicalUser"})


def shown(resource: str) -> str:
    """A needed resource as AWS prints it."""
    return resource.replace(ANY, "*")



@dataclass(frozen=True)
class Principals:
    """A statement's Principal (or NotPrincipal) element, normalised."""

    everyone: bool
    aws: frozenset[str]  # ARNs; an account id becomes its root ARN
    services: frozenset[str]
    negated: bool


@dataclass(frozen=True)
class Caller:
    """Who makes a request: a role session, a user, or an AWS service principal."""

    arn: str  # as AWS names the caller in a denial: the assumed-role session ARN, a user ARN
    account: str
    role_arn: str | None = None  # the role a session belongs to
    service: str | None = None  # a service principal, e.g. events.amazonaws.com
    policies: tuple[Policy, ...] = ()  # identity-based policies

    @property
    def is_service(self) -> bool:
        return self.service is not None


PrincipalMatch = Literal["", "account", "exact"]


def match_principal(principals: Principals, caller: Caller) -> PrincipalMatch:
    """How a statement's principals name the caller: exactly (the caller, its role, a service,
    or everyone), only through the caller's account (`account`), or not at all (``).

    An account in a same-account resource policy delegates to the account: its Allow grants
    nothing by itself, its Deny applies to every principal of the account (IAM User Guide,
    "AWS JSON policy elements: Principal", AWS account principals)."""
    if principals.everyone:
        found: PrincipalMatch = "exact"
    elif caller.service is not None:
        found = "exact" if caller.service in principals.services else ""
    elif caller.arn in principals.aws or caller.role_arn in principals.aws:
        found = "exact"
    elif f"arn:aws:iam::{caller.account}:root" in principals.aws:
        found = "account"
    else:
        found = ""
    if principals.negated:
        return "" if found else "exact"
    return found


@dataclass(frozen=True)
class Statement:
    where: str
    deny: bool
    actions: tuple[re.Pattern[str], ...]
    not_action: bool
    resources: tuple[re.Pattern[str], ...]
    not_resource: bool
    principals: Principals | None
    conditions: tuple[Condition, ...]

    def covers_action(self, action: str) -> bool:
        hit = any(p.fullmatch(action) for p in self.actions)
        return hit != self.not_action

    def covers_resource(self, resource: str) -> bool:
        hit = _one_pattern(self.resources).fullmatch(resource) is not None
        return hit != self.not_resource

    def conditions_hold(self, context: Context) -> bool:
        return all_hold(self.conditions, context)


@lru_cache(maxsize=4096)
def _one_pattern(patterns: tuple[re.Pattern[str], ...]) -> re.Pattern[str]:
    """Several patterns of one case rule as one alternation (one regex call per statement)."""
    if len(patterns) == 1:
        return patterns[0]
    return re.compile("|".join(f"(?:{p.pattern})" for p in patterns), patterns[0].flags)


@dataclass
class Policy:
    """A compiled policy; `statements_for` remembers, per action, the statements naming it."""

    kind: PolicyKind
    where: str
    statements: tuple[Statement, ...]
    _by_action: dict[str, tuple[Statement, ...]] = field(default_factory=dict, repr=False)

    def statements_for(self, action: str) -> tuple[Statement, ...]:
        key = action.lower()
        found = self._by_action.get(key)
        if found is None:
            found = tuple(s for s in self.statements if s.covers_action(key))
            self._by_action[key] = found
        return found


def _patterns(
    values: list[Any], where: str, *, case_sensitive: bool
) -> tuple[re.Pattern[str], ...]:
    if not values:
        raise PolicyError(f"{where} is empty")
    patterns = []
    for value in values:
        if not isinstance(value, str):
            raise PolicyError(f"{where}: {value!r} is not a string (unresolved intrinsic?)")
        if has_policy_variable(value):
            raise PolicyError(
                f"{where}: {value!r} uses a policy variable; the local evaluator does not "
                "substitute policy variables"
            )
        patterns.append(wildcard(value if case_sensitive else value.lower(), case_sensitive))
    return tuple(patterns)


def _principals(raw: Any, where: str, negated: bool) -> Principals:
    if raw == "*":
        return Principals(True, frozenset(), frozenset(), negated)
    if not isinstance(raw, Mapping) or not set(raw) <= _PRINCIPAL_KINDS:
        raise PolicyError(f"{where}: {raw!r} is not a Principal element")
    aws = set()
    for value in (str(v) for v in as_list(raw.get("AWS"))):
        if value == "*":
            return Principals(True, frozenset(), frozenset(), negated)
        aws.add(f"arn:aws:iam::{value}:root" if re.fullmatch(r"\d{12}", value) else value)
    services = frozenset(str(v) for v in as_list(raw.get("Service")))
    return Principals(False, frozenset(aws), services, negated)


def _one_of(raw: Mapping[str, Any], first: str, second: str, where: str) -> tuple[Any, bool]:
    if (first in raw) == (second in raw):
        raise PolicyError(f"{where} needs exactly one of {first} and {second}")
    return (raw[first], False) if first in raw else (raw[second], True)


def compile_statement(raw: Any, where: str, kind: PolicyKind) -> Statement:
    if not isinstance(raw, Mapping):
        raise PolicyError(f"{where} is not a statement object")
    unknown = set(raw) - _STATEMENT_KEYS
    if unknown:
        raise PolicyError(f"{where}: unknown statement element(s) {sorted(unknown)}")
    effect = raw.get("Effect")
    if effect not in ("Allow", "Deny"):
        raise PolicyError(f"{where}: Effect must be Allow or Deny, not {effect!r}")
    actions, not_action = _one_of(raw, "Action", "NotAction", where)
    resources, not_resource = _one_of(raw, "Resource", "NotResource", where)
    principals = None
    if kind == "resource-based":
        principal, negated = _one_of(raw, "Principal", "NotPrincipal", where)
        principals = _principals(principal, f"{where}.Principal", negated)
    elif "Principal" in raw or "NotPrincipal" in raw:
        raise PolicyError(f"{where}: an identity-based policy has no Principal")
    return Statement(
        where=where,
        deny=effect == "Deny",
        actions=_patterns(as_list(actions), f"{where}.Action", case_sensitive=False),
        not_action=not_action,
        resources=_patterns(as_list(resources), f"{where}.Resource", case_sensitive=True),
        not_resource=not_resource,
        principals=principals,
        conditions=compile_conditions(raw.get("Condition"), where),
    )


def compile_policy(document: Any, where: str, kind: PolicyKind) -> Policy:
    """A policy document (`{"Version": ..., "Statement": [...]}`) compiled; `where` names it."""
    if not isinstance(document, Mapping) or "Statement" not in document:
        raise PolicyError(f"{where} is not a policy document (no Statement)")
    statements = tuple(
        compile_statement(raw, f"{where}.Statement[{_label(raw, index)}]", kind)
        for index, raw in enumerate(as_list(document["Statement"]))
    )
    return Policy(kind, where, statements)


def _label(raw: Any, index: int) -> str:
    return str(raw.get("Sid") or index) if isinstance(raw, Mapping) else str(index)
