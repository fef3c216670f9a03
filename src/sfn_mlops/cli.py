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
import shlex
import sys
import time
from pathlib import Path
from typing import Any

from sfn_mlops import batch_cli, demo, hosting_cli, monitor_cli, settings
from sfn_mlops.batch import BatchError
from sfn_mlops.config import ConfigError, PipelineConfig, load_config
from sfn_mlops.data import LocalData, stage_data
from sfn_mlops.follow import follow_timeout
from sfn_mlops.hosting_cli import HostingError
from sfn_mlops.local.control import ServiceError
from sfn_mlops.monitor_cli import MonitorError

EXIT_OK, EXIT_FAILED, EXIT_USAGE = 0, 1, 2
EXECUTION_STATUSES = ("RUNNING", "SUCCEEDED", "FAILED", "TIMED_OUT", "ABORTED")
#: How often a local run's history is read: a loopback call costs about 2 ms.
LOCAL_POLL_SECONDS = 0.05
#: A job's name is <run>-<step>, and <run>-<step>-N on the Nth retry of its create (at most 3):
#: <run>-preprocess-3 has at most 63 characters, SageMaker's limit for job names.
MAX_RUN_NAME = 63 - len("-preprocess-3")
MAX_TUNING_JOB_NAME = 32  # SageMaker's limit for HyperParameterTuningJobName
TUNING_SUFFIX = "-tune-3"  # PrepareRun names the tuning job <run>-tune (-3 on a third retry)
_RUN_NAME = re.compile(rf"^[A-Za-z0-9](-?[A-Za-z0-9]){{0,{MAX_RUN_NAME - 1}}}$")


class CliError(Exception):
    """A problem the user can fix; printed without a traceback."""


def _quiet_environment() -> None:
    os.environ.setdefault("AWS_DEFAULT_REGION", settings.LOCAL_REGION)
    os.environ.setdefault("AWS_EC2_METADATA_DISABLED", "true")


def _connect(args: argparse.Namespace) -> Any:
    """The workspace's local service (started if needed); boto3 of this process talks to it."""
    from sfn_mlops.local import control

    try:
        return control.connect(
            settings.workspace_root(args.workspace),
            echo=lambda line: print(line, file=sys.stderr),
        )
    except control.ServiceError as err:
        raise CliError(str(err)) from err


def _execution_arn(name: str) -> str:
    if name.startswith("arn:"):
        return name
    from sfn_mlops.local.deploy import PIPELINE

    region, account = settings.LOCAL_REGION, settings.LOCAL_ACCOUNT
    return f"arn:aws:states:{region}:{account}:execution:{PIPELINE}:{name}"


def _local_path(workspace: Path, uri: str) -> str | None:
    from sfn_mlops.local.objectstore import parse_s3_uri

    bucket, key = parse_s3_uri(uri)
    path = workspace / "objects" / bucket / key
    return str(path) if path.exists() else None


# run ------------------------------------------------------------------------------------
def _config_from(args: argparse.Namespace) -> PipelineConfig:
    overrides = list(args.set or [])
    for flag, key in (("data", "data"), ("target", "target"), ("problem_type", "problem_type")):
        value = getattr(args, flag)
        if value is not None:
            overrides.append(f"{key}={value}")
    return load_config(Path(args.config) if args.config else None, overrides)


def _check_data(workspace: Path, config: PipelineConfig) -> tuple[LocalData | None, PipelineConfig]:
    """Find the data and check it before anything is deployed or started; the config comes
    back with the column kinds and the delimiter the data showed (the jobs are told them)."""
    import boto3

    from sfn_mlops.columns import check_local_data
    from sfn_mlops.data import DataError
    from sfn_mlops.local.objectstore import parse_s3_uri

    if config.data.startswith("s3://"):
        data_bucket, prefix = parse_s3_uri(config.data)
        s3 = boto3.client("s3")
        try:
            found = s3.list_objects_v2(Bucket=data_bucket, Prefix=prefix, MaxKeys=1)["KeyCount"]
        except s3.exceptions.NoSuchBucket as err:
            raise CliError(f"data: no bucket {data_bucket!r} in the local object store") from err
        if not found:
            raise CliError(f"data: no objects under {config.data} in the local object store")
        return None, config
    try:
        local, config, line = check_local_data(config, workspace)
    except DataError as err:
        raise CliError(str(err)) from err
    print(line)
    return local, config


