"""Amazon S3 over the workspace object store: what boto3's client and transfer manager call."""

from __future__ import annotations

import hashlib
import io
import shutil
import uuid
from functools import lru_cache
from pathlib import Path
from typing import Any, BinaryIO

from botocore.response import StreamingBody

from sfn_mlops.local.errors import AwsError
from sfn_mlops.local.shapes import timestamp


def _etag(data: bytes) -> str:
    return f'"{hashlib.md5(data, usedforsecurity=False).hexdigest()}"'


@lru_cache(maxsize=4096)
def _file_etag(path: Path, size: int, modified: float) -> str:
    """A stored object's ETag, computed once per version of its file (size and time key it)."""
    digest = hashlib.md5(usedforsecurity=False)
    with open(path, "rb") as stream:
        for block in iter(lambda: stream.read(1 << 20), b""):
            digest.update(block)
    return f'"{digest.hexdigest()}"'


def _byte_range(header: str, size: int) -> tuple[int, int]:
    """Parse an HTTP ``Range: bytes=a-b`` header (the forms s3transfer sends)."""
    unit, _, spec = header.partition("=")
    first, _, last = spec.partition("-")
    if unit != "bytes" or "," in spec or not (first or last):
        raise AwsError("InvalidRange", f"Unsupported Range {header!r}; use bytes=start-end", 416)
    if not first:
        start, end = max(size - int(last), 0), size - 1
    else:
        start, end = int(first), min(int(last), size - 1) if last else size - 1
    if start >= size or start > end:
        raise AwsError("InvalidRange", f"The requested range {header!r} is not satisfiable", 416)
    return start, end


def _body_stream(body: Any) -> BinaryIO:
    if body is None:
        return io.BytesIO(b"")
    if isinstance(body, (bytes, bytearray)):
        return io.BytesIO(bytes(body))
    if isinstance(body, str):
        return io.BytesIO(body.encode())
    return body  # type: ignore[no-any-return]


