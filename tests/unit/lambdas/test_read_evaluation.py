"""read_evaluation: the gate's arithmetic and wording, and the handler against moto's S3."""

from __future__ import annotations

import json
from dataclasses import dataclass
from pathlib import Path
from types import ModuleType

import boto3
import pytest
from moto import mock_aws

EVENT = json.loads(
    (Path(__file__).resolve().parents[2] / "events" / "read_evaluation.json").read_text()
)
BUCKET = "sfn-mlops-artifacts"
KEY = "runs/run-2024-01-01/evaluation/evaluation.json"

REPORT = {
    "regression_metrics": {
        "mae": {"value": 2.1, "standard_deviation": 0.05},
        "mse": {"value": 11.642, "standard_deviation": 0.4},
        "r2": {"value": 0.52, "standard_deviation": 0.01},
        "rmse": {"value": 3.412, "standard_deviation": 0.07},
    }
}
METRICS = {"mae": 2.1, "mse": 11.642, "r2": 0.52, "rmse": 3.412}


@dataclass
class FakeLambdaContext:
    function_name: str = "ReadEvaluationFunction"
    memory_limit_in_mb: int = 512
    invoked_function_arn: str = (
        "arn:aws:lambda:us-east-1:123456789012:function:ReadEvaluationFunction"
    )
    aws_request_id: str = "00000000-0000-0000-0000-000000000000"


@pytest.fixture
def gate(load_lambda) -> ModuleType:
    (module,) = load_lambda("read_evaluation", "gate")
    return module


@pytest.fixture
def s3():
    with mock_aws():
        client = boto3.client("s3", region_name="us-east-1")
        client.create_bucket(Bucket=BUCKET)
        yield client


# --- decide ----------------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("gate_config", "passed", "cause"),
    [
        (
            {"metric": "rmse", "direction": "minimize", "threshold": 3.0},
            False,
            "rmse is 3.412 on the test set; the quality gate requires rmse <= 3.0",
        ),
        (
            {"metric": "rmse", "direction": "minimize", "threshold": 3.5},
            True,
            "rmse is 3.412 on the test set; the quality gate requires rmse <= 3.5",
        ),
        (
            {"metric": "rmse", "direction": "minimize", "threshold": 3.412},
            True,
            "rmse is 3.412 on the test set; the quality gate requires rmse <= 3.412",
        ),
        (
            {"metric": "r2", "direction": "maximize", "threshold": 0.5},
            True,
            "r2 is 0.52 on the test set; the quality gate requires r2 >= 0.5",
        ),
        (
            {"metric": "r2", "direction": "maximize", "threshold": 0.6},
            False,
            "r2 is 0.52 on the test set; the quality gate requires r2 >= 0.6",
        ),
    ],
)
def test_decide(gate, gate_config, passed, cause):
    decision = gate.decide(METRICS, gate_config)

    assert decision == {
        "metric": gate_config["metric"],
        "value": METRICS[gate_config["metric"]],
        "threshold": gate_config["threshold"],
        "direction": gate_config["direction"],
        "passed": passed,
        "metrics": METRICS,
        "cause": cause,
        "interval": None,
        "bound": "value",
        "gated_value": METRICS[gate_config["metric"]],
    }


def test_decide_rounds_long_values_in_the_cause_only(gate):
    gate_config = {"metric": "auc", "direction": "maximize", "threshold": 0.95}

    decision = gate.decide({"auc": 0.912345678}, gate_config)

    assert decision["value"] == 0.912345678
    assert decision["cause"] == (
        "auc is 0.912346 on the test set; the quality gate requires auc >= 0.95"
    )


def test_unknown_gate_metric_lists_the_metrics_the_report_has(gate):
    with pytest.raises(gate.GateConfigError) as raised:
        gate.decide(METRICS, {"metric": "accuracy", "direction": "maximize", "threshold": 0.9})

    assert str(raised.value) == (
        "the gate metric 'accuracy' is not in the evaluation report; it has: mae, mse, r2, rmse"
    )
    assert isinstance(raised.value, ValueError)


