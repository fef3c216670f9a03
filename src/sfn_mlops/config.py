"""The pipeline settings: one typed config that becomes the execution input.

A YAML/JSON file and ``--set key=value`` overrides are merged over the defaults and validated
once; every error names the key and what would be right.
"""

from __future__ import annotations

import difflib
import json
import re
from pathlib import Path
from typing import Any, Literal

import yaml
from pydantic import BaseModel, ConfigDict, Field, ValidationError, field_validator, model_validator

from sfn_mlops.tuning import TuningConfig

ProblemType = Literal["regression", "binary", "multiclass"]

METRICS: dict[str, dict[str, str]] = {
    "regression": {"mse": "minimize", "rmse": "minimize", "mae": "minimize", "r2": "maximize"},
    "binary": {
        "auc": "maximize",
        "accuracy": "maximize",
        "f1": "maximize",
        "precision": "maximize",
        "recall": "maximize",
        "logloss": "minimize",
    },
    "multiclass": {"accuracy": "maximize", "macro_f1": "maximize", "logloss": "minimize"},
}
DEFAULT_GATES: dict[str, dict[str, Any]] = {
    "regression": {"metric": "rmse", "threshold": 2.5},
    "binary": {"metric": "auc", "threshold": 0.75},
    "multiclass": {"metric": "accuracy", "threshold": 0.6},
}
OBJECTIVES = {
    "regression": ("reg:squarederror", "rmse"),
    "binary": ("binary:logistic", "auc"),
    "multiclass": ("multi:softprob", "mlogloss"),
}
BASE_HYPERPARAMETERS: dict[str, str] = {
    "num_round": "150",
    "max_depth": "5",
    "eta": "0.1",
    "subsample": "0.8",
    "min_child_weight": "1",
}
SAGEMAKER_ENV_VALUE_LIMIT = 256
EXAMPLE_DATASET = "abalone"

#: Clarify's bias metrics (pre-training, then post-training), as analysis.json names them.
PRE_TRAINING_METRICS = ("CI", "DPL", "KL", "JS", "LP", "TVD", "KS", "CDDL")
POST_TRAINING_METRICS = (
    "DPPL", "DI", "DCAcc", "DCR", "RD", "DAR", "DRR", "AD", "CDDPL", "TE", "FT",
)  # fmt: skip
BIAS_METRICS = PRE_TRAINING_METRICS + POST_TRAINING_METRICS
#: The bundled abalone data's Clarify settings: is a model's "older" (rings > 10, i.e. more
#: than 11.5 years) outcome as frequent for females as for the others? rings > 10 holds for
#: about a third of the abalone (the median is 9), so both outcomes are well represented.
ABALONE_CLARIFY: dict[str, Any] = {
    "facets": [{"name": "sex", "values": ["F"]}],
    "label_threshold": 10,
}
SHAP_RECORDS_CAP = 1000
MIN_TEST_ROWS = 20


class ConfigError(ValueError):
    """The user's config is wrong; the message says which key and what would be right."""


class _Strict(BaseModel):
    model_config = ConfigDict(extra="forbid", frozen=True)


class SplitConfig(_Strict):
    train: float = Field(0.7, gt=0, lt=1)
    validation: float = Field(0.15, gt=0, lt=1)
    test: float = Field(0.15, gt=0, lt=1)
    seed: int = 42
    #: Fewer test rows than this and the metrics, and the gate on them, mean little.
    min_test_rows: int = Field(MIN_TEST_ROWS, ge=1)

    @model_validator(mode="after")
    def _sums_to_one(self) -> SplitConfig:
        total = self.train + self.validation + self.test
        if abs(total - 1) > 1e-6:
            raise ValueError(f"train + validation + test must be 1, got {total:g}")
        return self


class GateConfig(_Strict):
    metric: str | None = None
    direction: Literal["minimize", "maximize"] | None = None
    threshold: float | None = None
    # The new model must beat the production model by this much on the metric (0: not worse).
    champion_margin: float = Field(0.0, ge=0)
    # The test metric may be worse than the training one by at most this (ModelOverfits).
    max_train_test_gap: float | None = Field(None, ge=0)
    # A level (e.g. 0.95): the gate metric's bootstrap interval at this level must meet the
    # threshold with its pessimistic bound. Unset, intervals are reported at 0.95, not gated on.
    confidence: float | None = Field(None, gt=0.5, lt=1)
    # A significance level (e.g. 0.05): the new model replaces production only if its paired
    # bootstrap improvement (margin included) is significant at this level.
    champion_significance: float | None = Field(None, gt=0, lt=0.5)


