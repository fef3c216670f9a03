"""The policies a deployed template puts in force: each role's identity policies and the
resource-based policies of its buckets, functions and topics, compiled at deploy.

The template is plain CloudFormation, after the SAM transform (so SAM's policy templates and
event sources are already roles, policies and `AWS::Lambda::Permission`s), resolved in the
stand-in stack of `sfn_mlops.intrinsics` (the local account and region). A role's documents
come from `sfn_mlops.policies.role_policies`, shared with the offline AWS checks; an AWS
managed policy whose document is not shipped, or a document the evaluator cannot evaluate as
AWS does, is an error here, at deploy, never a silent allow later.
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass, field
from typing import Any

from sfn_mlops.intrinsics import ACCOUNT, REGION, Stack
from sfn_mlops.local.iam.conditions import PolicyError
from sfn_mlops.local.iam.engine import Authorizer
from sfn_mlops.local.iam.policy import Caller, Policy, compile_policy
from sfn_mlops.policies import managed_policies, role_policies

ADMINISTRATOR_ACCESS = "arn:aws:iam::aws:policy/AdministratorAccess"


@dataclass(frozen=True)
class Role:
    logical_id: str
    name: str
    arn: str
    policies: tuple[Policy, ...]


@dataclass
class DeployedPolicies:
    """Every role's compiled identity policies and every resource-based policy, by ARN."""

    account: str = ACCOUNT
    region: str = REGION
    roles: dict[str, Role] = field(default_factory=dict)  # by role ARN
    resource_policies: dict[str, Policy] = field(default_factory=dict)

    @classmethod
    def from_template(
        cls,
        template: dict[str, Any],
        *,
        stack_name: str = "sfn-mlops",
        parameters: dict[str, str] | None = None,
    ) -> DeployedPolicies:
        """Compile the policies of a SAM-translated template (raises `PolicyError`)."""
        stack = Stack(template, stack_name=stack_name, parameters=parameters)
        found = cls()
        for logical_id in stack.of_type("AWS::IAM::Role"):
            role = _role(stack, logical_id)
            found.roles[role.arn] = role
        found.resource_policies.update(_bucket_policies(stack))
        found.resource_policies.update(_topic_policies(stack, found.account))
        found.resource_policies.update(_function_policies(stack))
        return found

    def role(self, role: str, session: str) -> Caller:
        """A session of a role (by ARN or name), as STS names it: assumed-role/ROLE/SESSION."""
        arn = role if role.startswith("arn:") else f"arn:aws:iam::{self.account}:role/{role}"
        found = self.roles.get(arn)
        if found is None:
            raise KeyError(f"no role {role} in the deployed template")
        return Caller(
            arn=f"arn:aws:sts::{self.account}:assumed-role/{found.name}/{session}",
            account=self.account,
            role_arn=found.arn,
            policies=found.policies,
        )

    def administrator(self, user: str = "sfn-mlops") -> Caller:
        """The CLI's user: an account administrator (AWS's AdministratorAccess policy)."""
        policy = managed_policies()[ADMINISTRATOR_ACCESS]
        where = f"{ADMINISTRATOR_ACCESS} ({policy.version_id})"
        return Caller(
            arn=f"arn:aws:iam::{self.account}:user/{user}",
            account=self.account,
            policies=(compile_policy(policy.document, where, "identity-based"),),
        )

    def service(self, name: str) -> Caller:
        """An AWS service principal (events.amazonaws.com, ...): only resource policies grant it."""
        return Caller(arn=name, account=self.account, service=name)

    def authorizer(self, mode: str = "enforce") -> Authorizer:
        return Authorizer(self.resource_policies, mode)


def _role(stack: Stack, logical_id: str) -> Role:
    attached = role_policies(stack, logical_id)
    if attached.unknown_managed:
        raise PolicyError(
            f"Resources.{logical_id}: the AWS managed policies {attached.unknown_managed} are "
            "not shipped; add their documents, with the version id, to "
            "src/sfn_mlops/data/aws_managed_policies.json"
        )
    policies = tuple(
        compile_policy(doc.document, doc.where, "identity-based") for doc in attached.documents
    )
    return Role(logical_id, attached.role_name, attached.role_arn, policies)


def _properties(stack: Stack, logical_id: str) -> dict[str, Any]:
    resolved: dict[str, Any] = stack.resolve(stack.resources[logical_id].get("Properties", {}))
    return resolved


def _bucket_policies(stack: Stack) -> dict[str, Policy]:
    found = {}
    for logical_id in stack.of_type("AWS::S3::BucketPolicy"):
        properties = _properties(stack, logical_id)
        bucket = f"arn:aws:s3:::{properties['Bucket']}"
        where = f"Resources.{logical_id}"
        found[bucket] = compile_policy(properties["PolicyDocument"], where, "resource-based")
    return found


