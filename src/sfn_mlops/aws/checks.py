"""Offline checks of template.yaml, its IAM and its state machines that no linter does.

    python -m sfn_mlops.aws.checks [template.yaml]

prints one line per problem, `file: where: what is wrong; what would be right`, and exits 1 if
there is any. Each `check_*` function returns a list of `Problem`s:

- `check_translation`: the SAM template translates to plain CloudFormation offline
  (`translate`), and cfn-lint finds nothing in the result.
- `check_definitions`: statelint on every state machine definition the template points at.
- `check_substitutions`: every `${Placeholder}` in a definition has a `DefinitionSubstitutions`
  entry, and every entry is used.
- `check_references`: every Lambda, role, topic, queue, state machine and bucket that a
  definition (after substitution) or a Lambda's code refers to is a resource of the template, of
  the right type; every environment variable a Lambda reads without a default is set for it.
- `check_iam_coverage`: the state machine's role is granted what its Tasks need (`iam.task_needs`:
  for a SageMaker `.sync` job the create/describe/stop calls, AddTags, the managed EventBridge
  rule and iam:PassRole on the role handed to SageMaker; lambda:InvokeFunction on the function;
  sns:Publish on the topic), each Lambda's role what its code calls (`lambda_code.aws_calls`),
  on the resources the template defines (for S3 objects, a grant on a key prefix of the bucket,
  `${Bucket.Arn}/code/*`, counts). An integration not described in `iam` fails the check
  until it is.
- `check_iam_wildcards`: no Allow names a `*` (or `service:*`, `service:Get*`) action; a
  `Resource: "*"` is allowed only for actions listed in `iam.UNSCOPED_ACTIONS`, **which is where
  the written reason for a `*` resource lives**: one entry per action, with why IAM allows nothing
  narrower for it. A comment in the template explains it to a reader; the entry is what the gate
  accepts.
- `check_buckets` and `check_topics`: every bucket is encrypted, blocks public access (all four
  settings), has a bucket policy denying requests without TLS (`aws:SecureTransport` false) and
  no public Allow; every topic has a `KmsMasterKeyId`.

ARNs are compared in a stand-in stack (`sfn_mlops.intrinsics`): the template's
`!Ref`/`!GetAtt`/`!Sub` and the definition's substituted placeholders resolve to the same made-up
ARNs, so "granted on the right resource" is a string match with IAM's wildcards (`iam`).
"""

from __future__ import annotations

import argparse
import json
import re
import sys
from collections.abc import Callable, Iterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from sfn_mlops.aws import iam, lambda_code
from sfn_mlops.aws.translate import TranslationError, cfn_lint, is_local, state_lint, translate
from sfn_mlops.intrinsics import ACCOUNT, PARTITION, REGION, Owner, Stack, Unresolved
from sfn_mlops.policies import as_list
from sfn_mlops.template import load

PLACEHOLDER = re.compile(r"\$\{([^}!][^}]*)\}")
_ARN = re.compile(r"arn:aws[\w-]*:[\w-]+:[\w-]*:[\w-]*:[^\s'\",)}]+")
_S3_URI = re.compile(r"s3://([^/\s'\",)}]+)")
#: Environment variables the Lambda runtime sets itself.
RUNTIME_ENV_PREFIXES = ("AWS_", "LAMBDA_", "_")
RUNTIME_ENV = frozenset({"TZ", "LANG", "PATH", "LD_LIBRARY_PATH", "PYTHONPATH"})
#: ARN service (and resource prefix) -> the resource types such an ARN may belong to.
REFERENCED_TYPES: dict[tuple[str, str], tuple[str, ...]] = {
    ("lambda", "function"): ("AWS::Lambda::Function",),
    ("sns", ""): ("AWS::SNS::Topic",),
    ("iam", "role"): ("AWS::IAM::Role",),
    ("sqs", ""): ("AWS::SQS::Queue",),
    ("states", "stateMachine"): ("AWS::StepFunctions::StateMachine",),
    ("s3", ""): ("AWS::S3::Bucket",),
    ("events", "rule"): ("AWS::Events::Rule",),
    ("sagemaker", "model-package-group"): ("AWS::SageMaker::ModelPackageGroup",),
}
#: Rules that Step Functions' SageMaker `.sync` integrations create and own.
MANAGED_RULES = frozenset(rule for _, _, _, rule in iam.SAGEMAKER_JOBS.values())
#: s3 actions on the bucket itself; every other s3 action is on objects (`bucket/key`).
S3_BUCKET_ACTIONS = frozenset(
    {
        "s3:ListBucket",
        "s3:ListBucketVersions",
        "s3:ListBucketMultipartUploads",
        "s3:GetBucketLocation",
        "s3:GetBucketPolicy",
        "s3:GetBucketVersioning",
        "s3:GetLifecycleConfiguration",
        "s3:GetBucketNotification",
        "s3:PutBucketNotification",
        "s3:GetEncryptionConfiguration",
    }
)
_PUBLIC_ACCESS_SETTINGS = (
    "BlockPublicAcls",
    "BlockPublicPolicy",
    "IgnorePublicAcls",
    "RestrictPublicBuckets",
)
_SSE_ALGORITHMS = frozenset({"AES256", "aws:kms", "aws:kms:dsse"})
#: State fields not scanned for references: prose, Task parameters (checked by name), and
#: nested states (walked on their own).
_NOT_SCANNED = frozenset({"Comment", "Parameters", "Branches", "Iterator", "ItemProcessor"})


