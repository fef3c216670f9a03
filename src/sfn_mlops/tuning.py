"""The config's ``tuning`` section: a SageMaker hyperparameter tuning job in place of training.

The section is checked once here (ranges, objective, limits) and turned into the request's own
shapes (``HyperParameterTuningJobConfig``, ``StaticHyperParameters``, ``MetricDefinitions``),
so the state machine passes them through unchanged and SageMaker sees what the user wrote.
"""

from __future__ import annotations

from typing import Any, Literal

from pydantic import BaseModel, ConfigDict, Field, model_validator

#: XGBoost's evaluation metrics the objective can name, by problem type (``train:`` or
#: ``validation:`` before them), and whether a tuning job minimizes or maximizes them.
OBJECTIVE_METRICS: dict[str, dict[str, str]] = {
    "regression": {"rmse": "Minimize", "mae": "Minimize", "rmsle": "Minimize", "mape": "Minimize"},
    "binary": {"auc": "Maximize", "aucpr": "Maximize", "logloss": "Minimize", "error": "Minimize"},
    "multiclass": {"mlogloss": "Minimize", "merror": "Minimize"},
}
#: The gate metric (evaluation.json's) that an XGBoost metric stands for, for the default
#: objective; a gate metric without one (r2, f1, ...) falls back to the problem's eval metric.
GATE_TO_XGBOOST = {"rmse": "rmse", "mse": "rmse", "mae": "mae", "auc": "auc", "logloss": "logloss"}
#: Matches what XGBoost prints each round for a channel's metric (`[12]\tvalidation-rmse:2.1`,
#: `#011` for the tab in SageMaker's logs); the tuning job keeps the last value of the log.
_NUMBER = r"([-+]?[0-9]*\.?[0-9]+(?:[eE][-+]?[0-9]+)?)"
SCALINGS = ("Auto", "Linear", "Logarithmic", "ReverseLogarithmic")


class _Strict(BaseModel):
    model_config = ConfigDict(extra="forbid")


class ParameterRange(_Strict):
    """One tuned hyperparameter: ``min``/``max`` (integer or continuous) or ``values``."""

    type: Literal["integer", "continuous", "categorical"]
    min: float | None = None
    max: float | None = None
    values: list[str | int | float | bool] | None = None
    scaling: Literal["Auto", "Linear", "Logarithmic", "ReverseLogarithmic"] = "Auto"

    @model_validator(mode="after")
    def _bounds(self) -> ParameterRange:
        if self.type == "categorical":
            if not self.values or self.min is not None or self.max is not None:
                raise ValueError("a categorical range lists its values (and no min or max)")
            return self
        if self.min is None or self.max is None or self.values is not None:
            raise ValueError(f"an {self.type} range sets min and max (and no values)")
        if self.min > self.max:
            raise ValueError(f"min ({self.min:g}) is above max ({self.max:g})")
        if self.type == "integer" and (self.min != int(self.min) or self.max != int(self.max)):
            raise ValueError("an integer range's min and max are whole numbers")
        if self.scaling in ("Logarithmic", "ReverseLogarithmic") and self.min <= 0:
            raise ValueError(f"{self.scaling} scaling needs min above 0, got {self.min:g}")
        if self.scaling == "ReverseLogarithmic" and self.max >= 1:
            raise ValueError(f"ReverseLogarithmic scaling needs max below 1, got {self.max:g}")
        return self

    def endpoints(self) -> list[str]:
        """The values XGBoost is asked to accept before the job starts."""
        if self.values is not None:
            return [_text(value) for value in self.values]
        assert self.min is not None and self.max is not None
        return [_number(self.min, self.type), _number(self.max, self.type)]

    def request(self, name: str) -> dict[str, Any]:
        if self.values is not None:
            return {"Name": name, "Values": [_text(value) for value in self.values]}
        assert self.min is not None and self.max is not None
        return {
            "Name": name,
            "MinValue": _number(self.min, self.type),
            "MaxValue": _number(self.max, self.type),
            "ScalingType": self.scaling,
        }


