"""The local Model Monitor analyzer's model quality analysis (containers/monitor/model_quality.py):
metrics against scikit-learn and Model Monitor's documented examples, the baseline job, and a
monitoring run that joins staged captures with ground truth, bad input included."""

from __future__ import annotations

import base64
import json
import sys
from collections.abc import Callable
from datetime import datetime, timezone
from pathlib import Path
from typing import Any

import numpy as np
import pytest
from sklearn import metrics as skm

MONITOR = Path(__file__).resolve().parents[3] / "containers" / "monitor"
if str(MONITOR) not in sys.path:
    sys.path.insert(0, str(MONITOR))

import model_quality as mq  # noqa: E402

NOW = datetime(2024, 5, 1, 12, 30, tzinfo=timezone.utc)
START, END = "2024-05-01T11:00:00Z", "2024-05-01T12:00:00Z"
IN_WINDOW = "2024-05-01T11:15:00Z"
JSON_OUTPUT = {"encoding": "JSON", "content_type": "application/json"}


def values(section: dict[str, Any]) -> dict[str, float]:
    return {k: v["value"] for k, v in section.items() if isinstance(v, dict) and "value" in v}


# ---------------------------------------------------------------- metrics


def test_regression_metrics_equal_scikit_learn() -> None:
    rng = np.random.default_rng(1)
    y = rng.normal(10, 3, 500)
    pred = y + rng.normal(0, 1, 500)
    got = mq.regression_metrics(y, pred)
    assert got == pytest.approx(
        {
            "mae": skm.mean_absolute_error(y, pred),
            "mse": skm.mean_squared_error(y, pred),
            "rmse": np.sqrt(skm.mean_squared_error(y, pred)),
            "r2": skm.r2_score(y, pred),
        }
    )


def test_binary_metrics_equal_scikit_learn() -> None:
    rng = np.random.default_rng(2)
    y = rng.integers(0, 2, 400).astype(float)
    prob = np.clip(y * 0.3 + rng.uniform(0, 0.7, 400), 0, 1).round(2)  # rounded: ties
    label = (prob >= 0.5).astype(float)
    got = mq.binary_metrics(y, label, prob)
    tn, fp, fn, tp = skm.confusion_matrix(y, label).ravel()
    ones = np.ones_like(y)
    expected = {
        "recall": skm.recall_score(y, label),
        "precision": skm.precision_score(y, label),
        "accuracy": skm.accuracy_score(y, label),
        "f0_5": skm.fbeta_score(y, label, beta=0.5),
        "f1": skm.f1_score(y, label),
        "f2": skm.fbeta_score(y, label, beta=2),
        "recall_best_constant_classifier": skm.recall_score(y, ones),
        "precision_best_constant_classifier": skm.precision_score(y, ones),
        "accuracy_best_constant_classifier": skm.accuracy_score(y, ones),
        "f0_5_best_constant_classifier": skm.fbeta_score(y, ones, beta=0.5),
        "f1_best_constant_classifier": skm.f1_score(y, ones),
        "f2_best_constant_classifier": skm.fbeta_score(y, ones, beta=2),
        "true_positive_rate": tp / (tp + fn),
        "true_negative_rate": tn / (tn + fp),
        "false_positive_rate": fp / (fp + tn),
        "false_negative_rate": fn / (fn + tp),
        "auc": skm.roc_auc_score(y, prob),
        "au_prc": skm.average_precision_score(y, prob),
    }
    assert got == pytest.approx(expected)


def test_multiclass_metrics_equal_scikit_learn() -> None:
    rng = np.random.default_rng(3)
    y = rng.choice([0, 1, 2, 3], 600, p=[0.4, 0.3, 0.2, 0.1]).astype(float)
    label = np.where(rng.uniform(size=600) < 0.6, y, rng.integers(0, 4, 600)).astype(float)
    label[label == 3] = 4  # a class predicted that no label has, one label never predicted
    got = mq.multiclass_metrics(y, label)
    rarest = np.full_like(y, 3.0)

    def weighted(pred: np.ndarray) -> dict[str, float]:
        def score(fn: Callable[..., float], **kw: Any) -> float:
            return fn(y, pred, average="weighted", zero_division=0, **kw)

        return {
            "accuracy": skm.accuracy_score(y, pred),
            "weighted_recall": score(skm.recall_score),
            "weighted_precision": score(skm.precision_score),
            "weighted_f0_5": score(skm.fbeta_score, beta=0.5),
            "weighted_f1": score(skm.f1_score),
            "weighted_f2": score(skm.fbeta_score, beta=2),
        }

    expected = weighted(label)
    expected.update({f"{k}_best_constant_classifier": v for k, v in weighted(rarest).items()})
    assert got == pytest.approx(expected)


