"""The SAM template as plain CloudFormation, translated offline, and the linters run in-process.

`aws-sam-translator` does what CloudFormation's `AWS::Serverless-2016-10-31` transform does, with
two stand-ins so that it needs neither AWS nor a `sam package` first:
- local `CodeUri` folders become `s3://sfn-mlops-validate/<folder>`, and a local `DefinitionUri`
  becomes the inline `Definition` it points at (`DefinitionSubstitutions` stay as they are);
- managed policy names resolve through `MANAGED_POLICY_ARNS` instead of the IAM API.
"""

from __future__ import annotations

import copy
import json
import logging
import sys
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from sfn_mlops.intrinsics import REGION

#: Managed policies a template may name (SAM also accepts full ARNs, which need no entry).
MANAGED_POLICY_ARNS = {
    "AWSLambdaBasicExecutionRole": (
        "arn:aws:iam::aws:policy/service-role/AWSLambdaBasicExecutionRole"
    ),
    "AWSLambdaVPCAccessExecutionRole": (
        "arn:aws:iam::aws:policy/service-role/AWSLambdaVPCAccessExecutionRole"
    ),
    "AWSXrayWriteOnlyAccess": "arn:aws:iam::aws:policy/AWSXrayWriteOnlyAccess",
    "AWSXRayDaemonWriteAccess": "arn:aws:iam::aws:policy/AWSXRayDaemonWriteAccess",
    "CloudWatchLambdaInsightsExecutionRolePolicy": (
        "arn:aws:iam::aws:policy/CloudWatchLambdaInsightsExecutionRolePolicy"
    ),
}
STAND_IN_CODE_BUCKET = "sfn-mlops-validate"
_LOCAL_URI_PROPERTIES = {
    "AWS::Serverless::Function": "CodeUri",
    "AWS::Serverless::LayerVersion": "ContentUri",
}


class TranslationError(ValueError):
    """The SAM transform rejects the template; the message is the translator's."""


@dataclass(frozen=True)
class LintProblem:
    path: str
    line: int
    rule: str
    message: str


def is_local(uri: Any) -> bool:
    return isinstance(uri, str) and "://" not in uri


def prepare(sam_template: dict[str, Any], root: Path) -> dict[str, Any]:
    """A copy of `sam_template` whose local code and definition paths the translator accepts."""
    template = copy.deepcopy(sam_template)
    for resource in template.get("Resources", {}).values():
        properties = resource.get("Properties") or {}
        key = _LOCAL_URI_PROPERTIES.get(resource.get("Type"))
        if key and is_local(properties.get(key)):
            properties[key] = f"s3://{STAND_IN_CODE_BUCKET}/{properties[key].strip('/')}"
        if resource.get("Type") == "AWS::Serverless::StateMachine" and is_local(
            properties.get("DefinitionUri")
        ):
            path = root / properties.pop("DefinitionUri")
            properties["Definition"] = json.loads(path.read_text(encoding="utf-8"))
    return template


def translate(sam_template: dict[str, Any], root: Path) -> dict[str, Any]:
    """Plain CloudFormation for `sam_template` (loaded with long-form intrinsics)."""
    import boto3
    from samtranslator.model.exceptions import InvalidDocumentException
    from samtranslator.parser.parser import Parser
    from samtranslator.translator.translator import Translator

    translator = Translator({}, Parser(), boto_session=boto3.session.Session(region_name=REGION))
    try:
        translated: dict[str, Any] = translator.translate(
            prepare(sam_template, root),
            parameter_values={},
            get_managed_policy_map=lambda: dict(MANAGED_POLICY_ARNS),
        )
    except InvalidDocumentException as error:
        causes = "; ".join(str(cause) for cause in error.causes)
        raise TranslationError(causes or str(error)) from error
    return translated


def cfn_lint(template: dict[str, Any], name: str) -> list[LintProblem]:
    """cfn-lint's errors and warnings for a template dict (informational ones left out)."""
    from cfnlint.api import ManualArgs, lint

    logging.getLogger("cfnlint").setLevel(logging.ERROR)
    # cfn-lint validates the state machine's translated DefinitionString (one Fn::Join of the
    # whole definition) recursively, one level per JSON nesting and schema step: the release
    # states took it past Python's default limit of 1000 ("maximum recursion depth exceeded").
    limit = sys.getrecursionlimit()
    sys.setrecursionlimit(max(limit, 10_000))
    try:
        matches = lint(json.dumps(template, indent=1), config=ManualArgs(regions=[REGION]))
    finally:
        sys.setrecursionlimit(limit)
    return [
        LintProblem(name, m.linenumber, m.rule.id, m.message)
        for m in matches
        if not m.rule.id.startswith("I")
    ]


def state_lint(definition: dict[str, Any] | str) -> list[str]:
    """statelint's problems for an ASL definition (a dict, a JSON text or a file path)."""
    from statelint.linter import Linter

    return list(Linter.validate(definition))
