"""``sfn-mlops run --aws`` (sfn_mlops.aws.run and the CLI's --aws branch) against moto.

moto's Step Functions runs the test state machines with its ASL interpreter: Pass states named
like the pipeline's, a Choice on the gate, and Succeed or Fail, so the follower and the summary
read real history events. The SageMaker jobs are not part of these definitions.
"""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import boto3
import pytest

from sfn_mlops import cli
from sfn_mlops.aws import run, stack
from sfn_mlops.config import load_config
from sfn_mlops.data import example_dataset
from sfn_mlops.report import summarize

from .conftest import REGION, create_state_machine

EVALUATION = {
    "metric": "rmse",
    "value": 2.286,
    "threshold": 2.5,
    "direction": "minimize",
    "metrics": {"rmse": 2.286, "mae": 1.584},
    "cause": "rmse is 2.286 on the test set; the quality gate requires rmse <= 2.5",
}


def pipeline(passed: bool = True) -> dict[str, Any]:
    """The pipeline's shape without the jobs: the gate's Lambda result is a Pass state's."""
    return {
        "StartAt": "PrepareRun",
        "States": {
            "PrepareRun": {"Type": "Pass", "Next": "ReadEvaluation"},
            "ReadEvaluation": {
                "Type": "Pass",
                "Result": {**EVALUATION, "passed": passed},
                "ResultPath": "$.evaluation",
                "Next": "QualityGate",
            },
            "QualityGate": {
                "Type": "Choice",
                "Choices": [
                    {
                        "Variable": "$.evaluation.passed",
                        "BooleanEquals": True,
                        "Next": "ModelApproved",
                    }
                ],
                "Default": "ModelQualityBelowThreshold",
            },
            "ModelApproved": {"Type": "Succeed"},
            "ModelQualityBelowThreshold": {
                "Type": "Fail",
                "Error": "ModelQualityBelowThreshold",
                "Cause": "rmse is 2.286 on the test set; the quality gate requires rmse <= 2.0",
            },
        },
    }


def clients_for(stacks: Any) -> run.AwsClients:
    return run.AwsClients(
        cloudformation=stacks.client,
        s3=boto3.client("s3", region_name=REGION),
        sfn=boto3.client("stepfunctions", region_name=REGION),
        sagemaker=boto3.client("sagemaker", region_name=REGION),
    )


@pytest.fixture
def deployed(stacks) -> dict[str, str]:
    """A stack like `sam deploy` leaves: its bucket and state machine exist."""
    arn = create_state_machine(pipeline(passed=True))
    return stacks.create("sfn-mlops", {"StateMachineArn": arn})


def _run(stacks: Any, tmp_path: Path, config: Any = None, **kwargs: Any) -> run.AwsRun:
    kwargs = {"run_name": "run-1", "echo": lambda _: None, "timeout": 20, **kwargs}
    return run.run_on_aws(
        config or load_config(),
        stack_name="sfn-mlops",
        clients=clients_for(stacks),
        workspace=tmp_path / "cache",
        poll_seconds=0.01,
        **kwargs,
    )


def _objects(bucket: str, prefix: str = "") -> dict[str, bytes]:
    s3 = boto3.client("s3", region_name=REGION)
    listing = s3.list_objects_v2(Bucket=bucket, Prefix=prefix).get("Contents", [])
    return {i["Key"]: s3.get_object(Bucket=bucket, Key=i["Key"])["Body"].read() for i in listing}


# --- the happy path --------------------------------------------------------------------------