@pytest.mark.parametrize(
    ("gate_config", "message"),
    [
        (
            {"metric": "rmse", "direction": "lower", "threshold": 3.0},
            "gate direction must be one of minimize, maximize, got 'lower'",
        ),
        (
            {"metric": "rmse", "direction": "minimize", "threshold": "3.0"},
            "gate threshold must be a number, got '3.0'",
        ),
    ],
)
def test_invalid_gate_config(gate, gate_config, message):
    with pytest.raises(gate.GateConfigError) as raised:
        gate.decide(METRICS, gate_config)

    assert str(raised.value) == message


# --- flatten_metrics -------------------------------------------------------------------------


def test_flatten_metrics_reads_every_metric_group(gate):
    report = {
        "binary_classification_metrics": {
            "auc": {"value": 0.91, "standard_deviation": 0.01},
            "f1": {"value": 0.8, "standard_deviation": 0.02},
        },
        "multiclass_classification_metrics": {
            "accuracy": {"value": 0.7, "standard_deviation": 0.03},
        },
    }

    assert gate.flatten_metrics(REPORT) == METRICS
    assert gate.flatten_metrics(report) == {"auc": 0.91, "f1": 0.8, "accuracy": 0.7}


@pytest.mark.parametrize(
    ("report", "message"),
    [
        (
            {"metrics": {}},
            "the evaluation report has none of regression_metrics, "
            "binary_classification_metrics, multiclass_classification_metrics",
        ),
        (
            {"regression_metrics": {"rmse": 3.4}},
            "regression_metrics.rmse has no numeric 'value': 3.4",
        ),
        (
            {"regression_metrics": {"rmse": {"value": float("nan")}}},
            "regression_metrics.rmse is nan, not a finite number",
        ),
    ],
)
def test_flatten_metrics_rejects_malformed_reports(gate, report, message):
    with pytest.raises(gate.InvalidEvaluationReport) as raised:
        gate.flatten_metrics(report)

    assert str(raised.value) == message


# --- handler ---------------------------------------------------------------------------------


def test_handler_returns_the_decision(app, s3):
    s3.put_object(Bucket=BUCKET, Key=KEY, Body=json.dumps(REPORT).encode())
    app.set_s3_client(s3)

    result = app.lambda_handler(EVENT, FakeLambdaContext())

    assert result == {
        "metric": "rmse",
        "value": 3.412,
        "threshold": 3.0,
        "direction": "minimize",
        "passed": False,
        "metrics": METRICS,
        "cause": "rmse is 3.412 on the test set; the quality gate requires rmse <= 3.0",
        "interval": None,
        "bound": "value",
        "gated_value": 3.412,
        "champion": {"present": False, "cause": "no model in production yet"},
        "overfitting": {
            "metric": "rmse",
            "train": None,
            "validation": None,
            "test": 3.412,
            "limit": None,
            "gap": None,
            "overfits": False,
            "passed": True,
            "cause": "the training split was not scored",
        },
        "data": None,  # a report from before preprocessing said where its test rows came from
    }
    assert json.loads(json.dumps(result)) == result


def test_handler_creates_its_client_lazily(app, s3):
    s3.put_object(Bucket=BUCKET, Key=KEY, Body=json.dumps(REPORT).encode())

    assert app._s3_client is None
    assert app.lambda_handler(EVENT, FakeLambdaContext())["value"] == 3.412
    assert app._s3_client is not None


def test_missing_report_raises_evaluation_report_not_found(app, s3):
    app.set_s3_client(s3)
    gate = app.gate

    with pytest.raises(gate.EvaluationReportNotFound) as raised:
        app.lambda_handler(EVENT, FakeLambdaContext())

    assert str(raised.value) == f"no evaluation report at s3://{BUCKET}/{KEY}"
    assert raised.value.__cause__ is not None


