"""The local service owns what runs: commands come and go, nothing is left running unowned.

Each scenario drives real processes: the ``sfn-mlops`` CLI as a subprocess, the service it
starts, the jobs the service runs. A slow training job (many boosting rounds) gives each
scenario a Train state to interrupt.
"""

from __future__ import annotations

import json
import os
import shlex
import shutil
import signal
import subprocess
import sys
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import boto3
import pytest
from waiting import until

from sfn_mlops.config import load_config
from sfn_mlops.data import inspect_local, stage_data
from sfn_mlops.local import control
from sfn_mlops.local.deploy import PIPELINE
from sfn_mlops.local.processes import kill_job_groups_in, pid_alive, processes_in
from sfn_mlops.settings import LOCAL_ACCOUNT, LOCAL_REGION, TIME_SCALE_ENV

pytestmark = pytest.mark.e2e

SLOW_TRAINING = ("--set", "hyperparameters.num_round=2000000")
WAIT_SECONDS = 120.0


def _arn(kind: str, name: str) -> str:
    return f"arn:aws:states:{LOCAL_REGION}:{LOCAL_ACCOUNT}:{kind}:{PIPELINE}:{name}"


def _cli(workspace: Path, *args: str) -> list[str]:
    return [sys.executable, "-m", "sfn_mlops.cli", "--workspace", str(workspace), *args]


def _environment() -> dict[str, str]:
    env = dict(os.environ, **{TIME_SCALE_ENV: "0.01"})
    env.pop("AWS_ENDPOINT_URL", None)  # the CLI finds the workspace's service itself
    return env



@pytest.fixture
def fresh(tmp_path: Path) -> Iterator[Path]:
    """A new workspace; its service (if any) is stopped afterwards."""
    root = tmp_path / "workspace"
    yield root
    control.stop(root)
    kill_job_groups_in(root / "jobs", created=0.0)  # a failed scenario leaves no job running


class Workspace:
    """boto3 on the workspace's running service."""

    def __init__(self, root: Path) -> None:
        info = control.find(root)
        assert info is not None, "no service runs for the workspace"
        self.info = info
        keys = control.admin_key(root).client_kwargs()
        self.sfn = boto3.client("stepfunctions", endpoint_url=info.url, **keys)
        self.sagemaker = boto3.client("sagemaker", endpoint_url=info.url, **keys)

    def status(self, name: str) -> str:
        return str(self.sfn.describe_execution(executionArn=_arn("execution", name))["status"])

    def training(self, name: str) -> dict[str, Any]:
        return dict(self.sagemaker.describe_training_job(TrainingJobName=f"{name}-train"))

    def training_started(self, name: str) -> bool:
        try:
            job = self.training(name)
        except self.sagemaker.exceptions.ClientError:
            return False
        return job["SecondaryStatus"] == "Training"


def _start_slow_run(root: Path, name: str) -> tuple[subprocess.Popen[str], Workspace]:
    cli = subprocess.Popen(
        _cli(root, "run", "--name", name, *SLOW_TRAINING),
        env=_environment(),
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        text=True,
    )
    until(lambda: control.find(root), "the service to start")
    workspace = Workspace(root)
    until(lambda: workspace.training_started(name), "the training job to run")
    return cli, workspace


def test_kill_9_of_the_cli_leaves_the_execution_running_and_stoppable(fresh: Path) -> None:
    cli, aws = _start_slow_run(fresh, "cli-killed")
    cli.kill()
    cli.wait()
    time.sleep(1.0)
    assert aws.status("cli-killed") == "RUNNING"
    assert aws.training("cli-killed")["TrainingJobStatus"] == "InProgress"
    stopped = subprocess.run(
        _cli(fresh, "executions", "stop", "cli-killed"),
        env=_environment(),
        capture_output=True,
        text=True,
        timeout=WAIT_SECONDS,
    )
    assert stopped.returncode == 0, stopped.stderr
    assert aws.status("cli-killed") == "ABORTED"
    until(lambda: aws.training("cli-killed")["TrainingJobStatus"] == "Stopped", "job Stopped")
    until(lambda: not processes_in(fresh / "jobs"), "no job process left")


