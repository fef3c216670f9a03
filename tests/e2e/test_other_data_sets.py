"""Any tabular data set with a target column runs by config alone: binary and multiclass,
CSV and Parquet, with the gate on each problem type's default metric."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import numpy as np
import pandas as pd
import pytest

from sfn_mlops.data import example_dataset
from sfn_mlops.report import state_output

pytestmark = pytest.mark.e2e


@pytest.fixture(scope="module")
def abalone(tmp_path_factory: pytest.TempPathFactory) -> pd.DataFrame:
    return pd.read_csv(example_dataset(tmp_path_factory.mktemp("example")))


def _gate(aws: Any, name: str) -> dict[str, Any]:
    output = state_output(aws.history(name), "ReadEvaluation")
    assert output is not None, f"ReadEvaluation did not run in {name}"
    return dict(output["evaluation"])


def test_binary_target_of_strings_from_csv(
    abalone: pd.DataFrame, cli: Any, workspace: Path, aws: Any, tmp_path: Path
) -> None:
    data = tmp_path / "old_abalone.csv"
    binary = abalone.assign(old=(abalone.rings > 9).map({True: "yes", False: "no"}))
    binary.drop(columns="rings").to_csv(data, index=False)
    result = cli(
        workspace, "run", "--name", "binary", "--data", str(data), "--target", "old",
        "--problem-type", "binary", "--set", "categorical_columns=[sex]",
    )  # fmt: skip
    assert result.code == 0, result.out + result.err
    gate = _gate(aws, "binary")
    assert (gate["metric"], gate["direction"], gate["threshold"]) == ("auc", "maximize", 0.75)
    assert set(gate["metrics"]) == {"auc", "accuracy", "f1", "precision", "recall", "logloss"}
    assert gate["value"] > 0.75


def test_multiclass_target_from_parquet(
    abalone: pd.DataFrame, cli: Any, workspace: Path, aws: Any, tmp_path: Path
) -> None:
    data = tmp_path / "abalone.parquet"
    abalone.to_parquet(data)
    result = cli(
        workspace, "run", "--name", "multiclass", "--data", str(data), "--target", "sex",
        "--problem-type", "multiclass", "--set", "categorical_columns=[]",
        "--set", "gate.threshold=0.4",
    )  # fmt: skip
    assert result.code == 0, result.out + result.err
    gate = _gate(aws, "multiclass")
    assert (gate["metric"], gate["direction"]) == ("accuracy", "maximize")
    assert set(gate["metrics"]) == {"accuracy", "macro_f1", "logloss"}
    assert gate["value"] > 0.4  # three classes: chance is about a third


def test_a_semicolon_csv_with_text_columns_runs_by_naming_data_target_and_problem_type(
    abalone: pd.DataFrame, cli: Any, workspace: Path, aws: Any, tmp_path: Path
) -> None:
    data = tmp_path / "semicolons.csv"
    text = abalone.assign(
        old=(abalone.rings > 9).map({True: "yes", False: "no"}),
        size=pd.cut(abalone.length, 3, labels=["small", "medium", "large"]).astype(str),
    )
    text.drop(columns="rings").to_csv(data, index=False, sep=";")
    result = cli(
        workspace, "run", "--name", "semicolons", "--data", str(data), "--target", "old",
        "--problem-type", "binary",
    )  # fmt: skip
    assert result.code == 0, result.out + result.err
    header = next(line for line in result.out.splitlines() if line.startswith("Data: "))
    assert "features sex (cat), length (num)," in header and "size (cat)" in header
    assert header.endswith("; delimiter ';'")
    job = aws.sagemaker.describe_processing_job(ProcessingJobName="semicolons-preprocess")
    environment = job["Environment"]
    assert json.loads(environment["SFN_MLOPS_CATEGORICAL_COLUMNS"]) == ["sex", "size"]
    assert environment["SFN_MLOPS_CSV_DELIMITER"] == ";"
    assert _gate(aws, "semicolons")["value"] > 0.75


def test_a_deep_model_of_tiny_noisy_data_fails_the_overfitting_gate(
    cli: Any, workspace: Path, aws: Any, tmp_path: Path
) -> None:
    rng = np.random.default_rng(7)
    noisy = pd.DataFrame(rng.normal(size=(300, 4)), columns=["a", "b", "c", "d"])
    noisy["y"] = rng.normal(size=300)  # nothing to learn: a deep model memorizes the noise
    data = tmp_path / "noise.csv"
    noisy.to_csv(data, index=False)
    result = cli(
        workspace, "run", "--name", "overfit", "--data", str(data), "--target", "y",
        "--set", "gate.threshold=10", "--set", "gate.max_train_test_gap=0.5",
        "--set", "hyperparameters.max_depth=12", "--set", "hyperparameters.num_round=200",
        "--set", "clarify.enabled=false",
    )  # fmt: skip
    assert result.code == 1, result.out + result.err
    execution = aws.describe("overfit")
    overfitting = _gate(aws, "overfit")["overfitting"]
    assert overfitting["train"] < 0.2 < 0.5 < overfitting["gap"]
    assert (execution["error"], aws.entered_states("overfit")[-2:]) == (
        "ModelOverfits",
        ["OverfitGate", "ModelOverfits"],
    )
    assert execution["cause"].startswith("rmse is ") and execution["cause"].endswith(
        "gate.max_train_test_gap allows 0.5"
    )
    assert "Overfitting check: rmse " in result.out and "over gate.max_train_test_gap = 0.5" in (
        result.out
    )