class FacetConfig(_Strict):
    """A sensitive column: categorical ``values`` (the disadvantaged group), or a ``threshold``
    for a continuous column (values above it form the group)."""

    name: str
    values: list[str | int | float] | None = None
    threshold: float | None = None

    @model_validator(mode="after")
    def _values_or_threshold(self) -> FacetConfig:
        if (self.values is None) == (self.threshold is None):
            raise ValueError(
                f"facet {self.name!r}: give either values (categorical) or threshold (continuous)"
            )
        if self.values is not None and not self.values:
            raise ValueError(f"facet {self.name!r}: values must name at least one value")
        return self


class ShapConfig(_Strict):
    """The explainability job's SHAP settings."""

    num_clusters: int = Field(10, ge=1, le=1000)  # baseline: k-means centroids of the data
    baseline: list[list[str | int | float | None]] | None = None  # or explicit rows (features)
    max_records: int = Field(SHAP_RECORDS_CAP, ge=1, le=1_000_000)  # of the test split
    num_samples: int | None = Field(None, ge=1)  # Kernel SHAP's coalitions (AWS only)
    agg_method: Literal["mean_abs", "median", "mean_sq"] = "mean_abs"


class ClarifyConfig(_Strict):
    """Clarify's bias check and explainability; absent (or ``enabled: false``) skips both."""

    enabled: bool = True
    facets: list[FacetConfig] = []
    label_values: list[str | int | float] | None = None
    label_threshold: float | None = None
    group_variable: str | None = None
    shap: ShapConfig = Field(default_factory=ShapConfig)
    bias_thresholds: dict[str, float] = {}

    @field_validator("bias_thresholds")
    @classmethod
    def _known_metrics(cls, value: dict[str, float]) -> dict[str, float]:
        for name, threshold in value.items():
            if name not in BIAS_METRICS:
                hint = difflib.get_close_matches(name, BIAS_METRICS, n=1)
                suggestion = f"; did you mean {hint[0]!r}?" if hint else ""
                raise ValueError(
                    f"{name!r} is not a Clarify bias metric{suggestion} "
                    f"Metrics: {', '.join(BIAS_METRICS)}"
                )
            if threshold < 0:
                raise ValueError(f"{name}: a threshold bounds |value|, so it must be >= 0")
        return value

    @model_validator(mode="after")
    def _complete(self) -> ClarifyConfig:
        if not self.enabled:
            return self
        if not self.facets:
            raise ValueError(
                "clarify.facets: name at least one facet, e.g. [{name: sex, values: [F]}]"
            )
        if self.label_values is not None and self.label_threshold is not None:
            raise ValueError("clarify: give label_values or label_threshold, not both")
        return self


NAME_PATTERN = r"^[a-zA-Z0-9](-*[a-zA-Z0-9]){0,62}$"  # SageMaker's resource names
#: The endpoint template.yaml's rollback alarms watch (its EndpointName parameter's default),
#: and their names.
STACK_ENDPOINT = "sfn-mlops"
STACK_ROLLBACK_ALARMS = (f"{STACK_ENDPOINT}-5xx-errors", f"{STACK_ENDPOINT}-model-latency")


class RegistryConfig(_Strict):
    """Where a model that passed the gates is registered, and who approves it."""

    model_package_group: str = Field("sfn-mlops-models", pattern=NAME_PATTERN)
    approval: Literal["auto", "manual"] = "auto"  # manual: the execution waits for a decision
    # How long a manual approval may take before the execution fails (ApprovalTimedOut).
    approval_timeout_seconds: int = Field(7 * 86400, ge=1, le=365 * 86400)


class CaptureConfig(_Strict):
    enabled: bool = True
    sampling_percentage: int = Field(100, ge=0, le=100)


class ABTestConfig(_Strict):
    """``strategy: ab``: how the test of the champion against the challenger ends.

    The scheduled evaluation (lambdas/ab_test) compares the variants' live quality (captured
    requests joined with ground truth) at planned looks: when each variant has ``min_samples``,
    ``2 * min_samples``, ... ``max_looks * min_samples`` labelled requests. Each look tests at
    ``alpha / max_looks`` (Bonferroni over the planned looks), so the chance of a wrong verdict
    over the whole test stays at most ``alpha``.
    """

    min_samples: int = Field(200, ge=10, le=1_000_000)  # labelled requests per variant per look
    alpha: float = Field(0.05, gt=0, lt=0.5)  # two-sided, over the whole test
    max_looks: int = Field(5, ge=1, le=100)  # planned looks; alpha is split over them
    # Then the test ends as ``on_timeout`` says, whatever the data (also after max_looks looks
    # without a verdict).
    max_duration_hours: float = Field(168.0, gt=0, le=24 * 90)
    on_timeout: Literal["keep_champion", "promote_challenger"] = "keep_champion"
    # After a win, each scheduled evaluation moves this much more traffic to the challenger
    # until it takes it all and replaces the champion.
    step_percent: int = Field(25, ge=1, le=100)
    # "Not many issues": the challenger is retired, whatever its quality, when its share of
    # server errors (Invocation5XXErrors / Invocations) exceeds the champion's by more than this.
    max_error_rate_increase: float = Field(0.01, ge=0, le=1)