def test_binary_matches_model_monitors_documented_example() -> None:
    # The docs' confusion matrix {"0": {"0": 1, "1": 2}, "1": {"0": 0, "1": 1}}: actual -> predicted
    y, label = np.array([0.0, 0, 0, 1]), np.array([0.0, 1, 1, 1])
    section = mq.metric_section(mq.BINARY, mq.Scored(y, label))
    assert section["confusion_matrix"] == {"0": {"0": 1, "1": 2}, "1": {"0": 0, "1": 1}}
    assert values(section) == pytest.approx(
        {
            "recall": 1.0,
            "precision": 0.3333333333333333,
            "accuracy": 0.5,
            "recall_best_constant_classifier": 1.0,
            "precision_best_constant_classifier": 0.25,
            "accuracy_best_constant_classifier": 0.25,
            "true_positive_rate": 1.0,
            "true_negative_rate": 0.33333333333333337,
            "false_positive_rate": 0.6666666666666666,
            "false_negative_rate": 0.0,
            "f0_5": 0.3846153846153846,
            "f1": 0.5,
            "f2": 0.7142857142857143,
            "f0_5_best_constant_classifier": 0.29411764705882354,
            "f1_best_constant_classifier": 0.4,
            "f2_best_constant_classifier": 0.625,
        }
    )
    assert section["recall"]["standard_deviation"] == "NaN"  # fewer than 200 rows


def test_multiclass_matches_model_monitors_documented_example() -> None:
    cells = {(0, 0): 1180, (0, 1): 510, (1, 0): 268, (1, 1): 138}
    y = np.concatenate([np.full(n, a, dtype=float) for (a, _), n in cells.items()])
    label = np.concatenate([np.full(n, p, dtype=float) for (_, p), n in cells.items()])
    got = mq.multiclass_metrics(y, label)
    assert got == pytest.approx(
        {
            "accuracy": 0.6288167938931297,
            "weighted_recall": 0.6288167938931297,
            "weighted_precision": 0.6983172269629505,
            "weighted_f0_5": 0.6803947317178771,
            "weighted_f1": 0.6571162346664904,
            "weighted_f2": 0.6384024354394601,
            "accuracy_best_constant_classifier": 0.19370229007633588,
            "weighted_recall_best_constant_classifier": 0.19370229007633588,
            "weighted_precision_best_constant_classifier": 0.03752057718081697,
            "weighted_f0_5_best_constant_classifier": 0.04473443104152011,
            "weighted_f1_best_constant_classifier": 0.06286421244683643,
            "weighted_f2_best_constant_classifier": 0.10570313141262414,
        }
    )
    section = mq.metric_section(mq.MULTICLASS, mq.Scored(y, label))
    assert section["confusion_matrix"] == {"0": {"0": 1180, "1": 510}, "1": {"0": 268, "1": 138}}
    spread = section["accuracy"]["standard_deviation"]
    assert isinstance(spread, float) and 0 < spread < 0.02  # 5 seeded draws of 80%


def test_undefined_metrics_are_left_out() -> None:
    y, label = np.zeros(5), np.zeros(5)  # one class, nothing predicted positive
    section = mq.metric_section(mq.BINARY, mq.Scored(y, label, np.full(5, 0.2)))
    assert {"auc", "au_prc", "recall", "precision", "f1"}.isdisjoint(section)
    assert section["accuracy"]["value"] == 1.0
    assert "r2" not in mq.metric_section(mq.REGRESSION, mq.Scored(np.ones(3), np.ones(3)))


# ---------------------------------------------------------------- jobs


def env_for(tmp_path: Path, problem_type: str, **extra: str) -> dict[str, str]:
    return {
        "analysis_type": "MODEL_QUALITY",
        "problem_type": problem_type,
        "output_path": str(tmp_path / "out"),
        **extra,
    }


