"""Hyperparameter tuning jobs: the search that runs a tuning job's training jobs on this machine.

A tuning job is a document in the metadata store (``KIND_TUNING``) and a thread of the local
service (``TuningRun``), its owner, as a training job is a document and a runner thread. The
thread asks the search strategy for hyperparameters, launches each training job through the
ordinary job runner (its own folder, log and document, named as SageMaker names them:
``<tuning job>-<3-digit index>-<8 hex>``), reads each job's objective from its log with the
metric definition's regex (the latest value emitted is the final one, as
FinalHyperParameterTuningJobObjectiveMetric says), and ends the tuning job:

- **Strategies**: Random (seeded by RandomSeed), Grid (every combination of the categorical
  ranges, in the order given: SageMaker's Grid takes categorical ranges only) and Bayesian
  (optuna's TPESampler, seeded, with the constant liar for the jobs still running; optuna is
  imported by the first Bayesian tuning job only). ScalingType ``Auto`` is searched linearly
  (SageMaker does not document what it picks). A discrete space never repeats a combination.
- **Parallelism**: at most MaxParallelTrainingJobs at once, and at most one a core. Each
  training job still gets the runner's ``SM_NUM_CPUS`` (all cores but one: a tuning job cannot
  give its jobs fewer), so from 3 cores on parallel jobs oversubscribe the cores; the runner's
  passive OpenMP waits keep that cheap (docs/benchmarks.md: four concurrent 2-thread trainings
  on 2 cores took 0.17-0.43 s each against 0.11-0.18 s alone). On 2 cores: 2 jobs of 1 thread.
- **Early stopping** (``Auto``): SageMaker's documented median rule. After each epoch (each
  line of a running job's log that matches the objective's regex) the job's value is compared
  with the median, over the training jobs launched before it that reached that epoch, of their
  running averages up to that epoch; a worse value stops the job (it ends ``Stopped``).
- **Ending**: Completed when MaxNumberOfTrainingJobs have ended (or the grid is done, or a
  TuningJobCompletionCriteria is met: TargetObjectiveMetricValue reached, or
  BestObjectiveNotImproving: that many jobs in a row that did not improve the best by 1 %), and
  when MaxRuntimeInSeconds is reached (the running jobs are stopped). Failed when no training
  job succeeded: once the first 5 ended jobs all failed (SageMaker's "No training job succeeded
  after 5 attempts"), or when every job has ended without an objective. Stopped after
  StopHyperParameterTuningJob, once every running training job has stopped.
- **Ownership**: like a training job, a tuning job belongs to the service that created it.
  ``refresh`` marks one Failed (PlatformError) when a reader finds its owner gone, as
  ``jobs.refresh`` does for training jobs; ``recover_orphans`` does it for all at a start.
"""

from __future__ import annotations

import itertools
import logging
import math
import os
import random
import re
import secrets
import statistics
import threading
import time
import traceback
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from functools import lru_cache
from pathlib import Path
from typing import Any, Protocol

from sfn_mlops.local.jobs.paths import job_log_path
from sfn_mlops.local.jobs.registry import refresh as refresh_training
from sfn_mlops.local.jobs.registry import request_stop as stop_training
from sfn_mlops.local.jobs.state import FAILURE_REASON_LIMIT, KIND_TRAINING, TERMINAL, now
from sfn_mlops.local.processes import same_process, start_time

log = logging.getLogger("sfn_mlops.local.jobs.tuning")

KIND_TUNING = "sagemaker:hyper-parameter-tuning-job"
POLL_SECONDS = 0.01  # how often the loop looks at its training jobs (a look costs ~0.3 ms)
FAILED_ATTEMPTS = 5  # SageMaker fails a tuning job whose first 5 ended training jobs all failed
IMPROVEMENT = 0.01  # BestObjectiveNotImproving: an improvement of less than 1 % does not count
OBJECTIVE_METRIC_HP = "_tuning_objective_metric"  # the hyperparameter SageMaker adds
RUNNER_LINE = "[sfn-mlops "  # the runner's own log lines: no container wrote them
STOP_TIMEOUT_SECONDS = 30.0  # a stopped training job ends within its runner's grace period
REFRESH_SECONDS = 1.0  # how often the loop asks whether its training jobs' runners still live
NO_SUCCESS = (
    "No training job succeeded after {n} attempts. Please take a look at the training job "
    "failures to get more details."
)
PLATFORM_STOPPED = "PlatformError: the local service (pid"