def test_missing_bucket_raises_evaluation_report_not_found(gate):
    with mock_aws():
        client = boto3.client("s3", region_name="us-east-1")
        with pytest.raises(gate.EvaluationReportNotFound):
            gate.read_report("s3://no-such-bucket/evaluation.json", client)


def test_report_that_is_not_json(app, s3):
    s3.put_object(Bucket=BUCKET, Key=KEY, Body=b"not json")
    app.set_s3_client(s3)

    with pytest.raises(app.gate.InvalidEvaluationReport):
        app.lambda_handler(EVENT, FakeLambdaContext())


def test_handler_rejects_an_event_without_a_gate(app):
    from pydantic import ValidationError

    with pytest.raises(ValidationError):
        app.lambda_handler({"evaluation_uri": EVENT["evaluation_uri"]}, FakeLambdaContext())


def _champion_report(rmse: float, comparable: bool = True) -> dict:
    champion: dict = {"comparable": comparable, "source": "endpoint prod (model m1)"}
    if comparable:
        champion["regression_metrics"] = {"rmse": {"value": rmse}}
    else:
        champion["reason"] = "the production model's features (['a']) is not this run's (['b'])"
    return {**REPORT, "champion": champion}


@pytest.mark.parametrize(
    ("champion_rmse", "margin", "beats", "required"),
    [
        (3.5, 0.0, True, 3.5),  # better than production
        (3.412, 0.0, True, 3.412),  # equal: not worse is enough by default
        (3.3, 0.0, False, 3.3),  # worse than production
        (3.5, 0.2, False, 3.3),  # better, but not by the margin
    ],
)
def test_against_champion_compares_on_the_gate_metric_with_the_margin(
    gate, champion_rmse, margin, beats, required
):
    decision = gate.decide(METRICS, {"metric": "rmse", "direction": "minimize", "threshold": 4})
    result = gate.against_champion(_champion_report(champion_rmse), decision, margin)
    assert (result["present"], result["beats"]) == (True, beats)
    assert result["required"] == pytest.approx(required)
    assert result["value"] == champion_rmse
    verdict = "beats" if beats else "does not beat"
    assert result["cause"].startswith(f"the new model's rmse 3.412 {verdict} the production")


def test_maximized_metrics_need_a_higher_value_than_production(gate):
    decision = gate.decide(METRICS, {"metric": "r2", "direction": "maximize", "threshold": 0.1})
    report = {
        **REPORT,
        "champion": {"comparable": True, "regression_metrics": {"r2": {"value": 0.5}}},
    }
    assert gate.against_champion(report, decision, 0.05)["beats"] is False  # needs >= 0.55
    assert gate.against_champion(report, decision, 0.0)["beats"] is True


def test_no_champion_or_one_that_cannot_be_compared_lets_the_new_model_on(gate):
    decision = gate.decide(METRICS, {"metric": "rmse", "direction": "minimize", "threshold": 4})
    assert gate.against_champion(REPORT, decision) == {
        "present": False,
        "cause": "no model in production yet",
    }
    other = gate.against_champion(_champion_report(1.0, comparable=False), decision)
    assert other["present"] is False and "features" in other["cause"]


def _split_report(train: float, validation: float) -> dict:
    def split(value: float) -> dict:
        return {"regression_metrics": {"rmse": {"value": value}}, "dataset": {"rows": 10}}

    return {**REPORT, "splits": {"train": split(train), "validation": split(validation)}}


@pytest.mark.parametrize(
    ("train", "limit", "overfits", "passed"),
    [
        (3.0, None, False, True),  # 0.412 worse: under a quarter of 3.0, and no gate
        (1.0, None, True, True),  # 2.412 worse: the summary says so; nothing gates
        (1.0, 2.5, False, True),  # within the configured limit
        (1.0, 2.0, True, False),  # over it: ModelOverfits
    ],
)
def test_overfitting_is_the_test_metric_worse_than_the_training_one(
    gate, train, limit, overfits, passed
):
    decision = gate.decide(METRICS, {"metric": "rmse", "direction": "minimize", "threshold": 4})
    result = gate.overfitting(_split_report(train, 3.2), decision, limit)
    assert (result["train"], result["validation"], result["test"]) == (train, 3.2, 3.412)
    assert result["gap"] == pytest.approx(3.412 - train)
    assert (result["overfits"], result["passed"]) == (overfits, passed)
    if limit == 2.0:
        assert result["cause"] == (
            "rmse is 1.0 on the training set and 3.412 on the test set: a train/test gap of "
            "2.412; gate.max_train_test_gap allows 2.0"
        )


