"""Clarify's bias metrics: every value equals smclarify's (the oracle) within 1e-9.

The expected reports come from smclarify 0.5 (AWS's open-source implementation of Clarify's
bias metrics, a dev dependency only) run on the same data; the module never imports it.
smclarify needs object-dtype text columns under pandas 3, so the oracle gets a copy with them.
"""

from __future__ import annotations

import contextlib
import copy
import logging
import math
import sys
import warnings
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import numpy as np
import pandas as pd
import pytest

CLARIFY_DIR = Path(__file__).resolve().parents[3] / "containers" / "clarify"
if str(CLARIFY_DIR) not in sys.path:
    sys.path.insert(0, str(CLARIFY_DIR))

import bias  # noqa: E402

smclarify_report = pytest.importorskip("smclarify.bias.report")
TOLERANCE = 1e-9
STAGES = {
    "pre_training_bias_metrics": "PRE_TRAINING",
    "post_training_bias_metrics": "POST_TRAINING",
}


# ------------------------------------------------------------------------------- the oracle


def oracle(
    frame: pd.DataFrame,
    *,
    label: str,
    label_values_or_threshold: list[Any],
    facets: list[dict[str, Any]],
    group_variable: str | None = None,
    predicted_label: str | None = None,
) -> dict[str, Any]:
    """smclarify's reports for the same analysis, in analysis.json's layout."""
    r = smclarify_report
    frame = frame.copy()
    for column in frame.columns:
        if frame[column].dtype.name in ("str", "string"):
            frame[column] = frame[column].astype(object)
    group = frame[group_variable] if group_variable else None
    stages = ["pre_training_bias_metrics"]
    if predicted_label:
        stages.append("post_training_bias_metrics")
    report: dict[str, Any] = {}
    with quiet_oracle():
        label_text = r.label_value_or_threshold(frame[label], list(label_values_or_threshold))
        for key in stages:
            section = report[key] = {
                "label": label,
                "facets": {},
                "label_value_or_threshold": label_text,
            }
            for facet in facets:
                name = facet["name_or_index"]
                section["facets"][name] = r.bias_report(
                    frame,
                    r.FacetColumn(name, copy.copy(facet.get("value_or_threshold"))),
                    r.LabelColumn(label, frame[label], list(label_values_or_threshold)),
                    getattr(r.StageType, STAGES[key]),
                    r.LabelColumn(predicted_label, frame[predicted_label])
                    if predicted_label
                    else None,
                    group_variable=group,
                )
    return report


@contextlib.contextmanager
def quiet_oracle() -> Iterator[None]:
    """smclarify logs each metric error with its traceback and warns of pandas 3 deprecations."""
    logging.disable(logging.CRITICAL)
    try:
        with warnings.catch_warnings():
            warnings.simplefilter("ignore")
            yield
    finally:
        logging.disable(logging.NOTSET)


def assert_same(ours: Any, expected: Any, where: str = "report") -> None:
    """Equal structure and text; numbers within TOLERANCE."""
    if isinstance(expected, dict):
        assert isinstance(ours, dict), where
        assert list(ours) == list(expected), f"{where}: keys {list(ours)} != {list(expected)}"
        for key in expected:
            assert_same(ours[key], expected[key], f"{where}.{key}")
    elif isinstance(expected, list):
        assert isinstance(ours, list) and len(ours) == len(expected), where
        for index, (mine, theirs) in enumerate(zip(ours, expected, strict=True)):
            assert_same(mine, theirs, f"{where}[{index}]")
    elif isinstance(expected, float) and not isinstance(ours, str):
        assert isinstance(ours, float), f"{where}: {ours!r} is not a float"
        assert math.isfinite(ours) and abs(ours - expected) <= TOLERANCE, (
            f"{where}: {ours!r} != {expected!r}"
        )
    else:
        assert ours == expected, f"{where}: {ours!r} != {expected!r}"


def check_against_oracle(frame: pd.DataFrame, **analysis: Any) -> dict[str, Any]:
    ours = bias.bias_report(frame, **copy.deepcopy(analysis))
    expected = oracle(frame, **copy.deepcopy(analysis))
    assert_same(ours, expected)
    return ours