Launcher = Callable[[int, dict[str, str]], str]  # (index, hyperparameters) -> training job name


# metrics ----------------------------------------------------------------------------------------
def compile_metrics(definitions: Sequence[dict[str, str]]) -> list[tuple[str, re.Pattern[str]]]:
    """MetricDefinitions as (name, compiled regex); ``re.error`` for a regex Python rejects."""
    return [(item["Name"], re.compile(item["Regex"])) for item in definitions]


def metric_value(pattern: re.Pattern[str], line: str) -> float | None:
    """The value ``pattern`` finds in one log line: its first group (or the whole match)."""
    match = pattern.search(line)
    if match is None:
        return None
    text = match.group(1) if pattern.groups else match.group(0)
    try:
        value = float(text)
    except (TypeError, ValueError):
        return None
    return value if math.isfinite(value) else None


def _container_lines(text: str) -> list[str]:
    return [line for line in text.splitlines() if not line.startswith(RUNNER_LINE)]


@lru_cache(maxsize=256)
def _cached_metrics(
    path: str, size: int, mtime_ns: int, definitions: tuple[tuple[str, str], ...]
) -> dict[str, list[float]]:
    del size, mtime_ns  # part of the cache key only: a log that grew is read again
    compiled = compile_metrics([{"Name": n, "Regex": r} for n, r in definitions])
    found: dict[str, list[float]] = {name: [] for name, _ in compiled}
    with open(path, encoding="utf-8", errors="replace") as stream:
        for line in _container_lines(stream.read()):
            for name, pattern in compiled:
                value = metric_value(pattern, line)
                if value is not None:
                    found[name].append(value)
    return found


def log_metrics(path: Path, definitions: Sequence[dict[str, str]]) -> dict[str, list[float]]:
    """Every value each metric definition finds in a job's log, in order; {} without a log."""
    try:
        info = path.stat()
    except OSError:
        return {}
    key = tuple((item["Name"], item["Regex"]) for item in definitions)
    try:
        return _cached_metrics(str(path), info.st_size, info.st_mtime_ns, key)
    except (OSError, re.error):
        return {}


def final_metric_data(path: Path, definitions: Sequence[dict[str, str]]) -> list[dict[str, Any]]:
    """DescribeTrainingJob's FinalMetricDataList: the latest value of each defined metric.

    The log has no time per line; the time of the log's last write stands for the time the
    latest value was emitted.
    """
    found = log_metrics(path, definitions)
    if not any(found.values()):
        return []
    stamp = path.stat().st_mtime
    return [
        {"MetricName": name, "Value": values[-1], "Timestamp": stamp}
        for name, values in found.items()
        if values
    ]


class LogTail:
    """The objective's values in a running job's log, read as the log grows (whole lines)."""

    def __init__(self, path: Path, pattern: re.Pattern[str]) -> None:
        self.path = path
        self.pattern = pattern
        self.values: list[float] = []
        self._offset = 0
        self._partial = ""

    def read(self) -> int:
        """Read what was added; the number of new values."""
        try:
            with open(self.path, encoding="utf-8", errors="replace") as stream:
                stream.seek(self._offset)
                chunk = stream.read()
                self._offset = stream.tell()
        except OSError:
            return 0
        text = self._partial + chunk
        lines = text.split("\n")
        self._partial = lines.pop()
        before = len(self.values)
        for line in _container_lines("\n".join(lines)):
            value = metric_value(self.pattern, line)
            if value is not None:
                self.values.append(value)
        return len(self.values) - before


