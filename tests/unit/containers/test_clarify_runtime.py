"""The local Clarify runtime's analysis (containers/clarify/run.py) on a tiny trained model of
each problem type, with the analysis configs PrepareClarify would write for it. The shadow
endpoint is stood in for by the project's serving code (containers/inference) answering the
CSV requests in process; what Clarify reads from an answer is tested on its own."""

from __future__ import annotations

import importlib.util
import json
import sys
from collections.abc import Callable
from pathlib import Path
from types import ModuleType
from typing import Any

import numpy as np
import pytest
from job_data import TARGETS

ROOT = Path(__file__).resolve().parents[3]
CLARIFY = {
    "regression": (["F"], [10]),
    "binary": (["F"], ["yes"]),
    "multiclass": (["I"], ["senior"]),
}


def _load(name: str, path: Path) -> ModuleType:
    spec = importlib.util.spec_from_file_location(name, path)
    assert spec is not None and spec.loader is not None
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


@pytest.fixture(scope="module")
def run() -> ModuleType:
    folder = str(ROOT / "containers" / "clarify")
    if folder not in sys.path:
        sys.path.insert(0, folder)
    return _load("clarify_run", ROOT / "containers" / "clarify" / "run.py")


@pytest.fixture(scope="module")
def configs() -> ModuleType:
    return _load("analysis_config", ROOT / "lambdas" / "prepare_clarify" / "analysis_config.py")


class _Served:
    """The model's endpoint, in process: the serving code's four functions, as the shadow
    endpoint's ``predict`` would answer (a CSV row per record)."""

    def __init__(self, model_dir: Path, run: ModuleType, booster: Any) -> None:
        import inference

        self.inference = inference
        self.model = inference.model_fn(str(model_dir))
        self.run = run
        self._booster = booster
        self.requests = 0

    def answers(self, features: Any) -> list[list[str]]:
        self.requests += 1
        body = features.to_csv(header=False, index=False, lineterminator="\n").encode()
        data = self.inference.input_fn(body, "text/csv")
        prediction = self.inference.predict_fn(data, self.model)
        text, _ = self.inference.output_fn(prediction, "text/csv")
        return self.run.shadow.read_answer(text.encode())  # type: ignore[no-any-return]

    def booster(self) -> Any:
        return self._booster


@pytest.mark.parametrize("problem_type", ["regression", "binary", "multiclass"])
def test_bias_and_shap_for_each_problem_type(
    problem_type: str, trained: Callable[[str], Path], run: ModuleType, configs: ModuleType
) -> None:
    import xgboost

    folder = trained(problem_type)
    schema = json.loads((folder / "out" / "schema" / "schema.json").read_text())
    facet_values, label_values = CLARIFY[problem_type]
    clarify: dict[str, Any] = {
        "facets": [{"name_or_index": "sex", "value_or_threshold": facet_values}],
        "label_values_or_threshold": label_values,
        "group_variable": None,
        "shap": {"num_clusters": 3, "agg_method": "mean_abs", "max_records": 100},
    }
    booster = xgboost.Booster()
    booster.load_model(str(folder / "model" / "xgboost-model"))
    served = _Served(folder / "model", run, booster)
    frame = run.read_dataset(str(folder / "out" / "test"), [schema["target"], *schema["features"]])

    bias = run.analyze(configs.bias_config(clarify, schema, "m", "ml.m5.xlarge"), frame, served)
    analysis = bias["analysis"]
    assert analysis["pre_training_bias_metrics"]["label"] == TARGETS[problem_type]
    post = analysis["post_training_bias_metrics"]["facets"]["sex"][0]["metrics"]
    dppl = next(m for m in post if m["name"] == "DPPL")
    assert isinstance(dppl["value"], float), dppl

    explained = run.analyze(
        configs.explainability_config(clarify, schema, "m", "ml.m5.xlarge"), frame, served
    )
    assert served.requests == 2  # each job asks the endpoint once for all of its records
    entry = explained["analysis"]["explanations"]["kernel_shap"]["label0"]
    assert list(entry["global_shap_values"]) == schema["features"]
    unnamed = booster.copy()
    unnamed.feature_names = None
    margin = unnamed.predict(xgboost.DMatrix(explained["features"]), output_margin=True)
    first_output = np.asarray(margin).reshape(len(frame), -1)[:, 0]
    np.testing.assert_allclose(
        explained["local_values"].sum(axis=1) + entry["expected_value"], first_output, atol=1e-4
    )