def metric_values(report: dict[str, Any], section: str, facet: str) -> dict[str, Any]:
    (group,) = report[section]["facets"][facet]
    return {m["name"]: m.get("error", m["value"]) for m in group["metrics"]}


# -------------------------------------------------------------------------------- data sets


@pytest.fixture(scope="module")
def abalone(tmp_path_factory: pytest.TempPathFactory) -> pd.DataFrame:
    """The bundled abalone data (facet `sex`, text) with a seeded noisy prediction of rings."""
    from sfn_mlops.data import example_dataset

    frame = pd.read_csv(example_dataset(tmp_path_factory.mktemp("abalone")))
    rng = np.random.default_rng(12)
    frame["rings"] = frame["rings"].astype(float)  # a regression target: thresholded
    frame["predicted_rings"] = np.round(frame["rings"] + rng.normal(0, 2.0, len(frame)), 1)
    return frame


def loans(rows: int = 2000, seed: int = 7) -> pd.DataFrame:
    """A seeded credit-style table: binary, multiclass and numeric outcomes, text and numeric
    facets, a numeric branch and a text region to condition on."""
    rng = np.random.default_rng(seed)
    gender = rng.choice(["female", "male", "nonbinary"], rows, p=[0.45, 0.5, 0.05])
    age = rng.integers(18, 80, rows)
    income = np.round(rng.lognormal(10.5, 0.5, rows), 2)
    branch = rng.integers(0, 6, rows)
    score = income / 40_000 + (gender == "male") * 0.4 + branch * 0.1 + rng.normal(0, 0.6, rows)
    predicted_score = score + rng.normal(0, 0.4, rows)
    grade = np.where(score > 1.6, "A", np.where(score > 0.9, "B", "C"))
    predicted_grade = np.where(
        predicted_score > 1.6, "A", np.where(predicted_score > 0.9, "B", "C")
    )
    return pd.DataFrame(
        {
            "gender": gender,
            "age": age,
            "income": income,
            "branch": branch,
            "approved": (score > 1.2).astype(int),
            "predicted_approved": (predicted_score > 1.2).astype(int),
            "grade": grade,
            "predicted_grade": predicted_grade,
        }
    )


# ----------------------------------------------------------------------- values vs oracle


def test_abalone_regression_label_through_a_threshold(abalone: pd.DataFrame) -> None:
    report = check_against_oracle(
        abalone,
        label="rings",
        label_values_or_threshold=[10],
        facets=[{"name_or_index": "sex", "value_or_threshold": ["F"]}],
        predicted_label="predicted_rings",
    )
    pre = report["pre_training_bias_metrics"]
    assert pre["label_value_or_threshold"] == "(10.0, 29.0]"
    assert [m["name"] for m in pre["facets"]["sex"][0]["metrics"]] == sorted(
        bias.PRE_TRAINING_METRICS
    )
    post = metric_values(report, "post_training_bias_metrics", "sex")
    assert list(post) == sorted(bias.POST_TRAINING_METRICS)
    assert all(isinstance(v, float) for k, v in post.items() if k != "CDDPL")


def test_abalone_each_sex_against_the_rest(abalone: pd.DataFrame) -> None:
    report = check_against_oracle(
        abalone,
        label="rings",
        label_values_or_threshold=[10],
        facets=[{"name_or_index": "sex"}],
        predicted_label="predicted_rings",
    )
    groups = report["post_training_bias_metrics"]["facets"]["sex"]
    assert [g["value_or_threshold"] for g in groups] == ["M", "F", "I"]


def test_abalone_continuous_facet(abalone: pd.DataFrame) -> None:
    report = check_against_oracle(
        abalone,
        label="rings",
        label_values_or_threshold=[10],
        facets=[{"name_or_index": "length", "value_or_threshold": [0.5]}],
        predicted_label="predicted_rings",
    )
    (group,) = report["pre_training_bias_metrics"]["facets"]["length"]
    assert group["value_or_threshold"] == "(0.5, 0.815]"


