"""The run summary's Clarify lines: headline bias metrics, the bias gate, top SHAP features."""

from __future__ import annotations

import datetime as dt
import json
from pathlib import Path
from typing import Any

from sfn_mlops.report import summarize

PREFIX = "s3://bucket/runs/r1"


def _exited(name: str, output: dict[str, Any]) -> dict[str, Any]:
    return {"stateExitedEventDetails": {"name": name, "output": json.dumps(output)}}


def test_clarify_headline_top_features_and_reports(tmp_path: Path) -> None:
    shap = {"explanations": {"kernel_shap": {"label0": {"global_shap_values": {
        f"f{i}": float(i) for i in range(7)}, "expected_value": 9.0}}}}  # fmt: skip
    analysis = tmp_path / "analysis.json"
    analysis.write_text(json.dumps(shap))
    output = {
        "run": {"prefix": PREFIX},
        "steps": {"clarify": [{}, {}]},
        "bias": {
            "passed": False,
            "cause": "DPPL for facet sex=F is -0.27; the bias gate requires |DPPL| <= 0.05",
            "headline": [
                {"facet": "sex=F", "metric": "CI", "value": 0.3217},
                {"facet": "sex=F", "metric": "DPPL", "value": -0.2704},
                {"facet": "sex=F", "metric": "DI", "value": None},
            ],
            "violations": [],
        },
    }
    start = dt.datetime(2026, 1, 1, tzinfo=dt.timezone.utc)
    execution = {
        "name": "r1",
        "status": "FAILED",
        "startDate": start,
        "stopDate": start + dt.timedelta(seconds=3),
        "error": "BiasCheckFailed",
        "cause": output["bias"]["cause"],
    }
    lines: list[str] = []

    def local_path(uri: str) -> str | None:
        return str(analysis) if uri.endswith("explainability/report/analysis.json") else None

    summarize(execution, [_exited("ReadBiasReport", output)], lines.append, local_path)
    assert lines[1:4] == [
        "Bias (sex=F): CI 0.3217, DPPL -0.2704, DI n/a",
        "Bias gate FAILED: DPPL for facet sex=F is -0.27; the bias gate requires |DPPL| <= 0.05",
        "Top features by mean |SHAP|: f6 6, f5 5, f4 4, f3 3, f2 2",
    ]
    assert f"  bias report  {PREFIX}/clarify/bias/report/report.html" in lines
    assert f"  explanation  {PREFIX}/clarify/explainability/report/report.html" in lines


def test_aws_mode_reads_the_explanation_through_the_given_reader() -> None:
    start = dt.datetime(2026, 1, 1, tzinfo=dt.timezone.utc)
    execution = {"name": "r1", "status": "SUCCEEDED", "startDate": start, "stopDate": start}
    output = {"run": {"prefix": PREFIX}, "steps": {}}
    shap = {"explanations": {"kernel_shap": {"label0": {"global_shap_values": {"a": -2.0}}}}}
    asked: list[str] = []

    def read_json(uri: str) -> Any:
        asked.append(uri)
        return shap

    lines: list[str] = []
    summarize(execution, [_exited("Clarify", output)], lines.append, read_json=read_json)
    assert asked == [f"{PREFIX}/clarify/explainability/report/analysis.json"]
    assert "Top features by mean |SHAP|: a -2" in lines


def test_a_retraining_says_which_alarm_started_it_and_a_tie_is_no_win() -> None:
    start = dt.datetime(2026, 1, 1, tzinfo=dt.timezone.utc)
    why = {"reason": "alarm", "alarm": "ep-drift-length", "since": "2026-01-01T00:00:00.000+0000",
           "previous_execution": "run-1"}  # fmt: skip
    execution = {
        "name": "drift-20260101T0000-abcd",
        "status": "SUCCEEDED",
        "startDate": start,
        "stopDate": start + dt.timedelta(seconds=3),
        "input": json.dumps({"config": {}, "retraining": why}),
    }
    champion = {"present": True, "source": "endpoint ep", "value": 2.0, "beats": True}
    evaluation = {"metrics": {"rmse": 2.0}, "metric": "rmse", "value": 2.0, "direction": "minimize",
                  "threshold": 2.5, "passed": True, "champion": champion}  # fmt: skip
    lines: list[str] = []
    summarize(execution, [_exited("ReadEvaluation", {"evaluation": evaluation})], lines.append)
    assert "Retraining started by alarm ep-drift-length at 2026-01-01T00:00:00.000+0000, " \
        "after run-1" in lines  # fmt: skip
    assert any("the new model matches it" in line for line in lines), lines