def test_run_stages_the_data_starts_the_execution_and_follows_it(stacks, deployed, tmp_path):
    bucket = deployed["ArtifactBucketName"]
    config = load_config()
    lines: list[str] = []

    result = _run(stacks, tmp_path, config, echo=lines.append)

    data_uri = f"s3://{bucket}/datasets/run-1/abalone.csv"
    abalone = example_dataset(tmp_path / "cache" / "datasets").read_bytes()
    assert _objects(bucket) == {"datasets/run-1/abalone.csv": abalone}
    sfn = boto3.client("stepfunctions", region_name=REGION)
    described = sfn.describe_execution(executionArn=result.execution_arn)
    assert described["name"] == "run-1"
    assert described["stateMachineArn"] == deployed["StateMachineArn"]
    sent = json.loads(described["input"])
    assert sent["config"]["processing_env"] == {  # what the data showed, told to the job
        "SFN_MLOPS_TARGET": "rings",
        "SFN_MLOPS_PROBLEM_TYPE": "regression",
        "SFN_MLOPS_CATEGORICAL_COLUMNS": '["sex"]',
        "SFN_MLOPS_SPLIT": '{"train": 0.7, "validation": 0.15, "test": 0.15, "seed": 42}',
        "SFN_MLOPS_CSV_DELIMITER": ",",
    }
    expected = config.execution_input(data_uri)["config"]
    assert {k: v for k, v in sent["config"].items() if k != "processing_env"} == {
        k: v for k, v in expected.items() if k != "processing_env"
    }
    assert result.execution["status"] == "SUCCEEDED"
    assert result.execution_arn == (
        "arn:aws:states:us-east-1:123456789012:execution:TrainingPipeline:run-1"
    )
    assert result.console_url == (
        "https://console.aws.amazon.com/states/home?region=us-east-1"
        f"#/v2/executions/details/{result.execution_arn}"
    )
    assert lines[:4] == [
        "Data: abalone (bundled with scikit-lego): 4,177 rows; target rings; features sex (cat), "
        "length (num), diameter (num), height (num), whole_weight (num), shucked_weight (num), "
        "viscera_weight (num), shell_weight (num); delimiter ','",
        f"Stack sfn-mlops in us-east-1: bucket s3://{bucket}",
        f"Data staged at {data_uri}",
        f"Execution run-1 started\n  {result.console_url}\n",
    ]
    assert [line.split()[1] for line in lines[4:]] == [
        "PrepareRun",
        "ReadEvaluation",
        "QualityGate",
        "ModelApproved",
    ]


def test_the_summary_reads_the_aws_history(stacks, deployed, tmp_path):
    result = _run(stacks, tmp_path)
    lines: list[str] = []

    summarize(result.execution, result.events, echo=lines.append)

    assert lines[0].startswith("\nExecution run-1: SUCCEEDED in ")
    assert lines[1:] == [
        "Metrics on the test set: rmse 2.286, mae 1.584",
        "Quality gate PASSED: rmse = 2.286, required <= 2.5",
    ]


def test_a_failed_gate_ends_the_follower_on_failed(stacks, tmp_path):
    arn = create_state_machine(pipeline(passed=False))
    stacks.create("sfn-mlops", {"StateMachineArn": arn})
    lines: list[str] = []

    result = _run(stacks, tmp_path, echo=lines.append)

    assert result.execution["status"] == "FAILED"
    assert result.execution["error"] == "ModelQualityBelowThreshold"
    assert lines[-1] == "  ✘ failed: ModelQualityBelowThreshold"  # the cause: in the summary


def test_a_folder_of_files_is_staged_under_one_prefix(stacks, deployed, tmp_path):
    folder = tmp_path / "data"
    folder.mkdir()
    a = "x,y\n" + "".join(f"{i},{2 * i}\n" for i in range(10))  # enough rows for the split
    b = "x,y\n" + "".join(f"{i},{3 * i}\n" for i in range(10))
    (folder / "a.csv").write_text(a)
    (folder / "b.csv").write_text(b)
    config = load_config(overrides=[f"data={folder}", "target=y", "split.min_test_rows=1"])
    bucket = deployed["ArtifactBucketName"]

    result = _run(stacks, tmp_path, config)

    assert _objects(bucket) == {
        "datasets/run-1/a.csv": a.encode(),
        "datasets/run-1/b.csv": b.encode(),
    }
    described = boto3.client("stepfunctions").describe_execution(executionArn=result.execution_arn)
    assert json.loads(described["input"])["config"]["data_uri"] == f"s3://{bucket}/datasets/run-1/"


def test_data_already_in_the_bucket_is_used_in_place(stacks, deployed, tmp_path):
    bucket = deployed["ArtifactBucketName"]
    boto3.client("s3").put_object(Bucket=bucket, Key="mine/train.csv", Body=b"x,y\n1,2\n")
    config = load_config(overrides=[f"data=s3://{bucket}/mine/", "target=y"])

    result = _run(stacks, tmp_path, config)

    described = boto3.client("stepfunctions").describe_execution(executionArn=result.execution_arn)
    assert json.loads(described["input"])["config"]["data_uri"] == f"s3://{bucket}/mine/"
    assert list(_objects(bucket)) == ["mine/train.csv"]


# --- errors before anything starts -----------------------------------------------------------


def _no_executions() -> bool:
    sfn = boto3.client("stepfunctions", region_name=REGION)
    machines = sfn.list_state_machines()["stateMachines"]
    return all(
        not sfn.list_executions(stateMachineArn=m["stateMachineArn"])["executions"]
        for m in machines
    )


def test_s3_data_outside_the_stack_bucket(stacks, deployed, tmp_path):
    bucket = deployed["ArtifactBucketName"]
    config = load_config(overrides=["data=s3://elsewhere/train/", "target=y"])

    with pytest.raises(run.AwsRunError) as raised:
        _run(stacks, tmp_path, config)

    assert str(raised.value) == (
        f"data: s3://elsewhere/train/ is outside the stack's bucket; its SageMaker role reads "
        f"only s3://{bucket}/. Copy the data there, e.g. `aws s3 cp --recursive "
        f"s3://elsewhere/train/ s3://{bucket}/datasets/<name>/`"
    )
    assert _no_executions()


