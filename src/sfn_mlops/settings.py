"""Every environment variable the project reads, named once.

An explicit argument beats the environment, which beats the default.
"""

from __future__ import annotations

import os
from pathlib import Path

WORKSPACE_ENV = "SFN_MLOPS_WORKSPACE"
MODE_ENV = "SFN_MLOPS_MODE"
TIME_SCALE_ENV = "SFN_MLOPS_TIME_SCALE"
IDLE_TIMEOUT_ENV = "SFN_MLOPS_IDLE_TIMEOUT"

DEFAULT_WORKSPACE = Path(".sfn-mlops")
LOCAL_REGION = "us-east-1"
LOCAL_ACCOUNT = "123456789012"
#: The local service stops itself after this long with no request and nothing running.
DEFAULT_IDLE_TIMEOUT_SECONDS = 1800.0


def workspace_root(explicit: str | os.PathLike[str] | None = None) -> Path:
    """Where the local cloud keeps its state."""
    if explicit:
        return Path(explicit).resolve()
    return Path(os.environ.get(WORKSPACE_ENV) or DEFAULT_WORKSPACE).resolve()


def time_scale(explicit: float | None = None) -> float:
    """Factor applied to Retry and Wait delays in local mode (tests use a small one)."""
    if explicit is not None:
        return explicit
    raw = os.environ.get(TIME_SCALE_ENV, "1")
    try:
        value = float(raw)
    except ValueError as err:
        raise ValueError(f"{TIME_SCALE_ENV}={raw!r} is not a number; use e.g. 1 or 0.01") from err
    if value < 0:
        raise ValueError(f"{TIME_SCALE_ENV}={raw!r} must be >= 0")
    return value


def idle_timeout(explicit: float | None = None) -> float:
    """Seconds the local service waits, idle, before it stops itself."""
    if explicit is not None:
        return explicit
    raw = os.environ.get(IDLE_TIMEOUT_ENV)
    if not raw:
        return DEFAULT_IDLE_TIMEOUT_SECONDS
    try:
        value = float(raw)
    except ValueError as err:
        raise ValueError(f"{IDLE_TIMEOUT_ENV}={raw!r} is not a number of seconds") from err
    if value <= 0:
        raise ValueError(f"{IDLE_TIMEOUT_ENV}={raw!r} must be > 0")
    return value


PROJECT_ENV = "SFN_MLOPS_PROJECT"


def project_root(explicit: str | os.PathLike[str] | None = None) -> Path:
    """The folder holding template.yaml, state_machines/, lambdas/ and containers/."""
    candidates: list[Path] = []
    if explicit or os.environ.get(PROJECT_ENV):
        candidates.append(Path(explicit or os.environ[PROJECT_ENV]))
    else:
        here = Path.cwd().resolve()
        candidates += [here, *here.parents, Path(__file__).resolve().parents[2]]
    for candidate in candidates:
        if (candidate / "template.yaml").is_file():
            return candidate.resolve()
    raise FileNotFoundError(
        f"no template.yaml found in {candidates[0]} or above; run from the sfn-mlops project "
        f"or set {PROJECT_ENV}"
    )