def run(tmp_path: Path, env: dict[str, str]) -> int:
    message, metrics = str(tmp_path / "message"), str(tmp_path / "metrics")
    return mq.main(env, message_file=message, metrics_dir=metrics, now=NOW)


def read(path: Path) -> Any:
    return json.loads(path.read_text())


def baseline(tmp_path: Path, csv_text: str, problem_type: str, **attributes: str) -> int:
    data = tmp_path / "baseline"
    data.mkdir(exist_ok=True)
    (data / "model_quality_baseline.csv").write_text(csv_text)
    (data / "evaluation.json").write_text("{}")  # beside it in the evaluation output: not read
    env = env_for(
        tmp_path,
        problem_type,
        dataset_format=json.dumps({"csv": {"header": True, "output_columns_position": "START"}}),
        dataset_source=str(data),
        ground_truth_attribute="label",
        **attributes,
    )
    return run(tmp_path, env)


def test_baseline_job_writes_statistics_and_suggested_constraints(tmp_path: Path) -> None:
    rows = ["prediction,probability,label", "1,0.9,1", "0,0.2,0", "1,0.6,0", "0,0.4,1", "1,0.7,1"]
    rows.append("1,0.8,yes")  # a text label: counted and skipped
    code = baseline(
        tmp_path, "\n".join(rows) + "\n", mq.BINARY,
        inference_attribute="prediction", probability_attribute="probability",
    )  # fmt: skip
    assert code == 0
    stats = read(tmp_path / "out/statistics.json")
    assert stats["version"] == 0.0
    assert stats["dataset"] == {"item_count": 5, "evaluation_time": "2024-05-01T12:30:00.000Z"}
    section = stats["binary_classification_metrics"]
    assert section["confusion_matrix"] == {"0": {"0": 1, "1": 1}, "1": {"0": 1, "1": 2}}
    assert section["accuracy"] == {"value": 0.6, "standard_deviation": "NaN"}
    assert section["auc"]["value"] == pytest.approx(
        skm.roc_auc_score([1, 0, 0, 1, 1], [0.9, 0.2, 0.6, 0.4, 0.7])
    )
    constraints = read(tmp_path / "out/constraints.json")
    suggested = constraints["binary_classification_constraints"]
    assert constraints["version"] == 0.0
    assert set(suggested) == set(mq.SUGGESTED[mq.BINARY])
    assert suggested["accuracy"] == {"threshold": 0.6, "comparison_operator": "LessThanThreshold"}
    assert suggested["false_positive_rate"]["comparison_operator"] == "GreaterThanThreshold"
    counts = read(tmp_path / "out/monitoring_report.json")["counts"]
    assert counts["rows_read"] == 6 and counts["invalid_labels"] == 1 and counts["matched"] == 5
    assert (tmp_path / "message").read_text().startswith("Completed")
    assert not (tmp_path / "metrics").exists()  # a baseline job publishes no metrics


def test_binary_baseline_from_a_probability_only_uses_the_threshold(tmp_path: Path) -> None:
    text = "probability,label\n0.9,1\n0.55,0\n0.2,0\n"
    code = baseline(
        tmp_path, text, mq.BINARY, probability_attribute="probability",
        probability_threshold_attribute="0.6",
    )  # fmt: skip
    assert code == 0
    section = read(tmp_path / "out/statistics.json")["binary_classification_metrics"]
    assert section["accuracy"]["value"] == 1.0  # 0.55 < 0.6 is a 0


def test_the_evaluation_jobs_baseline_gives_the_evaluations_metrics(
    trained: Callable[[str], Path], tmp_path: Path
) -> None:
    import evaluate

    folder = trained("binary")
    report = evaluate.evaluate(
        model_dir=str(folder / "model"),
        test_path=str(folder / "out/test/test.csv"),
        output_dir=str(tmp_path / "evaluation"),
    )
    env = env_for(
        tmp_path, mq.BINARY, dataset_source=str(tmp_path / "evaluation"),
        dataset_format='{"csv": {"header": true}}', inference_attribute="prediction",
        probability_attribute="probability", ground_truth_attribute="label",
    )  # fmt: skip
    assert run(tmp_path, env) == 0
    section = read(tmp_path / "out/statistics.json")["binary_classification_metrics"]
    for name in ("accuracy", "auc", "f1", "precision", "recall"):
        assert section[name]["value"] == pytest.approx(
            report["binary_classification_metrics"][name]["value"], abs=1e-6
        )


