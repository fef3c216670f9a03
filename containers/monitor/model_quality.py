"""Model quality analysis of the local Model Monitor analyzer runtime (``analysis_type`` is
``MODEL_QUALITY``): what SageMaker's ``sagemaker-model-monitor-analyzer`` image computes for a
ModelQualityMonitor baseline job and for a model quality monitoring run.

``run.py`` calls :func:`main` with the job's environment. The variables are SageMaker's (the
names ``ModelQualityMonitor`` in the sagemaker SDK's ``model_monitoring.py`` sets):

- ``problem_type``: ``Regression`` | ``BinaryClassification`` | ``MulticlassClassification``.
- ``inference_attribute``, ``probability_attribute``, ``ground_truth_attribute``: where the
  predicted label (or value), the probability and the label are. In a baseline data set, a
  column name (CSV with header) or a 0-based column index (CSV without header) or a key (JSON
  lines). In captured endpoint output: a 0-based column index of the CSV output line, or a
  simple JMESPath-like key of the JSON output (``predictions``, ``a.b[0]``).
- ``probability_threshold_attribute``: the probability at or above which a binary prediction
  is the positive label 1 (default 0.5); used when only a probability is located.
- ``dataset_format``: JSON, e.g. ``{"csv": {"header": true}}`` or ``{"json": {"lines": true}}``
  (baseline); a monitoring run reads SageMaker capture JSONL whatever it says.
- ``dataset_source``: the folder of the baseline data set, or, in a monitoring run, of the
  window's capture files as the service stages them (``<endpoint>/<variant>/yyyy/mm/dd/hh/
  *.jsonl``; every ``*.jsonl`` below it is read).
- ``ground_truth_source`` (**local only**): in a monitoring run, the folder of the ground truth
  files (SageMaker's layout ``yyyy/mm/dd/hh/*.jsonl``, each line ``{"groundTruthData": {"data":
  "1", "encoding": "CSV"}, "eventMetadata": {"eventId": "..."}, "eventVersion": "0"}``). In AWS a
  separate merge job joins captures with ground truth (GroundTruthS3Input) before the analyzer
  runs; that job's own variable names are not published, so this name, beside
  ``dataset_source``, is ours. Its presence is what makes a run a monitoring run.
- ``baseline_constraints``: the path of the baseline's constraints.json (monitoring runs).
- ``output_path``: where statistics.json and constraints.json (baseline) or statistics.json and
  constraint_violations.json (monitoring) go, with ``monitoring_report.json`` (ours: the counts
  of what was read, joined and skipped, see :class:`Counts`).
- ``publish_cloudwatch_metrics`` (``Enabled``/``Disabled``), ``sagemaker_endpoint_name``,
  ``sagemaker_monitoring_schedule_name``: the metric lines (namespace
  ``aws/sagemaker/Endpoints/model-metrics``, dimensions Endpoint and MonitoringSchedule, one line
  per scalar metric, the names of the sagemaker SDK's model quality dashboard).
- ``start_time``, ``end_time`` (ISO 8601): the window; captures whose ``inferenceTime`` falls
  outside ``[start_time, end_time)`` are left out. Ground truth is not filtered by time (its
  folder date is when the label was collected, as in AWS).

Joining is AWS's: a capture with ``eventMetadata.inferenceId`` is matched on it, else on its
``eventId``; a ground truth record names either in ``eventMetadata.eventId``. A capture whose
output holds several records (a request of several rows) matches a ground truth whose data has
as many labels (one per line, or a JSON list).

Bad input never fails the job and is counted in monitoring_report.json (and logged): malformed
capture or ground truth lines, ground truth for unknown event ids, labels of the wrong type for
the problem (text for a regression, 2 for a binary label), predictions that cannot be read.
A run where nothing is left to score writes "Job inputs had no data" to the exit message and
exits 1, with no statistics and no metrics, as the AWS analyzer does.

Metric definitions follow scikit-learn (the tests' oracle); the runtime needs only numpy. A metric
that is undefined on the data (AUC with one class, R² of a constant label, precision with no
positive prediction) is left out of statistics.json, so no constraint is checked against it and
no metric line is written for it: an undefined value never raises an alarm.
"""

from __future__ import annotations

import base64
import binascii
import csv
import io
import json
import math
import os
import re
import sys
from collections.abc import Callable, Iterator, Mapping, Sequence
from dataclasses import dataclass, field
from datetime import datetime, timezone
from typing import Any

import numpy as np

# ---------------------------------------------------------------- the contract

ENV_PROBLEM_TYPE = "problem_type"
ENV_INFERENCE = "inference_attribute"
ENV_PROBABILITY = "probability_attribute"
ENV_THRESHOLD = "probability_threshold_attribute"
ENV_GROUND_TRUTH = "ground_truth_attribute"
ENV_DATASET_FORMAT = "dataset_format"
ENV_DATASET_SOURCE = "dataset_source"
ENV_GROUND_TRUTH_SOURCE = "ground_truth_source"  # local only; see the module docstring
ENV_OUTPUT_PATH = "output_path"
ENV_BASELINE_CONSTRAINTS = "baseline_constraints"
ENV_PUBLISH = "publish_cloudwatch_metrics"
ENV_ENDPOINT = "sagemaker_endpoint_name"
ENV_SCHEDULE = "sagemaker_monitoring_schedule_name"
ENV_START = "start_time"
ENV_END = "end_time"

