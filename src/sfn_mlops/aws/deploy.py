"""``make deploy``: the stack of template.yaml in a real AWS account, with the job code it runs.

1. Bundle ``containers/`` (``sfn_mlops.packaging``); its content hash names the code prefix,
   ``code/<hash>``, so a changed script never reuses a stale upload.
2. ``sam build``, then ``sam deploy --parameter-overrides CodePrefix=code/<hash>``; everything
   else comes from samconfig.toml (capabilities, the managed artifacts bucket for the Lambda
   code, no changeset prompt).
3. Read the stack's ``ArtifactBucketName`` output and upload the bundle to
   ``s3://<bucket>/code/<hash>/``, skipping objects already there.

    python -m sfn_mlops.aws.deploy [--stack-name NAME] [--region REGION] [--dry-run]

The SAM CLI lives in its own virtual environment (it pins its own boto3): ``.venv-sam/bin/sam``
unless ``--sam`` or ``$SAM`` names another. Nothing here runs at import time; every AWS client
is passed in or made from one session, so the pieces are tested offline with moto.
"""

from __future__ import annotations

import argparse
import logging
import os
import re
import shlex
import shutil
import subprocess
import sys
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import tomllib
from botocore.exceptions import ClientError, NoCredentialsError

from sfn_mlops import settings
from sfn_mlops.packaging import Bundle, build_bundle, upload_bundle

SAM_ENV = "SAM"
DEFAULT_SAM = ".venv-sam/bin/sam"
SAMCONFIG = "samconfig.toml"
DEFAULT_STACK_NAME = "sfn-mlops"
DEFAULT_REGION = "us-east-1"
#: template.yaml's default XGBoostImageUri is this region's image; others need their own.
IMAGE_DEFAULT_REGION = "us-east-1"
XGBOOST_IMAGE_VERSION = "3.0-5"
CODE_PREFIX_PARAMETER = "CodePrefix"
IMAGE_PARAMETER = "XGBoostImageUri"
BUCKET_OUTPUT = "ArtifactBucketName"
STATE_MACHINE_OUTPUT = "StateMachineArn"
NO_CREDENTIALS = (
    "no AWS credentials: configure a profile (`aws configure`, or AWS_PROFILE) before `make deploy`"
)
_PARAMETER_KEY = re.compile(r"^[A-Za-z0-9]+$")

Echo = Callable[[str], None]
Runner = Callable[[Sequence[str], Path], int]


class DeployError(Exception):
    """A problem the user can fix; printed without a traceback."""


class StackNotFound(DeployError):
    """The CloudFormation stack does not exist in that account and region."""


class MissingStackOutput(DeployError):
    """The stack exists but lacks an output the pipeline needs."""


# samconfig.toml ---------------------------------------------------------------------------
@dataclass(frozen=True)
class SamDefaults:
    stack_name: str = DEFAULT_STACK_NAME
    region: str = DEFAULT_REGION


def sam_defaults(project: Path) -> SamDefaults:
    """``[default.deploy.parameters]`` of samconfig.toml: the stack name and region it deploys."""
    path = project / SAMCONFIG
    if not path.is_file():
        return SamDefaults()
    with open(path, "rb") as stream:
        document = tomllib.load(stream)
    parameters = document.get("default", {}).get("deploy", {}).get("parameters", {})
    return SamDefaults(
        stack_name=str(parameters.get("stack_name", DEFAULT_STACK_NAME)),
        region=str(parameters.get("region", DEFAULT_REGION)),
    )


# stack outputs ----------------------------------------------------------------------------
@dataclass(frozen=True)
class StackOutputs:
    stack_name: str
    region: str
    status: str
    values: dict[str, str] = field(default_factory=dict)

    def require(self, key: str) -> str:
        if key not in self.values:
            have = ", ".join(sorted(self.values)) or "none"
            raise MissingStackOutput(
                f"stack {self.stack_name!r} in {self.region} ({self.status}) has no output "
                f"{key!r} (its outputs: {have}); is it an sfn-mlops stack? "
                "Deploy it again with `make deploy`"
            )
        return self.values[key]