def _run_name(requested: str | None, config: PipelineConfig) -> str:
    """Job names derive from it: SageMaker allows 63 letters, digits and hyphens (a tuning
    job's name, <run>-tune, 32)."""
    if requested is None:
        return f"run-{dt.datetime.now():%Y%m%d-%H%M%S}-{secrets.token_hex(2)}"
    if not _RUN_NAME.match(requested):
        raise CliError(
            f"--name {requested!r}: use at most {MAX_RUN_NAME} letters, digits and single "
            "hyphens, starting and ending with a letter or digit (job names are built from it)"
        )
    longest = MAX_TUNING_JOB_NAME - len(TUNING_SUFFIX)
    if config.tuning is not None and len(requested) > longest:
        raise CliError(
            f"--name {requested!r}: with tuning, use at most {longest} characters (SageMaker "
            f"names a tuning job in at most {MAX_TUNING_JOB_NAME}: <run>{TUNING_SUFFIX})"
        )
    return requested


def cmd_run(args: argparse.Namespace) -> int:
    config = _config_from(args)
    if args.aws:
        return _run_aws(args, config)
    if args.stack_name or args.region:
        raise CliError("--stack-name and --region apply to --aws runs only")
    import boto3

    from sfn_mlops.local import control

    started = time.monotonic()
    run_name = _run_name(args.name, config)
    service = _connect(args)
    local_data, config = _check_data(service.workspace, config)
    try:
        deployment = control.admin(
            service, "deploy", {"project": str(settings.project_root(args.project))}
        )
    except control.ServiceError as err:
        raise CliError(f"deploy: {err}") from err
    print(f"Local stack deployed in {service.workspace} ({time.monotonic() - started:.1f} s)")
    sfn = boto3.client("stepfunctions")
    _check_name_is_free(sfn, deployment["state_machine_arn"], run_name)
    data_uri = config.data
    if local_data is not None:
        data_uri = stage_data(boto3.client("s3"), local_data, deployment["bucket"], run_name)
    try:
        arn = sfn.start_execution(
            stateMachineArn=deployment["state_machine_arn"],
            name=run_name,
            input=json.dumps(config.execution_input(data_uri)),
        )["executionArn"]
    except sfn.exceptions.ExecutionAlreadyExists as err:
        raise CliError(f"--name {run_name!r}: an execution with this name already exists") from err
    if args.detach:
        print(
            f"Execution {run_name} started; follow it with: sfn-mlops executions follow {run_name}"
        )
        return EXIT_OK
    print(f"Execution {run_name} started\n")
    return _follow(service.workspace, sfn, arn, started, timeout=follow_timeout(config))


def _check_name_is_free(sfn: Any, state_machine_arn: str, run_name: str) -> None:
    """A reused --name fails here, before the data is staged under the run's prefix (the
    StartExecution check after staging stays, for a name taken in between)."""
    arn = state_machine_arn.replace(":stateMachine:", ":execution:", 1) + f":{run_name}"
    try:
        sfn.describe_execution(executionArn=arn)
    except sfn.exceptions.ExecutionDoesNotExist:
        return
    raise CliError(f"--name {run_name!r}: an execution with this name already exists")


class _LazyClient:
    """A boto3 client made on first use: the follower needs SageMaker only for long jobs."""

    def __init__(self, service: str) -> None:
        self._service = service
        self._client: Any = None

    def __getattr__(self, name: str) -> Any:
        if self._client is None:
            import boto3

            self._client = boto3.client(self._service)
        return getattr(self._client, name)


