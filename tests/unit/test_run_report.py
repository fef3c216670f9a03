"""The run report from literal inputs: each state's outcome from the history, the graph
layout, and the page itself, parsed back with html.parser."""

from __future__ import annotations

import datetime as dt
import itertools
import json
from html.parser import HTMLParser
from typing import Any

import numpy as np
import pytest

from sfn_mlops import run_report
from sfn_mlops.run_report import ModelView, RunReport, StateRun

T0 = dt.datetime(2026, 1, 1, 12, 0, 0, tzinfo=dt.timezone.utc)
CATCH = [{"ErrorEquals": ["States.ALL"], "Next": "Notify"}]
DEFINITION: dict[str, Any] = {
    "StartAt": "Prepare",
    "States": {
        "Prepare": {"Type": "Pass", "Next": "Train"},
        "Train": {"Type": "Task", "Resource": "arn:x", "Next": "Clarify", "Catch": CATCH},
        "Clarify": {
            "Type": "Parallel",
            "Next": "Gate",
            "Catch": CATCH,
            "Branches": [
                {"StartAt": "Bias", "States": {"Bias": {"Type": "Task", "End": True}}},
                {"StartAt": "Explain", "States": {"Explain": {"Type": "Task", "End": True}}},
            ],
        },
        "Gate": {
            "Type": "Choice",
            "Choices": [{"Variable": "$.ok", "BooleanEquals": True, "Next": "Approved"}],
            "Default": "Rejected",
        },
        "Approved": {"Type": "Succeed"},
        "Rejected": {"Type": "Fail", "Error": "GateFailed", "Cause": "below the threshold"},
        "Notify": {"Type": "Task", "Resource": "arn:y", "Next": "Failed"},
        "Failed": {"Type": "Fail", "Error": "PipelineFailed"},
    },
}


class _Events:
    """History events with ids, previous ids and timestamps 100 ms apart."""

    def __init__(self) -> None:
        self.events: list[dict[str, Any]] = []
        self.clock = itertools.count()

    def add(self, kind: str, previous: int | None = None, **details: Any) -> int:
        event_id = len(self.events) + 1
        key = {"Entered": "stateEnteredEventDetails", "Exited": "stateExitedEventDetails"}
        suffix = next((s for s in key if kind.endswith("State" + s)), None)
        event: dict[str, Any] = {
            "id": event_id,
            "previousEventId": event_id - 1 if previous is None else previous,
            "type": kind,
            "timestamp": T0 + dt.timedelta(milliseconds=100 * next(self.clock)),
        }
        if suffix:
            event[key[suffix]] = details
        elif details:
            event[kind[0].lower() + kind[1:] + "EventDetails"] = details
        self.events.append(event)
        return event_id


def _gate_passed_history() -> list[dict[str, Any]]:
    """Train fails once and is retried; the Parallel's branches interleave."""
    h = _Events()
    h.add("ExecutionStarted", previous=0)
    h.add("PassStateEntered", name="Prepare")
    h.add("PassStateExited", name="Prepare", output="{}")
    h.add("TaskStateEntered", name="Train")
    h.add("TaskStarted")
    h.add("TaskFailed", error="SageMaker.AmazonSageMakerException", cause="throttled")
    h.add("TaskStarted")
    h.add("TaskSucceeded")
    h.add("TaskStateExited", name="Train", output="{}")
    h.add("ParallelStateEntered", name="Clarify")
    started = h.add("ParallelStateStarted")
    bias = h.add("TaskStateEntered", previous=started, name="Bias")
    explain = h.add("TaskStateEntered", previous=started, name="Explain")
    bias = h.add("TaskSucceeded", previous=bias)
    explain = h.add("TaskSucceeded", previous=explain)
    h.add("TaskStateExited", previous=bias, name="Bias", output="{}")
    last = h.add("TaskStateExited", previous=explain, name="Explain", output="{}")
    h.add("ParallelStateSucceeded", previous=last)
    h.add("ParallelStateExited", name="Clarify", output="{}")
    h.add("ChoiceStateEntered", name="Gate")
    h.add("ChoiceStateExited", name="Gate", output="{}")
    h.add("SucceedStateEntered", name="Approved")
    h.add("SucceedStateExited", name="Approved", output="{}")
    h.add("ExecutionSucceeded")
    return h.events