class S3:
    def __init__(self, cloud: Any) -> None:
        self.cloud = cloud
        self.store = cloud.objects
        self.uploads_dir = cloud.root / "multipart"

    # buckets -----------------------------------------------------------------
    def create_bucket(self, params: dict[str, Any]) -> dict[str, Any]:
        bucket = params["Bucket"]
        if not self.store.create_bucket(bucket):
            raise AwsError(
                "BucketAlreadyOwnedByYou",
                "Your previous request to create the named bucket succeeded and you already own "
                "it.",
                409,
            )
        return {"Location": f"/{bucket}"}

    def head_bucket(self, params: dict[str, Any]) -> dict[str, Any]:
        self.store.require_bucket(params["Bucket"])
        return {"BucketRegion": self.cloud.region}

    def list_buckets(self, params: dict[str, Any]) -> dict[str, Any]:
        return {
            "Buckets": [
                {"Name": name, "CreationDate": timestamp(created)}
                for name, created in self.store.list_buckets()
            ],
            "Owner": {"ID": self.cloud.account},
        }

    def delete_bucket(self, params: dict[str, Any]) -> dict[str, Any]:
        self.store.delete_bucket(params["Bucket"])
        return {}

    # objects -----------------------------------------------------------------
    def put_object(self, params: dict[str, Any]) -> dict[str, Any]:
        etag = self.store.put_stream(
            params["Bucket"], params["Key"], _body_stream(params.get("Body"))
        )
        return {"ETag": etag}

    def head_object(self, params: dict[str, Any]) -> dict[str, Any]:
        info = self.store.head(params["Bucket"], params["Key"])
        return {
            "ContentLength": info.size,
            "LastModified": timestamp(info.modified),
            "ETag": _file_etag(info.path, info.size, info.modified),
            "ContentType": "binary/octet-stream",
        }

    def get_object(self, params: dict[str, Any]) -> dict[str, Any]:
        info = self.store.head(params["Bucket"], params["Key"])
        data = info.path.read_bytes()
        result: dict[str, Any] = {
            "LastModified": timestamp(info.modified),
            "ETag": _etag(data),
            "ContentType": "binary/octet-stream",
            "AcceptRanges": "bytes",
        }
        if "Range" in params:
            start, end = _byte_range(params["Range"], len(data))
            result["ContentRange"] = f"bytes {start}-{end}/{len(data)}"
            data = data[start : end + 1]
        result["Body"] = StreamingBody(io.BytesIO(data), len(data))
        result["ContentLength"] = len(data)
        return result

    def delete_object(self, params: dict[str, Any]) -> dict[str, Any]:
        self.store.delete(params["Bucket"], params["Key"])
        return {}

    def copy_object(self, params: dict[str, Any]) -> dict[str, Any]:
        source = params["CopySource"]
        if isinstance(source, str):
            src_bucket, _, src_key = source.lstrip("/").partition("/")
        else:
            src_bucket, src_key = source["Bucket"], source["Key"]
        info = self.store.head(src_bucket, src_key)
        etag = self.store.put_file(params["Bucket"], params["Key"], info.path)
        return {"CopyObjectResult": {"ETag": etag, "LastModified": timestamp(info.modified)}}

    def list_objects_v2(self, params: dict[str, Any]) -> dict[str, Any]:
        prefix = params.get("Prefix", "")
        delimiter = params.get("Delimiter")
        max_keys = params.get("MaxKeys", 1000)
        after = params.get("ContinuationToken") or params.get("StartAfter") or ""
        contents: list[dict[str, Any]] = []
        prefixes: list[str] = []
        truncated = False
        for info in self.store.list(params["Bucket"], prefix):
            if info.key <= after:
                continue
            if delimiter and delimiter in info.key[len(prefix) :]:
                common = prefix + info.key[len(prefix) :].split(delimiter)[0] + delimiter
                if common not in prefixes:
                    prefixes.append(common)
                continue
            if len(contents) >= max_keys:
                truncated = True
                break
            contents.append(
                {
                    "Key": info.key,
                    "Size": info.size,
                    "LastModified": timestamp(info.modified),
                    "ETag": _file_etag(info.path, info.size, info.modified),
                    "StorageClass": "STANDARD",
                }
            )
        result: dict[str, Any] = {
            "Name": params["Bucket"],
            "Prefix": prefix,
            "KeyCount": len(contents) + len(prefixes),
            "MaxKeys": max_keys,
            "IsTruncated": truncated,
            "Contents": contents,
        }
        if prefixes:
            result["CommonPrefixes"] = [{"Prefix": p} for p in prefixes]
        if truncated:
            result["NextContinuationToken"] = contents[-1]["Key"]
        return result

    # multipart uploads (boto3's upload_file uses them above 8 MB) --------------
    def create_multipart_upload(self, params: dict[str, Any]) -> dict[str, Any]:
        self.store.object_path(params["Bucket"], params["Key"])  # validates bucket and key
        upload_id = uuid.uuid4().hex
        (self.uploads_dir / upload_id).mkdir(parents=True)
        return {"Bucket": params["Bucket"], "Key": params["Key"], "UploadId": upload_id}

    def _upload_dir(self, upload_id: str) -> Any:
        path = self.uploads_dir / upload_id
        if not upload_id.isalnum() or not path.is_dir():
            raise AwsError("NoSuchUpload", f"The specified upload does not exist: {upload_id}", 404)
        return path

    def upload_part(self, params: dict[str, Any]) -> dict[str, Any]:
        part = self._upload_dir(params["UploadId"]) / f"{params['PartNumber']:05d}"
        data = _body_stream(params.get("Body")).read()
        part.write_bytes(data)
        return {"ETag": _etag(data)}

    def complete_multipart_upload(self, params: dict[str, Any]) -> dict[str, Any]:
        folder = self._upload_dir(params["UploadId"])
        numbers = [p["PartNumber"] for p in params.get("MultipartUpload", {}).get("Parts", [])]
        parts = [folder / f"{n:05d}" for n in sorted(numbers)]
        missing = [p.name for p in parts if not p.is_file()]
        if missing:
            raise AwsError("InvalidPart", f"Parts not uploaded: {', '.join(missing)}")
        joined = folder / "joined"
        with open(joined, "wb") as out:
            for part in parts:
                with open(part, "rb") as src:
                    shutil.copyfileobj(src, out)
        etag = self.store.put_file(params["Bucket"], params["Key"], joined)
        shutil.rmtree(folder)
        return {"Bucket": params["Bucket"], "Key": params["Key"], "ETag": etag}

    def abort_multipart_upload(self, params: dict[str, Any]) -> dict[str, Any]:
        shutil.rmtree(self._upload_dir(params["UploadId"]))
        return {}