def _follow(
    workspace: Path, sfn: Any, arn: str, started: float, timeout: float | None = None
) -> int:
    """Follow an execution to its end and summarize it; Ctrl-C stops following, not the run."""

    from sfn_mlops.follow import Follower
    from sfn_mlops.report import summarize

    name = arn.rpartition(":")[2]
    follower = Follower(sfn=sfn, sagemaker=_LazyClient("sagemaker"), execution_arn=arn)
    try:
        execution = follower.wait(interval=LOCAL_POLL_SECONDS, timeout=timeout)
    except KeyboardInterrupt:
        print(
            f"\nStopped following; execution {name} goes on in the local service.\n"
            f"  follow it again: sfn-mlops executions follow {name}\n"
            f"  stop it:         sfn-mlops executions stop {name}",
            file=sys.stderr,
        )
        return 130
    summarize(execution, follower.events, local_path=lambda uri: _local_path(workspace, uri))
    _show_notifications(workspace, execution)
    print(f"\nTotal wall time: {time.monotonic() - started:.1f} s")
    return EXIT_OK if execution["status"] == "SUCCEEDED" else EXIT_FAILED


def _s3_json(session: Any, uri: str) -> Any:
    """A run's JSON report from S3, or None when it cannot be read (the summary goes on)."""
    from botocore.exceptions import BotoCoreError, ClientError

    bucket, _, key = uri.removeprefix("s3://").partition("/")
    try:
        body = session.client("s3").get_object(Bucket=bucket, Key=key)["Body"].read()
        return json.loads(body)
    except (BotoCoreError, ClientError, ValueError):
        return None


def _run_aws(args: argparse.Namespace, config: PipelineConfig) -> int:
    """The deployed stack in AWS: stage the data, start, follow, summarize (docs/aws.md)."""
    import boto3

    from sfn_mlops.aws.run import AwsClients, AwsRunError, check_credentials, run_on_aws
    from sfn_mlops.aws.stack import SamDefaults, StackError, sam_defaults
    from sfn_mlops.report import summarize

    started = time.monotonic()
    run_name = _run_name(args.name, config)
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
    except (AwsRunError, StackError) as err:
        raise CliError(str(err)) from err
    summarize(result.execution, result.events, read_json=lambda uri: _s3_json(session, uri))
    print(f"\nConsole: {result.console_url}")
    print(f"Total wall time: {time.monotonic() - started:.1f} s")
    return EXIT_OK if result.execution["status"] == "SUCCEEDED" else EXIT_FAILED


def _show_notifications(workspace: Path, execution: dict[str, Any]) -> None:
    """Which notifications this run sent (its own: they name its execution, where other runs'
    and batches' may come in the same minutes); their text is the cause the summary shows."""
    from sfn_mlops.local.metadata import MetadataStore
    from sfn_mlops.local.services.sns import MESSAGES

    since, arn = execution["startDate"].timestamp(), execution["executionArn"]
    for message in MetadataStore(workspace / "metadata.db").read(MESSAGES):
        if message["Timestamp"] < since or f'"{arn}"' not in str(message.get("Message", "")):
            continue
        topic = message["TopicArn"].rpartition(":")[2]
        print(f"Notification sent to {topic}: {message.get('Subject') or '(no subject)'}")


# executions and jobs ----------------------------------------------------------------------
def cmd_executions(args: argparse.Namespace) -> int:
    import boto3

    from sfn_mlops import runs

    service = _connect(args)
    sfn = boto3.client("stepfunctions")
    if args.action == "list":
        return _list_executions(sfn, None if args.all else args.limit, args.status)
    if args.action == "compare":
        first, second = (runs.load_run(sfn, _describe(sfn, name)) for name in args.names)
        print("\n".join(runs.compare(first, second)))
        return EXIT_OK
    execution = _describe(sfn, args.name)
    arn = execution["executionArn"]
    if args.action == "describe":
        if args.json:
            print(json.dumps(execution, indent=2, default=str))
        else:
            print("\n".join(runs.describe(runs.load_run(sfn, execution))))
        return EXIT_OK
    if args.action == "follow":
        return _follow(service.workspace, sfn, arn, time.monotonic())
    if args.action == "stop":
        return _stop_execution(sfn, execution)
    _print_history(sfn, arn)
    return EXIT_OK


