"""The local IAM evaluator decides as AWS's policy evaluation logic does: exact decisions for
Allow, Deny, NotAction, NotResource, wildcards, principals and conditions; unknown operators
refused when the policy is compiled; AWS's denial message and each service's error."""

from __future__ import annotations

import logging
from typing import Any

import pytest

from sfn_mlops.local.iam import (
    ANY,
    AccessDenied,
    Authorizer,
    Caller,
    Need,
    PolicyError,
    compile_policy,
)

ACCOUNT = "123456789012"
ROLE = f"arn:aws:iam::{ACCOUNT}:role/Worker"
SESSION = f"arn:aws:sts::{ACCOUNT}:assumed-role/Worker/job-1"
BUCKET = "arn:aws:s3:::data"


def caller(*statements: dict[str, Any]) -> Caller:
    policy = compile_policy({"Statement": list(statements)}, "test-policy", "identity-based")
    return Caller(arn=SESSION, account=ACCOUNT, role_arn=ROLE, policies=(policy,))


def allow(action: Any, resource: Any = "*", **extra: Any) -> dict[str, Any]:
    return {"Effect": "Allow", "Action": action, "Resource": resource, **extra}


def deny(action: Any, resource: Any = "*", **extra: Any) -> dict[str, Any]:
    return {"Effect": "Deny", "Action": action, "Resource": resource, **extra}


def outcome(who: Caller, action: str, resource: str, context: dict[str, Any] | None = None) -> str:
    return Authorizer().decide(who, Need(action, resource, "test"), context).outcome


# Action, Resource and their negations --------------------------------------------------------


def test_an_allow_allows_and_nothing_else_does() -> None:
    who = caller(allow("s3:GetObject", f"{BUCKET}/*"))
    assert outcome(who, "s3:GetObject", f"{BUCKET}/a/b.csv") == "allowed"
    assert outcome(who, "s3:PutObject", f"{BUCKET}/a/b.csv") == "implicit"
    assert outcome(who, "s3:GetObject", "arn:aws:s3:::other/a") == "implicit"


def test_explicit_deny_wins_over_any_allow() -> None:
    who = caller(allow("s3:*", f"{BUCKET}/*"), deny("s3:DeleteObject", f"{BUCKET}/keep/*"))
    assert outcome(who, "s3:DeleteObject", f"{BUCKET}/tmp/x") == "allowed"
    assert outcome(who, "s3:DeleteObject", f"{BUCKET}/keep/x") == "explicit"


def test_actions_are_case_insensitive_resources_case_sensitive() -> None:
    who = caller(allow("SageMaker:describe*", "arn:aws:sagemaker:*:*:endpoint/prod-?"))
    assert (
        outcome(who, "sagemaker:DescribeEndpoint", "arn:aws:sagemaker:r:1:endpoint/prod-a")
        == "allowed"
    )
    assert (
        outcome(who, "sagemaker:DescribeEndpoint", "arn:aws:sagemaker:r:1:endpoint/PROD-a")
        == "implicit"
    )
    assert (
        outcome(who, "sagemaker:DescribeEndpoint", "arn:aws:sagemaker:r:1:endpoint/prod-ab")
        == "implicit"
    )


def test_not_action_allows_everything_but_what_it_names() -> None:
    who = caller({"Effect": "Allow", "NotAction": ["iam:*", "s3:Delete*"], "Resource": "*"})
    assert outcome(who, "s3:GetObject", f"{BUCKET}/a") == "allowed"
    assert outcome(who, "s3:DeleteObject", f"{BUCKET}/a") == "implicit"
    assert outcome(who, "iam:PassRole", ROLE) == "implicit"


def test_not_resource_applies_to_every_other_resource() -> None:
    who = caller(
        allow("s3:GetObject", f"{BUCKET}/*"),
        {"Effect": "Deny", "Action": "s3:GetObject", "NotResource": f"{BUCKET}/public/*"},
    )
    assert outcome(who, "s3:GetObject", f"{BUCKET}/public/a") == "allowed"
    assert outcome(who, "s3:GetObject", f"{BUCKET}/private/a") == "explicit"


