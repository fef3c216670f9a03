"""The local Clarify runtime: what the local cloud runs for SageMaker Clarify's image.

Clarify's container takes `analysis_config.json` and the dataset and writes `analysis.json` and
a report. So does this script, on this machine, with two differences from AWS:

- **No shadow endpoint.** Clarify creates an endpoint from the config's `predictor.model_name`
  and sends it the data; here the model is looked up with `DescribeModel` (through the local
  service), its `ModelDataUrl` downloaded and the booster scored directly (xgboost 3.0.5, the
  serving image's version).
- **Exact SHAP.** Clarify estimates Kernel SHAP against the baseline; here the same values are
  computed exactly by interventional TreeSHAP (`explain.py`; analysis.json names the method).

Bias metrics come from `bias.py` (Clarify's definitions). Paths are the container's own
(`/opt/ml/processing/...`); the local job runner re-roots them under the job's folder.
Environment: `SFN_MLOPS_BIAS_THRESHOLDS` (JSON, optional) marks the bias gate's thresholds in
the HTML report; AWS's Clarify ignores it.
"""

from __future__ import annotations

import argparse
import json
import os
import sys
import tarfile
import tempfile
import traceback
from collections.abc import Sequence
from typing import Any

import numpy as np
import pandas as pd

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
# The job scripts' shared helpers (the local runtime runs this file from the project).
sys.path.insert(
    1, os.path.join(os.path.dirname(os.path.dirname(os.path.abspath(__file__))), "common")
)

import html_report  # noqa: E402
from jobkit import import_xgboost  # noqa: E402

CONFIG = "/opt/ml/processing/input/config/analysis_config.json"
DATA_DIR = "/opt/ml/processing/input/data"
OUTPUT_DIR = "/opt/ml/processing/output"
MESSAGE_FILE = "/opt/ml/output/message"
MODEL_FILE = "xgboost-model"
PREDICTED = "predicted_label"
THRESHOLDS_ENV = "SFN_MLOPS_BIAS_THRESHOLDS"
KMEANS_SEED = 0


class ClarifyUserError(Exception):
    """The config or the data is wrong (Clarify's ClientError); the message says what."""


# ---------------------------------------------------------------- adapters to bias.py / explain.py


def compute_bias(frame: pd.DataFrame, config: dict[str, Any], predicted: str | None) -> dict:
    """analysis.json's bias sections (bias.py). The one place that knows bias.py's API."""
    import bias

    methods = config.get("methods", {})
    pre = (methods.get("pre_training_bias") or {}).get("methods")
    post = (methods.get("post_training_bias") or {}).get("methods")
    try:
        return bias.bias_report(  # type: ignore[no-any-return]
            frame,
            label=config["label"],
            label_values_or_threshold=config["label_values_or_threshold"],
            facets=config["facet"],
            group_variable=config.get("group_variable"),
            predicted_label=predicted if post else None,
            pre_training_methods=pre,
            post_training_methods=post,
        )
    except bias.BiasAnalysisError as exc:
        raise ClarifyUserError(str(exc)) from exc


def compute_shap(
    booster: Any,
    records: np.ndarray,
    baseline: np.ndarray,
    feature_names: list[str],
    agg_method: str,
    output_group: int = 0,
) -> tuple[dict, np.ndarray, str]:
    """(analysis.json's explanation document, per-record values, out.csv). The one place that
    knows explain.py's API."""
    import explain

    if booster.feature_names is not None:
        # explain.py scores the baseline with an unnamed DMatrix: give it an unnamed booster.
        booster = booster.copy()
        booster.feature_names = None
    explanation = explain.shap_values(
        booster, records, baseline, feature_names, output_group=output_group
    )
    document = explain.clarify_explanation(explanation, label="label0", agg_method=agg_method)
    return document, explanation.values, explain.local_shap_values_csv(explanation)


# ---------------------------------------------------------------- model and data