def _describe(sfn: Any, name: str) -> dict[str, Any]:
    try:
        return dict(sfn.describe_execution(executionArn=_execution_arn(name)))
    except sfn.exceptions.ExecutionDoesNotExist as err:
        raise CliError(f"no execution named {name!r}; see `sfn-mlops executions list`") from err


def _list_executions(sfn: Any, limit: int | None, status: str | None) -> int:
    from sfn_mlops import runs
    from sfn_mlops.local.deploy import PIPELINE

    if limit is not None and limit < 1:
        raise CliError(f"--limit {limit}: give a positive number, or --all")
    region, account = settings.LOCAL_REGION, settings.LOCAL_ACCOUNT
    pipeline = f"arn:aws:states:{region}:{account}:stateMachine:{PIPELINE}"
    executions, more = runs.list_executions(sfn, pipeline, limit, status)
    if not executions:
        which = f" {status}" if status else ""
        print(f"No{which} executions yet. Start one with: sfn-mlops run")
        return EXIT_OK
    details = [sfn.describe_execution(executionArn=item["executionArn"]) for item in executions]
    print("\n".join(runs.table([runs.load_run(sfn, execution) for execution in details])))
    if more:
        print(f"({len(executions)} newest shown; more with --all or --limit N)", file=sys.stderr)
    return EXIT_OK


def _stop_execution(sfn: Any, execution: dict[str, Any]) -> int:
    if execution["status"] != "RUNNING":
        print(f"Execution {execution['name']} is already {execution['status']}")
        return EXIT_OK
    sfn.stop_execution(
        executionArn=execution["executionArn"],
        error="StoppedByUser",
        cause="stopped with sfn-mlops executions stop",
    )
    status = sfn.describe_execution(executionArn=execution["executionArn"])["status"]
    print(f"Execution {execution['name']} is {status}; its running job was stopped")
    return EXIT_OK


def _print_history(sfn: Any, arn: str) -> None:
    from sfn_mlops.runs import execution_history

    for event in execution_history(sfn, arn):
        details: dict[str, Any]
        details = next((v for k, v in event.items() if k.endswith("EventDetails")), {})
        label = details.get("name") or details.get("error") or details.get("resource") or ""
        print(
            f"{event['id']:>4} {event['timestamp']:%H:%M:%S.%f}"[:-3]
            + f"  {event['type']:<28} {label}"
        )


def cmd_jobs(args: argparse.Namespace) -> int:
    from sfn_mlops.local.cloud import LocalCloud
    from sfn_mlops.local.jobs import job_log_path

    workspace = settings.workspace_root(args.workspace)
    path = job_log_path(LocalCloud(workspace), args.name)
    if not path.is_file():
        raise CliError(f"no log for job {args.name!r} in {workspace}; names look like <run>-train")
    sys.stdout.write(path.read_text(encoding="utf-8", errors="replace"))
    return EXIT_OK


# prune ----------------------------------------------------------------------------------
def cmd_prune(args: argparse.Namespace) -> int:
    """Remove finished executions' artifacts, jobs and records (sfn_mlops.local.prune)."""
    from sfn_mlops.local import prune

    workspace = settings.workspace_root(args.workspace)
    try:
        older = prune.parse_duration(args.older_than) if args.older_than else None
        result = prune.prune(workspace, keep=args.keep, older_than=older, dry_run=args.dry_run)
    except prune.PruneError as err:
        raise CliError(str(err)) from err
    verb = "would remove" if result.dry_run else "removed"
    for execution in result.removed:
        print(
            f"{verb} {execution.name} ({execution.status}): {len(execution.jobs)} jobs, "
            f"{execution.files} files, {_size(execution.bytes)}"
        )
    for execution in result.kept:
        print(f"kept {execution.name} ({execution.status}): {execution.kept_because}")
    done = "to remove, would free" if result.dry_run else "removed, freed"
    print(f"{len(result.removed)} executions {done} {_size(result.bytes)}")
    return EXIT_OK


