"""The pipeline's scenarios, run for real on the bundled abalone data in one local workspace.

Happy path; the quality gate failing; the training script crashing; a transient SageMaker error
that a Retry absorbs. Each scenario runs once (a module fixture); the tests read its outcome
through boto3, the job folder and a second process.
"""

from __future__ import annotations

import io
import json
import os
import re
import subprocess
import sys
import tarfile
import threading
import time
from html.parser import HTMLParser
from pathlib import Path
from typing import Any

import boto3
import pandas as pd
import pytest

from sfn_mlops.config import STACK_ENDPOINT
from sfn_mlops.data import example_dataset
from sfn_mlops.local.cloud import LocalCloud
from sfn_mlops.local.jobs import KIND_TRAINING, job_dir
from sfn_mlops.report import state_output

pytestmark = pytest.mark.e2e

HAPPY, GATE, CRASH, RETRY = "happy-path", "gate-fails", "training-crash", "retry-succeeds"
STATES_TO_GATE = [
    *("PrepareRun", "FindChampion", "CollectData", "Preprocess", "TuningEnabled", "Train"),
    "Evaluate",
    "ReadEvaluation",
    *("ChampionGate", "QualityGate"),
]
#: Without Clarify (retry scenario: `clarify.enabled=false` keeps it short).
#: After the gates: register, deploy, then DescribeEndpoint until the deployment ends (the
#: wait loop's WaitForEndpoint, CountPoll, StorePollsLeft are left out: how often it turns
#: depends on the machine).
RELEASE_STATES = [
    "RegisterModel",
    "ApprovalNeeded",
    "DeploymentWanted",
    "DeployModel",
    "DescribeEndpoint",
    "EndpointReady",
    "MonitoringWanted",
    "Baselines",
    "SetUpMonitoring",
    "ModelDeployed",
]
#: The Baselines branches run side by side: their order varies, so they are checked as a set.
BASELINE_BRANCHES = {"DataQualityBaseline", "ModelQualityWanted", "ModelQualityBaseline"}
STATES_TO_APPROVAL = [
    *STATES_TO_GATE,
    "OverfitGate",
    "CreateModel",
    "ClarifyEnabled",
    *RELEASE_STATES,
]
CLARIFY_STATES = ["CreateModel", "ClarifyEnabled", "PrepareClarify", "Clarify"]
WAIT_LOOP = {"WaitForEndpoint", "CountPoll", "StorePollsLeft"}


def _without_wait_loop(states: list[str]) -> list[str]:
    """The states entered, with each turn of the endpoint wait loop folded into one and the
    baseline branches left out."""
    folded: list[str] = []
    for state in states:
        if state in WAIT_LOOP or state in BASELINE_BRANCHES:
            continue
        if state in ("DescribeEndpoint", "EndpointReady") and state in folded[-2:]:
            continue
        folded.append(state)
    return folded


CLARIFY_JOBS = {"BiasCheck", "Explainability"}
BIAS = "bias-fails"


# the runs ---------------------------------------------------------------------------------
@pytest.fixture(scope="module")
def happy(cli: Any, workspace: Path) -> Any:
    return cli(workspace, "run", "--name", HAPPY)


@pytest.fixture(scope="module")
def gate_fails(cli: Any, workspace: Path) -> Any:
    return cli(workspace, "run", "--name", GATE, "--set", "gate.threshold=0.01")


@pytest.fixture(scope="module")
def crash(cli: Any, workspace: Path) -> Any:
    # reg:logistic passes the CLI's hyperparameter check (labels in [0, 1] there), but on
    # abalone's rings xgboost fails during training (base_score must be in (0,1)): an
    # AlgorithmError that the script writes to /opt/ml/output/failure before exiting 1.
    return cli(workspace, "run", "--name", CRASH, "--set", "hyperparameters.objective=reg:logistic")


@pytest.fixture(scope="module")
def retried(cli: Any, workspace: Path) -> Any:
    """The first CreateTrainingJob and CreateModel are made, and their answers lost (500)."""
    for operation in ("CreateTrainingJob", "CreateModel"):
        LocalCloud(workspace).metadata.add_fault(
            "sagemaker", operation, "InternalFailure", times=1, after=True
        )
    return cli(workspace, "run", "--name", RETRY, "--set", "clarify.enabled=false")