# ---------------------------------------------------------------- monitoring runs


def capture_line(
    event_id: str,
    data: str,
    *,
    encoding: str = "CSV",
    content_type: str = "text/csv",
    when: str = IN_WINDOW,
    inference_id: str | None = None,
) -> str:
    metadata = {"eventId": event_id, "inferenceTime": when}
    if inference_id:
        metadata["inferenceId"] = inference_id
    output = {"observedContentType": content_type, "mode": "OUTPUT", "data": data,
              "encoding": encoding}  # fmt: skip
    record = {"captureData": {"endpointOutput": output}, "eventMetadata": metadata,
              "eventVersion": "0"}  # fmt: skip
    return json.dumps(record)


def truth_line(event_id: str, label: str) -> str:
    return json.dumps(
        {
            "groundTruthData": {"data": label, "encoding": "CSV"},
            "eventMetadata": {"eventId": event_id},
            "eventVersion": "0",
        }
    )


def stage(tmp_path: Path, captures: list[str], truth: list[str]) -> tuple[Path, Path]:
    capture_dir = tmp_path / "endpoint/my-endpoint/AllTraffic/2024/05/01/11"
    truth_dir = tmp_path / "groundtruth/2024/05/01/12"
    capture_dir.mkdir(parents=True)
    truth_dir.mkdir(parents=True)
    (capture_dir / "11-00-000-abc.jsonl").write_text("\n".join(captures) + "\n")
    (truth_dir / "labels.jsonl").write_text("\n".join(truth) + "\n")
    return tmp_path / "endpoint", tmp_path / "groundtruth"


def monitoring_env(
    tmp_path: Path, problem_type: str, constraints: dict[str, Any] | None, **extra: str
) -> dict[str, str]:
    env = env_for(
        tmp_path,
        problem_type,
        dataset_format=json.dumps({"sagemakerCaptureJson": {}}),
        dataset_source=str(tmp_path / "endpoint"),
        ground_truth_source=str(tmp_path / "groundtruth"),
        publish_cloudwatch_metrics="Enabled",
        sagemaker_endpoint_name="my-endpoint",
        sagemaker_monitoring_schedule_name="my-schedule",
        start_time=START,
        end_time=END,
        **extra,
    )
    if constraints is not None:
        path = tmp_path / "constraints.json"
        path.write_text(json.dumps(constraints))
        env["baseline_constraints"] = str(path)
    return env