PREDICTOR = {"model_name": "m", "instance_type": "ml.m5.xlarge", "initial_instance_count": 1}


@pytest.mark.parametrize(
    ("answers", "extra", "predictor", "expected"),
    [
        ([["9.5"], ["12"]], {}, {}, [9.5, 12.0]),  # a regression's values
        ([["0.2"], ["0.7"], ["0.5"]], {"probability_threshold": 0.5}, {}, [0, 1, 0]),
        ([["0.2"], ["0.7"]], {"probability_threshold": 0.1}, {}, [1, 1]),
        ([["0.1", "0.7", "0.2"], ["0.6", "0.3", "0.1"]], {}, {}, [1, 0]),
        ([["0.1", "0.7", "0.2"]], {}, {"label_headers": ["a", "b", "c"]}, ["b"]),
        ([["yes", "0.9"], ["no", "0.2"]], {}, {"label": 0}, ["yes", "no"]),
        ([["1", "0.9"], ["0", "0.2"]], {}, {"label": 0}, [1.0, 0.0]),
        ([["x", "[0.1, 0.9]"]], {}, {"probability": 1, "label_headers": [0, 1]}, [1]),
    ],
)  # fmt: skip
def test_predicted_labels_are_read_from_the_answers_as_clarify_reads_them(
    run: ModuleType,
    answers: list[list[str]],
    extra: dict[str, Any],
    predictor: dict[str, Any],
    expected: list[Any],
) -> None:
    config = {**extra, "predictor": {**PREDICTOR, **predictor}}
    assert run.predicted_labels(answers, config).tolist() == expected


@pytest.mark.parametrize(
    ("answers", "predictor", "message"),
    [
        ([["0.1"], ["0.2", "0.8"]], {}, "the model answered 1 to 2 scores a record"),
        ([["high"]], {}, "the model's answer to record 1 is not numeric: 'high'"),
        ([["0.1", "0.9"]], {"label_headers": ["a"]},
         "predictor.label_headers has 1 label(s) but the model answered 2 scores a record"),
        ([["1"]], {"label": "predicted_label"},
         "predictor.label must be a column index for a CSV answer, not 'predicted_label'"),
        ([["1"]], {"label": 3}, "the model's answer to record 1 has no column 3"),
    ],
)  # fmt: skip
def test_answers_clarify_cannot_read_are_the_users_error(
    run: ModuleType, answers: list[list[str]], predictor: dict[str, Any], message: str
) -> None:
    with pytest.raises(run.ClarifyUserError) as raised:
        run.predicted_labels(answers, {"predictor": {**PREDICTOR, **predictor}})
    assert str(raised.value) == message


def test_an_endpoint_that_does_not_serve_the_booster_cannot_be_explained(
    trained: Callable[[str], Path], run: ModuleType
) -> None:
    import xgboost

    folder = trained("regression")
    booster = xgboost.Booster()
    booster.load_model(str(folder / "model" / "xgboost-model"))
    features = np.zeros((2, booster.num_features()))
    predicted = booster.predict(xgboost.DMatrix(features, feature_names=booster.feature_names))
    run.check_served([[str(v)] for v in predicted], booster, features)
    with pytest.raises(run.ClarifyUserError, match="the shadow endpoint answered 100 to record 2"):
        run.check_served([[str(predicted[0])], ["100"]], booster, features)


def test_kmeans_is_deterministic_and_finds_separated_clusters(run: ModuleType) -> None:
    rows = np.array([[0.0, 0.0], [0.1, 0.0], [10.0, 10.0], [10.1, 10.0]])
    centroids = run.kmeans(rows, 2)
    assert sorted(map(tuple, centroids.round(6))) == [(0.05, 0.0), (10.05, 10.0)]
    np.testing.assert_array_equal(centroids, run.kmeans(rows, 2))
    assert run.kmeans(rows[:1], 5).shape == (1, 2)  # no more centroids than distinct rows
