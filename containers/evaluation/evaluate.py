"""Evaluation job: score the trained model on the test split and write evaluation.json.

The report uses SageMaker's model quality metrics layout (the one a model package's
ModelMetrics.ModelQuality.Statistics points at), so the pipeline's threshold Choice and the
Model Registry read the same file. Each metric's standard deviation and percentile confidence
interval come from a seeded bootstrap over the test rows; the production model is scored on
the same resampled rows, so the two are compared paired.
"""

from __future__ import annotations

import argparse
import json
import os
import sys
import tarfile
import tempfile
import time
from collections.abc import Callable, Mapping, Sequence
from typing import Any

import jobkit
import numpy as np
from jobkit import UserError

xgb = jobkit.import_xgboost()

BOOTSTRAP_RESAMPLES = 1000  # percentile intervals need the tails: about a thousand resamples
BOOTSTRAP_MIN_RESAMPLES = 200  # the floor when a large test set shrinks the count
BOOTSTRAP_ROW_BUDGET = 20_000_000  # rows drawn over all resamples, so large test sets stay fast
BOOTSTRAP_MAX_ROWS = 100_000  # each resample draws at most this many rows, so 1M rows stays fast
BOOTSTRAP_SEED = 0
CONFIDENCE_LEVEL = 0.95  # the intervals' level when gate.confidence is not set
EPSILON = 1e-15  # probability clip for log loss, as scikit-learn does
MODEL_QUALITY_BASELINE = "model_quality_baseline.csv"  # Model Monitor's baseline data set
REPORT_KEYS = {
    "regression": "regression_metrics",
    "binary": "binary_classification_metrics",
    "multiclass": "multiclass_classification_metrics",
}

Metric = Callable[[np.ndarray, np.ndarray], float]


# ---------------------------------------------------------------- metrics (numpy only: fast)


def mse(y: np.ndarray, pred: np.ndarray) -> float:
    return float(np.mean((y - pred) ** 2))


def rmse(y: np.ndarray, pred: np.ndarray) -> float:
    return float(np.sqrt(mse(y, pred)))


def mae(y: np.ndarray, pred: np.ndarray) -> float:
    return float(np.mean(np.abs(y - pred)))


def r2(y: np.ndarray, pred: np.ndarray) -> float:
    total = float(np.sum((y - np.mean(y)) ** 2))
    return float("nan") if total == 0 else 1.0 - float(np.sum((y - pred) ** 2)) / total


def auc(y: np.ndarray, prob: np.ndarray) -> float:
    """ROC AUC as the Mann-Whitney statistic over average ranks (ties count half)."""
    positives = int(np.sum(y == 1))
    negatives = y.size - positives
    if positives == 0 or negatives == 0:
        return float("nan")
    ranks = _average_ranks(prob)
    return float(
        (np.sum(ranks[y == 1]) - positives * (positives + 1) / 2) / (positives * negatives)
    )


def _average_ranks(values: np.ndarray) -> np.ndarray:
    order = np.argsort(values, kind="mergesort")
    sorted_values = values[order]
    starts = np.flatnonzero(np.r_[True, sorted_values[1:] != sorted_values[:-1]])
    ends = np.r_[starts[1:], values.size]
    group_rank = (starts + ends + 1) / 2.0  # 1-based average rank of each tie group
    ranks = np.empty(values.size, dtype=np.float64)
    ranks[order] = np.repeat(group_rank, ends - starts)
    return ranks


def _binary_counts(y: np.ndarray, prob: np.ndarray) -> tuple[int, int, int]:
    predicted = prob >= 0.5
    actual = y == 1
    return (
        int(np.sum(predicted & actual)),
        int(np.sum(predicted & ~actual)),
        int(np.sum(~predicted & actual)),
    )


def accuracy_binary(y: np.ndarray, prob: np.ndarray) -> float:
    return float(np.mean((prob >= 0.5) == (y == 1)))


def precision(y: np.ndarray, prob: np.ndarray) -> float:
    tp, fp, _ = _binary_counts(y, prob)
    return tp / (tp + fp) if tp + fp else 0.0


def recall(y: np.ndarray, prob: np.ndarray) -> float:
    tp, _, fn = _binary_counts(y, prob)
    return tp / (tp + fn) if tp + fn else 0.0


def f1(y: np.ndarray, prob: np.ndarray) -> float:
    tp, fp, fn = _binary_counts(y, prob)
    return 2 * tp / (2 * tp + fp + fn) if tp else 0.0


