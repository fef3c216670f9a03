"""Leftover job processes are found by their folder, and only a job's own groups are killed."""

from __future__ import annotations

import subprocess
import sys
import time
from pathlib import Path

from sfn_mlops.local.processes import kill_job_groups_in, pid_alive, processes_in

SLEEPER = [sys.executable, "-c", "import time; time.sleep(60)"]


def _wait_gone(process: subprocess.Popen[bytes]) -> bool:
    try:
        process.wait(timeout=10)
    except subprocess.TimeoutExpired:
        return False
    return True


def test_a_job_session_in_the_folder_is_killed(tmp_path: Path) -> None:
    created = time.time()
    job = subprocess.Popen(SLEEPER, cwd=tmp_path, start_new_session=True)
    try:
        assert processes_in(tmp_path) == [job.pid]
        assert kill_job_groups_in(tmp_path, created) == [job.pid]
        assert _wait_gone(job)
    finally:
        job.kill()


def test_a_process_that_is_not_a_session_leader_is_left_alone(tmp_path: Path) -> None:
    bystander = subprocess.Popen(SLEEPER, cwd=tmp_path)  # shares this test's session
    try:
        assert kill_job_groups_in(tmp_path, time.time() - 5) == []
        assert pid_alive(bystander.pid)
    finally:
        bystander.kill()
        bystander.wait()


def test_a_session_older_than_the_job_is_left_alone(tmp_path: Path) -> None:
    shell = subprocess.Popen(SLEEPER, cwd=tmp_path, start_new_session=True)
    try:
        time.sleep(1.5)
        assert kill_job_groups_in(tmp_path, created=time.time()) == []
        assert pid_alive(shell.pid)
    finally:
        shell.kill()
        shell.wait()
