"""The fork server starts each job as a fresh child of a pre-imported, single-threaded process,
with the same contract as a subprocess: its own environment, folder, process group, log, exit
code, and default signal handlers; and xgboost trains the same model as in a fresh process.
"""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
import textwrap
import time
from collections.abc import Iterator
from pathlib import Path

import pytest

from sfn_mlops.local.jobs import forkserver, launch
from sfn_mlops.local.processes import start_time

CONTAINERS_COMMON = Path(__file__).resolve().parents[2] / "containers" / "common"


@pytest.fixture(scope="module")
def server() -> Iterator[forkserver.ForkServer]:
    fs = forkserver.ForkServer(launch.default_env())
    assert fs.alive, fs.ready
    yield fs
    fs.close()


def script(tmp_path: Path, source: str) -> Path:
    path = tmp_path / "job.py"
    path.write_text(textwrap.dedent(source))
    return path


def run(
    fs: forkserver.ForkServer, tmp_path: Path, source: str, *args: str, env: dict | None = None
) -> tuple[int, str, forkserver.ForkedProcess]:
    path = script(tmp_path, source)
    log = tmp_path / "job.log"
    child = fs.spawn([sys.executable, path.name, *args], env or {"A": "1"}, tmp_path, log)
    code = child.wait()
    return code, log.read_text(), child


def test_the_fork_server_is_single_threaded_and_reports_ready(
    server: forkserver.ForkServer,
) -> None:
    assert server.ready["threads"] == 1
    assert server.ready["pid"] == server.proc.pid


def test_child_gets_its_own_environment_folder_group_and_argv(
    server: forkserver.ForkServer, tmp_path: Path
) -> None:
    source = """
        import json, os, signal, sys
        print(json.dumps({
            "env": dict(os.environ),
            "cwd": os.getcwd(),
            "argv": sys.argv,
            "path0": sys.path[0],
            "pgid": os.getpgid(0) == os.getpid(),
            "sid": os.getsid(0) == os.getpid(),
            "term": signal.getsignal(signal.SIGTERM) == signal.SIG_DFL,
            "chld": signal.getsignal(signal.SIGCHLD) == signal.SIG_DFL,
            "int": signal.getsignal(signal.SIGINT) is signal.default_int_handler,
            "xgboost_loaded": "xgboost" in sys.modules,
            # xgboost was imported without scikit-learn (the jobs' fast form), even though the
            # local Clarify runtime's scikit-learn neighbours are pre-imported after it
            "xgboost_sklearn": sys.modules["xgboost.compat"].SKLEARN_INSTALLED,
            "neighbours_loaded": "sklearn.neighbors" in sys.modules,
            "main": __name__,
        }))
        sys.exit(7)
    """
    env = {"ONLY": "this", "PYTHONPATH": "/nowhere"}
    code, log, child = run(server, tmp_path, source, "--x", "1", env=env)

    assert code == 7
    info = json.loads(log)
    assert info == {
        "env": env,
        "cwd": str(tmp_path),
        "argv": ["job.py", "--x", "1"],
        "path0": str(tmp_path),
        "pgid": True,
        "sid": True,
        "term": True,
        "chld": True,
        "int": True,
        "xgboost_loaded": True,
        "xgboost_sklearn": False,
        "neighbours_loaded": True,
        "main": "__main__",
    }
    assert child.start_time is not None
    assert start_time(child.pid) is None  # reaped by the fork server: no zombie left


def test_pythonpath_entries_come_after_the_scripts_folder(
    server: forkserver.ForkServer, tmp_path: Path
) -> None:
    source = "import sys, jobkit\nprint(sys.path[1])\n"
    code, log, _ = run(server, tmp_path, source, env={"PYTHONPATH": str(CONTAINERS_COMMON)})
    assert (code, log) == (0, f"{CONTAINERS_COMMON}\n")


def test_uncaught_exception_prints_the_traceback_and_exits_1(
    server: forkserver.ForkServer, tmp_path: Path
) -> None:
    code, log, _ = run(server, tmp_path, "raise ValueError('bad value')\n")
    assert code == 1
    assert "Traceback (most recent call last)" in log
    assert log.endswith("ValueError: bad value\n")