@dataclass(frozen=True)
class Problem:
    file: str
    where: str
    message: str

    def __str__(self) -> str:
        return f"{self.file}: {self.where}: {self.message}"


@dataclass
class StateMachine:
    logical_id: str
    definition_file: str
    text: str
    substitutions: dict[str, Any]


@dataclass
class Function:
    logical_id: str
    code_dir: Path | None


@dataclass
class Project:
    """template.yaml, its SAM translation and what it points at, loaded once for every check."""

    path: Path
    sam: dict[str, Any]
    cfn: dict[str, Any] | None
    translation_problem: str | None
    state_machines: list[StateMachine] = field(default_factory=list)
    functions: list[Function] = field(default_factory=list)

    @property
    def root(self) -> Path:
        return self.path.parent

    @property
    def file(self) -> str:
        return display(self.path)

    def stack(self) -> Stack | None:
        return None if self.cfn is None else Stack(self.cfn)


def display(path: Path) -> str:
    """A path as the user would type it: relative to the working directory when inside it."""
    try:
        return str(path.resolve().relative_to(Path.cwd().resolve()))
    except ValueError:
        return str(path)


def load_project(path: Path) -> Project:
    sam = load(path)
    cfn: dict[str, Any] | None = None
    problem = None
    try:
        cfn = translate(sam, path.parent)
    except (TranslationError, OSError, ValueError) as error:
        problem = str(error)
    project = Project(path=path, sam=sam, cfn=cfn, translation_problem=problem)
    global_code_uri = ((sam.get("Globals") or {}).get("Function") or {}).get("CodeUri")
    for logical_id, resource in sam.get("Resources", {}).items():
        properties = resource.get("Properties") or {}
        if resource.get("Type") == "AWS::Serverless::StateMachine":
            machine = _state_machine(project, logical_id, properties)
            if machine is not None:
                project.state_machines.append(machine)
        elif resource.get("Type") == "AWS::Serverless::Function":
            code_uri = properties.get("CodeUri", global_code_uri)
            code_dir = path.parent / str(code_uri) if is_local(code_uri) else None
            project.functions.append(Function(logical_id, code_dir))
    return project


def _state_machine(
    project: Project, logical_id: str, properties: dict[str, Any]
) -> StateMachine | None:
    substitutions = dict(properties.get("DefinitionSubstitutions") or {})
    if is_local(properties.get("DefinitionUri")):
        definition_path = project.root / properties["DefinitionUri"]
        text = definition_path.read_text(encoding="utf-8")
        return StateMachine(logical_id, display(definition_path), text, substitutions)
    if isinstance(properties.get("Definition"), dict):
        text = json.dumps(properties["Definition"], indent=1)
        where = f"{project.file} (Resources.{logical_id}.Properties.Definition)"
        return StateMachine(logical_id, where, text, substitutions)
    return None


# ASL helpers -----------------------------------------------------------------------------------


