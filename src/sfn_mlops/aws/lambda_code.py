"""What a Lambda's code asks of AWS, read statically from its Python source.

- **AWS calls**: the services it makes clients for (`boto3.client("s3")`, `session.client(...)`,
  `service_name="s3"`), and every method call in the function's modules whose name is an
  operation of one of those services in botocore's service model (`get_object` ->
  `s3:GetObject`). The client may be made in one module and used in another (it is passed
  around), so calls are matched across all of the function's modules. A name that is an
  operation of a service the function makes a client for counts even when called on another
  object: the check errs towards asking for a grant. One exception: a call on a receiver named
  after one of the function's services (`sagemaker.describe_endpoint`, `self.sagemaker...`)
  is that service's only, so a function with SageMaker and EventBridge clients is not asked
  for EventBridge's `DescribeEndpoint` (an operation both services have).
- **Environment variables** it reads without a default: `os.environ["X"]`,
  `os.environ.get("X")`, `os.getenv("X")`, with `X` a literal or a module-level string constant.
- **ARNs** written in the code as string literals.
"""

from __future__ import annotations

import ast
from dataclasses import dataclass
from functools import lru_cache
from pathlib import Path

#: botocore service name -> IAM action prefix, where they differ.
IAM_PREFIX = {
    "stepfunctions": "states",
    "sagemaker-runtime": "sagemaker",
    "sagemaker-featurestore-runtime": "sagemaker",
    "cloudwatch": "cloudwatch",
    "logs": "logs",
}
#: (IAM prefix, operation) -> the IAM actions it needs, where that is not `prefix:Operation`.
ACTION_EXCEPTIONS: dict[tuple[str, str], tuple[str, ...]] = {
    ("s3", "HeadObject"): ("s3:GetObject",),
    ("s3", "HeadBucket"): ("s3:ListBucket",),
    ("s3", "ListObjects"): ("s3:ListBucket",),
    ("s3", "ListObjectsV2"): ("s3:ListBucket",),
    ("s3", "ListObjectVersions"): ("s3:ListBucketVersions",),
    ("s3", "CopyObject"): ("s3:GetObject", "s3:PutObject"),
    ("s3", "DeleteObjects"): ("s3:DeleteObject",),
    ("s3", "CreateMultipartUpload"): ("s3:PutObject",),
    ("s3", "UploadPart"): ("s3:PutObject",),
    ("s3", "CompleteMultipartUpload"): ("s3:PutObject",),
    ("lambda", "Invoke"): ("lambda:InvokeFunction",),
    ("lambda", "InvokeAsync"): ("lambda:InvokeFunction",),
    # With AutoRollbackConfiguration SageMaker reads the alarms as the caller: "Ensure that your
    # IAM execution role has permission to perform the cloudwatch:DescribeAlarms action on the
    # auto-rollback alarms you specify" (SageMaker Developer Guide, "Auto-Rollback
    # Configuration and Monitoring", deployment-guardrails-configuration).
    ("sagemaker", "UpdateEndpoint"): ("sagemaker:UpdateEndpoint", "cloudwatch:DescribeAlarms"),
}
#: Members without which a call needs less: a call that names its keywords, none of them this
#: member and no ``**kwargs``, needs only the operation's own action. An UpdateEndpoint without a
#: DeploymentConfig has no rollback alarms to read (and a change of variant names cannot take
#: one: "your new endpoint configuration must have the same variant name as the old", SageMaker
#: Developer Guide, "Exclusions",
#: https://docs.aws.amazon.com/sagemaker/latest/dg/deployment-guardrails-exclusions.html).
ONLY_WITH: dict[tuple[str, str], str] = {("sagemaker", "UpdateEndpoint"): "DeploymentConfig"}
#: Code that expects S3's NoSuchKey needs s3:ListBucket on the bucket: without it S3 answers a
#: missing key with 403 AccessDenied, not 404 (Amazon S3 API Reference, GetObject,
#: "Permissions"). The pseudo-method names the expectation in the gate's message.
NOT_FOUND_EXPECTED = "get_object expecting NoSuchKey"
_NOT_FOUND_CODE = "NoSuchKey"
#: boto3's client customizations that are not service operations: method -> IAM actions.
CUSTOMIZATIONS: dict[str, dict[str, tuple[str, ...]]] = {
    "s3": {
        "upload_file": ("s3:PutObject",),
        "upload_fileobj": ("s3:PutObject",),
        "download_file": ("s3:GetObject",),
        "download_fileobj": ("s3:GetObject",),
        "copy": ("s3:GetObject", "s3:PutObject"),
    }
}
_SKIPPED_DIRS = {"tests", "__pycache__", ".aws-sam", "build"}