class DeploymentConfig(_Strict):
    """How the registered model reaches the real-time endpoint (SageMaker's guardrails)."""

    enabled: bool = True
    endpoint_name: str = Field(STACK_ENDPOINT, pattern=NAME_PATTERN)
    strategy: Literal["all_at_once", "canary", "linear", "rolling", "ab"] = "all_at_once"
    instance_type: str = "ml.m5.large"
    instance_count: int = Field(1, ge=1, le=100)
    # SageMaker's bounds, as shares of the variant's capacity (API Reference,
    # TrafficRoutingConfig: CanarySize at most 50%, LinearStepSize 10-50%; RollingUpdatePolicy:
    # MaximumBatchSize 5-50%).
    canary_percent: int = Field(10, ge=1, le=50)  # CANARY: the first share of capacity
    linear_step_percent: int = Field(25, ge=10, le=50)  # LINEAR: each step's share
    rolling_batch_percent: int = Field(50, ge=5, le=50)  # rolling: instances per batch
    # Between traffic steps, and the bake period; default 60 for canary, linear and rolling,
    # 0 for all_at_once and ab (a plain switch).
    wait_seconds: int | None = Field(None, ge=0, le=3600)
    termination_wait_seconds: int = Field(0, ge=0, le=3600)  # old fleet kept after the shift
    max_execution_seconds: int = Field(1800, ge=600, le=14400)  # SageMaker's bounds
    # CloudWatch alarms that roll a canary, linear or rolling deployment back; None: the
    # stack's own alarms (template.yaml) when the endpoint is the stack's, else none.
    rollback_alarms: list[str] | None = None
    ab_challenger_share: float = Field(0.1, gt=0, lt=1)  # ab: the new model's traffic share
    ab: ABTestConfig = Field(default_factory=ABTestConfig)  # ab: when and how the test ends
    data_capture: CaptureConfig = Field(default_factory=CaptureConfig)
    # The longest wait between the state machine's DescribeEndpoint calls (it starts at 1 s
    # and doubles up to this).
    poll_seconds: int = Field(5, ge=1, le=300)
    timeout_seconds: int = Field(3600, ge=60, le=86400)  # then the execution fails

    @model_validator(mode="after")
    def _fits_the_execution_timeout(self) -> DeploymentConfig:
        """UpdateEndpoint refuses a MaximumExecutionTimeoutInSeconds that is not larger than
        the waits it holds (a ValidationException naming both): refused here, before a run."""
        waits = (self.wait_seconds or 0) + self.termination_wait_seconds
        if self.strategy in ("canary", "linear", "rolling") and self.max_execution_seconds <= waits:
            raise ValueError(
                f"deployment.max_execution_seconds ({self.max_execution_seconds}) must be larger "
                f"than wait_seconds + termination_wait_seconds ({waits}), as SageMaker requires"
            )
        return self


#: SageMaker accepts hourly schedules, every N hours, or daily, always on the hour.
MONITORING_SCHEDULE = r"^cron\(0 (\*|\*/([1-9]|1[0-9]|2[0-3])|([0-9]|1[0-9]|2[0-3])) \? \* \* \*\)$"


def schedule_interval(expression: str) -> int:
    """Seconds between two runs of a MONITORING_SCHEDULE expression (the longest gap)."""
    hours = expression.split()[1]
    if hours == "*":
        return 3600
    if hours.startswith("*/"):
        return int(hours[2:]) * 3600
    return 86_400


#: Model quality metrics (Model Monitor's names) and whether a larger value is worse.
QUALITY_METRICS: dict[str, dict[str, bool]] = {
    "regression": {"rmse": True, "mae": True, "mse": True, "r2": False},
    "binary": {"f1": False, "accuracy": False, "precision": False, "recall": False, "auc": False},
    "multiclass": {"accuracy": False, "weighted_f1": False},
}
MONITOR_PROBLEM_TYPES = {
    "regression": "Regression",
    "binary": "BinaryClassification",
    "multiclass": "MulticlassClassification",
}


