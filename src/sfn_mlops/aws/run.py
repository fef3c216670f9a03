"""``sfn-mlops run --aws``: start the deployed state machine in AWS and follow it.

The same steps as a local run, against the stack ``sam build && sam deploy`` created: resolve
the stack's outputs through CloudFormation, stage local data in the artifact bucket
(``datasets/<run name>/``, the layout of local mode), start an execution with the pipeline
config's execution input, and follow it with the same ``Follower`` as local runs. Every client
is passed in, so the whole path is tested offline with moto.
"""

from __future__ import annotations

import json
import time
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from botocore.exceptions import ClientError, NoCredentialsError

from sfn_mlops.aws.stack import BUCKET_OUTPUT, STATE_MACHINE_OUTPUT, stack_outputs
from sfn_mlops.config import PipelineConfig
from sfn_mlops.data import DATASETS_PREFIX, DataError, LocalData, stage_data
from sfn_mlops.follow import Follower, follow_timeout
from sfn_mlops.local.objectstore import parse_s3_uri

NO_CREDENTIALS = "no AWS credentials: configure a profile or run without --aws for local mode"
CONSOLE_URL = (
    "https://console.aws.amazon.com/states/home?region={region}#/v2/executions/details/{arn}"
)
#: AWS jobs take minutes: poll the history every few seconds, show job progress less often.
POLL_SECONDS = 5.0
PROGRESS_SECONDS = 30.0

Echo = Callable[[str], None]


class AwsRunError(Exception):
    """A problem the user can fix; printed without a traceback."""


@dataclass(frozen=True)
class AwsClients:
    cloudformation: Any
    s3: Any
    sfn: Any
    sagemaker: Any

    @classmethod
    def from_session(cls, session: Any) -> AwsClients:
        return cls(
            cloudformation=session.client("cloudformation"),
            s3=session.client("s3"),
            sfn=session.client("stepfunctions"),
            sagemaker=session.client("sagemaker"),
        )


@dataclass(frozen=True)
class AwsStack:
    name: str
    region: str
    state_machine_arn: str
    bucket: str


@dataclass(frozen=True)
class AwsRun:
    execution_arn: str
    console_url: str
    execution: dict[str, Any]
    events: list[dict[str, Any]] = field(default_factory=list)


def check_credentials(session: Any) -> None:
    if session.get_credentials() is None:
        raise AwsRunError(NO_CREDENTIALS)


def console_url(region: str, execution_arn: str) -> str:
    return CONSOLE_URL.format(region=region, arn=execution_arn)


def resolve_stack(cloudformation: Any, stack_name: str) -> AwsStack:
    """The state machine and bucket of a deployed stack (StackNotFound, MissingStackOutput)."""
    outputs = stack_outputs(cloudformation, stack_name)
    return AwsStack(
        name=stack_name,
        region=outputs.region,
        state_machine_arn=outputs.require(STATE_MACHINE_OUTPUT),
        bucket=outputs.require(BUCKET_OUTPUT),
    )


def local_data(
    config: PipelineConfig, workspace: Path
) -> tuple[LocalData | None, PipelineConfig, str | None]:
    """The local files to stage (None for data already in S3), the config with what the data
    showed, and the header line: checked as in local mode (sfn_mlops.columns).

    'abalone' is the bundled CSV, written once under ``workspace/datasets/`` as in local mode.
    """
    if config.data.startswith("s3://"):
        return None, config, None
    from sfn_mlops.columns import check_local_data

    try:
        return check_local_data(config, workspace)
    except DataError as err:
        raise AwsRunError(str(err)) from err


def check_s3_data(s3: Any, uri: str, bucket: str) -> None:
    """Data already in S3 must be in the artifact bucket: the jobs' role reads only that one."""
    data_bucket, prefix = parse_s3_uri(uri)
    if data_bucket != bucket:
        raise AwsRunError(
            f"data: {uri} is outside the stack's bucket; its SageMaker role reads only "
            f"s3://{bucket}/. Copy the data there, e.g. "
            f"`aws s3 cp --recursive {uri} s3://{bucket}/{DATASETS_PREFIX}/<name>/`"
        )
    try:
        listing = s3.list_objects_v2(Bucket=data_bucket, Prefix=prefix, MaxKeys=1)
    except ClientError as err:
        raise AwsRunError(f"data: cannot list {uri}: {err}") from err
    if not listing.get("KeyCount"):
        raise AwsRunError(f"data: no objects under {uri}")


def start_execution(sfn: Any, state_machine_arn: str, run_name: str, payload: dict) -> str:
    try:
        response = sfn.start_execution(
            stateMachineArn=state_machine_arn, name=run_name, input=json.dumps(payload)
        )
    except sfn.exceptions.ExecutionAlreadyExists as err:
        raise AwsRunError(
            f"an execution named {run_name!r} already exists; pick another --name"
        ) from err
    return str(response["executionArn"])


def run_on_aws(
    config: PipelineConfig,
    *,
    stack_name: str,
    run_name: str,
    clients: AwsClients,
    workspace: Path,
    echo: Echo = print,
    poll_seconds: float | None = None,
    timeout: float | None = None,
) -> AwsRun:
    """Stages the data, starts the execution and follows it to its end.

    ``poll_seconds`` defaults to POLL_SECONDS, ``timeout`` to ``follow_timeout(config)``.
    """
    try:
        return _run(
            config,
            stack_name=stack_name,
            run_name=run_name,
            clients=clients,
            workspace=workspace,
            echo=echo,
            poll_seconds=POLL_SECONDS if poll_seconds is None else poll_seconds,
            timeout=follow_timeout(config) if timeout is None else timeout,
        )
    except NoCredentialsError as err:
        raise AwsRunError(NO_CREDENTIALS) from err


def _run(
    config: PipelineConfig,
    *,
    stack_name: str,
    run_name: str,
    clients: AwsClients,
    workspace: Path,
    echo: Echo,
    poll_seconds: float,
    timeout: float,
) -> AwsRun:
    data, config, line = local_data(config, workspace)  # checked before anything touches AWS
    if line is not None:
        echo(line)
    stack = resolve_stack(clients.cloudformation, stack_name)
    echo(f"Stack {stack.name} in {stack.region}: bucket s3://{stack.bucket}")
    if data is None:
        check_s3_data(clients.s3, config.data, stack.bucket)
        data_uri = config.data
    else:
        data_uri = stage_data(clients.s3, data, stack.bucket, run_name)
        echo(f"Data staged at {data_uri}")
    arn = start_execution(
        clients.sfn, stack.state_machine_arn, run_name, config.execution_input(data_uri)
    )
    link = console_url(stack.region, arn)
    echo(f"Execution {run_name} started\n  {link}\n")
    follower = Follower(
        sfn=clients.sfn,
        sagemaker=clients.sagemaker,
        execution_arn=arn,
        echo=echo,
        progress_every=PROGRESS_SECONDS,
    )
    started = time.monotonic()
    try:
        execution = follower.wait(interval=poll_seconds, timeout=timeout)
    except TimeoutError as err:
        raise AwsRunError(
            f"stopped following after {time.monotonic() - started:.0f} s; the execution goes "
            f"on in AWS: {link}"
        ) from err
    except KeyboardInterrupt:
        echo(
            f"\nStopped following; the execution goes on in AWS: {link}\n"
            f"Stop it with: aws stepfunctions stop-execution --execution-arn {arn}"
        )
        raise
    return AwsRun(execution_arn=arn, console_url=link, execution=execution, events=follower.events)