def test_the_summary_says_what_the_run_trained_and_was_judged_on() -> None:
    data = {
        "manifest_uri": "s3://b/runs/r2/data/manifest.json",
        "why": "data the production model never saw (since 2026-01-01T00:00:00.000000Z)",
        "since": "2026-01-01T00:00:00.000000Z", "captured_rows": {"recent": 40, "older": 7},
        "skipped": {"captures_without_ground_truth": 3},
    }  # fmt: skip
    judged = {"recent_rows": 40, "older_rows": 4177, "older_kept": 8, "test_from": "recent"}
    evaluation = {**GATED, "data": judged}
    start = dt.datetime(2026, 1, 1, tzinfo=dt.timezone.utc)
    execution = {"name": "r2", "status": "SUCCEEDED", "startDate": start, "stopDate": start}
    events = [
        _exited("CollectData", {"steps": {"data": data}}),
        _exited("ReadEvaluation", {"evaluation": evaluation}),
    ]
    lines: list[str] = []
    summarize(execution, events, lines.append)
    assert lines[1:4] == [
        "Data: data the production model never saw (since 2026-01-01T00:00:00.000000Z); "
        "manifest s3://b/runs/r2/data/manifest.json",
        "  labelled production traffic: 40 recent rows, 7 older "
        "(left out: 3 captures without ground truth)",
        "  judged on recent rows only (40); 8 of 4177 older rows kept for training",
    ]


def _summary_lines(evaluation: dict[str, Any]) -> list[str]:
    start = dt.datetime(2026, 1, 1, tzinfo=dt.timezone.utc)
    execution = {"name": "r1", "status": "SUCCEEDED", "startDate": start, "stopDate": start}
    lines: list[str] = []
    summarize(execution, [_exited("ReadEvaluation", {"evaluation": evaluation})], lines.append)
    return lines


GATED = {
    "metrics": {"rmse": 2.286}, "metric": "rmse", "value": 2.286, "direction": "minimize",
    "threshold": 2.5, "passed": True, "bound": "value", "gated_value": 2.286,
    "interval": {"lower": 2.1, "upper": 2.52, "level": 0.95},
}  # fmt: skip


def test_the_gate_line_gives_the_interval_and_the_bound_that_decided() -> None:
    assert "Quality gate PASSED: rmse = 2.286, required <= 2.5 (95% interval 2.1 to 2.52)" in (
        _summary_lines(GATED)
    )
    bounded = {**GATED, "passed": False, "bound": "upper", "gated_value": 2.52}
    assert (
        "Quality gate FAILED: rmse = 2.286 (95% interval 2.1 to 2.52), its upper bound 2.52 "
        "required <= 2.5 (gate.confidence)"
    ) in _summary_lines(bounded)


def test_the_champion_line_gives_the_paired_difference_and_the_significance_bound() -> None:
    champion = {
        "present": True, "source": "endpoint ep", "value": 2.3, "beats": False,
        "significance": 0.05, "difference_bound": 0.01, "required_difference": 0.0,
        "difference": {
            "mean": -0.014, "share_not_better": 0.31,
            "confidence_interval": {"lower": -0.09, "upper": 0.02, "level": 0.95},
        },
    }  # fmt: skip
    lines = _summary_lines({**GATED, "champion": champion})
    assert (
        "Against production (endpoint ep): rmse 2.286 new, 2.3 production: the new model does "
        "not beat it; paired difference -0.014 (95% interval -0.09 to 0.02), not better in 31.0% "
        "of resamples; gate.champion_significance 0.05: its one-sided bound 0.01 required < 0"
    ) in lines
    assert "Kept the production model" in lines[-1]


def test_a_running_execution_and_the_monitoring_it_set_up() -> None:
    start = dt.datetime(2026, 1, 1, 9, 30, tzinfo=dt.timezone.utc)
    execution = {"name": "r3", "status": "RUNNING", "startDate": start}
    monitored = {
        "run": {"prefix": "s3://b/runs/r3"},
        "monitoring": {"schedules": ["ep-data-quality", "ep-model-quality"],
                       "alarms": ["ep-drift-a", "ep-model-quality"]},
    }  # fmt: skip
    lines: list[str] = []
    summarize(execution, [_exited("SetUpMonitoring", monitored)], lines.append)
    assert lines == [
        "\nExecution r3: RUNNING (started 2026-01-01 09:30:00)",
        "Monitoring: schedules ep-data-quality, ep-model-quality on the new baselines "
        "(s3://b/runs/r3/monitoring/); 2 alarms",
    ]


def test_the_deployment_line_says_how_the_traffic_moved() -> None:
    start = dt.datetime(2026, 1, 1, 9, 30, tzinfo=dt.timezone.utc)
    execution = {"name": "r4", "status": "RUNNING", "startDate": start}
    config = {"deployment": {"canary_percent": 20, "wait_seconds": 60}}  # resolved, as runs pass it
    deployed = {
        "config": config,
        "deployment": {"EndpointName": "ep", "EndpointConfigName": "r4-config",
                       "Strategy": "canary", "Operation": "update"},
    }  # fmt: skip
    lines: list[str] = []
    summarize(execution, [_exited("DeployModel", deployed)], lines.append)
    assert lines[-1].startswith("Endpoint ep (canary: 20% first, the rest after 60 s): config r4-")
    first = {**deployed, "deployment": {**deployed["deployment"], "Operation": "create"}}
    lines.clear()
    summarize(execution, [_exited("DeployModel", first)], lines.append)
    assert lines[-1].startswith("Endpoint ep (created): config r4-config")
