"""Local IAM for every principal, decided on the deployed template as AWS decides it.

The defects a review against AWS's documentation found (issue 21: D1, D2, D7), re-introduced
one at a time in the template the local service deploys, are refused with AWS's own error; the
template as it is allows the same calls. Through the server: a Lambda's role is refused what its
policies do not grant, and S3 tells such a caller AccessDenied, not NoSuchKey.

What AWS's own components do as a role, the local stand-ins do as that role: a job's image pull,
log stream and metrics (the SageMaker role), the `.sync` managed rules at CreateStateMachine (the
state machine's role), the Custom::JobCode copy at deploy (JobCodeFunction's role). Each allowed
with the real template, and refused as AWS refuses it with the statement removed.
"""

from __future__ import annotations

import copy
import json
from pathlib import Path
from typing import Any

import boto3
import pytest
from test_local_sagemaker import SKLEARN, processing_request, wait

from sfn_mlops.aws.translate import translate
from sfn_mlops.local.authorization import Authorization, write_mode
from sfn_mlops.local.cloud import LocalCloud
from sfn_mlops.local.deploy import deploy
from sfn_mlops.local.iam import AccessDenied
from sfn_mlops.local.jobs import aws_calls, job_log_path
from sfn_mlops.local.server import LocalServer
from sfn_mlops.template import TemplateError, load

ROOT = Path(__file__).resolve().parents[2]
ACCOUNT = "123456789012"
BUCKET = "sfn-mlops-artifactbucket"


@pytest.fixture(scope="module")
def translated() -> dict[str, Any]:
    return translate(load(ROOT / "template.yaml"), ROOT)


def _authorization(tmp_path: Path, template: dict[str, Any]) -> Authorization:
    iam = Authorization(tmp_path, "us-east-1", ACCOUNT)
    iam.deployed(template, {})
    return iam


def _role(iam: Authorization, role: str, session: str) -> Any:
    return iam.caller(f"arn:aws:iam::{ACCOUNT}:role/{role}", session)


def _without(template: dict[str, Any], role: str, sid: str) -> dict[str, Any]:
    changed = copy.deepcopy(template)
    for policy in changed["Resources"][role]["Properties"]["Policies"]:
        statements = policy["PolicyDocument"]["Statement"]
        policy["PolicyDocument"]["Statement"] = [s for s in statements if s.get("Sid") != sid]
    return changed


GUARDED_UPDATE = {
    "EndpointName": "sfn-mlops",
    "EndpointConfigName": "run-2-config",
    "DeploymentConfig": {
        "BlueGreenUpdatePolicy": {
            "TrafficRoutingConfiguration": {"Type": "ALL_AT_ONCE", "WaitIntervalInSeconds": 0}
        },
        "AutoRollbackConfiguration": {"Alarms": [{"AlarmName": "sfn-mlops-5xx-errors"}]},
    },
}


def test_d2_a_guarded_update_needs_describe_alarms(
    tmp_path: Path, translated: dict[str, Any]
) -> None:
    role = ("DeployModelFunctionRole", "DeployModelFunction")
    allowed = _authorization(tmp_path / "real", translated)
    allowed.authorize(_role(allowed, *role), "sagemaker", "UpdateEndpoint", GUARDED_UPDATE)
    broken = _authorization(
        tmp_path / "d2", _without(translated, "DeployModelFunctionRole", "RollbackAlarms")
    )
    with pytest.raises(AccessDenied) as denied:
        broken.authorize(_role(broken, *role), "sagemaker", "UpdateEndpoint", GUARDED_UPDATE)
    assert (denied.value.code, denied.value.status) == ("AccessDeniedException", 400)
    assert denied.value.message == (
        f"User: arn:aws:sts::{ACCOUNT}:assumed-role/DeployModelFunctionRole/DeployModelFunction"
        " is not authorized to perform: cloudwatch:DescribeAlarms on resource: "
        f"arn:aws:cloudwatch:us-east-1:{ACCOUNT}:alarm:sfn-mlops-5xx-errors because no "
        "identity-based policy allows the cloudwatch:DescribeAlarms action"
    )