@pytest.mark.parametrize(("exit_with", "expected"), [("None", 0), ("'why'", 1), ("300", 44)])
def test_system_exit_is_honoured_like_the_interpreter(
    server: forkserver.ForkServer, tmp_path: Path, exit_with: str, expected: int
) -> None:
    code, _, _ = run(server, tmp_path, f"import sys\nsys.exit({exit_with})\n")
    assert code == expected


def test_sigterm_to_the_group_ends_the_child_with_the_signal(
    server: forkserver.ForkServer, tmp_path: Path
) -> None:
    path = script(tmp_path, "import time\nprint('up', flush=True)\ntime.sleep(60)\n")
    log = tmp_path / "job.log"
    child = server.spawn([sys.executable, path.name], {}, tmp_path, log)
    deadline = time.monotonic() + 10
    while "up" not in (log.read_text() if log.exists() else ""):
        assert time.monotonic() < deadline
        time.sleep(0.01)
    os.killpg(child.pid, signal.SIGTERM)
    assert child.wait() == -signal.SIGTERM


TRAIN = """
    import json, sys
    import numpy as np
    import jobkit
    xgb = jobkit.import_xgboost()
    rng = np.random.default_rng(7)
    x = rng.normal(size=(2000, 8)).astype(np.float32)
    y = x @ rng.normal(size=8) + rng.normal(size=2000)
    dtrain = xgb.DMatrix(x, label=y, nthread=2)
    params = {"max_depth": 5, "eta": 0.2, "nthread": 2, "objective": "reg:squarederror"}
    booster = xgb.train(params, dtrain, num_boost_round=30)
    print(json.dumps(booster.predict(dtrain)[:50].tolist()))
"""


def test_xgboost_in_a_forked_child_trains_the_same_model_as_a_fresh_process(
    server: forkserver.ForkServer, tmp_path: Path
) -> None:
    env = launch.default_env()
    env["PYTHONPATH"] = str(CONTAINERS_COMMON)
    code, forked, _ = run(server, tmp_path, TRAIN, env=env)
    assert code == 0, forked
    fresh = subprocess.run(
        [sys.executable, "job.py"], cwd=tmp_path, env=env, capture_output=True, check=True
    )
    assert json.loads(forked) == json.loads(fresh.stdout)


def test_startup_variables_that_differ_need_a_fresh_process(
    server: forkserver.ForkServer,
) -> None:
    env = launch.default_env()
    assert server.accepts({**env, "PYTHONPATH": "/x", "SM_HP_ETA": "0.1"})
    assert not server.accepts({**env, "OMP_NUM_THREADS": "1"})
    assert not server.accepts({k: v for k, v in env.items() if k != "OPENBLAS_NUM_THREADS"})


def test_other_commands_start_as_subprocesses(tmp_path: Path) -> None:
    job = launch.Launch(["/bin/sh", "-c", "echo hi; exit 3"], {}, tmp_path, warm=True)
    with open(tmp_path / "job.log", "ab") as log:
        proc = launch.start(job, log, tmp_path / "job.log")
        assert isinstance(proc, launch.PopenProcess)
        assert proc.wait() == 3
    assert (tmp_path / "job.log").read_text() == "hi\n"


OWNER = """
import sys, time
from sfn_mlops.local.jobs import forkserver, launch
fs = forkserver.ForkServer(launch.default_env())
print(fs.proc.pid, flush=True)
time.sleep(60)
"""


def test_the_fork_server_exits_when_the_service_is_killed() -> None:
    owner = subprocess.Popen(
        [sys.executable, "-c", OWNER], stdout=subprocess.PIPE, start_new_session=True
    )
    assert owner.stdout is not None
    pid = int(owner.stdout.readline())
    owner.kill()
    owner.wait()
    deadline = time.monotonic() + 10
    while start_time(pid) is not None and not _zombie(pid):
        assert time.monotonic() < deadline, "the fork server outlived its service"
        time.sleep(0.05)


def _zombie(pid: int) -> bool:
    try:
        return Path(f"/proc/{pid}/stat").read_text().rpartition(")")[2].split()[0] == "Z"
    except OSError:
        return False