def test_abalone_integer_rings_are_categorical_as_in_clarify(abalone: pd.DataFrame) -> None:
    """28 distinct values in 4,177 rows: Clarify reads integer rings as classes, [9, 10, 11]
    as the positive classes (a multiclass label)."""
    frame = abalone.assign(
        rings=abalone["rings"].astype(int),
        predicted_rings=abalone["predicted_rings"].round().clip(1, 29).astype(int),
    )
    assert bias.column_kind(frame["rings"], [10]) == "categorical"
    report = check_against_oracle(
        frame,
        label="rings",
        label_values_or_threshold=[9, 10, 11],
        facets=[{"name_or_index": "sex", "value_or_threshold": ["M", "I"]}],
        predicted_label="predicted_rings",
    )
    assert report["pre_training_bias_metrics"]["label_value_or_threshold"] == "9,10,11"
    assert report["pre_training_bias_metrics"]["facets"]["sex"][0]["value_or_threshold"] == "M,I"


def test_binary_label_with_group_variable() -> None:
    report = check_against_oracle(
        loans(),
        label="approved",
        label_values_or_threshold=[1],
        facets=[{"name_or_index": "gender", "value_or_threshold": ["female"]}],
        group_variable="branch",
        predicted_label="predicted_approved",
    )
    assert isinstance(metric_values(report, "pre_training_bias_metrics", "gender")["CDDL"], float)
    assert isinstance(metric_values(report, "post_training_bias_metrics", "gender")["CDDPL"], float)


def test_multiclass_label_continuous_facet_and_group_variable() -> None:
    check_against_oracle(
        loans(seed=8),
        label="grade",
        label_values_or_threshold=["A", "B"],
        facets=[
            {"name_or_index": "age", "value_or_threshold": [60]},
            {"name_or_index": "gender"},
        ],
        group_variable="branch",
        predicted_label="predicted_grade",
    )


def test_text_group_variable_leaves_flip_test_without_numeric_features() -> None:
    frame = loans(seed=9).assign(region=lambda f: np.where(f["branch"] < 3, "north", "south"))
    report = check_against_oracle(
        frame,
        label="approved",
        label_values_or_threshold=[1],
        facets=[{"name_or_index": "gender", "value_or_threshold": ["female", "nonbinary"]}],
        group_variable="region",
        predicted_label="predicted_approved",
    )
    post = metric_values(report, "post_training_bias_metrics", "gender")
    assert post["FT"] == "FlipTest does not support non-numeric columns"


def test_infinite_values_are_written_as_clarify_writes_them() -> None:
    """a is never predicted positive: DI and DCA divide by zero; neither side has a false
    positive: both of TE's ratios are infinite, and TE is 0 by Clarify's rule."""
    frame = pd.DataFrame(
        {
            "facet": ["x"] * 6 + ["y"] * 6,
            "feature": np.arange(12, dtype=float),
            "label": list("nynynyyynyyn"),
            "predicted": list("nnnnnnynnynn"),
        }
    )
    report = check_against_oracle(
        frame,
        label="label",
        label_values_or_threshold=["y"],
        facets=[{"name_or_index": "facet", "value_or_threshold": ["y"]}],
        predicted_label="predicted",
    )
    post = metric_values(report, "post_training_bias_metrics", "facet")
    assert post["DI"] == "Infinity"
    assert post["DCA"] == "Infinity"
    assert post["TE"] == 0.0


# ------------------------------------------------------------------------------ the errors


def test_without_group_variable_the_conditional_metrics_carry_clarify_error(
    abalone: pd.DataFrame,
) -> None:
    report = check_against_oracle(
        abalone,
        label="rings",
        label_values_or_threshold=[10],
        facets=[{"name_or_index": "sex", "value_or_threshold": ["I"]}],
        predicted_label="predicted_rings",
    )
    for section, name in [
        ("pre_training_bias_metrics", "CDDL"),
        ("post_training_bias_metrics", "CDDPL"),
    ]:
        (entry,) = [m for m in report[section]["facets"]["sex"][0]["metrics"] if m["name"] == name]
        assert entry == {
            "name": name,
            "description": bias.DESCRIPTIONS[name],
            "value": None,
            "error": "Group variable is empty or not provided",
        }


