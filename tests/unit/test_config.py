from __future__ import annotations

import json
import re
from pathlib import Path
from typing import Any

import pytest
from pydantic import ValidationError

from sfn_mlops.config import ConfigError, PipelineConfig, load_config


def test_defaults_are_the_abalone_regression() -> None:
    config = load_config()
    payload = config.execution_input("s3://b/abalone.csv")["config"]
    assert payload["target"] == "rings"
    assert payload["gate"] == {
        "metric": "rmse",
        "direction": "minimize",
        "threshold": 2.5,
        "champion_margin": 0.0,
        "max_train_test_gap": None,
        "confidence": None,
        "champion_significance": None,
    }
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
    assert gate == {
        "metric": "auc",
        "direction": "maximize",
        "threshold": 0.8,
        "champion_margin": 0.0,
        "max_train_test_gap": None,
        "confidence": None,
        "champion_significance": None,
    }
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
        (["gate.confidence=95"], "gate.confidence: Input should be less than 1"),
        (["gate.confidence=0.5"], "gate.confidence: Input should be greater than 0.5"),
        (["gate.confidence=high"], "gate.confidence: Input should be a valid number"),
        (["gate.champion_significance=0"], "gate.champion_significance: Input should be greater"),
        (["gate.champion_significance=0.5"], "gate.champion_significance: Input should be less"),
    ],
)
def test_bad_config_names_the_key(overrides: list[str], expected: str) -> None:
    with pytest.raises(ConfigError) as err:
        load_config(None, overrides)
    assert expected in str(err.value)


def test_missing_config_file_is_named(tmp_path: Path) -> None:
    with pytest.raises(ConfigError, match="nope.yaml does not exist"):
        load_config(tmp_path / "nope.yaml")


def test_the_confidence_options_reach_the_gate() -> None:
    gate = load_config(
        None, ["gate.confidence=0.9", "gate.champion_significance=0.05"]
    ).resolved_gate()
    assert (gate["confidence"], gate["champion_significance"]) == (0.9, 0.05)


def test_a_metric_without_default_threshold_asks_for_one() -> None:
    config = load_config(None, ["gate.metric=mae"])
    with pytest.raises(ConfigError, match="gate.threshold: set a threshold for gate.metric 'mae'"):
        config.resolved_gate()


# clarify ------------------------------------------------------------------------------------
def test_abalone_clarify_defaults_and_overrides() -> None:
    config = load_config(None, ["clarify.bias_thresholds={DPPL: 0.1}"])
    assert config.clarify_input() == {
        "enabled": True,
        "facets": [{"name_or_index": "sex", "value_or_threshold": ["F"]}],
        "label_values_or_threshold": [10.0],
        "group_variable": None,
        "shap": {
            "num_clusters": 10,
            "baseline": None,
            "max_records": 1000,
            "num_samples": None,
            "agg_method": "mean_abs",
        },
        "bias_thresholds": {"DPPL": 0.1},
    }
    assert load_config(None, ["clarify.enabled=false"]).clarify_input() == {"enabled": False}


def test_other_data_has_no_clarify_unless_configured() -> None:
    assert load_config(None, ["data=x.csv", "target=y"]).clarify_input() == {"enabled": False}
    config = load_config(
        None,
        ["data=x.csv", "target=y", "problem_type=binary",
         "clarify={facets: [{name: age, threshold: 40}], label_values: [1]}"],
    )  # fmt: skip
    assert config.clarify_input()["facets"] == [
        {"name_or_index": "age", "value_or_threshold": [40.0]}
    ]


@pytest.mark.parametrize(
    ("overrides", "expected"),
    [
        (["clarify.facet=[]"], "unknown key 'clarify.facet'; did you mean 'facets'?"),
        (["clarify.bias_thresholds={DPLL: 0.1}"], "'DPLL' is not a Clarify bias metric; did you"),
        (["clarify.facets=[{name: rings, values: [1]}]"], "'rings' is the target"),
        (["clarify.facets=[{name: sex}]"], "give either values (categorical) or threshold"),
        (["clarify.facets=[{name: sex, threshold: 1}]"], "'sex' is categorical; give values"),
        (["clarify.group_variable=rings"], "group_variable is the target"),
        (["clarify.label_threshold=null"], "a regression target needs a threshold"),
    ],
)  # fmt: skip
def test_bad_clarify_config_names_the_key(overrides: list[str], expected: str) -> None:
    with pytest.raises(ConfigError) as err:
        load_config(None, overrides)
    assert expected in str(err.value)


def test_clarify_columns_and_values_are_checked_against_the_data(tmp_path: Path) -> None:
    from sfn_mlops.data import DataError, inspect_local

    data = tmp_path / "d.csv"
    data.write_text("sex,size,y\nF,1,0\nM,2,1\n")

    def check(*overrides: str) -> str:
        config = load_config(None, [f"data={data}", "target=y", "problem_type=binary", *overrides])
        with pytest.raises(DataError) as err:
            inspect_local(config, tmp_path)
        return str(err.value)

    base = "clarify={facets: [{name: sex, values: [F]}], label_values: [1]}"
    assert check("clarify={facets: [{name: sez, values: [F]}], label_values: [1]}").startswith(
        "clarify.facets: column 'sez' is not in"
    )
    assert check("clarify={facets: [{name: sex, values: [X]}], label_values: [1]}") == (
        "clarify.facets 'sex' value 'X' is not in the data; it holds: F, M"
    )
    assert check("clarify={facets: [{name: sex, values: [F]}], label_values: [2]}") == (
        "clarify.label_values: target 'y' value 2 is not in the data; it holds: 0, 1"
    )
    assert check(base, "clarify.group_variable=zone").startswith(
        "clarify.group_variable: column 'zone' is not in"
    )