#: A negative ISO 8601 duration in days, hours or minutes, as Model Monitor's offsets are
#: written (-P1D, -PT6H, -P1DT12H); the API takes at most 15 characters.
OFFSET_PATTERN = r"^-P(\d{1,4}D(T(\d{1,4}H(\d{1,4}M)?|\d{1,4}M))?|T(\d{1,4}H(\d{1,4}M)?|\d{1,4}M))$"


class ModelQualityMonitorConfig(_Strict):
    """Concept drift: predictions joined with the ground truth users upload, scored."""

    enabled: bool = True
    metric: str | None = None  # default: rmse, f1 or accuracy by problem type
    # The alarm's limit; default: the baseline's value made worse by ``tolerance``.
    threshold: float | None = None
    tolerance: float = Field(0.2, ge=0, le=10)
    # Ground truth that arrives late: each run scores the captures of [scheduled time +
    # start_time_offset, scheduled time + end_time_offset), e.g. -P8D and -P1D for labels that
    # take up to a week (Model Monitor's StartTimeOffset/EndTimeOffset). None: the last hour.
    start_time_offset: str | None = Field(None, pattern=OFFSET_PATTERN)
    end_time_offset: str | None = Field(None, pattern=OFFSET_PATTERN)

    @model_validator(mode="after")
    def _a_window(self) -> ModelQualityMonitorConfig:
        start, end = self.start_time_offset, self.end_time_offset
        if (start is None) != (end is None):
            raise ValueError(
                "monitoring.model_quality: give start_time_offset and end_time_offset together"
            )
        if start is not None and end is not None and _minutes(start) >= _minutes(end):
            raise ValueError(
                f"monitoring.model_quality: start_time_offset {start} must reach further back "
                f"than end_time_offset {end} (e.g. -P8D and -P1D)"
            )
        return self


def _minutes(offset: str) -> int:
    """-P1DT6H -> -1800: an offset that OFFSET_PATTERN accepted, in minutes."""
    parts = dict((unit, int(n)) for n, unit in re.findall(r"(\d+)([DHM])", offset))
    return -(parts.get("D", 0) * 1440 + parts.get("H", 0) * 60 + parts.get("M", 0))


#: A retraining window: a duration (``14d``, ``36h``, ``90m``, ISO 8601 ``P14D``/``PT36H``)
#: or the newest N rows (an integer).
WINDOW_DURATION = r"^(\d+[dhm]|P(?!$)(\d+D)?(T(?=\d)(\d+H)?(\d+M)?)?)$"


class RetrainingConfig(_Strict):
    """What a run trains and is judged on when there is data newer than the production model
    (lambdas/collect_data). Recent data is what the production model never saw: source files
    added or changed since its run, and labelled captured requests since then, or those within
    ``window``. The test split comes from recent rows only, so the production model and the
    new one are judged on the present."""

    # auto: the endpoint's captured requests that have ground truth join the data when there
    # are any; false: never; true: always (an error when the data cannot take them).
    captured_data: Literal["auto", True, False] = "auto"
    # Recent data: since the production model's run (None), a duration, or the newest N rows.
    window: str | int | None = None
    # At most this share of the training rows from older data (sampled, seeded). None: 0 for
    # a retraining a model-quality alarm started (the labels changed: older rows teach the old
    # world), 0.2 otherwise.
    older_share: float | None = Field(None, ge=0, lt=1)
    # Fewer recent rows than this: train and judge on all the data, as a first run does.
    min_recent_rows: int = Field(30, ge=1)

    @field_validator("window")
    @classmethod
    def _window_form(cls, value: str | int | None) -> str | int | None:
        if isinstance(value, bool) or (isinstance(value, int) and value < 1):
            raise ValueError(f"a row count must be a positive integer, got {value!r}")
        if isinstance(value, str) and not re.match(WINDOW_DURATION, value):
            raise ValueError(
                f"{value!r} is not a duration; use e.g. 14d, 36h, 90m, P14D or PT36H, or a row "
                "count such as 5000"
            )
        return value