def test_an_unknown_name_is_covered_only_by_a_grant_on_every_name() -> None:
    alarms = "arn:aws:cloudwatch:us-east-1:123456789012:alarm:"
    assert (
        outcome(
            caller(allow("cloudwatch:DescribeAlarms", f"{alarms}*")),
            "cloudwatch:DescribeAlarms",
            f"{alarms}{ANY}",
        )
        == "allowed"
    )
    narrow = caller(allow("cloudwatch:DescribeAlarms", f"{alarms}sfn-*"))
    assert outcome(narrow, "cloudwatch:DescribeAlarms", f"{alarms}{ANY}") == "implicit"
    # an action with no resource-level permissions is decided on "*": a scoped grant misses it
    scoped = caller(allow("cloudwatch:PutMetricData", f"{alarms}*"))
    assert outcome(scoped, "cloudwatch:PutMetricData", ANY) == "implicit"
    assert outcome(caller(allow("cloudwatch:PutMetricData")), "cloudwatch:PutMetricData", ANY) == (
        "allowed"
    )


# Conditions ------------------------------------------------------------------------------------


def _conditioned(condition: dict[str, Any]) -> Caller:
    return caller(allow("s3:ListBucket", BUCKET, Condition=condition))


@pytest.mark.parametrize(
    ("condition", "context", "expected"),
    [
        ({"StringEquals": {"s3:prefix": "runs/"}}, {"s3:prefix": "runs/"}, "allowed"),
        ({"StringEquals": {"s3:prefix": "runs/"}}, {"s3:prefix": "Runs/"}, "implicit"),
        ({"StringEquals": {"s3:prefix": "runs/"}}, {}, "implicit"),
        ({"StringNotEquals": {"s3:prefix": "secret/"}}, {"s3:prefix": "runs/"}, "allowed"),
        ({"StringNotEquals": {"s3:prefix": "secret/"}}, {"s3:prefix": "secret/"}, "implicit"),
        # a negated operator holds when the key is missing
        ({"StringNotEquals": {"s3:prefix": "secret/"}}, {}, "allowed"),
        ({"StringEqualsIgnoreCase": {"s3:prefix": "RUNS/"}}, {"s3:prefix": "runs/"}, "allowed"),
        ({"StringNotEqualsIgnoreCase": {"s3:prefix": "RUNS/"}}, {"s3:prefix": "runs/"}, "implicit"),
        ({"StringLike": {"s3:prefix": ["a/*", "runs/?/*"]}}, {"s3:prefix": "runs/1/x"}, "allowed"),
        ({"StringLike": {"s3:prefix": "runs/?/*"}}, {"s3:prefix": "runs/12/x"}, "implicit"),
        ({"StringNotLike": {"s3:prefix": "secret/*"}}, {"s3:prefix": "secret/x"}, "implicit"),
        # key names are case-insensitive, both in the policy and in the context
        ({"StringEquals": {"S3:Prefix": "runs/"}}, {"s3:PREFIX": "runs/"}, "allowed"),
        ({"StringEqualsIfExists": {"s3:prefix": "runs/"}}, {}, "allowed"),
        ({"StringEqualsIfExists": {"s3:prefix": "runs/"}}, {"s3:prefix": "x/"}, "implicit"),
        ({"Null": {"s3:prefix": "true"}}, {}, "allowed"),
        ({"Null": {"s3:prefix": "true"}}, {"s3:prefix": ""}, "implicit"),
        ({"Null": {"s3:prefix": "false"}}, {"s3:prefix": "a"}, "allowed"),
        ({"Bool": {"aws:SecureTransport": "true"}}, {"aws:SecureTransport": True}, "allowed"),
        ({"Bool": {"aws:SecureTransport": "true"}}, {"aws:SecureTransport": "false"}, "implicit"),
        ({"NumericLessThanEquals": {"s3:max-keys": "10"}}, {"s3:max-keys": "10"}, "allowed"),
        ({"NumericLessThan": {"s3:max-keys": "10"}}, {"s3:max-keys": "10"}, "implicit"),
        ({"NumericGreaterThan": {"s3:max-keys": "10"}}, {"s3:max-keys": "x"}, "implicit"),
        ({"NumericNotEquals": {"s3:max-keys": "10"}}, {"s3:max-keys": "11"}, "allowed"),
        (
            {"DateLessThan": {"aws:CurrentTime": "2030-01-01T00:00:00Z"}},
            {"aws:CurrentTime": "2029-12-31T23:59:59Z"},
            "allowed",
        ),
        (
            {"DateGreaterThanEquals": {"aws:EpochTime": "2030-01-01T00:00:00Z"}},
            {"aws:EpochTime": "1893456000"},
            "allowed",
        ),
        ({"IpAddress": {"aws:SourceIp": "127.0.0.0/8"}}, {"aws:SourceIp": "127.0.0.1"}, "allowed"),
        (
            {"NotIpAddress": {"aws:SourceIp": "10.0.0.0/8"}},
            {"aws:SourceIp": "10.1.2.3"},
            "implicit",
        ),
        (
            {"ArnLike": {"aws:SourceArn": "arn:aws:events:*:123456789012:rule/Retrain*"}},
            {"aws:SourceArn": "arn:aws:events:us-east-1:123456789012:rule/RetrainSchedule"},
            "allowed",
        ),
        (
            {"ArnEquals": {"aws:SourceArn": "arn:aws:events:*:123456789012:rule/Retrain*"}},
            {"aws:SourceArn": "arn:aws:events:us-east-1:999999999999:rule/RetrainSchedule"},
            "implicit",
        ),
        (
            {"ArnNotLike": {"aws:SourceArn": "arn:aws:events:*:*:rule/Other"}},
            {"aws:SourceArn": "arn:aws:events:us-east-1:123456789012:rule/Retrain"},
            "allowed",
        ),
        ({"ArnLike": {"aws:SourceArn": "arn:aws:*:*:*:*"}}, {"aws:SourceArn": "nope"}, "implicit"),
        # every operator and every key must hold
        (
            {"StringEquals": {"s3:prefix": "runs/", "s3:delimiter": "/"}},
            {"s3:prefix": "runs/"},
            "implicit",
        ),
    ],
)
def test_condition_operators(
    condition: dict[str, Any], context: dict[str, Any], expected: str
) -> None:
    assert outcome(_conditioned(condition), "s3:ListBucket", BUCKET, context) == expected


