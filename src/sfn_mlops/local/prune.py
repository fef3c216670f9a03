"""``sfn-mlops prune``: remove old executions' artifacts so the workspace stays small.

What an execution leaves: its run prefix ``runs/<name>/`` and its staged data
``datasets/<name>/`` (in every bucket), its jobs (``jobs/<job>/``: the log, and the job
records), the SageMaker models it created, its HTML report (``reports/<name>.html``), and its
record and history events in the metadata store. Prune removes all of that for the executions
it selects: finished ones outside the ``keep`` newest and, with ``older_than``, stopped that long
ago. It never removes:

- a RUNNING execution, or one whose job still runs (a stopped execution's job may be ending);
- what a running execution or job names (any ``s3://`` URI in its record, e.g. its data);
- what another record points into (a model created outside the execution, another execution's
  input);
- the newest SUCCEEDED execution: its model is the one to deploy. There is no model registry
  yet; when there is, a registered model version's data is kept the same way.

It does not race a running execution: from reading the records to deleting them it holds the
metadata store's write lock (``BEGIN IMMEDIATE``), so no execution can start (StartExecution
writes its record first) and no job can change state meanwhile. Under the lock the folders are
only renamed into ``.prune-trash/`` (one rename each, on the same file system); they are deleted
after the lock is released, and a trash left by a crash is emptied by the next prune. Then
the database is compacted (VACUUM) so the records' bytes are freed too.
"""

from __future__ import annotations

import json
import re
import shutil
import sqlite3
import time
import uuid
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass, field
from pathlib import Path

from sfn_mlops.local.jobs import KIND_PROCESSING, KIND_TRAINING, KIND_TRANSFORM, TERMINAL
from sfn_mlops.local.services.sagemaker import KIND_MODEL

EXECUTIONS = "sfn/execution"  # the Step Functions provider's kind (services/stepfunctions.py)
RUN_PREFIXES = ("runs", "datasets")  # per execution: <prefix>/<execution name>/
TRASH = ".prune-trash"
#: The request member that names each resource an execution's tasks create.
TASK_RESOURCES = {
    "TrainingJobName": KIND_TRAINING,
    "ProcessingJobName": KIND_PROCESSING,
    "TransformJobName": KIND_TRANSFORM,
    "ModelName": KIND_MODEL,
}
_S3_URI = re.compile(r"s3://[^\s\"'\\,]+")
_DURATION = re.compile(r"^(\d+(?:\.\d+)?)([smhdw])$")
_UNIT_SECONDS = {"s": 1, "m": 60, "h": 3600, "d": 86400, "w": 604800}


class PruneError(ValueError):
    """The user's arguments cannot select what to prune."""


def parse_duration(text: str) -> float:
    """``7d``, ``12h``, ``30m``, ``90s``, ``2w`` as seconds."""
    match = _DURATION.match(text.strip())
    if match is None:
        raise PruneError(
            f"--older-than {text!r}: give a number and a unit, e.g. 7d, 12h, 30m, 90s or 2w"
        )
    return float(match.group(1)) * _UNIT_SECONDS[match.group(2)]


@dataclass
class Execution:
    """One execution's record and what it owns in the workspace."""

    arn: str
    name: str
    status: str
    started: float
    stopped: float | None
    resources: list[tuple[str, str]] = field(default_factory=list)  # (kind, name) it created
    folders: list[Path] = field(default_factory=list)  # what exists of its prefixes and jobs
    kept_because: str | None = None
    files: int = 0
    bytes: int = 0

    @property
    def jobs(self) -> list[str]:
        return [name for kind, name in self.resources if kind != KIND_MODEL]


@dataclass
class Result:
    """What prune removed (or would remove), and what it kept on purpose."""

    removed: list[Execution]
    kept: list[Execution]  # those kept for a reason (running, in use, the newest model)
    dry_run: bool
    bytes: int = 0  # freed (a file linked from what stays frees nothing)


# reading the metadata store ----------------------------------------------------------------
@contextmanager
def _transaction(db_path: Path, *, write: bool) -> Iterator[sqlite3.Connection]:
    """One consistent view of the store; with ``write`` its write lock, held to the end."""
    db = sqlite3.connect(db_path, timeout=30, isolation_level=None)
    try:
        db.execute("BEGIN IMMEDIATE" if write else "BEGIN")
        try:
            yield db
        except BaseException:
            db.execute("ROLLBACK")
            raise
        db.execute("COMMIT" if write else "ROLLBACK")
    finally:
        db.close()


def _executions(db: sqlite3.Connection) -> list[Execution]:
    """Every execution, newest first."""
    found = []
    for (raw,) in db.execute("SELECT doc FROM resources WHERE kind = ?", (EXECUTIONS,)):
        doc = json.loads(raw)
        found.append(
            Execution(
                arn=doc["executionArn"],
                name=doc["name"],
                status=doc["status"],
                started=float(doc["startDate"]),
                stopped=float(doc["stopDate"]) if doc.get("stopDate") else None,
            )
        )
    return sorted(found, key=lambda execution: execution.started, reverse=True)


