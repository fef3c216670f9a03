"""Bundle the job code in containers/ the way SageMaker jobs receive it.

Every job folder gets the shared helpers of containers/common beside its script. Script-mode
jobs (training, inference) also get a ``sourcedir.tar.gz``. The prefix is a hash of the content,
so a changed script never reuses a stale upload and an unchanged one is not uploaded again.
"""

from __future__ import annotations

import gzip
import hashlib
import io
import tarfile
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from typing import Any

COMMON = "common"
SCRIPT_MODE_JOBS = ("training", "inference")
_IGNORED = ("__pycache__", ".pyc", ".pytest_cache")


@dataclass(frozen=True)
class Bundle:
    files: dict[str, bytes]  # key under the code prefix -> content

    @property
    def digest(self) -> str:
        hasher = hashlib.sha256()
        for key in sorted(self.files):
            hasher.update(key.encode() + b"\0" + self.files[key] + b"\0")
        return hasher.hexdigest()[:16]


def _sources(folder: Path) -> dict[str, bytes]:
    return {
        p.relative_to(folder).as_posix(): p.read_bytes()
        for p in sorted(folder.rglob("*"))
        if p.is_file() and not any(part in str(p) for part in _IGNORED)
    }


def _tarball(files: dict[str, bytes]) -> bytes:
    """A reproducible tar.gz: fixed order, times and owners, so its hash is stable."""
    buffer = io.BytesIO()
    with tarfile.open(fileobj=buffer, mode="w") as tar:
        for name in sorted(files):
            info = tarfile.TarInfo(name)
            info.size = len(files[name])
            info.mode = 0o644
            tar.addfile(info, io.BytesIO(files[name]))
    return gzip.compress(buffer.getvalue(), compresslevel=6, mtime=0)


def build_bundle(containers: Path) -> Bundle:
    if not containers.is_dir():
        raise FileNotFoundError(f"job code folder {containers} does not exist")
    common = _sources(containers / COMMON) if (containers / COMMON).is_dir() else {}
    files: dict[str, bytes] = {}
    for job in sorted(p for p in containers.iterdir() if p.is_dir() and p.name != COMMON):
        job_files = {**common, **_sources(job)}
        for name, content in job_files.items():
            files[f"{job.name}/{name}"] = content
        if job.name in SCRIPT_MODE_JOBS:
            files[f"{job.name}/sourcedir.tar.gz"] = _tarball(job_files)
    return Bundle(files)


@dataclass(frozen=True)
class UploadResult:
    uploaded: list[str]
    skipped: list[str]


def existing_objects(s3: Any, bucket: str, prefix: str) -> dict[str, int]:
    """Key -> size of every object under ``prefix``."""
    found: dict[str, int] = {}
    for page in s3.get_paginator("list_objects_v2").paginate(Bucket=bucket, Prefix=prefix):
        for item in page.get("Contents", []):
            found[item["Key"]] = int(item["Size"])
    return found


def upload_bundle(
    s3: Any, bundle: Bundle, bucket: str, code_prefix: str, echo: Callable[[str], None] = print
) -> UploadResult:
    """Uploads each file of the bundle to ``s3://bucket/code_prefix/``.

    The prefix is the content hash, so an object already there with the same size is the same
    file and is skipped; one with another size (an interrupted or foreign upload) is replaced.
    """
    have = existing_objects(s3, bucket, f"{code_prefix}/")
    uploaded, skipped = [], []
    for name in sorted(bundle.files):
        key = f"{code_prefix}/{name}"
        content = bundle.files[name]
        if have.get(key) == len(content):
            skipped.append(key)
            continue
        s3.put_object(Bucket=bucket, Key=key, Body=content)
        uploaded.append(key)
    echo(
        f"Job code: {len(uploaded)} file(s) uploaded, {len(skipped)} already there "
        f"(s3://{bucket}/{code_prefix}/)"
    )
    return UploadResult(uploaded=uploaded, skipped=skipped)