def test_d1_clarify_shadow_endpoint_by_the_name_clarify_gives_it(
    tmp_path: Path, translated: dict[str, Any]
) -> None:
    create = {"EndpointName": "sm-clarify-run-1-model-1733570000-ab12", "EndpointConfigName": (
        "sm-clarify-config-1733570000-ab12"
    )}  # fmt: skip
    real = _authorization(tmp_path / "real", translated)
    clarify = ("SageMakerExecutionRole", "Clarify")
    real.authorize(_role(real, *clarify), "sagemaker", "CreateEndpoint", create)
    text = json.dumps(translated)  # the names granted before the review
    text = text.replace("sm-clarify-config-*", "sagemaker-clarify-*")
    old = json.loads(text.replace("sm-clarify-*", "sagemaker-clarify-*"))
    broken = _authorization(tmp_path / "d1", old)
    with pytest.raises(AccessDenied, match="not authorized to perform: sagemaker:CreateEndpoint"):
        broken.authorize(_role(broken, *clarify), "sagemaker", "CreateEndpoint", create)


def test_d7_a_missing_key_is_access_denied_without_list_bucket(
    tmp_path: Path, translated: dict[str, Any]
) -> None:
    role = ("ApprovalDecisionFunctionRole", "ApprovalDecisionFunction")
    real = _authorization(tmp_path / "real", translated)
    assert real.may_list_bucket(_role(real, *role), BUCKET)
    broken = _authorization(
        tmp_path / "d7", _without(translated, "ApprovalDecisionFunctionRole", "TellMissingKeys")
    )
    assert not broken.may_list_bucket(_role(broken, *role), BUCKET)


def test_warn_and_off_let_a_denied_request_through(
    tmp_path: Path, translated: dict[str, Any], caplog: pytest.LogCaptureFixture
) -> None:
    iam = _authorization(tmp_path, translated)
    caller = _role(iam, "ReadEvaluationFunctionRole", "ReadEvaluationFunction")
    with pytest.raises(AccessDenied):
        iam.authorize(caller, "sagemaker", "ListEndpoints", {})
    write_mode(tmp_path, "warn")
    iam.authorize(caller, "sagemaker", "ListEndpoints", {})
    assert "not authorized to perform: sagemaker:ListEndpoints" in caplog.text
    write_mode(tmp_path, "off")
    iam.authorize(caller, "sagemaker", "ListEndpoints", {})


def test_a_lambda_role_is_refused_through_the_server(
    server: LocalServer, cloud: LocalCloud, translated: dict[str, Any]
) -> None:
    cloud.authorization.deployed(translated, {})
    cloud.objects.create_bucket(BUCKET)
    role = f"arn:aws:iam::{ACCOUNT}:role/BiasGateFunctionRole"
    keys = cloud.credentials.for_role(role, "BiasGateFunction").client_kwargs()
    sagemaker = boto3.client("sagemaker", **keys)
    with pytest.raises(sagemaker.exceptions.ClientError) as refused:
        sagemaker.list_endpoints()
    assert refused.value.response["Error"]["Code"] == "AccessDeniedException"
    s3 = boto3.client("s3", **keys)
    with pytest.raises(s3.exceptions.NoSuchKey):  # it may list the bucket: the key is missing
        s3.get_object(Bucket=BUCKET, Key="runs/r/clarify/bias/analysis.json")
    with pytest.raises(s3.exceptions.ClientError) as outside:
        s3.get_object(Bucket=BUCKET, Key="code/x")
    assert outside.value.response["Error"]["Code"] == "AccessDenied"
    boto3.client("sagemaker").list_endpoints()  # the administrator may