def logloss_binary(y: np.ndarray, prob: np.ndarray) -> float:
    p = np.clip(prob, EPSILON, 1 - EPSILON)
    return float(-np.mean(np.where(y == 1, np.log(p), np.log(1 - p))))


def accuracy_multiclass(y: np.ndarray, prob: np.ndarray) -> float:
    return float(np.mean(np.argmax(prob, axis=1) == y))


def macro_f1(y: np.ndarray, prob: np.ndarray) -> float:
    """Mean F1 over the classes present in the labels or the predictions (scikit-learn's rule)."""
    predicted = np.argmax(prob, axis=1)
    scores = []
    for label in np.union1d(y, predicted):
        tp = np.sum((predicted == label) & (y == label))
        fp = np.sum((predicted == label) & (y != label))
        fn = np.sum((predicted != label) & (y == label))
        scores.append(2 * tp / (2 * tp + fp + fn) if tp else 0.0)
    return float(np.mean(scores))


def logloss_multiclass(y: np.ndarray, prob: np.ndarray) -> float:
    p = np.clip(prob[np.arange(y.size), y.astype(np.int64)], EPSILON, 1.0)
    return float(-np.mean(np.log(p)))


METRICS: dict[str, dict[str, Metric]] = {
    "regression": {"mse": mse, "rmse": rmse, "mae": mae, "r2": r2},
    "binary": {
        "auc": auc,
        "accuracy": accuracy_binary,
        "f1": f1,
        "precision": precision,
        "recall": recall,
        "logloss": logloss_binary,
    },
    "multiclass": {
        "accuracy": accuracy_multiclass,
        "macro_f1": macro_f1,
        "logloss": logloss_multiclass,
    },
}


# ---------------------------------------------------------------- report


def _entry(value: float, spread: float) -> dict[str, float] | None:
    """One metric as {"value", "standard_deviation"}; JSON has no NaN, so undefined is left out."""
    if not np.isfinite(value):
        return None
    entry = {"value": float(value)}
    if np.isfinite(spread):
        entry["standard_deviation"] = float(spread)
    return entry


