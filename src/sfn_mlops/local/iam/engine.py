"""The decision, as AWS's policy evaluation logic makes it for a request within one account.

From the IAM User Guide, "Policy evaluation logic"
(https://docs.aws.amazon.com/IAM/latest/UserGuide/reference_policies_evaluation-logic.html) and
"Policy evaluation for requests within a single account"
(https://docs.aws.amazon.com/IAM/latest/UserGuide/reference_policies_evaluation-logic_policy-eval-basics.html):

1. an explicit Deny in any applicable policy (identity-based, or the resource's policy naming
   the caller) denies;
2. otherwise an Allow in an identity-based policy, or in the resource-based policy of the same
   account naming the caller, allows;
3. otherwise the request is implicitly denied.

SCPs, RCPs, permissions boundaries, session policies and KMS key policies are not modelled (the
template has none). A denial carries AWS's message (IAM User Guide, "Troubleshoot access denied
error messages", https://docs.aws.amazon.com/IAM/latest/UserGuide/troubleshoot_access-denied.html):
`User: ARN is not authorized to perform: ACTION on resource: RESOURCE because no identity-based
policy allows the ACTION action`, or `... with an explicit deny in an identity-based policy`
(`resource-based` when the resource's policy denies).
"""

from __future__ import annotations

import logging
import time
from collections.abc import Iterable, Mapping
from dataclasses import dataclass
from datetime import datetime, timezone
from typing import Any, Literal

from sfn_mlops.local.errors import AwsError
from sfn_mlops.local.iam.policy import ANY, Caller, Policy, PolicyKind, match_principal, shown
from sfn_mlops.local.iam.requests import Need

log = logging.getLogger("sfn_mlops.local.iam")

Mode = Literal["enforce", "warn", "off"]
MODES: tuple[Mode, ...] = ("enforce", "warn", "off")
Outcome = Literal["allowed", "implicit", "explicit"]

#: How each service answers a denial: botocore service -> (error code, HTTP status). JSON
#: services answer AccessDeniedException (their "Common Errors": HTTP 400; Lambda's and
#: SageMaker runtime's REST APIs 403); S3 its AccessDenied (403); SNS AuthorizationError (403,
#: botocore's AuthorizationErrorException); CloudWatch's query-compatible API AccessDenied (403).
DENIAL_ERRORS: dict[str, tuple[str, int]] = {
    "s3": ("AccessDenied", 403),
    "sns": ("AuthorizationError", 403),
    "cloudwatch": ("AccessDenied", 403),
    "stepfunctions": ("AccessDeniedException", 400),
    "sagemaker": ("AccessDeniedException", 400),
    "events": ("AccessDeniedException", 400),
    "lambda": ("AccessDeniedException", 403),
    "sagemaker-runtime": ("AccessDeniedException", 403),
}


@dataclass(frozen=True)
class Decision:
    need: Need
    outcome: Outcome
    policy_kind: PolicyKind  # the kind that decided (for a denial: the message's)
    statement: str | None  # the statement that allowed or explicitly denied

    @property
    def allowed(self) -> bool:
        return self.outcome == "allowed"

    def message(self, caller: Caller) -> str:
        action, resource = self.need.action, shown(self.need.resource)
        head = f"User: {caller.arn} is not authorized to perform: {action} on resource: {resource}"
        article = "an" if self.policy_kind == "identity-based" else "a"
        if self.outcome == "explicit":
            return f"{head} with an explicit deny in {article} {self.policy_kind} policy"
        return f"{head} because no {self.policy_kind} policy allows the {action} action"


class AccessDenied(AwsError):
    """A denial in the service's own error shape; `decision` says why."""

    def __init__(self, service: str, caller: Caller, decision: Decision) -> None:
        code, status = DENIAL_ERRORS.get(service, ("AccessDeniedException", 400))
        super().__init__(code, decision.message(caller), status)
        self.decision = decision


def _bucket_arn(resource: str) -> str:
    return resource.split("/", 1)[0]


def resource_policy_key(resource: str) -> str:
    """The ARN whose resource-based policy governs `resource` (an object's: its bucket's)."""
    return _bucket_arn(resource) if resource.startswith("arn:aws:s3:::") else resource


def base_context(
    caller: Caller,
    region: str,
    *,
    now: float | None = None,
    secure_transport: bool = True,
    **keys: Any,
) -> dict[str, Any]:
    """The global condition keys of a local request.

    aws:SecureTransport is true: the local service answers on loopback only, where the traffic
    never leaves the machine; a TLS-only bucket policy (`aws:SecureTransport` false -> Deny)
    then behaves as it does for the HTTPS requests boto3 makes to AWS. Extra keys are added as
    given, e.g. `**{"aws:SourceArn": rule_arn}` for an EventBridge target's call."""
    moment = time.time() if now is None else now
    context: dict[str, Any] = {
        "aws:SecureTransport": secure_transport,
        "aws:RequestedRegion": region,
        "aws:CurrentTime": datetime.fromtimestamp(moment, timezone.utc).strftime(
            "%Y-%m-%dT%H:%M:%SZ"
        ),
        "aws:EpochTime": str(int(moment)),
        "aws:PrincipalAccount": caller.account,
    }
    if caller.service is not None:
        context["aws:PrincipalServiceName"] = caller.service
    else:
        context["aws:PrincipalArn"] = caller.role_arn or caller.arn
    context.update(keys)
    return context


