"""`sfn-mlops batch`: score a file with the approved model through the batch state machine.

The data is checked against the model's schema and staged as the transform job reads it
(``sfn_mlops.batch``); the state machine finds the model, runs the transform job and publishes
the predictions at ``--output`` only when the job succeeded. A local folder as ``--output``
receives a copy of what was published.
"""

from __future__ import annotations

import argparse
import datetime as dt
import json
import re
import secrets
import sys
import tempfile
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any

from sfn_mlops.batch import BatchError, model_schema, prepare

EXIT_OK, EXIT_FAILED = 0, 1
#: The state machine names the transform job <batch>-transform, within SageMaker's 63.
MAX_BATCH_NAME = 63 - len("-transform-3")  # the transform job's name on a third retry
_BATCH_NAME = re.compile(rf"^[A-Za-z0-9](-?[A-Za-z0-9]){{0,{MAX_BATCH_NAME - 1}}}$")
DEFAULT_GROUP = "sfn-mlops-models"
BATCH_MACHINE = "BatchInference"
POLL_SECONDS = 0.05


def cmd_batch(args: argparse.Namespace, connect: Callable[[argparse.Namespace], Any]) -> int:
    import boto3

    from sfn_mlops import settings
    from sfn_mlops.local import control

    started = time.monotonic()
    name = args.name or f"batch-{dt.datetime.now():%Y%m%d-%H%M%S}-{secrets.token_hex(2)}"
    if not _BATCH_NAME.match(name):
        raise BatchError(
            f"--name {name!r}: use at most {MAX_BATCH_NAME} letters, digits and single hyphens, "
            "starting and ending with a letter or digit (the transform job is <name>-transform)"
        )
    service = connect(args)
    deployment = control.admin(
        service, "deploy", {"project": str(settings.project_root(args.project))}
    )
    s3, sagemaker = boto3.client("s3"), boto3.client("sagemaker")
    version = _version(sagemaker, args.group, args.model_version)
    destination, local_output = _destination(args.output, deployment["bucket"], name)
    _check_bucket(s3, destination)
    data_uri, processing = _stage(args, s3, sagemaker, version, deployment["bucket"], name)
    machine = deployment["state_machines"].get(BATCH_MACHINE)
    if machine is None:
        raise BatchError(f"template.yaml has no {BATCH_MACHINE} state machine")
    execution_input = {
        "model_package_group": args.group,
        "model_version": args.model_version,
        "data_uri": data_uri,
        "content_type": "text/csv",
        "destination_uri": destination,
        "transform": {
            "SplitType": "Line",
            "BatchStrategy": args.batch_strategy,
            "MaxPayloadInMB": args.max_payload_mb,
            "AssembleWith": "Line",
        },
        "data_processing": processing,
        "instance_type": args.instance_type,
    }
    sfn = boto3.client("stepfunctions")
    arn = sfn.start_execution(
        stateMachineArn=machine, name=name, input=json.dumps(execution_input)
    )["executionArn"]
    print(f"Batch {name} started: {version['label']} scores {data_uri}")
    return _follow(sfn, sagemaker, s3, arn, local_output, started)


def _version(sagemaker: Any, group: str, number: int | None) -> dict[str, Any]:
    """The version the state machine will find, looked up here to read its schema first."""
    reference = f"{group}/{number}" if number else None
    if reference is None:
        try:
            listed = sagemaker.list_model_packages(
                ModelPackageGroupName=group, ModelApprovalStatus="Approved",
                SortBy="CreationTime", SortOrder="Descending", MaxResults=1,
            )["ModelPackageSummaryList"]  # fmt: skip
        except sagemaker.exceptions.ClientError as err:
            raise BatchError(f"--group {group}: {err.response['Error']['Message']}") from err
        if not listed:
            raise BatchError(
                f"model package group {group} has no Approved version: train one with "
                "`sfn-mlops run`, or approve one with `sfn-mlops models approve`"
            )
        reference = listed[0]["ModelPackageArn"]
    try:
        package = sagemaker.describe_model_package(ModelPackageName=reference)
    except sagemaker.exceptions.ClientError as err:
        raise BatchError(
            f"no model version {reference}: {err.response['Error']['Message']}"
        ) from err
    if package["ModelApprovalStatus"] != "Approved":
        raise BatchError(
            f"{reference} is {package['ModelApprovalStatus']}; only an Approved version scores "
            "batches"
        )
    container = package["InferenceSpecification"]["Containers"][0]
    label = f"{package['ModelPackageGroupName']}/{package['ModelPackageVersion']}"
    return {"label": label, "model_data_url": container["ModelDataUrl"]}