@pytest.mark.parametrize(
    ("operator", "tags", "expected"),
    [
        ("ForAnyValue:StringEquals", ["team", "cost"], "allowed"),
        ("ForAnyValue:StringEquals", ["cost"], "implicit"),
        ("ForAnyValue:StringEquals", None, "implicit"),
        ("ForAllValues:StringEquals", ["team", "env"], "allowed"),
        ("ForAllValues:StringEquals", ["team", "cost"], "implicit"),
        ("ForAllValues:StringEquals", None, "allowed"),  # no values: vacuously true
        ("ForAllValues:StringEquals", [], "allowed"),
        ("ForAnyValue:StringNotEquals", ["team", "cost"], "allowed"),
        ("ForAllValues:StringNotLike", ["cost"], "allowed"),
        ("ForAllValues:StringNotLike", ["cost", "env"], "implicit"),
    ],
)
def test_set_operators_on_multivalued_keys(
    operator: str, tags: list[str] | None, expected: str
) -> None:
    who = _conditioned({operator: {"aws:TagKeys": ["team", "env"]}})
    context = {} if tags is None else {"aws:TagKeys": tags}
    assert outcome(who, "s3:ListBucket", BUCKET, context) == expected


def test_a_conditioned_deny_denies_only_when_its_condition_holds() -> None:
    who = caller(
        allow("s3:*", [BUCKET, f"{BUCKET}/*"]),
        deny("s3:*", [BUCKET, f"{BUCKET}/*"], Condition={"Bool": {"aws:SecureTransport": "false"}}),
    )
    assert outcome(who, "s3:GetObject", f"{BUCKET}/a", {"aws:SecureTransport": True}) == "allowed"
    assert outcome(who, "s3:GetObject", f"{BUCKET}/a", {"aws:SecureTransport": False}) == "explicit"


@pytest.mark.parametrize(
    "condition",
    [
        {"StringMatches": {"s3:prefix": "a"}},
        {"ForSomeValues:StringEquals": {"aws:TagKeys": "a"}},
        {"stringequals": {"s3:prefix": "a"}},
        {"NullIfExists": {"s3:prefix": "true"}},
        {"Null": {"s3:prefix": "maybe"}},
        {"NumericEquals": {"s3:max-keys": "ten"}},
        {"DateEquals": {"aws:CurrentTime": "yesterday"}},
        {"Bool": {"aws:SecureTransport": "yes"}},
        {"ArnLike": {"aws:SourceArn": "not-an-arn"}},
        {"StringEquals": {"aws:username": "${aws:username}"}},
    ],
)
def test_what_the_evaluator_cannot_evaluate_is_refused_when_compiled(
    condition: dict[str, Any],
) -> None:
    with pytest.raises(PolicyError, match="test-policy"):
        caller(allow("s3:ListBucket", BUCKET, Condition=condition))