def test_the_statements_no_request_used_are_listed(
    tmp_path: Path, translated: dict[str, Any]
) -> None:
    """Least privilege, measured: each allowing statement is recorded once per action, with
    its request; the template's statements never used are what `local iam --unused` lists."""
    iam = _authorization(tmp_path, translated)
    deploy = "Resources.DeployModelFunctionRole.Policies[DeployModelFunctionRolePolicy0]"
    assert {f"{deploy}.Statement[Endpoints]", f"{deploy}.Statement[RollbackAlarms]"} <= set(
        iam.unused()
    )
    caller = _role(iam, "DeployModelFunctionRole", "DeployModelFunction")
    iam.authorize(caller, "sagemaker", "UpdateEndpoint", GUARDED_UPDATE)
    iam.authorize(caller, "sagemaker", "UpdateEndpoint", GUARDED_UPDATE)  # recorded once
    unused = iam.unused()
    assert f"{deploy}.Statement[Endpoints]" not in unused
    assert f"{deploy}.Statement[RollbackAlarms]" not in unused
    assert all(where.startswith("Resources.") for where in unused)  # not AWS managed ones
    lines = (tmp_path / "iam-used.jsonl").read_text().splitlines()
    recorded = sorted((json.loads(line)["statement"], json.loads(line)["action"]) for line in lines)
    assert recorded == [
        (f"{deploy}.Statement[Endpoints]", "sagemaker:UpdateEndpoint"),
        (f"{deploy}.Statement[RollbackAlarms]", "cloudwatch:DescribeAlarms"),
    ]
    # a new process of the same workspace reads what was used
    assert Authorization(tmp_path, "us-east-1", ACCOUNT).unused() == unused


# What AWS's own components do as a role, made by the local stand-ins as that role ---------------
SKLEARN_REPOSITORY = "arn:aws:ecr:us-east-1:683313688378:repository/sagemaker-scikit-learn"
JOB_ROLE = f"arn:aws:iam::{ACCOUNT}:role/SageMakerExecutionRole"
JOB_SESSION = f"arn:aws:sts::{ACCOUNT}:assumed-role/SageMakerExecutionRole/SageMaker"
JOB_STATEMENTS = "Resources.SageMakerExecutionRole.Policies[sagemaker-jobs].Statement"


def _processing_job(cloud: LocalCloud, template: dict[str, Any], name: str) -> dict[str, Any]:
    """A one-line processing job run as the template's SageMaker role, to its end."""
    cloud.authorization.deployed(template, {})
    cloud.objects.create_bucket(BUCKET)
    boto3.client("s3").put_object(Bucket=BUCKET, Key="code/job.py", Body=b"print('hello')\n")
    sagemaker = boto3.client("sagemaker")
    code = f"s3://{BUCKET}/code/job.py"
    sagemaker.create_processing_job(**processing_request(name, code, RoleArn=JOB_ROLE))
    return wait(sagemaker, "processing", name, timeout=30)


def test_a_job_pulls_its_image_writes_its_logs_and_publishes_its_metrics_as_its_role(
    cloud: LocalCloud, translated: dict[str, Any]
) -> None:
    job = _processing_job(cloud, translated, "as-the-role")
    assert job["ProcessingJobStatus"] == "Completed", job.get("FailureReason")
    unused = cloud.authorization.unused()
    for sid in ("EcrAuthorization", "EcrPull", "JobLogs", "JobMetrics"):
        assert f"{JOB_STATEMENTS}[{sid}]" not in unused
    metrics = boto3.client("cloudwatch").list_metrics(Namespace="/aws/sagemaker/ProcessingJobs")
    assert sorted((m["MetricName"], m["Dimensions"]) for m in metrics["Metrics"]) == [
        (name, [{"Name": "Host", "Value": "as-the-role/algo-1"}])
        for name in ("CPUUtilization", "MemoryUtilization")
    ]