REGRESSION = "Regression"
BINARY = "BinaryClassification"
MULTICLASS = "MulticlassClassification"
SECTIONS = {  # problem type -> the prefix of its statistics and constraints sections
    REGRESSION: "regression",
    BINARY: "binary_classification",
    MULTICLASS: "multiclass_classification",
}
DEFAULT_THRESHOLD = 0.5
NO_DATA = "Job inputs had no data"
MESSAGE_FILE = "/opt/ml/output/message"
METRICS_DIR = "/opt/ml/output/metrics/cloudwatch"
NAMESPACE = "aws/sagemaker/Endpoints/model-metrics"
STD_MIN_ROWS = 200  # Model Monitor gives a standard deviation from 200 rows on ...
STD_DRAWS, STD_FRACTION, STD_SEED = 5, 0.8, 0  # ... of 5 random draws of 80% of them
MISSING_STD = "NaN"  # what Model Monitor writes for a standard deviation it does not give

# The constraints a baseline suggests, with Model Monitor's comparison operators: a violation is
# a value that *is* <operator> the threshold, and the threshold is the baseline's own value.
LOWER_IS_WORSE = "LessThanThreshold"
HIGHER_IS_WORSE = "GreaterThanThreshold"
SUGGESTED = {
    REGRESSION: {"mae": HIGHER_IS_WORSE, "mse": HIGHER_IS_WORSE, "rmse": HIGHER_IS_WORSE,
                 "r2": LOWER_IS_WORSE},
    BINARY: {
        **dict.fromkeys(
            ("recall", "precision", "accuracy", "true_positive_rate", "true_negative_rate"),
            LOWER_IS_WORSE,
        ),
        "false_positive_rate": HIGHER_IS_WORSE,
        "false_negative_rate": HIGHER_IS_WORSE,
        **dict.fromkeys(("auc", "f0_5", "f1", "f2"), LOWER_IS_WORSE),
    },
    MULTICLASS: dict.fromkeys(
        ("accuracy", "weighted_recall", "weighted_precision", "weighted_f0_5", "weighted_f1",
         "weighted_f2"),
        LOWER_IS_WORSE,
    ),
}  # fmt: skip
OPERATORS: dict[str, Callable[[float, float], bool]] = {
    "LessThanThreshold": lambda value, threshold: value < threshold,
    "LessThanOrEqualToThreshold": lambda value, threshold: value <= threshold,
    "GreaterThanThreshold": lambda value, threshold: value > threshold,
    "GreaterThanOrEqualToThreshold": lambda value, threshold: value >= threshold,
}
F_BETAS = (("f0_5", 0.5), ("f1", 1.0), ("f2", 2.0))


class ModelQualityError(Exception):
    """The job's configuration is wrong (the user's fault); the message says what to change."""


@dataclass(frozen=True)
class Settings:
    """The job's environment, read and checked once."""

    problem_type: str
    inference_attribute: str | None
    probability_attribute: str | None
    threshold: float
    ground_truth_attribute: str | None
    dataset_format: dict[str, Any]
    dataset_source: str
    ground_truth_source: str | None
    output_path: str
    baseline_constraints: str | None
    publish_metrics: bool
    endpoint: str
    schedule: str
    start_time: datetime | None
    end_time: datetime | None

    @property
    def monitoring(self) -> bool:
        return self.ground_truth_source is not None

    @classmethod
    def from_env(cls, env: Mapping[str, str]) -> Settings:
        problem_type = env.get(ENV_PROBLEM_TYPE, "")
        if problem_type not in SECTIONS:
            raise ModelQualityError(
                f"{ENV_PROBLEM_TYPE} is {problem_type!r}; expected one of {list(SECTIONS)}"
            )
        settings = cls(
            problem_type=problem_type,
            inference_attribute=env.get(ENV_INFERENCE) or None,
            probability_attribute=env.get(ENV_PROBABILITY) or None,
            threshold=_threshold(env.get(ENV_THRESHOLD)),
            ground_truth_attribute=env.get(ENV_GROUND_TRUTH) or None,
            dataset_format=_dataset_format(env.get(ENV_DATASET_FORMAT)),
            dataset_source=_required(env, ENV_DATASET_SOURCE),
            ground_truth_source=env.get(ENV_GROUND_TRUTH_SOURCE) or None,
            output_path=_required(env, ENV_OUTPUT_PATH),
            baseline_constraints=env.get(ENV_BASELINE_CONSTRAINTS) or None,
            publish_metrics=env.get(ENV_PUBLISH, "Disabled") == "Enabled",
            endpoint=env.get(ENV_ENDPOINT, ""),
            schedule=env.get(ENV_SCHEDULE, ""),
            start_time=_time(env, ENV_START),
            end_time=_time(env, ENV_END),
        )
        settings.check()
        return settings

    def check(self) -> None:
        by_argmax = self.problem_type == MULTICLASS and self.monitoring
        if (
            self.probability_attribute is None
            and self.inference_attribute is None
            and not by_argmax
        ):
            raise ModelQualityError(
                f"set {ENV_INFERENCE}"
                + (f" or {ENV_PROBABILITY}" if self.problem_type == BINARY else "")
                + ": where the prediction is"
            )
        if not self.monitoring and self.ground_truth_attribute is None:
            raise ModelQualityError(
                f"a baseline job needs {ENV_GROUND_TRUTH}: the column of the labels"
            )
        if self.monitoring and self.baseline_constraints is None:
            print(f"no {ENV_BASELINE_CONSTRAINTS}: statistics only, no constraints checked")


def _required(env: Mapping[str, str], name: str) -> str:
    value = env.get(name)
    if not value:
        raise ModelQualityError(f"the environment variable {name} is not set")
    return value