@pytest.fixture(scope="module")
def bias_fails(cli: Any, workspace: Path) -> Any:
    return cli(workspace, "run", "--name", BIAS, "--set", "clarify.bias_thresholds={DPPL: 0.05}")


def _evaluation(aws: Any, name: str) -> dict[str, Any]:
    job = aws.sagemaker.describe_processing_job(ProcessingJobName=f"{name}-evaluate")
    (output,) = job["ProcessingOutputConfig"]["Outputs"]
    return dict(aws.json_object(f"{output['S3Output']['S3Uri']}/evaluation.json"))


def _failure_file(workspace: Path, job_name: str) -> str:
    """What the training script wrote to /opt/ml/output/failure: the runner reads it into the
    job's FailureReason before it removes the job's folder (tests/functional pin that reading)."""
    doc = LocalCloud(workspace).metadata.get(KIND_TRAINING, job_name)
    assert doc is not None, job_name
    return str(doc["FailureReason"])


# happy path -------------------------------------------------------------------------------
def test_happy_path_succeeds_through_every_state_in_order(happy: Any, aws: Any) -> None:
    assert happy.code == 0, happy.out + happy.err
    assert aws.describe(HAPPY)["status"] == "SUCCEEDED"
    entered = aws.entered_states(HAPPY)
    jobs = [name for name in entered if name in CLARIFY_JOBS]
    assert _without_wait_loop([name for name in entered if name not in CLARIFY_JOBS]) == [
        *STATES_TO_GATE,
        "OverfitGate",
        *CLARIFY_STATES,
        "ReadBiasReport",
        "BiasGate",
        *RELEASE_STATES,
    ]
    assert sorted(jobs) == sorted(CLARIFY_JOBS)
    assert set(entered) >= BASELINE_BRANCHES


def test_happy_path_sets_up_model_monitor_on_the_endpoint(happy: Any, aws: Any) -> None:
    """The baselines in Model Monitor's formats, both schedules, one drift alarm per feature."""
    baselines = {}
    for kind, job in (("data-quality", f"{HAPPY}-dq-base"), ("model-quality", f"{HAPPY}-mq-base")):
        described = aws.sagemaker.describe_processing_job(ProcessingJobName=job)
        assert described["ProcessingJobStatus"] == "Completed", described
        (output,) = described["ProcessingOutputConfig"]["Outputs"]
        baselines[kind] = aws.json_object(f"{output['S3Output']['S3Uri']}/statistics.json")
        schedule = aws.sagemaker.describe_monitoring_schedule(
            MonitoringScheduleName=f"sfn-mlops-{kind}"
        )
        assert schedule["MonitoringScheduleStatus"] == "Scheduled"
    assert baselines["model-quality"]["regression_metrics"]["rmse"]["value"] > 0
    features = {feature["name"] for feature in baselines["data-quality"]["features"]}
    assert "rings" not in features and {"sex", "length"} <= features
    cloudwatch = boto3.client("cloudwatch")
    alarms = cloudwatch.describe_alarms(AlarmNamePrefix="sfn-mlops-drift-")["MetricAlarms"]
    assert {a["MetricName"] for a in alarms} == {f"feature_baseline_drift_{f}" for f in features}


def test_happy_path_model_archive_holds_model_and_schema(happy: Any, aws: Any) -> None:
    job = aws.sagemaker.describe_training_job(TrainingJobName=f"{HAPPY}-train")
    uri = job["ModelArtifacts"]["S3ModelArtifacts"]
    assert uri.endswith("/model.tar.gz")
    with tarfile.open(fileobj=io.BytesIO(aws.object_bytes(uri)), mode="r:gz") as archive:
        names = set(archive.getnames())
    assert {"xgboost-model", "schema.json"} <= names


def test_happy_path_evaluation_passes_gate_and_summary_says_so(happy: Any, aws: Any) -> None:
    entry = _evaluation(aws, HAPPY)["regression_metrics"]["rmse"]
    rmse, interval = entry["value"], entry["confidence_interval"]
    assert rmse < 2.5
    assert interval["level"] == 0.95 and interval["lower"] < rmse < interval["upper"]
    summary = happy.summary(HAPPY)
    shown = re.search(
        r"Quality gate PASSED: rmse = ([0-9.]+), required <= 2\.5 "
        r"\(95% interval ([0-9.]+) to ([0-9.]+)\)",
        summary,
    )
    assert shown, summary
    assert float(shown.group(1)) == pytest.approx(rmse, rel=1e-3)
    assert float(shown.group(2)) == pytest.approx(interval["lower"], rel=1e-3)
    assert float(shown.group(3)) == pytest.approx(interval["upper"], rel=1e-3)