# the search space -------------------------------------------------------------------------------
@dataclass(frozen=True)
class Parameter:
    """One tuned hyperparameter, as its ParameterRanges entry gives it (already validated)."""

    name: str
    kind: str  # "Integer", "Continuous" or "Categorical"
    low: float = 0.0
    high: float = 0.0
    scaling: str = "Auto"
    values: tuple[str, ...] = ()

    def text(self, value: Any) -> str:
        """The hyperparameter's value as the training job gets it (a string)."""
        if self.kind == "Integer":
            return str(int(value))
        if self.kind == "Continuous":
            return repr(float(value))
        return str(value)

    @property
    def size(self) -> int | None:
        """How many distinct values it has; None for a continuous range."""
        if self.kind == "Categorical":
            return len(self.values)
        if self.kind == "Integer":
            return int(self.high) - int(self.low) + 1
        return None


def parse_space(ranges: dict[str, Any]) -> list[Parameter]:
    space = [
        Parameter(
            item["Name"],
            "Integer",
            int(item["MinValue"]),
            int(item["MaxValue"]),
            item.get("ScalingType", "Auto"),
        )
        for item in ranges.get("IntegerParameterRanges", [])
    ]
    space += [
        Parameter(
            item["Name"],
            "Continuous",
            float(item["MinValue"]),
            float(item["MaxValue"]),
            item.get("ScalingType", "Auto"),
        )
        for item in ranges.get("ContinuousParameterRanges", [])
    ]
    space += [
        Parameter(item["Name"], "Categorical", values=tuple(item["Values"]))
        for item in ranges.get("CategoricalParameterRanges", [])
    ]
    return space


def combinations(space: Sequence[Parameter]) -> int | None:
    """The number of distinct combinations, or None when a range is continuous."""
    total = 1
    for parameter in space:
        size = parameter.size
        if size is None:
            return None
        total *= size
    return total


def _sample(parameter: Parameter, rng: random.Random) -> Any:
    low, high = parameter.low, parameter.high
    if parameter.kind == "Categorical":
        return rng.choice(parameter.values)
    if parameter.kind == "Integer":
        if parameter.scaling == "Logarithmic":
            drawn = math.exp(rng.uniform(math.log(low), math.log(high + 1)))
            return min(int(high), int(drawn))
        return rng.randint(int(low), int(high))
    if parameter.scaling == "Logarithmic":
        return math.exp(rng.uniform(math.log(low), math.log(high)))
    if parameter.scaling == "ReverseLogarithmic":
        return 1.0 - math.exp(rng.uniform(math.log(1.0 - high), math.log(1.0 - low)))
    return rng.uniform(low, high)


# strategies --------------------------------------------------------------------------------------
class Search(Protocol):
    def suggest(self, index: int) -> dict[str, str] | None:
        """The tuned hyperparameters of training job ``index``; None when there is no more."""

    def observe(self, index: int, value: float | None) -> None:
        """Training job ``index`` ended with this objective (None: failed, or no objective)."""


class RandomSearch:
    """Independent draws, seeded; a discrete space never repeats a combination."""

    def __init__(self, space: Sequence[Parameter], seed: int) -> None:
        self.space = list(space)
        self.rng = random.Random(seed)
        self.discrete = combinations(self.space)
        self.seen: set[tuple[str, ...]] = set()

    def suggest(self, index: int) -> dict[str, str] | None:
        del index
        if self.discrete is not None and len(self.seen) >= self.discrete:
            return None
        while True:
            drawn = {p.name: p.text(_sample(p, self.rng)) for p in self.space}
            key = tuple(drawn[p.name] for p in self.space)
            if self.discrete is None or key not in self.seen:
                self.seen.add(key)
                return drawn

    def observe(self, index: int, value: float | None) -> None:
        del index, value


class GridSearch:
    """Every combination of the categorical values, the first range varying slowest."""

    def __init__(self, space: Sequence[Parameter]) -> None:
        self.names = [p.name for p in space]
        self.grid = iter(itertools.product(*(p.values for p in space)))

    def suggest(self, index: int) -> dict[str, str] | None:
        del index
        values = next(self.grid, None)
        return None if values is None else dict(zip(self.names, values, strict=True))

    def observe(self, index: int, value: float | None) -> None:
        del index, value


