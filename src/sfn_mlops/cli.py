"""The ``sfn-mlops`` command: run the pipeline and look at what it did.

Local mode (the default) answers every AWS call from the workspace; the commands themselves
only use boto3, so they read the same in both modes.
"""

from __future__ import annotations

import argparse
import datetime as dt
import json
import os
import re
import secrets
import sys
import time
from pathlib import Path
from typing import Any

from sfn_mlops import settings
from sfn_mlops.config import ConfigError, PipelineConfig, load_config
from sfn_mlops.data import LocalData, stage_data

EXIT_OK, EXIT_FAILED, EXIT_USAGE = 0, 1, 2
MAX_RUN_NAME = 52  # + "-preprocess" = 63, SageMaker's limit for job names
_RUN_NAME = re.compile(rf"^[A-Za-z0-9](-?[A-Za-z0-9]){{0,{MAX_RUN_NAME - 1}}}$")


class CliError(Exception):
    """A problem the user can fix; printed without a traceback."""


def _quiet_environment() -> None:
    os.environ.setdefault("AWS_DEFAULT_REGION", settings.LOCAL_REGION)
    os.environ.setdefault("AWS_EC2_METADATA_DISABLED", "true")


def _local_cloud(args: argparse.Namespace) -> Any:
    from sfn_mlops.local import routing
    from sfn_mlops.local.cloud import LocalCloud

    os.environ.setdefault("AWS_ACCESS_KEY_ID", "local")
    os.environ.setdefault("AWS_SECRET_ACCESS_KEY", "local")
    return routing.activate(LocalCloud(settings.workspace_root(args.workspace)))


def _execution_arn(cloud: Any, name: str) -> str:
    if name.startswith("arn:"):
        return name
    from sfn_mlops.local.deploy import PIPELINE

    return str(cloud.arn("states", f"execution:{PIPELINE}:{name}"))


def _local_path(cloud: Any, uri: str) -> str | None:
    from sfn_mlops.local.objectstore import parse_s3_uri

    bucket, key = parse_s3_uri(uri)
    path = cloud.objects.root / bucket / key
    return str(path) if path.exists() else None


# run ------------------------------------------------------------------------------------
def _config_from(args: argparse.Namespace) -> PipelineConfig:
    overrides = list(args.set or [])
    for flag, key in (("data", "data"), ("target", "target"), ("problem_type", "problem_type")):
        value = getattr(args, flag)
        if value is not None:
            overrides.append(f"{key}={value}")
    return load_config(Path(args.config) if args.config else None, overrides)


def _check_data(cloud: Any, config: PipelineConfig) -> LocalData | None:
    """Find the data and check its header before anything is deployed or started."""
    from sfn_mlops.data import DataError, inspect_local
    from sfn_mlops.local.objectstore import parse_s3_uri

    if config.data.startswith("s3://"):
        data_bucket, prefix = parse_s3_uri(config.data)
        if not any(True for _ in cloud.objects.list(data_bucket, prefix)):
            raise CliError(f"data: no objects under {config.data} in the local object store")
        return None
    try:
        local = inspect_local(config, cloud.root)
    except DataError as err:
        raise CliError(str(err)) from err
    print(f"Data: {local.description}; columns: {', '.join(local.columns)}")
    return local


def _run_name(requested: str | None) -> str:
    """Job names derive from it: SageMaker allows 63 letters, digits and hyphens."""
    if requested is None:
        return f"run-{dt.datetime.now():%Y%m%d-%H%M%S}-{secrets.token_hex(2)}"
    if not _RUN_NAME.match(requested):
        raise CliError(
            f"--name {requested!r}: use at most {MAX_RUN_NAME} letters, digits and single "
            "hyphens, starting and ending with a letter or digit (job names are built from it)"
        )
    return requested


