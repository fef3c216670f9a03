"""IAM on every request the local service answers, for the principal that makes it.

The caller is who signed the request (``sfn_mlops.local.credentials``): the CLI's user (an
account administrator), a Lambda function's execution role, a job's ``RoleArn``, the state
machine's role; or, for what the service delivers itself, an EventBridge rule's target role or
the ``events.amazonaws.com`` principal (a Lambda permission then decides). The policies are the
deployed template's (``sfn_mlops.local.iam``), compiled at each ``deploy`` from its SAM
translation, which is kept in the workspace so a restarted service enforces the same.

The workspace's ``iam.json`` chooses the mode: ``enforce`` (the default), ``warn`` (log what
would be denied, answer anyway) or ``off``; ``sfn-mlops local iam MODE`` writes it.
"""

from __future__ import annotations

import json
import logging
import os
import threading
from collections.abc import Iterable
from pathlib import Path
from typing import Any

from sfn_mlops.local.iam import (
    MODES,
    AccessDenied,
    Authorizer,
    Caller,
    Decision,
    DeployedPolicies,
    Need,
    base_context,
    needs,
)
from sfn_mlops.local.iam.usage import TEMPLATE_PREFIX, Use, Verdict, prove

log = logging.getLogger("sfn_mlops.local.iam")

MODE_FILE = "iam.json"
TEMPLATE_FILE = "iam-template.json"
#: For each statement and action, the first request it allowed, one `Use` a line (least
#: privilege: `sfn-mlops local iam --unused` lists the template's statements nothing used,
#: `--prove` replays each statement's requests without it).
USED_FILE = "iam-used.jsonl"
DEFAULT_MODE = "enforce"


class IamSettingError(ValueError):
    """The workspace's iam.json names no mode the service knows."""


def read_mode(root: Path) -> str:
    path = root / MODE_FILE
    try:
        mode = json.loads(path.read_text(encoding="utf-8")).get("mode", DEFAULT_MODE)
    except FileNotFoundError:
        return DEFAULT_MODE
    except (ValueError, AttributeError) as err:
        raise IamSettingError(f"{path}: not a JSON object with a 'mode'") from err
    if mode not in MODES:
        raise IamSettingError(f"{path}: mode {mode!r} is not one of {', '.join(MODES)}")
    return str(mode)


def recorded_uses(root: Path) -> list[Use]:
    try:
        lines = (root / USED_FILE).read_text(encoding="utf-8").splitlines()
    except FileNotFoundError:
        return []
    return [Use.from_json(line) for line in lines if line.strip()]


def write_mode(root: Path, mode: str) -> None:
    if mode not in MODES:
        raise IamSettingError(f"IAM mode {mode!r} is not one of {', '.join(MODES)}")
    _write_atomically(root / MODE_FILE, {"mode": mode})


def _write_atomically(path: Path, document: dict[str, Any]) -> None:
    path.parent.mkdir(parents=True, exist_ok=True)
    temporary = path.with_suffix(f".{os.getpid()}.tmp")
    temporary.write_text(json.dumps(document), encoding="utf-8")
    temporary.replace(path)


