"""S3 buckets and keys as files under the workspace.

Writes are atomic (temp file + rename) so a crash never leaves half an object, and keys are
checked so that no key can escape its bucket's folder. An object's file is never written in
place: a new write of its key is a new file renamed over the old name. So a job's input can
be a hard link to the object (no copy): a later write of the key replaces the object's name
only, and the job's link keeps the bytes it had.
"""

from __future__ import annotations

import errno
import fcntl
import hashlib
import os
import re
import shutil
import tempfile
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import BinaryIO

from sfn_mlops.local.errors import AwsError

_BUCKET_NAME = re.compile(r"^[a-z0-9][a-z0-9.-]{1,61}[a-z0-9]$")
_COPY_CHUNK = 1 << 20
_FICLONE = 0x40049409  # Linux ioctl: share the source's blocks copy-on-write (btrfs, XFS)
#: Errors that mean "this file system cannot do it here": fall back to the next way.
_CANNOT = frozenset(
    {errno.EXDEV, errno.EPERM, errno.EOPNOTSUPP, errno.ENOTTY, errno.EINVAL, errno.EMLINK}
)
_NO_REFLINK: set[int] = set()  # devices where FICLONE failed once: not tried again


@dataclass(frozen=True)
class ObjectInfo:
    key: str
    size: int
    modified: float
    path: Path


def parse_s3_uri(uri: str) -> tuple[str, str]:
    """Split ``s3://bucket/key`` into its bucket and key."""
    if not uri.startswith("s3://"):
        raise ValueError(f"{uri!r} is not an S3 URI; expected s3://bucket/key")
    bucket, _, key = uri[len("s3://") :].partition("/")
    if not bucket:
        raise ValueError(f"{uri!r} has no bucket; expected s3://bucket/key")
    return bucket, key


def check_key(key: str) -> None:
    """Reject keys that cannot map to a file inside the bucket folder."""
    parts = key.split("/")
    if not key or key.startswith("/") or any(p in ("", ".", "..") for p in parts):
        raise AwsError(
            "InvalidArgument",
            f"Object key {key!r} is not supported locally: keys must be relative, "
            "with no empty, '.' or '..' segments",
        )


def _reflink(source: Path, target: Path) -> bool:
    """A copy-on-write clone of ``source`` at ``target``; False where the file system has none."""
    device = source.stat().st_dev
    if device in _NO_REFLINK:
        return False
    try:
        with open(source, "rb") as src, open(target, "wb") as dst:
            fcntl.ioctl(dst.fileno(), _FICLONE, src.fileno())
    except OSError as err:
        target.unlink(missing_ok=True)
        if err.errno not in _CANNOT:
            raise
        _NO_REFLINK.add(device)
        return False
    return True


def link_or_copy(source: Path, target: Path) -> str:
    """Put ``source``'s bytes at ``target`` without a second copy where the file system allows.

    A copy-on-write clone first (the target's own file that shares the blocks), then a hard
    link (the same file under a second name), then a plain copy (another file system). Which
    one it was is returned: "reflink", "link" or "copy".
    """
    target.unlink(missing_ok=True)
    if _reflink(source, target):
        return "reflink"
    try:
        os.link(source, target)
    except OSError as err:
        if err.errno not in _CANNOT:
            raise
    else:
        return "link"
    shutil.copyfile(source, target)
    return "copy"


