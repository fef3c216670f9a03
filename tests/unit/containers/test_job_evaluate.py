"""Evaluation job: metric values on hand-computable predictions and the report layouts."""

from __future__ import annotations

import json
import math
import tarfile
from collections.abc import Callable
from pathlib import Path

import evaluate
import numpy as np
import pytest
from jobkit import UserError
from sklearn import metrics as skm

LAYOUTS = {
    "regression": ("regression_metrics", {"mse", "rmse", "mae", "r2"}),
    "binary": (
        "binary_classification_metrics",
        {"auc", "accuracy", "f1", "precision", "recall", "logloss"},
    ),
    "multiclass": ("multiclass_classification_metrics", {"accuracy", "macro_f1", "logloss"}),
}


def values(report: dict) -> dict[str, float]:
    (section,) = [v for k, v in report.items() if k.endswith("_metrics")]
    return {name: metric["value"] for name, metric in section.items()}


def test_regression_metrics_by_hand() -> None:
    y, pred = np.array([1.0, 2, 3, 4]), np.array([1.0, 2, 3, 5])
    assert values(evaluate.metrics_report("regression", y, pred)) == {
        "mse": 0.25,
        "rmse": 0.5,
        "mae": 0.25,
        "r2": 0.8,
    }


def test_binary_metrics_by_hand() -> None:
    y, prob = np.array([0.0, 0, 1, 1]), np.array([0.1, 0.6, 0.4, 0.9])
    got = values(evaluate.metrics_report("binary", y, prob))
    assert got == {
        "auc": 0.75,
        "accuracy": 0.5,
        "f1": 0.5,
        "precision": 0.5,
        "recall": 0.5,
        "logloss": pytest.approx(-math.log(0.36) / 2),
    }


def test_multiclass_metrics_by_hand() -> None:
    y = np.array([0.0, 1, 2, 2])
    prob = np.array([[0.7, 0.2, 0.1], [0.3, 0.4, 0.3], [0.2, 0.5, 0.3], [0.1, 0.1, 0.8]])
    got = values(evaluate.metrics_report("multiclass", y, prob))
    assert got == {
        "accuracy": 0.75,
        "macro_f1": pytest.approx(7 / 9),
        "logloss": pytest.approx(
            -(math.log(0.7) + math.log(0.4) + math.log(0.3) + math.log(0.8)) / 4
        ),
    }


def test_metrics_agree_with_scikit_learn() -> None:
    rng = np.random.default_rng(3)
    y = rng.integers(0, 2, 500).astype(float)
    prob = np.clip(y * 0.3 + rng.uniform(0, 0.7, 500), 0, 1).round(2)  # rounded: ties
    assert evaluate.auc(y, prob) == pytest.approx(skm.roc_auc_score(y, prob))
    assert evaluate.f1(y, prob) == pytest.approx(skm.f1_score(y, prob >= 0.5))
    assert evaluate.logloss_binary(y, prob) == pytest.approx(skm.log_loss(y, prob))
    classes = rng.integers(0, 4, 500)
    probs = rng.dirichlet(np.ones(4), 500)
    assert evaluate.macro_f1(classes.astype(float), probs) == pytest.approx(
        skm.f1_score(classes, probs.argmax(axis=1), average="macro")
    )
    assert evaluate.logloss_multiclass(classes.astype(float), probs) == pytest.approx(
        skm.log_loss(classes, probs, labels=[0, 1, 2, 3])
    )


def test_undefined_metrics_are_left_out() -> None:
    report = evaluate.metrics_report("binary", np.ones(5), np.full(5, 0.7))
    assert "auc" not in report["binary_classification_metrics"]  # one class: AUC undefined
    assert report["binary_classification_metrics"]["accuracy"] == {
        "value": 1.0,
        "standard_deviation": 0.0,
        "confidence_interval": {"lower": 1.0, "upper": 1.0, "level": 0.95},
    }


