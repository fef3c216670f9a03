"""Runs you can find and compare: the `executions list`, `describe` and `compare` views.

Everything comes from Step Functions' own answers (DescribeExecution, the history), so the
views read the same for local and AWS executions: the execution input holds the run's config,
ReadEvaluation's output (or the succeeded execution's output) its metrics and gate.
"""

from __future__ import annotations

import json
from collections.abc import Iterator, Mapping
from dataclasses import dataclass
from typing import Any

from sfn_mlops.follow import cause_summary
from sfn_mlops.report import state_output

REASON_WIDTH = 60
CAUSE_LINES = 6
#: Execution input keys that are derived, not settings (processing_env repeats the config).
DERIVED_KEYS = ("processing_env",)


#: Failures that are outcomes of the loop rather than faults, as `executions list` words them.
OUTCOMES = {"DeploymentRolledBack": "rolled back"}


@dataclass(frozen=True)
class Run:
    """One execution as the views show it."""

    name: str
    status: str
    started: Any  # datetime
    seconds: float | None  # None while running
    config: dict[str, Any]
    evaluation: dict[str, Any] | None
    error: str | None
    cause: str | None
    started_by: str = "by hand"
    ending: str = ""  # how a succeeded run ended; what a running one waits for

    @property
    def gate(self) -> str:
        """`rmse 2.286 <= 2.5`, or "" before the evaluation."""
        e = self.evaluation
        if not e:
            return ""
        sign = "<=" if e["direction"] == "minimize" else ">="
        return f"{e['metric']} {e['value']:.4g} {sign} {e['threshold']:g}"

    @property
    def result(self) -> str:
        """The verdict, or why it failed, on one short line."""
        if self.status == "RUNNING":
            return self.ending or "running"
        if self.status == "SUCCEEDED":
            if self.ending:
                return self.ending
            if not self.evaluation:
                return "succeeded"
            return "gate passed" if self.evaluation.get("passed", True) else "gate failed"
        label = OUTCOMES.get(self.error or "", self.error)
        reason = f"{label}: {cause_summary(self.cause)}" if self.error else self.status
        return reason if len(reason) <= REASON_WIDTH else reason[: REASON_WIDTH - 1] + "…"


def load_run(sfn: Any, execution: Mapping[str, Any]) -> Run:
    """A run from its DescribeExecution answer; the history is read only when the output
    does not hold the evaluation (a failed or stopped run)."""
    output = json.loads(execution.get("output") or "null") or {}
    given = json.loads(execution.get("input") or "{}")
    evaluation = output.get("evaluation")
    ending = _ending(output) if execution["status"] == "SUCCEEDED" else ""
    if evaluation is None or execution["status"] == "RUNNING":
        events = execution_history(sfn, execution["executionArn"])
        evaluation = evaluation or (state_output(events, "ReadEvaluation") or {}).get("evaluation")
        if execution["status"] == "RUNNING" and _last_entered(events) == "WaitForApproval":
            ending = "waiting for approval"
    stop = execution.get("stopDate")
    return Run(
        name=execution["name"],
        status=execution["status"],
        started=execution["startDate"],
        seconds=(stop - execution["startDate"]).total_seconds() if stop else None,
        config=json.loads(execution.get("input") or "{}").get("config", {}),
        evaluation=evaluation,
        error=execution.get("error"),
        cause=execution.get("cause"),
        started_by=started_by(given),
        ending=ending,
    )


#: What `sfn-mlops run` writes into an execution's input (`Config.execution_input`; the
#: Retrain Lambda drops it from the input it reuses).
STARTED_BY_CLI = "sfn-mlops run"


def started_by(execution_input: Mapping[str, Any]) -> str:
    """Who started a run: the CLI, an alarm (which), the retraining schedule, or someone by
    hand (any other StartExecution)."""
    why = execution_input.get("retraining")
    if isinstance(why, Mapping):
        if why.get("reason") == "alarm":
            return f"alarm {why.get('alarm') or '?'}"
        return "schedule" if why.get("reason") == "schedule" else "retraining"
    return "sfn-mlops run" if execution_input.get("started_by") == STARTED_BY_CLI else "by hand"


def _ending(output: Mapping[str, Any]) -> str:
    """How a succeeded run ended, from what its states left in the output."""
    registration = output.get("registration") or {}
    if output.get("deployment"):
        strategy = output["deployment"].get("Strategy", "?")
        return f"deployed ({'new endpoint' if strategy == 'create' else strategy})"
    if registration.get("ModelApprovalStatus") == "Rejected":
        return "kept production"
    return "registered" if registration else ""


def _last_entered(events: list[dict[str, Any]]) -> str | None:
    for event in reversed(events):
        if event["type"].endswith("StateEntered"):
            return str(event["stateEnteredEventDetails"]["name"])
    return None


def execution_history(sfn: Any, arn: str) -> list[dict[str, Any]]:
    """Every history event of an execution, following nextToken."""
    request: dict[str, Any] = {"executionArn": arn, "maxResults": 1000}
    events: list[dict[str, Any]] = []
    while True:
        page = sfn.get_execution_history(**request)
        events += page["events"]
        if not page.get("nextToken"):
            return events
        request["nextToken"] = page["nextToken"]