def stack_outputs(cloudformation: Any, stack_name: str) -> StackOutputs:
    """The stack's outputs, or StackNotFound naming the stack and region."""
    region = cloudformation.meta.region_name
    try:
        stacks = cloudformation.describe_stacks(StackName=stack_name)["Stacks"]
    except ClientError as err:
        # DescribeStacks answers ValidationError for a stack that does not exist.
        if err.response.get("Error", {}).get("Code") != "ValidationError":
            raise
        raise StackNotFound(
            f"stack {stack_name!r} not found in {region}: deploy it with `make deploy`, or "
            f"pass the --stack-name and --region it was deployed with "
            f"({err.response['Error'].get('Message', '')})"
        ) from err
    stack = stacks[0]
    return StackOutputs(
        stack_name=stack_name,
        region=region,
        status=stack.get("StackStatus", "UNKNOWN"),
        values={item["OutputKey"]: item["OutputValue"] for item in stack.get("Outputs", [])},
    )


# sam commands -----------------------------------------------------------------------------
def parameter_overrides(parameters: dict[str, str]) -> str:
    """``Key=Value Key2="a value"``: the one string ``sam deploy --parameter-overrides`` parses."""
    items = []
    for key, value in parameters.items():
        if not _PARAMETER_KEY.match(key):
            raise DeployError(f"parameter {key!r}: CloudFormation parameter names are alphanumeric")
        if not value or any(c.isspace() or c in "\"'\\" for c in value):
            value = '"' + value.replace("\\", "\\\\").replace('"', '\\"') + '"'
        items.append(f"{key}={value}")
    return " ".join(items)


def sam_commands(
    sam: str,
    *,
    stack_name: str,
    region: str,
    parameters: dict[str, str],
    use_container: bool = False,
) -> list[list[str]]:
    """``sam build`` (installs each Lambda's requirements.txt), then ``sam deploy``.

    ``sam deploy`` picks up the built template in .aws-sam/ and the rest of its settings from
    samconfig.toml; an unchanged stack is not an error.
    """
    build = [sam, "build", "--template-file", "template.yaml"]
    if use_container:
        build.append("--use-container")
    deploy = [
        sam,
        "deploy",
        "--stack-name",
        stack_name,
        "--region",
        region,
        "--no-fail-on-empty-changeset",
        "--parameter-overrides",
        parameter_overrides(parameters),
    ]
    return [build, deploy]


def xgboost_image_uri(region: str) -> str:
    """The SageMaker XGBoost image of ``region`` (sagemaker's own table, no network)."""
    os.environ.setdefault("SAGEMAKER_SUPPRESS_V2_WARNING", "1")
    logging.getLogger("sagemaker.config").setLevel(logging.WARNING)
    try:
        from sagemaker import image_uris
    except ImportError as err:
        raise DeployError(
            f"region {region}: the XGBoost image URI is region-specific; install the build "
            f"extras (`pip install -e '.[build]'`) or pass --parameter {IMAGE_PARAMETER}=<uri>"
        ) from err
    return str(image_uris.retrieve("xgboost", region, XGBOOST_IMAGE_VERSION))


def deploy_parameters(
    code_prefix: str, region: str, extra: dict[str, str] | None = None
) -> dict[str, str]:
    parameters = {CODE_PREFIX_PARAMETER: code_prefix, **(extra or {})}
    if region != IMAGE_DEFAULT_REGION and IMAGE_PARAMETER not in parameters:
        parameters[IMAGE_PARAMETER] = xgboost_image_uri(region)
    return parameters


# upload -----------------------------------------------------------------------------------
# the whole deploy -------------------------------------------------------------------------
@dataclass(frozen=True)
class DeployRequest:
    project: Path
    stack_name: str
    region: str
    sam: str
    dry_run: bool = False
    use_container: bool = False
    parameters: dict[str, str] = field(default_factory=dict)


def run_command(command: Sequence[str], cwd: Path) -> int:
    return subprocess.run(list(command), cwd=cwd, check=False).returncode


