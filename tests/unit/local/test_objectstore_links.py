"""Job inputs share the object's file, job outputs are moved in: one copy of each artifact.

Safe because an object's file is never written in place (temp file + rename): these tests pin
that a later write or delete of the key leaves a linked input as it was.
"""

from __future__ import annotations

import errno
import os
from pathlib import Path

import pytest

from sfn_mlops.local import objectstore
from sfn_mlops.local.objectstore import ObjectStore, link_or_copy

BUCKET = "data-bucket"


@pytest.fixture
def store(tmp_path: Path) -> ObjectStore:
    objects = ObjectStore(tmp_path / "objects")
    objects.create_bucket(BUCKET)
    return objects


@pytest.fixture
def no_reflink(monkeypatch: pytest.MonkeyPatch) -> None:
    """As on ext4 and tmpfs: no copy-on-write clones, so inputs are hard links."""
    monkeypatch.setattr(objectstore, "_reflink", lambda source, target: False)


def _object(store: ObjectStore, key: str) -> Path:
    return store.head(BUCKET, key).path


@pytest.mark.usefixtures("no_reflink")
def test_download_prefix_hard_links_each_object(store: ObjectStore, tmp_path: Path) -> None:
    store.put_bytes(BUCKET, "runs/r/train/train.csv", b"1,2\n")
    store.put_bytes(BUCKET, "runs/r/train/part/more.csv", b"3,4\n")

    assert store.download_prefix(f"s3://{BUCKET}/runs/r/train", tmp_path / "in") == 2

    linked = tmp_path / "in" / "train.csv"
    assert linked.stat().st_ino == _object(store, "runs/r/train/train.csv").stat().st_ino
    assert linked.stat().st_nlink == 2
    assert (tmp_path / "in" / "part" / "more.csv").read_bytes() == b"3,4\n"


@pytest.mark.usefixtures("no_reflink")
def test_a_later_write_of_the_key_leaves_the_linked_input_as_it_was(
    store: ObjectStore, tmp_path: Path
) -> None:
    store.put_bytes(BUCKET, "data/x.csv", b"old")
    store.download_prefix(f"s3://{BUCKET}/data/x.csv", tmp_path / "in")
    linked = tmp_path / "in" / "x.csv"

    store.put_bytes(BUCKET, "data/x.csv", b"new, and longer")

    assert linked.read_bytes() == b"old"
    assert store.get_bytes(BUCKET, "data/x.csv") == b"new, and longer"
    assert linked.stat().st_ino != _object(store, "data/x.csv").stat().st_ino
    assert linked.stat().st_nlink == 1


@pytest.mark.usefixtures("no_reflink")
def test_deleting_the_object_leaves_the_linked_input(store: ObjectStore, tmp_path: Path) -> None:
    store.put_bytes(BUCKET, "data/x.csv", b"kept")
    store.download_prefix(f"s3://{BUCKET}/data/", tmp_path / "in")

    store.delete(BUCKET, "data/x.csv")

    assert (tmp_path / "in" / "x.csv").read_bytes() == b"kept"


def test_link_or_copy_copies_across_file_systems(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch, no_reflink: None
) -> None:
    source = tmp_path / "source"
    source.write_bytes(b"bytes")

    def cross_device(src: object, dst: object) -> None:
        raise OSError(errno.EXDEV, "Invalid cross-device link")

    monkeypatch.setattr(os, "link", cross_device)

    assert link_or_copy(source, tmp_path / "target") == "copy"
    assert (tmp_path / "target").read_bytes() == b"bytes"
    assert (tmp_path / "target").stat().st_ino != source.stat().st_ino


def test_link_or_copy_replaces_a_file_already_there(tmp_path: Path, no_reflink: None) -> None:
    source, target = tmp_path / "source", tmp_path / "target"
    source.write_bytes(b"new")
    target.write_bytes(b"old")

    assert link_or_copy(source, target) == "link"
    assert target.read_bytes() == b"new"


def test_link_or_copy_reflinks_where_the_file_system_clones(tmp_path: Path) -> None:
    """On ext4/tmpfs FICLONE fails and the device is remembered; on btrfs/XFS it clones."""
    source = tmp_path / "source"
    source.write_bytes(b"bytes")

    how = link_or_copy(source, tmp_path / "target")

    assert (tmp_path / "target").read_bytes() == b"bytes"
    if how == "reflink":
        assert (tmp_path / "target").stat().st_ino != source.stat().st_ino
    else:
        assert how == "link"
        assert source.stat().st_dev in objectstore._NO_REFLINK


def test_upload_dir_move_renames_the_files_in(store: ObjectStore, tmp_path: Path) -> None:
    out = tmp_path / "out"
    (out / "nested").mkdir(parents=True)
    (out / "a.csv").write_bytes(b"a")
    (out / "nested" / "b.csv").write_bytes(b"b")
    inode = (out / "a.csv").stat().st_ino

    assert store.upload_dir(out, f"s3://{BUCKET}/runs/r/out", move=True) == 2

    assert _object(store, "runs/r/out/a.csv").stat().st_ino == inode
    assert store.get_bytes(BUCKET, "runs/r/out/nested/b.csv") == b"b"
    assert not (out / "a.csv").exists()


def test_upload_dir_copies_symlinks_even_when_moving(store: ObjectStore, tmp_path: Path) -> None:
    outside = tmp_path / "outside.csv"
    outside.write_bytes(b"elsewhere")
    out = tmp_path / "out"
    out.mkdir()
    (out / "link.csv").symlink_to(outside)

    store.upload_dir(out, f"s3://{BUCKET}/o", move=True)

    assert store.get_bytes(BUCKET, "o/link.csv") == b"elsewhere"
    assert not _object(store, "o/link.csv").is_symlink()
    assert outside.read_bytes() == b"elsewhere"


def test_move_file_across_file_systems_copies_then_removes(
    store: ObjectStore, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    source = tmp_path / "model.tar.gz"
    source.write_bytes(b"archive")

    def cross_device(src: object, dst: object) -> None:
        raise OSError(errno.EXDEV, "Invalid cross-device link")

    monkeypatch.setattr(os, "replace", cross_device)
    monkeypatch.setattr(store, "put_file", lambda b, k, p: _put(store, b, k, p))

    store.move_file(BUCKET, "m/model.tar.gz", source)

    assert _object(store, "m/model.tar.gz").read_bytes() == b"archive"
    assert not source.exists()


def _put(store: ObjectStore, bucket: str, key: str, path: Path) -> str:
    """put_file without os.replace (patched away above): write the object's file directly."""
    target = store.object_path(bucket, key)
    target.parent.mkdir(parents=True, exist_ok=True)
    target.write_bytes(path.read_bytes())
    return ""