class MonitoringConfig(_Strict):
    """Model Monitor on the endpoint, and the alarms that start a retraining."""

    enabled: bool | None = None  # default: on when the model is deployed with data capture
    schedule: str = Field("cron(0 * ? * * *)", pattern=MONITORING_SCHEDULE)
    # A feature drifts when the distance between its baseline and current distributions
    # passes this (Model Monitor's comparison_threshold).
    drift_threshold: float = Field(0.1, gt=0, le=1)
    # The alarms judge periods of this length (default: the schedule's interval, so each
    # monitoring result counts until the next one), of which ``datapoints_to_alarm`` out of
    # ``evaluation_periods`` must breach.
    alarm_period_seconds: int | None = Field(None, ge=60, le=86400, multiple_of=60)
    evaluation_periods: int = Field(1, ge=1, le=24)
    datapoints_to_alarm: int | None = Field(None, ge=1, le=24)
    retrain_on_alarm: bool = True
    model_quality: ModelQualityMonitorConfig = Field(default_factory=ModelQualityMonitorConfig)

    @property
    def alarm_period(self) -> int:
        return self.alarm_period_seconds or schedule_interval(self.schedule)

    @model_validator(mode="after")
    def _alarm_window_holds_a_run(self) -> MonitoringConfig:
        """CloudWatch evaluates a sliding window of ``period x evaluation_periods`` ending now,
        and Model Monitor publishes a run's metrics after the run (AWS's drift alarm sample
        uses 3600 s for its hourly schedule): a shorter window may never hold them."""
        interval, period = schedule_interval(self.schedule), self.alarm_period
        window = period * self.evaluation_periods
        if window < interval:
            raise ValueError(
                f"monitoring: alarm_period_seconds x evaluation_periods ({period} x "
                f"{self.evaluation_periods} = {window} s) is shorter than the schedule's "
                f"interval ({interval} s for {self.schedule}); a monitoring run's metrics would "
                f"leave the alarm's window before the next run, or never enter it. Use "
                f"alarm_period_seconds: {interval} (the default)"
            )
        limit = 604_800 if period >= 3600 else 86_400  # PutMetricAlarm, "Period"
        if window > limit:
            raise ValueError(
                f"monitoring: alarm_period_seconds x evaluation_periods ({window} s) is more "
                f"than CloudWatch allows ({limit} s"
                + ("" if period >= 3600 else " for periods under an hour")
                + ")"
            )
        return self


