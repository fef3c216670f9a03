"""The real template's policies in the local IAM engine: every role compiles, the AWS managed
policies it names ship pinned, and the roles are granted what the pipeline asks of them (and
not more, where the template scopes them)."""

from __future__ import annotations

import copy
from pathlib import Path
from typing import Any

import pytest

from sfn_mlops.aws.translate import translate
from sfn_mlops.local.iam import (
    AccessDenied,
    DeployedPolicies,
    PolicyError,
    base_context,
    needs,
    task_needs,
)
from sfn_mlops.policies import managed_policies
from sfn_mlops.template import load

ROOT = Path(__file__).resolve().parents[3]
R, A = "us-east-1", "123456789012"
BUCKET = "sfn-mlops-artifactbucket"
SAGEMAKER_ROLE = f"arn:aws:iam::{A}:role/SageMakerExecutionRole"


@pytest.fixture(scope="module")
def template() -> dict[str, Any]:
    return translate(load(ROOT / "template.yaml"), ROOT)


@pytest.fixture(scope="module")
def deployed(template: dict[str, Any]) -> DeployedPolicies:
    return DeployedPolicies.from_template(template)


def decide(
    deployed: DeployedPolicies, role: str, service: str, operation: str, params: dict
) -> list[str]:
    caller = deployed.role(role, session="test")
    authorizer = deployed.authorizer()
    ctx = base_context(caller, R)
    return [
        authorizer.decide(caller, need, ctx).outcome
        for need in needs(service, operation, params, R, A)
    ]


def test_every_role_of_the_template_compiles(template: dict, deployed: DeployedPolicies) -> None:
    roles = [lid for lid, r in template["Resources"].items() if r["Type"] == "AWS::IAM::Role"]
    assert len(roles) >= 17
    assert sorted(r.logical_id for r in deployed.roles.values()) == sorted(roles)
    assert all(role.policies for role in deployed.roles.values())
    assert sorted(deployed.resource_policies) == [
        f"arn:aws:lambda:{R}:{A}:function:ABTestFunction",
        f"arn:aws:lambda:{R}:{A}:function:ApprovalDecisionFunction",
        f"arn:aws:lambda:{R}:{A}:function:RetrainFunction",
        f"arn:aws:s3:::{BUCKET}",
        f"arn:aws:sns:{R}:{A}:FailureTopic",
    ]


def test_the_managed_policies_the_template_names_ship_pinned(template: dict) -> None:
    named = {
        arn
        for resource in template["Resources"].values()
        for arn in (resource.get("Properties") or {}).get("ManagedPolicyArns", [])
    }
    assert named == {
        "arn:aws:iam::aws:policy/service-role/AWSLambdaBasicExecutionRole",
        "arn:aws:iam::aws:policy/AWSXrayWriteOnlyAccess",
    }
    shipped = managed_policies()
    assert named <= set(shipped)
    assert shipped["arn:aws:iam::aws:policy/AWSXrayWriteOnlyAccess"].version_id == "v2"
    assert shipped["arn:aws:iam::aws:policy/service-role/AWSLambdaBasicExecutionRole"].document[
        "Statement"
    ][0]["Action"] == ["logs:CreateLogGroup", "logs:CreateLogStream", "logs:PutLogEvents"]


def test_clarify_shadow_endpoint_only_under_clarify_s_names(deployed: DeployedPolicies) -> None:
    role = "SageMakerExecutionRole"
    config = {"EndpointConfigName": "sm-clarify-config-1700000000-abcd"}
    ok = decide(
        deployed, role, "sagemaker", "CreateEndpoint", {"EndpointName": "sm-clarify-abc", **config}
    )
    assert ok == ["allowed", "allowed"]
    other = decide(
        deployed, role, "sagemaker", "CreateEndpoint", {"EndpointName": "other", **config}
    )
    assert other == ["implicit", "allowed"]
    with pytest.raises(AccessDenied) as raised:
        caller = deployed.role(role, session="SageMaker")
        deployed.authorizer().check(
            caller,
            "sagemaker",
            needs("sagemaker", "CreateEndpoint", {"EndpointName": "other", **config}, R, A),
            base_context(caller, R),
        )
    assert raised.value.code == "AccessDeniedException"
    assert raised.value.message == (
        f"User: arn:aws:sts::{A}:assumed-role/SageMakerExecutionRole/SageMaker is not authorized "
        f"to perform: sagemaker:CreateEndpoint on resource: arn:aws:sagemaker:{R}:{A}:endpoint/"
        "other because no identity-based policy allows the sagemaker:CreateEndpoint action"
    )


