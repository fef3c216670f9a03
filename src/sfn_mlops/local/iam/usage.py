"""Least privilege, proven: the request each statement allowed, replayed without it.

The service records, for each identity-policy statement and each action it allowed, the first
request (`Use`): who made it, the action, the resource and the request's condition keys.
`prove` then takes each statement of the template's roles out of its role in turn and decides
its recorded requests again, through the same `Authorizer` the service decides with. A statement
is *needed* when one of them is then denied (the denial is AWS's message, naming the action);
*redundant* when another statement still allows every one (that one is named); *unused* when
nothing it allows was ever asked for.
"""

from __future__ import annotations

import json
from collections.abc import Iterable, Mapping
from dataclasses import dataclass, field
from typing import Any, Literal

from sfn_mlops.local.iam.deployed import DeployedPolicies, Role
from sfn_mlops.local.iam.engine import Authorizer, Decision
from sfn_mlops.local.iam.policy import Caller, Policy, Statement
from sfn_mlops.local.iam.requests import Need

Outcome = Literal["needed", "redundant", "unused"]
#: Where the template's own policies sit in a statement's `where` (AWS managed policies' are
#: named by their ARN: not the template's to trim).
TEMPLATE_PREFIX = "Resources."


@dataclass(frozen=True)
class Use:
    """One request a statement allowed, as the service decided it."""

    statement: str
    action: str = ""
    resource: str = ""
    caller: str = ""  # the caller's ARN as a denial names it: assumed-role/ROLE/SESSION
    role_arn: str | None = None
    context: Mapping[str, Any] = field(default_factory=dict)  # the request's condition keys

    def to_json(self) -> str:
        return json.dumps(
            {
                "statement": self.statement,
                "action": self.action,
                "resource": self.resource,
                "caller": self.caller,
                "role_arn": self.role_arn,
                "context": dict(self.context),
            },
            default=str,
        )

    @classmethod
    def from_json(cls, line: str) -> Use:
        """A recorded line; an older workspace's bare statement name becomes a Use without
        its request (it counts as used but proves nothing)."""
        raw = json.loads(line)
        if isinstance(raw, str):
            return cls(statement=raw)
        return cls(
            statement=raw["statement"],
            action=raw.get("action", ""),
            resource=raw.get("resource", ""),
            caller=raw.get("caller", ""),
            role_arn=raw.get("role_arn"),
            context=raw.get("context") or {},
        )

    @classmethod
    def of(cls, caller: Caller, decision: Decision, context: Mapping[str, Any]) -> Use:
        keys = dict(context)
        keys.update(decision.need.context)
        return cls(
            statement=decision.statement or "",
            action=decision.need.action,
            resource=decision.need.resource,
            caller=caller.arn,
            role_arn=caller.role_arn,
            context=keys,
        )


@dataclass(frozen=True)
class Verdict:
    statement: str
    outcome: Outcome
    use: Use | None = None  # the request denied without the statement (needed) or the last tried
    message: str = ""  # AWS's denial (needed), or the statement that still allows (redundant)


def template_statements(policies: DeployedPolicies) -> list[tuple[Role, Statement]]:
    """The statements of the template's own roles (not AWS managed policies'), in order."""
    return [
        (role, statement)
        for role in policies.roles.values()
        for policy in role.policies
        if policy.where.startswith(TEMPLATE_PREFIX)
        for statement in policy.statements
    ]


def prove(policies: DeployedPolicies, uses: Iterable[Use]) -> list[Verdict]:
    """Each template statement's verdict, its recorded requests replayed without it."""
    by_statement: dict[str, list[Use]] = {}
    for use in uses:
        by_statement.setdefault(use.statement, []).append(use)
    authorizer = policies.authorizer("enforce")
    return [
        _verdict(authorizer, role, statement, by_statement.get(statement.where, []))
        for role, statement in template_statements(policies)
    ]


def _verdict(authorizer: Authorizer, role: Role, statement: Statement, uses: list[Use]) -> Verdict:
    replayable = [use for use in uses if use.action]
    if not uses:
        return Verdict(statement.where, "unused")
    if not replayable:
        return Verdict(statement.where, "redundant", message="no request recorded: run again")
    without = _without(role.policies, statement)
    account = role.arn.split(":")[4]
    last: tuple[Use, Decision] | None = None
    for use in replayable:
        caller = Caller(arn=use.caller, account=account, role_arn=role.arn, policies=without)
        decision = authorizer.decide(
            caller, Need(use.action, use.resource, "replayed"), use.context
        )
        if not decision.allowed:
            return Verdict(statement.where, "needed", use, decision.message(caller))
        last = (use, decision)
    assert last is not None
    use, decision = last
    return Verdict(statement.where, "redundant", use, f"still allowed by {decision.statement}")


def _without(policies: tuple[Policy, ...], removed: Statement) -> tuple[Policy, ...]:
    return tuple(
        Policy(p.kind, p.where, tuple(s for s in p.statements if s is not removed))
        if any(s is removed for s in p.statements)
        else p
        for p in policies
    )


__all__ = ["TEMPLATE_PREFIX", "Use", "Verdict", "prove", "template_statements"]