def test_a_maximized_metrics_gap_is_the_training_value_above_the_test_one(gate):
    decision = gate.decide(METRICS, {"metric": "r2", "direction": "maximize", "threshold": 0.1})
    report = {
        **REPORT,
        "splits": {"train": {"regression_metrics": {"r2": {"value": 0.95}}}},
    }
    result = gate.overfitting(report, decision, 0.3)
    assert result["gap"] == pytest.approx(0.43) and result["passed"] is False
    assert result["validation"] is None


# --- confidence intervals and the paired comparison -----------------------------------------

INTERVAL = {"lower": 3.1, "upper": 3.7, "level": 0.95}
R2_INTERVAL = {"lower": 0.45, "upper": 0.6, "level": 0.95}


@pytest.mark.parametrize(
    ("gate_config", "interval", "passed", "gated"),
    [
        ({"metric": "rmse", "direction": "minimize", "threshold": 3.5}, INTERVAL, True, 3.412),
        (  # the value passes, the upper bound does not
            {"metric": "rmse", "direction": "minimize", "threshold": 3.5, "confidence": 0.95},
            INTERVAL,
            False,
            3.7,
        ),
        (
            {"metric": "rmse", "direction": "minimize", "threshold": 3.7, "confidence": 0.95},
            INTERVAL,
            True,
            3.7,
        ),
        (  # maximize: the lower bound decides
            {"metric": "r2", "direction": "maximize", "threshold": 0.5, "confidence": 0.95},
            R2_INTERVAL,
            False,
            0.45,
        ),
        (
            {"metric": "r2", "direction": "maximize", "threshold": 0.4, "confidence": 0.95},
            R2_INTERVAL,
            True,
            0.45,
        ),
    ],
)
def test_gate_confidence_gates_on_the_pessimistic_bound(gate, gate_config, interval, passed, gated):
    decision = gate.decide(METRICS, gate_config, interval)
    assert (decision["passed"], decision["gated_value"]) == (passed, gated)
    assert decision["value"] == METRICS[gate_config["metric"]]
    assert decision["interval"] == interval
    assert decision["bound"] == (
        "value"
        if "confidence" not in gate_config
        else "upper"
        if gate_config["direction"] == "minimize"
        else "lower"
    )


def test_the_cause_says_which_bound_decided(gate):
    config = {"metric": "rmse", "direction": "minimize", "threshold": 3.5}
    assert gate.decide(METRICS, config, INTERVAL)["cause"] == (
        "rmse is 3.412 ([3.1, 3.7] at 95%) on the test set; the quality gate requires rmse <= 3.5"
    )
    assert gate.decide(METRICS, {**config, "confidence": 0.95}, INTERVAL)["cause"] == (
        "rmse is 3.412 ([3.1, 3.7] at 95%) on the test set; the quality gate requires the "
        "upper bound of its 95% interval <= 3.5 (gate.confidence); the upper bound 3.7 decided"
    )


def test_gate_confidence_needs_the_interval_at_its_level(gate):
    config = {"metric": "rmse", "direction": "minimize", "threshold": 3.5, "confidence": 0.9}
    with pytest.raises(gate.InvalidEvaluationReport, match="no confidence interval for rmse"):
        gate.decide(METRICS, config, None)
    with pytest.raises(gate.InvalidEvaluationReport, match="gate.confidence is 0.9 but"):
        gate.decide(METRICS, config, INTERVAL)


