"""Training job: XGBoost script mode for the SageMaker XGBoost framework image 3.0-5.

Reads the preprocessing job's headerless CSVs (target first) and schema.json from the SM_CHANNEL_*
folders, trains with xgboost.train, and writes `xgboost-model` plus schema.json into SM_MODEL_DIR
so the model archive describes itself, and training_metrics.json into SM_OUTPUT_DATA_DIR.
"""

from __future__ import annotations

import argparse
import json
import os
import sys
import time
from collections.abc import Mapping, Sequence
from typing import Any

import jobkit
import numpy as np
from jobkit import AlgorithmError, UserError

xgb = jobkit.import_xgboost()

DEFAULT_OBJECTIVES = {
    "regression": "reg:squarederror",
    "binary": "binary:logistic",
    "multiclass": "multi:softprob",
}
# Objectives whose predictions the evaluation job and the endpoint understand.
ALLOWED_OBJECTIVES = {
    "regression": ("reg:", "count:poisson"),
    "binary": ("binary:logistic",),
    "multiclass": ("multi:softprob",),
}
# xgboost parameters that must be numbers; xgboost itself checks their ranges.
INTEGER_KEYS = frozenset(
    ["max_depth", "num_class", "max_leaves", "max_bin", "num_parallel_tree", "seed"]
)
NUMBER_KEYS = frozenset(
    [
        "eta",
        "learning_rate",
        "gamma",
        "min_split_loss",
        "min_child_weight",
        "max_delta_step",
        "subsample",
        "colsample_bytree",
        "colsample_bylevel",
        "colsample_bynode",
        "lambda",
        "reg_lambda",
        "alpha",
        "reg_alpha",
        "scale_pos_weight",
        "base_score",
        "tweedie_variance_power",
    ]
)


# ---------------------------------------------------------------- hyperparameters


def cli_hyperparameters(argv: Sequence[str]) -> dict[str, str]:
    """Parse the `--name value` pairs script mode passes; names are not known in advance."""
    names = {token[2:].split("=", 1)[0] for token in argv if token.startswith("--")}
    parser = argparse.ArgumentParser(add_help=False)
    for name in sorted(names):
        parser.add_argument(f"--{name}", dest=name, type=str)
    known, _ = parser.parse_known_args(list(argv))
    return {name: value for name, value in vars(known).items() if value is not None}


def merge_hyperparameters(sm_hps: str | None, cli: Mapping[str, str]) -> dict[str, Any]:
    """SM_HPS (JSON) overlaid by the command line, which wins; sagemaker_* keys dropped."""
    try:
        from_env = json.loads(sm_hps) if sm_hps else {}
    except json.JSONDecodeError as exc:
        raise UserError(f"SM_HPS is not valid JSON: {exc.msg}") from exc
    if not isinstance(from_env, dict):
        raise UserError("SM_HPS must be a JSON object of hyperparameters")
    merged = {**from_env, **cli}
    return {key: value for key, value in merged.items() if not _platform_key(key)}


def _platform_key(key: str) -> bool:
    """SageMaker's own hyperparameters (script mode's, a tuning job's objective), not xgboost's."""
    return key.startswith("sagemaker_") or key == "_tuning_objective_metric"


def _number(text: Any) -> Any:
    """Cast a numeric string to int or float; leave anything else as it is."""
    if not isinstance(text, str):
        return text
    for cast in (int, float):
        try:
            return cast(text)
        except ValueError:
            continue
    return text


def _integer(key: str, value: Any, minimum: int) -> int:
    number = _number(value)
    if isinstance(number, float) and number.is_integer():
        number = int(number)
    if isinstance(number, bool) or not isinstance(number, int) or number < minimum:
        raise UserError(f"hyperparameter {key}={value!r} must be an integer >= {minimum}")
    return number