def test_monitoring_is_on_when_the_model_is_deployed_with_capture() -> None:
    monitoring = PipelineConfig().execution_input("s3://b/d")["config"]["monitoring"]
    assert monitoring["enabled"] is True
    assert monitoring["schedule"] == "cron(0 * ? * * *)"
    assert monitoring["model_quality"] == {
        "enabled": True,
        "problem_type": "Regression",
        "metric": "rmse",
        "higher_is_worse": True,
        "threshold": None,
        "tolerance": 0.2,
        "start_time_offset": None,  # the last hour's captures
        "end_time_offset": None,
    }
    off = PipelineConfig(deployment={"data_capture": {"enabled": False}})
    assert off.execution_input("s3://b/d")["config"]["monitoring"] == {"enabled": False}


@pytest.mark.parametrize(
    ("settings", "message"),
    [
        (
            {"monitoring": {"enabled": True}, "deployment": {"enabled": False}},
            "monitoring.enabled needs deployment.enabled",
        ),
        (
            {"monitoring": {"model_quality": {"metric": "auc"}}},
            "'auc' is not a regression metric of Model Monitor; choose one of rmse, mae",
        ),
        (
            {"monitoring": {"evaluation_periods": 2, "datapoints_to_alarm": 3}},
            "datapoints_to_alarm (3) must be at most monitoring.evaluation_periods (2)",
        ),
    ],
)
def test_monitoring_settings_that_cannot_work_are_named(
    settings: dict[str, Any], message: str
) -> None:
    with pytest.raises(ConfigError, match=re.escape(message)):
        PipelineConfig(**settings).execution_input("s3://b/d")


@pytest.mark.parametrize(
    ("schedule", "period"),
    [("cron(0 * ? * * *)", 3600), ("cron(0 */6 ? * * *)", 21600), ("cron(0 3 ? * * *)", 86400)],
)
def test_the_alarm_period_is_the_schedules_interval_by_default(schedule: str, period: int) -> None:
    config = PipelineConfig(monitoring={"schedule": schedule})
    assert config.execution_input("s3://b/d")["config"]["monitoring"]["alarm_period_seconds"] == (
        period
    )


@pytest.mark.parametrize(
    ("monitoring", "message"),
    [
        (
            {"alarm_period_seconds": 60},
            "alarm_period_seconds x evaluation_periods (60 x 1 = 60 s) is shorter than the "
            "schedule's interval (3600 s for cron(0 * ? * * *))",
        ),
        (
            {"schedule": "cron(0 5 ? * * *)", "alarm_period_seconds": 3600,
             "evaluation_periods": 12},
            "(3600 x 12 = 43200 s) is shorter than the schedule's interval (86400 s",
        ),
        (
            {"schedule": "cron(0 5 ? * * *)", "evaluation_periods": 8},
            "alarm_period_seconds x evaluation_periods (691200 s) is more than CloudWatch allows "
            "(604800 s)",
        ),
    ],
)
def test_alarm_windows_that_miss_a_run_or_that_cloudwatch_refuses_are_named(
    monitoring: dict[str, Any], message: str
) -> None:
    with pytest.raises(ValidationError, match=re.escape(message)):
        PipelineConfig(monitoring=monitoring)
    assert PipelineConfig(monitoring={"alarm_period_seconds": 1800, "evaluation_periods": 2})


def test_a_monitoring_schedule_must_be_one_sagemaker_accepts() -> None:
    with pytest.raises(ValidationError, match="schedule"):
        PipelineConfig(monitoring={"schedule": "cron(15 * ? * * *)"})
    assert PipelineConfig(monitoring={"schedule": "cron(0 */6 ? * * *)"})


@pytest.mark.parametrize(
    ("overrides", "expected"),
    [
        (["deployment.canary_percent=60"], "deployment.canary_percent: Input should be less"),
        (["deployment.linear_step_percent=5"], "deployment.linear_step_percent: Input should be"),
        (["deployment.rolling_batch_percent=100"], "deployment.rolling_batch_percent: Input"),
        (
            ["deployment.strategy=canary", "deployment.wait_seconds=1800"],
            "deployment.max_execution_seconds (1800) must be larger than wait_seconds + "
            "termination_wait_seconds (1800)",
        ),
    ],
)
def test_deployment_settings_sagemaker_refuses_are_refused_first(
    overrides: list[str], expected: str
) -> None:
    """SageMaker's bounds (TrafficRoutingConfig, RollingUpdatePolicy, UpdateEndpoint)."""
    with pytest.raises(ConfigError, match=re.escape(expected)):
        load_config(None, overrides)
    load_config(None, ["deployment.strategy=linear", "deployment.linear_step_percent=50"])


def test_model_quality_can_wait_for_late_ground_truth() -> None:
    """Model Monitor's StartTimeOffset/EndTimeOffset: labels that arrive late are merged."""
    window = ["monitoring.model_quality.start_time_offset=-P8D"]
    window.append("monitoring.model_quality.end_time_offset=-P1D")
    quality = load_config(None, window).execution_input("s3://b/d.csv")["config"]["monitoring"]
    assert quality["model_quality"]["start_time_offset"] == "-P8D"
    assert quality["model_quality"]["end_time_offset"] == "-P1D"
    for overrides, expected in [
        (window[:1], "give start_time_offset and end_time_offset together"),
        (
            [window[0].replace("-P8D", "-PT1H"), window[1]],
            "start_time_offset -PT1H must reach further back than end_time_offset -P1D",
        ),
        (
            [window[0].replace("-P8D", "P8D"), window[1]],
            "monitoring.model_quality.start_time_offset: String should match pattern",
        ),
    ]:
        with pytest.raises(ConfigError, match=re.escape(expected)):
            load_config(None, overrides)
