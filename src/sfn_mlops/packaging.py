"""Bundle the job code in containers/ the way SageMaker jobs receive it.

Every job folder gets the shared helpers of containers/common beside its script. Script-mode
jobs (training, inference) also get a ``sourcedir.tar.gz``. The bundle travels as the package of
the job code custom resource's Lambda (lambdas/job_code), which copies it to ``code/<hash>/`` in
the artifact bucket; local mode's deploy runs that same copy against the local S3.
"""

from __future__ import annotations

import gzip
import io
import sys
import tarfile
from dataclasses import dataclass
from pathlib import Path

COMMON = "common"
SCRIPT_MODE_JOBS = ("training", "inference")
_IGNORED = ("__pycache__", ".pyc", ".pytest_cache")


@dataclass(frozen=True)
class Bundle:
    files: dict[str, bytes]  # key under the code prefix -> content


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


def write_bundle(bundle: Bundle, folder: Path) -> None:
    """Writes each file of the bundle under `folder` (the job code function's `bundle/`)."""
    for name, content in bundle.files.items():
        path = folder / name
        path.parent.mkdir(parents=True, exist_ok=True)
        path.write_bytes(content)


def main(argv: list[str] | None = None) -> int:
    """`python -m sfn_mlops.packaging CONTAINERS OUT`: the bundle of CONTAINERS, written to OUT.

    Standard library only, so `sam build` runs it with any python3 (lambdas/job_code/Makefile).
    """
    args = sys.argv[1:] if argv is None else argv
    if len(args) != 2:
        print("usage: python -m sfn_mlops.packaging CONTAINERS OUT", file=sys.stderr)
        return 2
    bundle = build_bundle(Path(args[0]))
    write_bundle(bundle, Path(args[1]))
    print(f"job code bundle: {len(bundle.files)} files in {args[1]}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
