"""The jobs this process runs, and what happens to jobs whose process is gone.

The local service owns every job it starts (``OwnerPid`` is its pid). When it shuts down it
ends them (``shutdown_all``); when it died (kill -9, a crash) the next service finds the jobs
still stored InProgress and ends them (``recover_orphans``): it SIGKILLs what is left of each
job's process group, if that group is still the job's (pid and start time recorded at
launch), empties its folder but for the log, and marks the job Failed with a PlatformError.
``refresh`` does the same lazily for a job a Describe finds whose owner is gone, for
workspaces used by more than one process.
"""

from __future__ import annotations

import atexit
import os
import threading
from collections.abc import Callable
from typing import Any

from sfn_mlops.local.jobs import forkserver
from sfn_mlops.local.jobs.paths import job_dir, job_log_path, remove_scratch
from sfn_mlops.local.jobs.processing import ProcessingRun
from sfn_mlops.local.jobs.runner import STOP_GRACE_SECONDS, Run
from sfn_mlops.local.jobs.state import (
    FAILURE_REASON_LIMIT,
    KIND_PROCESSING,
    KIND_TRAINING,
    KIND_TRANSFORM,
    TERMINAL,
    WORDING,
    close_transitions,
    now,
    transition,
)
from sfn_mlops.local.jobs.training import TrainingRun
from sfn_mlops.local.metadata import AlreadyExists
from sfn_mlops.local.processes import (
    kill_job_groups_in,
    kill_leftover_group,
    same_process,
    start_time,
)

KINDS = (KIND_PROCESSING, KIND_TRAINING, KIND_TRANSFORM)
SHUTDOWN_SLACK_SECONDS = 5.0  # on top of the stop grace: uploads of a job that just finished

_RUNS: dict[tuple[str, str, str], Run] = {}
_RUNS_LOCK = threading.Lock()
_ATEXIT_INSTALLED = False


def _key(cloud: Any, kind: str, name: str) -> tuple[str, str, str]:
    return (str(cloud.root), kind, name)


def _install_atexit() -> None:
    """A safety net for processes that never call shutdown_all (tests, in-process use)."""
    global _ATEXIT_INSTALLED
    with _RUNS_LOCK:
        if not _ATEXIT_INSTALLED:
            atexit.register(_shutdown_everything)
            _ATEXIT_INSTALLED = True


def _shutdown_everything() -> None:
    with _RUNS_LOCK:
        runs = list(_RUNS.values())
    _end_runs(runs)
    forkserver.shutdown()


def submit(
    cloud: Any,
    kind: str,
    doc: dict[str, Any],
    make_run: Callable[[dict[str, Any]], Run] | None = None,
) -> None:
    """Store the new job (``metadata.AlreadyExists`` if the name is taken) and start it.

    ``make_run(stored doc)`` builds its Run; by default a processing or training job's.
    """
    run_cls = TrainingRun if kind == KIND_TRAINING else ProcessingRun
    if make_run is None:
        make_run = lambda stored: run_cls(cloud, kind, stored["Name"], stored["Request"])  # noqa: E731
    key = _key(cloud, kind, doc["Name"])
    doc = {**doc, "OwnerPid": os.getpid(), "OwnerStartTime": start_time(os.getpid())}
    _install_atexit()
    with _RUNS_LOCK:  # registered before it is stored, so no describe sees it ownerless
        if key in _RUNS:
            raise AlreadyExists(f"{kind} {doc['Name']}")
        cloud.metadata.create(kind, doc["Name"], doc)
        run = make_run(doc)
        _RUNS[key] = run
    threading.Thread(
        target=_run, args=(key, run), name=f"sagemaker-job-{doc['Name']}", daemon=True
    ).start()


def _run(key: tuple[str, str, str], run: Run) -> None:
    try:
        run.run()
    finally:
        with _RUNS_LOCK:
            _RUNS.pop(key, None)


