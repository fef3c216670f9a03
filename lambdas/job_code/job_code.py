"""Copies the job code bundle into the artifact bucket under a content-addressed prefix.

Plain functions, no AWS at import; the S3 client is passed in. The bundle is what
`sfn_mlops.packaging` builds from containers/ (`processing/`, `evaluation/`,
`training/sourcedir.tar.gz`, ...). Its prefix is `code/<hash>`, the hash of its content, so a
changed script gets a new prefix and an execution that started on the old one keeps reading the
old files. The same `publish` runs in the custom resource's Lambda in AWS and in local mode's
deploy, so both name the prefix the same way.

Lifecycle (docs/aws.md): Create and Update upload the bundle (objects already there with the same
size are skipped); when an update gives the code a new prefix, CloudFormation's clean-up Delete of
the old prefix keeps that one (executions started before the update still read it) and removes
every older one; the Delete of the stack removes every prefix under `code/`, all versions.
"""

from __future__ import annotations

import hashlib
import re
from collections.abc import Iterable, Mapping
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from botocore.exceptions import ClientError

ROOT = "code"
#: The folder, inside the function's package, that `make build-JobCodeFunction` fills.
BUNDLE_DIR = "bundle"
_PHYSICAL_ID = re.compile(rf"^s3://(?P<bucket>[^/]+)/(?P<prefix>{ROOT}/[0-9a-f]{{16}})$")
_MISSING_BUCKET = frozenset({"NoSuchBucket"})
_IGNORED = ("__pycache__", ".pyc")


class CodeBucketError(Exception):
    """The bucket cannot be written: it does not exist or denies access (the stack's fault)."""


class MissingBundle(Exception):
    """The function's package holds no job code bundle (a build without `sam build`)."""


@dataclass(frozen=True)
class Published:
    bucket: str
    prefix: str
    uploaded: list[str] = field(default_factory=list)
    skipped: list[str] = field(default_factory=list)

    @property
    def physical_id(self) -> str:
        return physical_id(self.bucket, self.prefix)

    @property
    def data(self) -> dict[str, str]:
        """What the template reads with `!GetAtt JobCode.<key>`."""
        return {
            "CodePrefix": self.prefix,
            "CodeUri": f"s3://{self.bucket}/{self.prefix}",
            "CodeHash": self.prefix.rsplit("/", 1)[-1],
        }


def read_bundle(folder: Path) -> dict[str, bytes]:
    """Key under the code prefix -> content, for every file under `folder`."""
    if not folder.is_dir():
        raise MissingBundle(
            f"no job code bundle at {folder}: build the function with `sam build` "
            "(its Makefile target writes the bundle)"
        )
    files = {
        path.relative_to(folder).as_posix(): path.read_bytes()
        for path in sorted(folder.rglob("*"))
        if path.is_file()
        and not any(part in path.relative_to(folder).as_posix() for part in _IGNORED)
    }
    if not files:
        raise MissingBundle(f"the job code bundle at {folder} is empty")
    return files


def content_hash(files: Mapping[str, bytes]) -> str:
    """The first 16 hex digits of a SHA-256 over every key and content, in key order."""
    hasher = hashlib.sha256()
    for key in sorted(files):
        hasher.update(key.encode() + b"\0" + files[key] + b"\0")
    return hasher.hexdigest()[:16]


def code_prefix(files: Mapping[str, bytes]) -> str:
    return f"{ROOT}/{content_hash(files)}"


def physical_id(bucket: str, prefix: str) -> str:
    return f"s3://{bucket}/{prefix}"


def parse_physical_id(value: str | None) -> tuple[str, str] | None:
    """(bucket, prefix) of an id `physical_id` made; None for anything else."""
    match = _PHYSICAL_ID.match(value or "")
    return None if match is None else (match["bucket"], match["prefix"])


