"""The local Clarify runtime: what the local cloud runs for SageMaker Clarify's image.

Clarify's container takes `analysis_config.json` and the dataset and writes `analysis.json` and
a report. So does this script, on this machine, making the calls Clarify makes with the job's
own credentials (its RoleArn, which the local service enforces):

- **The shadow endpoint** (`shadow.py`), as in AWS: an endpoint config and an endpoint made
  from the config's `predictor.model_name` under Clarify's names (`sm-clarify-config-...`,
  `sm-clarify-<model>-...`), tagged, waited for, sent the records in CSV batches and deleted
  afterwards, whatever happened. The bias job's predicted labels are the endpoint's answers,
  read as Clarify reads them (`predictor.label`/`probability`/`label_headers`, the config's
  `probability_threshold`). A denied call fails the job with a ClientError naming the action.
- **Exact SHAP** (the main difference left; README lists the others): Clarify estimates Kernel
  SHAP by sending the endpoint the baseline's synthetic records; here the same values are
  computed exactly by interventional TreeSHAP (`explain.py`; analysis.json names the method) on
  the booster, looked up with `DescribeModel` and downloaded from its `ModelDataUrl` (xgboost
  3.0.5, the serving image's version). The explainability job still makes and asks the shadow
  endpoint, and fails if its answers are not the booster's (TreeSHAP would explain another model
  than the one served). An analysis of pre-training bias only asks no model.

Bias metrics come from `bias.py` (Clarify's definitions). Paths are the container's own
(`/opt/ml/processing/...`); the local job runner re-roots them under the job's folder and says
the job's name (`--job-name`, the shadow endpoint's tag). Environment:
`SFN_MLOPS_BIAS_THRESHOLDS` (JSON, optional) marks the bias gate's thresholds in the HTML
report; AWS's Clarify ignores it.
"""

from __future__ import annotations

import argparse
import json
import os
import signal
import sys
import tarfile
import tempfile
import traceback
from collections.abc import Iterator, Sequence
from contextlib import contextmanager
from typing import Any

import numpy as np
import pandas as pd

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
# The job scripts' shared helpers (the local runtime runs this file from the project).
sys.path.insert(
    1, os.path.join(os.path.dirname(os.path.dirname(os.path.abspath(__file__))), "common")
)

import html_report  # noqa: E402
import shadow  # noqa: E402
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


def predicted_labels(answers: Sequence[Sequence[str]], config: dict[str, Any]) -> np.ndarray:
    """The predicted label of each record from the endpoint's CSV answer, as Clarify reads it:
    ``predictor.label`` (an index) is the label itself; otherwise the scores (the row, or the
    cell at ``predictor.probability``): one score per class gives the class of the highest
    (``predictor.label_headers`` names them), a single score is cut at the config's
    ``probability_threshold`` when it has one, or is the prediction (a regression's value)."""
    predictor = config.get("predictor") or {}
    if predictor.get("label") is not None:
        index = _csv_index(predictor["label"], "predictor.label")
        return _labels([_cell(row, index, number) for number, row in enumerate(answers, 1)])
    probability = predictor.get("probability")
    index = None if probability is None else _csv_index(probability, "predictor.probability")
    scores = [_scores(row, index, number) for number, row in enumerate(answers, 1)]
    widths = sorted({len(score) for score in scores})
    if len(widths) > 1:
        raise ClarifyUserError(f"the model answered {widths[0]} to {widths[-1]} scores a record")
    if widths and widths[0] > 1:
        return _top_class(np.asarray(scores, dtype=np.float64), predictor.get("label_headers"))
    values = np.asarray([score[0] for score in scores], dtype=np.float64)
    if "probability_threshold" in config:
        return (values > float(config["probability_threshold"])).astype(np.int64)
    return values


def _csv_index(value: Any, what: str) -> int:
    if isinstance(value, bool) or not isinstance(value, int):
        raise ClarifyUserError(f"{what} must be a column index for a CSV answer, not {value!r}")
    return value