def walk_states(
    definition: dict[str, Any], prefix: str = ""
) -> Iterator[tuple[str, dict[str, Any]]]:
    """(path, state) for every state, inside Parallel branches and Map iterators too."""
    for name, state in (definition.get("States") or {}).items():
        path = f"{prefix}States.{name}"
        yield path, state
        for index, branch in enumerate(state.get("Branches") or []):
            yield from walk_states(branch, f"{path}.Branches[{index}].")
        for key in ("Iterator", "ItemProcessor"):
            if isinstance(state.get(key), dict):
                yield from walk_states(state[key], f"{path}.{key}.")


def _strings(value: Any, path: str) -> Iterator[tuple[str, str]]:
    if isinstance(value, str):
        yield path, value
    elif isinstance(value, dict):
        for key, item in value.items():
            yield from _strings(item, f"{path}.{key}")
    elif isinstance(value, list):
        for index, item in enumerate(value):
            yield from _strings(item, f"{path}[{index}]")


def resolved_definition(machine: StateMachine, stack: Stack) -> dict[str, Any]:
    """The definition with each placeholder replaced by its resolved substitution."""
    values = {name: stack.resolve(value) for name, value in machine.substitutions.items()}

    def replace(match: re.Match[str]) -> str:
        name = match.group(1)
        if name not in values:
            return match.group(0)
        return json.dumps(str(values[name]))[1:-1]

    result: dict[str, Any] = json.loads(PLACEHOLDER.sub(replace, machine.text))
    return result


def _tasks(definition: dict[str, Any]) -> Iterator[tuple[str, str, dict[str, Any]]]:
    for path, state in walk_states(definition):
        if state.get("Type") == "Task" and isinstance(state.get("Resource"), str):
            yield path, state["Resource"], state.get("Parameters") or {}


# checks ----------------------------------------------------------------------------------------


def check_translation(project: Project) -> list[Problem]:
    if project.cfn is None:
        return [
            Problem(
                project.file,
                "Transform",
                f"the SAM transform rejects the template: {project.translation_problem}; "
                "fix the template so that aws-sam-translator accepts it",
            )
        ]
    name = f"{project.file} (translated to CloudFormation)"
    return [
        Problem(name, f"line {p.line}", f"cfn-lint {p.rule}: {p.message}")
        for p in cfn_lint(project.cfn, name)
    ]


def check_definitions(project: Project) -> list[Problem]:
    problems = []
    for machine in project.state_machines:
        try:
            definition = json.loads(machine.text)
        except ValueError as error:
            problems.append(Problem(machine.definition_file, "definition", f"not JSON: {error}"))
            continue
        for message in state_lint(definition):
            problems.append(
                Problem(
                    machine.definition_file,
                    f"Resources.{machine.logical_id}",
                    f"statelint: {message}",
                )
            )
    return problems


def check_substitutions(project: Project) -> list[Problem]:
    problems = []
    for machine in project.state_machines:
        try:
            definition = json.loads(machine.text)
        except ValueError:
            continue  # check_definitions reports it
        used: dict[str, str] = {}
        for path, text in _strings(definition, "$"):
            for name in PLACEHOLDER.findall(text):
                used.setdefault(name, path[2:])
        entry = f"Resources.{machine.logical_id}.Properties.DefinitionSubstitutions"
        defined = sorted(machine.substitutions)
        for name, where in sorted(used.items()):
            if name not in machine.substitutions:
                problems.append(
                    Problem(
                        machine.definition_file,
                        where,
                        f"uses ${{{name}}}, which {entry} does not define; add a {name} entry "
                        f"there or use one of {defined}",
                    )
                )
        for name in defined:
            if name not in used:
                problems.append(
                    Problem(
                        project.file,
                        f"{entry}.{name}",
                        f"is not used by {machine.definition_file}; remove the entry, or use "
                        f"${{{name}}} in the definition",
                    )
                )
    return problems


def _arn_kind(value: str) -> tuple[str, str] | None:
    """(service, resource prefix) of an ARN the template could own, or None."""
    parts = value.split(":", 5)
    if len(parts) < 6:
        return None
    service, resource = parts[2], parts[5]
    for (kind_service, prefix), _ in REFERENCED_TYPES.items():
        if kind_service != service:
            continue
        if not prefix or resource.split(":")[0].split("/")[0] == prefix:
            return kind_service, prefix
    return None