def _bucket_error(error: ClientError, bucket: str) -> CodeBucketError:
    """S3's code, and its message when it has one (an AccessDenied names the role, the action
    and the resource: what the stack's events then show)."""
    answer = error.response.get("Error", {})
    code, message = answer.get("Code", ""), answer.get("Message", "")
    detail = f"{code}: {message}" if message and message != code else code
    return CodeBucketError(f"cannot write the job code to bucket {bucket!r}: S3 answered {detail}")


def _sizes(s3: Any, bucket: str, prefix: str) -> dict[str, int]:
    found: dict[str, int] = {}
    for page in s3.get_paginator("list_objects_v2").paginate(Bucket=bucket, Prefix=prefix):
        for item in page.get("Contents", []):
            found[item["Key"]] = int(item["Size"])
    return found


def publish(s3: Any, bucket: str, files: Mapping[str, bytes]) -> Published:
    """Uploads `files` to `s3://bucket/code/<hash>/`; objects already there are skipped.

    The prefix names the content, so an object of the same size under it is the same file; one
    of another size (an interrupted upload) is written again.
    """
    prefix = code_prefix(files)
    try:
        have = _sizes(s3, bucket, f"{prefix}/")
        uploaded, skipped = [], []
        for name in sorted(files):
            key = f"{prefix}/{name}"
            if have.get(key) == len(files[name]):
                skipped.append(key)
                continue
            s3.put_object(Bucket=bucket, Key=key, Body=files[name])
            uploaded.append(key)
    except ClientError as error:
        raise _bucket_error(error, bucket) from error
    return Published(bucket=bucket, prefix=prefix, uploaded=uploaded, skipped=skipped)


def prefixes(s3: Any, bucket: str) -> list[str]:
    """Every `code/<...>` prefix in the bucket, object versions and delete markers included."""
    found: set[str] = set()
    paginator = s3.get_paginator("list_object_versions")
    for page in paginator.paginate(Bucket=bucket, Prefix=f"{ROOT}/", Delimiter="/"):
        for common in page.get("CommonPrefixes", []):
            found.add(common["Prefix"].rstrip("/"))
    return sorted(found)


def remove(s3: Any, bucket: str, prefix: str) -> int:
    """Deletes every version and delete marker under `prefix/`; returns how many."""
    removed = 0
    paginator = s3.get_paginator("list_object_versions")
    for page in paginator.paginate(Bucket=bucket, Prefix=f"{prefix}/"):
        items = [
            {"Key": item["Key"], "VersionId": item["VersionId"]}
            for kind in ("Versions", "DeleteMarkers")
            for item in page.get(kind, [])
        ]
        for start in range(0, len(items), 1000):  # DeleteObjects takes 1,000 keys at most
            batch = items[start : start + 1000]
            s3.delete_objects(Bucket=bucket, Delete={"Objects": batch, "Quiet": True})
            removed += len(batch)
    return removed


def prune(s3: Any, bucket: str, keep: Iterable[str]) -> list[str]:
    """Removes every code prefix not in `keep`; returns the removed ones. A missing bucket has
    nothing to remove."""
    kept = set(keep)
    try:
        stale = [prefix for prefix in prefixes(s3, bucket) if prefix not in kept]
        for prefix in stale:
            remove(s3, bucket, prefix)
    except ClientError as error:
        if error.response.get("Error", {}).get("Code") in _MISSING_BUCKET:
            return []
        raise _bucket_error(error, bucket) from error
    return stale


def delete(s3: Any, deleted_id: str | None, current_prefix: str) -> list[str]:
    """CloudFormation's Delete of the resource whose physical id is `deleted_id`.

    `current_prefix` is the prefix of the bundle this function ships. When it is the deleted one,
    the stack (or the resource) is going away: every code prefix goes. Otherwise an update gave
    the code a new prefix and this is the clean-up of the old one: it stays for the executions
    that started on it, and every older prefix goes. An id this module did not make is left alone.
    """
    parsed = parse_physical_id(deleted_id)
    if parsed is None:
        return []
    bucket, prefix = parsed
    keep = set() if prefix == current_prefix else {prefix, current_prefix}
    return prune(s3, bucket, keep)