class PipelineConfig(_Strict):
    data: str = Field(
        EXAMPLE_DATASET,
        description="A local CSV/Parquet file or folder, an s3:// URI, or 'abalone' (bundled).",
    )
    target: str
    problem_type: ProblemType = "regression"
    categorical_columns: list[str] = []  # beside those the data shows are text
    numeric_columns: list[str] = []  # must be numeric (their non-numbers are named)
    csv_delimiter: str | None = Field(None, min_length=1, max_length=1)  # None: detected
    split: SplitConfig = Field(default_factory=SplitConfig)
    hyperparameters: dict[str, str | int | float | bool] = {}
    gate: GateConfig = Field(default_factory=GateConfig)
    instance_type: str = "ml.m5.xlarge"
    max_runtime_seconds: int = Field(3600, ge=1, le=432000)
    clarify: ClarifyConfig = Field(default_factory=lambda: ClarifyConfig(enabled=False))
    registry: RegistryConfig = Field(default_factory=RegistryConfig)
    deployment: DeploymentConfig = Field(default_factory=DeploymentConfig)
    # A hyperparameter tuning job instead of one training job (sfn_mlops.tuning).
    tuning: TuningConfig | None = None
    monitoring: MonitoringConfig = Field(default_factory=MonitoringConfig)
    retraining: RetrainingConfig = Field(default_factory=RetrainingConfig)

    @model_validator(mode="before")
    @classmethod
    def _example_defaults(cls, raw: Any) -> Any:
        """The bundled abalone data needs no settings; any other data set names its target."""
        if not isinstance(raw, dict):
            return raw
        if raw.get("data", EXAMPLE_DATASET) == EXAMPLE_DATASET:
            clarify = raw.get("clarify")
            if isinstance(clarify, dict):
                clarify = {**ABALONE_CLARIFY, **clarify}
            return {
                "target": "rings",
                "categorical_columns": ["sex"],
                **raw,
                "clarify": ABALONE_CLARIFY if clarify is None else clarify,
            }
        if "target" not in raw:
            raise ValueError(
                f"target: name the column to predict in {raw['data']} (e.g. --set target=price)"
            )
        return raw

    @field_validator("target")
    @classmethod
    def _target_named(cls, value: str) -> str:
        if not value.strip():
            raise ValueError("must name the column to predict")
        return value

    @model_validator(mode="after")
    def _gate_metric_fits(self) -> PipelineConfig:
        metric = self.gate.metric
        known = METRICS[self.problem_type]
        if metric is not None and metric not in known:
            raise ValueError(
                f"gate.metric {metric!r} is not a {self.problem_type} metric; "
                f"use one of {sorted(known)}"
            )
        if self.target in self.categorical_columns:
            raise ValueError(
                f"target {self.target!r} is also listed in categorical_columns; remove it there"
            )
        both = sorted(set(self.categorical_columns) & set(self.numeric_columns))
        if both:
            raise ValueError(
                f"column(s) {', '.join(map(repr, both))} are in both categorical_columns and "
                "numeric_columns; keep each in one"
            )
        self._check_clarify()
        return self

    def _check_clarify(self) -> None:
        clarify = self.clarify
        if not clarify.enabled:
            return
        for facet in clarify.facets:
            if facet.name == self.target:
                raise ValueError(
                    f"clarify.facets: {facet.name!r} is the target; a facet must be a feature"
                )
            if facet.threshold is not None and facet.name in self.categorical_columns:
                raise ValueError(
                    f"clarify.facets: {facet.name!r} is categorical; give values, not a threshold"
                )
        if clarify.group_variable == self.target:
            raise ValueError("clarify.group_variable is the target; it must be a feature")
        if self.problem_type == "regression":
            if clarify.label_threshold is None:
                raise ValueError(
                    "clarify.label_threshold: a regression target needs a threshold (values "
                    "above it are the positive outcome), e.g. --set clarify.label_threshold=10"
                )
        elif clarify.label_threshold is not None:
            raise ValueError(
                f"clarify.label_threshold applies to regression; a {self.problem_type} target "
                "takes clarify.label_values (the positive class(es))"
            )
        elif not clarify.label_values:
            raise ValueError(
                "clarify.label_values: name the positive class(es) of the target, "
                "e.g. --set clarify.label_values='[yes]'"
            )

    # derived settings -------------------------------------------------------------------
    def resolved_gate(self) -> dict[str, Any]:
        default = DEFAULT_GATES[self.problem_type]
        metric = self.gate.metric or default["metric"]
        threshold = self.gate.threshold
        if threshold is None:
            threshold = default["threshold"] if metric == default["metric"] else None
        if threshold is None:
            raise ConfigError(f"gate.threshold: set a threshold for gate.metric {metric!r}")
        direction = self.gate.direction or METRICS[self.problem_type][metric]
        return {
            "metric": metric,
            "direction": direction,
            "threshold": float(threshold),
            "champion_margin": self.gate.champion_margin,
            "max_train_test_gap": self.gate.max_train_test_gap,
            "confidence": self.gate.confidence,
            "champion_significance": self.gate.champion_significance,
        }

    def resolved_hyperparameters(self) -> dict[str, str]:
        """SageMaker takes hyperparameters as strings."""
        objective, eval_metric = OBJECTIVES[self.problem_type]
        merged: dict[str, Any] = {
            "objective": objective,
            "eval_metric": eval_metric,
            **BASE_HYPERPARAMETERS,
            **self.hyperparameters,
        }
        return {key: _hyperparameter_text(value) for key, value in merged.items()}

    def processing_env(self) -> dict[str, str]:
        env = {
            "SFN_MLOPS_TARGET": self.target,
            "SFN_MLOPS_PROBLEM_TYPE": self.problem_type,
            "SFN_MLOPS_CATEGORICAL_COLUMNS": json.dumps(self.categorical_columns),
            "SFN_MLOPS_SPLIT": json.dumps(self.split.model_dump(exclude={"min_test_rows"})),
        }
        if self.csv_delimiter is not None:
            env["SFN_MLOPS_CSV_DELIMITER"] = self.csv_delimiter
        for key, value in env.items():
            if len(value) > SAGEMAKER_ENV_VALUE_LIMIT:
                raise ConfigError(
                    f"{key} would be {len(value)} characters; SageMaker allows "
                    f"{SAGEMAKER_ENV_VALUE_LIMIT} per environment value (shorten the column names)"
                )
        return env

    def execution_input(self, data_uri: str) -> dict[str, Any]:
        """The Step Functions execution input (the contract with the state machine), marked as
        started by `sfn-mlops run` (`executions list` says who started each run)."""
        return {
            "started_by": "sfn-mlops run",
            "config": {
                "data_uri": data_uri,
                "target": self.target,
                "problem_type": self.problem_type,
                "processing_env": self.processing_env(),
                "hyperparameters": self.resolved_hyperparameters(),
                "instance_type": self.instance_type,
                "max_runtime_seconds": self.max_runtime_seconds,
                "gate": self.resolved_gate(),
                "clarify": self.clarify_input(),
                "registry": self.registry.model_dump(),
                "deployment": self.deployment_input(),
                "tuning": self.tuning_input(),
                "monitoring": self.monitoring_input(),
                "retraining": self.retraining.model_dump(),
            }
        }

    def monitoring_input(self) -> dict[str, Any]:
        """Model Monitor's settings; on by default when the model is deployed and captured."""
        monitoring, deployment = self.monitoring, self.deployment
        served = deployment.enabled and deployment.data_capture.enabled
        if monitoring.enabled and not served:
            raise ConfigError(
                "monitoring.enabled needs deployment.enabled and "
                "deployment.data_capture.enabled: Model Monitor reads the endpoint's capture"
            )
        if not (served if monitoring.enabled is None else monitoring.enabled):
            return {"enabled": False}
        periods = monitoring.evaluation_periods
        datapoints = monitoring.datapoints_to_alarm or periods
        if datapoints > periods:
            raise ConfigError(
                f"monitoring.datapoints_to_alarm ({datapoints}) must be at most "
                f"monitoring.evaluation_periods ({periods})"
            )
        return {
            "enabled": True,
            "schedule": monitoring.schedule,
            "drift_threshold": monitoring.drift_threshold,
            "alarm_period_seconds": monitoring.alarm_period,
            "evaluation_periods": periods,
            "datapoints_to_alarm": datapoints,
            "retrain_on_alarm": monitoring.retrain_on_alarm,
            "model_quality": self._model_quality_input(),
        }

    def _model_quality_input(self) -> dict[str, Any]:
        quality = self.monitoring.model_quality
        if not quality.enabled:
            return {"enabled": False}
        metrics = QUALITY_METRICS[self.problem_type]
        metric = quality.metric or next(iter(metrics))
        if metric not in metrics:
            raise ConfigError(
                f"monitoring.model_quality.metric {metric!r} is not a {self.problem_type} "
                f"metric of Model Monitor; choose one of {', '.join(metrics)}"
            )
        return {
            "enabled": True,
            "problem_type": MONITOR_PROBLEM_TYPES[self.problem_type],
            "metric": metric,
            "higher_is_worse": metrics[metric],
            "threshold": quality.threshold,
            "tolerance": quality.tolerance,
            "start_time_offset": quality.start_time_offset,
            "end_time_offset": quality.end_time_offset,
        }

    def tuning_input(self) -> dict[str, Any]:
        if self.tuning is None:
            return {"enabled": False}
        hyperparameters = self.resolved_hyperparameters()
        return self.tuning.execution_input(
            self.problem_type, self.tuning_objective(), hyperparameters
        )

    def tuning_objective(self) -> str:
        assert self.tuning is not None
        gate_metric = self.resolved_gate()["metric"]
        eval_metric = OBJECTIVES[self.problem_type][1]
        try:
            return self.tuning.resolved_objective(self.problem_type, gate_metric, eval_metric)
        except ValueError as err:
            raise ConfigError(str(err)) from err

    def deployment_input(self) -> dict[str, Any]:
        settings = self.deployment.model_dump()
        if settings["wait_seconds"] is None:
            stepped = settings["strategy"] in ("canary", "linear", "rolling")
            settings["wait_seconds"] = 60 if stepped else 0
        if settings["rollback_alarms"] is None:
            own = settings["endpoint_name"] == STACK_ENDPOINT
            settings["rollback_alarms"] = list(STACK_ROLLBACK_ALARMS) if own else []
        return settings

    def clarify_input(self) -> dict[str, Any]:
        """The Clarify settings in the execution input (PrepareClarify turns them into the
        analysis configs once the schema is known)."""
        clarify = self.clarify
        if not clarify.enabled:
            return {"enabled": False}
        label: list[Any] = (
            [clarify.label_threshold]
            if clarify.label_threshold is not None
            else list(clarify.label_values or [])
        )
        return {
            "enabled": True,
            "facets": [
                {
                    "name_or_index": facet.name,
                    "value_or_threshold": (
                        list(facet.values) if facet.values is not None else [facet.threshold]
                    ),
                }
                for facet in clarify.facets
            ],
            "label_values_or_threshold": label,
            "group_variable": clarify.group_variable,
            "shap": clarify.shap.model_dump(),
            "bias_thresholds": dict(clarify.bias_thresholds),
        }