def _destination(output: str, bucket: str, name: str) -> tuple[str, Path | None]:
    """The S3 prefix the predictions are published at; for a local folder, the batch's own."""
    if output.startswith("s3://"):
        return output, None
    return f"s3://{bucket}/batches/{name}/published/", Path(output)


def _check_bucket(s3: Any, destination: str) -> None:
    bucket = destination.removeprefix("s3://").split("/", 1)[0]
    try:
        s3.head_bucket(Bucket=bucket)
    except s3.exceptions.ClientError as err:
        raise BatchError(
            f"--output {destination}: bucket {bucket} cannot be written here "
            f"({err.response['Error'].get('Code')}); create it or name another"
        ) from err


def _stage(
    args: argparse.Namespace, s3: Any, sagemaker: Any, version: dict[str, Any], bucket: str,
    name: str,
) -> tuple[str, dict[str, str]]:  # fmt: skip
    """Local data: checked and written as the job reads it; S3 data: used as it is."""
    if args.data.startswith("s3://"):
        processing: dict[str, str] = {}
        if args.id_column:
            raise BatchError("--id-column needs local data (the CLI reorders its columns)")
        return args.data, processing
    schema = model_schema(s3, version["model_data_url"])
    with tempfile.TemporaryDirectory() as folder:
        prepared = prepare(
            Path(args.data), schema["features"], args.id_column or [], Path(folder) / "data.csv"
        )
        key = f"batches/{name}/input/{Path(args.data).stem}.csv"
        s3.upload_file(str(prepared.path), bucket, key)
    ignored = f"; ignored columns: {', '.join(prepared.ignored)}" if prepared.ignored else ""
    print(f"Data: {args.data}: {prepared.rows:,} rows{ignored}")
    return f"s3://{bucket}/batches/{name}/input/", prepared.data_processing


def _follow(
    sfn: Any, sagemaker: Any, s3: Any, arn: str, local_output: Path | None, started: float
) -> int:
    from sfn_mlops.follow import Follower, cause_summary

    follower = Follower(sfn=sfn, sagemaker=sagemaker, execution_arn=arn)
    try:
        execution = follower.wait(interval=POLL_SECONDS)
    except KeyboardInterrupt:
        print(f"\nStopped following; the batch goes on ({arn}).", file=sys.stderr)
        return 130
    if execution["status"] != "SUCCEEDED":
        print(f"\nBatch {execution['name']}: {execution['status']}")
        print(f"Error: {execution.get('error')}\nCause: {cause_summary(execution.get('cause'))}")
        return EXIT_FAILED
    published = json.loads(execution["output"])["published"]
    print(f"\nBatch {execution['name']}: SUCCEEDED; {published['objects']} file(s) published")
    for uri in published["outputs"]:
        print(f"  {uri}")
        if local_output is not None:
            bucket, _, key = uri.removeprefix("s3://").partition("/")
            local_output.mkdir(parents=True, exist_ok=True)
            s3.download_file(bucket, key, str(local_output / Path(key).name))
    if local_output is not None:
        print(f"Copied to {local_output}")
    print(f"Total wall time: {time.monotonic() - started:.1f} s")
    return EXIT_OK


def add_command(
    commands: Any, common: argparse.ArgumentParser, connect: Callable[[argparse.Namespace], Any]
) -> None:
    batch = commands.add_parser(
        "batch", parents=[common], help="score a data set with the approved model (transform)"
    )
    batch.add_argument("--data", required=True, help="a CSV/Parquet file or folder, or s3://...")
    batch.add_argument("--output", required=True, help="s3://bucket/prefix/ or a local folder")
    batch.add_argument("--model-version", type=int, help="an Approved version (default: newest)")
    batch.add_argument("--group", default=DEFAULT_GROUP, help=f"default {DEFAULT_GROUP}")
    batch.add_argument(
        "--id-column", action="append", help="a column written beside the prediction (repeat)"
    )
    batch.add_argument("--name", help="the execution's name (default: batch-<time>-<hex>)")
    batch.add_argument("--batch-strategy", choices=("MultiRecord", "SingleRecord"),
                       default="MultiRecord")  # fmt: skip
    batch.add_argument("--max-payload-mb", type=int, default=6, help="per request, default 6")
    batch.add_argument("--instance-type", default="ml.m5.large", help="recorded locally")
    batch.set_defaults(handler=lambda args: cmd_batch(args, connect))