def _threshold(text: str | None) -> float:
    if not text:
        return DEFAULT_THRESHOLD
    try:
        value = float(text)
    except ValueError:
        raise ModelQualityError(f"{ENV_THRESHOLD} must be a number, got {text!r}") from None
    if not math.isfinite(value):
        raise ModelQualityError(f"{ENV_THRESHOLD} must be finite, got {text!r}")
    return value


def _dataset_format(text: str | None) -> dict[str, Any]:
    if not text:
        return {"csv": {"header": True}}
    try:
        value = json.loads(text)
    except json.JSONDecodeError:
        raise ModelQualityError(
            f'{ENV_DATASET_FORMAT} must be JSON such as {{"csv": {{"header": true}}}}, got {text!r}'
        ) from None
    if not isinstance(value, dict):
        raise ModelQualityError(f"{ENV_DATASET_FORMAT} must be a JSON object, got {text!r}")
    return value


def _time(env: Mapping[str, str], name: str) -> datetime | None:
    text = env.get(name)
    if not text:
        return None
    parsed = parse_time(text)
    if parsed is None:
        raise ModelQualityError(f"{name} must be an ISO 8601 time, got {text!r}")
    return parsed


def parse_time(text: str) -> datetime | None:
    """An ISO 8601 time (``Z`` or an offset; none means UTC), or None if it is not one."""
    try:
        parsed = datetime.fromisoformat(text.strip().replace("Z", "+00:00"))
    except ValueError:
        return None
    return parsed if parsed.tzinfo else parsed.replace(tzinfo=timezone.utc)


# ---------------------------------------------------------------- metrics (numpy only)


def _ratio(numerator: float, denominator: float) -> float:
    return numerator / denominator if denominator else math.nan


def _f_beta(tp: float, fp: float, fn: float, beta: float) -> float:
    weight = beta * beta
    return _ratio((1 + weight) * tp, (1 + weight) * tp + weight * fn + fp)


def regression_metrics(y: np.ndarray, pred: np.ndarray) -> dict[str, float]:
    error = y - pred
    mse = float(np.mean(error**2))
    total = float(np.sum((y - np.mean(y)) ** 2))
    return {
        "mae": float(np.mean(np.abs(error))),
        "mse": mse,
        "rmse": math.sqrt(mse),
        "r2": 1.0 - float(np.sum(error**2)) / total if total else math.nan,
    }


def _binary_counts(y: np.ndarray, label: np.ndarray) -> dict[str, float]:
    actual, predicted = y == 1, label == 1
    return {
        "tp": float(np.sum(actual & predicted)),
        "fp": float(np.sum(~actual & predicted)),
        "fn": float(np.sum(actual & ~predicted)),
        "tn": float(np.sum(~actual & ~predicted)),
    }


def _binary_scores(y: np.ndarray, label: np.ndarray) -> dict[str, float]:
    c = _binary_counts(y, label)
    tp, fp, fn, tn = c["tp"], c["fp"], c["fn"], c["tn"]
    scores = {
        "recall": _ratio(tp, tp + fn),
        "precision": _ratio(tp, tp + fp),
        "accuracy": (tp + tn) / y.size,
    }
    scores.update({name: _f_beta(tp, fp, fn, beta) for name, beta in F_BETAS})
    return scores


def binary_metrics(y: np.ndarray, label: np.ndarray, prob: np.ndarray | None) -> dict[str, float]:
    """Binary metrics of 0/1 labels; ``prob`` (P(label 1)), when located, gives AUC and AU-PRC.

    The best constant classifier predicts the positive label for every row, as in Model
    Monitor's documented example (its recall is 1, its precision the positive rate).
    """
    metrics = _binary_scores(y, label)
    constant = _binary_scores(y, np.ones_like(y))
    metrics.update({f"{name}_best_constant_classifier": value for name, value in constant.items()})
    c = _binary_counts(y, label)
    metrics["true_positive_rate"] = _ratio(c["tp"], c["tp"] + c["fn"])
    metrics["true_negative_rate"] = _ratio(c["tn"], c["tn"] + c["fp"])
    metrics["false_positive_rate"] = _ratio(c["fp"], c["fp"] + c["tn"])
    metrics["false_negative_rate"] = _ratio(c["fn"], c["fn"] + c["tp"])
    if prob is not None:
        metrics["auc"] = roc_auc(y, prob)
        metrics["au_prc"] = average_precision(y, prob)
    return metrics


def roc_auc(y: np.ndarray, score: np.ndarray) -> float:
    """ROC AUC as the Mann-Whitney statistic over average ranks (ties count half)."""
    positives = int(np.sum(y == 1))
    negatives = y.size - positives
    if positives == 0 or negatives == 0:
        return math.nan
    ranks = _average_ranks(score)
    rank_sum = float(np.sum(ranks[y == 1]))
    return (rank_sum - positives * (positives + 1) / 2) / (positives * negatives)


def _average_ranks(values: np.ndarray) -> np.ndarray:
    order = np.argsort(values, kind="mergesort")
    ordered = values[order]
    starts = np.flatnonzero(np.r_[True, ordered[1:] != ordered[:-1]])
    ends = np.r_[starts[1:], values.size]
    ranks = np.empty(values.size, dtype=np.float64)
    ranks[order] = np.repeat((starts + ends + 1) / 2.0, ends - starts)  # 1-based average rank
    return ranks


