"""Hyperparameters tried by XGBoost itself before anything runs (sfn_mlops.hyperparameters).

The expected messages are XGBoost 3.0.5's own words (the pinned version) or literals of ours;
every problem of a config is reported at once, each with its `hyperparameters.<name>` key.
"""

from __future__ import annotations

import pytest

from sfn_mlops.config import ConfigError, load_config
from sfn_mlops.hyperparameters import problems

DOCS = "(see https://xgboost.readthedocs.io/en/release_3.0.0/parameter.html)"


def test_a_misspelled_name_is_named_with_the_close_parameter() -> None:
    assert problems({"max_dept": "2"}, "regression") == [
        "hyperparameters.max_dept: not a parameter XGBoost uses with objective "
        f"reg:squarederror; did you mean 'max_depth'? {DOCS}"
    ]


def test_values_out_of_range_are_named_in_xgboosts_words_all_at_once() -> None:
    found = problems(
        {"max_depth": "-1", "subsample": "1.5", "eta": "0.3", "tree_method": "fast"},
        "regression",
    )

    assert found == [
        "hyperparameters.max_depth: value -1 for Parameter max_depth should be greater equal to 0",
        "hyperparameters.subsample: value 1.5 for Parameter subsample exceed bound [0,1]",
        "hyperparameters.tree_method: Invalid Input: 'fast', valid values are: "
        "{'approx', 'auto', 'exact', 'gpu_hist', 'hist'}",
    ]


def test_a_parameter_of_another_objective_is_unused_for_this_one() -> None:
    assert problems({"huber_slope": "1.5"}, "regression") == [
        "hyperparameters.huber_slope: not a parameter XGBoost uses with objective "
        f"reg:squarederror {DOCS}"
    ]
    assert problems({"objective": "reg:pseudohubererror", "huber_slope": "1.5"}, "regression") == []


def test_a_tree_parameter_with_the_linear_booster_is_unused() -> None:
    assert problems({"booster": "gblinear", "max_depth": "3"}, "regression") == [
        "hyperparameters.max_depth: not a parameter XGBoost uses with objective "
        f"reg:squarederror and booster gblinear {DOCS}"
    ]


@pytest.mark.parametrize(
    ("hyperparameters", "problem_type"),
    [
        ({"max_depth": "3", "eta": "0.05", "subsample": "0.5", "gamma": "1"}, "regression"),
        ({"objective": "reg:gamma", "lambda": "2"}, "regression"),
        ({"objective": "reg:logistic", "min_child_weight": "3"}, "regression"),
        ({"objective": "count:poisson", "max_delta_step": "0.7"}, "regression"),
        ({"scale_pos_weight": "3", "max_depth": "2"}, "binary"),
        ({"num_class": "4", "max_depth": "2", "eval_metric": "mlogloss,merror"}, "multiclass"),
        ({"eval_metric": "rmse,mae", "num_round": "9", "early_stopping_rounds": "3"}, "regression"),
        ({"sagemaker_program": "train.py", "seed": "7"}, "regression"),
    ],
)
def test_good_hyperparameters_pass(hyperparameters: dict[str, str], problem_type: str) -> None:
    assert problems(hyperparameters, problem_type) == []


def test_the_scripts_own_and_objective_checks() -> None:
    found = problems(
        {"num_round": "0", "early_stopping_rounds": "soon", "objective": "binary:hinge"}, "binary"
    )

    assert found == [
        "hyperparameters.num_round: 0 is below its minimum 1",
        "hyperparameters.early_stopping_rounds: 'soon' is not an integer",
        "hyperparameters.objective: 'binary:hinge' does not fit problem_type binary; "
        "use binary:logistic*",
    ]
    assert problems({"num_class": "3"}, "binary") == [
        "hyperparameters.num_class: applies to multiclass only (problem_type is binary)"
    ]


def test_load_config_rejects_them_naming_the_source() -> None:
    with pytest.raises(ConfigError) as raised:
        load_config(None, ["hyperparameters.max_dept=2", "hyperparameters.colsample_bytree=2"])

    assert str(raised.value) == (
        "invalid pipeline config in the command line:\n"
        "  - hyperparameters.max_dept: not a parameter XGBoost uses with objective "
        f"reg:squarederror; did you mean 'max_depth'? {DOCS}\n"
        "  - hyperparameters.colsample_bytree: value 2 for Parameter colsample_bytree exceed "
        "bound [0,1]"
    )


def test_booleans_are_passed_as_sagemaker_writes_them() -> None:
    config = load_config(None, ["hyperparameters.disable_default_eval_metric=true"])

    assert config.resolved_hyperparameters()["disable_default_eval_metric"] == "true"