def _cell(row: Sequence[str], index: int, number: int) -> str:
    if not -len(row) <= index < len(row):
        raise ClarifyUserError(f"the model's answer to record {number} has no column {index}")
    return row[index]


def _labels(cells: list[str]) -> np.ndarray:
    """Numbers when every label is one (as the dataset's label column reads), else text."""
    try:
        return np.asarray([float(cell) for cell in cells], dtype=np.float64)
    except ValueError:
        return np.asarray(cells, dtype=object)


def _scores(row: Sequence[str], index: int | None, number: int) -> list[float]:
    cells = list(row) if index is None else [_cell(row, index, number)]
    if len(cells) == 1 and cells[0].strip().startswith("["):  # a list in one quoted cell
        cells = cells[0].strip()[1:-1].split(",")
    try:
        return [float(cell) for cell in cells]
    except ValueError:
        raise ClarifyUserError(
            f"the model's answer to record {number} is not numeric: {','.join(row)!r}"
        ) from None


def _top_class(scores: np.ndarray, headers: Sequence[Any] | None) -> np.ndarray:
    picks = np.argmax(scores, axis=1)
    if not headers:
        return picks.astype(np.int64)
    if len(headers) != scores.shape[1]:
        raise ClarifyUserError(
            f"predictor.label_headers has {len(headers)} label(s) but the model answered "
            f"{scores.shape[1]} scores a record"
        )
    return np.asarray([headers[pick] for pick in picks])


def check_served(answers: Sequence[Sequence[str]], booster: Any, features: np.ndarray) -> None:
    """TreeSHAP explains the booster: the shadow endpoint must answer what the booster predicts
    (else the explanation would be of another model than the one served)."""
    xgboost = import_xgboost()

    expected = np.asarray(
        booster.predict(xgboost.DMatrix(features, feature_names=booster.feature_names))
    ).reshape(len(features), -1)
    for number, row in enumerate(answers, 1):
        got = _scores(row, None, number)
        if len(got) != expected.shape[1] or not np.allclose(
            got, expected[number - 1], rtol=1e-5, atol=1e-6
        ):
            raise ClarifyUserError(
                f"the shadow endpoint answered {','.join(row)} to record {number} where the "
                f"model's {MODEL_FILE} predicts {','.join(map(str, expected[number - 1]))}: "
                "the local runtime explains that booster (TreeSHAP), so the endpoint must "
                "serve its predictions"
            )


class ServedModel:
    """The model as Clarify reaches it: the shadow endpoint's answers, and (for TreeSHAP) the
    booster of its ModelDataUrl, loaded on first use."""

    def __init__(self, endpoint: Any, model_name: str, workdir: str) -> None:
        self.endpoint = endpoint
        self.model_name = model_name
        self.workdir = workdir
        self._booster: Any = None

    def answers(self, features: pd.DataFrame) -> list[list[str]]:
        records = features.to_csv(header=False, index=False, lineterminator="\n").splitlines()
        return self.endpoint.predict(records)  # type: ignore[no-any-return]

    def booster(self) -> Any:
        if self._booster is None:
            self._booster = load_booster(self.model_name, self.workdir)
        return self._booster


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


def analyze(config: dict[str, Any], frame: pd.DataFrame, model: Any) -> dict[str, Any]:
    """analysis.json plus what the HTML report draws. ``model`` (a ServedModel, or None when no
    method needs the model) gives the endpoint's answers and the booster."""
    label = config.get("label")
    excluded = set(config.get("excluded_columns") or [])
    feature_names = [c for c in frame.columns if c != label and c not in excluded]
    features = frame[feature_names].to_numpy(dtype=np.float64)
    methods = config.get("methods", {})
    analysis: dict[str, Any] = {"version": "1.0"}
    answers = model.answers(frame[feature_names]) if needs_model(methods) else None
    if "pre_training_bias" in methods or "post_training_bias" in methods:
        scored = frame.copy()
        if answers is not None and "post_training_bias" in methods:
            predicted = predicted_labels(answers, config)
            if predicted.dtype.kind == "f" and label is not None:
                # A regression label is thresholded; Clarify would read an integer target with
                # few distinct values as categorical, so it is compared as a number here.
                scored[label] = scored[label].astype(np.float64)
            scored[PREDICTED] = predicted
        analysis.update(compute_bias(scored, config, PREDICTED))
    local_values = local_csv = None
    if "shap" in methods:
        shap = methods["shap"]
        booster = model.booster()
        check_served(answers or [], booster, features)
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