def average_precision(y: np.ndarray, score: np.ndarray) -> float:
    """Area under the precision-recall curve as average precision (scikit-learn's step sum)."""
    positives = int(np.sum(y == 1))
    if positives == 0:
        return math.nan
    order = np.argsort(-score, kind="mergesort")
    ordered, hits = score[order], (y[order] == 1).astype(np.float64)
    last = np.r_[np.flatnonzero(ordered[1:] != ordered[:-1]), ordered.size - 1]  # per threshold
    tps = np.cumsum(hits)[last]
    precision = tps / (last + 1)
    recall_step = np.diff(np.r_[0.0, tps / positives])
    return float(np.sum(recall_step * precision))


def _weighted_scores(y: np.ndarray, label: np.ndarray) -> dict[str, float]:
    """scikit-learn's average='weighted' over the labels seen in either array (0/0 counts 0)."""
    classes = np.union1d(y, label)
    support = np.array([np.sum(y == c) for c in classes], dtype=np.float64)
    per_class: dict[str, list[float]] = {"precision": [], "recall": []}
    per_class.update({name: [] for name, _ in F_BETAS})
    for c in classes:
        tp = float(np.sum((y == c) & (label == c)))
        fp = float(np.sum((y != c) & (label == c)))
        fn = float(np.sum((y == c) & (label != c)))
        per_class["precision"].append(_ratio(tp, tp + fp))
        per_class["recall"].append(_ratio(tp, tp + fn))
        for name, beta in F_BETAS:
            per_class[name].append(_f_beta(tp, fp, fn, beta))
    weights = support / support.sum()
    return {
        f"weighted_{name}": float(np.sum(np.nan_to_num(np.array(values), nan=0.0) * weights))
        for name, values in per_class.items()
    }


def _multiclass_scores(y: np.ndarray, label: np.ndarray) -> dict[str, float]:
    return {"accuracy": float(np.mean(y == label)), **_weighted_scores(y, label)}


def multiclass_metrics(y: np.ndarray, label: np.ndarray) -> dict[str, float]:
    """Accuracy and weighted metrics of class codes.

    The best constant classifier predicts the least frequent label of ``y`` (ties: the larger
    label) for every row: it is what reproduces Model Monitor's documented example values.
    """
    metrics = _multiclass_scores(y, label)
    classes, counts = np.unique(y, return_counts=True)
    rarest = classes[len(counts) - 1 - int(np.argmin(counts[::-1]))]
    constant = _multiclass_scores(y, np.full_like(y, rarest))
    metrics.update({f"{name}_best_constant_classifier": value for name, value in constant.items()})
    return metrics


def confusion_matrix(y: np.ndarray, label: np.ndarray) -> dict[str, dict[str, int]]:
    """{actual label: {predicted label: count}} over the labels seen, as Model Monitor writes."""
    classes = np.union1d(y, label)
    return {
        _label_text(a): {_label_text(p): int(np.sum((y == a) & (label == p))) for p in classes}
        for a in classes
    }


def _label_text(value: float) -> str:
    return str(int(value)) if float(value).is_integer() else str(value)


# ---------------------------------------------------------------- statistics and constraints


@dataclass
class Scored:
    """The joined rows: labels, predictions and (binary, when located) probabilities."""

    y: np.ndarray
    pred: np.ndarray
    prob: np.ndarray | None = None

    def take(self, rows: np.ndarray) -> Scored:
        return Scored(self.y[rows], self.pred[rows], None if self.prob is None else self.prob[rows])


def compute_metrics(problem_type: str, data: Scored) -> dict[str, float]:
    if problem_type == REGRESSION:
        return regression_metrics(data.y, data.pred)
    if problem_type == BINARY:
        return binary_metrics(data.y, data.pred, data.prob)
    return multiclass_metrics(data.y, data.pred)


def metric_section(problem_type: str, data: Scored, *, seed: int = STD_SEED) -> dict[str, Any]:
    """Each defined metric as {"value", "standard_deviation"} (Model Monitor's layout)."""
    values = compute_metrics(problem_type, data)
    spreads = _spreads(problem_type, data, seed)
    section: dict[str, Any] = {}
    if problem_type != REGRESSION:
        section["confusion_matrix"] = confusion_matrix(data.y, data.pred)
    for name, value in values.items():
        if not math.isfinite(value):
            print(f"{name} is undefined on this data; left out of the statistics", flush=True)
            continue
        spread = spreads.get(name, math.nan)
        section[name] = {
            "value": value,
            "standard_deviation": spread if math.isfinite(spread) else MISSING_STD,
        }
    return section


def _spreads(problem_type: str, data: Scored, seed: int) -> dict[str, float]:
    """Standard deviation of each metric over 5 seeded draws of 80% of the rows (>= 200 rows)."""
    size = data.y.size
    if size < STD_MIN_ROWS:
        return {}
    rng = np.random.default_rng(seed)
    draws: dict[str, list[float]] = {}
    for _ in range(STD_DRAWS):
        rows = rng.choice(size, int(size * STD_FRACTION), replace=False)
        for name, value in compute_metrics(problem_type, data.take(rows)).items():
            draws.setdefault(name, []).append(value)
    spreads = {}
    for name, values in draws.items():
        finite = [v for v in values if math.isfinite(v)]
        spreads[name] = float(np.std(finite)) if len(finite) > 1 else math.nan
    return spreads


def statistics(problem_type: str, data: Scored, now: datetime) -> dict[str, Any]:
    return {
        "version": 0.0,
        "dataset": {"item_count": int(data.y.size), "evaluation_time": _timestamp(now)},
        f"{SECTIONS[problem_type]}_metrics": metric_section(problem_type, data),
    }


