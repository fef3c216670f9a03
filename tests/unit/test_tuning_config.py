"""The config's tuning section: checked before any job, turned into SageMaker's request shapes."""

from __future__ import annotations

import re

import pytest

from sfn_mlops.config import ConfigError, load_config
from sfn_mlops.tuning import metric_regex

RANGES = (
    "tuning={ranges: {max_depth: {type: integer, min: 3, max: 8}, "
    "eta: {type: continuous, min: 0.05, max: 0.3, scaling: Logarithmic}, "
    "booster: {type: categorical, values: [gbtree, dart]}}, max_jobs: 6, random_seed: 3}"
)


def _tuning(*overrides: str) -> dict:
    config = load_config(None, list(overrides))
    return dict(config.execution_input("s3://b/data.csv")["config"]["tuning"])


def test_without_a_tuning_section_the_pipeline_trains_once() -> None:
    assert _tuning() == {"enabled": False}


def test_ranges_objective_and_limits_in_sagemakers_shapes() -> None:
    tuning = _tuning(RANGES)
    assert tuning["enabled"] is True
    job = tuning["job_config"]
    assert job["Strategy"] == "Bayesian" and job["RandomSeed"] == 3
    assert job["HyperParameterTuningJobObjective"] == {
        "Type": "Minimize",
        "MetricName": "validation:rmse",  # the gate metric, on the validation channel
    }
    assert job["ResourceLimits"] == {"MaxNumberOfTrainingJobs": 6, "MaxParallelTrainingJobs": 2}
    assert job["ParameterRanges"] == {
        "IntegerParameterRanges": [
            {"Name": "max_depth", "MinValue": "3", "MaxValue": "8", "ScalingType": "Auto"}
        ],
        "ContinuousParameterRanges": [
            {"Name": "eta", "MinValue": "0.05", "MaxValue": "0.3", "ScalingType": "Logarithmic"}
        ],
        "CategoricalParameterRanges": [{"Name": "booster", "Values": ["gbtree", "dart"]}],
    }
    static = tuning["static_hyperparameters"]
    assert "max_depth" not in static and "eta" not in static  # tuned, so not static
    assert static["num_round"] == "150" and static["eval_metric"] == "rmse"
    (definition,) = tuning["metric_definitions"]
    assert definition["Name"] == "validation:rmse"


def test_the_metric_regex_reads_xgboosts_round_lines_locally_and_in_sagemaker() -> None:
    regex = re.compile(metric_regex("validation:auc"))
    for line in ("[149]\ttrain-auc:0.99\tvalidation-auc:0.8512", "[149]#011validation-auc:0.8512"):
        found = regex.findall(line)
        assert found == ["0.8512"], line


def test_an_objective_of_another_metric_is_evaluated_during_training() -> None:
    tuning = _tuning(
        "problem_type=binary", "target=sex", "categorical_columns=[]", "gate.threshold=0.5",
        "clarify.enabled=false",
        "tuning={ranges: {max_depth: {type: integer, min: 2, max: 4}}, "
        "objective: validation:logloss}",
    )  # fmt: skip
    assert tuning["job_config"]["HyperParameterTuningJobObjective"] == {
        "Type": "Minimize",
        "MetricName": "validation:logloss",
    }
    assert tuning["static_hyperparameters"]["eval_metric"] == "auc,logloss"


@pytest.mark.parametrize(
    ("setting", "message"),
    [
        ("{max_depth: {type: integer, min: 9, max: 8}}", r"min \(9\) is above max \(8\)"),
        ("{max_dpth: {type: integer, min: 3, max: 8}}", "tuning.ranges.max_dpth: .*'max_depth'"),
        ("{max_depth: {type: integer, min: -1, max: 8}}", "tuning.ranges.max_depth: value -1"),
        ("{eta: {type: continuous, min: 0, max: 0.3, scaling: Logarithmic}}", "needs min above 0"),
        ("{booster: {type: categorical}}", "lists its values"),
    ],
)
def test_a_bad_range_is_named_before_anything_runs(setting: str, message: str) -> None:
    with pytest.raises(ConfigError, match=message):
        load_config(None, [f"tuning={{ranges: {setting}}}"])


@pytest.mark.parametrize(
    ("extra", "message"),
    [
        ("objective: validation:auc", "'validation:auc' is not a metric of a regression"),
        ("max_jobs: 2, max_parallel_jobs: 3", r"max_parallel_jobs \(3\) is above max_jobs \(2\)"),
        (
            "strategy: Grid, ranges: {eta: {type: continuous, min: 0.1, max: 0.2}}",
            "the Grid strategy takes categorical ranges only .*: give eta as values",
        ),
    ],
)
def test_a_bad_objective_or_limit_is_named(extra: str, message: str) -> None:
    ranges = "" if "ranges" in extra else "ranges: {max_depth: {type: integer, min: 3, max: 8}}, "
    with pytest.raises(ConfigError, match=message):
        load_config(None, [f"tuning={{{ranges}{extra}}}"])


def test_a_hyperparameter_both_fixed_and_tuned_is_refused() -> None:
    with pytest.raises(ConfigError, match="tuning.ranges.max_depth: also set in hyperparameters"):
        load_config(
            None,
            [
                "hyperparameters.max_depth=6",
                "tuning={ranges: {max_depth: {type: integer, min: 3, max: 8}}}",
            ],
        )


def test_a_grid_trains_every_combination() -> None:
    tuning = _tuning(
        "tuning={strategy: Grid, ranges: {max_depth: {type: categorical, values: [3, 5]}}}"
    )
    assert tuning["job_config"]["ResourceLimits"] == {"MaxParallelTrainingJobs": 2}