def test_binary_monitoring_run_joins_captures_and_counts_bad_input(tmp_path: Path) -> None:
    b64 = base64.b64encode(b"0.2\n").decode()
    captures = [
        capture_line("e1", "0.9\n"),
        capture_line("e2", "0.3\n"),
        capture_line("e3", "0.8\n", inference_id="my-id-3"),  # joined on its inferenceId
        capture_line("e4", b64, encoding="BASE64", content_type="text/csv"),
        capture_line("e5", "0.7\n"),
        capture_line("e6", "0.9\n", when="2024-05-01T12:00:00Z"),  # the window's end: left out
        capture_line("e7", "0.9\n"),  # no ground truth yet
        capture_line("e8", "not a number\n"),
        '{"captureData": {"endpointOutput": {"data": "0.5"',  # torn line
        "garbage",
    ]
    truth = [
        truth_line("e1", "1"),
        truth_line("e2", "1"),
        truth_line("my-id-3", "0"),
        truth_line("e4", "0"),
        truth_line("e5", "1"),
        truth_line("e6", "1"),  # its capture is outside the window: an unknown id here
        truth_line("e1", "0"),  # a second label: the first is kept
        truth_line("nobody", "1"),
        truth_line("e8", "1"),
        "{broken",
    ]
    stage(tmp_path, captures, truth)
    constraints = {
        "version": 0.0,
        "binary_classification_constraints": {
            "accuracy": {"threshold": 0.9, "comparison_operator": "LessThanThreshold"},
            "false_positive_rate": {
                "threshold": 0.5,
                "comparison_operator": "GreaterThanThreshold",
            },
            "auc": {"threshold": 0.1, "comparison_operator": "LessThanThreshold"},
        },
    }
    env = monitoring_env(tmp_path, mq.BINARY, constraints, probability_attribute="0")
    assert run(tmp_path, env) == 0

    # rows: e1 (0.9 -> 1, label 1), e2 (0.3 -> 0, 1), e3 (0.8 -> 1, 0), e4 (0.2 -> 0, 0),
    # e5 (0.7 -> 1, 1)
    section = read(tmp_path / "out/statistics.json")["binary_classification_metrics"]
    assert section["confusion_matrix"] == {"0": {"0": 1, "1": 1}, "1": {"0": 1, "1": 2}}
    assert section["accuracy"]["value"] == 0.6
    assert section["auc"]["value"] == pytest.approx(
        skm.roc_auc_score([1, 1, 0, 0, 1], [0.9, 0.3, 0.8, 0.2, 0.7])
    )
    report = read(tmp_path / "out/constraint_violations.json")
    assert report == {
        "violations": [
            {
                "metric_name": "accuracy",
                "constraint_check_type": "LessThanThreshold",
                "description": "Metric accuracy with 0.6 +/- NaN was LessThanThreshold '0.9'",
            }
        ]
    }  # false_positive_rate 0.5 is not > 0.5; auc is well above 0.1
    counts = read(tmp_path / "out/monitoring_report.json")["counts"]
    assert {k: v for k, v in counts.items() if v} == {
        "rows_read": 6,  # e1-e5 and e7: the records read from the window
        "malformed_capture_lines": 2,
        "captures_outside_window": 1,
        "unreadable_predictions": 1,
        "ground_truth_records": 10,
        "malformed_ground_truth_lines": 1,
        "unknown_event_ids": 3,  # e6 (outside the window), nobody, e8 (its output was unreadable)
        "duplicate_ground_truth": 1,
        "unlabeled_predictions": 1,
        "matched": 5,
    }
    lines = [json.loads(line) for line in (tmp_path / "metrics").glob("*.jsonl").__next__().open()]
    by_name = {line["MetricName"]: line for line in lines}
    assert by_name["accuracy"] == {
        "MetricName": "accuracy",
        "Timestamp": "2024-05-01T12:30:00Z",  # NOW: when the run publishes, not the window end
        "Dimensions": [
            {"Name": "Endpoint", "Value": "my-endpoint"},
            {"Name": "MonitoringSchedule", "Value": "my-schedule"},
        ],
        "Value": 0.6,
        "Namespace": "aws/sagemaker/Endpoints/model-metrics",
    }
    assert "confusion_matrix" not in by_name and {"auc", "f1", "au_prc"} <= set(by_name)
    assert (tmp_path / "message").read_text() == (
        "CompletedWithViolations: Job completed successfully with 1 violations."
    )


def test_json_output_is_read_by_key(tmp_path: Path) -> None:
    captures = [
        capture_line("a", '{"predictions": [0.7]}', **JSON_OUTPUT),
        capture_line("b", '{"predictions": [0.1, 0.9]}', **JSON_OUTPUT),  # two rows
        capture_line("c", '{"scores": [0.1]}', **JSON_OUTPUT),  # no such key: unreadable
    ]
    truth = [truth_line("a", "1"), truth_line("b", "0\n1"), truth_line("c", "1")]
    stage(tmp_path, captures, truth)
    env = monitoring_env(tmp_path, mq.BINARY, None, probability_attribute="predictions")
    assert run(tmp_path, env) == 0
    section = read(tmp_path / "out/statistics.json")["binary_classification_metrics"]
    assert section["accuracy"]["value"] == 1.0 and section["auc"]["value"] == 1.0
    counts = read(tmp_path / "out/monitoring_report.json")["counts"]
    assert counts["matched"] == 3 and counts["unreadable_predictions"] == 1
    assert mq.locate({"a": {"b": [{"c": 3}]}}, "a.b[0].c") == 3