def test_ctrl_c_stops_following_and_says_how_to_follow_and_stop(fresh: Path) -> None:
    cli, aws = _start_slow_run(fresh, "interrupted")
    cli.send_signal(signal.SIGINT)
    out, err = cli.communicate(timeout=WAIT_SECONDS)
    assert cli.returncode == 130, out + err
    assert "sfn-mlops executions follow interrupted" in err
    assert "sfn-mlops executions stop interrupted" in err
    assert aws.status("interrupted") == "RUNNING"
    job_pid = until(lambda: processes_in(fresh / "jobs"), "the job's process")[0]
    subprocess.run(
        _cli(fresh, "executions", "stop", "interrupted"), env=_environment(), check=True, timeout=60
    )
    assert aws.status("interrupted") == "ABORTED"
    job = until(
        lambda: (j := aws.training("interrupted"))["TrainingJobStatus"] == "Stopped" and j,
        "job Stopped",
    )
    assert job["SecondaryStatus"] == "Stopped"
    until(lambda: not Path(f"/proc/{job_pid}").exists(), "the job's process group to end")


def test_kill_9_of_the_service_then_up_fails_what_ran_and_leaves_nothing(fresh: Path) -> None:
    cli, aws = _start_slow_run(fresh, "service-killed")
    old = aws.info
    os.kill(old.pid, signal.SIGKILL)
    cli.kill()
    cli.wait()
    up = subprocess.run(
        _cli(fresh, "local", "up"), env=_environment(), capture_output=True, text=True, timeout=60
    )
    assert up.returncode == 0, up.stderr
    new = Workspace(fresh)
    assert new.info.pid != old.pid
    execution = new.sfn.describe_execution(executionArn=_arn("execution", "service-killed"))
    assert execution["status"] == "FAILED"
    assert execution["error"] == "SfnMlops.LocalServiceStopped"
    assert f"(pid {old.pid}) stopped" in execution["cause"]
    job = new.training("service-killed")
    assert job["TrainingJobStatus"] == "Failed"
    assert job["FailureReason"].startswith("PlatformError:")
    assert not processes_in(fresh / "jobs")


def test_four_first_runs_at_once_in_a_new_workspace_all_succeed(fresh: Path) -> None:
    runs = [
        subprocess.Popen(
            _cli(fresh, "run", "--name", f"together-{i}"),
            env=_environment(),
            stdout=subprocess.PIPE,
            stderr=subprocess.PIPE,
            text=True,
        )
        for i in range(4)
    ]
    results = [run.communicate(timeout=300) for run in runs]
    for run, (out, err) in zip(runs, results, strict=True):
        assert run.returncode == 0, out + err
        assert "Traceback" not in err
    aws = Workspace(fresh)
    assert sorted(aws.status(f"together-{i}") for i in range(4)) == ["SUCCEEDED"] * 4
    service_files = list(fresh.glob("service*.json"))
    assert [path.name for path in service_files] == ["service.json"]


def test_a_plain_boto3_client_with_only_an_endpoint_runs_the_pipeline(fresh: Path) -> None:
    deployed = subprocess.run(
        _cli(fresh, "deploy"), env=_environment(), capture_output=True, text=True, timeout=120
    )
    assert deployed.returncode == 0, deployed.stderr
    info = control.find(fresh)
    assert info is not None
    session = boto3.Session(  # the keys `sfn-mlops local env` prints, nothing else
        region_name="us-east-1", **control.admin_key(fresh).client_kwargs()
    )
    s3 = session.client("s3", endpoint_url=info.url)
    sfn = session.client("stepfunctions", endpoint_url=info.url)
    config = load_config(None, [])
    bucket = deployed.stdout.rpartition("s3://")[2].strip()
    data_uri = stage_data(s3, inspect_local(config, fresh), bucket, "plain-boto3")
    (machine,) = [m for m in sfn.list_state_machines()["stateMachines"] if m["name"] == PIPELINE]
    arn = sfn.start_execution(
        stateMachineArn=machine["stateMachineArn"],
        name="plain-boto3",
        input=json.dumps(config.execution_input(data_uri)),
    )["executionArn"]
    done = until(
        lambda: (d := sfn.describe_execution(executionArn=arn))["status"] != "RUNNING" and d,
        "the execution to end",
    )
    assert done["status"] == "SUCCEEDED", done
    history = sfn.get_execution_history(executionArn=arn, maxResults=1000)["events"]
    assert history[-1]["type"] == "ExecutionSucceeded"