def load_booster(model_name: str, workdir: str) -> Any:
    """The model's booster: DescribeModel -> ModelDataUrl -> model.tar.gz -> xgboost-model."""
    import boto3
    from botocore.exceptions import ClientError

    xgboost = import_xgboost()

    try:
        model = boto3.client("sagemaker").describe_model(ModelName=model_name)
    except ClientError as exc:
        raise ClarifyUserError(
            f"predictor.model_name {model_name!r}: {exc.response['Error']['Message']}"
        ) from exc
    container = model.get("PrimaryContainer") or (model.get("Containers") or [{}])[0]
    url = container.get("ModelDataUrl")
    if not url:
        raise ClarifyUserError(f"model {model_name!r} has no ModelDataUrl")
    bucket, _, key = url.removeprefix("s3://").partition("/")
    archive = os.path.join(workdir, "model.tar.gz")
    boto3.client("s3").download_file(bucket, key, archive)
    with tarfile.open(archive, "r:gz") as tar:
        member = next(
            (m for m in tar.getmembers() if m.name.removeprefix("./") == MODEL_FILE), None
        )
        handle = tar.extractfile(member) if member is not None and member.isfile() else None
        if handle is None:
            raise ClarifyUserError(f"{url} has no {MODEL_FILE}")
        with handle:
            raw = bytearray(handle.read())
    booster = xgboost.Booster()
    booster.load_model(raw)
    return booster


def read_dataset(data_dir: str, headers: list[str] | None) -> pd.DataFrame:
    names = sorted(
        n for n in os.listdir(data_dir) if not n.startswith(".") and n.lower().endswith(".csv")
    )
    if not names:
        raise ClarifyUserError(f"no CSV file in the dataset {data_dir}")
    frames = [
        pd.read_csv(os.path.join(data_dir, n), header=None if headers else "infer", names=headers)
        for n in names
    ]
    frame = pd.concat(frames, ignore_index=True)
    if frame.empty:
        raise ClarifyUserError("the dataset is empty")
    return frame


def predict(booster: Any, features: np.ndarray, config: dict[str, Any]) -> np.ndarray:
    """The predicted label as Clarify derives it from the model's answer."""
    xgboost = import_xgboost()

    matrix = xgboost.DMatrix(features, feature_names=booster.feature_names)
    scores = np.asarray(booster.predict(matrix))
    if scores.ndim == 2:  # multi:softprob
        return np.argmax(scores, axis=1)
    if "probability_threshold" in config:
        return (scores > float(config["probability_threshold"])).astype(np.int64)
    return scores.astype(np.float64)


def kmeans(
    rows: np.ndarray, clusters: int, *, seed: int = KMEANS_SEED, rounds: int = 100
) -> np.ndarray:
    """K-means centroids (k-means++ seeding, then Lloyd's iterations), deterministic for a seed.

    numpy only: scikit-learn's import alone costs a local job more than a second.
    """
    rng = np.random.default_rng(seed)
    count = min(clusters, len(np.unique(rows, axis=0)))
    centres = [rows[rng.integers(len(rows))]]
    for _ in range(1, count):
        distance = np.min(((rows[:, None, :] - np.array(centres)[None]) ** 2).sum(-1), axis=1)
        total = distance.sum()
        pick = rng.choice(len(rows), p=distance / total) if total > 0 else rng.integers(len(rows))
        centres.append(rows[pick])
    centroids = np.array(centres, dtype=np.float64)
    for _ in range(rounds):
        nearest = np.argmin(((rows[:, None, :] - centroids[None]) ** 2).sum(-1), axis=1)
        moved = np.array(
            [rows[nearest == k].mean(axis=0) if np.any(nearest == k) else centroids[k]
             for k in range(count)]
        )  # fmt: skip
        if np.allclose(moved, centroids):
            break
        centroids = moved
    return centroids


def baseline_rows(shap: dict[str, Any], features: np.ndarray) -> np.ndarray:
    """Clarify's SHAP baseline: the config's rows, or k-means centroids of the dataset."""
    if "baseline" in shap:
        return np.asarray(shap["baseline"], dtype=np.float64)
    filled = np.where(np.isnan(features), np.nanmean(features, axis=0), features)
    return kmeans(filled, int(shap.get("num_clusters", 10)))