def _size(count: int) -> str:
    return f"{count / 1e6:.1f} MB" if count >= 100_000 else f"{count / 1e3:.1f} kB"


# report ---------------------------------------------------------------------------------
def cmd_report(args: argparse.Namespace) -> int:
    """One self-contained HTML page about a run; prints where it is."""
    import boto3

    from sfn_mlops import run_report

    service = _connect(args)
    sfn = boto3.client("stepfunctions")
    execution = _describe(sfn, args.name)
    report = run_report.gather(
        sfn, boto3.client("s3"), execution, lambda uri: _local_path(service.workspace, uri)
    )
    default = service.workspace / "reports" / f"{execution['name']}.html"
    path = run_report.write(report, Path(args.output) if args.output else default)
    print(path.resolve())
    return EXIT_OK


def cmd_deploy(args: argparse.Namespace) -> int:
    from sfn_mlops.local import control

    service = _connect(args)
    try:
        deployment = control.admin(
            service, "deploy", {"project": str(settings.project_root(args.project))}
        )
    except control.ServiceError as err:
        raise CliError(f"deploy: {err}") from err
    print(
        f"Deployed {deployment['state_machine_arn']}\nArtifacts bucket: s3://{deployment['bucket']}"
    )
    return EXIT_OK


def cmd_local(args: argparse.Namespace) -> int:
    """The local service: up, env, down, status, logs."""
    from sfn_mlops.local import control
    from sfn_mlops.local.daemon import LOG_FILE

    workspace = settings.workspace_root(args.workspace)
    if args.action == "up":
        info = control.ensure_running(workspace, args.idle_timeout)
        print(f"Local service for {workspace}: pid {info.pid}, {info.url}")
        print('Point any AWS client at it: eval "$(sfn-mlops local env)"')
    elif args.action == "env":
        _local_env(control.ensure_running(workspace))
    elif args.action == "down":
        stopped = control.stop(workspace)
        print(
            f"Stopped the local service (pid {stopped.pid})" if stopped else "No local service runs"
        )
    elif args.action == "iam":
        return _local_iam(workspace, args.mode, args.unused, args.prove)
    elif args.action == "logs":
        path = workspace / LOG_FILE
        if not path.is_file():
            raise CliError(f"no service log yet at {path}")
        sys.stdout.write(path.read_text(encoding="utf-8", errors="replace"))
    else:
        return _local_status(workspace)
    return EXIT_OK


def _local_iam(workspace: Path, mode: str | None, unused: bool, prove: bool) -> int:
    """Show or set how the local service applies IAM (the running service reads it at once);
    with ``unused``, the template's statements no request of this workspace has used; with
    ``prove``, whether each is needed (exit 1 when one is unused or redundant)."""
    from sfn_mlops.local.authorization import IamSettingError, read_mode, write_mode
    from sfn_mlops.local.cloud import LocalCloud

    try:
        if mode is not None:
            write_mode(workspace, mode)
        print(f"Local IAM: {read_mode(workspace)} ({IAM_MODES[read_mode(workspace)]})")
    except IamSettingError as err:
        raise CliError(str(err)) from err
    if not (unused or prove):
        return EXIT_OK
    authorization = LocalCloud(workspace).authorization
    if authorization.policies() is None:
        raise CliError(f"nothing is deployed in {workspace} yet: run or deploy first")
    verdicts = authorization.prove()
    if unused:
        idle = [v.statement for v in verdicts if v.outcome == "unused"]
        print(f"Statements no request has used in this workspace: {len(idle)}")
        for where in idle:
            print(f"  {where}")
    if prove:
        _print_proof(verdicts)
    return EXIT_OK if all(v.outcome == "needed" for v in verdicts) or not prove else EXIT_FAILED