def cmd_run(args: argparse.Namespace) -> int:
    config = _config_from(args)
    if args.aws:
        return _run_aws(args, config)
    if args.stack_name or args.region:
        raise CliError("--stack-name and --region apply to --aws runs only")
    import boto3

    from sfn_mlops.follow import Follower, follow_timeout
    from sfn_mlops.local.deploy import deploy
    from sfn_mlops.report import summarize

    started = time.monotonic()
    run_name = _run_name(args.name)
    cloud = _local_cloud(args)
    local_data = _check_data(cloud, config)
    deployment = deploy(cloud, settings.project_root(args.project))
    print(f"Local stack deployed in {cloud.root} ({time.monotonic() - started:.1f} s)")
    cloud.service("lambda").prewarm()
    data_uri = config.data
    if local_data is not None:
        data_uri = stage_data(boto3.client("s3"), local_data, deployment.bucket, run_name)
    sfn = boto3.client("stepfunctions")
    arn = sfn.start_execution(
        stateMachineArn=deployment.state_machine_arn,
        name=run_name,
        input=json.dumps(config.execution_input(data_uri)),
    )["executionArn"]
    print(f"Execution {run_name} started\n")
    follower = Follower(sfn=sfn, sagemaker=boto3.client("sagemaker"), execution_arn=arn)
    try:
        execution = follower.wait(timeout=follow_timeout(config))
    except KeyboardInterrupt:
        sfn.stop_execution(executionArn=arn, error="Interrupted", cause="stopped by Ctrl-C")
        execution = sfn.describe_execution(executionArn=arn)
        print(f"\nStopped: execution {run_name} is {execution['status']}", file=sys.stderr)
        return 130
    summarize(execution, follower.events, local_path=lambda uri: _local_path(cloud, uri))
    _show_notifications(cloud, since=started)
    print(f"\nTotal wall time: {time.monotonic() - started:.1f} s")
    cloud.service("lambda").shutdown()
    return EXIT_OK if execution["status"] == "SUCCEEDED" else EXIT_FAILED


def _run_aws(args: argparse.Namespace, config: PipelineConfig) -> int:
    """The deployed stack in AWS: stage the data, start, follow, summarize (docs/aws.md)."""
    import boto3

    from sfn_mlops.aws.deploy import DeployError, SamDefaults, sam_defaults
    from sfn_mlops.aws.run import AwsClients, AwsRunError, check_credentials, run_on_aws
    from sfn_mlops.report import summarize

    started = time.monotonic()
    run_name = _run_name(args.name)
    try:
        defaults = sam_defaults(settings.project_root(args.project))
    except FileNotFoundError:  # installed elsewhere: samconfig.toml's values are the defaults
        defaults = SamDefaults()
    session = boto3.Session(region_name=args.region)
    if session.region_name is None:
        session = boto3.Session(region_name=defaults.region)
    try:
        check_credentials(session)
        result = run_on_aws(
            config,
            stack_name=args.stack_name or defaults.stack_name,
            run_name=run_name,
            clients=AwsClients.from_session(session),
            workspace=settings.workspace_root(args.workspace),  # caches the example data
        )
    except (AwsRunError, DeployError) as err:
        raise CliError(str(err)) from err
    summarize(result.execution, result.events)
    print(f"\nConsole: {result.console_url}")
    print(f"Total wall time: {time.monotonic() - started:.1f} s")
    return EXIT_OK if result.execution["status"] == "SUCCEEDED" else EXIT_FAILED


def _show_notifications(cloud: Any, since: float) -> None:
    from sfn_mlops.follow import cause_summary
    from sfn_mlops.local.services.sns import published_messages

    wall_start = time.time() - (time.monotonic() - since)
    for message in published_messages(cloud):
        if message["Timestamp"] < wall_start:
            continue
        topic = message["TopicArn"].rpartition(":")[2]
        try:
            body = json.loads(message["Message"])
            text = f"{body['error']}: {cause_summary(body.get('cause'))}"
        except (ValueError, TypeError, KeyError):
            text = message["Message"][:500]
        print(f"Notification to {topic} ({message.get('Subject') or 'no subject'}): {text}")


# executions and jobs ----------------------------------------------------------------------
def cmd_executions(args: argparse.Namespace) -> int:
    import boto3

    cloud = _local_cloud(args)
    sfn = boto3.client("stepfunctions")
    if args.action == "list":
        executions = sfn.list_executions(maxResults=args.limit)["executions"]
        if not executions:
            print("No executions yet. Start one with: sfn-mlops run")
        for item in executions:
            stop = item.get("stopDate")
            took = f"{(stop - item['startDate']).total_seconds():.1f} s" if stop else "running"
            print(
                f"{item['name']:<36} {item['status']:<10} "
                f"{item['startDate']:%Y-%m-%d %H:%M:%S}  {took}"
            )
        return EXIT_OK
    arn = _execution_arn(cloud, args.name)
    try:
        execution = sfn.describe_execution(executionArn=arn)
    except sfn.exceptions.ExecutionDoesNotExist as err:
        raise CliError(
            f"no execution named {args.name!r}; see `sfn-mlops executions list`"
        ) from err
    if args.action == "describe":
        for key in ("name", "status", "startDate", "stopDate", "error", "cause", "input", "output"):
            if key in execution:
                print(f"{key}: {execution[key]}")
        return EXIT_OK
    for event in sfn.get_execution_history(executionArn=arn)["events"]:
        details: dict[str, Any]
        details = next((v for k, v in event.items() if k.endswith("EventDetails")), {})
        label = details.get("name") or details.get("error") or details.get("resource") or ""
        print(
            f"{event['id']:>4} {event['timestamp']:%H:%M:%S.%f}"[:-3]
            + f"  {event['type']:<28} {label}"
        )
    return EXIT_OK