def resolve_hyperparameters(
    hyperparameters: Mapping[str, Any], schema: Mapping[str, Any]
) -> tuple[dict[str, Any], int, int | None]:
    """Turn string hyperparameters into xgboost params, num_round and early_stopping_rounds."""
    params = {
        key: _number(value) for key, value in hyperparameters.items() if not _platform_key(key)
    }
    if "num_round" not in params:
        raise UserError(
            "hyperparameter num_round is required (the number of boosting rounds, e.g. 100)"
        )
    num_round = _integer("num_round", params.pop("num_round"), 1)
    early = params.pop("early_stopping_rounds", None)
    early_stopping = None if early in (None, "") else _integer("early_stopping_rounds", early, 1)
    for key in sorted(INTEGER_KEYS & params.keys()):
        if isinstance(params[key], str):
            raise UserError(f"hyperparameter {key}={params[key]!r} must be an integer")
    for key in sorted(NUMBER_KEYS & params.keys()):
        if isinstance(params[key], str):
            raise UserError(f"hyperparameter {key}={params[key]!r} must be a number")
    params.update(_objective_params(params, schema))
    if isinstance(params.get("eval_metric"), str) and "," in params["eval_metric"]:
        params["eval_metric"] = [m.strip() for m in params["eval_metric"].split(",") if m.strip()]
    return params, num_round, early_stopping


def _objective_params(params: Mapping[str, Any], schema: Mapping[str, Any]) -> dict[str, Any]:
    """Default the objective from the problem type and check it yields what serving expects."""
    problem = schema["problem_type"]
    objective = str(params.get("objective", DEFAULT_OBJECTIVES[problem]))
    if not objective.startswith(ALLOWED_OBJECTIVES[problem]):
        raise UserError(
            f"hyperparameter objective={objective!r} does not fit problem type {problem}; "
            f"use {DEFAULT_OBJECTIVES[problem]}"
        )
    extra: dict[str, Any] = {"objective": objective}
    if problem == "multiclass":
        classes = len(schema["labels"])
        if "num_class" in params and params["num_class"] != classes:
            raise UserError(
                f"hyperparameter num_class={params['num_class']!r} but the data has "
                f"{classes} classes {schema['labels']}"
            )
        extra["num_class"] = classes
    return extra


# ---------------------------------------------------------------- training


def load_matrix(path: str, schema: Mapping[str, Any], nthread: int) -> xgb.DMatrix:
    """DMatrix from the headerless CSV via numpy (much faster than xgboost's CSV parser)."""
    y, x = jobkit.read_target_first_csv(path)
    features = list(schema["features"])
    if x.shape[1] != len(features):
        raise UserError(
            f"{path} has {x.shape[1]} feature columns but schema.json lists "
            f"{len(features)}: {features}"
        )
    if y.size == 0:
        raise UserError(f"{path} has no rows")
    if np.isnan(y).any():
        raise UserError(
            f"{path}: the target (first column) is missing in {int(np.isnan(y).sum())} row(s)"
        )
    return xgb.DMatrix(x, label=y, feature_names=features, nthread=nthread)


def _final_values(
    history: Mapping[str, Mapping[str, list[float]]], iteration: int
) -> dict[str, dict[str, float]]:
    return {
        data: {metric: float(values[iteration]) for metric, values in metrics.items()}
        for data, metrics in history.items()
    }