# ---------------------------------------------------------------- the job


def analyze(config: dict[str, Any], frame: pd.DataFrame, booster: Any) -> dict[str, Any]:
    """analysis.json plus what the HTML report draws."""
    label = config.get("label")
    excluded = set(config.get("excluded_columns") or [])
    feature_names = [c for c in frame.columns if c != label and c not in excluded]
    features = frame[feature_names].to_numpy(dtype=np.float64)
    methods = config.get("methods", {})
    analysis: dict[str, Any] = {"version": "1.0"}
    local_values = None
    if "pre_training_bias" in methods or "post_training_bias" in methods:
        scored = frame.copy()
        predicted = predict(booster, features, config)
        if predicted.dtype.kind == "f" and label is not None:
            # A regression label is thresholded; Clarify would read an integer target with
            # few distinct values as categorical, so it is compared as a number here.
            scored[label] = scored[label].astype(np.float64)
        scored[PREDICTED] = predicted
        analysis.update(compute_bias(scored, config, PREDICTED))
    local_csv = None
    if "shap" in methods:
        shap = methods["shap"]
        document, local_values, local_csv = compute_shap(
            booster,
            features,
            baseline_rows(shap, features),
            feature_names,
            shap.get("agg_method", "mean_abs"),
        )
        analysis.update(document)
    return {
        "analysis": analysis,
        "local_values": local_values,
        "local_csv": local_csv,
        "features": features,
        "feature_names": feature_names,
    }


def run(*, config_path: str, data_dir: str, output_dir: str, thresholds: dict[str, float]) -> None:
    with open(config_path, encoding="utf-8") as handle:
        config = json.load(handle)
    model_name = (config.get("predictor") or {}).get("model_name")
    if not model_name:
        raise ClarifyUserError("the analysis config has no predictor.model_name")
    frame = read_dataset(data_dir, config.get("headers"))
    with tempfile.TemporaryDirectory() as workdir:
        booster = load_booster(model_name, workdir)
    result = analyze(config, frame, booster)
    os.makedirs(output_dir, exist_ok=True)
    with open(os.path.join(output_dir, "analysis.json"), "w", encoding="utf-8") as handle:
        json.dump(result["analysis"], handle, indent=2)
    if result["local_csv"] is not None:
        os.makedirs(os.path.join(output_dir, "explanations_shap"), exist_ok=True)
        with open(os.path.join(output_dir, "explanations_shap", "out.csv"), "w") as handle:
            handle.write(result["local_csv"])
    title = ((config.get("methods") or {}).get("report") or {}).get("title", "Clarify report")
    page = html_report.render(
        result["analysis"],
        title=title,
        thresholds=thresholds,
        local_values=result["local_values"],
        records=result["features"],
        feature_names=result["feature_names"],
    )
    with open(os.path.join(output_dir, "report.html"), "w", encoding="utf-8") as handle:
        handle.write(page)
    print(f"wrote analysis.json and report.html to {output_dir}", flush=True)


def main(argv: Sequence[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--config", default=CONFIG)
    parser.add_argument("--data-dir", default=DATA_DIR)
    parser.add_argument("--output-dir", default=OUTPUT_DIR)
    parser.add_argument("--message-file", default=MESSAGE_FILE)
    args = parser.parse_args(argv)
    try:
        thresholds = json.loads(os.environ.get(THRESHOLDS_ENV) or "{}")
        run(
            config_path=args.config,
            data_dir=args.data_dir,
            output_dir=args.output_dir,
            thresholds=thresholds,
        )
    except Exception as exc:  # noqa: BLE001 - every failure must reach the message file
        traceback.print_exc()
        kind = "ClientError" if isinstance(exc, ClarifyUserError) else "AlgorithmError"
        reason = f"{kind}: {exc}"[:1024]
        os.makedirs(os.path.dirname(args.message_file), exist_ok=True)
        with open(args.message_file, "w", encoding="utf-8") as handle:
            handle.write(reason)
        print(reason, file=sys.stderr)
        return 1
    return 0


if __name__ == "__main__":
    sys.exit(main())