def suggest_constraints(problem_type: str, stats: Mapping[str, Any]) -> dict[str, Any]:
    """Model Monitor's suggestion: each main metric's baseline value as its threshold."""
    section = stats[f"{SECTIONS[problem_type]}_metrics"]
    return {
        "version": 0.0,
        f"{SECTIONS[problem_type]}_constraints": {
            name: {"threshold": section[name]["value"], "comparison_operator": operator}
            for name, operator in SUGGESTED[problem_type].items()
            if name in section
        },
    }


def read_constraints(path: str, problem_type: str) -> dict[str, tuple[float, str]]:
    """metric -> (threshold, comparison operator) from a constraints.json; a bad one is fatal."""
    key = f"{SECTIONS[problem_type]}_constraints"
    try:
        with open(path, encoding="utf-8") as handle:
            document = json.load(handle)
    except (OSError, json.JSONDecodeError) as exc:
        raise ModelQualityError(
            f"{ENV_BASELINE_CONSTRAINTS} {path} is not readable JSON: {exc}"
        ) from exc
    section = document.get(key) if isinstance(document, dict) else None
    if not isinstance(section, dict):
        raise ModelQualityError(f"{path} has no {key!r} object (problem_type is {problem_type})")
    constraints = {}
    for name, constraint in section.items():
        threshold = constraint.get("threshold") if isinstance(constraint, dict) else None
        operator = constraint.get("comparison_operator") if isinstance(constraint, dict) else None
        if operator not in OPERATORS or not isinstance(threshold, (int, float)):
            raise ModelQualityError(
                f"{path}: constraint {name!r} needs a numeric threshold and a comparison_operator "
                f"of {list(OPERATORS)}; got {constraint!r}"
            )
        constraints[name] = (float(threshold), str(operator))
    return constraints


def violations(
    constraints: Mapping[str, tuple[float, str]], section: Mapping[str, Any], counts: Counts
) -> list[dict[str, str]]:
    """The constraints the statistics break; one on a metric left out is not checked."""
    found = []
    for name, (threshold, operator) in constraints.items():
        metric = section.get(name)
        if not isinstance(metric, dict) or "value" not in metric:
            counts.constraints_not_checked.append(name)
            continue
        value = metric["value"]
        if OPERATORS[operator](value, threshold):
            found.append(
                {
                    "metric_name": name,
                    "constraint_check_type": operator,
                    "description": f"Metric {name} with {value} +/- "
                    f"{metric['standard_deviation']} was {operator} '{threshold}'",
                }
            )
    return found


# ---------------------------------------------------------------- values and attributes


def parse_label(problem_type: str, value: Any) -> float | None:
    """A label (or predicted label) as a float, or None when it is not one for the problem:
    a finite number (Regression), 0 or 1 (BinaryClassification), a class code 0, 1, 2, ...
    (MulticlassClassification, the model's training codes)."""
    number = _number(value)
    if number is None:
        return None
    if problem_type == REGRESSION:
        return number
    if problem_type == BINARY:
        return number if number in (0.0, 1.0) else None
    return number if number >= 0 and number.is_integer() else None


def _number(value: Any) -> float | None:
    if isinstance(value, bool):
        return None
    if isinstance(value, str):
        value = value.strip()
    try:
        number = float(value)
    except (TypeError, ValueError):
        return None
    return number if math.isfinite(number) else None


_PATH_PART = re.compile(r"([^.\[\]]+)|\[(\d+)\]")


def locate(document: Any, path: str) -> Any:
    """A simple JMESPath-like lookup: ``a``, ``a.b``, ``a[0]``, ``a.b[1].c``; KeyError if absent."""
    value = document
    for key, index in _PATH_PART.findall(path.removeprefix("$.")):
        if key and isinstance(value, dict) and key in value:
            value = value[key]
        elif index and isinstance(value, list) and int(index) < len(value):
            value = value[int(index)]
        else:
            raise KeyError(path)
    return value


# ---------------------------------------------------------------- counts


@dataclass
class Counts:
    """What a run read, joined and skipped: monitoring_report.json's ``counts``."""

    rows_read: int = 0  # baseline rows, or capture records (one per output row)
    malformed_capture_lines: int = 0  # not JSON, or no captureData.endpointOutput / eventId
    captures_outside_window: int = 0
    unreadable_predictions: int = 0  # the attribute is absent, or not a number of the problem
    ground_truth_records: int = 0
    malformed_ground_truth_lines: int = 0
    unknown_event_ids: int = 0  # ground truth for no capture of the window: not joined
    duplicate_ground_truth: int = 0  # a second label for an event: the first is kept
    invalid_labels: int = 0  # the wrong type for the problem (text for a regression, ...)
    label_count_mismatches: int = 0  # a ground truth with more or fewer labels than records
    unlabeled_predictions: int = 0  # captured, no ground truth (yet): normal, not an error
    matched: int = 0  # rows scored
    constraints_not_checked: list[str] = field(default_factory=list)

    def report(self) -> dict[str, Any]:
        return dict(self.__dict__)

    def summary(self) -> str:
        skipped = {
            name: value
            for name, value in self.__dict__.items()
            if isinstance(value, int) and value and name not in ("rows_read", "matched",
                                                                 "ground_truth_records")
        }  # fmt: skip
        text = f"{self.matched} rows scored"
        return text + (f"; skipped or unmatched: {skipped}" if skipped else "")


# ---------------------------------------------------------------- baseline data set