def test_s3_data_prefix_without_objects(stacks, deployed, tmp_path):
    bucket = deployed["ArtifactBucketName"]
    config = load_config(overrides=[f"data=s3://{bucket}/nothing/", "target=y"])

    with pytest.raises(run.AwsRunError, match=f"data: no objects under s3://{bucket}/nothing/"):
        _run(stacks, tmp_path, config)
    assert _no_executions()


def test_missing_local_data_fails_before_any_aws_call(tmp_path):
    class NoClients:
        def __getattr__(self, name):
            raise AssertionError(f"AWS was called ({name}) before the data was checked")

    config = load_config(overrides=[f"data={tmp_path / 'missing.csv'}", "target=y"])

    with pytest.raises(run.AwsRunError, match="missing.csv does not exist"):
        run.run_on_aws(
            config, stack_name="s", run_name="r", clients=NoClients(), workspace=tmp_path
        )


def test_stack_not_found(stacks, tmp_path):
    with pytest.raises(stack.StackNotFound, match="stack 'sfn-mlops' not found in us-east-1"):
        _run(stacks, tmp_path)


def test_stack_without_a_state_machine_output(stacks, tmp_path):
    stacks.create("sfn-mlops", {})

    with pytest.raises(stack.MissingStackOutput, match="no output 'StateMachineArn'"):
        _run(stacks, tmp_path)


def test_a_run_name_already_used(stacks, deployed, tmp_path):
    _run(stacks, tmp_path)

    with pytest.raises(run.AwsRunError) as raised:
        _run(stacks, tmp_path)

    assert str(raised.value) == "an execution named 'run-1' already exists; pick another --name"


# --- following -------------------------------------------------------------------------------


def test_following_stops_at_the_timeout_and_says_where_to_watch(stacks, tmp_path):
    waiting = {"StartAt": "Wait", "States": {"Wait": {"Type": "Wait", "Seconds": 60, "End": True}}}
    stacks.create("sfn-mlops", {"StateMachineArn": create_state_machine(waiting)})
    arn = "arn:aws:states:us-east-1:123456789012:execution:TrainingPipeline:run-1"

    try:
        with pytest.raises(run.AwsRunError) as raised:
            _run(stacks, tmp_path, timeout=0.2)
    finally:
        boto3.client("stepfunctions").stop_execution(executionArn=arn)

    assert str(raised.value).startswith("stopped following after ")
    assert str(raised.value).endswith(
        "s; the execution goes on in AWS: https://console.aws.amazon.com/states/home"
        f"?region=us-east-1#/v2/executions/details/{arn}"
    )


def test_ctrl_c_leaves_the_execution_running_and_says_how_to_stop_it(stacks, deployed, tmp_path):
    clients = clients_for(stacks)

    def interrupt(**_: Any) -> None:
        raise KeyboardInterrupt

    clients.sfn.meta.events.register("before-call.states.GetExecutionHistory", interrupt)
    lines: list[str] = []

    with pytest.raises(KeyboardInterrupt):
        run.run_on_aws(
            load_config(),
            stack_name="sfn-mlops",
            run_name="run-1",
            clients=clients,
            workspace=tmp_path,
            echo=lines.append,
        )

    arn = "arn:aws:states:us-east-1:123456789012:execution:TrainingPipeline:run-1"
    assert lines[-1] == (
        "\nStopped following; the execution goes on in AWS: "
        f"https://console.aws.amazon.com/states/home?region=us-east-1#/v2/executions/details/{arn}"
        f"\nStop it with: aws stepfunctions stop-execution --execution-arn {arn}"
    )


def test_follow_timeout_covers_every_job_at_its_limit():
    config = load_config(overrides=["max_runtime_seconds=600"])

    assert run.follow_timeout(config) == 3 * 600 + 3600


# --- credentials -----------------------------------------------------------------------------


@pytest.fixture
def no_credentials(monkeypatch, tmp_path):
    for name in ("AWS_ACCESS_KEY_ID", "AWS_SECRET_ACCESS_KEY", "AWS_SESSION_TOKEN"):
        monkeypatch.delenv(name, raising=False)
    monkeypatch.setenv("AWS_SHARED_CREDENTIALS_FILE", str(tmp_path / "none"))
    monkeypatch.setenv("AWS_CONFIG_FILE", str(tmp_path / "none"))
    return boto3.Session(region_name=REGION)


