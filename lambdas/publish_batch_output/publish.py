"""A batch's predictions reach their destination only when the transform job has succeeded.

The transform job writes under the run's own prefix; this copies each object to the
destination prefix (server-side), so a failed job leaves nothing half-written there. A
destination holding ``{execution}`` gets the execution's name there: a scheduled batch, whose
input never changes, writes each run under a prefix of its own.
"""

from __future__ import annotations

from typing import Any

EXECUTION_PLACEHOLDER = "{execution}"


def parse_s3_uri(uri: str) -> tuple[str, str]:
    scheme, _, rest = uri.partition("://")
    bucket, _, prefix = rest.partition("/")
    if scheme != "s3" or not bucket:
        raise ValueError(f"expected an s3://bucket/prefix URI, got {uri!r}")
    return bucket, prefix


def publish(s3: Any, source: str, destination: str, execution: str = "") -> dict[str, Any]:
    """Copy every object under ``source`` to the same relative key under ``destination``."""
    destination = destination.replace(EXECUTION_PLACEHOLDER, execution)
    source_bucket, source_prefix = parse_s3_uri(source.rstrip("/") + "/")
    bucket, prefix = parse_s3_uri(destination)
    prefix = prefix.rstrip("/") + "/" if prefix else ""
    keys = []
    for page in s3.get_paginator("list_objects_v2").paginate(
        Bucket=source_bucket, Prefix=source_prefix
    ):
        for item in page.get("Contents", []):
            key = prefix + item["Key"][len(source_prefix) :]
            s3.copy_object(
                Bucket=bucket, Key=key, CopySource={"Bucket": source_bucket, "Key": item["Key"]}
            )
            keys.append(f"s3://{bucket}/{key}")
    return {"objects": len(keys), "outputs": keys[:100]}