@dataclass(frozen=True)
class Call:
    """An AWS call in the code: `file:line` calls `client_method`, needing `actions`."""

    path: Path
    line: int
    service: str
    method: str
    actions: tuple[str, ...]


@dataclass(frozen=True)
class EnvRead:
    path: Path
    line: int
    name: str


@dataclass(frozen=True)
class ArnLiteral:
    path: Path
    line: int
    value: str


@lru_cache(maxsize=64)
def operations(service: str) -> dict[str, str]:
    """`{"get_object": "GetObject", ...}` from botocore's model of `service` ({} if unknown)."""
    import botocore.session
    from botocore import xform_name
    from botocore.exceptions import UnknownServiceError

    try:
        model = botocore.session.get_session().get_service_model(service)
    except UnknownServiceError:
        return {}
    return {xform_name(name): name for name in model.operation_names}


def iam_actions(service: str, operation: str) -> tuple[str, ...]:
    prefix = IAM_PREFIX.get(service, service)
    return ACTION_EXCEPTIONS.get((prefix, operation), (f"{prefix}:{operation}",))


def python_files(code_dir: Path) -> list[Path]:
    """The function's own modules (its tests, build output and caches excluded)."""
    return sorted(
        path
        for path in code_dir.rglob("*.py")
        if not _SKIPPED_DIRS.intersection(path.relative_to(code_dir).parts[:-1])
    )


def _parse(path: Path) -> ast.Module:
    return ast.parse(path.read_text(encoding="utf-8"), filename=str(path))


def _string(node: ast.AST | None) -> str | None:
    if isinstance(node, ast.Constant) and isinstance(node.value, str):
        return node.value
    return None


def _client_service(call: ast.Call) -> str | None:
    """`x.client("s3")` / `client(service_name="s3")` / `x.resource("s3")` -> "s3"."""
    func = call.func
    name = func.attr if isinstance(func, ast.Attribute) else getattr(func, "id", None)
    if name not in ("client", "resource"):
        return None
    if call.args:
        return _string(call.args[0])
    for keyword in call.keywords:
        if keyword.arg == "service_name":
            return _string(keyword.value)
    return None


def services(modules: dict[Path, ast.Module]) -> set[str]:
    found: set[str] = set()
    for module in modules.values():
        for node in ast.walk(module):
            if isinstance(node, ast.Call):
                service = _client_service(node)
                if service:
                    found.add(service)
    return found


def _method_call(node: ast.AST) -> str | None:
    """The operation a call names (`s3.get_object(...)`, `get_paginator("list_x")`), or one
    passed on uncalled (`retry(sagemaker.update_endpoint, ...)`)."""
    if isinstance(node, ast.Attribute) and isinstance(node.ctx, ast.Load):
        return node.attr
    if not isinstance(node, ast.Call) or not isinstance(node.func, ast.Attribute):
        return None
    if node.func.attr == "get_paginator" and node.args:
        return _string(node.args[0])
    return None


def _receiver(node: ast.AST) -> str | None:
    """The name an attribute is read from: `sagemaker` of `sagemaker.x` and `self.sagemaker.x`."""
    if not isinstance(node, ast.Attribute):
        return None
    value = node.value
    if isinstance(value, ast.Name):
        return value.id
    if isinstance(value, ast.Attribute):
        return value.attr
    return None


def _narrowed(
    service: str, method: str, actions: tuple[str, ...], call: ast.Call | None
) -> tuple[str, ...]:
    """``actions`` less what the call's own keywords show it does not need (ONLY_WITH)."""
    operation = operations(service).get(method)
    member = ONLY_WITH.get((IAM_PREFIX.get(service, service), operation or ""))
    if member is None or call is None:
        return actions
    keywords = [keyword.arg for keyword in call.keywords]
    if None in keywords or member in keywords:  # **kwargs, or the member itself
        return actions
    return actions[:1]