class ObjectStore:
    """One folder per bucket; one file per object."""

    def __init__(self, root: Path) -> None:
        self.root = root

    # buckets -----------------------------------------------------------------
    def bucket_dir(self, bucket: str) -> Path:
        if not _BUCKET_NAME.match(bucket) or ".." in bucket:
            raise AwsError("InvalidBucketName", f"The specified bucket is not valid: {bucket!r}")
        return self.root / bucket

    def create_bucket(self, bucket: str) -> bool:
        """Create the bucket; return False if it already existed."""
        path = self.bucket_dir(bucket)
        if path.is_dir():
            return False
        path.mkdir(parents=True)
        return True

    def require_bucket(self, bucket: str) -> Path:
        path = self.bucket_dir(bucket)
        if not path.is_dir():
            raise AwsError("NoSuchBucket", f"The specified bucket does not exist: {bucket}", 404)
        return path

    def list_buckets(self) -> list[tuple[str, float]]:
        if not self.root.is_dir():
            return []
        return sorted((p.name, p.stat().st_mtime) for p in self.root.iterdir() if p.is_dir())

    def delete_bucket(self, bucket: str) -> None:
        path = self.require_bucket(bucket)
        if any(path.iterdir()):
            raise AwsError(
                "BucketNotEmpty", f"The bucket you tried to delete is not empty: {bucket}", 409
            )
        path.rmdir()

    # objects -----------------------------------------------------------------
    def object_path(self, bucket: str, key: str) -> Path:
        check_key(key)
        return self.require_bucket(bucket) / key

    def put_stream(self, bucket: str, key: str, stream: BinaryIO) -> str:
        """Write atomically; return the ETag (MD5 of the content, as S3 gives for one-part puts)."""
        target = self._target(bucket, key)
        digest = hashlib.md5(usedforsecurity=False)
        fd, tmp = tempfile.mkstemp(dir=target.parent, prefix=".tmp-")
        try:
            with os.fdopen(fd, "wb") as out:
                while chunk := stream.read(_COPY_CHUNK):
                    digest.update(chunk)
                    out.write(chunk)
            os.replace(tmp, target)
        except BaseException:
            Path(tmp).unlink(missing_ok=True)
            raise
        return f'"{digest.hexdigest()}"'

    def put_bytes(self, bucket: str, key: str, data: bytes) -> str:
        import io

        return self.put_stream(bucket, key, io.BytesIO(data))

    def put_file(self, bucket: str, key: str, source: Path) -> str:
        with open(source, "rb") as stream:
            return self.put_stream(bucket, key, stream)

    def _target(self, bucket: str, key: str) -> Path:
        target = self.object_path(bucket, key)
        if target.is_dir():
            raise AwsError("InvalidArgument", f"Key {key!r} is a prefix of other keys in {bucket}")
        target.parent.mkdir(parents=True, exist_ok=True)
        return target

    def move_file(self, bucket: str, key: str, source: Path) -> None:
        """Make the finished file ``source`` the object (renamed in: no copy, still atomic).

        For files nothing writes any more (a job's outputs once its processes are gone);
        from another file system it is copied in, then removed.
        """
        target = self._target(bucket, key)
        try:
            os.replace(source, target)
        except OSError as err:
            if err.errno != errno.EXDEV:
                raise
            self.put_file(bucket, key, source)
            source.unlink()

    def head(self, bucket: str, key: str) -> ObjectInfo:
        path = self.object_path(bucket, key)
        if not path.is_file():
            raise AwsError("NoSuchKey", f"The specified key does not exist: {key}", 404)
        stat = path.stat()
        return ObjectInfo(key=key, size=stat.st_size, modified=stat.st_mtime, path=path)

    def get_bytes(self, bucket: str, key: str) -> bytes:
        return self.head(bucket, key).path.read_bytes()

    def delete(self, bucket: str, key: str) -> None:
        path = self.object_path(bucket, key)
        path.unlink(missing_ok=True)
        bucket_dir = self.bucket_dir(bucket)
        for parent in path.parents:
            if parent == bucket_dir or any(parent.iterdir()):
                break
            parent.rmdir()

    def list(self, bucket: str, prefix: str = "") -> Iterator[ObjectInfo]:
        """Objects whose key starts with ``prefix``, in key order (as S3 lists them)."""
        bucket_dir = self.require_bucket(bucket)
        start = bucket_dir / prefix.rpartition("/")[0] if "/" in prefix else bucket_dir
        if not start.is_dir():
            return
        found = []
        for dirpath, dirnames, filenames in os.walk(start):
            dirnames.sort()
            for name in filenames:
                if name.startswith(".tmp-"):
                    continue
                path = Path(dirpath) / name
                key = path.relative_to(bucket_dir).as_posix()
                if key.startswith(prefix):
                    stat = path.stat()
                    found.append(ObjectInfo(key, stat.st_size, stat.st_mtime, path))
        yield from sorted(found, key=lambda info: info.key)

    # folders <-> prefixes (what SageMaker jobs need) ---------------------------
    def download_prefix(self, uri: str, dest: Path) -> int:
        """Every object under ``uri`` into ``dest`` as SageMaker's S3Prefix input does.

        Each file is a clone or a hard link of the object where the file system allows
        (``link_or_copy``): the job's input costs no second copy.
        """
        bucket, prefix = parse_s3_uri(uri)
        dest.mkdir(parents=True, exist_ok=True)
        count = 0
        for info in self.list(bucket, prefix):
            # An exact key lands under its own name; otherwise the key less the prefix.
            relative = info.key[len(prefix) :].lstrip("/") or info.key.rpartition("/")[2]
            target = dest / relative
            target.parent.mkdir(parents=True, exist_ok=True)
            link_or_copy(info.path, target)
            count += 1
        if count == 0:
            raise AwsError("NoSuchKey", f"No objects found under {uri}", 404)
        return count

    def upload_dir(self, source: Path, uri: str, *, move: bool = False) -> int:
        """Upload every file below ``source`` under the prefix ``uri``.

        ``move``: regular files are renamed into the store (``move_file``), for a folder that
        is removed afterwards; symbolic links are always copied (their target may be anywhere).
        """
        bucket, prefix = parse_s3_uri(uri)
        prefix = prefix.rstrip("/")
        count = 0
        for path in sorted(p for p in source.rglob("*") if p.is_file()):
            key = f"{prefix}/{path.relative_to(source).as_posix()}" if prefix else path.name
            if move and not path.is_symlink():
                self.move_file(bucket, key, path)
            else:
                self.put_file(bucket, key, path)
            count += 1
        return count