def _task_resources(db: sqlite3.Connection, arn: str) -> list[tuple[str, str]]:
    """The jobs and models the execution's tasks asked for, from its history."""
    found: list[tuple[str, str]] = []
    query = "SELECT doc FROM events WHERE stream = ? ORDER BY seq"
    for (raw,) in db.execute(query, (arn,)):
        details = json.loads(raw).get("taskScheduledEventDetails")
        if not details:
            continue
        parameters = json.loads(details.get("parameters") or "{}")
        for member, kind in TASK_RESOURCES.items():
            name = parameters.get(member)
            if isinstance(name, str) and (kind, name) not in found:
                found.append((kind, name))
    return found


def _job_running(db: sqlite3.Connection, resources: list[tuple[str, str]]) -> bool:
    for kind, name in resources:
        if kind == KIND_MODEL:
            continue
        row = db.execute(
            "SELECT doc FROM resources WHERE kind = ? AND name = ?", (kind, name)
        ).fetchone()
        if row is not None and json.loads(row[0]).get("Status") not in TERMINAL:
            return True
    return False


@dataclass(frozen=True)
class _Reference:
    """The s3:// URIs one record names, and whether what it stands for is running."""

    owner: tuple[str, str]  # (kind, name)
    uris: frozenset[str]
    active: bool


def _references(db: sqlite3.Connection) -> list[_Reference]:
    """Every record that names an s3:// URI (read once per prune)."""
    found = []
    for kind, name, raw in db.execute("SELECT kind, name, doc FROM resources"):
        uris = frozenset(_S3_URI.findall(raw))
        if not uris:
            continue
        if kind == EXECUTIONS:
            active = json.loads(raw).get("status") == "RUNNING"
        elif kind in (KIND_TRAINING, KIND_PROCESSING):
            active = json.loads(raw).get("Status") not in TERMINAL
        else:
            active = False
        found.append(_Reference((kind, name), uris, active))
    return found


# choosing -----------------------------------------------------------------------------------
def _prefixes(objects: Path, name: str) -> list[str]:
    buckets = sorted(p.name for p in objects.iterdir() if p.is_dir()) if objects.is_dir() else []
    return [f"s3://{bucket}/{top}/{name}/" for bucket in buckets for top in RUN_PREFIXES]


def _under(uri: str, prefix: str) -> bool:
    """``uri`` names something under the folder-like ``prefix`` (``s3://b/runs/x/``)."""
    return uri.startswith(prefix) or uri == prefix.rstrip("/")


def _short(name: str) -> str:
    """An execution's name rather than its ARN."""
    return name.rpartition(":")[2] if name.startswith("arn:") else name


def _covers(uri: str, prefix: str) -> bool:
    """An input ``uri`` reads ``prefix`` too: S3Prefix inputs match keys, not folders."""
    if "/" not in uri.removeprefix("s3://"):
        uri += "/"  # a whole bucket
    return prefix.startswith(uri)


def _referenced(
    prefixes: list[str], references: list[_Reference], gone: set[tuple[str, str]]
) -> str | None:
    """Why a record that stays needs these prefixes, or None (``gone``: records removed too)."""
    for reference in (r for r in references if r.owner not in gone):
        for prefix in prefixes:
            if reference.active and any(_covers(uri, prefix) for uri in reference.uris):
                return f"{_short(reference.owner[1])} (running) reads {prefix}"
            if any(_under(uri, prefix) for uri in reference.uris):
                what = "(running) uses" if reference.active else "points into"
                return f"{_short(reference.owner[1])} {what} {prefix}"
    return None


def _owned(execution: Execution) -> set[tuple[str, str]]:
    return {(EXECUTIONS, execution.arn), *execution.resources}


def _keep_referenced(
    candidates: list[Execution], prefixes: dict[str, list[str]], references: list[_Reference]
) -> None:
    """Mark the candidates something that stays points into; repeat while that set grows
    (an execution kept keeps what it points into, one removed too does not)."""
    changed = True
    while changed:
        changed = False
        going = [c for c in candidates if c.kept_because is None]
        gone = set().union(*(_owned(c) for c in going))
        for candidate in going:
            candidate.kept_because = _referenced(prefixes[candidate.arn], references, gone)
            changed = changed or candidate.kept_because is not None


def _selected(
    executions: list[Execution], keep: int | None, older_than: float | None, now: float
) -> list[Execution]:
    """Finished executions outside the ``keep`` newest, stopped before ``now - older_than``."""
    finished = [e for e in executions if e.status != "RUNNING"]
    if keep is not None:
        finished = finished[keep:]
    if older_than is not None:
        finished = [e for e in finished if (e.stopped or e.started) <= now - older_than]
    return finished


