"""`sfn-mlops report NAME` on real local runs: a regression run, a binary one and a run whose
training crashed; each page is parsed back and checked against what the run left behind."""

from __future__ import annotations

import json
from collections.abc import Callable
from html.parser import HTMLParser
from pathlib import Path
from typing import Any

import pandas as pd
import pytest

from sfn_mlops import run_report
from sfn_mlops.data import example_dataset

pytestmark = pytest.mark.e2e

QUICK = ("--set", "clarify.enabled=false")


class _Page(HTMLParser):
    def __init__(self) -> None:
        super().__init__()
        self.sections: list[str] = []
        self.outcomes: dict[str, str] = {}
        self.links: list[str] = []
        self.cells: list[str] = []
        self._cell: list[str] | None = None

    def handle_starttag(self, tag: str, attrs: list[tuple[str, str | None]]) -> None:
        found = dict(attrs)
        if tag == "section":
            self.sections.append(found["id"] or "")
        if tag == "g" and "data-state" in found:
            self.outcomes[found["data-state"] or ""] = found["data-outcome"] or ""
        self.links += [v or "" for k, v in attrs if k in ("src", "href", "xlink:href")]
        if tag == "td":
            self._cell = []

    def handle_endtag(self, tag: str) -> None:
        if tag == "td" and self._cell is not None:
            self.cells.append("".join(self._cell).strip())
            self._cell = None

    def handle_data(self, data: str) -> None:
        if self._cell is not None:
            self._cell.append(data)


def _parse(path: Path) -> _Page:
    page = _Page()
    page.feed(path.read_text(encoding="utf-8"))
    return page


@pytest.fixture(scope="module")
def runs(
    cli: Callable[..., Any], workspace: Path, tmp_path_factory: pytest.TempPathFactory
) -> dict[str, Any]:
    """Three runs, each reported once; name → the CLI's answer to `report`."""
    folder = tmp_path_factory.mktemp("report-data")
    abalone = pd.read_csv(example_dataset(folder))
    binary = folder / "old.csv"
    old = abalone.assign(old=(abalone.rings > 9).map({True: "yes", False: "no"}))
    old.drop(columns="rings").to_csv(binary, index=False)
    started = {
        "rep-regression": cli(workspace, "run", "--name", "rep-regression", *QUICK),
        "rep-binary": cli(
            workspace,
            "run",
            "--name",
            "rep-binary",
            "--data",
            str(binary),
            "--target",
            "old",
            "--problem-type",
            "binary",
            *QUICK,
        ),  # fmt: skip
        "rep-crash": cli(
            workspace,
            "run",
            "--name",
            "rep-crash",
            *QUICK,
            "--set",
            "hyperparameters.objective=reg:logistic",
        ),  # fmt: skip
    }
    assert [run.code for run in started.values()] == [0, 0, 1], [r.err for r in started.values()]
    return {name: cli(workspace, "report", name) for name in started}


def _page(runs: dict[str, Any], workspace: Path, name: str) -> _Page:
    result = runs[name]
    assert result.code == 0, result.err
    path = Path(result.out.strip().splitlines()[-1])
    assert path == (workspace / "reports" / f"{name}.html").resolve()
    return _parse(path)


def _definition(aws: Any) -> dict[str, Any]:
    return dict(
        json.loads(aws.sfn.describe_state_machine(stateMachineArn=aws.machine_arn)["definition"])
    )


def test_regression_report_sections_states_and_the_evaluation_jobs_numbers(
    runs: dict[str, Any], workspace: Path, aws: Any
) -> None:
    page = _page(runs, workspace, "rep-regression")
    assert page.sections == [
        "summary", "outcome", "graph", "states", "gate", "splits", "importance",
        "predicted-vs-actual", "residuals", "config",
    ]  # fmt: skip
    files = [link for link in page.links if link.startswith("file://")]
    assert files and all(Path(link.removeprefix("file://")).exists() for link in files)
    every = {name for name, _ in run_report.walk_states(_definition(aws))}
    assert set(page.outcomes) == every
    entered = set(aws.entered_states("rep-regression"))
    assert {n for n, o in page.outcomes.items() if o == "succeeded"} == entered
    assert page.outcomes["PrepareClarify"] == page.outcomes["NotifyFailure"] == "not-run"
    assert [link for link in page.links if not link.startswith(("#", "file://"))] == []
    evaluation = aws.json_object(
        "s3://sfn-mlops-artifactbucket/runs/rep-regression/evaluation/evaluation.json"
    )
    for metric, entry in evaluation["regression_metrics"].items():
        row = page.cells.index(metric)
        train, validation, test = page.cells[row + 1 : row + 4]
        assert test == f"{entry['value']:.4g}"  # the report's own computation = the job's
        assert page.cells[row + 4].startswith(f"{entry['value']:.4g} ± ")
        interval = entry["confidence_interval"]
        assert page.cells[row + 4].endswith(
            f"(95% interval {interval['lower']:.4g} to {interval['upper']:.4g})"
        )
        assert train != test and validation != test
    assert (
        float(page.cells[page.cells.index("rmse") + 1])
        < evaluation["regression_metrics"]["rmse"]["value"]
    )


def test_binary_report_has_the_confusion_matrix_and_roc(
    runs: dict[str, Any], workspace: Path, aws: Any
) -> None:
    page = _page(runs, workspace, "rep-binary")
    assert {"confusion-matrix", "roc", "importance"} <= set(page.sections)
    assert "residuals" not in page.sections
    execution = aws.describe("rep-binary")
    report = run_report.gather(aws.sfn, aws.s3, execution)
    assert report.model is not None and report.model.labels == ("no", "yes")
    rows = aws.json_object(
        "s3://sfn-mlops-artifactbucket/runs/rep-binary/evaluation/evaluation.json"
    )["dataset"]["rows"]
    assert int(run_report.confusion_matrix(report.model).sum()) == rows
    assert report.evaluation is not None  # the gate's AUC is the report's, to the last bit
    assert report.model.split_metrics["test"]["auc"] == report.evaluation["metrics"]["auc"]


def test_a_crashed_run_shows_the_graph_the_error_and_what_is_missing(
    runs: dict[str, Any], workspace: Path
) -> None:
    page = _page(runs, workspace, "rep-crash")
    assert page.sections == [
        "summary", "outcome", "graph", "states", "gate", "splits", "config", "missing",
    ]  # fmt: skip
    assert page.outcomes["Train"] == "caught"
    assert page.outcomes["PipelineFailed"] == "failed"
    assert page.outcomes["Evaluate"] == "not-run"
    text = (workspace / "reports" / "rep-crash.html").read_text(encoding="utf-8")
    assert "base_score must be in (0,1) for logistic loss" in text
    assert "model: the run ended before the Train state finished" in text


def test_report_output_option_and_a_missing_execution(
    cli: Callable[..., Any], workspace: Path, tmp_path: Path, runs: dict[str, Any]
) -> None:
    target = tmp_path / "nested" / "page.html"
    result = cli(workspace, "report", "rep-crash", "--output", str(target))
    assert (result.code, result.out.strip()) == (0, str(target.resolve()))
    assert "<svg" in target.read_text(encoding="utf-8")
    missing = cli(workspace, "report", "no-such-run")
    assert missing.code == 2
    assert "no execution named 'no-such-run'" in missing.err