def test_interval_of_reads_the_report_or_its_champion_section(gate):
    report = {"regression_metrics": {"rmse": {"value": 3.4, "confidence_interval": INTERVAL}}}
    assert gate.interval_of(report, "rmse") == INTERVAL
    assert gate.interval_of(report, "mae") is None
    assert gate.interval_of(REPORT, "rmse") is None  # reports from before the intervals


def _paired_report(upper: float, share: float, significance: float | None = 0.05) -> dict:
    report = _champion_report(3.6)
    report["champion"]["regression_metrics"]["rmse"]["confidence_interval"] = INTERVAL
    report["champion"]["paired_difference"] = {
        "metric": "rmse",
        "direction": "minimize",
        "margin": 0.0,
        "resamples": 1000,
        "mean": -0.188,
        "confidence_interval": {"lower": -0.3, "upper": upper, "level": 0.95},
        "share_not_better": share,
        "significance": significance,
        "bound": {"side": "upper", "value": upper - 0.01, "level": 0.95},
    }
    return report


@pytest.mark.parametrize(
    ("upper", "margin", "significance", "beats"),
    [
        (0.05, 0.0, None, True),  # off: the point values decide (3.412 <= 3.6)
        (-0.02, 0.0, 0.05, True),  # the bound -0.03 < 0: significant
        (0.05, 0.0, 0.05, False),  # the bound 0.04: "not better" is in the interval
        (-0.02, 0.1, 0.05, False),  # significant, but not by the margin (-0.03 > -0.1)
    ],
)
def test_champion_significance_needs_the_paired_bound_past_the_margin(
    gate, upper, margin, significance, beats
):
    decision = gate.decide(METRICS, {"metric": "rmse", "direction": "minimize", "threshold": 4})
    result = gate.against_champion(
        _paired_report(upper, 0.01, significance), decision, margin, significance
    )
    assert result["beats"] is beats
    assert result["required_difference"] == -margin
    assert result["interval"] == INTERVAL
    assert result["difference"]["confidence_interval"]["upper"] == upper
    if significance is None:
        assert result["difference_bound"] is None
        assert "required <= 3.6; paired difference -0.188 [-0.3, 0.05] at 95%" in result["cause"]
    else:
        assert result["difference_bound"] == pytest.approx(upper - 0.01)
        assert (
            "gate.champion_significance 0.05: the paired difference's 95% upper bound"
            in (result["cause"])
        )
        expected = "0.0" if margin == 0 else "-0.1"  # a margin of 0 is 0.0, not -0.0
        assert f"must be below {expected}" in result["cause"]


def test_champion_significance_needs_the_paired_bound_in_the_report(gate):
    decision = gate.decide(METRICS, {"metric": "rmse", "direction": "minimize", "threshold": 4})
    with pytest.raises(gate.InvalidEvaluationReport, match="no paired bootstrap bound for rmse"):
        gate.against_champion(_champion_report(3.6), decision, 0.0, 0.05)
    with pytest.raises(gate.InvalidEvaluationReport, match="is 0.1 but the report's paired"):
        gate.against_champion(_paired_report(-0.02, 0.01), decision, 0.0, 0.1)


def test_the_handler_takes_the_confidence_options(app, s3):
    report = _paired_report(-0.02, 0.0)
    report["regression_metrics"] = {
        **REPORT["regression_metrics"],
        "rmse": {"value": 3.412, "confidence_interval": INTERVAL},
    }
    s3.put_object(Bucket=BUCKET, Key=KEY, Body=json.dumps(report).encode())
    app.set_s3_client(s3)
    event = {
        **EVENT,
        "gate": {**EVENT["gate"], "confidence": 0.95, "champion_significance": 0.05},
    }
    result = app.lambda_handler(event, FakeLambdaContext())
    assert (result["gated_value"], result["bound"], result["passed"]) == (3.7, "upper", False)
    assert result["champion"]["beats"] is True
    with pytest.raises(ValueError, match="champion_significance"):
        app.lambda_handler(
            {**EVENT, "gate": {**EVENT["gate"], "champion_significance": 0.7}},
            FakeLambdaContext(),
        )
