"""The job code in containers/, imported where the CLI needs the jobs' own logic.

The job scripts use flat imports (`import jobkit`), as they sit beside it in the images, so
they are loaded here by path, once each: the CLI then checks and scores exactly as the jobs
do (xgboost imported as the jobs import it, without scikit-learn), with no second copy.
"""

from __future__ import annotations

import functools
import importlib.util
import sys
from pathlib import Path
from typing import Any

CONTAINERS = Path(__file__).resolve().parents[2] / "containers"


@functools.cache
def jobkit() -> Any:
    """containers/common/jobkit.py."""
    return _load("sfn_mlops_jobkit", CONTAINERS / "common" / "jobkit.py")


def xgboost() -> Any:
    """xgboost as the jobs import it: without scikit-learn, whose import costs over a second."""
    return jobkit().import_xgboost()


def evaluation_job() -> Any:
    """containers/evaluation/evaluate.py."""
    return _job_script("evaluation", "evaluate")


def training_job() -> Any:
    """containers/training/train.py (imports xgboost)."""
    return _job_script("training", "train")


@functools.cache
def _job_script(folder: str, name: str) -> Any:
    """A job script; its `import jobkit` finds jobkit() while it loads (`jobkit` is in
    sys.modules only meanwhile, unless something had put it there)."""
    saved = sys.modules.get("jobkit")
    sys.modules["jobkit"] = saved or jobkit()
    try:
        return _load(f"sfn_mlops_{name}", CONTAINERS / folder / f"{name}.py")
    finally:
        if saved is None:
            del sys.modules["jobkit"]


def _load(name: str, path: Path) -> Any:
    spec = importlib.util.spec_from_file_location(name, path)
    assert spec is not None and spec.loader is not None
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module