class Authorization:
    """Decides each request as AWS would, for the workspace's deployed template."""

    def __init__(self, root: Path, region: str, account: str) -> None:
        self.root, self.region, self.account = root, region, account
        self._lock = threading.Lock()
        self._policies: DeployedPolicies | None = None
        self._loaded = False
        self._mode: tuple[float, str] | None = None  # (iam.json's mtime, mode)
        self._callers: dict[tuple[str, str], Caller] = {}
        self.digest = ""  # of the template and parameters compiled last by this process
        self._used: set[tuple[str, str]] | None = None  # (statement, action) in USED_FILE
        self._authorizers: dict[str, Authorizer] = {}  # by mode, for the deployed policies

    # the deployed template ------------------------------------------------------------------
    def deployed(
        self, template: dict[str, Any], parameters: dict[str, str], digest: str = ""
    ) -> None:
        """Compile a freshly deployed template's policies (PolicyError for one AWS would not
        take, or a condition operator nobody evaluates here) and keep its translation."""
        policies = DeployedPolicies.from_template(template, parameters=parameters)
        _write_atomically(
            self.root / TEMPLATE_FILE, {"template": template, "parameters": parameters}
        )
        with self._lock:
            self._policies, self._loaded, self._callers = policies, True, {}
            self._authorizers = {}
            self.digest = digest

    def policies(self) -> DeployedPolicies | None:
        with self._lock:
            if not self._loaded:
                self._loaded = True
                self._policies = self._load()
            return self._policies

    def _load(self) -> DeployedPolicies | None:
        try:
            kept = json.loads((self.root / TEMPLATE_FILE).read_text(encoding="utf-8"))
        except FileNotFoundError:
            return None  # nothing deployed yet: only the administrator calls
        return DeployedPolicies.from_template(kept["template"], parameters=kept["parameters"])

    # the mode ---------------------------------------------------------------------------------
    def mode(self) -> str:
        try:
            mtime = (self.root / MODE_FILE).stat().st_mtime
        except FileNotFoundError:
            return DEFAULT_MODE
        if self._mode is None or self._mode[0] != mtime:
            self._mode = (mtime, read_mode(self.root))
        return self._mode[1]

    # who calls ----------------------------------------------------------------------------------
    def caller(self, role_arn: str | None, session: str = "") -> Caller:
        """The administrator (``role_arn`` None), or a session of a deployed role. A role the
        template does not hold has no policies: AWS would not let anything assume it."""
        key = (role_arn or "", session)
        found = self._callers.get(key)
        if found is None:
            found = self._make_caller(role_arn, session)
            self._callers[key] = found
        return found

    def _make_caller(self, role_arn: str | None, session: str) -> Caller:
        policies = self.policies() or DeployedPolicies(account=self.account, region=self.region)
        if role_arn is None:
            return policies.administrator()
        try:
            return policies.role(role_arn, session)
        except KeyError:
            name = role_arn.rpartition("/")[2]
            return Caller(
                arn=f"arn:aws:sts::{self.account}:assumed-role/{name}/{session}",
                account=self.account,
                role_arn=role_arn,
                policies=(),
            )

    def service(self, name: str) -> Caller:
        policies = self.policies() or DeployedPolicies(account=self.account, region=self.region)
        return policies.service(name)

    # the decision -------------------------------------------------------------------------------
    def authorize(
        self,
        caller: Caller,
        service: str,
        operation: str,
        params: dict[str, Any],
        **context: Any,
    ) -> None:
        """Raise AWS's AccessDenied for the request unless the caller may make it."""
        authorizer = self._authorizer()
        if authorizer is None:
            return
        wanted = needs(service, operation, params, self.region, self.account)
        keys = base_context(caller, self.region, **context)
        decisions = authorizer.check(caller, service, wanted, keys)
        self._record(caller, decisions, keys)

    def _authorizer(self) -> Authorizer | None:
        """The deployed policies' authorizer in the workspace's mode, made once per mode and
        deploy (not per request); None when IAM is off or nothing is deployed yet (then
        there is nothing but the administrator)."""
        mode = self.mode()
        if mode == "off":
            return None
        policies = self.policies()
        if policies is None:
            return None
        with self._lock:
            found = self._authorizers.get(mode)
            if found is None:
                found = self._authorizers[mode] = policies.authorizer(mode)
            return found

    def _record(
        self, caller: Caller, decisions: Iterable[Decision], context: dict[str, Any]
    ) -> None:
        """Keep the first request each of the template's statements allowed each action for
        (one line each; AWS managed policies' are not the template's to trim)."""
        with self._lock:
            if self._used is None:
                self._used = {(u.statement, u.action) for u in recorded_uses(self.root)}
            new = []
            for decision in decisions:
                key = (decision.statement or "", decision.need.action)
                ours = key[0].startswith(TEMPLATE_PREFIX)
                if decision.allowed and ours and key not in self._used:
                    self._used.add(key)
                    new.append(Use.of(caller, decision, context))
            if new:
                with (self.root / USED_FILE).open("a", encoding="utf-8") as out:
                    out.writelines(use.to_json() + "\n" for use in new)

    def unused(self) -> list[str]:
        """The statements of the template's own roles that no request has used yet."""
        return [v.statement for v in self.prove() if v.outcome == "unused"]

    def prove(self) -> list[Verdict]:
        """Each template statement taken out in turn, its recorded requests decided again."""
        policies = self.policies()
        if policies is None:
            return []
        return prove(policies, recorded_uses(self.root))

    def denial(self, caller: Caller, wanted: Iterable[Need]) -> str | None:
        """AWS's message for the first of `wanted` that `caller` may not (each `Need` with
        the condition keys its request sets, e.g. `cloudwatch:namespace`); None when all are
        allowed, or not enforced. For the calls the service makes itself as a role, as AWS's
        own components make them: a job's data movement, image pull, log stream and metrics
        (`jobs.runner`, `jobs.aws_calls`), a `.sync` integration's managed rules."""
        authorizer = self._authorizer()
        if authorizer is None:
            return None
        context = base_context(caller, self.region)
        allowed = []
        for need in wanted:
            decision = authorizer.decide(caller, need, context)
            if decision.allowed:
                allowed.append(decision)
                continue
            if authorizer.mode == "warn":
                log.warning("IAM would deny: %s", decision.message(caller))
                continue
            self._record(caller, allowed, context)
            return decision.message(caller)
        self._record(caller, allowed, context)
        return None

    def may_list_bucket(self, caller: Caller, bucket: str) -> bool:
        """S3 tells a missing key (NoSuchKey) only to a caller that may list the bucket
        (Amazon S3 API Reference, GetObject, "Permissions")."""
        need = Need("s3:ListBucket", f"arn:aws:s3:::{bucket}", "a missing key")
        return self.denial(caller, [need]) is None


__all__ = ["AccessDenied", "Authorization", "IamSettingError", "read_mode", "write_mode"]
