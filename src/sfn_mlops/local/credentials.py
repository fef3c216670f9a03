"""Who may call the local service: access keys minted per workspace, one pair per principal.

AWS verifies every request's signature against the caller's secret key, and so does the local
service. ``credentials.json`` in the workspace (mode 0600, like ``~/.aws/credentials``) holds
a key pair for the account's administrator (the CLI user; ``sfn-mlops local env`` prints it)
and one for each role session the service runs code as: a Lambda function's execution role,
a job's ``RoleArn``, a state machine's role. A role's keys are minted the first time the role
is used and kept, so they stay valid across restarts. ``lookup`` names the principal of an
access key id; the gateway puts it on the request, for IAM to evaluate.

The file also holds the service token, which the service's own paths (``/_sfn-mlops/``:
status, deploy, shutdown, an endpoint's routing) require: only a process that can read the
workspace's files may use them.
"""

from __future__ import annotations

import base64
import fcntl
import hmac
import json
import os
import secrets
import string
import threading
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from sfn_mlops import settings

CREDENTIALS_FILE = "credentials.json"
_LOCK_FILE = "credentials.lock"
ADMIN_ARN = f"arn:aws:iam::{settings.LOCAL_ACCOUNT}:user/admin"
TOKEN_HEADER = "X-Sfn-Mlops-Token"
#: How the service hands its token to the endpoint servers it starts.
SERVICE_TOKEN_ENV = "SFN_MLOPS_SERVICE_TOKEN"
#: What a process's AWS credentials are read from; each process gets its principal's own.
CREDENTIAL_VARIABLES = (
    "AWS_ACCESS_KEY_ID",
    "AWS_SECRET_ACCESS_KEY",
    "AWS_SESSION_TOKEN",
    "AWS_SECURITY_TOKEN",
    "AWS_PROFILE",
)
_KEY_ID_CHARS = string.ascii_uppercase + string.digits


@dataclass(frozen=True)
class Principal:
    """An IAM user (no session) or a role session: who signed a request."""

    arn: str
    session_name: str = ""

    @property
    def caller_arn(self) -> str:
        """The ARN GetCallerIdentity names: the user, or ``assumed-role/ROLE/SESSION``."""
        if not self.session_name:
            return self.arn
        account = self.arn.split(":")[4]
        role = self.arn.rpartition("/")[2]
        return f"arn:aws:sts::{account}:assumed-role/{role}/{self.session_name}"

    @property
    def is_admin(self) -> bool:
        return self.arn == ADMIN_ARN and not self.session_name


@dataclass(frozen=True)
class AccessKey:
    access_key_id: str
    secret_access_key: str
    principal: Principal

    def environment(self) -> dict[str, str]:
        """The variables that make a process's AWS SDKs sign as this principal."""
        return {
            "AWS_ACCESS_KEY_ID": self.access_key_id,
            "AWS_SECRET_ACCESS_KEY": self.secret_access_key,
        }

    def client_kwargs(self) -> dict[str, str]:
        """``boto3.client(..., **key.client_kwargs())``."""
        return {
            "aws_access_key_id": self.access_key_id,
            "aws_secret_access_key": self.secret_access_key,
        }


def without_credentials(env: dict[str, str]) -> dict[str, str]:
    """``env`` minus any AWS credentials, so a child signs only with the keys it is given."""
    return {key: value for key, value in env.items() if key not in CREDENTIAL_VARIABLES}