class BayesianSearch:
    """optuna's TPE sampler (seeded; the constant liar for the jobs still running).

    A reverse-logarithmic range is searched on a log scale of ``1 - x``. A discrete space
    never repeats a combination: a repeat the sampler proposes is told as failed and asked
    again; after ``REPEATS`` repeats an unseen combination is drawn at random instead.
    """

    REPEATS = 20

    def __init__(self, space: Sequence[Parameter], seed: int, minimize: bool) -> None:
        import optuna  # the first Bayesian tuning job pays for it, not the service's start

        optuna.logging.set_verbosity(optuna.logging.WARNING)
        self.optuna = optuna
        self.space = list(space)
        self.distributions = {p.name: _distribution(optuna, p) for p in self.space}
        sampler = optuna.samplers.TPESampler(seed=seed, constant_liar=True)
        self.study = optuna.create_study(
            direction="minimize" if minimize else "maximize", sampler=sampler
        )
        self.trials: dict[int, Any] = {}
        self.fallback = RandomSearch(space, seed)
        self.discrete = combinations(self.space)

    def suggest(self, index: int) -> dict[str, str] | None:
        if self.discrete is not None and len(self.fallback.seen) >= self.discrete:
            return None
        for _ in range(self.REPEATS):
            trial = self.study.ask(self.distributions)
            drawn = {p.name: p.text(_value(p, trial.params[p.name])) for p in self.space}
            key = tuple(drawn[p.name] for p in self.space)
            if self.discrete is None or key not in self.fallback.seen:
                self.fallback.seen.add(key)
                self.trials[index] = trial
                return drawn
            self.study.tell(trial, state=self.optuna.trial.TrialState.FAIL)
        drawn = self.fallback.suggest(index) or {}
        params = {p.name: _internal(p, drawn[p.name]) for p in self.space}
        self.study.enqueue_trial(params)
        self.trials[index] = self.study.ask(self.distributions)
        return drawn

    def observe(self, index: int, value: float | None) -> None:
        trial = self.trials.pop(index, None)
        if trial is None:
            return
        if value is None:
            self.study.tell(trial, state=self.optuna.trial.TrialState.FAIL)
        else:
            self.study.tell(trial, value)


def _distribution(optuna: Any, parameter: Parameter) -> Any:
    dist = optuna.distributions
    if parameter.kind == "Categorical":
        return dist.CategoricalDistribution(list(parameter.values))
    log_scale = parameter.scaling == "Logarithmic"
    if parameter.kind == "Integer":
        return dist.IntDistribution(int(parameter.low), int(parameter.high), log=log_scale)
    if parameter.scaling == "ReverseLogarithmic":
        return dist.FloatDistribution(1.0 - parameter.high, 1.0 - parameter.low, log=True)
    return dist.FloatDistribution(parameter.low, parameter.high, log=log_scale)


def _value(parameter: Parameter, internal: Any) -> Any:
    """The hyperparameter's value from the sampler's (``1 - x`` for reverse-logarithmic)."""
    if parameter.kind == "Continuous" and parameter.scaling == "ReverseLogarithmic":
        return 1.0 - float(internal)
    return internal


def _internal(parameter: Parameter, text: str) -> Any:
    if parameter.kind == "Categorical":
        return text
    if parameter.kind == "Integer":
        return int(text)
    value = float(text)
    return 1.0 - value if parameter.scaling == "ReverseLogarithmic" else value


def make_search(
    strategy: str, space: Sequence[Parameter], seed: int, minimize: bool
) -> RandomSearch | GridSearch | BayesianSearch:
    if strategy == "Grid":
        return GridSearch(space)
    if strategy == "Bayesian":
        return BayesianSearch(space, seed, minimize)
    return RandomSearch(space, seed)


# rules ------------------------------------------------------------------------------------------
def worse(value: float, reference: float, minimize: bool) -> bool:
    return value > reference if minimize else value < reference


def median_rule_stops(
    current: Sequence[float], previous: Sequence[Sequence[float]], minimize: bool
) -> bool:
    """SageMaker's early stopping rule at the current job's latest epoch ``k``.

    The median, over the earlier jobs that reached epoch ``k``, of their running averages of
    the objective up to epoch ``k``; the job stops when its value at ``k`` is worse.
    """
    k = len(current) - 1
    averages = [statistics.fmean(values[: k + 1]) for values in previous if len(values) > k]
    if k < 0 or not averages:
        return False
    return worse(current[k], statistics.median(averages), minimize)