def request_stop(cloud: Any, kind: str, name: str) -> None:
    """Ask the runner to stop the job: it signals the process group and ends the job Stopped."""
    cloud.metadata.update(kind, name, StopRequested=now())
    with _RUNS_LOCK:
        run = _RUNS.get(_key(cloud, kind, name))
    if run is not None:
        run.wake()


def shutdown_all(
    cloud: Any, timeout: float = STOP_GRACE_SECONDS + SHUTDOWN_SLACK_SECONDS
) -> list[str]:
    """End every job this process runs in ``cloud``'s workspace: SIGTERM, SIGKILL after the
    grace period, each marked Failed (PlatformError: the service shut down). Returns their names.
    """
    root = str(cloud.root)
    with _RUNS_LOCK:
        runs = [run for key, run in _RUNS.items() if key[0] == root]
    _end_runs(runs, timeout)
    return sorted(run.name for run in runs)


def _end_runs(
    runs: list[Run], timeout: float = STOP_GRACE_SECONDS + SHUTDOWN_SLACK_SECONDS
) -> None:
    for run in runs:
        run.wake("shutdown")
    deadline = now() + timeout
    for run in runs:
        run.finished.wait(max(0.0, deadline - now()))


# jobs whose owner is gone -----------------------------------------------------------------
def recover_orphans(cloud: Any) -> list[str]:
    """At the service's start: end the jobs a previous service left InProgress; their names."""
    recovered = []
    for kind in KINDS:
        for doc in cloud.metadata.list(kind):
            if doc["Status"] not in TERMINAL and not _owner_alive(cloud, kind, doc):
                _fail_orphan(cloud, kind, doc)
                recovered.append(doc["Name"])
    return sorted(recovered)


def refresh(cloud: Any, kind: str, doc: dict[str, Any]) -> dict[str, Any]:
    """The job's state, marked Failed if the process that ran it is gone."""
    if doc["Status"] in TERMINAL or _owner_alive(cloud, kind, doc):
        return doc
    return _fail_orphan(cloud, kind, doc)


def _owner_alive(cloud: Any, kind: str, doc: dict[str, Any]) -> bool:
    pid = int(doc["OwnerPid"])
    if pid == os.getpid():
        with _RUNS_LOCK:
            return _key(cloud, kind, doc["Name"]) in _RUNS
    return same_process(pid, doc.get("OwnerStartTime"))


def _fail_orphan(cloud: Any, kind: str, doc: dict[str, Any]) -> dict[str, Any]:
    current = cloud.metadata.get(kind, doc["Name"]) or doc
    if current["Status"] in TERMINAL:  # it finished while we looked
        return current
    if current.get("ChildPid"):
        kill_leftover_group(int(current["ChildPid"]), current.get("ChildStartTime"))
    # Also a job process the dead service started but had not recorded yet.
    kill_job_groups_in(job_dir(cloud, doc["Name"]), float(current["CreationTime"]))
    remove_scratch(job_dir(cloud, doc["Name"]))  # nothing runs there now; the log stays
    reason = (
        f"PlatformError: the local service (pid {current['OwnerPid']}) stopped while the job "
        f"ran; see the log: {job_log_path(cloud, doc['Name'])}"
    )[:FAILURE_REASON_LIMIT]
    at = now()
    fields: dict[str, Any] = {}
    wording = WORDING[kind]
    if wording.transitions:
        transitions = close_transitions(current["Transitions"], at)
        transitions.append(transition("Failed", wording.ended("Failed", reason), at, at))
        fields.update(SecondaryStatus="Failed", Transitions=transitions)
    return cloud.metadata.update(  # type: ignore[no-any-return]
        kind,
        doc["Name"],
        Status="Failed",
        FailureReason=reason,
        StartTime=current.get("StartTime") or at,
        EndTime=at,
        LastModifiedTime=at,
        **fields,
    )