def _train_crashed_history() -> list[dict[str, Any]]:
    h = _Events()
    h.add("ExecutionStarted", previous=0)
    h.add("PassStateEntered", name="Prepare")
    h.add("PassStateExited", name="Prepare", output="{}")
    h.add("TaskStateEntered", name="Train")
    h.add("TaskStarted")
    h.add(
        "TaskFailed", error="States.TaskFailed", cause='{"FailureReason": "AlgorithmError: boom"}'
    )
    h.add("TaskStateExited", name="Train", output="{}")
    h.add("TaskStateEntered", name="Notify")
    h.add("TaskSucceeded")
    h.add("TaskStateExited", name="Notify", output="{}")
    h.add("FailStateEntered", name="Failed")
    h.add("ExecutionFailed", error="States.TaskFailed")
    return h.events


def test_outcomes_durations_and_retries_from_the_history() -> None:
    states = run_report.state_runs(_gate_passed_history(), DEFINITION, "SUCCEEDED")
    outcomes = {name: run.outcome for name, run in states.items()}
    assert outcomes == {
        "Prepare": "succeeded", "Train": "succeeded", "Clarify": "succeeded",
        "Bias": "succeeded", "Explain": "succeeded", "Gate": "succeeded",
        "Approved": "succeeded", "Rejected": "not-run", "Notify": "not-run", "Failed": "not-run",
    }  # fmt: skip
    train = states["Train"]
    assert (train.seconds, train.failures, train.error) == (
        0.5,
        1,
        "SageMaker.AmazonSageMakerException",
    )
    assert states["Clarify"].seconds == pytest.approx(0.9)
    assert states["Clarify"].failures == 0  # branch task events belong to the branches
    assert states["Explain"].seconds == pytest.approx(0.4)


def test_a_caught_failure_and_the_fail_state() -> None:
    events = _train_crashed_history()
    states = run_report.state_runs(events, DEFINITION, "FAILED")
    assert states["Train"].outcome == "caught"
    assert states["Train"].cause == '{"FailureReason": "AlgorithmError: boom"}'
    assert (states["Notify"].outcome, states["Failed"].outcome) == ("succeeded", "failed")
    assert states["Failed"].error == "PipelineFailed"
    assert states["Clarify"].outcome == states["Bias"].outcome == "not-run"
    assert run_report.taken_transitions(events) == {("Prepare", "Train"), ("Train", "Notify"),
                                                    ("Notify", "Failed")}  # fmt: skip


def test_a_state_left_open_is_running_aborted_or_failed() -> None:
    events = _train_crashed_history()[:5]  # Train entered and started, nothing after
    for status, outcome in (("RUNNING", "running"), ("ABORTED", "aborted"), ("FAILED", "failed")):
        assert run_report.state_runs(events, DEFINITION, status)["Train"].outcome == outcome


def test_layout_layers_top_down_and_the_parallel_encloses_its_branches() -> None:
    graph = run_report.layout(DEFINITION)
    boxes = {box.name: box for box in graph.boxes}
    assert set(boxes) == {name for name, _ in run_report.walk_states(DEFINITION)}
    chain = ["Prepare", "Train", "Clarify", "Gate", "Approved"]
    assert [boxes[a].y < boxes[b].y for a, b in itertools.pairwise(chain)] == [True] * 4
    clarify = boxes["Clarify"]
    for branch in ("Bias", "Explain"):
        inner = boxes[branch]
        assert clarify.x < inner.x and inner.x + inner.w < clarify.x + clarify.w
        assert clarify.y < inner.y and inner.y + inner.h < clarify.y + clarify.h
    outer = [b for b in graph.boxes if b.name not in ("Bias", "Explain")]
    for a, b in itertools.combinations(outer, 2):  # no two states overlap
        apart = a.x + a.w <= b.x or b.x + b.w <= a.x or a.y + a.h <= b.y or b.y + b.h <= a.y
        assert apart, (a.name, b.name)
    kinds = {(e.source, e.target): e.kind for e in graph.edges}
    assert kinds[("Train", "Notify")] == "catch" and kinds[("Gate", "Rejected")] == "default"
    assert kinds[("Gate", "Approved")] == "choice" and len(kinds) == 8


def test_a_loop_is_drawn_as_a_back_edge() -> None:
    looping = {
        "StartAt": "A",
        "States": {
            "A": {"Type": "Task", "Next": "B"},
            "B": {"Type": "Choice", "Choices": [{"Next": "A"}], "Default": "C"},
            "C": {"Type": "Succeed"},
        },
    }
    edges = {(e.source, e.target): e.kind for e in run_report.layout(looping).edges}
    assert edges == {("A", "B"): "next", ("B", "A"): "back", ("B", "C"): "default"}