def cmd_jobs(args: argparse.Namespace) -> int:
    from sfn_mlops.local.jobs import job_log_path

    cloud = _local_cloud(args)
    path = job_log_path(cloud, args.name)
    if not path.is_file():
        raise CliError(f"no log for job {args.name!r} in {cloud.root}; names look like <run>-train")
    sys.stdout.write(path.read_text(encoding="utf-8", errors="replace"))
    return EXIT_OK


def cmd_deploy(args: argparse.Namespace) -> int:
    from sfn_mlops.local.deploy import deploy

    cloud = _local_cloud(args)
    deployment = deploy(cloud, settings.project_root(args.project))
    print(f"Deployed {deployment.state_machine_arn}\nArtifacts bucket: s3://{deployment.bucket}")
    return EXIT_OK


# parser ---------------------------------------------------------------------------------
def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(prog="sfn-mlops", description=__doc__.splitlines()[0])
    parser.add_argument(
        "--workspace",
        help=f"local cloud folder (default ${settings.WORKSPACE_ENV} or ./.sfn-mlops)",
    )
    parser.add_argument("--project", help="folder with template.yaml (default: found from here)")
    commands = parser.add_subparsers(dest="command", required=True)

    run = commands.add_parser(
        "run", help="deploy locally and run the pipeline, following each state"
    )
    run.add_argument("--config", help="pipeline config file (YAML or JSON)")
    run.add_argument(
        "--set", action="append", metavar="KEY=VALUE", help="override a config key (repeatable)"
    )
    run.add_argument("--data", help="CSV/Parquet file or folder, s3:// URI, or 'abalone'")
    run.add_argument("--target", help="column to predict")
    run.add_argument("--problem-type", choices=["regression", "binary", "multiclass"])
    run.add_argument("--name", help="execution name (default run-<time>-<random>)")
    run.add_argument("--aws", action="store_true", help="run the deployed state machine in AWS")
    run.add_argument(
        "--stack-name", help="with --aws: the stack `make deploy` created (default: samconfig.toml)"
    )
    run.add_argument(
        "--region", help="with --aws: its region (default: your AWS profile's, then samconfig.toml)"
    )
    run.set_defaults(handler=cmd_run)

    executions = commands.add_parser("executions", help="list executions, or describe one")
    actions = executions.add_subparsers(dest="action", required=True)
    listing = actions.add_parser("list")
    listing.add_argument("--limit", type=int, default=20)
    for action in ("describe", "history"):
        actions.add_parser(action).add_argument("name", help="execution name or ARN")
    executions.set_defaults(handler=cmd_executions)

    jobs = commands.add_parser("jobs", help="SageMaker jobs of the local cloud")
    jobs_actions = jobs.add_subparsers(dest="action", required=True)
    jobs_actions.add_parser("logs").add_argument("name", help="job name, e.g. <run>-train")
    jobs.set_defaults(handler=cmd_jobs)

    commands.add_parser("deploy", help="deploy template.yaml to the local cloud").set_defaults(
        handler=cmd_deploy
    )
    return parser


def main(argv: list[str] | None = None) -> int:
    args = build_parser().parse_args(argv)
    if not getattr(args, "aws", False):
        # Local mode only: in AWS the user's region and instance credentials must stay usable.
        _quiet_environment()
    try:
        return int(args.handler(args))
    except (ConfigError, CliError, FileNotFoundError) as err:
        print(f"sfn-mlops: error: {err}", file=sys.stderr)
        return EXIT_USAGE
    except KeyboardInterrupt:
        return 130


def entry_point() -> None:
    """The ``sfn-mlops`` console script: ``main``, then exit without interpreter teardown.

    Everything is on disk by then (atomic object writes, committed SQLite); tearing down the
    engine's and botocore's module graphs took 0.3-0.7 s of every command (measured).
    """
    code = main()
    sys.stdout.flush()
    sys.stderr.flush()
    os._exit(code)


if __name__ == "__main__":
    entry_point()