class TuningConfig(_Strict):
    """SageMaker's search over ``ranges``; the best training job's model goes on."""

    ranges: dict[str, ParameterRange] = Field(min_length=1)
    strategy: Literal["Random", "Grid", "Bayesian", "Hyperband"] = "Bayesian"
    # "validation:<xgboost metric>" or "train:<...>"; default: the gate metric's, on validation
    objective: str | None = None
    max_jobs: int = Field(20, ge=1, le=750)  # Grid: every combination, whatever this says
    max_parallel_jobs: int = Field(2, ge=1, le=100)
    early_stopping: Literal["Off", "Auto"] = "Off"
    random_seed: int | None = Field(None, ge=0)

    @model_validator(mode="after")
    def _limits(self) -> TuningConfig:
        if self.max_parallel_jobs > self.max_jobs and self.strategy != "Grid":
            raise ValueError(
                f"max_parallel_jobs ({self.max_parallel_jobs}) is above max_jobs "
                f"({self.max_jobs}); SageMaker rejects it"
            )
        if self.strategy == "Grid":
            numeric = [n for n, r in self.ranges.items() if r.type != "categorical"]
            if numeric:
                raise ValueError(
                    f"the Grid strategy takes categorical ranges only (as SageMaker's does): "
                    f"give {', '.join(numeric)} as values, e.g. {{type: categorical, "
                    "values: [3, 5, 7]}"
                )
        return self

    def resolved_objective(self, problem_type: str, gate_metric: str, eval_metric: str) -> str:
        if self.objective is None:
            return f"validation:{GATE_TO_XGBOOST.get(gate_metric, eval_metric)}"
        channel, _, metric = self.objective.partition(":")
        known = OBJECTIVE_METRICS[problem_type]
        if channel not in ("train", "validation") or metric not in known:
            choices = ", ".join(f"validation:{name}" for name in known)
            raise ValueError(
                f"tuning.objective: {self.objective!r} is not a metric of a {problem_type} "
                f"model's training; use one of {choices} (or train:...)"
            )
        return self.objective

    def execution_input(
        self, problem_type: str, objective: str, hyperparameters: dict[str, str]
    ) -> dict[str, Any]:
        """The request's shapes: the job config, the static hyperparameters (the tuned ones
        left out, the objective's metric evaluated) and the metric definition."""
        metric = objective.partition(":")[2]
        ranges: dict[str, list[dict[str, Any]]] = {
            "IntegerParameterRanges": [],
            "ContinuousParameterRanges": [],
            "CategoricalParameterRanges": [],
        }
        for name, parameter in self.ranges.items():
            key = f"{parameter.type.capitalize()}ParameterRanges"
            request = parameter.request(name)
            if parameter.type == "categorical":
                request.pop("ScalingType", None)
            ranges[key].append(request)
        job_config: dict[str, Any] = {
            "Strategy": self.strategy,
            "HyperParameterTuningJobObjective": {
                "Type": OBJECTIVE_METRICS[problem_type][metric],
                "MetricName": objective,
            },
            # Grid trains every combination: SageMaker takes no other number.
            "ResourceLimits": {"MaxParallelTrainingJobs": self.max_parallel_jobs}
            | ({} if self.strategy == "Grid" else {"MaxNumberOfTrainingJobs": self.max_jobs}),
            "ParameterRanges": ranges,
            "TrainingJobEarlyStoppingType": self.early_stopping,
        }
        if self.random_seed is not None:
            job_config["RandomSeed"] = self.random_seed
        static = {k: v for k, v in hyperparameters.items() if k not in self.ranges}
        evaluated = static.get("eval_metric", "").split(",")
        if metric not in evaluated:
            static["eval_metric"] = ",".join([m for m in evaluated if m] + [metric])
        return {
            "enabled": True,
            "job_config": job_config,
            "static_hyperparameters": static,
            "metric_definitions": [{"Name": objective, "Regex": metric_regex(objective)}],
        }


def metric_regex(objective: str) -> str:
    """``validation:rmse`` -> the regex that finds ``validation-rmse:<number>`` in the log."""
    channel, _, metric = objective.partition(":")
    return f"{channel}-{metric}:{_NUMBER}"


def _number(value: float, kind: str) -> str:
    return str(int(value)) if kind == "integer" else repr(float(value))


def _text(value: str | int | float | bool) -> str:
    return str(value).lower() if isinstance(value, bool) else str(value)