def _choose(
    db: sqlite3.Connection,
    workspace: Path,
    keep: int | None,
    older_than: float | None,
    now: float,
) -> tuple[list[Execution], list[Execution]]:
    """(to remove, kept on purpose) among the executions ``keep``/``older_than`` select."""
    executions = _executions(db)
    succeeded = next((e.arn for e in executions if e.status == "SUCCEEDED"), None)
    references = _references(db)
    removed: list[Execution] = []
    kept = [e for e in executions if e.status == "RUNNING"]
    for execution in kept:
        execution.kept_because = "it is running"
    candidates = []
    for execution in _selected(executions, keep, older_than, now):
        if execution.arn == succeeded:
            execution.kept_because = "the newest SUCCEEDED execution: its model is kept"
        else:
            execution.resources = _task_resources(db, execution.arn)
            if _job_running(db, execution.resources):
                execution.kept_because = "one of its jobs still runs"
        candidates.append(execution)
    prefixes = {c.arn: _prefixes(workspace / "objects", c.name) for c in candidates}
    _keep_referenced(candidates, prefixes, references)
    for execution in candidates:
        (kept if execution.kept_because else removed).append(execution)
    for execution in removed:
        execution.folders = _folders(workspace, execution)
    return removed, kept


def _folders(workspace: Path, execution: Execution) -> list[Path]:
    """What exists of the execution's prefixes, job folders and report."""
    objects = workspace / "objects"
    candidates = [
        objects / prefix.removeprefix("s3://").rstrip("/")
        for prefix in _prefixes(objects, execution.name)
    ]
    candidates += [workspace / "jobs" / name for name in execution.jobs]
    candidates.append(workspace / "reports" / f"{execution.name}.html")
    return [path for path in candidates if path.exists()]


# measuring and removing ---------------------------------------------------------------------
def _walk(paths: list[Path]) -> Iterator[Path]:
    for path in paths:
        if path.is_dir() and not path.is_symlink():
            yield from (p for p in path.rglob("*") if p.is_file() or p.is_symlink())
        else:
            yield path


def measure(paths: list[Path]) -> tuple[int, int]:
    """(files, bytes freed) if ``paths`` were removed: a file linked from elsewhere frees none."""
    names: dict[tuple[int, int], list[int]] = {}  # inode -> [size, links, links in paths]
    files = 0
    for path in _walk(paths):
        stat = path.lstat()
        files += 1
        entry = names.setdefault((stat.st_dev, stat.st_ino), [stat.st_size, stat.st_nlink, 0])
        entry[2] += 1
    freed = sum(size for size, links, inside in names.values() if inside >= links)
    return files, freed


def _to_trash(trash: Path, paths: list[Path]) -> list[Path]:
    """Move the folders out of the workspace's view at once (renames on one file system)."""
    trash.mkdir(parents=True, exist_ok=True)
    moved = []
    for path in paths:
        target = trash / uuid.uuid4().hex
        path.rename(target)
        moved.append(target)
    return moved


def _delete_records(db: sqlite3.Connection, execution: Execution) -> None:
    db.execute("DELETE FROM events WHERE stream = ?", (execution.arn,))
    db.execute("DELETE FROM resources WHERE kind = ? AND name = ?", (EXECUTIONS, execution.arn))
    for kind, name in execution.resources:
        db.execute("DELETE FROM resources WHERE kind = ? AND name = ?", (kind, name))


def empty_trash(workspace: Path) -> None:
    shutil.rmtree(workspace / TRASH, ignore_errors=True)


def prune(
    workspace: Path,
    *,
    keep: int | None = None,
    older_than: float | None = None,
    dry_run: bool = False,
    now: float | None = None,
) -> Result:
    """Remove the selected executions' artifacts and records; see the module's docstring."""
    if keep is None and older_than is None:
        raise PruneError("say what to keep: --keep N (the N newest) and/or --older-than 7d")
    if keep is not None and keep < 0:
        raise PruneError(f"--keep {keep}: give 0 or more")
    db_path = workspace / "metadata.db"
    if not db_path.is_file():
        return Result([], [], dry_run)
    empty_trash(workspace)  # what a crashed prune left
    moment = time.time() if now is None else now
    with _transaction(db_path, write=not dry_run) as db:
        removed, kept = _choose(db, workspace, keep, older_than, moment)
        if not dry_run:
            for execution in removed:
                execution.folders = _to_trash(workspace / TRASH, execution.folders)
                _delete_records(db, execution)
    for execution in removed:
        execution.files, execution.bytes = measure(execution.folders)
    total = measure([path for execution in removed for path in execution.folders])[1]
    if not dry_run:
        empty_trash(workspace)
        if removed:
            compact(db_path)
    return Result(removed, kept, dry_run, total)


def compact(db_path: Path) -> None:
    """Give the deleted records' pages back to the file system (VACUUM, then the WAL).

    Skipped when another connection keeps the database busy past the timeout: the pages stay
    free inside the file and the next writes reuse them.
    """
    db = sqlite3.connect(db_path, timeout=5, isolation_level=None)
    try:
        db.execute("VACUUM")
        db.execute("PRAGMA wal_checkpoint(TRUNCATE)")
    except sqlite3.OperationalError:
        pass
    finally:
        db.close()