def test_regression_text_labels_are_skipped_without_a_false_alarm(tmp_path: Path) -> None:
    captures = [capture_line(f"e{i}", f"{v}\n") for i, v in enumerate([1.0, 2.0, 3.0, 5.0])]
    truth = [truth_line(f"e{i}", v) for i, v in enumerate(["1", "2", "3", "5"])]
    captures.append(capture_line("e9", "100\n"))
    truth.append(truth_line("e9", "a hundred"))  # text for a regression: skipped, not 0
    stage(tmp_path, captures, truth)
    constraints = {
        "regression_constraints": {
            "mae": {"threshold": 0.5, "comparison_operator": "GreaterThanThreshold"},
            "r2": {"threshold": 0.9, "comparison_operator": "LessThanThreshold"},
        }
    }
    env = monitoring_env(tmp_path, mq.REGRESSION, constraints, inference_attribute="0")
    assert run(tmp_path, env) == 0
    assert read(tmp_path / "out/constraint_violations.json") == {"violations": []}
    section = read(tmp_path / "out/statistics.json")["regression_metrics"]
    assert values(section) == {"mae": 0.0, "mse": 0.0, "rmse": 0.0, "r2": 1.0}
    counts = read(tmp_path / "out/monitoring_report.json")["counts"]
    assert counts["invalid_labels"] == 1 and counts["unlabeled_predictions"] == 1
    assert (tmp_path / "message").read_text().startswith("Completed: ")


def test_multiclass_takes_the_largest_probability_of_the_endpoints_answer(
    tmp_path: Path,
) -> None:
    captures = [
        capture_line("a", "0.7,0.2,0.1\n"),
        capture_line("b", '{"predictions": [[0.1, 0.3, 0.6]]}', **JSON_OUTPUT),
        capture_line("c", "0.1,0.8,0.1\n0.2,0.2,0.6\n"),  # a request of two rows
    ]
    truth = [truth_line("a", "0"), truth_line("b", "2"), truth_line("c", "1\n1")]
    stage(tmp_path, captures, truth)
    assert run(tmp_path, monitoring_env(tmp_path, mq.MULTICLASS, None)) == 0
    section = read(tmp_path / "out/statistics.json")["multiclass_classification_metrics"]
    assert section["confusion_matrix"] == {
        "0": {"0": 1, "1": 0, "2": 0},
        "1": {"0": 0, "1": 1, "2": 1},
        "2": {"0": 0, "1": 0, "2": 1},
    }
    assert section["accuracy"]["value"] == 0.75
    assert not (tmp_path / "out/constraint_violations.json").exists()  # no baseline given


def test_a_window_with_no_matched_data_fails_like_aws(tmp_path: Path) -> None:
    stage(tmp_path, [capture_line("e1", "0.9\n")], [truth_line("someone-else", "1")])
    env = monitoring_env(tmp_path, mq.BINARY, None, probability_attribute="0")
    assert run(tmp_path, env) == 1
    assert (tmp_path / "message").read_text() == "Job inputs had no data"
    assert not (tmp_path / "out/statistics.json").exists()
    assert not (tmp_path / "metrics").exists()
    counts = read(tmp_path / "out/monitoring_report.json")["counts"]
    assert counts["unknown_event_ids"] == 1 and counts["matched"] == 0


@pytest.mark.parametrize(
    ("change", "needle"),
    [
        ({"problem_type": "Ranking"}, "problem_type is 'Ranking'"),
        ({"probability_threshold_attribute": "high"}, "must be a number"),
        ({"dataset_format": "csv"}, "dataset_format must be JSON"),
    ],
)
def test_bad_configuration_is_a_client_error(
    tmp_path: Path, change: dict[str, str], needle: str
) -> None:
    stage(tmp_path, [capture_line("e1", "0.9\n")], [truth_line("e1", "1")])
    env = {**monitoring_env(tmp_path, mq.BINARY, None, probability_attribute="0"), **change}
    assert run(tmp_path, env) == 1
    message = (tmp_path / "message").read_text()
    assert message.startswith("ClientError: ") and needle in message


def test_a_bad_baseline_constraint_is_a_client_error(tmp_path: Path) -> None:
    stage(tmp_path, [capture_line("e1", "0.9\n")], [truth_line("e1", "1")])
    bad = {"f1": {"threshold": 0.5, "comparison_operator": "Below"}}
    constraints = {"binary_classification_constraints": bad}
    env = monitoring_env(tmp_path, mq.BINARY, constraints, probability_attribute="0")
    assert run(tmp_path, env) == 1
    assert "constraint 'f1'" in (tmp_path / "message").read_text()