def _print_proof(verdicts: list[Any]) -> None:
    """Each statement: needed (the request denied without it), redundant or unused."""
    counts = {o: sum(v.outcome == o for v in verdicts) for o in ("needed", "redundant", "unused")}
    print(", ".join(f"{n} {o}" for o, n in counts.items()) + f" of {len(verdicts)} statements")
    for verdict in verdicts:
        print(f"{verdict.outcome:9} {verdict.statement}")
        if verdict.outcome == "needed":
            print(f"          without it: {verdict.message}")
        elif verdict.message:
            print(f"          {verdict.message}")


IAM_MODES = {
    "enforce": "requests the deployed policies do not allow are refused, as AWS refuses them",
    "warn": "such requests are logged to the service log and answered",
    "off": "nothing is evaluated",
}


def _local_env(info: Any) -> None:
    """Shell lines that point the AWS CLI and SDKs at the service as the workspace's
    administrator: ``eval "$(sfn-mlops local env)"``. A session token left in the shell would
    be sent with these keys and refused, as AWS refuses a token it did not issue."""
    from sfn_mlops.local import control

    print("unset AWS_SESSION_TOKEN AWS_SECURITY_TOKEN")
    for name, value in control.environment(info).items():
        print(f"export {name}={shlex.quote(value)}")


def _local_status(workspace: Path) -> int:
    from sfn_mlops.local import control

    info = control.find(workspace)
    if info is None:
        print(f"No local service runs for {workspace}; `sfn-mlops local up` starts one")
        return EXIT_FAILED
    status = control.admin(info, "status")
    print(f"workspace   {status['workspace']}\nendpoint    {info.url}\npid         {status['pid']}")
    print(f"uptime      {status['uptime']:.0f} s (stops after {status['idle_timeout']:.0f} s idle)")
    print(f"executions  {', '.join(status['executions']) or 'none running'}")
    print(f"jobs        {', '.join(status['jobs']) or 'none running'}")
    endpoints = status.get("endpoints") or {}
    served = [f"{name} (http://127.0.0.1:{port})" for name, port in sorted(endpoints.items())]
    print(f"endpoints   {', '.join(served) or 'none serving'}")
    return EXIT_OK