def test_happy_path_sends_no_failure_notification(happy: Any, aws: Any) -> None:
    assert aws.failure_messages(HAPPY) == []


def test_happy_path_leaves_no_job_scratch_only_the_logs(happy: Any, workspace: Path) -> None:
    cloud = LocalCloud(workspace)
    folders = sorted(p.name for p in cloud.jobs_dir.iterdir() if p.name.startswith(f"{HAPPY}-"))
    assert folders == [
        f"{HAPPY}-{job}"
        for job in ("bias", "dq-base", "evaluate", "explain", "mq-base", "preprocess", "train")
    ]
    for name in folders:
        assert [p.name for p in job_dir(cloud, name).iterdir()] == ["job.log"], name


def test_executions_list_in_a_new_process_shows_the_run(happy: Any, workspace: Path) -> None:
    command = ["-m", "sfn_mlops.cli", "--workspace", str(workspace), "executions", "list"]
    listing = subprocess.run(
        [sys.executable, *command],
        capture_output=True,
        text=True,
        timeout=120,
        env=os.environ.copy(),
        check=False,
    )
    assert listing.returncode == 0, listing.stderr
    lines = [line.split() for line in listing.stdout.splitlines()]
    assert [line[:2] for line in lines if line and line[0] == HAPPY] == [[HAPPY, "SUCCEEDED"]]


def test_describe_history_and_job_logs_of_a_finished_run(
    happy: Any, cli: Any, workspace: Path
) -> None:
    describe = cli(workspace, "executions", "describe", HAPPY)
    assert describe.code == 0
    assert "Status     SUCCEEDED" in describe.out.splitlines()
    assert "Gate       rmse" in describe.out and "  target = rings" in describe.out.splitlines()
    raw = cli(workspace, "executions", "describe", HAPPY, "--json")
    assert json.loads(raw.out)["status"] == "SUCCEEDED"
    history = cli(workspace, "executions", "history", HAPPY)
    types = [line.split()[2] for line in history.out.splitlines() if line.strip()]
    assert types[0] == "ExecutionStarted" and types[-1] == "ExecutionSucceeded"
    # three jobs and ReadEvaluation; CreateModel, PrepareClarify, two Clarify jobs,
    # ReadBiasReport; FindChampion, RegisterModel, DeployModel; DescribeEndpoint once or more
    assert types.count("TaskSucceeded") >= 13
    logs = cli(workspace, "jobs", "logs", f"{HAPPY}-train")
    assert logs.code == 0 and "Completed" in logs.out
    missing = cli(workspace, "executions", "describe", "no-such-run")
    assert missing.code == 2
    assert "no execution named 'no-such-run'" in missing.err


def test_a_reused_name_exits_2_before_the_data_is_staged_again(
    happy: Any, cli: Any, workspace: Path
) -> None:
    staged = sorted((workspace / "objects").glob(f"*/datasets/{HAPPY}/*"))
    stamps = [path.stat().st_mtime_ns for path in staged]
    assert staged, "the happy run staged its data"

    again = cli(workspace, "run", "--name", HAPPY)

    assert again.code == 2, again.err
    assert again.err == (
        f"sfn-mlops: error: --name '{HAPPY}': an execution with this name already exists\n"
    )
    assert [path.stat().st_mtime_ns for path in staged] == stamps


def test_list_and_compare_show_the_gate_of_a_passed_and_a_failed_run(
    happy: Any, gate_fails: Any, cli: Any, workspace: Path
) -> None:
    listing = cli(workspace, "executions", "list", "--all")
    rows = {line.split()[0]: line for line in listing.out.splitlines()[1:]}
    assert listing.out.splitlines()[0].split() == [
        "NAME", "STATUS", "STARTED", "BY", "DURATION", "GATE", "RESULT"
    ]  # fmt: skip
    happy_row = r"SUCCEEDED .* sfn-mlops run .* rmse \d\.\d+ <= 2\.5 +deployed \(new endpoint\)$"
    assert re.search(happy_row, rows[HAPPY])
    assert re.search(r"FAILED .* rmse \d\.\d+ <= 0\.01 +ModelQualityBelowThreshold: ", rows[GATE])
    failed_only = cli(workspace, "executions", "list", "--status", "FAILED", "--all")
    assert HAPPY not in failed_only.out and GATE in failed_only.out

    compared = cli(workspace, "executions", "compare", HAPPY, GATE)

    assert compared.code == 0, compared.err
    differs = compared.out.split("Config that differs:")[1].split("Metrics")[0]
    assert [line.split() for line in differs.strip().splitlines()] == [
        ["gate.threshold", "2.5", "0.01"]
    ]


