"""Training job: hyperparameter handling, the model it saves, and its failure reasons."""

from __future__ import annotations

import json
from collections.abc import Callable
from pathlib import Path

import pytest
import train
import xgboost as xgb
from jobkit import UserError

SCHEMA = {"target": "rings", "problem_type": "regression", "features": ["a"], "categorical": {}}


def sm_env(folder: Path, tmp_path: Path, **hps: object) -> dict[str, str]:
    """The SM_* variables as the SageMaker training toolkit sets them."""
    return {
        "SM_CHANNEL_TRAIN": str(folder / "out/train"),
        "SM_CHANNEL_VALIDATION": str(folder / "out/validation"),
        "SM_CHANNEL_SCHEMA": str(folder / "out/schema"),
        "SM_MODEL_DIR": str(tmp_path / "model"),
        "SM_OUTPUT_DATA_DIR": str(tmp_path / "output/data"),
        "SM_OUTPUT_DIR": str(tmp_path / "output"),
        "SM_NUM_CPUS": "1",
        "SM_HPS": json.dumps({"sagemaker_program": "train.py", **hps}),
    }


def test_cli_hyperparameters_take_both_spellings() -> None:
    argv = ["--num_round", "5", "--eta=0.3", "--objective", "reg:squarederror"]
    assert train.cli_hyperparameters(argv) == {
        "num_round": "5",
        "eta": "0.3",
        "objective": "reg:squarederror",
    }


def test_command_line_beats_sm_hps_and_sagemaker_keys_are_dropped() -> None:
    merged = train.merge_hyperparameters(
        '{"num_round": 10, "max_depth": 4, "sagemaker_region": "us-east-1"}', {"num_round": "20"}
    )
    assert merged == {"num_round": "20", "max_depth": 4}


def test_resolve_casts_numbers_and_defaults_the_objective() -> None:
    params, rounds, early = train.resolve_hyperparameters(
        {
            "num_round": "20",
            "eta": "0.3",
            "max_depth": "4",
            "early_stopping_rounds": "5",
            "eval_metric": "rmse,mae",
        },
        SCHEMA,
    )
    assert (rounds, early) == (20, 5)
    assert params == {
        "eta": 0.3,
        "max_depth": 4,
        "eval_metric": ["rmse", "mae"],
        "objective": "reg:squarederror",
    }


def test_multiclass_num_class_comes_from_the_labels() -> None:
    schema = {**SCHEMA, "problem_type": "multiclass", "labels": ["a", "b", "c"]}
    params, _, _ = train.resolve_hyperparameters({"num_round": "3"}, schema)
    assert params == {"objective": "multi:softprob", "num_class": 3}
    with pytest.raises(
        UserError, match=r"num_class=4 but the data has 3 classes \['a', 'b', 'c'\]"
    ):
        train.resolve_hyperparameters({"num_round": "3", "num_class": "4"}, schema)


@pytest.mark.parametrize(
    ("hps", "message"),
    [
        ({}, "hyperparameter num_round is required"),
        ({"num_round": "abc"}, "hyperparameter num_round='abc' must be an integer >= 1"),
        ({"num_round": "0"}, "hyperparameter num_round=0 must be an integer >= 1"),
        ({"num_round": "5", "early_stopping_rounds": "x"}, "early_stopping_rounds='x'"),
        ({"num_round": "5", "eta": "fast"}, "hyperparameter eta='fast' must be a number"),
        (
            {"num_round": "5", "max_depth": "deep"},
            "hyperparameter max_depth='deep' must be an integer",
        ),
        (
            {"num_round": "5", "objective": "binary:logistic"},
            "objective='binary:logistic' does not fit",
        ),
    ],
)
def test_bad_hyperparameters_name_the_key(hps: dict, message: str) -> None:
    with pytest.raises(UserError) as caught:
        train.resolve_hyperparameters(hps, SCHEMA)
    assert message in str(caught.value)


def test_main_trains_a_loadable_self_describing_model(
    trained: Callable[[str], Path], tmp_path: Path
) -> None:
    folder = trained("regression")
    env = sm_env(folder, tmp_path, num_round=50, max_depth=3)
    assert train.main(["--num_round", "6", "--eta", "0.5"], env=env) == 0
    booster = xgb.Booster()
    booster.load_model(str(tmp_path / "model/xgboost-model"))
    assert booster.num_boosted_rounds() == 6  # the command line won over SM_HPS
    assert booster.feature_names == ["sex", "length", "whole_weight"]
    schema = json.loads((tmp_path / "model/schema.json").read_text())
    assert schema == json.loads((folder / "out/schema/schema.json").read_text())
    metrics = json.loads((tmp_path / "output/data/training_metrics.json").read_text())
    assert set(metrics) == {"final", "best_iteration", "rounds", "train_seconds"}
    assert set(metrics["final"]) == {"train", "validation"}
    assert set(metrics["final"]["validation"]) == {"rmse"}
    assert (metrics["best_iteration"], metrics["rounds"]) == (5, 6)
    assert not (tmp_path / "output/failure").exists()


def test_early_stopping_keeps_the_best_rounds(
    trained: Callable[[str], Path], tmp_path: Path
) -> None:
    folder = trained("binary")
    env = sm_env(folder, tmp_path, num_round=200, eta=0.9, max_depth=6, early_stopping_rounds=2)
    assert train.main([], env=env) == 0
    metrics = json.loads((tmp_path / "output/data/training_metrics.json").read_text())
    booster = xgb.Booster()
    booster.load_model(str(tmp_path / "model/xgboost-model"))
    assert metrics["rounds"] < 200
    assert booster.num_boosted_rounds() == metrics["best_iteration"] + 1


def test_bad_hyperparameter_writes_a_user_error(
    trained: Callable[[str], Path], tmp_path: Path
) -> None:
    env = sm_env(trained("regression"), tmp_path)
    assert train.main(["--num_round", "ten"], env=env) == 1
    assert (tmp_path / "output/failure").read_text() == (
        "UserError: hyperparameter num_round='ten' must be an integer >= 1"
    )


def test_xgboost_rejection_is_an_algorithm_error(
    trained: Callable[[str], Path], tmp_path: Path
) -> None:
    env = sm_env(trained("regression"), tmp_path)
    assert train.main(["--num_round", "3", "--max_depth", "-1"], env=env) == 1
    reason = (tmp_path / "output/failure").read_text()
    assert reason.startswith("AlgorithmError: xgboost failed during training: ")
    assert "value -1 for Parameter max_depth should be greater equal to 0" in reason


def test_missing_train_channel_is_a_user_error(
    trained: Callable[[str], Path], tmp_path: Path
) -> None:
    env = sm_env(trained("regression"), tmp_path, num_round=2)
    del env["SM_CHANNEL_TRAIN"]
    assert train.main([], env=env) == 1
    assert (tmp_path / "output/failure").read_text() == (
        "UserError: the train channel is missing (SM_CHANNEL_TRAIN is not set)"
    )