@pytest.mark.parametrize(
    "statement",
    [
        {"Effect": "Allow", "Action": "s3:*"},  # no Resource
        {"Effect": "Allow", "Action": "s3:*", "NotAction": "iam:*", "Resource": "*"},
        {"Effect": "Permit", "Action": "s3:*", "Resource": "*"},
        {"Effect": "Allow", "Action": "s3:*", "Resource": "*", "Principal": "*"},
        {"Effect": "Allow", "Action": "s3:*", "Resource": "arn:aws:s3:::${aws:username}/*"},
        {"Effect": "Allow", "Action": "s3:*", "Resource": {"Fn::GetAtt": ["B", "Arn"]}},
        {"Effect": "Allow", "Action": "s3:*", "Resource": "*", "Conditions": {}},
    ],
)
def test_malformed_statements_are_refused(statement: dict[str, Any]) -> None:
    with pytest.raises(PolicyError):
        caller(statement)


# Resource-based policies -----------------------------------------------------------------------


def _bucket_policy(*statements: dict[str, Any]) -> Authorizer:
    policy = compile_policy({"Statement": list(statements)}, "bucket-policy", "resource-based")
    return Authorizer({BUCKET: policy})


def test_a_resource_policy_naming_the_role_allows_without_an_identity_policy() -> None:
    authorizer = _bucket_policy(allow("s3:GetObject", f"{BUCKET}/*", Principal={"AWS": ROLE}))
    decision = authorizer.decide(caller(), Need("s3:GetObject", f"{BUCKET}/k", "t"))
    assert (decision.outcome, decision.policy_kind) == ("allowed", "resource-based")
    other = Caller(
        arn="arn:aws:sts::123456789012:assumed-role/Other/s",
        account=ACCOUNT,
        role_arn="arn:aws:iam::123456789012:role/Other",
    )
    assert authorizer.decide(other, Need("s3:GetObject", f"{BUCKET}/k", "t")).outcome == "implicit"


def test_an_account_principal_denies_everyone_in_it_but_allows_no_one_by_itself() -> None:
    root = f"arn:aws:iam::{ACCOUNT}:root"
    allows = _bucket_policy(allow("s3:GetObject", f"{BUCKET}/*", Principal={"AWS": ACCOUNT}))
    assert allows.decide(caller(), Need("s3:GetObject", f"{BUCKET}/k", "t")).outcome == "implicit"
    denies = _bucket_policy(deny("s3:GetObject", f"{BUCKET}/*", Principal={"AWS": root}))
    granted = caller(allow("s3:GetObject", f"{BUCKET}/*"))
    decision = denies.decide(granted, Need("s3:GetObject", f"{BUCKET}/k", "t"))
    assert (decision.outcome, decision.policy_kind) == ("explicit", "resource-based")


def test_service_principals_and_not_principal() -> None:
    function = "arn:aws:lambda:us-east-1:123456789012:function:F"
    policy = compile_policy(
        {
            "Statement": [
                allow(
                    "lambda:InvokeFunction",
                    function,
                    Principal={"Service": "events.amazonaws.com"},
                    Condition={"ArnLike": {"AWS:SourceArn": "arn:aws:events:*:*:rule/R"}},
                ),
                {
                    "Effect": "Deny",
                    "NotPrincipal": {"Service": ["events.amazonaws.com"]},
                    "Action": "lambda:InvokeFunction",
                    "Resource": function,
                },
            ]
        },
        "function-policy",
        "resource-based",
    )
    authorizer = Authorizer({function: policy})
    events = Caller(arn="events.amazonaws.com", account=ACCOUNT, service="events.amazonaws.com")
    need = Need("lambda:InvokeFunction", function, "t")
    rule = {"aws:SourceArn": "arn:aws:events:us-east-1:123456789012:rule/R"}
    assert authorizer.decide(events, need, rule).outcome == "allowed"
    assert (
        authorizer.decide(events, need, {"aws:SourceArn": "arn:aws:events:x:1:rule/S"}).outcome
        == "implicit"
    )
    sns = Caller(arn="sns.amazonaws.com", account=ACCOUNT, service="sns.amazonaws.com")
    assert authorizer.decide(sns, need).outcome == "explicit"
    granted = caller(allow("lambda:InvokeFunction", function))
    assert authorizer.decide(granted, need).outcome == "explicit"