def test_global_options_after_the_subcommand_and_a_closed_pipe(happy: Any, workspace: Path) -> None:
    command = [sys.executable, "-m", "sfn_mlops.cli", "executions", "list", "--all"]
    command += ["--workspace", str(workspace)]
    read_end, write_end = os.pipe()
    os.close(read_end)  # as `| head -1` once it has its line: every write meets a closed pipe
    try:
        listing = subprocess.run(
            command, stdout=write_end, stderr=subprocess.PIPE, text=True, timeout=120,
            env=os.environ.copy(), check=False,
        )  # fmt: skip
    finally:
        os.close(write_end)
    assert (listing.returncode, listing.stderr) == (0, "")
    shown = subprocess.run(
        command, capture_output=True, text=True, timeout=120, env=os.environ.copy(), check=False
    )
    assert shown.returncode == 0 and HAPPY in shown.stdout, shown.stderr


# the quality gate fails -------------------------------------------------------------------
def test_gate_failure_fails_the_execution_with_metric_value_and_threshold(
    gate_fails: Any, aws: Any
) -> None:
    assert gate_fails.code == 1, gate_fails.out + gate_fails.err
    execution = aws.describe(GATE)
    assert (execution["status"], execution["error"]) == ("FAILED", "ModelQualityBelowThreshold")
    cause = execution["cause"]
    entry = _evaluation(aws, GATE)["regression_metrics"]["rmse"]
    shown = re.match(r"rmse is ([0-9.]+) \(\[([0-9.]+), ([0-9.]+)\] at 95%\) on the test", cause)
    assert shown, cause
    assert "requires rmse <= 0.01" in cause
    assert float(shown.group(1)) == pytest.approx(entry["value"], rel=1e-4), cause
    interval = entry["confidence_interval"]
    assert float(shown.group(2)) == pytest.approx(interval["lower"], rel=1e-4), cause
    assert float(shown.group(3)) == pytest.approx(interval["upper"], rel=1e-4), cause


def test_gate_failure_enters_nothing_after_the_gate_but_the_fail_state(
    gate_fails: Any, aws: Any
) -> None:
    assert aws.entered_states(GATE) == [*STATES_TO_GATE, "ModelQualityBelowThreshold"]
    assert "Quality gate FAILED: rmse = " in gate_fails.summary(GATE)
    assert "required <= 0.01" in gate_fails.summary(GATE)


# the training script crashes --------------------------------------------------------------
def test_training_crash_is_caught_with_the_scripts_failure_reason(
    crash: Any, aws: Any, workspace: Path
) -> None:
    assert crash.code == 1, crash.out + crash.err
    assert aws.describe(CRASH)["status"] == "FAILED"
    assert aws.entered_states(CRASH) == [
        "PrepareRun",
        "FindChampion",
        "CollectData",
        "Preprocess",
        "TuningEnabled",
        "Train",
        "NotifyFailure",
        "PipelineFailed",
    ]
    (failed,) = [e for e in aws.task_events(CRASH, "Train") if e["type"] == "TaskFailed"]
    details = failed["taskFailedEventDetails"]
    assert details["error"] == "States.TaskFailed"
    reason = _failure_file(workspace, f"{CRASH}-train")
    assert "base_score must be in (0,1) for logistic loss" in reason
    assert json.loads(details["cause"])["FailureReason"] == reason
    job = aws.sagemaker.describe_training_job(TrainingJobName=f"{CRASH}-train")
    assert (job["TrainingJobStatus"], job["FailureReason"]) == ("Failed", reason)


