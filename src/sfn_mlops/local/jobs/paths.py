"""Where a job lives on this machine: its folder, its log, and ``/opt/ml`` re-rooted under it.

A job's folder is ``<workspace>/jobs/<job name>/``; its ``opt_ml/`` stands for the container's
``/opt/ml``, so every ``/opt/ml/...`` path of the request is rewritten to point there. Once the
job has ended and its outputs are in the object store, the folder keeps only its log
(``remove_scratch``): the inputs, outputs and archives were scratch, as a container's volume is.
"""

from __future__ import annotations

import os
import re
import shutil
import sys
from collections.abc import Iterable
from pathlib import Path
from typing import Any

LOG_NAME = "job.log"
OPT_ML = "opt_ml"

_OPT_ML = re.compile(r"(^|=)/opt/ml(?=/|$)")
_PYTHON = re.compile(r"^python(3(\.\d+)?)?$")


def job_dir(cloud: Any, name: str) -> Path:
    return Path(cloud.jobs_dir) / name


def job_log_path(cloud: Any, name: str) -> Path:
    """Where the job's stdout and stderr are kept (``sfn-mlops jobs logs NAME`` reads it)."""
    return job_dir(cloud, name) / LOG_NAME


def remove_scratch(folder: Path) -> None:
    """Remove everything in a finished job's folder but its log (what was uploaded is kept)."""
    if not folder.is_dir():
        return
    for entry in folder.iterdir():
        if entry.name == LOG_NAME:
            continue
        if entry.is_dir() and not entry.is_symlink():
            shutil.rmtree(entry, ignore_errors=True)
        else:
            entry.unlink(missing_ok=True)


def reroot(value: str, opt_ml: Path) -> str:
    """Rewrite ``/opt/ml/...`` (alone, or after ``=`` as in ``--dir=/opt/ml/x``) under opt_ml."""
    return _OPT_ML.sub(lambda match: match.group(1) + str(opt_ml), value)


def local_command(command: Iterable[str], opt_ml: Path) -> list[str]:
    """The container command for this machine: paths re-rooted, ``python3`` -> this Python."""
    argv = [reroot(part, opt_ml) for part in command]
    if argv and _PYTHON.match(os.path.basename(argv[0])):
        argv[0] = sys.executable
    return argv