def improves(value: float, best: float | None, minimize: bool) -> bool:
    """By at least 1 % of the best so far (BestObjectiveNotImproving's measure)."""
    if best is None:
        return True
    gain = best - value if minimize else value - best
    return gain > IMPROVEMENT * abs(best) if best else gain > 0


def reached(value: float, target: float, minimize: bool) -> bool:
    return value <= target if minimize else value >= target


# the run ---------------------------------------------------------------------------------------
@dataclass
class Trial:
    """One training job of the tuning job, as the loop follows it."""

    index: int
    name: str
    tuned: dict[str, str]
    tail: LogTail
    checked: int = 0  # epochs the early stopping rule has looked at
    early_stopped: bool = False
    ended: bool = False
    status: str = "InProgress"
    failure: str | None = None
    objective: float | None = None

    def record(self) -> dict[str, Any]:
        """What the tuning job's document keeps of it."""
        objective_status = "Pending"
        if self.ended:
            objective_status = "Succeeded" if self.objective is not None else "Failed"
        return {
            "Index": self.index,
            "TrainingJobName": self.name,
            "TunedHyperParameters": self.tuned,
            "ObjectiveStatus": objective_status,
            "Objective": self.objective,
            "EarlyStopped": self.early_stopped,
        }


@dataclass
class Limits:
    max_jobs: int
    parallel: int
    max_runtime: float | None
    minimize: bool
    early_stopping: bool
    target: float | None
    not_improving: int | None


def limits_of(config: dict[str, Any], objective: dict[str, Any], grid_size: int | None) -> Limits:
    resources = config["ResourceLimits"]
    criteria = config.get("TuningJobCompletionCriteria") or {}
    max_jobs = resources.get("MaxNumberOfTrainingJobs") or grid_size or 1
    runtime = resources.get("MaxRuntimeInSeconds")
    return Limits(
        max_jobs=int(max_jobs),
        parallel=parallel_limit(int(resources["MaxParallelTrainingJobs"])),
        max_runtime=float(runtime) if runtime else None,
        minimize=objective["Type"] == "Minimize",
        early_stopping=config.get("TrainingJobEarlyStoppingType", "Off") == "Auto",
        target=criteria.get("TargetObjectiveMetricValue"),
        not_improving=(criteria.get("BestObjectiveNotImproving") or {}).get(
            "MaxNumberOfTrainingJobsNotImproving"
        ),
    )


def parallel_limit(requested: int) -> int:
    """MaxParallelTrainingJobs, capped at the machine's cores (one job a core at most)."""
    cores = len(os.sched_getaffinity(0)) if hasattr(os, "sched_getaffinity") else os.cpu_count()
    return max(1, min(requested, cores or 1))


@dataclass
class _Outcome:
    status: str  # a terminal status, or CONCLUDE: decided once the running jobs have stopped
    failure: str | None = None
    stop_running: bool = False


CONCLUDE = "conclude"  # Completed if any training job gave an objective, else Failed