def test_training_crash_log_has_the_traceback(crash: Any, cli: Any, workspace: Path) -> None:
    logs = cli(workspace, "jobs", "logs", f"{CRASH}-train")
    assert logs.code == 0, logs.err
    assert "Traceback" in logs.out
    assert _failure_file(workspace, f"{CRASH}-train").splitlines()[0] in logs.out


def test_training_crash_publishes_one_notification_naming_the_error(
    crash: Any, aws: Any, workspace: Path
) -> None:
    (message,) = aws.failure_messages(CRASH)
    body = json.loads(message["Message"])
    assert body["error"] == "States.TaskFailed"
    assert json.loads(body["cause"])["FailureReason"] == _failure_file(workspace, f"{CRASH}-train")


def test_training_crash_execution_reports_the_caught_error_and_reason(
    crash: Any, aws: Any, workspace: Path
) -> None:
    reason = _failure_file(workspace, f"{CRASH}-train")
    execution = aws.describe(CRASH)
    assert execution["error"] == "States.TaskFailed"
    assert json.loads(execution["cause"])["FailureReason"] == reason
    assert f"Cause: {reason}" in crash.summary(CRASH)


def test_training_crash_reason_is_printed_once(crash: Any, workspace: Path) -> None:
    first_line = _failure_file(workspace, f"{CRASH}-train").splitlines()[0]
    assert crash.out.count(first_line) == 1, crash.out
    assert "Notification sent to FailureTopic: " in crash.out


def test_training_crash_progress_does_not_tick_the_failed_state(crash: Any) -> None:
    progress = crash.out[: crash.out.index(f"\nExecution {CRASH}: ")]
    assert re.search(r"✘ Train\b", progress), progress
    assert not re.search(r"✔ Train\b", progress), progress


# a transient failure, then success --------------------------------------------------------
def test_a_create_made_but_unanswered_is_retried_under_a_name_of_its_own(
    retried: Any, aws: Any
) -> None:
    """SageMaker refuses a second job of a name: the retry names its job <run>-train-1."""
    assert retried.code == 0, retried.out + retried.err
    assert aws.describe(RETRY)["status"] == "SUCCEEDED"
    made = STATES_TO_APPROVAL.index("CreateModel") + 1
    expected = [*STATES_TO_APPROVAL[:made], "ModelMadeAlready", *STATES_TO_APPROVAL[made:]]
    assert _without_wait_loop(aws.entered_states(RETRY)) == expected
    train = [
        event
        for event in aws.task_events(RETRY, "Train")
        if event["type"] in ("TaskScheduled", "TaskFailed", "TaskSucceeded")
    ]
    assert [event["type"] for event in train] == [
        "TaskScheduled",
        "TaskFailed",
        "TaskScheduled",
        "TaskSucceeded",
    ]
    names = [
        json.loads(e["taskScheduledEventDetails"]["parameters"])["TrainingJobName"]
        for e in train[::2]
    ]
    assert names == [f"{RETRY}-train", f"{RETRY}-train-1"]
    failed = train[1]["taskFailedEventDetails"]
    assert failed["error"] == "SageMaker.AmazonSageMakerException"
    assert "Status Code: 500; Error Code: InternalFailure" in failed["cause"]
    output = json.loads(aws.describe(RETRY)["output"])
    assert output["steps"]["train"]["job_name"] == f"{RETRY}-train-1"  # what later states read
    first = aws.sagemaker.describe_training_job(TrainingJobName=f"{RETRY}-train")
    assert first["TrainingJobStatus"] in ("InProgress", "Completed")  # made, as in AWS
    # A retried CreateModel finds its model made: the run goes on with it.
    model = aws.sagemaker.describe_model(ModelName=f"{RETRY}-model")
    assert model["PrimaryContainer"]["ModelDataUrl"] == output["steps"]["train"]["model_artifacts"]


# Clarify ------------------------------------------------------------------------------------
class _Sections(HTMLParser):
    def __init__(self) -> None:
        super().__init__()
        self.sections: list[str] = []

    def handle_starttag(self, tag: str, attrs: list[tuple[str, str | None]]) -> None:
        if tag == "section":
            self.sections.append(dict(attrs).get("id") or "")


def _sections(page: bytes) -> list[str]:
    parser = _Sections()
    parser.feed(page.decode("utf-8"))
    return parser.sections