class KeyStore:
    """The workspace's keys: read from ``credentials.json``, minted into it under a file lock."""

    def __init__(self, root: Path) -> None:
        self.path = root / CREDENTIALS_FILE
        self._lock_path = root / _LOCK_FILE
        self._lock = threading.Lock()
        self._by_id: dict[str, AccessKey] = {}
        self._by_principal: dict[Principal, AccessKey] = {}
        self._token = ""
        self._stamp: tuple[int, int] | None = None

    def admin(self) -> AccessKey:
        """The account administrator's keys (the CLI user's), minted on first use."""
        return self._key_for(Principal(ADMIN_ARN))

    def for_role(self, role_arn: str, session_name: str) -> AccessKey:
        """The keys of a session of ``role_arn``, minted the first time it is asked for."""
        return self._key_for(Principal(role_arn, session_name))

    def lookup(self, access_key_id: str) -> AccessKey | None:
        """The key with this id, or None; another process may have minted it since."""
        with self._lock:
            key = self._by_id.get(access_key_id)
            if key is None and self._refresh():
                key = self._by_id.get(access_key_id)
            return key

    def service_token(self) -> str:
        """The bearer token of the service's own paths (``TOKEN_HEADER``)."""
        self.admin()  # the first mint writes the token too
        return self._token

    def token_matches(self, offered: str | None) -> bool:
        return bool(offered) and hmac.compare_digest(offered or "", self.service_token())

    # ---------------------------------------------------------------------- the file
    def _key_for(self, principal: Principal) -> AccessKey:
        with self._lock:
            key = self._by_principal.get(principal)
            if key is None:
                self._refresh()
                key = self._by_principal.get(principal) or self._mint(principal)
            return key

    def _refresh(self) -> bool:
        """Read the file again if it changed since it was last read; whether it did."""
        try:
            info = self.path.stat()
        except FileNotFoundError:
            return False
        stamp = (info.st_mtime_ns, info.st_size)
        if stamp == self._stamp:
            return False
        self._read()
        return True

    def _read(self) -> None:
        try:
            info = self.path.stat()
            content: dict[str, Any] = json.loads(self.path.read_text())
        except FileNotFoundError:
            return
        self._stamp = (info.st_mtime_ns, info.st_size)
        self._token = str(content.get("ServiceToken", ""))
        for item in content.get("AccessKeys", []):
            principal = Principal(item["Arn"], item.get("SessionName", ""))
            key = AccessKey(item["AccessKeyId"], item["SecretAccessKey"], principal)
            self._by_id[key.access_key_id] = key
            self._by_principal[principal] = key

    def _mint(self, principal: Principal) -> AccessKey:
        """A new key pair, written to the file (under its lock, so two processes never mint
        two pairs for one principal or lose each other's)."""
        with self._file_lock():
            self._read()
            if principal in self._by_principal:
                return self._by_principal[principal]
            key = AccessKey(_key_id(principal), _secret(), principal)
            self._by_id[key.access_key_id] = key
            self._by_principal[principal] = key
            self._token = self._token or secrets.token_urlsafe(32)
            self._write()
            return key

    @contextmanager
    def _file_lock(self) -> Iterator[None]:
        self.path.parent.mkdir(parents=True, exist_ok=True)
        fd = os.open(self._lock_path, os.O_RDWR | os.O_CREAT, 0o600)
        try:
            fcntl.flock(fd, fcntl.LOCK_EX)
            yield
        finally:
            os.close(fd)

    def _write(self) -> None:
        content = {
            "ServiceToken": self._token,
            "AccessKeys": [
                {
                    "AccessKeyId": key.access_key_id,
                    "SecretAccessKey": key.secret_access_key,
                    "Arn": key.principal.arn,
                    **(
                        {"SessionName": key.principal.session_name}
                        if key.principal.session_name
                        else {}
                    ),
                }
                for key in self._by_id.values()
            ],
        }
        temp = self.path.with_suffix(f".{os.getpid()}.{threading.get_ident()}.tmp")
        fd = os.open(temp, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, 0o600)  # never world-readable
        with os.fdopen(fd, "w") as stream:
            json.dump(content, stream, indent=2)
        os.replace(temp, self.path)
        info = self.path.stat()
        self._stamp = (info.st_mtime_ns, info.st_size)


def _key_id(principal: Principal) -> str:
    """20 characters as AWS's: ``AKIA`` for a user's long-term key, ``ASIA`` for a role's."""
    prefix = "ASIA" if principal.session_name else "AKIA"
    return prefix + "".join(secrets.choice(_KEY_ID_CHARS) for _ in range(16))


def _secret() -> str:
    return base64.b64encode(secrets.token_bytes(30)).decode()  # 40 characters, as AWS's


# ---------------------------------------------------------------------- where the keys are used
_SERVED: dict[str, KeyStore] = {}
_SERVED_LOCK = threading.Lock()


def serve(url: str, store: KeyStore) -> None:
    """Record that this process serves ``url`` with ``store``'s keys (the engine's integrations
    sign as the state machine's role with the keys of the service their endpoint names)."""
    with _SERVED_LOCK:
        _SERVED[url.rstrip("/")] = store


def unserve(url: str) -> None:
    with _SERVED_LOCK:
        _SERVED.pop(url.rstrip("/"), None)


def served_at(url: str | None) -> KeyStore | None:
    """The key store of the local service at ``url`` if this process serves it."""
    if not url:
        return None
    with _SERVED_LOCK:
        return _SERVED.get(url.rstrip("/"))