def test_bootstrap_is_seeded_and_bounded() -> None:
    rng = np.random.default_rng(0)
    y = rng.normal(size=1000)
    pred = y + rng.normal(size=1000)
    first = evaluate.metrics_report("regression", y, pred)
    assert first == evaluate.metrics_report("regression", y, pred)
    spread = first["regression_metrics"]["mse"]["standard_deviation"]
    assert 0 < spread < 0.2
    assert first["dataset"] == {"rows": 1000}
    assert first["bootstrap"] == {"resamples": 1000, "seed": 0, "level": 0.95}
    other_seed = evaluate.metrics_report("regression", y, pred, seed=1)
    assert other_seed["regression_metrics"]["mse"] != first["regression_metrics"]["mse"]


def test_the_percentile_interval_holds_the_value_at_its_level() -> None:
    rng = np.random.default_rng(3)
    y = rng.normal(size=400)
    pred = y + rng.normal(size=400)
    report = evaluate.metrics_report("regression", y, pred, level=0.9)
    for name, entry in report["regression_metrics"].items():
        interval = entry["confidence_interval"]
        assert interval["level"] == 0.9
        assert interval["lower"] < entry["value"] < interval["upper"], name
    wider = evaluate.metrics_report("regression", y, pred, level=0.99)["regression_metrics"]
    assert wider["rmse"]["confidence_interval"]["lower"] < interval_of(report, "rmse")["lower"]
    assert wider["rmse"]["confidence_interval"]["upper"] > interval_of(report, "rmse")["upper"]


def interval_of(report: dict, metric: str) -> dict[str, float]:
    return report["regression_metrics"][metric]["confidence_interval"]


def test_the_percentile_interval_is_the_quantiles_of_the_finite_values() -> None:
    samples = np.array([*range(1, 101), np.nan], dtype=float)
    assert evaluate.percentile_interval(samples, 0.9) == {
        "lower": pytest.approx(np.quantile(np.arange(1, 101), 0.05)),
        "upper": pytest.approx(np.quantile(np.arange(1, 101), 0.95)),
        "level": 0.9,
    }
    assert evaluate.percentile_interval(np.array([1.0, np.nan]), 0.95) is None


def test_large_test_sets_get_fewer_resamples_within_the_budget() -> None:
    assert evaluate.resample_count(600) == evaluate.BOOTSTRAP_RESAMPLES
    assert evaluate.resample_count(50_000) == 400
    assert evaluate.resample_count(5_000_000) == evaluate.BOOTSTRAP_MIN_RESAMPLES


def paired(y: np.ndarray, new: np.ndarray, old: np.ndarray, **options: object) -> dict:
    first = evaluate.bootstrap("regression", y, new)["rmse"]
    second = evaluate.bootstrap("regression", y, old)["rmse"]
    return evaluate.paired_difference(first, second, metric="rmse", direction="minimize", **options)


def test_a_clearly_better_model_is_a_significant_paired_improvement() -> None:
    rng = np.random.default_rng(5)
    y = rng.normal(size=300)
    better, worse = y + rng.normal(scale=0.5, size=300), y + rng.normal(scale=1.0, size=300)
    result = paired(y, better, worse, significance=0.05)
    assert result["share_not_better"] == 0.0
    assert result["confidence_interval"]["upper"] < 0
    assert result["bound"]["side"] == "upper" and result["bound"]["value"] < 0
    assert result["bound"]["level"] == 0.95
    # the other way round, the "improvement" is never there
    assert paired(y, worse, better)["share_not_better"] == 1.0


def test_identical_models_are_not_a_significant_improvement() -> None:
    rng = np.random.default_rng(6)
    y = rng.normal(size=300)
    pred = y + rng.normal(size=300)
    result = paired(y, pred, pred, significance=0.05)
    # the same rows in each resample: the difference is exactly 0 in every one
    assert result["confidence_interval"] == {"lower": 0.0, "upper": 0.0, "level": 0.95}
    assert result["share_not_better"] == 1.0
    assert result["bound"]["value"] == 0.0


def test_the_margin_raises_the_bar_of_the_paired_comparison() -> None:
    rng = np.random.default_rng(5)
    y = rng.normal(size=300)
    better, worse = y + rng.normal(scale=0.9, size=300), y + rng.normal(scale=1.0, size=300)
    without = paired(y, better, worse)["share_not_better"]
    assert paired(y, better, worse, margin=0.5)["share_not_better"] > without