def _owner_check(stack: Stack, value: str, expected: tuple[str, ...]) -> str | None:
    """Why `value` is not a resource of one of the `expected` types in the template, or None."""
    owner = stack.owner_of(value)
    if owner is None and value.startswith(f"arn:{PARTITION}:lambda:"):
        owner = stack.owner_of(iam.function_arn(value))
    if owner is None and value.startswith(f"arn:{PARTITION}:s3:::"):
        owner = stack.owner_of(value.split("/")[0])
    kind = " or ".join(expected)
    if owner is None:
        return f"refers to {value}, which is no {kind} of the template"
    if owner.resource_type not in expected:
        return f"refers to {owner.logical_id}, a {owner.resource_type}, where a {kind} belongs"
    return None


def _references_in(stack: Stack, text: str) -> Iterator[tuple[str, tuple[str, ...]]]:
    """(value, expected types) for every ARN and s3:// bucket written in `text`."""
    for match in _ARN.finditer(text):
        value = match.group(0)
        kind = _arn_kind(value)
        if kind is None or _is_managed_rule(value):
            continue
        yield value, REFERENCED_TYPES[kind]
    for match in _S3_URI.finditer(text):
        bucket = match.group(1)
        if "{" not in bucket and "$" not in bucket:
            yield bucket, ("AWS::S3::Bucket",)


def _is_managed_rule(value: str) -> bool:
    return any(value.endswith(f"rule/{rule}") for rule in MANAGED_RULES)


def _task_parameter_references(
    stack: Stack, parameters: dict[str, Any]
) -> Iterator[tuple[str, str, tuple[str, ...]]]:
    """(parameter path, value, expected types) for the parameters that name a resource."""
    named: dict[str, tuple[str, ...]] = {
        "FunctionName": ("AWS::Lambda::Function",),
        "TopicArn": ("AWS::SNS::Topic",),
        "RoleArn": ("AWS::IAM::Role",),
        "ExecutionRoleArn": ("AWS::IAM::Role",),
        "StateMachineArn": ("AWS::StepFunctions::StateMachine",),
        "QueueUrl": ("AWS::SQS::Queue",),
    }
    for key, expected in named.items():
        value = parameters.get(key)
        if isinstance(value, str):
            if key == "FunctionName":
                value = iam.function_arn(value)
            yield f"Parameters.{key}", value, expected
    for path, text in _strings(parameters, "Parameters"):
        if path.split(".")[-1].split("[")[0] in named:
            continue
        for value, expected in _references_in(stack, text):
            yield path, value, expected


def _definition_references(project: Project, stack: Stack, machine: StateMachine) -> list[Problem]:
    try:
        definition = resolved_definition(machine, stack)
    except (ValueError, Unresolved) as error:
        return [Problem(machine.definition_file, "definition", f"cannot be resolved: {error}")]
    problems = []
    for path, resource, parameters in _tasks(definition):
        found = list(_task_parameter_references(stack, parameters))
        if resource.startswith(f"arn:{PARTITION}:lambda:"):
            found.append(("Resource", resource, ("AWS::Lambda::Function",)))
        for where, value, expected in found:
            why = _owner_check(stack, value, expected)
            if why is not None:
                problems.append(
                    Problem(
                        machine.definition_file,
                        f"{path}.{where}",
                        f"{why}; point it at a template resource through DefinitionSubstitutions "
                        "(e.g. `Name: !GetAtt Resource.Arn`)",
                    )
                )
    for path, state in walk_states(definition):
        own = {k: v for k, v in state.items() if k not in _NOT_SCANNED}
        for where, text in _strings(own, path):
            for value, expected in _references_in(stack, text):
                why = _owner_check(stack, value, expected)
                if why is not None:
                    problems.append(Problem(machine.definition_file, where, why))
    return problems


def _function_environment(stack: Stack, logical_id: str) -> set[str]:
    properties = stack.resolve(stack.resources.get(logical_id, {}).get("Properties", {}))
    return set((properties.get("Environment") or {}).get("Variables") or {})


