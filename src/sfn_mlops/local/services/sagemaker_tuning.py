"""SageMaker hyperparameter tuning jobs: CreateHyperParameterTuningJob, Describe, List, Stop and
ListTrainingJobsForHyperParameterTuningJob, answered in SageMaker's shapes.

Create checks the request as SageMaker does before anything runs (the limits, each range, the
objective among the metric definitions, a hyperparameter both static and tuned, Grid's
categorical ranges and its size), then what the local runtime cannot run (the training job
definition is checked as CreateTrainingJob's request would be; Hyperband, warm start, Autotune,
several training job definitions and convergence detection are refused by name). The search
runs in the service (``sfn_mlops.local.jobs.tuning``); each training job it launches is an
ordinary local training job whose DescribeTrainingJob also gives ``TuningJobArn``, the
``HyperParameters`` it ran with (the static ones, the tuned ones and the
``_tuning_objective_metric`` SageMaker adds) and ``FinalMetricDataList``.

Messages quoted from SageMaker: the combinations check, "A metric is required for this
hyperparameter tuning job objective...", ResourceInUse and ResourceNotFound, and the failure
reason "No training job succeeded after N attempts..."; the other checks are SageMaker's rules
(API reference and developer guide) in our words.
"""

from __future__ import annotations

import copy
import re
import secrets
from collections.abc import Callable
from typing import Any

from sfn_mlops.local import jobs
from sfn_mlops.local.errors import AwsError, validation
from sfn_mlops.local.jobs import tuning
from sfn_mlops.local.metadata import AlreadyExists
from sfn_mlops.local.services.sagemaker_hosting import in_window, page
from sfn_mlops.local.shapes import timestamp

MAX_TUNED = 30  # tunable hyperparameters of a tuning job (developer guide: 30 in total)
MAX_HYPERPARAMETERS = 100  # static + tunable
_RANGE_KINDS = (
    ("IntegerParameterRanges", "Integer"),
    ("ContinuousParameterRanges", "Continuous"),
    ("CategoricalParameterRanges", "Categorical"),
)
#: Members of a training job definition that the training jobs it launches take as they are.
_DEFINITION_TO_TRAINING = (
    "AlgorithmSpecification",
    "RoleArn",
    "InputDataConfig",
    "VpcConfig",
    "OutputDataConfig",
    "ResourceConfig",
    "StoppingCondition",
    "EnableNetworkIsolation",
    "EnableInterContainerTrafficEncryption",
    "EnableManagedSpotTraining",
    "CheckpointConfig",
    "RetryStrategy",
    "Environment",
)
_EMPTY_STATUS_COUNTERS = (
    "Completed",
    "InProgress",
    "RetryableError",
    "NonRetryableError",
    "Stopped",
)


def _unsupported(what: str) -> AwsError:
    return validation(f"{what} is not emulated locally; run with --aws to use the real service")


def _number(text: str, kind: str, where: str) -> float:
    try:
        return int(text) if kind == "Integer" else float(text)
    except ValueError as err:
        wanted = "an integer" if kind == "Integer" else "a number"
        raise validation(f"{where} {text!r} is not {wanted}") from err


# checks ----------------------------------------------------------------------------------------
def _check_range(item: dict[str, Any], kind: str) -> None:
    name = item["Name"]
    where = f"{kind}ParameterRange {name!r}"
    if kind == "Categorical":
        values = item["Values"]
        if len(set(values)) != len(values):
            raise validation(f"{where} lists a value more than once: {values}")
        return
    low = _number(item["MinValue"], kind, f"{where} MinValue")
    high = _number(item["MaxValue"], kind, f"{where} MaxValue")
    if low > high:
        raise validation(
            f"{where}: MinValue ({item['MinValue']}) is greater than MaxValue ({item['MaxValue']})"
        )
    scaling = item.get("ScalingType", "Auto")
    if scaling == "Logarithmic" and low <= 0:
        raise validation(
            f"{where}: Logarithmic scaling works only for ranges whose values are greater "
            f"than 0; MinValue is {item['MinValue']}"
        )
    if scaling == "ReverseLogarithmic":
        if kind == "Integer":
            raise validation(
                f"{where}: ReverseLogarithmic scaling is supported only for continuous "
                "hyperparameter ranges"
            )
        if low < 0 or high >= 1:
            raise validation(
                f"{where}: ReverseLogarithmic scaling works only for ranges entirely within "
                f"0 <= x < 1; the range is [{item['MinValue']}, {item['MaxValue']}]"
            )