def test_deploy_model_may_describe_its_rollback_alarms(deployed: DeployedPolicies) -> None:
    params = {
        "EndpointName": "sfn-mlops",
        "EndpointConfigName": "sfn-mlops-2",
        "DeploymentConfig": {
            "AutoRollbackConfiguration": {"Alarms": [{"AlarmName": "sfn-mlops-5xx-errors"}]}
        },
    }
    assert decide(deployed, "DeployModelFunctionRole", "sagemaker", "UpdateEndpoint", params) == [
        "allowed",
        "allowed",
        "allowed",
    ]
    # ... which the register function, say, may not
    assert decide(
        deployed, "RegisterModelFunctionRole", "cloudwatch", "DescribeAlarms", {"AlarmNames": ["x"]}
    ) == ["implicit"]


def test_the_bucket_policy_denies_requests_without_tls(deployed: DeployedPolicies) -> None:
    key = {"Bucket": BUCKET, "Key": "runs/r1/evaluation/evaluation.json"}
    role = "ReadEvaluationFunctionRole"
    assert decide(deployed, role, "s3", "GetObject", key) == ["allowed"]  # loopback: secure
    caller = deployed.role(role, session="ReadEvaluationFunction")
    decision = deployed.authorizer().decide(
        caller,
        needs("s3", "GetObject", key, R, A)[0],
        base_context(caller, R, secure_transport=False),
    )
    assert decision.outcome == "explicit"
    assert decision.statement == "Resources.ArtifactBucketPolicy.Statement[DenyInsecureTransport]"
    assert decision.message(caller).endswith("with an explicit deny in a resource-based policy")
    admin = deployed.administrator()
    authorizer = deployed.authorizer()
    need = needs("s3", "PutObject", key, R, A)[0]
    assert authorizer.decide(admin, need, base_context(admin, R)).outcome == "allowed"
    assert (
        authorizer.decide(admin, need, base_context(admin, R, secure_transport=False)).outcome
        == "explicit"
    )


def test_missing_keys_are_404_only_for_roles_that_may_list(deployed: DeployedPolicies) -> None:
    authorizer = deployed.authorizer()
    for role, lists in [
        ("BiasGateFunctionRole", True),
        ("ApprovalDecisionFunctionRole", True),
        ("PrepareClarifyFunctionRole", False),
    ]:
        caller = deployed.role(role, session="f")
        assert authorizer.may_list_bucket(caller, BUCKET, base_context(caller, R)) is lists, role


def test_eventbridge_invokes_a_function_only_from_its_rule(deployed: DeployedPolicies) -> None:
    events = deployed.service("events.amazonaws.com")
    authorizer = deployed.authorizer()
    need = needs("lambda", "Invoke", {"FunctionName": "RetrainFunction"}, R, A)[0]
    for rule, expected in [
        ("RetrainFunctionMonitoringAlarm", "allowed"),
        ("RetrainFunctionRetrainSchedule", "allowed"),
        ("ApprovalDecisionFunctionModelPackageDecided", "implicit"),
    ]:
        context = base_context(
            events, R, **{"aws:SourceArn": f"arn:aws:events:{R}:{A}:rule/{rule}"}
        )
        assert authorizer.decide(events, need, context).outcome == expected, rule
    other = needs("lambda", "Invoke", {"FunctionName": "DeployModelFunction"}, R, A)[0]
    assert authorizer.decide(events, other, base_context(events, R)).outcome == "implicit"