def list_executions(
    sfn: Any, state_machine_arn: str | None, limit: int | None, status: str | None
) -> tuple[list[dict[str, Any]], bool]:
    """(executions newest first, whether more exist beyond `limit`); None: all of them."""
    request: dict[str, Any] = {}
    if state_machine_arn:
        request["stateMachineArn"] = state_machine_arn
    if status:
        request["statusFilter"] = status
    found: list[dict[str, Any]] = []
    while True:
        page_size = 1000 if limit is None else min(1000, max(1, limit - len(found)))
        page = sfn.list_executions(**request, maxResults=page_size)
        found += page["executions"]
        token = page.get("nextToken")
        if not token or (limit is not None and len(found) >= limit):
            return found, bool(token)
        request["nextToken"] = token


def table(runs: list[Run]) -> list[str]:
    """The `executions list` table: a header, then a row per run."""
    rows = [("NAME", "STATUS", "STARTED", "BY", "DURATION", "GATE", "RESULT")]
    for run in runs:
        took = "" if run.seconds is None else f"{run.seconds:.1f} s"
        started = f"{run.started:%Y-%m-%d %H:%M:%S}"
        rows.append((run.name, run.status, started, run.started_by, took, run.gate, run.result))
    widths = [max(len(row[i]) for row in rows) for i in range(len(rows[0]) - 1)]
    return [
        "  ".join(cell.ljust(width) for cell, width in zip(row, widths, strict=False))
        + f"  {row[-1]}"
        for row in rows
    ]


def flat_config(config: Mapping[str, Any]) -> dict[str, Any]:
    """The run's settings as dotted keys (`hyperparameters.max_depth`), derived keys left out."""
    return dict(_flatten(config, ""))


def _flatten(tree: Mapping[str, Any], prefix: str) -> Iterator[tuple[str, Any]]:
    for key, value in tree.items():
        if key in DERIVED_KEYS:
            continue
        if isinstance(value, Mapping) and value:
            yield from _flatten(value, f"{prefix}{key}.")
        else:
            yield f"{prefix}{key}", value


def describe(run: Run) -> list[str]:
    """`executions describe`: what a person reads first, then the settings."""
    took = "running" if run.seconds is None else f"{run.seconds:.1f} s"
    lines = [
        f"Execution  {run.name}",
        f"Status     {run.status}",
        f"Started    {run.started:%Y-%m-%d %H:%M:%S} ({run.started_by})",
        f"Duration   {took}",
    ]
    if run.ending:
        lines.append(f"Outcome    {run.ending}")
    if run.evaluation:
        metrics = ", ".join(f"{k} {v:.4g}" for k, v in run.evaluation["metrics"].items())
        verdict = "passed" if run.evaluation["passed"] else "failed"
        lines += [f"Metrics    {metrics} (test set)", f"Gate       {run.gate}: {verdict}"]
    if run.error:
        cause = cause_summary(run.cause, limit=2000).splitlines() or [""]
        if len(cause) > CAUSE_LINES:  # e.g. a native stack trace; --json has it whole
            cause = [*cause[:CAUSE_LINES], "(cut; the whole cause: --json)"]
        lines += [f"Error      {run.error}", f"Cause      {cause[0]}"]
        lines += [f"           {line}" for line in cause[1:]]
    lines.append("Config")
    lines += [f"  {key} = {_text(value)}" for key, value in sorted(flat_config(run.config).items())]
    return lines


def compare(first: Run, second: Run) -> list[str]:
    """`executions compare A B`: the settings and metrics that differ, side by side."""
    a, b = flat_config(first.config), flat_config(second.config)
    config_rows = [
        (key, _text(a.get(key, "—")), _text(b.get(key, "—")))
        for key in sorted(a.keys() | b.keys())
        if a.get(key) != b.get(key) and not key.endswith("data_uri")
    ]
    metrics_a = (first.evaluation or {}).get("metrics", {})
    metrics_b = (second.evaluation or {}).get("metrics", {})
    metric_rows = [
        (name, _number(metrics_a.get(name)), _number(metrics_b.get(name)))
        for name in sorted(metrics_a.keys() | metrics_b.keys())
    ]
    outcome = [
        ("status", first.status, second.status),
        ("gate", first.gate or "—", second.gate or "—"),
        ("result", first.result, second.result),
    ]
    lines = _side_by_side(("", first.name, second.name), outcome)
    lines += ["", "Config that differs:"]
    lines += _side_by_side(None, config_rows) if config_rows else ["  (none)"]
    lines += ["", "Metrics on the test set:"]
    lines += _side_by_side(None, metric_rows) if metric_rows else ["  (none yet)"]
    return lines


def _side_by_side(
    header: tuple[str, str, str] | None, rows: list[tuple[str, str, str]]
) -> list[str]:
    every = ([header] if header else []) + rows
    widths = [max(len(row[i]) for row in every) for i in range(2)]
    return [f"  {row[0].ljust(widths[0])}  {row[1].ljust(widths[1])}  {row[2]}" for row in every]


def _text(value: Any) -> str:
    return value if isinstance(value, str) else json.dumps(value)


def _number(value: float | None) -> str:
    return "—" if value is None else f"{value:.4g}"