def _check_ranges(config: dict[str, Any], definition: dict[str, Any]) -> list[str]:
    """Each range, the names unique and not static too; the tuned names."""
    ranges = config.get("ParameterRanges") or {}
    if ranges.get("AutoParameters"):
        raise _unsupported("ParameterRanges.AutoParameters (Autotune)")
    names: list[str] = []
    for key, kind in _RANGE_KINDS:
        for item in ranges.get(key, []):
            _check_range(item, kind)
            names.append(item["Name"])
    repeated = sorted({name for name in names if names.count(name) > 1})
    if repeated:
        raise validation(
            f"Hyperparameter(s) {repeated} have more than one range in ParameterRanges"
        )
    if len(names) > MAX_TUNED:
        raise validation(
            f"A tuning job searches at most {MAX_TUNED} hyperparameters; ParameterRanges has "
            f"{len(names)}"
        )
    static = definition.get("StaticHyperParameters") or {}
    both = sorted(set(names) & set(static))
    if both:
        raise validation(
            f"Hyperparameter(s) {both} are both static (StaticHyperParameters) and tunable "
            "(ParameterRanges); a hyperparameter is one or the other"
        )
    if len(names) + len(static) > MAX_HYPERPARAMETERS:
        raise validation(
            f"A tuning job takes at most {MAX_HYPERPARAMETERS} hyperparameters (static + "
            f"tunable); this one has {len(static)} + {len(names)}"
        )
    return names


def _check_limits(config: dict[str, Any], space: list[tuning.Parameter]) -> None:
    strategy = config["Strategy"]
    limits = config["ResourceLimits"]
    max_jobs = limits.get("MaxNumberOfTrainingJobs")
    parallel = limits["MaxParallelTrainingJobs"]
    count = tuning.combinations(space)
    if strategy == "Grid":
        continuous = [p.name for p in space if p.kind != "Categorical"]
        if continuous:
            raise validation(
                f"The Grid strategy supports only categorical parameters; {continuous} "
                "are integer or continuous ranges. List their values in "
                "CategoricalParameterRanges"
            )
        if not space:
            raise validation("The Grid strategy needs at least one CategoricalParameterRange")
        if max_jobs is not None and max_jobs != count:
            raise validation(
                f"With the Grid strategy, MaxNumberOfTrainingJobs ({max_jobs}) must equal the "
                f"number of distinct combinations of the categorical values ({count}); leave it "
                "out and the tuning job runs them all"
            )
        max_jobs = count
    elif max_jobs is None:
        raise validation(
            f"ResourceLimits.MaxNumberOfTrainingJobs is required for the {strategy} strategy"
        )
    elif count is not None and count < max_jobs:
        raise validation(
            "You don't have enough combinations of hyperparameter ranges. The total number of "
            f"hyperparameter combinations for the provided ranges [{float(count)}] must be equal "
            f"or greater than the value of MaxNumberOfJobs, [{max_jobs}]. Provide additional "
            "ranges."
        )
    assert max_jobs is not None
    if parallel > max_jobs:
        raise validation(
            f"MaxParallelTrainingJobs ({parallel}) must be less than or equal to "
            f"MaxNumberOfTrainingJobs ({max_jobs})"
        )


def _check_objective(objective: dict[str, Any], definition: dict[str, Any]) -> None:
    metrics = definition["AlgorithmSpecification"].get("MetricDefinitions") or []
    names = [m["Name"] for m in metrics]
    if len(set(names)) != len(names):
        raise validation(f"MetricDefinitions names must be unique: {names}")
    for metric in metrics:
        try:
            re.compile(metric["Regex"])
        except re.error as err:
            raise validation(
                f"MetricDefinitions: the Regex of metric {metric['Name']!r} is not a valid "
                f"regular expression ({err}): {metric['Regex']}"
            ) from err
    if objective["MetricName"] not in names:
        raise validation(
            "A metric is required for this hyperparameter tuning job objective. Provide a "
            "metric in the metric definitions."
        )


