"""Least privilege, proven on a real local stack.

Every statement of every role in template.yaml is used by the default run or by one of the named
scenarios below, all in one workspace with IAM enforced. Then each statement is taken out of its
role in turn and the requests it allowed here are decided again by the service's own IAM
(`sfn-mlops local iam --prove`): without it, a request of its scenario gets AWS's AccessDenied
naming the action. A statement nothing needs shows as unused or redundant and fails the test.

The scenarios, in order:
- default: `sfn-mlops run` as shipped (Clarify, Model Monitor, an all-at-once deployment);
- approval: a manual approval decided with `sfn-mlops models approve` (its CollectData reads
  the production model's manifest);
- rollback: a canary whose rollback alarm fires in its bake (DescribeAlarms, the failure topic);
- batch: `sfn-mlops batch` scores a file with the approved version;
- schedule: the batch schedule's rule fires (its role starts the batch state machine);
- retrain: the drift alarm goes to ALARM (the Retrain Lambda reads the last run);
- missing files: the bias gate and the monitoring set-up are asked for files no job wrote; S3
  tells them NoSuchKey, which it tells only a caller that may list the bucket;
- decided first: the wait function gets a version decided already and answers at once;
- A/B test: an `ab` deployment (DeployModel records the test and turns its schedule on),
  promoted by hand; the schedule's function shifts the traffic, ends with one variant, records
  the verdict in the registry and turns the schedule off.
"""

from __future__ import annotations

import datetime as dt
import functools
import json
import threading
from collections.abc import Callable
from pathlib import Path
from typing import Any

import boto3
import pandas as pd
import pytest
import waiting

from sfn_mlops.config import STACK_ENDPOINT
from sfn_mlops.data import example_dataset
from sfn_mlops.intrinsics import physical_name
from sfn_mlops.local.cloud import LocalCloud
from sfn_mlops.local.deploy import BATCH
from sfn_mlops.monitor_cli import DEFAULT_ENDPOINT, monitoring_alarms

pytestmark = pytest.mark.e2e

GROUP = "sfn-mlops-models"
BUCKET = physical_name("ArtifactBucket", "AWS::S3::Bucket")
DRILL_ALARM = "least-privilege-drill"
WAIT_SECONDS = 300.0
until = functools.partial(waiting.until, timeout=WAIT_SECONDS)


def _quiet_monitoring() -> list[str]:
    """Daily monitoring at an hour half a day away: at the tests' time scale an hourly schedule
    would fire every 36 s and start retrainings of its own."""
    hour = (dt.datetime.now(dt.UTC).hour + 12) % 24
    return ["--set", f"monitoring.schedule=cron(0 {hour} ? * * *)"]



def _in_background(call: Callable[[], Any]) -> tuple[threading.Thread, dict[str, Any]]:
    result: dict[str, Any] = {}
    thread = threading.Thread(target=lambda: result.update(value=call()))
    thread.start()
    return thread, result


def _endpoint_status(sagemaker: Any) -> str | None:
    try:
        return str(sagemaker.describe_endpoint(EndpointName=STACK_ENDPOINT)["EndpointStatus"])
    except sagemaker.exceptions.ClientError:
        return None


def _run_default(cli: Any, workspace: Path) -> None:
    done = cli(workspace, "run", "--name", "default", *_quiet_monitoring())
    assert done.code == 0, done.out + done.err


def _run_approved(cli: Any, workspace: Path, aws: Any) -> None:
    name = "approved"
    settings = ["registry.approval=manual", "clarify.enabled=false"]
    args = [arg for setting in settings for arg in ("--set", setting)]
    thread, result = _in_background(
        lambda: cli(workspace, "run", "--name", name, *args, *_quiet_monitoring())
    )
    token = f"approvals/{GROUP}/2.json"  # kept by the wait function: the decision finds it
    until(lambda: aws.s3.list_objects_v2(Bucket=BUCKET, Prefix=token)["KeyCount"], "the token")
    decided = cli(workspace, "models", "approve", f"{GROUP}/2", "--reason", "least privilege")
    assert decided.code == 0, decided.out + decided.err
    thread.join(WAIT_SECONDS)
    assert result["value"].code == 0, result["value"].out[-3000:]