def test_no_credentials(no_credentials, tmp_path):
    with pytest.raises(run.AwsRunError) as checked:
        run.check_credentials(no_credentials)
    with pytest.raises(run.AwsRunError) as raised:
        run.run_on_aws(
            load_config(),
            stack_name="sfn-mlops",
            run_name="run-1",
            clients=run.AwsClients.from_session(no_credentials),
            workspace=tmp_path,
            echo=lambda _: None,
        )

    message = "no AWS credentials: configure a profile or run without --aws for local mode"
    assert str(checked.value) == str(raised.value) == message
    assert type(raised.value.__cause__).__name__ == "NoCredentialsError"


# --- the command line ------------------------------------------------------------------------


@pytest.fixture
def cli_clients(stacks, monkeypatch):
    """The CLI makes its clients from a session; CloudFormation is the test's."""
    make = run.AwsClients.from_session

    def from_session(session: Any) -> run.AwsClients:
        made = make(session)
        return run.AwsClients(stacks.client, made.s3, made.sfn, made.sagemaker)

    monkeypatch.setattr(run.AwsClients, "from_session", staticmethod(from_session))
    monkeypatch.setattr(run, "POLL_SECONDS", 0.01)


def test_cli_run_aws(cli_clients, deployed, tmp_path, capsys):
    argv = ["--workspace", str(tmp_path), "run", "--aws", "--stack-name", "sfn-mlops"]

    code = cli.main([*argv, "--name", "run-cli"])

    out = capsys.readouterr().out
    arn = "arn:aws:states:us-east-1:123456789012:execution:TrainingPipeline:run-cli"
    assert code == cli.EXIT_OK
    assert "Execution run-cli started" in out
    assert "Quality gate PASSED: rmse = 2.286, required <= 2.5" in out
    assert (
        "\nConsole: https://console.aws.amazon.com/states/home?region=us-east-1"
        f"#/v2/executions/details/{arn}\n"
    ) in out
    assert (tmp_path / "datasets" / "abalone.csv").is_file()  # the cache, not the local cloud
    assert not (tmp_path / "metadata.db").exists()


def test_cli_run_aws_exits_1_when_the_execution_fails(cli_clients, stacks, tmp_path, capsys):
    stacks.create("sfn-mlops", {"StateMachineArn": create_state_machine(pipeline(False))})

    code = cli.main(["--workspace", str(tmp_path), "run", "--aws", "--name", "run-2"])

    assert code == cli.EXIT_FAILED
    assert "Error: ModelQualityBelowThreshold" in capsys.readouterr().out


def test_cli_run_aws_stack_not_found(cli_clients, tmp_path, capsys):
    code = cli.main(["--workspace", str(tmp_path), "run", "--aws", "--stack-name", "nope"])

    assert code == cli.EXIT_USAGE
    assert capsys.readouterr().err.startswith(
        "sfn-mlops: error: stack 'nope' not found in us-east-1: deploy it with "
        "`sam build && sam deploy --guided`"
    )


def test_cli_run_aws_without_credentials(no_credentials, tmp_path, capsys, monkeypatch):
    monkeypatch.delenv("AWS_EC2_METADATA_DISABLED")

    code = cli.main(["--workspace", str(tmp_path), "run", "--aws", "--region", "eu-west-1"])

    assert code == cli.EXIT_USAGE
    assert capsys.readouterr().err == (
        "sfn-mlops: error: no AWS credentials: configure a profile or run without --aws "
        "for local mode\n"
    )


def test_cli_run_aws_leaves_the_aws_environment_alone(no_credentials, tmp_path, monkeypatch):
    """Local mode pins a region and turns off the instance metadata service; AWS mode must not
    (a profile's region, an EC2 instance role)."""
    monkeypatch.delenv("AWS_EC2_METADATA_DISABLED")
    monkeypatch.delenv("AWS_DEFAULT_REGION")
    monkeypatch.setattr(run, "check_credentials", lambda session: _stop(session))

    with pytest.raises(_Stopped) as stopped:
        cli.main(["--workspace", str(tmp_path), "run", "--aws"])

    import os

    assert "AWS_EC2_METADATA_DISABLED" not in os.environ
    assert "AWS_DEFAULT_REGION" not in os.environ
    assert stopped.value.region == "us-east-1"  # samconfig.toml's, as no profile has one


class _Stopped(Exception):
    def __init__(self, region: str) -> None:
        self.region = region


def _stop(session: Any) -> None:
    raise _Stopped(session.region_name)


def test_cli_stack_options_need_aws(tmp_path, capsys):
    code = cli.main(["--workspace", str(tmp_path), "run", "--stack-name", "x"])

    assert code == cli.EXIT_USAGE
    assert "--stack-name and --region apply to --aws runs only" in capsys.readouterr().err
