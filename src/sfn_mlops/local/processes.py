"""Which process owns a running execution or job, so another process can tell it has died.

A pid alone can be reused once its process is gone; a pid with its start time (Linux
``/proc/<pid>/stat`` field 22, clock ticks since boot) names one process for good, so a
recorded pair never kills or trusts a stranger that got the same number later.
"""

from __future__ import annotations

import contextlib
import os
import signal
import time
from dataclasses import dataclass
from pathlib import Path

_STARTTIME_FIELD = 22  # 1-based, as proc(5) numbers the fields of /proc/<pid>/stat
_PGRP_FIELD = 5
_STATE_FIELD = 3
_SESSION_FIELD = 6
_DEAD_STATES = ("Z", "X")  # a zombie has exited; only its parent has not reaped it yet


@dataclass(frozen=True)
class Usage:
    """What an ended process used, as ``wait4`` reports it (its reaped children included): CPU
    time (user + system) and peak resident memory (``ru_maxrss``, KiB on Linux, in bytes)."""

    cpu_seconds: float
    max_rss_bytes: int


def pid_alive(pid: int) -> bool:
    """Whether ``pid`` runs; an exited process that nobody reaped (a zombie) does not."""
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except PermissionError:  # alive, owned by another user
        return True
    fields = _stat_fields(pid)
    return fields is None or fields[_STATE_FIELD] not in _DEAD_STATES


def _stat_fields(pid: int) -> list[str] | None:
    """Fields of /proc/<pid>/stat numbered from 1 (index 0 is unused); None if it is gone."""
    try:
        with open(f"/proc/{pid}/stat", "rb") as stream:
            raw = stream.read().decode("ascii", errors="replace")
    except OSError:
        return None
    # The command name (field 2) is in parentheses and may hold spaces or parentheses.
    head, _, tail = raw.rpartition(")")
    if not head:
        return None
    pid_part, _, comm = head.partition(" (")
    return ["", pid_part, comm, *tail.split()]


def start_time(pid: int) -> int | None:
    """The process's start time in clock ticks since boot, or None if it is gone (or no /proc)."""
    fields = _stat_fields(pid)
    if fields is None or len(fields) <= _STARTTIME_FIELD or fields[_STATE_FIELD] in _DEAD_STATES:
        return None
    return int(fields[_STARTTIME_FIELD])


def same_process(pid: int, started: int | None) -> bool:
    """Whether ``pid`` still runs and is the process that started at ``started``.

    Without a recorded start time (or without /proc) only liveness can be checked.
    """
    if started is None:
        return pid_alive(pid)
    return start_time(pid) == started


def group_members(pgid: int) -> list[int]:
    """The pids whose process group is ``pgid`` (Linux /proc; empty elsewhere)."""
    members = []
    with contextlib.suppress(OSError):
        for entry in os.listdir("/proc"):
            fields = _stat_fields(int(entry)) if entry.isdigit() else None
            if fields and len(fields) > _PGRP_FIELD and int(fields[_PGRP_FIELD]) == pgid:
                members.append(int(entry))
    return members


def signal_group(pgid: int, sig: int) -> None:
    with contextlib.suppress(ProcessLookupError, PermissionError):
        os.killpg(pgid, sig)


def kill_leftover_group(leader: int, started: int | None) -> bool:
    """SIGKILL what is left of the process group ``leader`` led, if it is still that group.

    The group is ours when its leader is the recorded process (pid and start time), or when
    the leader is gone but members remain: Linux does not hand out a pid while a process
    group of that number exists, so the group cannot belong to a later process. A leader pid
    now used by another process means the group is long gone: nothing is killed.
    Returns whether a signal was sent.
    """
    if start_time(leader) is not None:
        if started is None or not same_process(leader, started):
            return False
    elif not group_members(leader):
        return False
    signal_group(leader, signal.SIGKILL)
    return True


def processes_in(folder: Path) -> list[int]:
    """Pids of the live processes whose working directory is ``folder`` or below (Linux /proc).

    A job's processes run in its folder: this finds them even when a service was killed
    before it could record the job's pid.
    """
    found = []
    with contextlib.suppress(OSError):
        for entry in os.listdir("/proc"):
            if not entry.isdigit():
                continue
            try:
                cwd = Path(os.readlink(f"/proc/{entry}/cwd"))
            except OSError:
                continue
            if (cwd == folder or folder in cwd.parents) and pid_alive(int(entry)):
                found.append(int(entry))
    return found


def kill_job_groups_in(folder: Path, created: float) -> list[int]:
    """SIGKILL the process groups a job started in ``folder`` and nothing else; their leaders.

    A job's process leads its own session and group (``setsid``) and started after the job was
    created; a user's shell that happens to sit in the folder fails one test or the other.
    """
    killed = []
    for pid in processes_in(folder):
        fields = _stat_fields(pid)
        if fields is None or not (int(fields[_PGRP_FIELD]) == int(fields[_SESSION_FIELD]) == pid):
            continue
        started = _started_epoch(fields)
        if started is not None and started >= created - 1.0:  # clock ticks: allow rounding
            signal_group(pid, signal.SIGKILL)
            killed.append(pid)
    return killed


def _started_epoch(fields: list[str]) -> float | None:
    """A process's start as epoch seconds: its start ticks after the boot.

    The boot moment comes from ``/proc/uptime`` (fractional), not ``btime`` in ``/proc/stat``,
    which is truncated to whole seconds and drifts from the wall clock by another second or so.
    """
    try:
        with open("/proc/uptime", encoding="ascii") as stream:
            uptime = float(stream.read().split()[0])
    except (OSError, IndexError, ValueError):
        return None
    boot = time.time() - uptime
    return boot + int(fields[_STARTTIME_FIELD]) / os.sysconf("SC_CLK_TCK")