def _run_rolled_back(cli: Any, workspace: Path, aws: Any) -> None:
    settings = [
        "deployment.strategy=canary",
        "deployment.wait_seconds=3600",
        "deployment.max_execution_seconds=7200",
        f"deployment.rollback_alarms=[{DRILL_ALARM}]",
        "clarify.enabled=false",
    ]
    args = [arg for setting in settings for arg in ("--set", setting)]
    cloudwatch = boto3.client("cloudwatch")
    cloudwatch.put_metric_alarm(
        AlarmName=DRILL_ALARM, Namespace="e2e", MetricName="drill", Statistic="Sum",
        Period=60, EvaluationPeriods=1, Threshold=1, ComparisonOperator="GreaterThanThreshold",
        TreatMissingData="ignore",
    )  # fmt: skip
    thread, result = _in_background(
        lambda: cli(workspace, "run", "--name", "rolled-back", *args, *_quiet_monitoring())
    )
    until(lambda: _endpoint_status(aws.sagemaker) == "Updating", "the canary to start")
    cloudwatch.set_alarm_state(AlarmName=DRILL_ALARM, StateValue="ALARM", StateReason="drill")
    thread.join(WAIT_SECONDS)
    cloudwatch.delete_alarms(AlarmNames=[DRILL_ALARM])
    assert aws.describe("rolled-back")["error"] == "DeploymentRolledBack", result


def _run_batch(cli: Any, workspace: Path, tmp_path: Path) -> None:
    data = tmp_path / "new.csv"
    pd.read_csv(example_dataset(tmp_path / "example")).head(20).to_csv(data, index=False)
    scored = cli(workspace, "batch", "--data", str(data), "--output", str(tmp_path / "out"))
    assert scored.code == 0, scored.out + scored.err


def _fire_batch_schedule(cloud: LocalCloud) -> None:
    """The schedule's rule, made to fire now: its target role starts the batch state machine
    (with the template's default BatchDataUri, empty, so that execution fails: it is not what
    this scenario is about)."""
    events, sfn = boto3.client("events"), boto3.client("stepfunctions")
    machine = cloud.arn("states", f"stateMachine:{BATCH}")
    (rule,) = [
        rule
        for rule in events.list_rules()["Rules"]
        if any(
            t["Arn"] == machine for t in events.list_targets_by_rule(Rule=rule["Name"])["Targets"]
        )
    ]
    before = {e["name"] for e in sfn.list_executions(stateMachineArn=machine)["executions"]}
    events.put_rule(Name=rule["Name"], ScheduleExpression="rate(1 minute)", State="ENABLED")
    try:
        until(
            lambda: (
                {e["name"] for e in sfn.list_executions(stateMachineArn=machine)["executions"]}
                - before
            ),
            "the batch schedule to start an execution",
        )
    finally:
        events.put_rule(Name=rule["Name"], ScheduleExpression=rule["ScheduleExpression"],
                        State="DISABLED")  # fmt: skip
    until(
        lambda: (
            not sfn.list_executions(stateMachineArn=machine, statusFilter="RUNNING")["executions"]
        ),
        "the scheduled batch to end",
    )


def _retrain_on_alarm(aws: Any) -> None:
    """The drift alarm starts a retraining (stopped once started: its Lambda is what counts)."""
    cloudwatch = boto3.client("cloudwatch")
    (alarm, *_) = monitoring_alarms(cloudwatch, DEFAULT_ENDPOINT)
    before = set(aws.execution_names())
    cloudwatch.set_alarm_state(
        AlarmName=alarm["AlarmName"], StateValue="ALARM", StateReason="least privilege drill"
    )
    (started,) = until(lambda: set(aws.execution_names()) - before, "a retraining to start")
    aws.sfn.stop_execution(executionArn=aws.execution_arn(started), cause="drill done")
    cloudwatch.set_alarm_state(AlarmName=alarm["AlarmName"], StateValue="OK", StateReason="done")
    payload = json.loads(aws.describe(started)["input"])
    assert payload["retraining"]["alarm"] == alarm["AlarmName"], payload