def _code_references(project: Project, stack: Stack, function: Function) -> list[Problem]:
    if function.code_dir is None or not function.code_dir.is_dir():
        return []
    problems = []
    environment = _function_environment(stack, function.logical_id)
    for read in lambda_code.env_reads(function.code_dir):
        if read.name in environment or read.name in RUNTIME_ENV:
            continue
        if read.name.startswith(RUNTIME_ENV_PREFIXES):
            continue
        problems.append(
            Problem(
                f"{display(read.path)}:{read.line}",
                f"Resources.{function.logical_id}",
                f"reads the environment variable {read.name}, which the template does not set "
                f"for this function; add it to its Environment.Variables (set: "
                f"{sorted(environment)})",
            )
        )
    for literal in lambda_code.arn_literals(function.code_dir):
        kind = _arn_kind(literal.value)
        why = None if kind is None else _owner_check(stack, literal.value, REFERENCED_TYPES[kind])
        if why is not None:
            problems.append(
                Problem(
                    f"{display(literal.path)}:{literal.line}",
                    f"Resources.{function.logical_id}",
                    f"{why}; pass the resource in through an environment variable set with "
                    "!Ref/!GetAtt instead",
                )
            )
    return problems


def check_references(project: Project) -> list[Problem]:
    stack = project.stack()
    if stack is None:
        return []
    problems = []
    for machine in project.state_machines:
        problems += _definition_references(project, stack, machine)
    for function in project.functions:
        problems += _code_references(project, stack, function)
    return problems


def _role_of(stack: Stack, value: Any) -> Owner | None:
    resolved = stack.resolve(value)
    owner = stack.owner_of(str(resolved)) if resolved else None
    return owner if owner is not None and owner.resource_type == "AWS::IAM::Role" else None


def _as_template_value(stack: Stack, resource: str | None) -> str:
    """How a template would name `resource`: `!GetAtt X.Arn`, `!Ref X` or an `!Sub` ARN."""
    if resource is None:
        return "any resource"
    owner = stack.owner_of(resource)
    if owner is not None:
        if owner.attribute == "Ref":
            return f"!Ref {owner.logical_id}"
        return f"!GetAtt {owner.logical_id}.{owner.attribute}"
    text = (
        resource.replace(f"arn:{PARTITION}:", "arn:${AWS::Partition}:")
        .replace(f":{REGION}:", ":${AWS::Region}:")
        .replace(f":{ACCOUNT}:", ":${AWS::AccountId}:")
    )
    return f'!Sub "{text}"'


def _state_machine_coverage(project: Project, stack: Stack, machine: StateMachine) -> list[Problem]:
    resource = stack.resources.get(machine.logical_id, {})
    role = _role_of(stack, resource.get("Properties", {}).get("RoleArn"))
    where = f"Resources.{machine.logical_id}"
    if role is None:
        return [
            Problem(
                project.file,
                where,
                "its role is not an IAM role of the template; "
                "give it Policies (SAM makes the role) or a Role: !GetAtt X.Arn",
            )
        ]
    granted = iam.principal(stack, role.logical_id)
    try:
        definition = resolved_definition(machine, stack)
    except (ValueError, Unresolved):
        return []  # check_references reports it
    problems = []
    for path, task_resource, parameters in _tasks(definition):
        try:
            needs = iam.task_needs(task_resource, parameters)
        except iam.UnknownIntegration as error:
            problems.append(
                Problem(
                    machine.definition_file,
                    path,
                    f"the gate does not know what IAM actions {error} needs; describe them in "
                    "sfn_mlops/aws/iam.py (task_needs) from AWS's IAM policy page for it",
                )
            )
            continue
        for need in needs:
            if not iam.is_granted(granted, need):
                target = _as_template_value(stack, need.resource)
                problems.append(
                    Problem(
                        project.file,
                        f"{where} (role {role.logical_id})",
                        f"{path} ({need.reason}) needs {need.action} on {target}, which the "
                        f"role's policies do not grant; add a statement allowing {need.action} "
                        f"on {target} to the state machine's Policies",
                    )
                )
        problems += _job_role_coverage(project, stack, path, task_resource, parameters)
    return problems


def _job_role_coverage(
    project: Project, stack: Stack, path: str, resource: str, parameters: dict[str, Any]
) -> list[Problem]:
    """The role a job runs as (its RoleArn) has what the job's image needs (iam.job_role_needs)."""
    needs = iam.job_role_needs(resource, parameters)
    job_role = _role_of(stack, parameters.get("RoleArn")) if needs else None
    if job_role is None:
        return []
    granted = iam.principal(stack, job_role.logical_id)
    problems = []
    for need in needs:
        if not iam.is_granted(granted, need):
            target = _as_template_value(stack, need.resource)
            problems.append(
                Problem(
                    project.file,
                    f"Resources.{job_role.logical_id}",
                    f"{path} runs as {job_role.logical_id} ({need.reason}), which needs "
                    f"{need.action} on {target}; the role's policies do not grant it",
                )
            )
    return problems