class TuningRun:
    """Runs one tuning job in a thread of the service: the only writer of its document."""

    def __init__(self, cloud: Any, doc: dict[str, Any], launcher: Launcher) -> None:
        self.cloud = cloud
        self.name = doc["Name"]
        self.config = doc["Request"]["HyperParameterTuningJobConfig"]
        definition = doc["Request"]["TrainingJobDefinition"]
        self.metrics = definition["AlgorithmSpecification"].get("MetricDefinitions", [])
        self.objective = doc["Objective"]
        self.space = parse_space(self.config.get("ParameterRanges") or {})
        self.seed = int(doc["Seed"])
        self.launcher = launcher
        grid = combinations(self.space) if self.config["Strategy"] == "Grid" else None
        self.limits = limits_of(self.config, self.objective, grid)
        self.created = float(doc["CreationTime"])
        self.finished = threading.Event()
        self._wake = threading.Event()
        self._shutdown = False
        self._stopping = False  # the running jobs are being stopped: no early stopping now
        self.trials: list[Trial] = []
        self.best: float | None = None
        self.not_improving = 0
        self.search: Any = None
        self._exhausted = False  # the strategy has no combination left (a grid, a small space)
        self._next_refresh = 0.0

    @property
    def _pattern(self) -> re.Pattern[str]:
        name = self.objective["MetricName"]
        regex = next(m["Regex"] for m in self.metrics if m["Name"] == name)
        return re.compile(regex)

    # lifecycle -----------------------------------------------------------------------------
    def wake(self, shutdown: bool = False) -> None:
        self._shutdown = self._shutdown or shutdown
        self._wake.set()

    def run(self) -> None:
        try:
            self.search = make_search(
                self.config["Strategy"], self.space, self.seed, self.limits.minimize
            )
            outcome = self._loop()
        except Exception as exc:  # noqa: BLE001 - anything else is the platform's fault
            log.error("tuning job %s failed:\n%s", self.name, traceback.format_exc())
            outcome = _Outcome(
                "Failed", f"PlatformError: {type(exc).__name__}: {exc}", stop_running=True
            )
        try:
            self._end(outcome)
        finally:
            self.finished.set()

    def _loop(self) -> _Outcome:
        while True:
            doc = self.cloud.metadata.get(KIND_TUNING, self.name) or {}
            changed = self._follow()
            outcome = self._outcome(doc)
            if outcome is not None:
                if changed:
                    self._save()
                return outcome
            changed = self._launch() or changed
            if changed:
                self._save()
            self._wake.wait(POLL_SECONDS)
            self._wake.clear()

    def _outcome(self, doc: dict[str, Any]) -> _Outcome | None:
        """Whether the tuning job ends now, and how."""
        ended = [t for t in self.trials if t.ended]
        running = [t for t in self.trials if not t.ended]
        succeeded = [t for t in ended if t.objective is not None]
        if self._shutdown or any((t.failure or "").startswith(PLATFORM_STOPPED) for t in ended):
            # The service is going: its own shutdown ends the training jobs (PlatformError).
            return _Outcome("Failed", self._shutdown_reason())
        if doc.get("StopRequested"):
            return _Outcome("Stopped", stop_running=True)
        if self._criteria_met():
            return _Outcome("Completed", stop_running=True)
        limit = self.limits.max_runtime
        if limit is not None and now() - float(doc.get("CreationTime", self.created)) >= limit:
            return _Outcome(CONCLUDE, stop_running=True)
        if not succeeded and len(ended) >= FAILED_ATTEMPTS:
            return _Outcome("Failed", NO_SUCCESS.format(n=len(ended)), stop_running=True)
        done = len(self.trials) >= self.limits.max_jobs or self._exhausted
        if done and not running:
            return _Outcome(CONCLUDE)
        return None

    def _conclude(self) -> _Outcome:
        if any(t.objective is not None for t in self.trials):
            return _Outcome("Completed")
        return _Outcome("Failed", NO_SUCCESS.format(n=max(1, len(self.trials))))

    def _criteria_met(self) -> bool:
        limits = self.limits
        best = self.best
        if limits.target is not None and best is not None:
            return reached(best, float(limits.target), limits.minimize) or self._not_improving()
        return self._not_improving()

    def _not_improving(self) -> bool:
        limits = self.limits
        return limits.not_improving is not None and self.not_improving >= limits.not_improving

    # training jobs -------------------------------------------------------------------------
    def _launch(self) -> bool:
        launched = False
        running = sum(1 for t in self.trials if not t.ended)
        while running < self.limits.parallel and len(self.trials) < self.limits.max_jobs:
            index = len(self.trials) + 1
            tuned = self.search.suggest(index)
            if tuned is None:
                self._exhausted = True
                break
            name = self.launcher(index, tuned)
            self.trials.append(Trial(index, name, tuned, LogTail(self._log(name), self._pattern)))
            running += 1
            launched = True
        return launched

    def _log(self, name: str) -> Path:
        return job_log_path(self.cloud, name)

    def _follow(self) -> bool:
        """Read the running jobs' states (and logs, for early stopping); True when one ended.

        A look costs about 0.2 ms a running job. Whether a job's runner is still alive
        (``jobs.refresh``) is asked once every REFRESH_SECONDS only; the log is read as it grows
        only for early stopping, else once when the job has ended.
        """
        changed = False
        refresh = time.monotonic() >= self._next_refresh
        if refresh:
            self._next_refresh = time.monotonic() + REFRESH_SECONDS
        for trial in self.trials:
            if trial.ended:
                continue
            doc = self.cloud.metadata.get(KIND_TRAINING, trial.name)
            if doc is not None and refresh:
                doc = refresh_training(self.cloud, KIND_TRAINING, doc)
            if doc is not None and doc["Status"] in TERMINAL:
                trial.tail.read()  # all the job wrote
                self._ended(trial, doc)
                changed = True
            elif self.limits.early_stopping and not self._stopping:
                trial.tail.read()
                self._early_stop(trial)
        return changed

    def _ended(self, trial: Trial, doc: dict[str, Any]) -> None:
        trial.ended = True
        trial.status = doc["Status"]
        trial.failure = doc.get("FailureReason")
        values = trial.tail.values
        if trial.status != "Failed" and values:
            trial.objective = values[-1]
        self.search.observe(trial.index, trial.objective)
        if trial.objective is not None:
            if improves(trial.objective, self.best, self.limits.minimize):
                self.not_improving = 0
            else:
                self.not_improving += 1
            if self.best is None or worse(self.best, trial.objective, self.limits.minimize):
                self.best = trial.objective

    def _early_stop(self, trial: Trial) -> None:
        values = trial.tail.values
        earlier = [t.tail.values for t in self.trials if t.index < trial.index]
        while trial.checked < len(values) and not trial.early_stopped:
            trial.checked += 1
            if median_rule_stops(values[: trial.checked], earlier, self.limits.minimize):
                trial.early_stopped = True
                stop_training(self.cloud, KIND_TRAINING, trial.name)
                log.info("tuning job %s: early stopping %s", self.name, trial.name)

    def _stop_running(self) -> None:
        self._stopping = True
        running = [t for t in self.trials if not t.ended]
        for trial in running:
            doc = self.cloud.metadata.get(KIND_TRAINING, trial.name)
            if doc is not None and doc["Status"] == "InProgress":
                stop_training(self.cloud, KIND_TRAINING, trial.name)
        deadline = time.monotonic() + STOP_TIMEOUT_SECONDS
        while any(not t.ended for t in self.trials) and time.monotonic() < deadline:
            self._follow()
            time.sleep(POLL_SECONDS)

    # state ---------------------------------------------------------------------------------
    def _save(self, **fields: Any) -> None:
        self.cloud.metadata.update(
            KIND_TUNING,
            self.name,
            Trials=[t.record() for t in self.trials],
            LastModifiedTime=now(),
            **fields,
        )

    def _end(self, outcome: _Outcome) -> None:
        if outcome.stop_running:
            self._stop_running()
        if outcome.status == CONCLUDE:
            outcome = self._conclude()
        at = now()
        failure = outcome.failure[:FAILURE_REASON_LIMIT] if outcome.failure else None
        self._save(Status=outcome.status, FailureReason=failure, EndTime=at)
        log.info(
            "tuning job %s: %s", self.name, outcome.status + (f" ({failure})" if failure else "")
        )

    def _shutdown_reason(self) -> str:
        return (
            f"PlatformError: the local service (pid {os.getpid()}) shut down while the tuning "
            "job ran"
        )