# Messages, error codes, modes ------------------------------------------------------------------


def test_denial_messages_are_aws_s() -> None:
    need = Need("s3:GetObject", f"{BUCKET}/k", "t")
    implicit = Authorizer().decide(caller(), need)
    assert implicit.message(caller()) == (
        "User: arn:aws:sts::123456789012:assumed-role/Worker/job-1 is not authorized to "
        "perform: s3:GetObject on resource: arn:aws:s3:::data/k because no identity-based "
        "policy allows the s3:GetObject action"
    )
    explicit = Authorizer().decide(caller(deny("s3:*")), need)
    assert explicit.message(caller()).endswith(
        "on resource: arn:aws:s3:::data/k with an explicit deny in an identity-based policy"
    )
    by_bucket = _bucket_policy(deny("s3:*", f"{BUCKET}/*", Principal="*"))
    assert (
        by_bucket.decide(caller(), need)
        .message(caller())
        .endswith("with an explicit deny in a resource-based policy")
    )
    unscoped = Authorizer().decide(caller(), Need("cloudwatch:PutMetricData", ANY, "t"))
    assert "perform: cloudwatch:PutMetricData on resource: * because" in unscoped.message(caller())
    events = Caller(arn="events.amazonaws.com", account=ACCOUNT, service="events.amazonaws.com")
    to_function = Authorizer().decide(events, Need("lambda:InvokeFunction", "arn:f", "t"))
    assert to_function.message(events).endswith(
        "because no resource-based policy allows the lambda:InvokeFunction action"
    )


@pytest.mark.parametrize(
    ("service", "code", "status"),
    [
        ("s3", "AccessDenied", 403),
        ("sns", "AuthorizationError", 403),
        ("cloudwatch", "AccessDenied", 403),
        ("stepfunctions", "AccessDeniedException", 400),
        ("sagemaker", "AccessDeniedException", 400),
        ("events", "AccessDeniedException", 400),
        ("lambda", "AccessDeniedException", 403),
        ("sagemaker-runtime", "AccessDeniedException", 403),
    ],
)
def test_each_service_answers_a_denial_in_its_own_error(
    service: str, code: str, status: int
) -> None:
    with pytest.raises(AccessDenied) as raised:
        Authorizer().check(caller(), service, [Need("x:Y", "arn:aws:x:::y", "t")])
    assert (raised.value.code, raised.value.status) == (code, status)
    assert raised.value.message.startswith(f"User: {SESSION} is not authorized to perform: x:Y")


def test_modes(caplog: pytest.LogCaptureFixture) -> None:
    need = Need("s3:GetObject", f"{BUCKET}/k", "sagemaker:CreateTrainingJob")
    with pytest.raises(AccessDenied):
        Authorizer(mode="enforce").check(caller(), "s3", [need])
    with caplog.at_level(logging.WARNING, logger="sfn_mlops.local.iam"):
        decisions = Authorizer(mode="warn").check(caller(), "s3", [need])
    assert [d.outcome for d in decisions] == ["implicit"]
    assert "IAM would deny (sagemaker:CreateTrainingJob): User: " in caplog.text
    assert Authorizer(mode="off").check(caller(), "s3", [need]) == []
    with pytest.raises(ValueError, match="not one of enforce, warn, off"):
        Authorizer(mode="audit")


def test_may_list_bucket_tells_a_missing_key_from_a_forbidden_one() -> None:
    lister = caller(allow("s3:ListBucket", BUCKET))
    assert Authorizer().may_list_bucket(lister, "data") is True
    assert Authorizer().may_list_bucket(caller(), "data") is False
    assert Authorizer(mode="warn").may_list_bucket(caller(), "data") is True
    assert Authorizer(mode="off").may_list_bucket(caller(), "data") is True