def test_clarify_jobs_ran_side_by_side(happy: Any, aws: Any) -> None:
    jobs = [
        aws.sagemaker.describe_processing_job(ProcessingJobName=f"{HAPPY}-{suffix}")
        for suffix in ("bias", "explain")
    ]
    assert [job["ProcessingJobStatus"] for job in jobs] == ["Completed", "Completed"]
    assert all("sagemaker-clarify-processing" in j["AppSpecification"]["ImageUri"] for j in jobs)
    first, second = sorted(jobs, key=lambda job: job["ProcessingStartTime"])
    assert second["ProcessingStartTime"] < first["ProcessingEndTime"]  # they overlapped
    model = aws.sagemaker.describe_model(ModelName=f"{HAPPY}-model")
    train = aws.sagemaker.describe_training_job(TrainingJobName=f"{HAPPY}-train")
    assert model["PrimaryContainer"]["ModelDataUrl"] == train["ModelArtifacts"]["S3ModelArtifacts"]


def test_clarify_reports_are_written_and_summarized(happy: Any, aws: Any) -> None:
    prefix = f"s3://sfn-mlops-artifactbucket/runs/{HAPPY}/clarify"
    bias = aws.json_object(f"{prefix}/bias/report/analysis.json")
    facet = bias["post_training_bias_metrics"]["facets"]["sex"][0]
    dppl = next(m["value"] for m in facet["metrics"] if m["name"] == "DPPL")
    assert "pre_training_bias_metrics" in bias
    explained = aws.json_object(f"{prefix}/explainability/report/analysis.json")
    values = explained["explanations"]["kernel_shap"]["label0"]["global_shap_values"]
    assert len(values) == 8
    assert _sections(aws.object_bytes(f"{prefix}/bias/report/report.html")) == ["bias"]
    assert _sections(aws.object_bytes(f"{prefix}/explainability/report/report.html")) == [
        "global-shap",
        "shap-summary",
    ]
    summary = happy.summary(HAPPY)
    assert f"DPPL {dppl:.4g}" in summary
    assert "Bias (sex=F): CI " in summary
    top = max(values, key=lambda name: abs(values[name]))
    assert f"Top features by mean |SHAP|: {top} " in summary
    assert f"{prefix}/bias/report/report.html" in summary
    assert f"{prefix}/explainability/report/report.html" in summary


def test_a_violated_bias_threshold_fails_with_bias_check_failed(bias_fails: Any, aws: Any) -> None:
    assert bias_fails.code == 1, bias_fails.out + bias_fails.err
    execution = aws.describe(BIAS)
    assert (execution["status"], execution["error"]) == ("FAILED", "BiasCheckFailed")
    bias = aws.json_object(
        f"s3://sfn-mlops-artifactbucket/runs/{BIAS}/clarify/bias/report/analysis.json"
    )
    facet = bias["post_training_bias_metrics"]["facets"]["sex"][0]
    dppl = next(m["value"] for m in facet["metrics"] if m["name"] == "DPPL")
    assert execution["cause"] == (
        f"DPPL for facet sex=F is {float(f'{dppl:.6g}')!r}; the bias gate requires |DPPL| <= 0.05"
    )
    assert aws.entered_states(BIAS)[-2:] == ["BiasGate", "BiasCheckFailed"]
    assert "RegisterModel" not in aws.entered_states(BIAS)  # nothing registered
    packages = aws.sagemaker.list_model_packages(ModelPackageGroupName="sfn-mlops-models")
    assert all(
        BIAS not in p.get("ModelPackageDescription", "")
        for p in packages["ModelPackageSummaryList"]
    )


# a guarded deployment rolled back -----------------------------------------------------------
ROLLBACK = "canary-rolled-back"
DRILL_ALARM = "e2e-rollback-drill"


