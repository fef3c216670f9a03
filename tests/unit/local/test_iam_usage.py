"""Least privilege, proven: each statement taken out, the requests it allowed decided again."""

from __future__ import annotations

from typing import Any

from sfn_mlops.local.iam import DeployedPolicies, Need, base_context, compile_policy
from sfn_mlops.local.iam.deployed import Role
from sfn_mlops.local.iam.usage import Use, prove

ACCOUNT = "123456789012"
ROLE_ARN = f"arn:aws:iam::{ACCOUNT}:role/Worker"
BUCKET = "arn:aws:s3:::data"
WHERE = "Resources.Worker.Policies[p]"


def _policies(*statements: dict[str, Any]) -> DeployedPolicies:
    policy = compile_policy({"Statement": list(statements)}, WHERE, "identity-based")
    deployed = DeployedPolicies(account=ACCOUNT, region="us-east-1")
    deployed.roles[ROLE_ARN] = Role("Worker", "Worker", ROLE_ARN, (policy,))
    return deployed


def _allow(sid: str, action: str, resource: str) -> dict[str, Any]:
    return {"Sid": sid, "Effect": "Allow", "Action": action, "Resource": resource}


def _uses(deployed: DeployedPolicies, *requests: tuple[str, str]) -> list[Use]:
    """What the service records: the deciding statement of each allowed request."""
    caller = deployed.role(ROLE_ARN, "session")
    authorizer = deployed.authorizer()
    context = base_context(caller, "us-east-1")
    found = []
    for action, resource in requests:
        decision = authorizer.decide(caller, Need(action, resource, "test"), context)
        assert decision.allowed
        found.append(Use.of(caller, decision, context))
    return found


def test_a_statement_a_request_needs_is_needed_and_its_denial_names_the_action() -> None:
    deployed = _policies(_allow("Read", "s3:GetObject", f"{BUCKET}/*"))
    (verdict,) = prove(deployed, _uses(deployed, ("s3:GetObject", f"{BUCKET}/k")))
    assert verdict.outcome == "needed"
    assert verdict.statement == f"{WHERE}.Statement[Read]"
    assert verdict.message == (
        f"User: arn:aws:sts::{ACCOUNT}:assumed-role/Worker/session is not authorized to "
        f"perform: s3:GetObject on resource: {BUCKET}/k because no identity-based policy "
        "allows the s3:GetObject action"
    )


def test_a_statement_another_covers_is_redundant_and_names_that_one() -> None:
    deployed = _policies(
        _allow("Narrow", "s3:GetObject", f"{BUCKET}/runs/*"),
        _allow("Wide", "s3:*", f"{BUCKET}/*"),
    )
    uses = _uses(deployed, ("s3:GetObject", f"{BUCKET}/runs/k"), ("s3:PutObject", f"{BUCKET}/x"))
    narrow, wide = prove(deployed, uses)
    assert (narrow.outcome, wide.outcome) == ("redundant", "needed")
    assert narrow.message == f"still allowed by {WHERE}.Statement[Wide]"


def test_a_statement_nothing_asked_for_is_unused() -> None:
    deployed = _policies(_allow("Read", "s3:GetObject", "*"), _allow("Idle", "sns:Publish", "*"))
    read, idle = prove(deployed, _uses(deployed, ("s3:GetObject", f"{BUCKET}/k")))
    assert (read.outcome, idle.outcome) == ("needed", "unused")


def test_one_needed_action_of_several_makes_the_statement_needed() -> None:
    """The first statement that allows a request is the one credited with it: a later one that
    only ever repeats it is unused (taken out, nothing would change)."""
    deployed = _policies(
        _allow("Both", "s3:*Object", f"{BUCKET}/*"), _allow("Get", "s3:GetObject", "*")
    )
    uses = _uses(deployed, ("s3:GetObject", f"{BUCKET}/k"), ("s3:PutObject", f"{BUCKET}/k"))
    both, get = prove(deployed, uses)
    assert both.outcome == "needed" and both.use is not None
    assert both.use.action == "s3:PutObject"
    assert get.outcome == "unused"


def test_a_recorded_use_survives_its_line_and_an_old_bare_line_counts_as_used() -> None:
    deployed = _policies(_allow("Read", "s3:GetObject", f"{BUCKET}/*"))
    (use,) = _uses(deployed, ("s3:GetObject", f"{BUCKET}/k"))
    assert Use.from_json(use.to_json()) == use
    old = Use.from_json(f'"{WHERE}.Statement[Read]"')
    (verdict,) = prove(deployed, [old])
    assert verdict.outcome == "redundant" and "run again" in verdict.message