def read_baseline(settings: Settings, counts: Counts) -> Scored:
    """The baseline data set's prediction, probability and label columns, bad rows skipped."""
    rows = list(_baseline_rows(settings))
    y, pred, prob = [], [], []
    for row in rows:
        counts.rows_read += 1
        label = parse_label(settings.problem_type, _field(row, settings.ground_truth_attribute))
        if label is None:
            counts.invalid_labels += 1
            continue
        predicted = _row_prediction(settings, row)
        if predicted is None:
            counts.unreadable_predictions += 1
            continue
        y.append(label)
        pred.append(predicted[0])
        prob.append(predicted[1])
    return _scored(settings, y, pred, prob)


def _baseline_rows(settings: Settings) -> Iterator[Any]:
    if "json" in settings.dataset_format:
        for path in _files(settings.dataset_source, (".json", ".jsonl")):
            yield from _json_lines(path)
        return
    header = bool((settings.dataset_format.get("csv") or {}).get("header", True))
    for path in _files(settings.dataset_source, (".csv",)):
        with open(path, encoding="utf-8", newline="") as handle:
            reader = csv.reader(handle)
            names = next(reader, None) if header else None
            for values in reader:
                if values:
                    yield dict(zip(names, values, strict=False)) if names else values


def _json_lines(path: str) -> Iterator[Any]:
    with open(path, encoding="utf-8") as handle:
        for line in handle:
            if line.strip():
                try:
                    yield json.loads(line)
                except json.JSONDecodeError:
                    yield None  # counted as an unreadable row by the reader


def _field(row: Any, attribute: str | None) -> Any:
    """A baseline row's value: a column name (CSV with header, JSON key) or a 0-based index."""
    if attribute is None or row is None:
        return None
    if isinstance(row, list):
        index = _index(attribute)
        return row[index] if index is not None and index < len(row) else None
    try:
        return locate(row, attribute)
    except KeyError:
        index = _index(attribute)
        values = list(row.values()) if isinstance(row, dict) else []
        return values[index] if index is not None and index < len(values) else None


def _index(attribute: str) -> int | None:
    return int(attribute) if attribute.strip().isdigit() else None


def _row_prediction(settings: Settings, row: Any) -> tuple[float, float] | None:
    """(predicted label or value, probability or NaN) of a baseline row, or None."""
    return _label_and_probability(settings, lambda attribute: _field(row, attribute))


def _scored(settings: Settings, y: list[float], pred: list[float], prob: list[float]) -> Scored:
    located = settings.problem_type == BINARY and settings.probability_attribute is not None
    return Scored(
        np.array(y, dtype=np.float64),
        np.array(pred, dtype=np.float64),
        np.array(prob, dtype=np.float64) if located else None,
    )


def _files(root: str, suffixes: tuple[str, ...]) -> list[str]:
    """Every file below ``root`` (or ``root`` itself) ending with a suffix, sorted."""
    if os.path.isfile(root):
        return [root]
    found = []
    for folder, dirs, names in os.walk(root):
        dirs.sort()
        found += [
            os.path.join(folder, name)
            for name in sorted(names)
            if name.endswith(suffixes) and not name.startswith(".")
        ]
    return found


# ---------------------------------------------------------------- monitoring: captures


@dataclass(frozen=True)
class Capture:
    """One captured event: its join key and the (prediction, probability) of each output row."""

    key: str
    records: list[tuple[float, float]]


def read_captures(settings: Settings, counts: Counts) -> dict[str, Capture]:
    """The window's captures by join key (inferenceId, else eventId)."""
    captures: dict[str, Capture] = {}
    for path in _files(settings.dataset_source, (".jsonl",)):
        with open(path, encoding="utf-8", errors="replace") as handle:
            for line in handle:
                if line.strip():
                    capture = _capture(settings, line, counts)
                    if capture is not None:
                        captures[capture.key] = capture
                        counts.rows_read += len(capture.records)
    return captures


def _capture(settings: Settings, line: str, counts: Counts) -> Capture | None:
    try:
        record = json.loads(line)
        output = record["captureData"]["endpointOutput"]
        metadata = record["eventMetadata"]
        key = str(metadata.get("inferenceId") or metadata["eventId"])
        text = _decode(str(output["data"]), str(output.get("encoding", "CSV")))
    except (json.JSONDecodeError, KeyError, TypeError, AttributeError, ValueError):
        counts.malformed_capture_lines += 1
        return None
    if not _in_window(settings, metadata.get("inferenceTime")):
        counts.captures_outside_window += 1
        return None
    records = _output_records(settings, text, output)
    if records is None:
        counts.unreadable_predictions += 1
        return None
    return Capture(key, records)


def _decode(data: str, encoding: str) -> str:
    if encoding.upper() == "BASE64":
        try:
            return base64.b64decode(data, validate=True).decode("utf-8")
        except (binascii.Error, UnicodeDecodeError) as exc:
            raise ValueError(f"bad base64 data: {exc}") from exc
    return data


def _in_window(settings: Settings, inference_time: Any) -> bool:
    if settings.start_time is None and settings.end_time is None:
        return True
    moment = parse_time(inference_time) if isinstance(inference_time, str) else None
    if moment is None:
        return False
    if settings.start_time is not None and moment < settings.start_time:
        return False
    return settings.end_time is None or moment < settings.end_time


def _output_records(
    settings: Settings, text: str, output: Mapping[str, Any]
) -> list[tuple[float, float]] | None:
    """(prediction, probability) per output row, or None when the output cannot be read."""
    content_type = str(output.get("observedContentType", ""))
    is_json = str(output.get("encoding", "")).upper() == "JSON" or "json" in content_type.lower()
    rows = _json_output_rows(settings, text) if is_json else _csv_output_rows(settings, text)
    if not rows or any(row is None for row in rows):
        return None
    return [row for row in rows if row is not None]