class _Page(HTMLParser):
    """What the tests look at: sections, state groups, link targets, table cells."""

    def __init__(self) -> None:
        super().__init__()
        self.sections: list[str] = []
        self.states: dict[str, tuple[str, str]] = {}  # name -> (class, data-outcome)
        self.links: list[str] = []
        self.cells: list[str] = []
        self.svgs = 0
        self._cell: list[str] | None = None

    def handle_starttag(self, tag: str, attrs: list[tuple[str, str | None]]) -> None:
        found = dict(attrs)
        if tag == "section":
            self.sections.append(found["id"] or "")
        if tag == "g" and "data-state" in found:
            self.states[found["data-state"] or ""] = (
                found["class"] or "",
                found["data-outcome"] or "",
            )
        self.links += [v or "" for k, v in attrs if k in ("src", "href", "xlink:href")]
        self.svgs += tag == "svg"
        if tag in ("td", "th"):
            self._cell = []

    def handle_endtag(self, tag: str) -> None:
        if tag in ("td", "th") and self._cell is not None:
            self.cells.append("".join(self._cell).strip())
            self._cell = None

    def handle_data(self, data: str) -> None:
        if self._cell is not None:
            self._cell.append(data)


def _parse(page: str) -> _Page:
    parser = _Page()
    parser.feed(page)
    return parser


def _report(**changes: Any) -> RunReport:
    events = _gate_passed_history()
    base = RunReport(
        name="r1",
        status="SUCCEEDED",
        started=T0,
        stopped=T0 + dt.timedelta(seconds=2.4),
        error=None,
        cause=None,
        definition=DEFINITION,
        states=run_report.state_runs(events, DEFINITION, "SUCCEEDED"),
        taken=run_report.taken_transitions(events),
        config={"target": "rings", "problem_type": "regression", "gate": {"metric": "rmse"}},
        evaluation={
            "metric": "rmse",
            "direction": "minimize",
            "value": 2.286,
            "threshold": 2.5,
            "passed": True,
            "cause": "rmse is 2.286 on the test set",
            "interval": {"lower": 2.1, "upper": 2.45, "level": 0.95},
            "bound": "value",
            "gated_value": 2.286,
            "champion": {
                "present": True,
                "source": "endpoint ep",
                "value": 2.4,
                "beats": True,
                "significance": None,
                "difference": {
                    "mean": -0.114,
                    "share_not_better": 0.004,
                    "confidence_interval": {"lower": -0.2, "upper": -0.03, "level": 0.95},
                },
            },
        },  # fmt: skip
        test_report={
            "regression_metrics": {
                "rmse": {
                    "value": 2.286,
                    "standard_deviation": 0.1,
                    "confidence_interval": {"lower": 2.1, "upper": 2.45, "level": 0.95},
                }
            }
        },  # fmt: skip
        model=ModelView(
            problem_type="regression",
            labels=(),
            importance={"shell_weight": {"gain": 99.64, "total_gain": 57490.0, "weight": 577.0}},
            split_metrics={
                "train": {"rmse": 1.297},
                "validation": {"rmse": 2.177},
                "test": {"rmse": 2.286},
            },  # fmt: skip
            test_y=np.array([5.0, 9.0, 11.0, 20.0]),
            test_pred=np.array([6.0, 9.5, 10.0, 15.0]),
        ),
        prefix="s3://bucket/runs/r1",
    )
    return RunReport(**{**base.__dict__, **changes})


def test_the_page_has_every_section_every_state_and_nothing_from_the_network() -> None:
    page = run_report.render(_report())
    parsed = _parse(page)
    assert parsed.sections == [
        "summary", "graph", "states", "gate", "splits", "importance",
        "predicted-vs-actual", "residuals", "config",
    ]  # fmt: skip
    every = {name for name, _ in run_report.walk_states(DEFINITION)}
    assert set(parsed.states) == every
    assert parsed.states["Train"] == ("state outcome-succeeded", "succeeded")
    assert parsed.states["Rejected"] == ("state outcome-not-run", "not-run")
    assert parsed.states["Clarify"] == ("state compound outcome-succeeded", "succeeded")
    assert [link for link in parsed.links if "http" in link] == []
    assert all(link.startswith("#") for link in parsed.links)
    assert "<script" not in page and "<link" not in page and "@import" not in page
    assert parsed.svgs == 4  # the graph, importance, predicted-vs-actual, residuals
    cells = parsed.cells
    row = cells.index("rmse")
    assert cells[row : row + 5] == [
        "rmse", "1.297", "2.177", "2.286", "2.286 ± 0.1 (95% interval 2.1 to 2.45)",
    ]  # fmt: skip
    assert cells[cells.index("shell_weight") : cells.index("shell_weight") + 4] == [
        "shell_weight", "99.64", "5.749e+04", "577",
    ]  # fmt: skip
    assert (
        "PASSED" in page and "rmse = 2.286, required &lt;= 2.5 (95% interval 2.1 to 2.45)" in page
    )
    assert (
        "Against production (endpoint ep): rmse 2.286 new, 2.4 production: the new model beats "
        "it; paired difference -0.114 (95% interval -0.2 to -0.03), not better in 0.4% of "
        "resamples"
    ) in page
    assert cells[cells.index("Train") : cells.index("Train") + 5] == [
        "Train", "Task", "succeeded", "0.50 s", "1 failed",
    ]  # fmt: skip