def test_the_aws_cli_works_with_what_local_env_prints_and_nothing_else(
    fresh: Path, tmp_path: Path
) -> None:
    bin_dir = Path(sys.executable).parent
    shell_env = {
        "PATH": f"{bin_dir}{os.pathsep}{os.environ['PATH']}",
        "HOME": str(tmp_path),
        "AWS_CONFIG_FILE": str(tmp_path / "no-config"),
        "AWS_SHARED_CREDENTIALS_FILE": str(tmp_path / "no-credentials"),
        "AWS_SESSION_TOKEN": "left-over-from-another-account",  # `local env` unsets it
        "AWS_PAGER": "",
        "AWS_EC2_METADATA_DISABLED": "true",
    }
    script = (
        f'eval "$(sfn-mlops --workspace {fresh} local env)" && '
        'aws stepfunctions list-state-machines && aws s3 ls && echo "key=$AWS_ACCESS_KEY_ID"'
    )
    done = subprocess.run(
        ["sh", "-c", script], env=shell_env, capture_output=True, text=True, timeout=120
    )
    assert done.returncode == 0, done.stderr
    listed, _, key_line = done.stdout.rpartition("key=")
    assert json.loads(listed) == {"stateMachines": []}  # and `aws s3 ls` printed nothing
    assert key_line.strip() == control.admin_key(fresh).access_key_id

    printed = subprocess.run(
        _cli(fresh, "local", "env"), env=_environment(), capture_output=True, text=True
    )
    info = control.find(fresh)
    assert info is not None
    lines = printed.stdout.splitlines()
    assert lines[0] == "unset AWS_SESSION_TOKEN AWS_SECURITY_TOKEN"
    exports = dict(shlex.split(line)[1].split("=", 1) for line in lines[1:])
    assert exports == {
        "AWS_ENDPOINT_URL": info.url,
        **control.admin_key(fresh).environment(),
        "AWS_DEFAULT_REGION": "us-east-1",
    }
    wrong = {**shell_env, **exports, "AWS_SECRET_ACCESS_KEY": "x" * 40}
    wrong.pop("AWS_SESSION_TOKEN")
    refused = subprocess.run(
        ["aws", "s3", "ls"], env=wrong, capture_output=True, text=True, timeout=60
    )
    assert refused.returncode != 0
    assert "An error occurred (SignatureDoesNotMatch) when calling the ListBuckets operation" in (
        refused.stderr
    )


def test_up_attaches_to_the_running_service_and_a_stale_record_is_cleaned(fresh: Path) -> None:
    first = control.ensure_running(fresh)
    assert control.ensure_running(fresh) == first
    second_up = subprocess.run(
        _cli(fresh, "local", "up"), env=_environment(), capture_output=True, text=True, timeout=60
    )
    assert f"pid {first.pid}" in second_up.stdout
    os.kill(first.pid, signal.SIGKILL)
    until(lambda: control.find(fresh) is None, "the dead service's record to be seen as stale")
    assert not (fresh / "service.json").exists()
    status = subprocess.run(
        _cli(fresh, "local", "status"), env=_environment(), capture_output=True, text=True
    )
    assert status.returncode == 1
    assert "No local service runs" in status.stdout


def test_an_idle_service_stops_itself_and_the_next_command_starts_one(fresh: Path) -> None:
    first = control.ensure_running(fresh, idle_timeout=1.0)
    until(lambda: control.find(fresh) is None, "the idle service to stop", timeout=30)
    assert "idle for" in (fresh / "logs" / "service.log").read_text()
    listed = subprocess.run(
        _cli(fresh, "executions", "list"), env=_environment(), capture_output=True, text=True
    )
    assert listed.returncode == 0, listed.stderr
    assert "No executions yet" in listed.stdout
    second = control.find(fresh)
    assert second is not None and second.pid != first.pid


def test_an_idle_service_running_older_code_is_replaced(fresh: Path) -> None:
    first = control.ensure_running(fresh)
    record = json.loads((fresh / "service.json").read_text())
    (fresh / "service.json").write_text(json.dumps({**record, "code": "older"}))
    notes: list[str] = []
    second = control.ensure_running(fresh, echo=notes.append)
    assert second.pid != first.pid
    assert notes[0] == (
        f"Restarting the local service (pid {first.pid}): the code changed since it started"
    )


def test_a_service_whose_workspace_is_deleted_stops(fresh: Path) -> None:
    info = control.ensure_running(fresh)
    shutil.rmtree(fresh)
    until(lambda: not pid_alive(info.pid), "the service to notice and exit", timeout=30)


def test_a_second_service_for_the_same_workspace_exits_at_once(fresh: Path) -> None:
    first = control.ensure_running(fresh)
    second = subprocess.run(
        [sys.executable, "-m", "sfn_mlops.local.daemon", "--workspace", str(fresh)],
        env=_environment(),
        capture_output=True,
        text=True,
        timeout=60,
    )
    assert second.returncode == 0, second.stderr
    assert control.find(fresh) == first
    assert "another service already runs" in (fresh / "logs" / "service.log").read_text()