def test_the_pipeline_role_runs_its_sync_jobs(deployed: DeployedPolicies) -> None:
    caller = deployed.role("TrainingPipelineRole", session="run-1")
    authorizer = deployed.authorizer()
    for resource, params in [
        (
            "arn:aws:states:::sagemaker:createTrainingJob.sync",
            {"TrainingJobName": "run-1-train", "RoleArn": SAGEMAKER_ROLE},
        ),
        (
            "arn:aws:states:::sagemaker:createProcessingJob.sync",
            {"ProcessingJobName": "run-1-eval", "RoleArn": SAGEMAKER_ROLE},
        ),
        (
            "arn:aws:states:::sagemaker:createHyperParameterTuningJob.sync",
            {
                "HyperParameterTuningJobName": "run-1-tune",
                "TrainingJobDefinition": {"RoleArn": SAGEMAKER_ROLE},
            },
        ),
        (
            "arn:aws:states:::sagemaker:createModel",
            {"ModelName": "run-1", "ExecutionRoleArn": SAGEMAKER_ROLE},
        ),
        (
            "arn:aws:states:::lambda:invoke",
            {"FunctionName": f"arn:aws:lambda:{R}:{A}:function:ReadEvaluationFunction"},
        ),
        ("arn:aws:states:::sns:publish", {"TopicArn": f"arn:aws:sns:{R}:{A}:FailureTopic"}),
        ("arn:aws:states:::aws-sdk:sagemaker:describeEndpoint", {"EndpointName": "sfn-mlops"}),
    ]:
        wanted = task_needs(resource, params, R, A)
        decisions = authorizer.check(caller, "stepfunctions", wanted, base_context(caller, R))
        assert all(d.allowed for d in decisions), resource
    # the training pipeline's role does not run transform jobs: the batch pipeline's does
    transform = task_needs(
        "arn:aws:states:::sagemaker:createTransformJob.sync", {"TransformJobName": "b"}, R, A
    )
    with pytest.raises(AccessDenied, match="sagemaker:CreateTransformJob"):
        authorizer.check(caller, "stepfunctions", transform, base_context(caller, R))
    batch = deployed.role("BatchInferenceRole", session="b")
    assert all(
        d.allowed
        for d in authorizer.check(batch, "stepfunctions", transform, base_context(batch, R))
    )


def test_pass_role_only_to_sagemaker(deployed: DeployedPolicies) -> None:
    caller = deployed.role("TrainingPipelineRole", session="run-1")
    params = {"name": "M", "definition": "{}", "roleArn": SAGEMAKER_ROLE}
    passes = [
        n
        for n in needs("stepfunctions", "CreateStateMachine", params, R, A)
        if n.action == "iam:PassRole"
    ]
    decision = deployed.authorizer().decide(caller, passes[0], base_context(caller, R))
    assert decision.outcome == "implicit"  # iam:PassedToService is states.amazonaws.com here


def test_the_failure_topic_keeps_sns_s_default_policy(deployed: DeployedPolicies) -> None:
    topic = f"arn:aws:sns:{R}:{A}:FailureTopic"
    policy = deployed.resource_policies[topic]
    assert policy.where == "Resources.FailureTopic (SNS's default topic policy)"
    publish = needs("sns", "Publish", {"TopicArn": topic, "Message": "m"}, R, A)
    assert decide(deployed, "TrainingPipelineRole", "sns", "Publish", {"TopicArn": topic}) == [
        "allowed"
    ]
    assert decide(deployed, "DeployModelFunctionRole", "sns", "Publish", {"TopicArn": topic}) == [
        "implicit"
    ]
    cloudwatch = deployed.service("cloudwatch.amazonaws.com")
    owner = base_context(cloudwatch, R, **{"aws:SourceOwner": A})
    assert deployed.authorizer().decide(cloudwatch, publish[0], owner).outcome == "allowed"


def _with_role_statement(template: dict, statement: dict) -> dict:
    changed = copy.deepcopy(template)
    policies = changed["Resources"]["DeployModelFunctionRole"]["Properties"]["Policies"]
    policies[0]["PolicyDocument"]["Statement"].append(statement)
    return changed


def test_an_unknown_condition_operator_fails_the_deploy(template: dict) -> None:
    statement = {
        "Effect": "Allow",
        "Action": "sagemaker:DescribeEndpoint",
        "Resource": "*",
        "Condition": {"StringMatchesRegex": {"aws:PrincipalTag/team": "ml.*"}},
    }
    with pytest.raises(
        PolicyError, match="StringMatchesRegex.*is not one the local IAM evaluator knows"
    ):
        DeployedPolicies.from_template(_with_role_statement(template, statement))


def test_an_unshipped_managed_policy_fails_the_deploy(template: dict) -> None:
    changed = copy.deepcopy(template)
    managed = changed["Resources"]["DeployModelFunctionRole"]["Properties"]["ManagedPolicyArns"]
    managed.append("arn:aws:iam::aws:policy/AmazonSageMakerFullAccess")
    with pytest.raises(PolicyError, match="AmazonSageMakerFullAccess"):
        DeployedPolicies.from_template(changed)