def config_keys(model: type[BaseModel] = PipelineConfig, prefix: str = "") -> list[str]:
    """Every settable key as a dotted name, for `run --help` (hyperparameters: a free map)."""
    keys: list[str] = []
    for name, field in model.model_fields.items():
        annotation = field.annotation
        if isinstance(annotation, type) and issubclass(annotation, BaseModel):
            keys += config_keys(annotation, f"{prefix}{name}.")
        elif name != "hyperparameters":
            keys.append(f"{prefix}{name}")
    return keys


# loading ----------------------------------------------------------------------------------
def load_config(path: Path | None = None, overrides: list[str] | None = None) -> PipelineConfig:
    """Defaults, then the file, then ``key=value`` overrides (dotted keys reach nested ones);
    hyperparameters the config sets are then tried by XGBoost itself (sfn_mlops.hyperparameters).
    """
    raw: dict[str, Any] = _read_file(path) if path else {}
    for item in overrides or []:
        key, sep, value = item.partition("=")
        if not sep or not key:
            raise ConfigError(f"--set {item!r}: expected key=value, e.g. gate.threshold=2.0")
        _assign(raw, key.split("."), _parse_value(value))
    source = str(path) if path else "the command line"
    try:
        config = PipelineConfig.model_validate(raw)
    except ValidationError as err:
        raise ConfigError(_explain(err, source)) from err
    if config.tuning is not None:
        _check_tuning(config, source)
    if config.hyperparameters:
        from sfn_mlops.hyperparameters import problems

        found = problems(
            {key: _hyperparameter_text(value) for key, value in config.hyperparameters.items()},
            config.problem_type,
        )
        if found:
            lines = "\n".join(f"  - {problem}" for problem in found)
            raise ConfigError(f"invalid pipeline config in {source}:\n{lines}")
    return config