def train(
    *,
    train_path: str,
    validation_path: str | None,
    schema: Mapping[str, Any],
    hyperparameters: Mapping[str, Any],
    model_dir: str,
    output_data_dir: str,
    nthread: int,
) -> dict[str, Any]:
    """Train a booster, save it as `xgboost-model` with schema.json, return the training metrics."""
    params, num_round, early_stopping = resolve_hyperparameters(hyperparameters, schema)
    if early_stopping and not validation_path:
        raise UserError("hyperparameter early_stopping_rounds needs a validation channel")
    params["nthread"] = nthread
    dtrain = load_matrix(train_path, schema, nthread)
    evals = [(dtrain, "train")]
    if validation_path:
        evals.append((load_matrix(validation_path, schema, nthread), "validation"))
    print(
        f"training on {dtrain.num_row()} rows x {dtrain.num_col()} features; params {params}, "
        f"num_round={num_round}, early_stopping_rounds={early_stopping}",
        flush=True,
    )
    history: dict[str, dict[str, list[float]]] = {}
    started = time.perf_counter()
    try:
        booster = xgb.train(
            params,
            dtrain,
            num_boost_round=num_round,
            evals=evals,
            evals_result=history,
            early_stopping_rounds=early_stopping,
            verbose_eval=True,
        )
    except xgb.core.XGBoostError as exc:
        raise AlgorithmError(f"xgboost failed during training: {exc}") from exc
    seconds = time.perf_counter() - started
    rounds = booster.num_boosted_rounds()
    best = booster.best_iteration if early_stopping else rounds - 1
    if early_stopping and best + 1 < rounds:
        booster = booster[: best + 1]  # serve the best model, not the rounds after it
    save_model(booster, model_dir, schema)
    metrics = {
        "final": _final_values(history, best),
        "best_iteration": best,
        "rounds": rounds,
        "train_seconds": round(seconds, 3),
    }
    jobkit.write_json(os.path.join(output_data_dir, "training_metrics.json"), metrics)
    print(f"trained {rounds} rounds in {seconds:.2f}s; final {metrics['final']}", flush=True)
    return metrics


def save_model(booster: xgb.Booster, model_dir: str, schema: Mapping[str, Any]) -> None:
    """Save the booster under the name the XGBoost image serves and check it loads back."""
    os.makedirs(model_dir, exist_ok=True)
    model_path = os.path.join(model_dir, jobkit.MODEL_FILE)
    # UBJSON, what save_model writes for a name without extension, without its warning.
    with open(model_path, "wb") as handle:
        handle.write(booster.save_raw(raw_format="ubj"))
    xgb.Booster().load_model(model_path)
    jobkit.write_json(os.path.join(model_dir, jobkit.SCHEMA_FILE), dict(schema))


# ---------------------------------------------------------------- entry point


def _channel(env: Mapping[str, str], name: str, *, required: bool) -> str | None:
    folder = env.get(f"SM_CHANNEL_{name.upper()}")
    if not folder:
        if required:
            raise UserError(f"the {name} channel is missing (SM_CHANNEL_{name.upper()} is not set)")
        return None
    return folder


def run(env: Mapping[str, str], argv: Sequence[str]) -> dict[str, Any]:
    """Read the SM_* variables and the command line once, then call `train`."""
    schema_dir = _channel(env, "schema", required=True)
    schema_path = jobkit.find_file(schema_dir, ".json", what="schema channel")
    schema = jobkit.load_schema(schema_path)
    train_dir = _channel(env, "train", required=True)
    validation_dir = _channel(env, "validation", required=False)
    return train(
        train_path=jobkit.find_file(train_dir, ".csv", what="train channel"),
        validation_path=jobkit.find_file(validation_dir, ".csv", what="validation channel")
        if validation_dir
        else None,
        schema=schema,
        hyperparameters=merge_hyperparameters(env.get("SM_HPS"), cli_hyperparameters(argv)),
        model_dir=env.get("SM_MODEL_DIR", "/opt/ml/model"),
        output_data_dir=env.get("SM_OUTPUT_DATA_DIR", "/opt/ml/output/data"),
        nthread=int(env.get("SM_NUM_CPUS") or os.cpu_count() or 1),
    )


def main(argv: Sequence[str] | None = None, env: Mapping[str, str] | None = None) -> int:
    environ = os.environ if env is None else env
    args = sys.argv[1:] if argv is None else list(argv)
    output_dir = environ.get("SM_OUTPUT_DIR", os.path.dirname(jobkit.TRAINING_FAILURE_FILE))
    failure_file = os.path.join(output_dir, os.path.basename(jobkit.TRAINING_FAILURE_FILE))
    return jobkit.run_job(lambda: run(environ, args), reason_file=failure_file)


if __name__ == "__main__":
    sys.exit(main())