def test_a_role_that_may_not_pull_the_image_fails_the_job_as_sagemaker_does(
    cloud: LocalCloud, translated: dict[str, Any]
) -> None:
    job = _processing_job(
        cloud, _without(translated, "SageMakerExecutionRole", "EcrPull"), "no-pull"
    )
    assert job["ProcessingJobStatus"] == "Failed"
    assert job["FailureReason"] == (
        "ClientError: Cannot pull algorithm container. Either the image does not exist or its "
        f"permissions are incorrect. Pulling {SKLEARN}: AccessDenied: User: {JOB_SESSION} is not "
        f"authorized to perform: ecr:BatchGetImage on resource: {SKLEARN_REPOSITORY} because no "
        "identity-based policy allows the ecr:BatchGetImage action"
    )


def test_a_role_that_may_not_log_or_publish_metrics_runs_the_job_and_says_so(
    cloud: LocalCloud, translated: dict[str, Any]
) -> None:
    """AWS documents no failure for these: the output and metrics never reach CloudWatch."""
    broken = _without(_without(translated, "SageMakerExecutionRole", "JobLogs"),
                      "SageMakerExecutionRole", "JobMetrics")  # fmt: skip
    job = _processing_job(cloud, broken, "no-logs")
    assert job["ProcessingJobStatus"] == "Completed", job.get("FailureReason")
    log = job_log_path(cloud, "no-logs").read_text()
    assert (
        f"is not authorized to perform: logs:CreateLogGroup on resource: arn:aws:logs:us-east-1:"
        f"{ACCOUNT}:log-group:/aws/sagemaker/ProcessingJobs because" in log
    )
    assert (
        "CloudWatch Logs refused the log stream /aws/sagemaker/ProcessingJobs no-logs/algo-1-"
        in log
    )
    assert (
        "instance metrics not published to /aws/sagemaker/ProcessingJobs: User: "
        f"{JOB_SESSION} is not authorized to perform: cloudwatch:PutMetricData on resource: *"
    ) in log
    metrics = boto3.client("cloudwatch").list_metrics(Namespace="/aws/sagemaker/ProcessingJobs")
    assert metrics["Metrics"] == []


def test_job_metrics_are_decided_with_their_namespace(
    tmp_path: Path, translated: dict[str, Any]
) -> None:
    """Model Monitor's metrics (aws/sagemaker/Endpoints/...) and the jobs' own (/aws/sagemaker/...)
    are JobMetrics' namespaces; any other is refused, naming the action."""
    iam = _authorization(tmp_path, translated)
    role = _role(iam, "SageMakerExecutionRole", "SageMaker")
    for namespace in ("aws/sagemaker/Endpoints/data-metrics", "/aws/sagemaker/TrainingJobs"):
        assert (
            iam.denial(role, aws_calls.metrics_publication(namespace, "us-east-1", ACCOUNT)) is None
        )
    assert iam.denial(
        role, aws_calls.metrics_publication("Custom/drift", "us-east-1", ACCOUNT)
    ) == (
        f"User: {JOB_SESSION} is not authorized to perform: cloudwatch:PutMetricData on "
        "resource: * because no identity-based policy allows the cloudwatch:PutMetricData action"
    )


SYNC_DEFINITION = json.dumps(
    {
        "StartAt": "Jobs",
        "States": {
            "Jobs": {
                "Type": "Parallel",
                "End": True,
                "Branches": [
                    {
                        "StartAt": "Train",
                        "States": {
                            "Train": {
                                "Type": "Task",
                                "Resource": "arn:aws:states:::sagemaker:createTrainingJob.sync",
                                "Parameters": {"TrainingJobName.$": "$.name"},
                                "End": True,
                            }
                        },
                    }
                ],
            }
        },
    }
)