def default_topic_policy(topic_arn: str, account: str) -> dict[str, Any]:
    """The access policy SNS gives a topic created without one: the account's own principals
    (AWS:SourceOwner) may use it (Amazon SNS Developer Guide, "Example cases for Amazon SNS
    access control"; the policy `GetTopicAttributes` returns for a new topic)."""
    actions = [
        "GetTopicAttributes", "SetTopicAttributes", "AddPermission", "RemovePermission",
        "DeleteTopic", "Subscribe", "ListSubscriptionsByTopic", "Publish",
    ]  # fmt: skip
    return {
        "Version": "2008-10-17",
        "Id": "__default_policy_ID",
        "Statement": [
            {
                "Sid": "__default_statement_ID",
                "Effect": "Allow",
                "Principal": {"AWS": "*"},
                "Action": [f"SNS:{a}" for a in actions],
                "Resource": topic_arn,
                "Condition": {"StringEquals": {"AWS:SourceOwner": account}},
            }
        ],
    }


def _topic_policies(stack: Stack, account: str) -> dict[str, Policy]:
    found = {}
    for logical_id in stack.of_type("AWS::SNS::TopicPolicy", "AWS::SNS::TopicInlinePolicy"):
        properties = _properties(stack, logical_id)
        topics = properties.get("Topics") or [properties.get("TopicArn")]
        for topic in topics:
            where = f"Resources.{logical_id}"
            found[str(topic)] = compile_policy(
                properties["PolicyDocument"], where, "resource-based"
            )
    for logical_id in stack.of_type("AWS::SNS::Topic"):
        topic = str(stack.ref(logical_id))
        if topic not in found:
            where = f"Resources.{logical_id} (SNS's default topic policy)"
            document = default_topic_policy(topic, account)
            found[topic] = compile_policy(document, where, "resource-based")
    return found


def _function_arn(stack: Stack, name: str) -> str:
    if name.startswith("arn:"):
        return name
    return f"arn:aws:lambda:{REGION}:{ACCOUNT}:function:{name}"


def permission_statement(properties: Mapping[str, Any], function_arn: str) -> dict[str, Any]:
    """The statement Lambda adds to a function's policy for an `AWS::Lambda::Permission`
    (AddPermission): the principal, the action on the function, SourceArn as an `ArnLike
    AWS:SourceArn` condition and SourceAccount as `StringEquals AWS:SourceAccount` (Lambda
    Developer Guide, "Viewing resource-based IAM policies in Lambda",
    https://docs.aws.amazon.com/lambda/latest/dg/access-control-resource-based.html)."""
    unsupported = {"EventSourceToken", "FunctionUrlAuthType", "InvokedViaFunctionUrl"}
    if unsupported & set(properties):
        raise PolicyError(f"Lambda permission properties {sorted(unsupported & set(properties))}")
    principal = str(properties["Principal"])
    if principal == "*":
        principal_element: Any = "*"
    elif principal.endswith(".amazonaws.com"):
        principal_element = {"Service": principal}
    else:
        principal_element = {"AWS": principal}
    conditions: dict[str, dict[str, str]] = {}
    if "SourceArn" in properties:
        conditions["ArnLike"] = {"AWS:SourceArn": str(properties["SourceArn"])}
    if "SourceAccount" in properties:
        conditions["StringEquals"] = {"AWS:SourceAccount": str(properties["SourceAccount"])}
    if "PrincipalOrgID" in properties:
        conditions.setdefault("StringEquals", {})["aws:PrincipalOrgID"] = str(
            properties["PrincipalOrgID"]
        )
    statement: dict[str, Any] = {
        "Effect": "Allow",
        "Principal": principal_element,
        "Action": str(properties["Action"]),
        "Resource": function_arn,
    }
    if conditions:
        statement["Condition"] = conditions
    return statement


def _function_policies(stack: Stack) -> dict[str, Policy]:
    statements: dict[str, list[tuple[str, dict[str, Any]]]] = {}
    for logical_id in stack.of_type("AWS::Lambda::Permission"):
        properties = _properties(stack, logical_id)
        function = _function_arn(stack, str(properties["FunctionName"]))
        try:
            statement = permission_statement(properties, function)
        except PolicyError as error:
            raise PolicyError(f"Resources.{logical_id}: {error}") from error
        statements.setdefault(function, []).append((logical_id, {"Sid": logical_id, **statement}))
    found = {}
    for function, entries in statements.items():
        document = {"Version": "2012-10-17", "Statement": [s for _, s in entries]}
        where = f"the resource policy of {function} ({', '.join(lid for lid, _ in entries)})"
        found[function] = compile_policy(document, where, "resource-based")
    return found