def _ask_for_missing_files() -> None:
    functions = boto3.client("lambda")
    missing = f"s3://{BUCKET}/runs/never-run"  # where the functions may read
    for function, event, said in (
        ("BiasGateFunction", {"analysis_uri": f"{missing}/analysis.json"}, "no bias analysis"),
        (
            "SetUpMonitoringFunction",
            {
                "endpoint_name": "sfn-mlops", "run_name": "missing", "baseline_uri": missing,
                "settings": {}, "image_uri": "unused", "role_arn": "unused", "bucket": BUCKET,
            },
            "the baseline job wrote no such file",
        ),
    ):  # fmt: skip
        answer = functions.invoke(FunctionName=function, Payload=json.dumps(event).encode())
        error = json.loads(answer["Payload"].read())
        assert answer.get("FunctionError") and said in error["errorMessage"], error


def _wait_for_a_decided_version(aws: Any) -> None:
    """The version was decided before its execution waited: the wait function answers the
    task itself (here a task that no longer exists, which it takes as done)."""
    package = aws.sagemaker.describe_model_package(ModelPackageName=f"{GROUP}/2")
    event = {
        "token": "a-task-that-ended", "model_package_arn": package["ModelPackageArn"],
        "execution_arn": aws.execution_arn("approved"),
    }  # fmt: skip
    functions = boto3.client("lambda")
    answer = functions.invoke(FunctionName="WaitForApprovalFunction", Payload=json.dumps(event))
    assert json.loads(answer["Payload"].read()) == {"ModelApprovalStatus": "Approved"}


def _ab_test_concludes(cli: Any, workspace: Path, aws: Any) -> None:
    settings = [
        "deployment.strategy=ab", "deployment.ab_challenger_share=0.2",
        "deployment.ab.step_percent=50", "clarify.enabled=false",
    ]  # fmt: skip
    args = [arg for setting in settings for arg in ("--set", setting)]
    done = cli(workspace, "run", "--name", "ab-test", *args, *_quiet_monitoring())
    assert done.code == 0, done.out + done.err
    promoted = cli(workspace, "endpoints", "promote", STACK_ENDPOINT)
    assert promoted.code == 0, promoted.out + promoted.err
    record = f"s3://{BUCKET}/ab-tests/{STACK_ENDPOINT}.json"
    until(lambda: aws.json_object(record)["phase"] == "done", "the A/B test to end")
    events = boto3.client("events")
    until(
        lambda: events.describe_rule(Name="sfn-mlops-ab-tests")["State"] == "DISABLED",
        "the A/B schedule to be turned off",
    )


@pytest.fixture(scope="module")
def proof(
    cli: Any, workspace: Path, open_aws: Any, tmp_path_factory: pytest.TempPathFactory
) -> Any:
    """Every scenario run once; then `local iam --prove`."""
    _run_default(cli, workspace)
    with open_aws(workspace) as aws:
        _run_approved(cli, workspace, aws)
        _run_rolled_back(cli, workspace, aws)
        _run_batch(cli, workspace, tmp_path_factory.mktemp("batch"))
        _fire_batch_schedule(aws.cloud)
        _retrain_on_alarm(aws)
        _ask_for_missing_files()
        _wait_for_a_decided_version(aws)
        _ab_test_concludes(cli, workspace, aws)
    return cli(workspace, "local", "iam", "--prove")


def test_every_statement_of_every_role_is_needed_by_a_scenario(proof: Any) -> None:
    lines = proof.out.splitlines()
    verdicts = [line for line in lines if line.startswith(("needed", "redundant", "unused"))]
    assert len(verdicts) > 50, proof.out  # the template's roles hold this many and more
    short = [line for line in verdicts if not line.startswith("needed ")]
    assert not short, "\n".join(short) + "\n\n" + proof.out
    assert proof.code == 0, proof.out + proof.err


def test_without_its_statement_a_request_gets_awss_access_denied_naming_the_action(
    proof: Any,
) -> None:
    lines = proof.out.splitlines()
    for verdict, denial in zip(lines[2::2], lines[3::2], strict=True):
        assert verdict.startswith("needed ") and "without it: User: arn:aws:sts::" in denial
        role = verdict.split(".")[1]
        assert f":assumed-role/{role}/" in denial, (verdict, denial)
        action = denial.split("is not authorized to perform: ")[1].split(" on resource: ")[0]
        assert denial.endswith(f"because no identity-based policy allows the {action} action")