def _code_candidates(stack: Stack, action: str) -> tuple[str, list[str]] | None:
    """(kind, resources) on one of which a Lambda's `action` must be granted; None: any resource."""
    service = action.split(":")[0]
    if service == "s3":
        buckets = [stack.get_att(b, "Arn") for b in stack.of_type("AWS::S3::Bucket")]
        if action in S3_BUCKET_ACTIONS:
            return "bucket", buckets
        return "bucket's objects", [f"{bucket}/*" for bucket in buckets]
    kinds = {
        "sns": ("topic", "AWS::SNS::Topic", "Ref"),
        "sqs": ("queue", "AWS::SQS::Queue", "Arn"),
        "lambda": ("function", "AWS::Lambda::Function", "Arn"),
    }
    if service in kinds:
        kind, resource_type, attribute = kinds[service]
        values = [
            str(stack.ref(lid) if attribute == "Ref" else stack.get_att(lid, attribute))
            for lid in stack.of_type(resource_type)
        ]
        return kind, values
    if action == "states:StartExecution":
        machines = [
            str(stack.ref(lid)) for lid in stack.of_type("AWS::StepFunctions::StateMachine")
        ]
        return "state machine", machines
    return None


def _suggestion(stack: Stack, action: str, kind: str, candidates: list[str]) -> str:
    if action.startswith("s3:") and candidates:
        bucket = stack.owner_of(candidates[0].split("/")[0])
        name = bucket.logical_id if bucket else "Bucket"
        template = "S3ReadPolicy" if ":Get" in action or ":List" in action else "S3CrudPolicy"
        return f"e.g. `- {template}: {{BucketName: !Ref {name}}}` in its Policies"
    if candidates:
        return f"e.g. a statement allowing {action} on {_as_template_value(stack, candidates[0])}"
    return f"and add the {kind} it works on to the template"


def _function_coverage(project: Project, stack: Stack, function: Function) -> list[Problem]:
    if function.code_dir is None or not function.code_dir.is_dir():
        return []
    resource = stack.resources.get(function.logical_id, {})
    role = _role_of(stack, resource.get("Properties", {}).get("Role"))
    where = f"Resources.{function.logical_id}"
    if role is None:
        return [Problem(project.file, where, "its role is not an IAM role of the template")]
    granted = iam.principal(stack, role.logical_id)
    problems = []
    seen: set[str] = set()
    for call in lambda_code.aws_calls(function.code_dir):
        for action in call.actions:
            if action in seen:
                continue
            seen.add(action)
            problem = _call_problem(
                stack, granted, call, action, f"{where} (role {role.logical_id})"
            )
            if problem is not None:
                problems.append(problem)
    return problems


def _call_problem(
    stack: Stack, granted: iam.Principal, call: lambda_code.Call, action: str, where: str
) -> Problem | None:
    scoped = _code_candidates(stack, action)
    candidates: list[str] = []
    if scoped is None:
        if iam.is_granted(granted, iam.Need(action, None, "code")):
            return None
        kind, on = "resource", "any resource"
    else:
        kind, candidates = scoped
        if any(iam.is_granted(granted, iam.Need(action, c, "code")) for c in candidates):
            return None
        if any(_granted_under_a_key_prefix(granted, action, c) for c in candidates):
            return None
        names = [_as_template_value(stack, c) for c in candidates]
        on = f"any {kind} of the template ({', '.join(names) or 'none defined'})"
    return Problem(
        f"{display(call.path)}:{call.line}",
        where,
        f"calls {call.service}.{call.method}, which needs {action}; the role does not grant it "
        f"on {on}; grant it, {_suggestion(stack, action, kind, candidates)}",
    )


def _granted_under_a_key_prefix(granted: iam.Principal, action: str, objects: str) -> bool:
    """An s3 object action granted on a key prefix of the bucket (`arn:...:bucket/code/*`).

    Least privilege scopes a Lambda that owns one part of a bucket to that part; which keys the
    code writes is not known statically, so such a grant counts as on the right bucket.
    """
    if not (action.startswith("s3:") and objects.endswith("/*")):
        return False
    bucket = objects[:-1]  # "arn:aws:s3:::name/"
    return any(
        statement.effect == "Allow"
        and not statement.not_action
        and not statement.not_resource
        and any(iam.glob_covers(a, action, case_sensitive=False) for a in statement.actions)
        and any(r.startswith(bucket) and len(r) > len(bucket) + 1 for r in statement.resources)
        for statement in granted.statements
    )


