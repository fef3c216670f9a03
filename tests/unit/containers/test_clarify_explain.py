"""Clarify's SHAP values: exact interventional TreeSHAP against shap's own explainers.

Oracles (dev-only): shap's interventional TreeExplainer (the same algorithm, in C++) within
1e-6, and KernelExplainer, Clarify's method, enumerating every coalition (<= 10 features)
within 1e-4. Models are written by the pinned xgboost-cpu.
"""

from __future__ import annotations

import csv
import io
import sys
from pathlib import Path

import numpy as np
import pytest

CLARIFY_DIR = Path(__file__).resolve().parents[3] / "containers" / "clarify"
if str(CLARIFY_DIR) not in sys.path:  # flat imports, as the job scripts use (conftest.py)
    sys.path.insert(0, str(CLARIFY_DIR))

import explain  # noqa: E402
import jobkit  # noqa: E402

xgb = jobkit.import_xgboost()
shap = pytest.importorskip("shap")


def data(n_rows: int, n_features: int, seed: int, missing: float = 0.0) -> np.ndarray:
    rng = np.random.default_rng(seed)
    rows = rng.normal(size=(n_rows, n_features))
    rows[rng.random(rows.shape) < missing] = np.nan
    return rows


def target(rows: np.ndarray) -> np.ndarray:
    x = np.nan_to_num(rows)
    return 2 * x[:, 0] + x[:, 1] * x[:, 2] + np.sin(3 * x[:, 3]) + (x[:, 0] > 0.5) * x[:, 4]


def train(rows: np.ndarray, label: np.ndarray, rounds: int, **params: object) -> object:
    params = {"max_depth": 6, "eta": 0.3, "nthread": 1, "seed": 0, **params}
    return xgb.train(params, xgb.DMatrix(rows, label), rounds)


def names(n: int) -> list[str]:
    return [f"f{i}" for i in range(n)]


def tree_oracle(booster: object, records: np.ndarray, baseline: np.ndarray) -> np.ndarray:
    explainer = shap.TreeExplainer(
        booster, data=baseline, feature_perturbation="interventional", model_output="raw"
    )
    return np.asarray(explainer.shap_values(records, check_additivity=False))


def margin(booster: object, rows: np.ndarray) -> np.ndarray:
    return booster.predict(xgb.DMatrix(rows), output_margin=True).reshape(len(rows), -1)


@pytest.fixture(scope="module")
def regression() -> tuple[object, np.ndarray, np.ndarray]:
    """Deep (depth 6), many trees, missing values in the training data, records and baseline."""
    rows = data(600, 6, seed=0, missing=0.1)
    booster = train(rows, target(rows), rounds=40)
    return booster, data(50, 6, seed=1, missing=0.15), data(7, 6, seed=2, missing=0.2)


def test_values_plus_expected_value_give_the_margin(regression: tuple) -> None:
    booster, records, baseline = regression
    result = explain.shap_values(booster, records, baseline, names(6))
    assert result.values.shape == (50, 6)
    assert result.method == "interventional_tree_shap"
    total = result.values.sum(axis=1) + result.expected_value
    np.testing.assert_allclose(total, margin(booster, records)[:, 0], rtol=0, atol=1e-4)
    baseline_mean = float(margin(booster, baseline).astype(np.float64).mean())
    assert result.expected_value == pytest.approx(baseline_mean, abs=1e-9)


def test_equals_shaps_interventional_tree_explainer(regression: tuple) -> None:
    booster, records, baseline = regression
    ours = explain.shap_values(booster, records, baseline, names(6)).values
    np.testing.assert_allclose(ours, tree_oracle(booster, records, baseline), rtol=0, atol=1e-6)


def test_is_not_xgboosts_path_dependent_contributions(regression: tuple) -> None:
    booster, records, baseline = regression
    ours = explain.shap_values(booster, records, baseline, names(6)).values
    path_dependent = booster.predict(xgb.DMatrix(records), pred_contribs=True)[:, :-1]
    assert np.abs(ours - path_dependent).max() > 0.05


def test_equals_kernel_shap_enumerating_every_coalition() -> None:
    """Clarify's Kernel SHAP, with enough samples to enumerate all 2**8 coalitions."""
    rows = data(400, 8, seed=3, missing=0.05)
    booster = train(rows, target(rows), rounds=15, max_depth=4)
    records, baseline = data(6, 8, seed=4, missing=0.1), data(5, 8, seed=5)
    ours = explain.shap_values(booster, records, baseline, names(8))

    def predict(batch: np.ndarray) -> np.ndarray:
        return margin(booster, batch)[:, 0]

    kernel = shap.KernelExplainer(predict, baseline)
    expected = kernel.shap_values(records, nsamples=2**8, l1_reg=False, silent=True)
    np.testing.assert_allclose(ours.values, expected, rtol=0, atol=1e-4)
    assert ours.expected_value == pytest.approx(float(kernel.expected_value), abs=1e-6)