def _csv_output_rows(settings: Settings, text: str) -> list[tuple[float, float] | None]:
    lines = [values for values in csv.reader(io.StringIO(text)) if values]
    return [_prediction(settings, values, values) for values in lines]


def _json_output_rows(settings: Settings, text: str) -> list[tuple[float, float] | None]:
    try:
        document = json.loads(text)
    except json.JSONDecodeError:
        return []
    attributes = [a for a in (settings.inference_attribute, settings.probability_attribute) if a]
    try:
        located = {attribute: locate(document, attribute) for attribute in attributes}
    except KeyError:
        return []
    if not attributes:  # multiclass by argmax: the probabilities under the usual key
        usual = document.get("predictions") if isinstance(document, dict) else None
        located = {"predictions": usual}
    size = _record_count(settings, located)
    rows: list[tuple[float, float] | None] = []
    for index in range(size):
        values = {
            attribute: (value[index] if _per_record(settings, attribute, value) else value)
            for attribute, value in located.items()
        }
        rows.append(_prediction(settings, values, values.get("predictions")))
    return rows


def _per_record(settings: Settings, attribute: str, value: Any) -> bool:
    """Whether a located value is a list of one item per record (not one record's vector)."""
    if not isinstance(value, list):
        return False
    by_argmax = settings.problem_type == MULTICLASS and attribute != settings.inference_attribute
    return not by_argmax or bool(value and isinstance(value[0], list))


def _record_count(settings: Settings, located: Mapping[str, Any]) -> int:
    sizes = {len(v) for a, v in located.items() if _per_record(settings, a, v)}
    return sizes.pop() if len(sizes) == 1 else (1 if not sizes else 0)


def _prediction(settings: Settings, values: Any, vector: Any) -> tuple[float, float] | None:
    """(predicted label or value, probability or NaN) from one output row's values."""

    def get(attribute: str) -> Any:
        if isinstance(values, list):
            index = _index(attribute)
            return values[index] if index is not None and index < len(values) else None
        return values.get(attribute)

    if settings.problem_type == MULTICLASS and settings.inference_attribute is None:
        return _argmax(vector if vector is not None else get(settings.probability_attribute or ""))
    return _label_and_probability(settings, get)


def _label_and_probability(
    settings: Settings, get: Callable[[str], Any]
) -> tuple[float, float] | None:
    """(predicted label or value, probability or NaN); a binary label from the probability
    and the threshold when only the probability is located. Only binary uses a probability."""
    prob = math.nan
    if settings.problem_type == BINARY and settings.probability_attribute is not None:
        located = _number(get(settings.probability_attribute))
        if located is None:
            return None
        prob = located
    if settings.inference_attribute is not None:
        label = parse_label(settings.problem_type, get(settings.inference_attribute))
        return None if label is None else (label, prob)
    if settings.problem_type != BINARY or math.isnan(prob):
        return None
    return float(prob >= settings.threshold), prob


def _argmax(vector: Any) -> tuple[float, float] | None:
    """The class code of the largest per-class probability (the endpoint's multiclass output)."""
    numbers = [_number(v) for v in vector] if isinstance(vector, list) and vector else None
    if not numbers or any(n is None for n in numbers):
        return None
    return float(np.argmax(np.array(numbers, dtype=np.float64))), math.nan


# ---------------------------------------------------------------- monitoring: ground truth


def join_ground_truth(
    settings: Settings, captures: Mapping[str, Capture], counts: Counts
) -> Scored:
    """Each capture's records with its labels; unknown ids and bad labels counted, not joined."""
    assert settings.ground_truth_source is not None
    labels: dict[str, list[float]] = {}
    for path in _files(settings.ground_truth_source, (".jsonl",)):
        with open(path, encoding="utf-8", errors="replace") as handle:
            for line in handle:
                if line.strip():
                    _add_ground_truth(settings, line, captures, labels, counts)
    y, pred, prob = [], [], []
    for key, capture in captures.items():
        if key not in labels:
            counts.unlabeled_predictions += len(capture.records)
            continue
        for label, (predicted, probability) in zip(labels[key], capture.records, strict=True):
            y.append(label)
            pred.append(predicted)
            prob.append(probability)
    return _scored(settings, y, pred, prob)


def _add_ground_truth(
    settings: Settings,
    line: str,
    captures: Mapping[str, Capture],
    labels: dict[str, list[float]],
    counts: Counts,
) -> None:
    counts.ground_truth_records += 1
    try:
        record = json.loads(line)
        key = str(record["eventMetadata"]["eventId"])
        data = record["groundTruthData"]
        values = _label_values(str(data["data"]), str(data.get("encoding", "CSV")))
    except (json.JSONDecodeError, KeyError, TypeError, AttributeError, ValueError):
        counts.malformed_ground_truth_lines += 1
        return
    if key not in captures:
        counts.unknown_event_ids += 1
        return
    if key in labels:
        counts.duplicate_ground_truth += 1
        return
    parsed = [parse_label(settings.problem_type, value) for value in values]
    if any(value is None for value in parsed):
        counts.invalid_labels += 1
        return
    if len(parsed) != len(captures[key].records):
        counts.label_count_mismatches += 1
        return
    labels[key] = [value for value in parsed if value is not None]