def check_iam_coverage(project: Project) -> list[Problem]:
    stack = project.stack()
    if stack is None:
        return []
    problems = []
    for machine in project.state_machines:
        problems += _state_machine_coverage(project, stack, machine)
    for function in project.functions:
        problems += _function_coverage(project, stack, function)
    return problems


def check_iam_wildcards(project: Project) -> list[Problem]:
    stack = project.stack()
    if stack is None:
        return []
    problems = []
    for _, statements in iam.identity_policies(stack):
        for statement in statements:
            if statement.effect != "Allow":
                continue
            problems += _wildcard_problems(project, statement)
    return problems


def _wildcard_problems(project: Project, statement: iam.Statement) -> list[Problem]:
    problems = []
    for action in statement.actions:
        if "*" in action or statement.not_action:
            problems.append(
                Problem(
                    project.file,
                    statement.where,
                    f"allows the wildcard action {action!r}; name each action the principal "
                    "calls instead",
                )
            )
    if "*" in statement.resources or statement.not_resource:
        unlisted = [a for a in statement.actions if a not in iam.UNSCOPED_ACTIONS]
        if unlisted:
            problems.append(
                Problem(
                    project.file,
                    statement.where,
                    f"allows {unlisted} on Resource '*'; scope it with !Ref/!GetAtt/!Sub to the "
                    "resources used, or, where IAM accepts nothing narrower for an action, "
                    "add the action and the reason to UNSCOPED_ACTIONS in sfn_mlops/aws/iam.py",
                )
            )
    return problems


def _bucket_policies(stack: Stack, bucket: str) -> list[dict[str, Any]]:
    name = stack.ref(bucket)
    statements: list[dict[str, Any]] = []
    for logical_id in stack.of_type("AWS::S3::BucketPolicy"):
        properties = stack.resolve(stack.resources[logical_id].get("Properties", {}))
        if properties.get("Bucket") == name:
            body = (properties.get("PolicyDocument") or {}).get("Statement") or []
            statements += body if isinstance(body, list) else [body]
    return statements


def _is_everyone(principal: Any) -> bool:
    if principal == "*":
        return True
    return isinstance(principal, dict) and "*" in as_list(principal.get("AWS"))


def _denies_insecure_transport(statement: dict[str, Any], bucket_arn: str) -> bool:
    condition = (statement.get("Condition") or {}).get("Bool") or {}
    actions = as_list(statement.get("Action"))
    resources = set(as_list(statement.get("Resource")))
    return (
        statement.get("Effect") == "Deny"
        and _is_everyone(statement.get("Principal"))
        and str(condition.get("aws:SecureTransport")).lower() == "false"
        and any(a in ("s3:*", "*") for a in actions)
        and bucket_arn in resources
        and f"{bucket_arn}/*" in resources
    )


def _bucket_problems(stack: Stack, bucket: str, properties: dict[str, Any]) -> list[str]:
    problems = []
    rules = (properties.get("BucketEncryption") or {}).get(
        "ServerSideEncryptionConfiguration"
    ) or []
    algorithms = {
        (rule.get("ServerSideEncryptionByDefault") or {}).get("SSEAlgorithm") for rule in rules
    }
    if not algorithms & _SSE_ALGORITHMS:
        problems.append(
            "is not encrypted; set BucketEncryption with SSEAlgorithm AES256 or aws:kms"
        )
    block = properties.get("PublicAccessBlockConfiguration") or {}
    off = [name for name in _PUBLIC_ACCESS_SETTINGS if block.get(name) is not True]
    if off:
        problems.append(
            f"does not block public access ({', '.join(off)} not true); set all four of "
            f"PublicAccessBlockConfiguration's {', '.join(_PUBLIC_ACCESS_SETTINGS)} to true"
        )
    if properties.get("AccessControl") not in (None, "Private", "BucketOwnerFullControl"):
        problems.append(f"has AccessControl {properties['AccessControl']}; remove it")
    statements = _bucket_policies(stack, bucket)
    bucket_arn = stack.get_att(bucket, "Arn")
    if not any(_denies_insecure_transport(s, bucket_arn) for s in statements):
        problems.append(
            "has no bucket policy denying requests without TLS; add an AWS::S3::BucketPolicy "
            "statement: Effect Deny, Principal '*', Action s3:*, Resource the bucket's ARN and "
            "ARN/*, Condition Bool aws:SecureTransport 'false'"
        )
    for statement in statements:
        if statement.get("Effect") == "Allow" and _is_everyone(statement.get("Principal")):
            problems.append(
                f"has a bucket policy statement ({statement.get('Sid', 'no Sid')}) allowing "
                "Principal '*'; grant named principals instead"
            )
    return problems