def lowered(context: Mapping[str, Any] | None) -> dict[str, Any]:
    """A context with its keys lowercased (condition key names are case-insensitive)."""
    return {key.lower(): value for key, value in (context or {}).items()}


def _with_need(context: dict[str, Any], need: Need) -> dict[str, Any]:
    if not need.context:
        return context
    merged = dict(context)
    merged.update((key.lower(), value) for key, value in need.context)
    return merged


def _identity_verdict(caller: Caller, need: Need, ctx: Mapping[str, Any]) -> Decision | None:
    """An explicit deny or an allow of the caller's identity-based policies (None: neither)."""
    allowed: Decision | None = None
    for policy in caller.policies:
        for statement in policy.statements_for(need.action):
            if statement.covers_resource(need.resource) and statement.conditions_hold(ctx):
                if statement.deny:
                    return Decision(need, "explicit", "identity-based", statement.where)
                allowed = allowed or Decision(need, "allowed", "identity-based", statement.where)
    return allowed


def _resource_verdict(
    policy: Policy, caller: Caller, need: Need, ctx: Mapping[str, Any]
) -> Decision | None:
    """An explicit deny or an allow of the resource's policy for this caller (None: neither).
    A statement naming the caller only through its account denies, but does not allow."""
    allowed: Decision | None = None
    for statement in policy.statements_for(need.action):
        if statement.principals is None:
            continue
        named = match_principal(statement.principals, caller)
        if not named or not statement.covers_resource(need.resource):
            continue
        if not statement.conditions_hold(ctx):
            continue
        if statement.deny:
            return Decision(need, "explicit", "resource-based", statement.where)
        if named == "exact":
            allowed = allowed or Decision(need, "allowed", "resource-based", statement.where)
    return allowed


class Authorizer:
    """Decides requests against the identity policies a `Caller` carries and the resource-based
    policies it holds (by resource ARN), in one of three modes:

    - `enforce` (the default): a denial raises `AccessDenied`;
    - `warn`: a denial is logged (`sfn_mlops.local.iam`, WARNING) and the request goes on;
    - `off`: nothing is evaluated.
    """

    def __init__(
        self, resource_policies: Mapping[str, Policy] | None = None, mode: str = "enforce"
    ) -> None:
        if mode not in MODES:
            raise ValueError(f"IAM mode {mode!r} is not one of {', '.join(MODES)}")
        self.mode: Mode = mode  # type: ignore[assignment]
        self.resource_policies = dict(resource_policies or {})

    def decide(
        self, caller: Caller, need: Need, context: Mapping[str, Any] | None = None
    ) -> Decision:
        """The decision for one need, whatever the mode."""
        return self._decide(caller, need, lowered(context))

    def _decide(self, caller: Caller, need: Need, context: dict[str, Any]) -> Decision:
        ctx = _with_need(context, need)
        identity = _identity_verdict(caller, need, ctx)
        if identity is not None and not identity.allowed:
            return identity
        resource_policy = self.resource_policies.get(resource_policy_key(need.resource))
        resource = None
        if resource_policy is not None:
            resource = _resource_verdict(resource_policy, caller, need, ctx)
            if resource is not None and not resource.allowed:
                return resource
        verdict = identity or resource
        if verdict is not None:
            return verdict
        kind: PolicyKind = "resource-based" if caller.is_service else "identity-based"
        return Decision(need, "implicit", kind, None)

    def check(
        self,
        caller: Caller,
        service: str,
        needs: Iterable[Need],
        context: Mapping[str, Any] | None = None,
    ) -> list[Decision]:
        """Every need decided; in `enforce` mode the first denial raises `AccessDenied` (in the
        order of `needs`: the call's own action first, then what it depends on)."""
        if self.mode == "off":
            return []
        ctx = lowered(context)
        decisions = [self._decide(caller, need, ctx) for need in needs]
        for decision in decisions:
            if decision.allowed:
                continue
            if self.mode == "enforce":
                raise AccessDenied(service, caller, decision)
            log.warning("IAM would deny (%s): %s", decision.need.reason, decision.message(caller))
        return decisions

    def may(
        self, caller: Caller, action: str, resource: str, context: Mapping[str, Any] | None = None
    ) -> bool:
        """Whether `caller` may `action` on `resource` (`off` and `warn`: always, as those modes
        let every request through)."""
        if self.mode == "off":
            return True
        decision = self.decide(caller, Need(action, resource, "asked by the service"), context)
        if not decision.allowed and self.mode == "warn":
            log.warning("IAM would deny: %s", decision.message(caller))
            return True
        return decision.allowed

    def may_list_bucket(
        self, caller: Caller, bucket: str, context: Mapping[str, Any] | None = None
    ) -> bool:
        """For a missing key: S3 answers NoSuchKey (404) only to a caller that may
        s3:ListBucket the bucket, and AccessDenied (403) to any other (Amazon S3 API Reference,
        GetObject, "Permissions": https://docs.aws.amazon.com/AmazonS3/latest/API/API_GetObject.html)."""
        return self.may(caller, "s3:ListBucket", f"arn:aws:s3:::{bucket}", context)


__all__ = [
    "ANY",
    "AccessDenied",
    "Authorizer",
    "DENIAL_ERRORS",
    "Decision",
    "base_context",
]
