"""The local Clarify runtime's analysis (containers/clarify/run.py) on a tiny trained model of
each problem type, with the analysis configs PrepareClarify would write for it."""

from __future__ import annotations

import importlib.util
import json
import sys
from collections.abc import Callable
from pathlib import Path
from types import ModuleType
from typing import Any

import numpy as np
import pytest
from job_data import TARGETS

ROOT = Path(__file__).resolve().parents[3]
CLARIFY = {
    "regression": (["F"], [10]),
    "binary": (["F"], ["yes"]),
    "multiclass": (["I"], ["senior"]),
}


def _load(name: str, path: Path) -> ModuleType:
    spec = importlib.util.spec_from_file_location(name, path)
    assert spec is not None and spec.loader is not None
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


@pytest.fixture(scope="module")
def run() -> ModuleType:
    folder = str(ROOT / "containers" / "clarify")
    if folder not in sys.path:
        sys.path.insert(0, folder)
    return _load("clarify_run", ROOT / "containers" / "clarify" / "run.py")


@pytest.fixture(scope="module")
def configs() -> ModuleType:
    return _load("analysis_config", ROOT / "lambdas" / "prepare_clarify" / "analysis_config.py")


@pytest.mark.parametrize("problem_type", ["regression", "binary", "multiclass"])
def test_bias_and_shap_for_each_problem_type(
    problem_type: str, trained: Callable[[str], Path], run: ModuleType, configs: ModuleType
) -> None:
    import xgboost

    folder = trained(problem_type)
    schema = json.loads((folder / "out" / "schema" / "schema.json").read_text())
    facet_values, label_values = CLARIFY[problem_type]
    clarify: dict[str, Any] = {
        "facets": [{"name_or_index": "sex", "value_or_threshold": facet_values}],
        "label_values_or_threshold": label_values,
        "group_variable": None,
        "shap": {"num_clusters": 3, "agg_method": "mean_abs", "max_records": 100},
    }
    booster = xgboost.Booster()
    booster.load_model(str(folder / "model" / "xgboost-model"))
    frame = run.read_dataset(str(folder / "out" / "test"), [schema["target"], *schema["features"]])

    bias = run.analyze(configs.bias_config(clarify, schema, "m", "ml.m5.xlarge"), frame, booster)
    analysis = bias["analysis"]
    assert analysis["pre_training_bias_metrics"]["label"] == TARGETS[problem_type]
    post = analysis["post_training_bias_metrics"]["facets"]["sex"][0]["metrics"]
    dppl = next(m for m in post if m["name"] == "DPPL")
    assert isinstance(dppl["value"], float), dppl

    explained = run.analyze(
        configs.explainability_config(clarify, schema, "m", "ml.m5.xlarge"), frame, booster
    )
    entry = explained["analysis"]["explanations"]["kernel_shap"]["label0"]
    assert list(entry["global_shap_values"]) == schema["features"]
    unnamed = booster.copy()
    unnamed.feature_names = None
    margin = unnamed.predict(xgboost.DMatrix(explained["features"]), output_margin=True)
    first_output = np.asarray(margin).reshape(len(frame), -1)[:, 0]
    np.testing.assert_allclose(
        explained["local_values"].sum(axis=1) + entry["expected_value"], first_output, atol=1e-4
    )


def test_kmeans_is_deterministic_and_finds_separated_clusters(run: ModuleType) -> None:
    rows = np.array([[0.0, 0.0], [0.1, 0.0], [10.0, 10.0], [10.1, 10.0]])
    centroids = run.kmeans(rows, 2)
    assert sorted(map(tuple, centroids.round(6))) == [(0.05, 0.0), (10.05, 10.0)]
    np.testing.assert_array_equal(centroids, run.kmeans(rows, 2))
    assert run.kmeans(rows[:1], 5).shape == (1, 2)  # no more centroids than distinct rows