def test_a_sync_task_needs_its_managed_rule_when_the_state_machine_is_made(
    cloud: LocalCloud, translated: dict[str, Any]
) -> None:
    """Step Functions makes the `.sync` job's managed EventBridge rule as the state machine's
    role at CreateStateMachine / UpdateStateMachine, and refuses a role that may not."""
    role = f"arn:aws:iam::{ACCOUNT}:role/TrainingPipelineRole"
    sfn = boto3.client("stepfunctions")
    cloud.authorization.deployed(translated, {})
    made = sfn.create_state_machine(name="sync", definition=SYNC_DEFINITION, roleArn=role)
    rules = "Resources.TrainingPipelineRole.Policies[TrainingPipelineRolePolicy"
    assert not [s for s in cloud.authorization.unused() if s.startswith(rules)
                and s.endswith("[SyncIntegrationRules]")]  # fmt: skip
    cloud.authorization.deployed(
        _without(translated, "TrainingPipelineRole", "SyncIntegrationRules"), {}
    )
    with pytest.raises(sfn.exceptions.ClientError) as refused:
        sfn.create_state_machine(name="sync-2", definition=SYNC_DEFINITION, roleArn=role)
    error = refused.value.response["Error"]
    assert error["Code"] == "AccessDeniedException"
    assert error["Message"] == (
        f"'{role}' is not authorized to create managed-rule. (sfn-mlops local mode: User: "
        f"arn:aws:sts::{ACCOUNT}:assumed-role/TrainingPipelineRole/StepFunctions is not authorized "
        f"to perform: events:PutTargets on resource: arn:aws:events:us-east-1:{ACCOUNT}:rule/"
        "StepFunctionsGetEventsForSageMakerTrainingJobsRule because no identity-based policy "
        "allows the events:PutTargets action)"
    )
    with pytest.raises(sfn.exceptions.ClientError, match="not authorized to create managed-rule"):
        sfn.update_state_machine(
            stateMachineArn=made["stateMachineArn"], definition=SYNC_DEFINITION
        )
    assert sfn.list_state_machines()["stateMachines"][0]["name"] == "sync"  # nothing else made


def _project(destination: Path, template: str) -> Path:
    """A project whose template.yaml is `template`; the rest is the real project's."""
    destination.mkdir()
    (destination / "template.yaml").write_text(template)
    for name in ("lambdas", "containers", "state_machines"):
        (destination / name).symlink_to(ROOT / name)
    return destination


def test_the_job_code_is_published_as_its_functions_role(cloud: LocalCloud, tmp_path: Path) -> None:
    """CloudFormation invokes JobCodeFunction for Custom::JobCode; its S3 calls are its role's.
    Without s3:PutObject on code/* the deploy fails as CloudFormation reports a FAILED answer."""
    real = (ROOT / "template.yaml").read_text()
    put = (
        "              Action:\n                - s3:PutObject\n                - s3:DeleteObject\n"
    )
    assert put in real
    broken = real.replace(put, "              Action:\n                - s3:DeleteObject\n")
    project = _project(tmp_path / "broken", broken)
    with pytest.raises(TemplateError) as failed:
        deploy(cloud, project)
    message = str(failed.value)
    assert message.startswith(
        f"{project / 'template.yaml'}: Resources.JobCode: CREATE_FAILED: Received response status "
        "[FAILED] from custom resource. Message returned: CodeBucketError: cannot write the job "
        f"code to bucket '{BUCKET}': S3 answered AccessDenied: User: arn:aws:sts::{ACCOUNT}:"
        "assumed-role/JobCodeFunctionRole/"
    )
    assert "is not authorized to perform: s3:PutObject on resource: arn:aws:s3:::" in message
    deploy(cloud, _project(tmp_path / "real", real))  # the same workspace, the real template
    unused = cloud.authorization.unused()
    code = "Resources.JobCodeFunctionRole.Policies[JobCodeFunctionRolePolicy0].Statement"
    assert f"{code}[ListJobCode]" not in unused and f"{code}[WriteJobCode]" not in unused