def test_binary_classifier_is_explained_in_log_odds() -> None:
    rows = data(500, 5, seed=6, missing=0.1)
    label = (target(rows) > 0).astype(float)
    booster = train(rows, label, rounds=20, objective="binary:logistic", max_depth=5)
    records, baseline = data(30, 5, seed=7, missing=0.1), data(10, 5, seed=8)
    ours = explain.shap_values(booster, records, baseline, names(5))
    total = ours.values.sum(axis=1) + ours.expected_value
    np.testing.assert_allclose(total, margin(booster, records)[:, 0], rtol=0, atol=1e-4)
    np.testing.assert_allclose(ours.values, tree_oracle(booster, records, baseline), atol=1e-6)


def test_multiclass_one_class_at_a_time() -> None:
    rows = data(300, 5, seed=9)
    label = np.digitize(target(rows), [-1.0, 1.0]).astype(float)
    booster = train(rows, label, rounds=6, objective="multi:softprob", num_class=3, max_depth=4)
    records, baseline = data(12, 5, seed=10, missing=0.1), data(4, 5, seed=11)
    oracle = tree_oracle(booster, records, baseline)  # [records, features, classes]
    for group in range(3):
        ours = explain.shap_values(booster, records, baseline, names(5), output_group=group)
        np.testing.assert_allclose(ours.values, oracle[:, :, group], rtol=0, atol=1e-6)
        total = ours.values.sum(axis=1) + ours.expected_value
        np.testing.assert_allclose(total, margin(booster, records)[:, group], atol=1e-4)


def test_weighted_baseline_and_stump_trees() -> None:
    """Baseline rows weighted like shap's kmeans summary; trees that are a single leaf."""
    rows = data(200, 3, seed=12)
    booster = train(rows, rows[:, 0] * 3, rounds=5, max_depth=2, min_child_weight=150)
    records, baseline = data(8, 3, seed=13), data(3, 3, seed=14)
    weights = np.array([1.0, 2.0, 5.0])
    ours = explain.shap_values(booster, records, baseline, names(3), baseline_weights=weights)
    expected = float(np.average(margin(booster, baseline)[:, 0], weights=weights))
    assert ours.expected_value == pytest.approx(expected, abs=1e-6)
    total = ours.values.sum(axis=1) + ours.expected_value
    np.testing.assert_allclose(total, margin(booster, records)[:, 0], atol=1e-4)


def test_clarify_analysis_json_layout() -> None:
    result = explain.Explanation(
        values=np.array([[1.0, -2.0], [-3.0, 0.5]]), expected_value=9.5, feature_names=["a", "b"]
    )
    assert explain.clarify_explanation(result) == {
        "version": "1.0",
        "explanations": {
            "kernel_shap": {
                "label0": {
                    "global_shap_values": {"a": 2.0, "b": 1.25},
                    "expected_value": 9.5,
                    "method": "interventional_tree_shap",
                }
            }
        },
    }
    medians = explain.clarify_explanation(result, agg_method="median")
    assert medians["explanations"]["kernel_shap"]["label0"]["global_shap_values"] == {
        "a": -1.0,
        "b": -0.75,
    }
    squares = explain.clarify_explanation(result, label="rings", agg_method="mean_sq")
    assert squares["explanations"]["kernel_shap"]["rings"]["global_shap_values"]["b"] == 2.125
    table = list(csv.reader(io.StringIO(explain.local_shap_values_csv(result))))
    assert table == [["a_label0", "b_label0"], ["1.0", "-2.0"], ["-3.0", "0.5"]]


def test_bad_input_is_named(regression: tuple) -> None:
    booster, records, baseline = regression
    with pytest.raises(ValueError, match="records have 5 columns but there are 6 feature names"):
        explain.shap_values(booster, records[:, :5], baseline, names(6))
    with pytest.raises(ValueError, match="baseline must be a non-empty 2-D array"):
        explain.shap_values(booster, records, baseline[:0], names(6))
    with pytest.raises(ValueError, match="agg_method must be one of"):
        explain.clarify_explanation(
            explain.Explanation(np.zeros((1, 1)), 0.0, ["a"]), agg_method="max"
        )


def test_booster_with_feature_names() -> None:
    """The pipeline's boosters carry feature names; plain arrays are still accepted."""
    rows = data(200, 5, seed=15)
    booster = xgb.train(
        {"max_depth": 3, "nthread": 1}, xgb.DMatrix(rows, target(rows), feature_names=names(5)), 4
    )
    records, baseline = data(5, 5, seed=16), data(3, 5, seed=17)
    ours = explain.shap_values(booster, records, baseline, names(5))
    np.testing.assert_allclose(ours.values, tree_oracle(booster, records, baseline), atol=1e-6)
