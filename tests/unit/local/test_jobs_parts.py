"""The job runner's small parts: path re-rooting, the words per job kind, process identity."""

from __future__ import annotations

import os
import sys
from pathlib import Path

from sfn_mlops.local import jobs, processes
from sfn_mlops.local.jobs import forkserver, launch, paths, state


def test_reroot_rewrites_opt_ml_alone_and_after_equals_only() -> None:
    opt = Path("/ws/jobs/j/opt_ml")
    assert paths.reroot("/opt/ml/processing/x", opt) == "/ws/jobs/j/opt_ml/processing/x"
    assert paths.reroot("--out=/opt/ml/output", opt) == "--out=/ws/jobs/j/opt_ml/output"
    assert paths.reroot("/opt/mlx", opt) == "/opt/mlx"
    assert paths.reroot("/data/opt/ml", opt) == "/data/opt/ml"


def test_local_command_runs_python3_with_this_python() -> None:
    opt = Path("/o")
    assert paths.local_command(["python3", "/opt/ml/code/a.py"], opt) == [
        sys.executable,
        "/o/code/a.py",
    ]
    assert paths.local_command(["bash", "x"], opt) == ["bash", "x"]


def test_processing_jobs_are_worded_as_processing_jobs() -> None:
    wording = state.WORDING[jobs.KIND_PROCESSING]
    assert wording.starting() == "Starting the processing job"
    assert wording.ended("Completed") == "Processing job completed"
    assert wording.ended("Failed", "UserError: x") == "Processing job failed. Reason: UserError: x"
    assert wording.uploading == "Uploading processing outputs"
    doc = jobs.new_job_doc(jobs.KIND_PROCESSING, "p", "arn", {})
    assert (doc["Transitions"], doc["SecondaryStatus"]) == ([], None)


def test_training_jobs_keep_sagemakers_training_words() -> None:
    wording = state.WORDING[jobs.KIND_TRAINING]
    assert wording.ended("MaxRuntimeExceeded") == (
        "Training job exceeded MaxRuntimeInSeconds provided"
    )
    assert wording.uploading == "Uploading generated training model"
    doc = jobs.new_job_doc(jobs.KIND_TRAINING, "t", "arn", {})
    assert [t["StatusMessage"] for t in doc["Transitions"]] == ["Starting the training job"]
    assert doc["OwnerPid"] == os.getpid()


def test_start_time_names_one_process() -> None:
    mine = processes.start_time(os.getpid())
    assert isinstance(mine, int)
    assert processes.same_process(os.getpid(), mine)
    assert not processes.same_process(os.getpid(), mine + 1)
    assert os.getpid() in processes.group_members(os.getpgid(0))


def test_a_reused_pid_is_not_killed() -> None:
    # This process is alive, but not the one that started at tick 1: nothing is signalled.
    assert processes.kill_leftover_group(os.getpid(), 1) is False
    assert processes.kill_leftover_group(os.getpid(), None) is False


def test_startup_env_keeps_only_what_a_process_reads_when_it_starts() -> None:
    env = {"OMP_WAIT_POLICY": "PASSIVE", "PYTHONPATH": "/x", "PYTHONHASHSEED": "0", "SM_X": "1"}
    assert forkserver.startup_env(env) == {"OMP_WAIT_POLICY": "PASSIVE", "PYTHONHASHSEED": "0"}


def test_only_this_python_running_a_script_starts_warm(tmp_path: Path) -> None:
    (tmp_path / "job.py").write_text("")
    assert launch.is_python_script([sys.executable, "job.py", "--a"], tmp_path)
    assert not launch.is_python_script([sys.executable, "-m", "job"], tmp_path)
    assert not launch.is_python_script([sys.executable, "missing.py"], tmp_path)
    assert not launch.is_python_script(["/usr/bin/python3", "job.py"], tmp_path)


def test_jobs_get_the_runtime_defaults_unless_set(monkeypatch) -> None:
    monkeypatch.setenv("OMP_WAIT_POLICY", "ACTIVE")
    env = launch.default_env()
    assert env["OMP_WAIT_POLICY"] == "ACTIVE"
    assert env["OPENBLAS_NUM_THREADS"] == "1"
    assert env["JE_ARROW_MALLOC_CONF"] == "background_thread:false"