def archive(model_dir: Path, into: Path) -> Path:
    """model.tar.gz as SageMaker packs SM_MODEL_DIR (members under './')."""
    into.mkdir(parents=True, exist_ok=True)
    with tarfile.open(into / "model.tar.gz", "w:gz") as tar:
        tar.add(model_dir, arcname=".")
    return into


@pytest.mark.parametrize("problem_type", sorted(LAYOUTS))
def test_report_layout_from_model_archive(
    trained: Callable[[str], Path], tmp_path: Path, problem_type: str
) -> None:
    folder = trained(problem_type)
    model = archive(folder / "model", tmp_path / "model")
    argv = [
        "--model-dir",
        str(model),
        "--test-dir",
        str(folder / "out/test"),
        "--output-dir",
        str(tmp_path / "evaluation"),
        "--message-file",
        str(tmp_path / "message"),
    ]
    assert evaluate.main(argv) == 0
    report = json.loads((tmp_path / "evaluation/evaluation.json").read_text())
    key, names = LAYOUTS[problem_type]
    assert set(report) == {key, "dataset", "bootstrap", "data"}
    assert report["data"]["test_from"] == "all"  # preprocessing's word on the test rows
    assert set(report[key]) == names
    for metric in report[key].values():
        assert set(metric) == {"value", "standard_deviation", "confidence_interval"}
        assert isinstance(metric["value"], float) and isinstance(
            metric["standard_deviation"], float
        )
    assert report["dataset"] == {"rows": 60}  # 20% of 300 rows


def test_extracted_model_folder_works_too(trained: Callable[[str], Path], tmp_path: Path) -> None:
    folder = trained("regression")
    report = evaluate.evaluate(
        model_dir=str(folder / "model"),
        test_path=str(folder / "out/test/test.csv"),
        output_dir=str(tmp_path),
    )
    assert report["regression_metrics"]["rmse"]["value"] > 0


def test_archive_without_schema_is_a_user_error(
    trained: Callable[[str], Path], tmp_path: Path
) -> None:
    (tmp_path / "model").mkdir()
    with tarfile.open(tmp_path / "model/model.tar.gz", "w:gz") as tar:
        tar.add(trained("regression") / "model/xgboost-model", arcname="xgboost-model")
    argv = [
        "--model-dir",
        str(tmp_path / "model"),
        "--test-dir",
        str(tmp_path),
        "--message-file",
        str(tmp_path / "message"),
    ]
    (tmp_path / "test.csv").write_text("1,2,3,4\n")
    assert evaluate.main(argv) == 1
    reason = (tmp_path / "message").read_text()
    assert reason.startswith("UserError: ") and "model.tar.gz has no schema.json" in reason


def test_empty_model_folder(tmp_path: Path) -> None:
    with pytest.raises(UserError, match="has neither model.tar.gz nor xgboost-model"):
        evaluate.extract_model(str(tmp_path), str(tmp_path))


def test_the_champion_is_scored_on_the_same_rows_or_said_incomparable(
    trained: Callable[[str], Path], tmp_path: Path
) -> None:
    folder = trained("regression")
    champion = archive(folder / "model", tmp_path / "champion")
    (champion / "champion.json").write_text('{"present": true, "source": "endpoint prod"}')
    test_csv = str(folder / "out/test/test.csv")
    report = evaluate.evaluate(
        model_dir=str(folder / "model"), test_path=test_csv, output_dir=str(tmp_path),
        champion_dir=str(champion),
    )  # fmt: skip
    assert report["champion"]["comparable"] is True
    assert report["champion"]["source"] == "endpoint prod"
    assert report["champion"]["regression_metrics"] == report["regression_metrics"]  # same model
    assert "paired_difference" not in report["champion"]  # no gate: no gate metric to compare
    gate = {"metric": "rmse", "direction": "minimize", "champion_margin": 0.0}
    report = evaluate.evaluate(
        model_dir=str(folder / "model"),
        test_path=str(folder / "out/test/test.csv"),
        output_dir=str(tmp_path / "gated"),
        champion_dir=str(champion),
        gate={**gate, "confidence": 0.9, "champion_significance": 0.05},
    )
    difference = report["champion"]["paired_difference"]
    assert difference["confidence_interval"] == {"lower": 0.0, "upper": 0.0, "level": 0.9}
    assert difference["share_not_better"] == 1.0  # the same model is never better than itself
    assert report["regression_metrics"]["rmse"]["confidence_interval"]["level"] == 0.9

    archive(trained("binary") / "model", champion)
    report = evaluate.evaluate(
        model_dir=str(folder / "model"), test_path=test_csv, output_dir=str(tmp_path),
        champion_dir=str(champion),
    )  # fmt: skip
    assert report["champion"]["comparable"] is False
    assert "problem_type" in report["champion"]["reason"]


