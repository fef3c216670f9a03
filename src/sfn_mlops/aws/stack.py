"""The deployed stack as `sfn-mlops run --aws` needs it: samconfig.toml's defaults and the outputs.

`sam build && sam deploy --guided` creates the stack (docs/aws.md); its job code is part of it
(the `Custom::JobCode` resource). Nothing here runs at import time; the CloudFormation client is
passed in, so everything is tested offline with moto.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import tomllib
from botocore.exceptions import ClientError

SAMCONFIG = "samconfig.toml"
DEFAULT_STACK_NAME = "sfn-mlops"
DEFAULT_REGION = "us-east-1"
BUCKET_OUTPUT = "ArtifactBucketName"
STATE_MACHINE_OUTPUT = "StateMachineArn"
DEPLOY_HINT = "`sam build && sam deploy --guided`"


class StackError(Exception):
    """A problem the user can fix; printed without a traceback."""


class StackNotFound(StackError):
    """The CloudFormation stack does not exist in that account and region."""


class MissingStackOutput(StackError):
    """The stack exists but lacks an output the pipeline needs."""


# samconfig.toml ---------------------------------------------------------------------------
@dataclass(frozen=True)
class SamDefaults:
    stack_name: str = DEFAULT_STACK_NAME
    region: str = DEFAULT_REGION


def sam_defaults(project: Path) -> SamDefaults:
    """The stack name and region samconfig.toml deploys: ``[default.deploy.parameters]`` over
    ``[default.global.parameters]`` (where ``sam deploy --guided`` may write them)."""
    path = project / SAMCONFIG
    if not path.is_file():
        return SamDefaults()
    with open(path, "rb") as stream:
        document = tomllib.load(stream)
    default = document.get("default", {})
    parameters = {
        **default.get("global", {}).get("parameters", {}),
        **default.get("deploy", {}).get("parameters", {}),
    }
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
                f"Deploy it again with {DEPLOY_HINT}"
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
            f"stack {stack_name!r} not found in {region}: deploy it with {DEPLOY_HINT}, or "
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
