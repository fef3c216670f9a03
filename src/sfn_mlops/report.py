"""The end-of-run summary: metrics, the gate's decision and why, where the artifacts are."""

from __future__ import annotations

import json
from collections.abc import Callable
from typing import Any

from sfn_mlops.follow import cause_summary


def state_output(events: list[dict[str, Any]], state: str) -> dict[str, Any] | None:
    """The output of the last exit of ``state``, from the history events."""
    for event in reversed(events):
        details = event.get("stateExitedEventDetails")
        if details and details.get("name") == state:
            return json.loads(details.get("output") or "null")
    return None


def summarize(
    execution: dict[str, Any],
    events: list[dict[str, Any]],
    echo: Callable[[str], None] = print,
    local_path: Callable[[str], str | None] = lambda uri: None,
) -> None:
    status = execution["status"]
    took = (execution["stopDate"] - execution["startDate"]).total_seconds()
    echo(f"\nExecution {execution['name']}: {status} in {took:.1f} s")
    evaluated = state_output(events, "ReadEvaluation")
    evaluation = (evaluated or {}).get("evaluation")
    if evaluation:
        metrics = ", ".join(f"{k} {v:.4g}" for k, v in evaluation["metrics"].items())
        echo(f"Metrics on the test set: {metrics}")
        passed = evaluation["passed"]
        sign = "<=" if evaluation["direction"] == "minimize" else ">="
        verdict = "PASSED" if passed else "FAILED"
        echo(
            f"Quality gate {verdict}: {evaluation['metric']} = {evaluation['value']:.4g}, "
            f"required {sign} {evaluation['threshold']:g}"
        )
    if status != "SUCCEEDED":
        echo(f"Error: {execution.get('error')}")
        echo(f"Cause: {cause_summary(execution.get('cause'), limit=2000)}")
    latest = evaluated or state_output(events, "Evaluate") or state_output(events, "Train")
    if latest:
        _artifacts(latest, echo, local_path)


def _artifacts(
    output: dict[str, Any], echo: Callable[[str], None], local_path: Callable[[str], str | None]
) -> None:
    prefix = output.get("run", {}).get("prefix")
    items = [
        ("model", output.get("steps", {}).get("train", {}).get("model_artifacts")),
        (
            "evaluation",
            f"{prefix}/evaluation/evaluation.json"
            if "evaluate" in output.get("steps", {})
            else None,
        ),
        ("data splits", f"{prefix}/processing/" if prefix else None),
    ]
    shown = [(label, uri) for label, uri in items if uri]
    if not shown:
        return
    echo("Artifacts:")
    for label, uri in shown:
        path = local_path(uri)
        echo(f"  {label:<12} {uri}" + (f"\n  {'':<12} {path}" if path else ""))