def resample_count(rows: int) -> int:
    """How many bootstrap resamples a test set of `rows` rows gets: BOOTSTRAP_RESAMPLES, fewer
    (never under BOOTSTRAP_MIN_RESAMPLES) when the rows drawn would pass BOOTSTRAP_ROW_BUDGET."""
    draw = max(1, min(rows, BOOTSTRAP_MAX_ROWS))
    return max(BOOTSTRAP_MIN_RESAMPLES, min(BOOTSTRAP_RESAMPLES, BOOTSTRAP_ROW_BUDGET // draw))


def bootstrap(
    problem_type: str, y: np.ndarray, pred: np.ndarray, *, seed: int = BOOTSTRAP_SEED
) -> dict[str, np.ndarray]:
    """Each metric on resamples of the test rows (drawn with replacement), NaN where undefined.

    The row indices depend only on the seed and the number of rows, so two models scored with
    the same seed on the same rows are resampled identically: resample i of one pairs with
    resample i of the other.
    """
    metrics = METRICS[problem_type]
    rng = np.random.default_rng(seed)
    draw = min(y.size, BOOTSTRAP_MAX_ROWS)
    count = resample_count(y.size)
    samples = {name: np.empty(count) for name in metrics}
    for i in range(count):
        rows = rng.integers(0, y.size, draw)
        y_rows, pred_rows = y[rows], pred[rows]
        for name, metric in metrics.items():
            samples[name][i] = metric(y_rows, pred_rows)
    return samples


def percentile_interval(samples: np.ndarray, level: float) -> dict[str, float] | None:
    """The percentile bootstrap interval: the (1-level)/2 and (1+level)/2 quantiles of the
    finite resampled values; None when fewer than two are finite."""
    finite = samples[np.isfinite(samples)]
    if finite.size < 2:
        return None
    lower, upper = np.quantile(finite, [(1 - level) / 2, (1 + level) / 2])
    return {"lower": float(lower), "upper": float(upper), "level": level}


def metrics_report(
    problem_type: str,
    y: np.ndarray,
    pred: np.ndarray,
    *,
    seed: int = BOOTSTRAP_SEED,
    level: float = CONFIDENCE_LEVEL,
    samples: Mapping[str, np.ndarray] | None = None,
) -> dict[str, Any]:
    """Metric values with bootstrap standard deviations and percentile confidence intervals
    (at `level`), in the model quality layout. `samples` are this model's bootstrap values
    when the caller already has them.

    A metric undefined on this data (AUC with one class, R² of a constant target) is left
    out of the report, with a log line, so every value in the report is a finite number.
    """
    if samples is None:
        samples = bootstrap(problem_type, y, pred, seed=seed)
    section = {}
    for name, metric in METRICS[problem_type].items():
        finite = samples[name][np.isfinite(samples[name])]
        spread = float(np.std(finite)) if finite.size > 1 else float("nan")
        entry: dict[str, Any] | None = _entry(metric(y, pred), spread)
        if entry is None:
            print(f"{name} is undefined on this test data; left out of the report", flush=True)
            continue
        interval = percentile_interval(samples[name], level)
        if interval is not None:
            entry["confidence_interval"] = interval
        section[name] = entry
    return {
        REPORT_KEYS[problem_type]: section,
        "dataset": {"rows": int(y.size)},
        "bootstrap": {"resamples": resample_count(y.size), "seed": seed, "level": level},
    }


def paired_difference(
    new: np.ndarray,
    champion: np.ndarray,
    *,
    metric: str,
    direction: str,
    margin: float = 0.0,
    level: float = CONFIDENCE_LEVEL,
    significance: float | None = None,
) -> dict[str, Any] | None:
    """The new model's metric less the champion's, resample by resample on the same rows.

    `difference` is its bootstrap distribution's interval at `level`; `share_not_better` is
    the share of resamples where the new model is not better by `margin` (a one-sided
    p-value-like share: small means the improvement is unlikely to be luck). With a
    `significance` level, `bound` is the one-sided bound at 1 - significance that decides:
    the upper one (minimize: the difference must stay under -margin) or the lower one
    (maximize: over margin).
    """
    both = np.isfinite(new) & np.isfinite(champion)
    difference = new[both] - champion[both]
    if difference.size < 2:
        return None
    # Better means strictly better by the margin: with a margin of 0, a tie is not better.
    not_better = difference >= -margin if direction == "minimize" else difference <= margin
    result: dict[str, Any] = {
        "metric": metric,
        "direction": direction,
        "margin": margin,
        "resamples": int(difference.size),
        "mean": float(np.mean(difference)),
        "confidence_interval": percentile_interval(difference, level),
        "share_not_better": float(np.mean(not_better)),
    }
    if significance is not None:
        quantile = 1 - significance if direction == "minimize" else significance
        result["significance"] = significance
        result["bound"] = {
            "side": "upper" if direction == "minimize" else "lower",
            "value": float(np.quantile(difference, quantile)),
            "level": 1 - significance,
        }
    return result


def write_model_quality_baseline(
    path: str, problem_type: str, y: np.ndarray, prediction: np.ndarray
) -> None:
    """The Model Monitor model quality baseline data set: a CSV with a header of the test rows'
    `prediction`, `probability` (binary only: P(positive), the value the endpoint returns) and
    `label` (the class code, or the target value). Values are the endpoint's float32 texts, and
    classes are picked as evaluation picks them (P >= 0.5; the largest probability)."""
    texts = prediction.astype(np.float32).astype(str)
    if problem_type == "binary":
        labels = (prediction >= 0.5).astype(np.int64).astype(str)
        columns = {"prediction": labels, "probability": texts, "label": _codes(y)}
    elif problem_type == "multiclass":
        columns = {"prediction": np.argmax(prediction, axis=1).astype(str), "label": _codes(y)}
    else:
        columns = {"prediction": texts, "label": y.astype(str)}
    rows = zip(*columns.values(), strict=True)
    os.makedirs(os.path.dirname(path) or ".", exist_ok=True)
    with open(path, "w", encoding="utf-8") as handle:
        handle.write(",".join(columns) + "\n")
        handle.writelines(",".join(row) + "\n" for row in rows)


def _codes(y: np.ndarray) -> np.ndarray:
    return y.astype(np.int64).astype(str)


def split_metrics(problem_type: str, y: np.ndarray, pred: np.ndarray) -> dict[str, Any]:
    """The metric values on a training or validation split (no bootstrap: they only feed the
    train/test gap, which compares values)."""
    section = {}
    for name, metric in METRICS[problem_type].items():
        entry = _entry(metric(y, pred), float("nan"))
        if entry is not None:
            section[name] = entry
    return {REPORT_KEYS[problem_type]: section, "dataset": {"rows": int(y.size)}}


# ---------------------------------------------------------------- model and data


def extract_model(model_dir: str, workdir: str) -> str:
    """Return a folder holding xgboost-model and schema.json, extracting model.tar.gz if present.

    Only those two members are read from the archive, so no path in it can escape `workdir`.
    """
    archive = os.path.join(model_dir, "model.tar.gz")
    if not os.path.exists(archive):
        if os.path.exists(os.path.join(model_dir, jobkit.MODEL_FILE)):
            return model_dir
        raise UserError(f"{model_dir} has neither model.tar.gz nor {jobkit.MODEL_FILE}")
    try:
        with tarfile.open(archive, "r:gz") as tar:
            for name in (jobkit.MODEL_FILE, jobkit.SCHEMA_FILE):
                _extract_member(tar, name, archive, workdir)
    except tarfile.TarError as exc:
        raise UserError(f"{archive} is not a readable tar.gz archive: {exc}") from exc
    return workdir


def _extract_member(tar: tarfile.TarFile, name: str, archive: str, workdir: str) -> None:
    member = next(
        (m for m in tar.getmembers() if m.name.removeprefix("./") == name and m.isfile()), None
    )
    handle = tar.extractfile(member) if member is not None else None
    if handle is None:
        raise UserError(f"{archive} has no {name}; the training job writes it at the archive root")
    with handle, open(os.path.join(workdir, name), "wb") as out:
        out.write(handle.read())


def load_model(folder: str) -> tuple[xgb.Booster, dict[str, Any]]:
    schema = jobkit.load_schema(os.path.join(folder, jobkit.SCHEMA_FILE))
    booster = xgb.Booster()
    try:
        booster.load_model(os.path.join(folder, jobkit.MODEL_FILE))
    except xgb.core.XGBoostError as exc:
        raise UserError(f"{folder}/{jobkit.MODEL_FILE} is not an XGBoost model: {exc}") from exc
    return booster, schema


def predict(booster: xgb.Booster, schema: Mapping[str, Any], x: np.ndarray) -> np.ndarray:
    """Predictions in the form the metrics take: values, P(positive), or per-class probabilities."""
    features = list(schema["features"])
    if x.shape[1] != len(features):
        raise UserError(
            f"test data has {x.shape[1]} feature columns but the model's schema has {len(features)}"
        )
    prediction = booster.predict(xgb.DMatrix(x, feature_names=features))
    if schema["problem_type"] == "multiclass" and prediction.ndim != 2:
        raise UserError(
            "the multiclass model does not output per-class probabilities (multi:softprob)"
        )
    return prediction.astype(np.float64)


def evaluate(
    *,
    model_dir: str,
    test_path: str,
    output_dir: str,
    champion_dir: str | None = None,
    split_paths: Mapping[str, str] | None = None,
    gate: Mapping[str, Any] | None = None,
) -> dict[str, Any]:
    """Score the model on the test CSV and write evaluation.json and the model quality
    baseline data set (model_quality_baseline.csv); return the report.

    With a champion (the production model's archive in `champion_dir`), it is scored on the
    same rows and its metrics go under `champion`, so the gate compares like with like; with
    the `gate` (the pipeline's resolved gate config) the gate metric's paired difference goes
    there too. The training and validation splits (`split_paths`) are scored under `splits`:
    the train/test gap is how the pipeline sees overfitting.
    """
    started = time.perf_counter()
    gate = dict(gate or {})
    level = float(gate.get("confidence") or CONFIDENCE_LEVEL)
    with tempfile.TemporaryDirectory() as workdir:
        booster, schema = load_model(extract_model(model_dir, workdir))
    y, x = jobkit.read_target_first_csv(test_path)
    if y.size == 0:
        raise UserError(f"test data {test_path} has no rows")
    problem_type = schema["problem_type"]
    prediction = predict(booster, schema, x)
    samples = bootstrap(problem_type, y, prediction)
    report = metrics_report(problem_type, y, prediction, level=level, samples=samples)
    write_model_quality_baseline(
        os.path.join(output_dir, MODEL_QUALITY_BASELINE), problem_type, y, prediction
    )
    splits = {}
    for split, path in (split_paths or {}).items():
        y_split, x_split = jobkit.read_target_first_csv(path)
        if y_split.size:
            prediction = predict(booster, schema, x_split)
            splits[split] = split_metrics(problem_type, y_split, prediction)
    if splits:
        report["splits"] = splits
    if champion_dir and os.path.exists(os.path.join(champion_dir, "model.tar.gz")):
        report["champion"] = score_champion(
            champion_dir, schema, y, x, level=level, gate=gate, new_samples=samples
        )
    if schema.get("data"):  # what the model was trained and is judged on (preprocessing)
        report["data"] = schema["data"]
    jobkit.write_json(os.path.join(output_dir, "evaluation.json"), report)
    print(f"evaluated {y.size} rows in {time.perf_counter() - started:.2f}s: {report}", flush=True)
    return report


def score_champion(
    champion_dir: str,
    schema: Mapping[str, Any],
    y: np.ndarray,
    x: np.ndarray,
    *,
    level: float = CONFIDENCE_LEVEL,
    gate: Mapping[str, Any] | None = None,
    new_samples: Mapping[str, np.ndarray] | None = None,
) -> dict[str, Any]:
    """The champion's metrics on this test set, or why it cannot be compared. With the gate
    and the new model's bootstrap values, the gate metric's paired difference too."""
    source = _champion_source(champion_dir)
    with tempfile.TemporaryDirectory() as workdir:
        try:
            booster, champion_schema = load_model(extract_model(champion_dir, workdir))
        except UserError as exc:
            return {"comparable": False, "source": source, "reason": str(exc)}
    for key in ("problem_type", "features", "categorical"):
        if champion_schema.get(key) != schema.get(key):
            return {
                "comparable": False,
                "source": source,
                "reason": f"the production model's {key} ({champion_schema.get(key)!r}) is "
                f"not this run's ({schema.get(key)!r})",
            }
    prediction = predict(booster, champion_schema, x)
    samples = bootstrap(schema["problem_type"], y, prediction)
    report = metrics_report(schema["problem_type"], y, prediction, level=level, samples=samples)
    metric = (gate or {}).get("metric")
    if gate and new_samples is not None and metric in samples:
        paired = paired_difference(
            new_samples[metric],
            samples[metric],
            metric=metric,
            direction=gate["direction"],
            margin=float(gate.get("champion_margin") or 0.0),
            level=level,
            significance=gate.get("champion_significance"),
        )
        if paired is not None:
            report["paired_difference"] = paired
    return {"comparable": True, "source": source, **report}


def _champion_source(champion_dir: str) -> str:
    try:
        with open(os.path.join(champion_dir, "champion.json"), encoding="utf-8") as handle:
            return str(json.load(handle).get("source") or "the production model")
    except (OSError, ValueError):
        return "the production model"


def parse_args(argv: Sequence[str] | None = None) -> argparse.Namespace:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--model-dir", default="/opt/ml/processing/model")
    parser.add_argument("--test-dir", default="/opt/ml/processing/test")
    parser.add_argument("--output-dir", default="/opt/ml/processing/evaluation")
    parser.add_argument("--champion-dir", help="the production model's archive, if any")
    parser.add_argument("--train-dir", help="the training split, scored for the train/test gap")
    parser.add_argument("--validation-dir", help="the validation split, scored beside it")
    parser.add_argument(
        "--gate",
        type=_gate_json,
        help="the pipeline's gate config as JSON (metric, direction, champion_margin, "
        "confidence, champion_significance): the intervals' level and the paired comparison",
    )
    # A processing job's failure reason goes where DescribeProcessingJob reads ExitMessage from.
    parser.add_argument("--message-file", default=jobkit.PROCESSING_MESSAGE_FILE)
    return parser.parse_args(argv)


def _gate_json(text: str) -> dict[str, Any]:
    try:
        gate = json.loads(text)
    except ValueError as exc:
        raise argparse.ArgumentTypeError(f"--gate is not JSON: {exc}") from exc
    if not isinstance(gate, dict):
        raise argparse.ArgumentTypeError("--gate must be a JSON object")
    return gate


def main(argv: Sequence[str] | None = None) -> int:
    args = parse_args(argv)
    return jobkit.run_job(
        lambda: evaluate(
            model_dir=args.model_dir,
            test_path=jobkit.find_file(args.test_dir, ".csv", what="test input"),
            output_dir=args.output_dir,
            champion_dir=args.champion_dir,
            split_paths={
                split: jobkit.find_file(folder, ".csv", what=f"{split} input")
                for split, folder in (
                    ("train", args.train_dir),
                    ("validation", args.validation_dir),
                )
                if folder
            },
            gate=args.gate,
        ),
        reason_file=args.message_file,
    )


if __name__ == "__main__":
    sys.exit(main())