def needs_model(methods: dict[str, Any]) -> bool:
    """Whether the analysis asks the model (Clarify's predictor section is "required if shap
    and post_training_bias sections are present")."""
    return "post_training_bias" in methods or "shap" in methods


@contextmanager
def served_model(config: dict[str, Any], job_name: str | None) -> Iterator[ServedModel]:
    """The config's model behind its shadow endpoint, for as long as the analysis runs."""
    import boto3

    if not (config.get("predictor") or {}).get("model_name"):
        raise ClarifyUserError("the analysis config has no predictor.model_name")
    predictor = shadow.Predictor.from_config(config)
    if predictor.content_type != shadow.CSV or predictor.accept != shadow.CSV:
        raise ClarifyUserError(
            f"predictor content_type {predictor.content_type!r} and accept_type "
            f"{predictor.accept!r}: the local Clarify runtime sends and reads text/csv only"
        )
    sagemaker, runtime = boto3.client("sagemaker"), boto3.client("sagemaker-runtime")
    with (
        tempfile.TemporaryDirectory() as workdir,
        shadow.shadow_endpoint(sagemaker, runtime, predictor, job_name=job_name) as endpoint,
    ):
        yield ServedModel(endpoint, predictor.model_name, workdir)


def run(
    *,
    config_path: str,
    data_dir: str,
    output_dir: str,
    thresholds: dict[str, float],
    job_name: str | None = None,
) -> None:
    with open(config_path, encoding="utf-8") as handle:
        config = json.load(handle)
    frame = read_dataset(data_dir, config.get("headers"))
    if needs_model(config.get("methods") or {}):
        with served_model(config, job_name) as model:
            result = analyze(config, frame, model)
    else:
        result = analyze(config, frame, None)
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


def failure_message(exc: BaseException) -> str:
    """What the job says in /opt/ml/output/message: whose fault, then what happened. An AWS
    call's error reads as boto's (``An error occurred (AccessDeniedException) when calling the
    CreateEndpointConfig operation: ...``), the caller's fault (Clarify's ClientError)."""
    from botocore.exceptions import ClientError

    if isinstance(exc, ClarifyUserError | ClientError):
        kind = "ClientError"
    elif isinstance(exc, shadow.ShadowEndpointError):
        kind = exc.kind
    else:
        kind = "AlgorithmError"
    return f"{kind}: {exc}"[:1024]


def _stop(signum: int, frame: Any) -> None:
    """SIGTERM (a stop, MaxRuntimeInSeconds) unwinds like an error, so the shadow endpoint is
    still deleted."""
    raise SystemExit(128 + signum)


def main(argv: Sequence[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--config", default=CONFIG)
    parser.add_argument("--data-dir", default=DATA_DIR)
    parser.add_argument("--output-dir", default=OUTPUT_DIR)
    parser.add_argument("--message-file", default=MESSAGE_FILE)
    parser.add_argument("--job-name", default=None)
    args = parser.parse_args(argv)
    signal.signal(signal.SIGTERM, _stop)
    try:
        thresholds = json.loads(os.environ.get(THRESHOLDS_ENV) or "{}")
        run(
            config_path=args.config,
            data_dir=args.data_dir,
            output_dir=args.output_dir,
            thresholds=thresholds,
            job_name=args.job_name,
        )
    except Exception as exc:  # noqa: BLE001 - every failure must reach the message file
        traceback.print_exc()
        reason = failure_message(exc)
        os.makedirs(os.path.dirname(args.message_file), exist_ok=True)
        with open(args.message_file, "w", encoding="utf-8") as handle:
            handle.write(reason)
        print(reason, file=sys.stderr)
        return 1
    return 0


if __name__ == "__main__":
    sys.exit(main())