# parser ---------------------------------------------------------------------------------
def _run_epilog() -> str:
    """Config keys (from the config models themselves), an example and the exit codes."""
    from sfn_mlops.config import config_keys

    keys = "\n".join(f"  {key}" for key in config_keys())
    return (
        f"config keys (a --config YAML/JSON file, or --set KEY=VALUE; dotted keys are nested):\n"
        f"{keys}\n  hyperparameters.<name>   any XGBoost parameter, checked by XGBoost\n\n"
        "example:\n"
        "  sfn-mlops run --data data/churn.csv --target churned --problem-type binary \\\n"
        "      --set categorical_columns='[plan, region]' --set gate.threshold=0.8\n\n"
        "exit codes:\n"
        f"  {EXIT_OK}    the execution succeeded\n"
        f"  {EXIT_FAILED}    the execution failed (a failed quality or bias gate included)\n"
        f"  {EXIT_USAGE}    the input is wrong (config, data, name); nothing was started\n"
        "  130  interrupted: the execution goes on in the local service"
    )


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(prog="sfn-mlops", description=__doc__.splitlines()[0])
    parser.add_argument(
        "--workspace",
        help=f"local cloud folder (default ${settings.WORKSPACE_ENV} or ./.sfn-mlops)",
    )
    parser.add_argument("--project", help="folder with template.yaml (default: found from here)")
    commands = parser.add_subparsers(dest="command", required=True)
    # The global options, accepted after the subcommand too (they default to the global ones).
    common = argparse.ArgumentParser(add_help=False)
    common.add_argument("--workspace", default=argparse.SUPPRESS, help=argparse.SUPPRESS)
    common.add_argument("--project", default=argparse.SUPPRESS, help=argparse.SUPPRESS)

    run = commands.add_parser(
        "run",
        parents=[common],
        help="deploy locally and run the pipeline, following each state",
        description="Deploy template.yaml to the local service (or, with --aws, use the "
        "deployed stack), start the pipeline and follow it state by state.",
        epilog=_run_epilog(),
        formatter_class=argparse.RawDescriptionHelpFormatter,
    )
    run.add_argument("--config", help="pipeline config file (YAML or JSON)")
    run.add_argument(
        "--set", action="append", metavar="KEY=VALUE", help="override a config key (repeatable)"
    )
    run.add_argument("--data", help="CSV/Parquet file or folder, s3:// URI, or 'abalone'")
    run.add_argument("--target", help="column to predict")
    run.add_argument("--problem-type", choices=["regression", "binary", "multiclass"])
    run.add_argument("--name", help="execution name (default run-<time>-<random>)")
    run.add_argument(
        "--detach", action="store_true", help="start the execution and return (local mode)"
    )
    run.add_argument("--aws", action="store_true", help="run the deployed state machine in AWS")
    run.add_argument(
        "--stack-name", help="with --aws: the stack `sam deploy` created (default: samconfig.toml)"
    )
    run.add_argument(
        "--region", help="with --aws: its region (default: your AWS profile's, then samconfig.toml)"
    )
    run.set_defaults(handler=cmd_run)

    executions = commands.add_parser(
        "executions", help="list, describe, compare, follow or stop executions"
    )
    actions = executions.add_subparsers(dest="action", required=True)
    listing = actions.add_parser(
        "list", parents=[common], help="a table of executions, newest first"
    )
    shown = listing.add_mutually_exclusive_group()
    shown.add_argument("--limit", type=int, default=20, help="show the N newest (default 20)")
    shown.add_argument("--all", action="store_true", help="show every execution")
    listing.add_argument("--status", choices=EXECUTION_STATUSES, help="only executions in STATUS")
    describe = actions.add_parser(
        "describe", parents=[common], help="status, metrics, gate, failure and config of one"
    )
    describe.add_argument("name", help="execution name or ARN")
    describe.add_argument("--json", action="store_true", help="the raw DescribeExecution answer")
    compare = actions.add_parser(
        "compare", parents=[common], help="two executions' config and metrics side by side"
    )
    compare.add_argument("names", nargs=2, metavar="NAME", help="execution names or ARNs")
    for action, text in (
        ("history", "the Step Functions history events"),
        ("follow", "follow a running execution again"),
        ("stop", "StopExecution, and the job it waits for"),
    ):
        actions.add_parser(action, parents=[common], help=text).add_argument(
            "name", help="execution name or ARN"
        )
    executions.set_defaults(handler=cmd_executions)

    jobs = commands.add_parser("jobs", help="SageMaker jobs of the local cloud")
    jobs_actions = jobs.add_subparsers(dest="action", required=True)
    jobs_actions.add_parser("logs", parents=[common]).add_argument(
        "name", help="job name, e.g. <run>-train"
    )
    jobs.set_defaults(handler=cmd_jobs)

    prune = commands.add_parser(
        "prune",
        parents=[common],
        help="remove old executions' artifacts, jobs and records from the workspace",
        description="Remove finished executions' run prefixes (runs/NAME/, datasets/NAME/), "
        "their jobs' folders, logs and records, their models' records and reports, and their "
        "history. Never removed: running executions, what a running execution or job reads, "
        "what another record points into, and the newest SUCCEEDED execution (its model: "
        "there is no model registry yet). Works without the local service.",
    )
    prune.add_argument(
        "--keep", type=int, metavar="N", help="keep the N newest finished executions"
    )
    prune.add_argument(
        "--older-than",
        metavar="DURATION",
        help="only remove executions that stopped this long ago: 7d, 12h, 30m, 90s, 2w",
    )
    prune.add_argument(
        "--dry-run", action="store_true", help="print what would be removed; remove nothing"
    )
    prune.set_defaults(handler=cmd_prune)

    report = commands.add_parser(
        "report",
        parents=[common],
        help="write a run's HTML report (graph, metrics, plots) and print its path",
        description="Write one self-contained HTML file about an execution: the state machine "
        "coloured by each state's outcome, the gate, metrics on each split, feature importance "
        "and the model's plots. It needs no network to view.",
    )
    report.add_argument("name", help="execution name or ARN")
    report.add_argument(
        "--output", metavar="FILE", help="where to write it (default <workspace>/reports/NAME.html)"
    )
    report.set_defaults(handler=cmd_report)

    commands.add_parser(
        "deploy", parents=[common], help="deploy template.yaml to the local cloud"
    ).set_defaults(handler=cmd_deploy)

    local = commands.add_parser(
        "local", help="the workspace's local service: up, env, down, status, logs, iam"
    )
    local_actions = local.add_subparsers(dest="action", required=True)
    up = local_actions.add_parser("up", parents=[common], help="start it (or find the running one)")
    up.add_argument(
        "--idle-timeout",
        type=float,
        help=f"seconds idle before it stops itself (default ${settings.IDLE_TIMEOUT_ENV} or "
        f"{settings.DEFAULT_IDLE_TIMEOUT_SECONDS:.0f})",
    )
    for action, text in (
        ("env", 'the exports that point AWS clients at it: eval "$(sfn-mlops local env)"'),
        ("down", "stop it, and what runs there"),
        ("status", "port, pid, uptime and what runs now"),
        ("logs", "print its log"),
    ):
        local_actions.add_parser(action, parents=[common], help=text)
    iam = local_actions.add_parser(
        "iam", parents=[common], help="show or set IAM enforcement: enforce (default), warn, off"
    )
    iam.add_argument("mode", nargs="?", choices=sorted(IAM_MODES), help="the mode to set")
    iam.add_argument(
        "--unused",
        action="store_true",
        help="list the template's policy statements that no request here has used",
    )
    iam.add_argument(
        "--prove",
        action="store_true",
        help="take each statement out in turn and decide the requests it allowed here again: "
        "needed, redundant or unused (exit 1 unless all are needed)",
    )
    local.set_defaults(handler=cmd_local)
    hosting_cli.add_commands(commands, common, _connect)
    batch_cli.add_command(commands, common, _connect)
    monitor_cli.add_command(commands, common, _connect)
    demo.add_command(commands, common, _connect)
    return parser


