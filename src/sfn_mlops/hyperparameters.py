"""Hyperparameters checked by XGBoost itself before anything runs.

XGBoost knows its parameters, their ranges and which of them the chosen objective and booster
use; no table of ours could stay as exact. So each parameter the config sets is tried alone,
with the run's objective, on a one-round training of four rows (about 2 ms each, in the pinned
xgboost that trains and serves the model): XGBoost rejects a bad value with its own message
(`value -1 for Parameter max_depth should be greater equal to 0`) and warns that a parameter it
does not know, or that the objective does not use, "is not used". Every problem is reported at
once, each naming its `hyperparameters.<name>` key.

Only the config's own hyperparameters are tried: the defaults are known to be good, so a run
that sets none pays nothing (importing xgboost costs the CLI about 0.3 s).
"""

from __future__ import annotations

import difflib
import json
import re
import warnings
from collections.abc import Iterator, Mapping
from typing import Any

from sfn_mlops import job_code

#: Hyperparameters of the training script, not of XGBoost (containers/training/train.py).
SCRIPT_INTEGERS = {"num_round": 1, "early_stopping_rounds": 1}  # name: minimum
#: XGBoost names that its saved config does not list (set globally or as the metric list).
UNLISTED_NAMES = ("eval_metric", "verbosity", "nthread", "num_class", "booster", "objective")
_PROBE_CLASSES = 3
_LOG_PREFIX = re.compile(r"^\[[\d:]+\] [^:]+:\d+: (Check failed: [^:]*: )?")


def problems(hyperparameters: Mapping[str, str], problem_type: str) -> list[str]:
    """What is wrong with the config's hyperparameters, one line each (empty: all good).

    `hyperparameters` are the config's own (strings, as SageMaker passes them); the objective,
    when not among them, is the problem type's default.
    """
    found: list[str] = []
    xgboost_params: dict[str, str] = {}
    for name, value in hyperparameters.items():
        if name in SCRIPT_INTEGERS:
            found += _script_integer(name, value)
        elif not name.startswith("sagemaker_"):
            xgboost_params[name] = str(value)
    objective = xgboost_params.pop("objective", None)
    if objective is not None and not _serves(objective, problem_type):
        allowed = " or ".join(f"{p}*" for p in _served_objectives(problem_type))
        found.append(
            f"hyperparameters.objective: {objective!r} does not fit problem_type "
            f"{problem_type}; use {allowed}"
        )
        objective = None
    if not xgboost_params:
        return found
    with _Prober(problem_type, objective, xgboost_params.get("booster")) as prober:
        for name, value in xgboost_params.items():
            problem = prober.problem(name, value)
            if problem:
                found.append(f"hyperparameters.{name}: {problem}")
    return found


def _served_objectives(problem_type: str) -> tuple[str, ...]:
    """Objective prefixes whose predictions the evaluation job and the endpoint understand:
    train.py's own list."""
    return tuple(job_code.training_job().ALLOWED_OBJECTIVES[problem_type])


def _serves(objective: str, problem_type: str) -> bool:
    return objective.startswith(_served_objectives(problem_type))


def _script_integer(name: str, value: Any) -> list[str]:
    try:
        number = int(str(value))
    except ValueError:
        return [f"hyperparameters.{name}: {value!r} is not an integer"]
    minimum = SCRIPT_INTEGERS[name]
    if number < minimum:
        return [f"hyperparameters.{name}: {number} is below its minimum {minimum}"]
    return []


class _Prober:
    """One-round trainings on a tiny DMatrix, one parameter at a time."""

    def __init__(self, problem_type: str, objective: str | None, booster: str | None) -> None:
        self.base: dict[str, Any] = {"nthread": 1, "verbosity": 1}
        if objective is not None:
            self.base["objective"] = objective
        elif problem_type == "binary":
            self.base["objective"] = "binary:logistic"
        elif problem_type == "multiclass":
            self.base["objective"] = "multi:softprob"
        if problem_type == "multiclass":
            self.base["num_class"] = _PROBE_CLASSES
        if booster is not None:
            self.base["booster"] = booster
        self.problem_type = problem_type
        self.multiclass = problem_type == "multiclass"

    def __enter__(self) -> _Prober:
        import numpy as np

        self.xgboost = job_code.xgboost()
        # Labels every allowed objective accepts: classes 0..2, 0/1, or in (0, 1) (gamma and
        # tweedie want positive ones, reg:logistic ones in [0, 1], none a constant).
        labels = {
            "multiclass": np.arange(4) % _PROBE_CLASSES,
            "binary": np.array([0.0, 1.0, 0.0, 1.0]),
        }.get(self.problem_type, np.array([0.25, 0.5, 0.75, 0.5]))
        features = np.arange(8, dtype=np.float32).reshape(4, 2)
        self.data = self.xgboost.DMatrix(features, labels)
        self._known: list[str] | None = None
        return self

    def __exit__(self, *_: object) -> None:
        del self.data

    def problem(self, name: str, value: str) -> str | None:
        """XGBoost's objection to `name=value` with the run's objective, or None."""
        params: dict[str, Any] = {**self.base, name: value}
        if name == "eval_metric" and "," in value:  # train.py passes a list, as here
            params[name] = [metric.strip() for metric in value.split(",") if metric.strip()]
        if name == "num_class":
            if self.multiclass:
                return None  # the processing job counts the classes; train.py checks it
            return f"applies to multiclass only (problem_type is {self.problem_type})"
        with warnings.catch_warnings(record=True) as warned:  # "Parameters: {...} are not used"
            warnings.simplefilter("always")
            try:
                self.xgboost.train(params, self.data, 1)
            except self.xgboost.core.XGBoostError as err:
                return _xgboost_message(err)
        if warned:
            return self._unknown(name)
        return None

    def _unknown(self, name: str) -> str:
        used_with = f"objective {self.base.get('objective', 'reg:squarederror')}"
        if "booster" in self.base:
            used_with += f" and booster {self.base['booster']}"
        hint = difflib.get_close_matches(name, self.known_names(), n=1)
        suggestion = f"; did you mean {hint[0]!r}?" if hint else ""
        return (
            f"not a parameter XGBoost uses with {used_with}{suggestion} (see "
            "https://xgboost.readthedocs.io/en/release_3.0.0/parameter.html)"
        )

    def known_names(self) -> list[str]:
        """Every parameter name XGBoost's saved config lists for this objective and booster."""
        if self._known is None:
            booster = self.xgboost.train(self.base, self.data, 1)
            names = set(_leaf_keys(json.loads(booster.save_config())))
            self._known = sorted(names | set(UNLISTED_NAMES) | set(SCRIPT_INTEGERS))
        return self._known


def _leaf_keys(tree: Any) -> Iterator[str]:
    if isinstance(tree, dict):
        for key, value in tree.items():
            if isinstance(value, dict):
                yield from _leaf_keys(value)
            elif not isinstance(value, list):
                yield key


def _xgboost_message(err: Exception) -> str:
    """XGBoost's first line without its log stamp and source location."""
    first = str(err).strip().splitlines()[0] if str(err).strip() else type(err).__name__
    return _LOG_PREFIX.sub("", first).strip()