def test_absent_facet_value_reports_every_metric_as_an_error(abalone: pd.DataFrame) -> None:
    report = check_against_oracle(
        abalone,
        label="rings",
        label_values_or_threshold=[10],
        facets=[{"name_or_index": "sex", "value_or_threshold": ["X"]}],
        predicted_label="predicted_rings",
    )
    pre = metric_values(report, "pre_training_bias_metrics", "sex")
    assert pre["CI"] == "CI: facet set is empty. Check that x[facet] has non-zero length."
    assert pre["KL"] == "No instance of common facet found, dataset may be too small"
    post = metric_values(report, "post_training_bias_metrics", "sex")
    assert post["DCA"] == "DCO: Facet set is empty"
    assert post["DI"] == "Facet set is empty"
    assert isinstance(post["GE"], float)  # GE does not depend on the facet


def test_whole_analysis_errors_name_the_problem(abalone: pd.DataFrame) -> None:
    with pytest.raises(bias.BiasAnalysisError, match="Facet column age is not present"):
        bias.bias_report(
            abalone, label="rings", label_values_or_threshold=[10],
            facets=[{"name_or_index": "age"}],
        )  # fmt: skip
    with pytest.raises(bias.BiasAnalysisError, match="Threshold values must be provided"):
        bias.bias_report(
            abalone, label="rings", label_values_or_threshold=[10],
            facets=[{"name_or_index": "length"}],
        )  # fmt: skip
    with pytest.raises(bias.BiasAnalysisError, match="Invalid metric_name"):
        bias.bias_report(
            abalone, label="rings", label_values_or_threshold=[10],
            facets=[{"name_or_index": "sex"}], pre_training_methods=["CI", "XX"],
        )  # fmt: skip
    with pytest.raises(bias.BiasAnalysisError, match="datatype is not the same"):
        bias.bias_report(
            abalone.assign(predicted_rings="x"), label="rings", label_values_or_threshold=[10],
            facets=[{"name_or_index": "sex"}], predicted_label="predicted_rings",
        )  # fmt: skip


def test_methods_select_metrics_and_stages(abalone: pd.DataFrame) -> None:
    report = bias.bias_report(
        abalone,
        label="rings",
        label_values_or_threshold=[10],
        facets=[{"name_or_index": "sex", "value_or_threshold": ["F"]}],
        predicted_label="predicted_rings",
        pre_training_methods=["KL", "CI"],
        post_training_methods=None,
    )
    assert list(report) == ["pre_training_bias_metrics"]
    assert list(metric_values(report, "pre_training_bias_metrics", "sex")) == ["CI", "KL"]


def test_text_columns_of_pandas_string_dtype_work_as_object_ones(abalone: pd.DataFrame) -> None:
    analysis: dict[str, Any] = dict(
        label="rings",
        label_values_or_threshold=[10],
        facets=[{"name_or_index": "sex", "value_or_threshold": ["F"]}],
        predicted_label="predicted_rings",
    )
    assert abalone["sex"].dtype.name == "str"
    as_object = abalone.assign(sex=abalone["sex"].astype(object))
    assert bias.bias_report(abalone, **analysis) == bias.bias_report(as_object, **analysis)


@pytest.mark.parametrize("columns", ["few integers", "integers", "reals", "many"])
def test_flip_test_neighbours_vote_as_scikit_learn_predicts(columns: str) -> None:
    """The fast neighbour search answers as scikit-learn's classifier, ties included: integer
    columns tie often (0-9: some ties settle, the rest go to scikit-learn; 0-3: more tied
    neighbours than are fetched), more than 15 columns go to scikit-learn's brute force."""
    from sklearn.neighbors import KNeighborsClassifier

    rng = np.random.default_rng(3)
    rows = {
        "few integers": lambda: rng.integers(0, 4, (3000, 3)).astype(float),
        "integers": lambda: rng.integers(0, 10, (3000, 3)).astype(float),
        "reals": lambda: rng.normal(size=(3000, 4)),
        "many": lambda: rng.normal(size=(600, 16)),
    }[columns]()
    labels = rng.random(len(rows)) < 0.4
    fit, query = rows[: len(rows) // 2], rows[len(rows) // 2 :]
    knn = KNeighborsClassifier(n_neighbors=5).fit(fit, labels[: len(fit)])
    expected = knn.predict(query)
    assert np.array_equal(bias.nearest_neighbours_vote(fit, labels[: len(fit)], query, 5), expected)