def _check_tuning(config: PipelineConfig, source: str) -> None:
    """Before any job: the objective fits the problem, and XGBoost takes each range's ends."""
    from sfn_mlops.hyperparameters import problems

    assert config.tuning is not None
    config.tuning_objective()
    found = [
        f"tuning.ranges.{name}: also set in hyperparameters; tune it or fix it, not both"
        for name in config.tuning.ranges
        if name in config.hyperparameters
    ]
    for name, parameter in config.tuning.ranges.items():
        for value in parameter.endpoints():
            found += [
                problem.replace(f"hyperparameters.{name}:", f"tuning.ranges.{name}:", 1)
                for problem in problems({name: value}, config.problem_type)
            ]
    if found:
        lines = "\n".join(f"  - {problem}" for problem in dict.fromkeys(found))
        raise ConfigError(f"invalid pipeline config in {source}:\n{lines}")


def _hyperparameter_text(value: str | int | float | bool) -> str:
    """As SageMaker passes it (and resolved_hyperparameters writes it)."""
    return str(value).lower() if isinstance(value, bool) else str(value)


def _read_file(path: Path) -> dict[str, Any]:
    if not path.is_file():
        raise ConfigError(f"config file {path} does not exist")
    try:
        content = yaml.safe_load(path.read_text(encoding="utf-8"))
    except yaml.YAMLError as err:
        raise ConfigError(f"{path} is not valid YAML/JSON: {err}") from err
    if content is None:
        return {}
    if not isinstance(content, dict):
        raise ConfigError(f"{path} must hold a mapping of settings, not {type(content).__name__}")
    return content


def _parse_value(text: str) -> Any:
    try:
        return yaml.safe_load(text)
    except yaml.YAMLError:
        return text


def _assign(tree: dict[str, Any], keys: list[str], value: Any) -> None:
    for key in keys[:-1]:
        tree = tree.setdefault(key, {})
        if not isinstance(tree, dict):
            raise ConfigError(f"{'.'.join(keys)}: {key} is not a section")
    tree[keys[-1]] = value


def _fields_at(location: tuple[Any, ...]) -> list[str]:
    model: Any = PipelineConfig
    for part in location[:-1]:
        field = model.model_fields.get(part)
        if field is None or not isinstance(field.annotation, type):
            return []
        model = field.annotation
    return list(getattr(model, "model_fields", {}))


#: Keys that an earlier release had, and where their meaning lives now.
MOVED_KEYS = {
    "monitoring.retrain_with_captured_data": "retraining.captured_data (auto by default: "
    "labelled captures join a retraining's data whenever there are any)",
}


def _explain(err: ValidationError, source: str) -> str:
    lines = [f"invalid pipeline config in {source}:"]
    for problem in err.errors():
        key = ".".join(str(p) for p in problem["loc"]) or "(top level)"
        moved = MOVED_KEYS.get(key)
        if problem["type"] == "extra_forbidden" and moved:
            lines.append(f"  - {key} moved: use {moved}")
        elif problem["type"] == "extra_forbidden":
            known = _fields_at(problem["loc"])
            hint = difflib.get_close_matches(str(problem["loc"][-1]), known, n=1)
            suggestion = f"; did you mean {hint[0]!r}?" if hint else ""
            lines.append(f"  - unknown key {key!r}{suggestion} Known keys: {', '.join(known)}")
        else:
            message = problem["msg"].removeprefix("Value error, ")
            got = f" (got {problem.get('input')!r})" if problem["loc"] else ""
            lines.append(f"  - {key}: {message}{got}" if problem["loc"] else f"  - {message}")
    return "\n".join(lines)