def test_the_outcome_tells_the_runs_story_with_links_to_local_artifacts() -> None:
    outcome = (
        "Execution r1: SUCCEEDED in 9.1 s",
        "Registered sfn-mlops-models/3 (Approved)",
        "  bias report  s3://b/runs/r1/clarify/bias/report/report.html",
        "               /tmp/ws/objects/b/runs/r1/clarify/bias/report/report.html",
    )
    page = run_report.render(_report(outcome=outcome))
    parsed = _parse(page)
    assert parsed.sections[:3] == ["summary", "outcome", "graph"]
    assert "file:///tmp/ws/objects/b/runs/r1/clarify/bias/report/report.html" in parsed.links
    assert "Registered sfn-mlops-models/3 (Approved)" in page
    assert "Execution r1" not in page.split('id="outcome"')[1]  # the summary has the status


def test_a_run_that_failed_before_training_shows_the_graph_the_error_and_what_is_missing() -> None:
    events = _train_crashed_history()
    missing = ("model: the run ended before the Train state finished; no plots",)
    page = run_report.render(
        _report(
            status="FAILED",
            error="States.TaskFailed",
            cause=json.dumps({"FailureReason": "AlgorithmError: boom"}),
            states=run_report.state_runs(events, DEFINITION, "FAILED"),
            taken=run_report.taken_transitions(events),
            evaluation=None,
            test_report=None,
            model=None,
            missing=missing,
        )
    )
    parsed = _parse(page)
    assert parsed.sections == ["summary", "graph", "states", "gate", "splits", "config", "missing"]
    assert parsed.states["Train"][1] == "caught" and parsed.states["Failed"][1] == "failed"
    assert "AlgorithmError: boom" in page and missing[0] in page
    assert 'class="edge catch taken"' in page  # Train → Notify, drawn as taken
    assert parsed.svgs == 1


def test_classification_sections_confusion_counts_and_roc_points() -> None:
    model = ModelView(
        problem_type="binary",
        labels=("no", "yes"),
        importance={},
        split_metrics={"test": {"auc": 0.75}},
        test_y=np.array([0.0, 0.0, 1.0, 1.0]),
        test_pred=np.array([0.1, 0.6, 0.4, 0.9]),
    )
    assert run_report.confusion_matrix(model).tolist() == [[1, 1], [1, 1]]
    fpr, tpr = run_report.roc_curve(model.test_y, model.test_pred)
    assert fpr.tolist() == [0.0, 0.0, 0.5, 0.5, 1.0]
    assert tpr.tolist() == [0.0, 0.5, 0.5, 1.0, 1.0]
    parsed = _parse(run_report.render(_report(model=model, config={"problem_type": "binary"})))
    assert {"confusion-matrix", "roc"} <= set(parsed.sections)
    assert "residuals" not in parsed.sections


def test_multiclass_confusion_uses_the_most_probable_class() -> None:
    model = ModelView(
        problem_type="multiclass",
        labels=("F", "I", "M"),
        importance={},
        split_metrics={},
        test_y=np.array([0.0, 1.0, 2.0, 2.0]),
        test_pred=np.array([[0.8, 0.1, 0.1], [0.2, 0.7, 0.1], [0.5, 0.2, 0.3], [0.1, 0.1, 0.8]]),
    )
    assert run_report.confusion_matrix(model).tolist() == [[1, 0, 0], [0, 1, 0], [1, 0, 1]]


def test_state_runs_lists_states_the_history_never_mentions() -> None:
    states = run_report.state_runs([], DEFINITION, "RUNNING")
    assert set(states) == {name for name, _ in run_report.walk_states(DEFINITION)}
    assert {run.outcome for run in states.values()} == {"not-run"}
    assert states["Bias"] == StateRun("Bias", "not-run")