@pytest.mark.parametrize("problem_type", sorted(LAYOUTS))
def test_the_training_and_validation_splits_are_scored_for_the_gap(
    trained: Callable[[str], Path], tmp_path: Path, problem_type: str
) -> None:
    folder = trained(problem_type)
    model = archive(folder / "model", tmp_path / "model")
    argv = [
        *("--model-dir", str(model), "--test-dir", str(folder / "out/test")),
        *("--train-dir", str(folder / "out/train")),
        *("--validation-dir", str(folder / "out/validation")),
        *("--output-dir", str(tmp_path / "evaluation"), "--message-file", str(tmp_path / "m")),
    ]
    assert evaluate.main(argv) == 0
    report = json.loads((tmp_path / "evaluation/evaluation.json").read_text())
    key, names = LAYOUTS[problem_type]
    splits = report["splits"]
    assert set(splits) == {"train", "validation"}
    assert splits["train"]["dataset"]["rows"] + splits["validation"]["dataset"]["rows"] == 240
    for split in splits.values():
        assert set(split[key]) <= names and set(next(iter(split[key].values()))) == {"value"}
    # The model has seen its training rows: it scores at least as well there as on the test set.
    if problem_type == "regression":
        assert splits["train"][key]["rmse"]["value"] <= report[key]["rmse"]["value"]


@pytest.mark.parametrize("problem_type", sorted(LAYOUTS))
def test_the_model_quality_baseline_holds_what_the_endpoint_answers(
    trained: Callable[[str], Path], tmp_path: Path, problem_type: str
) -> None:
    import jobkit
    from inference import load_model, output_fn, predict_fn

    folder = trained(problem_type)
    test_csv = str(folder / "out/test/test.csv")
    evaluate.evaluate(model_dir=str(folder / "model"), test_path=test_csv, output_dir=str(tmp_path))
    lines = (tmp_path / evaluate.MODEL_QUALITY_BASELINE).read_text().splitlines()
    header, rows = lines[0].split(","), [line.split(",") for line in lines[1:]]
    columns = dict(zip(header, zip(*rows, strict=True), strict=True))

    y, x = jobkit.read_target_first_csv(test_csv)
    body, _ = output_fn(predict_fn(x, load_model(str(folder / "model"), nthread=1)), "text/csv")
    answers = [line.split(",") for line in body.splitlines()]  # the endpoint's CSV answer
    assert len(rows) == y.size == 60
    if problem_type == "regression":
        assert header == ["prediction", "label"]
        assert list(columns["prediction"]) == [answer[0] for answer in answers]
        assert [float(v) for v in columns["label"]] == y.tolist()
        return
    assert [int(v) for v in columns["label"]] == y.astype(int).tolist()
    if problem_type == "binary":
        assert header == ["prediction", "probability", "label"]
        assert list(columns["probability"]) == [answer[0] for answer in answers]
        expected = [str(int(float(answer[0]) >= 0.5)) for answer in answers]
    else:
        assert header == ["prediction", "label"]
        expected = [str(int(np.argmax([float(v) for v in answer]))) for answer in answers]
    assert list(columns["prediction"]) == expected