# the runs of this process ------------------------------------------------------------------------
_RUNS: dict[tuple[str, str], TuningRun] = {}
_RUNS_LOCK = threading.Lock()


def _key(cloud: Any, name: str) -> tuple[str, str]:
    return (str(cloud.root), name)


def new_tuning_doc(
    name: str, arn: str, request: dict[str, Any], objective: dict[str, Any], seed: int | None
) -> dict[str, Any]:
    """The stored state of a tuning job just created by this process (its owner).

    ``objective`` is the HyperParameterTuningJobObjective the job optimizes (the config's, or
    the training job definition's TuningObjective); ``seed`` the RandomSeed (drawn if None).
    """
    created = now()
    return {
        "Name": name,
        "Arn": arn,
        "Request": request,
        "Objective": objective,
        "Status": "InProgress",
        "CreationTime": created,
        "LastModifiedTime": created,
        "EndTime": None,
        "FailureReason": None,
        "StopRequested": None,
        "Seed": seed if seed is not None else secrets.randbits(32),
        "Trials": [],
        "OwnerPid": os.getpid(),
        "OwnerStartTime": start_time(os.getpid()),
    }


def submit(cloud: Any, doc: dict[str, Any], launcher: Launcher) -> None:
    """Store the new tuning job (``metadata.AlreadyExists`` if the name is taken) and start it."""
    key = _key(cloud, doc["Name"])
    with _RUNS_LOCK:  # registered before it is stored, so no reader finds it ownerless
        cloud.metadata.create(KIND_TUNING, doc["Name"], doc)
        run = TuningRun(cloud, doc, launcher)
        _RUNS[key] = run
    threading.Thread(
        target=_run, args=(key, run), name=f"tuning-{doc['Name']}", daemon=True
    ).start()