def aws_calls(code_dir: Path) -> list[Call]:
    """Every call in the function's code that is an operation of a service it has a client for."""
    modules = {path: _parse(path) for path in python_files(code_dir)}
    used = sorted(services(modules))
    calls: list[Call] = []
    for path, module in modules.items():
        called = {id(node.func): node for node in ast.walk(module) if isinstance(node, ast.Call)}
        for node in ast.walk(module):
            method = _method_call(node)
            if method is None:
                continue
            receiver = _receiver(node)
            for service in [receiver] if receiver in used else used:
                actions = _narrowed(
                    service, method, _actions_of(service, method), called.get(id(node))
                )
                if actions:
                    calls.append(Call(path, getattr(node, "lineno", 0), service, method, actions))
    if "s3" in used:
        calls += _not_found_expectations(modules)
    return sorted(calls, key=lambda c: (str(c.path), c.line, c.service))


def _not_found_expectations(modules: dict[Path, ast.Module]) -> list[Call]:
    """Each place that tells a missing S3 key by its code (`s3.exceptions.NoSuchKey`, or the
    string "NoSuchKey" compared with an error's code)."""
    found = []
    for path, module in modules.items():
        for node in ast.walk(module):
            named = (isinstance(node, ast.Attribute) and node.attr == _NOT_FOUND_CODE) or (
                _string(node) == _NOT_FOUND_CODE
            )
            if named:
                line = getattr(node, "lineno", 0)
                found.append(Call(path, line, "s3", NOT_FOUND_EXPECTED, ("s3:ListBucket",)))
    return found


def _actions_of(service: str, method: str) -> tuple[str, ...]:
    operation = operations(service).get(method)
    if operation is not None:
        return iam_actions(service, operation)
    return CUSTOMIZATIONS.get(service, {}).get(method, ())


def _constants(module: ast.Module) -> dict[str, str]:
    constants = {}
    for node in module.body:
        if isinstance(node, ast.Assign) and len(node.targets) == 1:
            target, value = node.targets[0], _string(node.value)
            if isinstance(target, ast.Name) and value is not None:
                constants[target.id] = value
        elif isinstance(node, ast.AnnAssign) and isinstance(node.target, ast.Name):
            value = _string(node.value)
            if value is not None:
                constants[node.target.id] = value
    return constants


def _is_environ(node: ast.AST) -> bool:
    return isinstance(node, ast.Attribute) and node.attr == "environ"


def _required_env_name(node: ast.AST) -> ast.AST | None:
    """The name expression of an environment read that has no default, else None."""
    if isinstance(node, ast.Subscript) and _is_environ(node.value):
        return node.slice
    if not isinstance(node, ast.Call) or not isinstance(node.func, ast.Attribute):
        return None
    func = node.func
    reads = (func.attr == "get" and _is_environ(func.value)) or func.attr == "getenv"
    has_default = len(node.args) > 1 or any(k.arg == "default" for k in node.keywords)
    if reads and node.args and not has_default:
        return node.args[0]
    return None


def env_reads(code_dir: Path) -> list[EnvRead]:
    """Environment variables the function's code reads without a default."""
    reads: list[EnvRead] = []
    modules = {path: _parse(path) for path in python_files(code_dir)}
    constants: dict[str, str] = {}
    for module in modules.values():
        constants.update(_constants(module))
    for path, module in modules.items():
        for node in ast.walk(module):
            expression = _required_env_name(node)
            if expression is None:
                continue
            name = _string(expression)
            if name is None and isinstance(expression, ast.Name):
                name = constants.get(expression.id)
            if name is not None:
                reads.append(EnvRead(path, getattr(node, "lineno", 0), name))
    return reads


def arn_literals(code_dir: Path) -> list[ArnLiteral]:
    found = []
    for path in python_files(code_dir):
        for node in ast.walk(_parse(path)):
            value = _string(node)
            if value is not None and value.startswith("arn:"):
                found.append(ArnLiteral(path, getattr(node, "lineno", 0), value))
    return found