def check_buckets(project: Project) -> list[Problem]:
    stack = project.stack()
    if stack is None:
        return []
    problems = []
    for bucket in stack.of_type("AWS::S3::Bucket"):
        properties = stack.resolve(stack.resources[bucket].get("Properties", {}))
        for message in _bucket_problems(stack, bucket, properties):
            problems.append(Problem(project.file, f"Resources.{bucket}", message))
    return problems


def check_topics(project: Project) -> list[Problem]:
    stack = project.stack()
    if stack is None:
        return []
    return [
        Problem(
            project.file,
            f"Resources.{topic}",
            "is not encrypted; set KmsMasterKeyId (alias/aws/sns, or a key of the template)",
        )
        for topic in stack.of_type("AWS::SNS::Topic")
        if not stack.resolve(stack.resources[topic].get("Properties", {})).get("KmsMasterKeyId")
    ]


def _region_lookups(node: Any, path: str) -> Iterator[tuple[str, str]]:
    """(path, map name) of each `Fn::FindInMap` keyed by `AWS::Region` in the template."""
    if isinstance(node, dict):
        found = node.get("Fn::FindInMap")
        if isinstance(found, list) and len(found) >= 2 and found[1] == {"Ref": "AWS::Region"}:
            yield path, str(found[0])
        for key, value in node.items():
            yield from _region_lookups(value, f"{path}.{key}")
    elif isinstance(node, list):
        for index, value in enumerate(node):
            yield from _region_lookups(value, f"{path}[{index}]")


def check_region_mappings(project: Project) -> list[Problem]:
    """Every region one region-keyed mapping lists resolves in every other the template looks
    up by region: CloudFormation refuses a stack whose FindInMap misses its key, so the stack
    fails to create there before anything is made."""
    mappings = project.sam.get("Mappings") or {}
    lookups = [
        *_region_lookups(project.sam.get("Conditions") or {}, "Conditions"),
        *_region_lookups(project.sam.get("Resources") or {}, "Resources"),
    ]
    regions: set[str] = set()
    for _, name in lookups:
        regions |= set(mappings.get(name) or {})
    problems = []
    for where, name in lookups:
        missing = sorted(regions - set(mappings.get(name) or {}))
        if missing:
            problems.append(
                Problem(
                    project.file,
                    where,
                    f"Mappings.{name} has no row for {', '.join(missing)}, which the template's "
                    "other region mappings list: a stack there fails to create; add the rows "
                    '("none" and a Condition where AWS offers nothing there)',
                )
            )
    return problems


CHECKS: tuple[Callable[[Project], list[Problem]], ...] = (
    check_translation,
    check_definitions,
    check_substitutions,
    check_references,
    check_iam_coverage,
    check_iam_wildcards,
    check_buckets,
    check_topics,
    check_region_mappings,
)


def run_all(path: Path) -> list[Problem]:
    project = load_project(path)
    problems: list[Problem] = []
    for check in CHECKS:
        problems += check(project)
    return problems


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(
        prog="python -m sfn_mlops.aws.checks",
        description="Offline checks of a SAM template, its IAM and its state machines.",
    )
    parser.add_argument("template", nargs="?", default="template.yaml", type=Path)
    args = parser.parse_args(argv)
    problems = run_all(args.template)
    for problem in problems:
        print(problem)
    if problems:
        print(f"{len(problems)} problem(s) in {display(args.template)}", file=sys.stderr)
        return 1
    print(f"{display(args.template)}: {len(CHECKS)} AWS checks pass")
    return 0


if __name__ == "__main__":
    sys.exit(main())