def main(argv: list[str] | None = None) -> int:
    args = build_parser().parse_args(argv)
    if not getattr(args, "aws", False):
        # Local mode only: in AWS the user's region and instance credentials must stay usable.
        _quiet_environment()
    try:
        return int(args.handler(args))
    except (
        ConfigError, CliError, ServiceError, FileNotFoundError, HostingError, BatchError,
        MonitorError,
    ) as err:  # fmt: skip
        print(f"sfn-mlops: error: {err}", file=sys.stderr)
        return EXIT_USAGE
    except KeyboardInterrupt:
        return 130
    except BrokenPipeError:  # `sfn-mlops executions list | head -1`: the reader has enough
        _silence_stdout()
        return EXIT_OK


def _silence_stdout() -> None:
    """Point stdout at /dev/null so the last flush cannot raise again on the closed pipe."""
    devnull = os.open(os.devnull, os.O_WRONLY)
    os.dup2(devnull, sys.stdout.fileno())
    os.close(devnull)


def entry_point() -> None:
    """The ``sfn-mlops`` console script: ``main``, then exit without interpreter teardown.

    Everything is on disk by then (atomic object writes, committed SQLite); tearing down the
    engine's and botocore's module graphs took 0.3-0.7 s of every command (measured).
    """
    code = main()
    try:
        sys.stdout.flush()
    except BrokenPipeError:
        _silence_stdout()
    sys.stderr.flush()
    os._exit(code)


if __name__ == "__main__":
    entry_point()