@pytest.fixture(scope="module")
def rolled_back(happy: Any, cli: Any, workspace: Path, open_aws: Any) -> Any:
    """After the happy path's endpoint: a canary whose rollback alarm fires during its bake.

    The bake is long (3600 s, scaled by the workspace's time scale), so the alarm is set while
    the endpoint is Updating; SageMaker (and the local service) then roll the endpoint back.
    """
    assert happy.code == 0, happy.out + happy.err
    result: dict[str, Any] = {}
    settings = [
        "deployment.strategy=canary",
        "deployment.wait_seconds=3600",
        "deployment.max_execution_seconds=7200",
        f"deployment.rollback_alarms=[{DRILL_ALARM}]",
    ]
    args = [arg for setting in settings for arg in ("--set", setting)]
    run = threading.Thread(
        target=lambda: result.update(
            run=cli(workspace, "run", "--name", ROLLBACK, "--set", "clarify.enabled=false", *args)
        )
    )
    with open_aws(workspace):
        sagemaker, cloudwatch = boto3.client("sagemaker"), boto3.client("cloudwatch")
        # A metric nothing publishes, its missing data ignored: the state set below stays (the
        # stack's own alarms are evaluated on the endpoint's traffic and could turn OK first).
        cloudwatch.put_metric_alarm(
            AlarmName=DRILL_ALARM, Namespace="e2e", MetricName="drill", Statistic="Sum",
            Period=60, EvaluationPeriods=1, Threshold=1, ComparisonOperator="GreaterThanThreshold",
            TreatMissingData="ignore",
        )  # fmt: skip
        run.start()
        deadline = time.monotonic() + 300
        while _endpoint_status(sagemaker) != "Updating":
            assert run.is_alive() and time.monotonic() < deadline, result["run"].out[-3000:]
            time.sleep(0.1)
        cloudwatch.set_alarm_state(
            AlarmName=DRILL_ALARM, StateValue="ALARM", StateReason="e2e drill"
        )
        run.join(300)
        cloudwatch.delete_alarms(AlarmNames=[DRILL_ALARM])
    assert not run.is_alive(), "the rolled-back run did not end"
    return result["run"]


def _endpoint_status(sagemaker: Any) -> str | None:
    try:
        return str(sagemaker.describe_endpoint(EndpointName=STACK_ENDPOINT)["EndpointStatus"])
    except sagemaker.exceptions.ClientError:
        return None


def test_a_rollback_fails_the_run_as_deployment_rolled_back_and_notifies(
    rolled_back: Any, aws: Any
) -> None:
    assert rolled_back.code == 1, rolled_back.out + rolled_back.err
    execution = aws.describe(ROLLBACK)
    assert (execution["status"], execution["error"]) == ("FAILED", "DeploymentRolledBack")
    assert DRILL_ALARM in execution["cause"]
    entered = aws.entered_states(ROLLBACK)
    assert entered[-4:] == [
        "DeploymentRolledBack", "MarkRolledBack", "NotifyFailure", "PipelineFailed",
    ]  # fmt: skip
    (message,) = aws.failure_messages(ROLLBACK)
    body = json.loads(message["Message"])
    assert body["error"] == "DeploymentRolledBack" and body["cause"] == execution["cause"]
    endpoint = aws.sagemaker.describe_endpoint(EndpointName=STACK_ENDPOINT)
    assert endpoint["EndpointConfigName"] != f"{ROLLBACK}-config"  # the old model serves again
    assert endpoint["EndpointStatus"] == "InService"
    # The notification names the alarm, the version and the config that serves again.
    registration = state_output(aws.history(ROLLBACK), "RegisterModel")["registration"]
    version = registration["ModelPackageArn"]
    assert version in body["cause"] and endpoint["EndpointConfigName"] in body["cause"]


def test_a_rolled_back_version_is_rejected_and_skipped_by_batch(
    rolled_back: Any, aws: Any, cli: Any, workspace: Path, tmp_path: Path
) -> None:
    registration = state_output(aws.history(ROLLBACK), "RegisterModel")["registration"]
    package = aws.sagemaker.describe_model_package(ModelPackageName=registration["ModelPackageArn"])
    assert package["ModelApprovalStatus"] == "Rejected"
    assert DRILL_ALARM in package["ApprovalDescription"]
    assert ROLLBACK in package["ApprovalDescription"]
    listing = cli(workspace, "executions", "list", "--all")
    (row,) = [line for line in listing.out.splitlines() if line.startswith(ROLLBACK)]
    assert "rolled back: " in row, listing.out
    data = tmp_path / "rows.csv"
    pd.read_csv(example_dataset(tmp_path / "example")).head(5).to_csv(data, index=False)
    scored = cli(workspace, "batch", "--data", str(data), "--output", str(tmp_path / "out"))
    assert scored.code == 0, scored.out + scored.err
    assert " scores " in scored.out and f"/{registration['ModelPackageVersion']} scores" not in (
        scored.out
    ), scored.out
