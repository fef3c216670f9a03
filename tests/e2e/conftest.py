"""End-to-end tests run the real local pipeline through the CLI, then inspect it through boto3.

A module shares one workspace and its local service (a real service process, started before the
module's first run and stopped after its last); each scenario runs once in a module-scoped
fixture and the tests read what that run left behind, through boto3 pointed at the service.
"""

from __future__ import annotations

import contextlib
import io
import json
import os
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import boto3
import pytest

from sfn_mlops.cli import main
from sfn_mlops.local import control
from sfn_mlops.local.cloud import LocalCloud
from sfn_mlops.local.deploy import PIPELINE
from sfn_mlops.local.services.sns import published_messages
from sfn_mlops.settings import TIME_SCALE_ENV

# Retry waits (IntervalSeconds 2, capped at 30) shrink to tens of milliseconds.
TIME_SCALE = "0.01"
ENTERED = "StateEntered"


@dataclass(frozen=True)
class CliRun:
    """What one in-process ``sfn-mlops`` call returned and printed."""

    code: int
    out: str
    err: str

    def summary(self, name: str) -> str:
        """The end-of-run summary (after the per-state lines) of execution ``name``."""
        marker = f"\nExecution {name}: "
        assert marker in self.out, f"no summary for {name} in:\n{self.out}"
        return self.out[self.out.index(marker) :]


def run_cli(workspace: Path, *args: str) -> CliRun:
    """``sfn-mlops --workspace WORKSPACE ARGS`` in this process, output captured."""
    out, err = io.StringIO(), io.StringIO()
    endpoint = os.environ.get("AWS_ENDPOINT_URL")
    try:
        with contextlib.redirect_stdout(out), contextlib.redirect_stderr(err):
            code = main(["--workspace", str(workspace), *args])
    finally:  # the CLI points this process at its service: leave the caller's setting as it was
        if endpoint is None:
            os.environ.pop("AWS_ENDPOINT_URL", None)
        else:
            os.environ["AWS_ENDPOINT_URL"] = endpoint
    return CliRun(code=code, out=out.getvalue(), err=err.getvalue())


class LocalAws:
    """boto3 pointed at one workspace, with the look-ups the scenarios need."""

    def __init__(self, cloud: LocalCloud) -> None:
        self.cloud = cloud
        self.sfn = boto3.client("stepfunctions")
        self.sagemaker = boto3.client("sagemaker")
        self.s3 = boto3.client("s3")
        self.machine_arn = cloud.arn("states", f"stateMachine:{PIPELINE}")

    def execution_names(self) -> list[str]:
        try:
            executions = self.sfn.list_executions(stateMachineArn=self.machine_arn)["executions"]
        except self.sfn.exceptions.StateMachineDoesNotExist:
            return []  # nothing was ever deployed to this workspace
        return [item["name"] for item in executions]

    def execution_arn(self, name: str) -> str:
        return self.cloud.arn("states", f"execution:{PIPELINE}:{name}")

    def describe(self, name: str) -> dict[str, Any]:
        return dict(self.sfn.describe_execution(executionArn=self.execution_arn(name)))

    def history(self, name: str) -> list[dict[str, Any]]:
        arn = self.execution_arn(name)
        return list(self.sfn.get_execution_history(executionArn=arn, maxResults=1000)["events"])

    def entered_states(self, name: str) -> list[str]:
        """Names of the states the execution entered, in order."""
        return [
            event[_details(event)]["name"]
            for event in self.history(name)
            if event["type"].endswith(ENTERED)
        ]

    def task_events(self, name: str, state: str) -> list[dict[str, Any]]:
        """The Task* history events of ``state`` (each attributed to the state last entered)."""
        current, found = None, []
        for event in self.history(name):
            if event["type"].endswith(ENTERED):
                current = event[_details(event)]["name"]
            elif event["type"].startswith("Task") and current == state:
                found.append(event)
        return found

    def failure_messages(self, name: str) -> list[dict[str, Any]]:
        """SNS messages whose body names execution ``name``."""
        arn = self.execution_arn(name)
        return [m for m in published_messages(self.cloud) if arn in m["Message"]]

    def object_bytes(self, uri: str) -> bytes:
        bucket, _, key = uri.removeprefix("s3://").partition("/")
        return bytes(self.s3.get_object(Bucket=bucket, Key=key)["Body"].read())

    def json_object(self, uri: str) -> Any:
        return json.loads(self.object_bytes(uri))


def _details(event: dict[str, Any]) -> str:
    return next(key for key in event if key.endswith("EventDetails"))


@contextlib.contextmanager
def local_aws(workspace: Path) -> Iterator[LocalAws]:
    """boto3 pointed at the workspace's service (started if it is not running)."""
    control.connect(workspace)
    yield LocalAws(LocalCloud(workspace))


@pytest.fixture(scope="module", autouse=True)
def _e2e_environment() -> Iterator[None]:
    """Module-scoped runs need the settings before they start, hence no function monkeypatch."""
    with pytest.MonkeyPatch.context() as patch:
        patch.setenv(TIME_SCALE_ENV, TIME_SCALE)
        yield


@pytest.fixture(scope="session")
def cli() -> Callable[..., CliRun]:
    """``cli(workspace, *args)`` runs the CLI in this process (module fixtures can use it)."""
    return run_cli


@pytest.fixture(scope="session")
def open_aws() -> Callable[[Path], contextlib.AbstractContextManager[LocalAws]]:
    """``with open_aws(workspace) as aws:`` routes boto3 to the workspace inside the block."""
    return local_aws


@pytest.fixture(scope="module")
def workspace(tmp_path_factory: pytest.TempPathFactory, _e2e_environment: None) -> Iterator[Path]:
    """One workspace and service per module: scenarios use distinct execution names."""
    root = tmp_path_factory.mktemp("workspace")
    control.ensure_running(root)
    yield root
    control.stop(root)


@pytest.fixture
def aws(workspace: Path) -> Iterator[LocalAws]:
    with local_aws(workspace) as view:
        yield view