def _label_values(data: str, encoding: str) -> list[Any]:
    """The label(s) of a ground truth record: one per CSV line, or a JSON value or list."""
    text = _decode(data, encoding)
    if encoding.upper() == "JSON":
        value = json.loads(text)
        return value if isinstance(value, list) else [value]
    lines = [values for values in csv.reader(io.StringIO(text)) if values]
    return [values[0] if len(values) == 1 else values for values in lines]


# ---------------------------------------------------------------- outputs


def _timestamp(moment: datetime) -> str:
    return moment.astimezone(timezone.utc).strftime("%Y-%m-%dT%H:%M:%S.%fZ")[:-4] + "Z"


def write_json(path: str, payload: Any) -> None:
    """Write JSON atomically (temp file, then rename)."""
    os.makedirs(os.path.dirname(path) or ".", exist_ok=True)
    tmp = f"{path}.tmp"
    with open(tmp, "w", encoding="utf-8") as handle:
        json.dump(payload, handle, indent=2, allow_nan=False)
        handle.write("\n")
    os.replace(tmp, path)


def metric_lines(
    settings: Settings, section: Mapping[str, Any], moment: datetime
) -> list[dict[str, Any]]:
    """One CloudWatch metric line per scalar metric (the confusion matrix is not one)."""
    dimensions = [
        {"Name": "Endpoint", "Value": settings.endpoint},
        {"Name": "MonitoringSchedule", "Value": settings.schedule},
    ]
    return [
        {
            "MetricName": name,
            "Timestamp": moment.astimezone(timezone.utc).strftime("%Y-%m-%dT%H:%M:%SZ"),
            "Dimensions": dimensions,
            "Value": metric["value"],
            "Namespace": NAMESPACE,
        }
        for name, metric in section.items()
        if isinstance(metric, dict) and "value" in metric
    ]


def write_metric_lines(folder: str, lines: Sequence[Mapping[str, Any]]) -> None:
    os.makedirs(folder, exist_ok=True)
    path = os.path.join(folder, "model_quality_metrics.jsonl")
    with open(f"{path}.tmp", "w", encoding="utf-8") as handle:
        handle.writelines(json.dumps(line, allow_nan=False) + "\n" for line in lines)
    os.replace(f"{path}.tmp", path)


def write_message(path: str, text: str) -> None:
    """The job's exit message (SageMaker reads the first KB); never raises."""
    try:
        os.makedirs(os.path.dirname(path) or ".", exist_ok=True)
        with open(path, "w", encoding="utf-8") as handle:
            handle.write(text[:1024])
    except OSError as exc:
        print(f"could not write {path}: {exc}", file=sys.stderr)


# ---------------------------------------------------------------- the job


@dataclass(frozen=True)
class Outcome:
    """What a run ends with: the exit code and the exit message."""

    exit_code: int
    message: str


def analyze(
    settings: Settings, *, now: datetime, metrics_dir: str = METRICS_DIR,
    metrics_time: datetime | None = None,
) -> Outcome:  # fmt: skip
    """Run a baseline job or a monitoring run; write its outputs under ``output_path``."""
    counts = Counts()
    constraints = (
        read_constraints(settings.baseline_constraints, settings.problem_type)
        if settings.monitoring and settings.baseline_constraints
        else None
    )  # a bad baseline is the user's fault: found before any data is read
    if settings.monitoring:
        data = join_ground_truth(settings, read_captures(settings, counts), counts)
    else:
        data = read_baseline(settings, counts)
    counts.matched = int(data.y.size)
    print(counts.summary(), flush=True)
    output = settings.output_path
    if counts.matched == 0:
        write_json(os.path.join(output, "monitoring_report.json"), {"counts": counts.report()})
        return Outcome(1, NO_DATA)
    stats = statistics(settings.problem_type, data, now)
    write_json(os.path.join(output, "statistics.json"), stats)
    section = stats[f"{SECTIONS[settings.problem_type]}_metrics"]
    found: list[dict[str, str]] = []
    if not settings.monitoring:
        write_json(
            os.path.join(output, "constraints.json"),
            suggest_constraints(settings.problem_type, stats),
        )
    elif constraints is not None:
        found = violations(constraints, section, counts)
        write_json(os.path.join(output, "constraint_violations.json"), {"violations": found})
    if settings.monitoring and settings.publish_metrics:
        moment = metrics_time or datetime.now(timezone.utc)  # when written: after the analysis
        write_metric_lines(metrics_dir, metric_lines(settings, section, moment))
    write_json(os.path.join(output, "monitoring_report.json"), {"counts": counts.report()})
    if found:
        return Outcome(
            0, f"CompletedWithViolations: Job completed successfully with {len(found)} violations."
        )
    return Outcome(0, "Completed: Job completed successfully with no violations.")


def main(
    env: Mapping[str, str],
    *,
    message_file: str = MESSAGE_FILE,
    metrics_dir: str = METRICS_DIR,
    now: datetime | None = None,
) -> int:
    """The MODEL_QUALITY analysis for run.py: the exit code; the message file says why.

    ``message_file`` and ``metrics_dir`` are the container's paths; run.py passes them
    re-rooted where the local job runs."""
    try:
        settings = Settings.from_env(env)
        outcome = analyze(
            settings, now=now or datetime.now(timezone.utc), metrics_dir=metrics_dir,
            metrics_time=now,
        )  # fmt: skip
    except ModelQualityError as exc:
        print(f"ClientError: {exc}", file=sys.stderr)
        write_message(message_file, f"ClientError: {exc}")
        return 1
    print(outcome.message, flush=True)
    write_message(message_file, outcome.message)
    return outcome.exit_code
