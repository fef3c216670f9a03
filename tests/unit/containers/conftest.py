"""Job script tests: containers/common and each job folder are import roots, as in the images.

At run time containers/common/*.py sits next to each job's script, so the scripts use flat
imports (`import jobkit`, `import train`); the tests import them the same way.
"""

from __future__ import annotations

import sys
from collections.abc import Callable
from pathlib import Path

import pytest

CONTAINERS_DIR = Path(__file__).resolve().parents[3] / "containers"
for folder in ("common", "processing", "training", "evaluation", "inference"):
    path = str(CONTAINERS_DIR / folder)
    if path not in sys.path:
        sys.path.insert(0, path)


@pytest.fixture(scope="session")
def trained(tmp_path_factory: pytest.TempPathFactory) -> Callable[[str], Path]:
    """`trained("binary")` → a folder with out/ (splits, schema) and model/ from a small run."""
    import train
    from job_data import frame_for, run_preprocess

    root = tmp_path_factory.mktemp("jobs")
    cache: dict[str, Path] = {}

    def build(problem_type: str) -> Path:
        if problem_type not in cache:
            folder = root / problem_type
            schema = run_preprocess(frame_for(problem_type), folder, problem_type)
            train.train(
                train_path=str(folder / "out/train/train.csv"),
                validation_path=str(folder / "out/validation/validation.csv"),
                schema=schema,
                hyperparameters={"num_round": "8", "max_depth": "3", "eta": "0.3"},
                model_dir=str(folder / "model"),
                output_data_dir=str(folder / "output-data"),
                nthread=1,
            )
            cache[problem_type] = folder
        return cache[problem_type]

    return build