def deploy(
    request: DeployRequest,
    *,
    session: Any = None,
    runner: Runner = run_command,
    echo: Echo = print,
) -> StackOutputs | None:
    """Runs the three steps; returns the stack's outputs (None on a dry run)."""
    bundle = build_bundle(request.project / "containers")
    code_prefix = f"code/{bundle.digest}"
    commands = sam_commands(
        request.sam,
        stack_name=request.stack_name,
        region=request.region,
        parameters=deploy_parameters(code_prefix, request.region, request.parameters),
        use_container=request.use_container,
    )
    if request.dry_run:
        _print_plan(request, bundle, code_prefix, commands, echo)
        return None
    session = session or _session(request.region)
    if session.get_credentials() is None:
        raise DeployError(NO_CREDENTIALS)
    _check_sam(request.sam)
    for command in commands:
        echo(f"$ {shlex.join(command)}")
        code = runner(command, request.project)
        if code != 0:
            raise DeployError(f"`{' '.join(command[:2])}` failed with exit code {code}; see above")
    try:
        outputs = stack_outputs(session.client("cloudformation"), request.stack_name)
        bucket = outputs.require(BUCKET_OUTPUT)
        upload_bundle(session.client("s3"), bundle, bucket, code_prefix, echo)
    except NoCredentialsError as err:
        raise DeployError(NO_CREDENTIALS) from err
    echo(
        f"Deployed stack {request.stack_name} in {request.region}; job code at "
        f"s3://{bucket}/{code_prefix}/\n"
        f"Start a run: sfn-mlops run --aws --stack-name {request.stack_name} "
        f"--region {request.region}"
    )
    return outputs


def _session(region: str) -> Any:
    import boto3

    return boto3.Session(region_name=region)


def _check_sam(sam: str) -> None:
    if shutil.which(sam) is None:
        raise DeployError(
            f"the SAM CLI is not at {sam}: set up .venv-sam (`python3 -m venv .venv-sam && "
            ".venv-sam/bin/pip install aws-sam-cli`), or pass SAM=/path/to/sam"
        )


def _print_plan(
    request: DeployRequest,
    bundle: Bundle,
    code_prefix: str,
    commands: list[list[str]],
    echo: Echo,
) -> None:
    echo(f"Dry run: nothing is built, deployed or uploaded. In {request.project}:")
    for command in commands:
        echo(f"$ {shlex.join(command)}")
    echo(
        f"then read output {BUCKET_OUTPUT} of stack {request.stack_name} in {request.region} "
        f"and upload to s3://<{BUCKET_OUTPUT}>/{code_prefix}/ (skipping objects already there):"
    )
    for name in sorted(bundle.files):
        echo(f"  {code_prefix}/{name}  ({len(bundle.files[name]):,} bytes)")


# command line -----------------------------------------------------------------------------
def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(
        prog="python -m sfn_mlops.aws.deploy",
        description="Deploy template.yaml to AWS with sam and upload the job code.",
    )
    parser.add_argument("--stack-name", help="default: samconfig.toml's stack_name")
    parser.add_argument("--region", help="default: samconfig.toml's region")
    parser.add_argument(
        "--dry-run", action="store_true", help="print the commands and uploads, do nothing"
    )
    parser.add_argument("--sam", help=f"the sam executable (default ${SAM_ENV} or {DEFAULT_SAM})")
    parser.add_argument(
        "--use-container",
        action="store_true",
        help="sam build in a Lambda-like container (needs Docker; use without python3.12)",
    )
    parser.add_argument(
        "--parameter",
        action="append",
        default=[],
        metavar="KEY=VALUE",
        help="another template parameter, e.g. NotificationEmail=me@example.com (repeatable)",
    )
    parser.add_argument("--project", help="folder with template.yaml (default: found from here)")
    return parser


def request_from(args: argparse.Namespace) -> DeployRequest:
    project = settings.project_root(args.project)
    defaults = sam_defaults(project)
    parameters: dict[str, str] = {}
    for item in args.parameter:
        key, sep, value = item.partition("=")
        if not sep or not key:
            raise DeployError(f"--parameter {item!r}: expected KEY=VALUE")
        if key == CODE_PREFIX_PARAMETER:
            raise DeployError(f"--parameter {key}: set from the job code's content hash")
        parameters[key] = value
    return DeployRequest(
        project=project,
        stack_name=args.stack_name or defaults.stack_name,
        region=args.region or defaults.region,
        sam=_executable(args.sam or os.environ.get(SAM_ENV) or str(project / DEFAULT_SAM)),
        dry_run=args.dry_run,
        use_container=args.use_container,
        parameters=parameters,
    )


def _executable(sam: str) -> str:
    """A path (not a bare name looked up on PATH) is made absolute: sam runs in the project."""
    return str(Path(sam).absolute()) if os.sep in sam else sam


def main(argv: Sequence[str] | None = None) -> int:
    args = build_parser().parse_args(argv)
    try:
        deploy(request_from(args))
    except (DeployError, FileNotFoundError) as err:
        print(f"deploy: error: {err}", file=sys.stderr)
        return 1
    return 0


if __name__ == "__main__":
    sys.exit(main())
