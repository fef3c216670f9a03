from __future__ import annotations

import json
from pathlib import Path

import pytest

from sfn_mlops.config import ConfigError, load_config


def test_defaults_are_the_abalone_regression() -> None:
    config = load_config()
    payload = config.execution_input("s3://b/abalone.csv")["config"]
    assert payload["target"] == "rings"
    assert payload["gate"] == {"metric": "rmse", "direction": "minimize", "threshold": 2.5}
    assert payload["processing_env"]["SFN_MLOPS_CATEGORICAL_COLUMNS"] == '["sex"]'
    assert json.loads(payload["processing_env"]["SFN_MLOPS_SPLIT"]) == {
        "train": 0.7,
        "validation": 0.15,
        "test": 0.15,
        "seed": 42,
    }
    assert payload["hyperparameters"]["objective"] == "reg:squarederror"
    assert all(isinstance(v, str) for v in payload["hyperparameters"].values())


def test_file_then_overrides(tmp_path: Path) -> None:
    path = tmp_path / "pipeline.yaml"
    path.write_text(
        "data: data/churn.csv\ntarget: churned\nproblem_type: binary\n"
        "hyperparameters: {max_depth: 3}\n"
    )
    config = load_config(path, ["gate.threshold=0.8", "hyperparameters.eta=0.3"])
    gate = config.resolved_gate()
    assert gate == {"metric": "auc", "direction": "maximize", "threshold": 0.8}
    hyper = config.resolved_hyperparameters()
    assert (hyper["objective"], hyper["max_depth"], hyper["eta"]) == ("binary:logistic", "3", "0.3")
    assert config.categorical_columns == []


@pytest.mark.parametrize(
    ("overrides", "expected"),
    [
        (["gat.metric=rmse"], "unknown key 'gat'; did you mean 'gate'?"),
        (["gate.metrc=rmse"], "unknown key 'gate.metrc'; did you mean 'metric'?"),
        (["gate.metric=auc"], "gate.metric 'auc' is not a regression metric"),
        (["split.train=0.9"], "train + validation + test must be 1"),
        (["problem_type=ranking"], "problem_type: Input should be"),
        (["data=other.csv"], "target: name the column to predict in other.csv"),
        (["nonsense"], "expected key=value"),
    ],
)
def test_bad_config_names_the_key(overrides: list[str], expected: str) -> None:
    with pytest.raises(ConfigError) as err:
        load_config(None, overrides)
    assert expected in str(err.value)


def test_missing_config_file_is_named(tmp_path: Path) -> None:
    with pytest.raises(ConfigError, match="nope.yaml does not exist"):
        load_config(tmp_path / "nope.yaml")


def test_a_metric_without_default_threshold_asks_for_one() -> None:
    config = load_config(None, ["gate.metric=mae"])
    with pytest.raises(ConfigError, match="gate.threshold: set a threshold for gate.metric 'mae'"):
        config.resolved_gate()