def _check_config(config: dict[str, Any]) -> None:
    if config["Strategy"] == "Hyperband":
        raise _unsupported(
            "The Hyperband strategy (SageMaker's bracket schedule and resource allocation are "
            "not documented enough to reproduce)"
        )
    if config.get("StrategyConfig"):
        raise validation("StrategyConfig is for the Hyperband strategy only")
    criteria = config.get("TuningJobCompletionCriteria") or {}
    if (criteria.get("ConvergenceDetected") or {}).get("CompleteOnConvergence") == "Enabled":
        raise _unsupported(
            "TuningJobCompletionCriteria.ConvergenceDetected (SageMaker's convergence test is "
            "not documented)"
        )


def _check_request(params: dict[str, Any]) -> tuple[dict[str, Any], dict[str, Any], dict]:
    """The config, the training job definition and the objective, once every check passed."""
    for member, what in (
        (
            "TrainingJobDefinitions",
            "TrainingJobDefinitions (more than one training job definition)",
        ),
        ("WarmStartConfig", "WarmStartConfig (warm start from parent tuning jobs)"),
        ("Autotune", "Autotune"),
    ):
        if params.get(member):
            raise _unsupported(what)
    definition = params.get("TrainingJobDefinition")
    if definition is None:
        raise validation("TrainingJobDefinition is required")
    config = params["HyperParameterTuningJobConfig"]
    _check_config(config)
    objective = config.get("HyperParameterTuningJobObjective") or definition.get("TuningObjective")
    if objective is None:
        raise validation(
            "HyperParameterTuningJobConfig.HyperParameterTuningJobObjective is required: the "
            "metric the tuning job minimizes or maximizes"
        )
    if definition.get("HyperParameterRanges"):
        raise _unsupported(
            "TrainingJobDefinition.HyperParameterRanges (for TrainingJobDefinitions)"
        )
    if definition.get("HyperParameterTuningResourceConfig"):
        raise _unsupported("TrainingJobDefinition.HyperParameterTuningResourceConfig")
    if not definition.get("ResourceConfig"):
        raise validation("TrainingJobDefinition.ResourceConfig is required")
    _check_ranges(config, definition)
    _check_limits(config, tuning.parse_space(config.get("ParameterRanges") or {}))
    _check_objective(objective, definition)
    return config, definition, objective


def _training_request(definition: dict[str, Any], name: str, tuned: dict[str, str]) -> dict:
    """The CreateTrainingJob request of one training job of the tuning job."""
    request = {k: copy.deepcopy(definition[k]) for k in _DEFINITION_TO_TRAINING if k in definition}
    request["TrainingJobName"] = name
    request["HyperParameters"] = {**(definition.get("StaticHyperParameters") or {}), **tuned}
    return request


# answers ---------------------------------------------------------------------------------------
def _training_status(doc: dict[str, Any] | None) -> str:
    if doc is None:
        return "InProgress"
    if doc["Status"] == "InProgress" and doc.get("StopRequested"):
        return "Stopping"
    return str(doc["Status"])


def _tuning_status(doc: dict[str, Any]) -> str:
    if doc["Status"] == "InProgress" and doc.get("StopRequested"):
        return "Stopping"
    return str(doc["Status"])


def _objective_metric(doc: dict[str, Any], record: dict[str, Any]) -> dict[str, Any] | None:
    if record.get("Objective") is None:
        return None
    objective = doc["Objective"]
    return {
        "Type": objective["Type"],
        "MetricName": objective["MetricName"],
        "Value": record["Objective"],
    }


def _drop_none(result: dict[str, Any]) -> dict[str, Any]:
    return {key: value for key, value in result.items() if value is not None}


