from __future__ import annotations

import hashlib
from pathlib import Path

import pytest

from sfn_mlops.local.errors import AwsError
from sfn_mlops.local.objectstore import ObjectStore, parse_s3_uri


@pytest.fixture
def store(tmp_path: Path) -> ObjectStore:
    objects = ObjectStore(tmp_path / "objects")
    objects.create_bucket("data-bucket")
    return objects


def test_put_get_list_delete(store: ObjectStore) -> None:
    etag = store.put_bytes("data-bucket", "runs/a/x.csv", b"1,2\n")
    assert etag == '"{}"'.format(hashlib.md5(b"1,2\n").hexdigest())
    store.put_bytes("data-bucket", "runs/b/y.csv", b"3")
    assert [o.key for o in store.list("data-bucket", "runs/")] == ["runs/a/x.csv", "runs/b/y.csv"]
    assert [o.key for o in store.list("data-bucket", "runs/a")] == ["runs/a/x.csv"]
    assert store.get_bytes("data-bucket", "runs/a/x.csv") == b"1,2\n"
    store.delete("data-bucket", "runs/a/x.csv")
    assert not (store.root / "data-bucket" / "runs" / "a").exists()


@pytest.mark.parametrize("key", ["../escape", "/abs", "a//b", "a/./b", ""])
def test_keys_cannot_escape_the_bucket(store: ObjectStore, key: str) -> None:
    with pytest.raises(AwsError) as err:
        store.put_bytes("data-bucket", key, b"x")
    assert err.value.code == "InvalidArgument"


def test_missing_bucket_and_key_use_aws_codes(store: ObjectStore) -> None:
    with pytest.raises(AwsError) as err:
        store.get_bytes("no-such-bucket", "k")
    assert err.value.code == "NoSuchBucket"
    with pytest.raises(AwsError) as err:
        store.get_bytes("data-bucket", "k")
    assert (err.value.code, err.value.status) == ("NoSuchKey", 404)
    with pytest.raises(AwsError) as err:
        store.create_bucket("Bad_Name")
    assert err.value.code == "InvalidBucketName"


def test_a_failed_write_leaves_the_old_object(store: ObjectStore) -> None:
    store.put_bytes("data-bucket", "k", b"old")

    class Broken:
        def read(self, size: int) -> bytes:
            raise OSError("disk gone")

    with pytest.raises(OSError):
        store.put_stream("data-bucket", "k", Broken())  # type: ignore[arg-type]
    assert store.get_bytes("data-bucket", "k") == b"old"
    assert [o.key for o in store.list("data-bucket")] == ["k"]


def test_prefix_round_trip(store: ObjectStore, tmp_path: Path) -> None:
    source = tmp_path / "out"
    (source / "sub").mkdir(parents=True)
    (source / "a.txt").write_text("a")
    (source / "sub" / "b.txt").write_text("b")
    assert store.upload_dir(source, "s3://data-bucket/job/output") == 2
    dest = tmp_path / "in"
    assert store.download_prefix("s3://data-bucket/job/output/", dest) == 2
    assert (dest / "sub" / "b.txt").read_text() == "b"
    single = tmp_path / "single"
    store.download_prefix("s3://data-bucket/job/output/a.txt", single)
    assert (single / "a.txt").read_text() == "a"


def test_parse_s3_uri() -> None:
    assert parse_s3_uri("s3://b/k/e/y") == ("b", "k/e/y")
    with pytest.raises(ValueError, match="not an S3 URI"):
        parse_s3_uri("/local/path")