def _run(key: tuple[str, str], run: TuningRun) -> None:
    try:
        run.run()
    finally:
        with _RUNS_LOCK:
            _RUNS.pop(key, None)


def request_stop(cloud: Any, name: str) -> None:
    cloud.metadata.update(KIND_TUNING, name, StopRequested=now(), LastModifiedTime=now())
    with _RUNS_LOCK:
        run = _RUNS.get(_key(cloud, name))
    if run is not None:
        run.wake()


def shutdown_all(cloud: Any, timeout: float = STOP_TIMEOUT_SECONDS) -> list[str]:
    """End every tuning job this process runs in ``cloud``'s workspace, marked Failed
    (PlatformError: the service shut down), launching nothing more; their names. Their running
    training jobs are left to ``jobs.shutdown_all``, which ends them as it ends every job.
    """
    with _RUNS_LOCK:
        runs = [run for key, run in _RUNS.items() if key[0] == str(cloud.root)]
    for run in runs:
        run.wake(shutdown=True)
    deadline = time.monotonic() + timeout
    for run in runs:
        run.finished.wait(max(0.0, deadline - time.monotonic()))
    return sorted(run.name for run in runs)


def running(cloud: Any) -> list[str]:
    with _RUNS_LOCK:
        return sorted(name for root, name in _RUNS if root == str(cloud.root))


# tuning jobs whose owner is gone -----------------------------------------------------------------
def _owner_alive(cloud: Any, doc: dict[str, Any]) -> bool:
    pid = int(doc["OwnerPid"])
    if pid == os.getpid():
        with _RUNS_LOCK:
            return _key(cloud, doc["Name"]) in _RUNS
    return same_process(pid, doc.get("OwnerStartTime"))


def refresh(cloud: Any, doc: dict[str, Any]) -> dict[str, Any]:
    """The tuning job's state, marked Failed if the service that ran it is gone."""
    if doc["Status"] in TERMINAL or _owner_alive(cloud, doc):
        return doc
    current = cloud.metadata.get(KIND_TUNING, doc["Name"]) or doc
    if current["Status"] in TERMINAL:
        return current
    at = now()
    reason = (
        f"PlatformError: the local service (pid {current['OwnerPid']}) stopped while the "
        "tuning job ran"
    )
    return cloud.metadata.update(  # type: ignore[no-any-return]
        KIND_TUNING,
        doc["Name"],
        Status="Failed",
        FailureReason=reason,
        EndTime=at,
        LastModifiedTime=at,
    )


def recover_orphans(cloud: Any) -> list[str]:
    """At the service's start: fail the tuning jobs a previous service left running."""
    recovered = []
    for doc in cloud.metadata.list(KIND_TUNING):
        if doc["Status"] not in TERMINAL and not _owner_alive(cloud, doc):
            refresh(cloud, doc)
            recovered.append(doc["Name"])
    return sorted(recovered)