class TuningMixin:
    """The tuning job operations of the SageMaker provider (``services/sagemaker.py``)."""

    cloud: Any

    # create ------------------------------------------------------------------------------
    def create_hyper_parameter_tuning_job(self, params: dict[str, Any]) -> dict[str, Any]:
        from sfn_mlops.local.services.sagemaker import _check_training

        config, definition, objective = _check_request(params)
        name = params["HyperParameterTuningJobName"]
        # The training jobs' own request, checked up front as CreateTrainingJob checks it.
        _check_training(_training_request(definition, f"{name}-001-00000000", {}))
        stored_config = copy.deepcopy(config)
        stored_config.setdefault("TrainingJobEarlyStoppingType", "Off")
        stored_definition = copy.deepcopy(definition)
        static = dict(stored_definition.get("StaticHyperParameters") or {})
        static[tuning.OBJECTIVE_METRIC_HP] = objective["MetricName"]  # SageMaker adds it
        stored_definition["StaticHyperParameters"] = static
        request = {
            "HyperParameterTuningJobConfig": stored_config,
            "TrainingJobDefinition": stored_definition,
        }
        arn = self.cloud.arn("sagemaker", f"hyper-parameter-tuning-job/{name.lower()}")
        doc = tuning.new_tuning_doc(name, arn, request, objective, config.get("RandomSeed"))
        try:
            tuning.submit(self.cloud, doc, self._tuned_job_launcher(name, arn, stored_definition))
        except AlreadyExists as err:
            raise AwsError(
                "ResourceInUse",
                f"A hyperparameter tuning job with the name, {name}, already exists. Choose a "
                "different name.",
            ) from err
        return {"HyperParameterTuningJobArn": arn}

    def _tuned_job_launcher(
        self, tuning_name: str, tuning_arn: str, definition: dict[str, Any]
    ) -> Callable[[int, dict[str, str]], str]:
        from sfn_mlops.local.services.sagemaker import _training_defaults

        def launch(index: int, tuned: dict[str, str]) -> str:
            while True:
                name = f"{tuning_name}-{index:03d}-{secrets.token_hex(4)}"
                request = _training_defaults(_training_request(definition, name, tuned))
                arn = self.cloud.arn("sagemaker", f"training-job/{name.lower()}")
                doc = jobs.new_job_doc(jobs.KIND_TRAINING, name, arn, request)
                doc["TuningJobArn"] = tuning_arn
                try:
                    jobs.submit(self.cloud, jobs.KIND_TRAINING, doc)
                except AlreadyExists:
                    continue  # 8 random hex digits taken by another job: draw again
                return name

        return launch

    # read ----------------------------------------------------------------------------------
    def _tuning_doc(self, name: str) -> dict[str, Any]:
        doc = self.cloud.metadata.get(tuning.KIND_TUNING, name)
        if doc is None:
            raise AwsError(
                "ResourceNotFound",
                f"Amazon SageMaker can't find a tuning job called {name}. Type another name.",
            )
        return tuning.refresh(self.cloud, doc)

    def _trials(self, doc: dict[str, Any]) -> list[tuple[dict[str, Any], dict[str, Any] | None]]:
        """Each training job's record in the tuning job with its own (refreshed) document."""
        found = []
        for record in doc.get("Trials") or []:
            job = self.cloud.metadata.get(jobs.KIND_TRAINING, record["TrainingJobName"])
            if job is not None:
                job = jobs.refresh(self.cloud, jobs.KIND_TRAINING, job)
            found.append((record, job))
        return found

    def _trial_summary(
        self, doc: dict[str, Any], record: dict[str, Any], job: dict[str, Any] | None
    ) -> dict[str, Any]:
        name = record["TrainingJobName"]
        job = job or {}
        return _drop_none(
            {
                "TrainingJobName": name,
                "TrainingJobArn": self.cloud.arn("sagemaker", f"training-job/{name.lower()}"),
                "TuningJobName": doc["Name"],
                "CreationTime": timestamp(job.get("CreationTime") or doc["CreationTime"]),
                "TrainingStartTime": timestamp(job.get("StartTime")),
                "TrainingEndTime": timestamp(job.get("EndTime")),
                "TrainingJobStatus": _training_status(job or None),
                "TunedHyperParameters": record["TunedHyperParameters"],
                "FailureReason": job.get("FailureReason"),
                "FinalHyperParameterTuningJobObjectiveMetric": _objective_metric(doc, record),
                "ObjectiveStatus": record["ObjectiveStatus"],
            }
        )

    @staticmethod
    def _counters(
        trials: list[tuple[dict[str, Any], dict[str, Any] | None]],
    ) -> tuple[dict[str, int], dict[str, int]]:
        status = dict.fromkeys(_EMPTY_STATUS_COUNTERS, 0)
        objective = {"Succeeded": 0, "Pending": 0, "Failed": 0}
        for record, job in trials:
            state = _training_status(job)
            key = {"Failed": "NonRetryableError", "Stopping": "InProgress"}.get(state, state)
            status[key] = status.get(key, 0) + 1
            objective[record["ObjectiveStatus"]] += 1
        return status, objective

    @staticmethod
    def _best(doc: dict[str, Any]) -> dict[str, Any] | None:
        minimize = doc["Objective"]["Type"] == "Minimize"
        scored = [r for r in doc.get("Trials") or [] if r.get("Objective") is not None]
        if not scored:
            return None
        sign = 1.0 if minimize else -1.0
        return min(scored, key=lambda r: (sign * r["Objective"], r["Index"]))

    @staticmethod
    def _not_improving(doc: dict[str, Any], trials: list[tuple[dict, dict | None]]) -> int:
        """Training jobs since the best last improved by 1 %, in the order they ended."""
        minimize = doc["Objective"]["Type"] == "Minimize"
        ended = sorted(
            (job.get("EndTime") or 0.0, record["Objective"])
            for record, job in trials
            if job is not None and record.get("Objective") is not None
        )
        best, count = None, 0
        for _, value in ended:
            count = 0 if tuning.improves(value, best, minimize) else count + 1
            if best is None or tuning.worse(best, value, minimize):
                best = value
        return count

    def describe_hyper_parameter_tuning_job(self, params: dict[str, Any]) -> dict[str, Any]:
        doc = self._tuning_doc(params["HyperParameterTuningJobName"])
        trials = self._trials(doc)
        status_counters, objective_counters = self._counters(trials)
        best = self._best(doc)
        jobs_by_name = {record["TrainingJobName"]: job for record, job in trials}
        end = doc.get("EndTime")
        runtime = (end if end is not None else tuning.now()) - doc["CreationTime"]
        result = {
            "HyperParameterTuningJobName": doc["Name"],
            "HyperParameterTuningJobArn": doc["Arn"],
            "HyperParameterTuningJobConfig": doc["Request"]["HyperParameterTuningJobConfig"],
            "TrainingJobDefinition": doc["Request"]["TrainingJobDefinition"],
            "HyperParameterTuningJobStatus": _tuning_status(doc),
            "CreationTime": timestamp(doc["CreationTime"]),
            "HyperParameterTuningEndTime": timestamp(end),
            "LastModifiedTime": timestamp(doc["LastModifiedTime"]),
            "TrainingJobStatusCounters": status_counters,
            "ObjectiveStatusCounters": objective_counters,
            "BestTrainingJob": (
                self._trial_summary(doc, best, jobs_by_name.get(best["TrainingJobName"]))
                if best is not None
                else None
            ),
            "FailureReason": doc.get("FailureReason"),
            "TuningJobCompletionDetails": {
                "NumberOfTrainingJobsObjectiveNotImproving": self._not_improving(doc, trials)
            },
            "ConsumedResources": {"RuntimeInSeconds": max(0, int(runtime))},
        }
        return _drop_none(result)

    def list_hyper_parameter_tuning_jobs(self, params: dict[str, Any]) -> dict[str, Any]:
        docs = [tuning.refresh(self.cloud, d) for d in self.cloud.metadata.list(tuning.KIND_TUNING)]
        docs = [
            d
            for d in docs
            if params.get("NameContains", "") in d["Name"]
            and params.get("StatusEquals", _tuning_status(d)) == _tuning_status(d)
            and in_window(d["CreationTime"], params)
            and in_window(d["LastModifiedTime"], params, "LastModifiedTime")
        ]

        def summary(doc: dict[str, Any]) -> dict[str, Any]:
            status_counters, objective_counters = self._counters(self._trials(doc))
            config = doc["Request"]["HyperParameterTuningJobConfig"]
            return _drop_none(
                {
                    "HyperParameterTuningJobName": doc["Name"],
                    "HyperParameterTuningJobArn": doc["Arn"],
                    "HyperParameterTuningJobStatus": _tuning_status(doc),
                    "Strategy": config["Strategy"],
                    "CreationTime": timestamp(doc["CreationTime"]),
                    "HyperParameterTuningEndTime": timestamp(doc.get("EndTime")),
                    "LastModifiedTime": timestamp(doc["LastModifiedTime"]),
                    "TrainingJobStatusCounters": status_counters,
                    "ObjectiveStatusCounters": objective_counters,
                    "ResourceLimits": config["ResourceLimits"],
                }
            )

        sort_keys: dict[str, Callable[[dict[str, Any]], Any]] = {
            "Name": lambda d: d["Name"],
            "Status": _tuning_status,
            "CreationTime": lambda d: d["CreationTime"],
        }
        request = {**params, "SortBy": params.get("SortBy", "Name")}
        return page(
            docs, request, "HyperParameterTuningJobSummaries", summary, sort_keys, "Ascending"
        )

    def list_training_jobs_for_hyper_parameter_tuning_job(
        self, params: dict[str, Any]
    ) -> dict[str, Any]:
        doc = self._tuning_doc(params["HyperParameterTuningJobName"])
        rows = [self._trial_summary(doc, record, job) for record, job in self._trials(doc)]
        if "StatusEquals" in params:
            rows = [r for r in rows if r["TrainingJobStatus"] == params["StatusEquals"]]
        sort_by = params.get("SortBy", "Name")
        if sort_by == "FinalObjectiveMetricValue":
            rows = [r for r in rows if "FinalHyperParameterTuningJobObjectiveMetric" in r]
        sort_keys: dict[str, Callable[[dict[str, Any]], Any]] = {
            "Name": lambda r: r["TrainingJobName"],
            "CreationTime": lambda r: r["CreationTime"],
            "Status": lambda r: r["TrainingJobStatus"],
            "FinalObjectiveMetricValue": lambda r: r["FinalHyperParameterTuningJobObjectiveMetric"][
                "Value"
            ],
        }
        request = {**params, "SortBy": sort_by}
        return page(rows, request, "TrainingJobSummaries", lambda r: r, sort_keys, "Ascending")

    # stop ----------------------------------------------------------------------------------
    def stop_hyper_parameter_tuning_job(self, params: dict[str, Any]) -> dict[str, Any]:
        doc = self._tuning_doc(params["HyperParameterTuningJobName"])
        status = _tuning_status(doc)
        if status != "InProgress":
            raise validation(
                f"The request was rejected because the hyper-parameter tuning job is in status "
                f"{status}."
            )
        tuning.request_stop(self.cloud, doc["Name"])
        return {}

    # the training jobs' own Describe -------------------------------------------------------
    def _tuning_fields(self, doc: dict[str, Any]) -> dict[str, Any]:
        """DescribeTrainingJob's TuningJobArn and FinalMetricDataList (the latest value of each
        of AlgorithmSpecification.MetricDefinitions in the job's log)."""
        definitions = (doc["Request"].get("AlgorithmSpecification") or {}).get("MetricDefinitions")
        fields: dict[str, Any] = {}
        if doc.get("TuningJobArn"):
            fields["TuningJobArn"] = doc["TuningJobArn"]
        if definitions:
            data = tuning.final_metric_data(jobs.job_log_path(self.cloud, doc["Name"]), definitions)
            if data:
                fields["FinalMetricDataList"] = [
                    {**item, "Timestamp": timestamp(item["Timestamp"])} for item in data
                ]
        return fields
