"""The executions views (sfn_mlops.runs) on literal DescribeExecution answers."""

from __future__ import annotations

import datetime as dt
import json
from typing import Any

from sfn_mlops import runs

START = dt.datetime(2026, 12, 1, 9, 30, 0, tzinfo=dt.UTC)
EVALUATION = {
    "metric": "rmse", "direction": "minimize", "threshold": 2.5, "value": 2.2860250004996336,
    "passed": True, "metrics": {"rmse": 2.2860250004996336, "r2": 0.5502174022657436},
    "cause": "rmse is 2.28603 on the test set; the quality gate requires rmse <= 2.5",
}  # fmt: skip
CONFIG = {
    "data_uri": "s3://bucket/datasets/a/abalone.csv",
    "target": "rings",
    "processing_env": {"SFN_MLOPS_TARGET": "rings"},
    "hyperparameters": {"max_depth": "5", "eta": "0.1"},
    "gate": {"metric": "rmse", "threshold": 2.5},
    "clarify": {"enabled": False},
}


def execution(name: str, status: str, **extra: Any) -> dict[str, Any]:
    return {
        "executionArn": f"arn:aws:states:us-east-1:123456789012:execution:TrainingPipeline:{name}",
        "name": name,
        "status": status,
        "startDate": START,
        "stopDate": START + dt.timedelta(seconds=4.25),
        "input": json.dumps({"config": extra.pop("config", CONFIG)}),
        **extra,
    }


class HistoryOnly:
    """A Step Functions client that answers GetExecutionHistory with canned events."""

    def __init__(self, events: list[dict[str, Any]]) -> None:
        self.events, self.calls = events, 0

    def get_execution_history(self, **_: Any) -> dict[str, Any]:
        self.calls += 1
        return {"events": self.events}


def test_a_succeeded_run_reads_its_gate_from_the_output_without_the_history() -> None:
    sfn = HistoryOnly([])
    run = runs.load_run(
        sfn, execution("a", "SUCCEEDED", output=json.dumps({"evaluation": EVALUATION}))
    )

    assert (run.gate, run.result, run.seconds, sfn.calls) == (
        "rmse 2.286 <= 2.5",
        "gate passed",
        4.25,
        0,
    )


def test_a_succeeded_run_whose_model_missed_the_gate_says_so() -> None:
    """The pipeline registers a model that misses the gate as Rejected and succeeds."""
    output = json.dumps({"evaluation": {**EVALUATION, "passed": False, "value": 3.9}})
    run = runs.load_run(HistoryOnly([]), execution("a", "SUCCEEDED", output=output))
    assert (run.gate, run.result) == ("rmse 3.9 <= 2.5", "gate failed")


def test_a_failed_run_reads_its_evaluation_from_read_evaluations_exit() -> None:
    exited = {
        "type": "TaskStateExited",
        "stateExitedEventDetails": {
            "name": "ReadEvaluation",
            "output": json.dumps({"evaluation": {**EVALUATION, "passed": False, "threshold": 2.0}}),
        },
    }
    cause = "rmse is 2.28603 on the test set; the quality gate requires rmse <= 2"
    run = runs.load_run(
        HistoryOnly([exited]),
        execution("b", "FAILED", error="ModelQualityBelowThreshold", cause=cause),
    )

    assert run.gate == "rmse 2.286 <= 2"
    assert run.result == f"ModelQualityBelowThreshold: {cause}"[:59] + "…"
    assert len(run.result) == runs.REASON_WIDTH


def test_a_rolled_back_run_says_rolled_back_and_names_the_alarm() -> None:
    cause = "Alarm canary-errors went to ALARM. Version ... is marked Rejected"
    run = runs.load_run(
        HistoryOnly([]), execution("c", "FAILED", error="DeploymentRolledBack", cause=cause)
    )
    assert run.result.startswith("rolled back: Alarm canary-errors went to ALARM.")


def test_who_started_a_run_is_read_from_its_input() -> None:
    cli = {"started_by": "sfn-mlops run", "config": CONFIG}
    alarm = {"config": CONFIG, "retraining": {"reason": "alarm", "alarm": "sfn-mlops-drift-sex"}}
    schedule = {"config": CONFIG, "retraining": {"reason": "schedule"}}
    assert runs.started_by(cli) == "sfn-mlops run"
    assert runs.started_by(alarm) == "alarm sfn-mlops-drift-sex"
    assert runs.started_by(schedule) == "schedule"
    assert runs.started_by({"config": CONFIG}) == "by hand"
    done = execution("d", "SUCCEEDED", output="{}", input=json.dumps(alarm))
    assert runs.load_run(HistoryOnly([]), done).started_by == "alarm sfn-mlops-drift-sex"


def test_how_a_succeeded_run_ended_is_read_from_its_output() -> None:
    def ended(output: dict[str, Any]) -> str:
        done = execution("e", "SUCCEEDED", output=json.dumps({"evaluation": EVALUATION, **output}))
        return runs.load_run(HistoryOnly([]), done).result

    approved = {"ModelApprovalStatus": "Approved"}
    deployed = {"registration": approved, "deployment": {"Strategy": "canary"}}
    assert ended(deployed) == "deployed (canary)"
    assert ended({"registration": {"ModelApprovalStatus": "Rejected"}}) == "kept production"
    assert ended({"registration": approved}) == "registered"
    assert ended({}) == "gate passed"


def test_a_run_paused_for_approval_says_so() -> None:
    entered = {
        "type": "TaskStateEntered",
        "stateEnteredEventDetails": {"name": "WaitForApproval", "input": "{}"},
    }
    running = execution("f", "RUNNING", stopDate=None)
    assert runs.load_run(HistoryOnly([entered]), running).result == "waiting for approval"


def test_the_table_has_a_header_and_aligned_columns() -> None:
    done = runs.load_run(
        HistoryOnly([]),
        execution("run-1", "SUCCEEDED", output=json.dumps({"evaluation": EVALUATION})),
    )
    running = runs.Run("run-22", "RUNNING", START, None, CONFIG, None, None, None)

    assert runs.table([running, done]) == [
        "NAME    STATUS     STARTED              BY       DURATION  GATE               RESULT",
        "run-22  RUNNING    2026-12-01 09:30:00  by hand" + " " * 31 + "running",
        "run-1   SUCCEEDED  2026-12-01 09:30:00  by hand  4.2 s     rmse 2.286 <= 2.5  gate passed",
    ]


def test_describe_shows_the_settings_as_dotted_keys_without_derived_ones() -> None:
    run = runs.load_run(
        HistoryOnly([]), execution("a", "SUCCEEDED", output=json.dumps({"evaluation": EVALUATION}))
    )

    assert runs.describe(run) == [
        "Execution  a",
        "Status     SUCCEEDED",
        "Started    2026-12-01 09:30:00 (by hand)",
        "Duration   4.2 s",
        "Metrics    rmse 2.286, r2 0.5502 (test set)",
        "Gate       rmse 2.286 <= 2.5: passed",
        "Config",
        "  clarify.enabled = false",
        "  data_uri = s3://bucket/datasets/a/abalone.csv",
        "  gate.metric = rmse",
        "  gate.threshold = 2.5",
        "  hyperparameters.eta = 0.1",
        "  hyperparameters.max_depth = 5",
        "  target = rings",
    ]


def test_describe_cuts_a_long_cause_and_says_where_the_rest_is() -> None:
    cause = json.dumps(
        {"FailureReason": "AlgorithmError: boom\n" + "\n".join(f"  [bt] ({i})" for i in range(9))}
    )
    run = runs.load_run(
        HistoryOnly([]), execution("c", "FAILED", error="States.TaskFailed", cause=cause)
    )

    lines = runs.describe(run)

    start = lines.index("Error      States.TaskFailed")
    assert lines[start + 1 : start + 8] == [
        "Cause      AlgorithmError: boom",
        "             [bt] (0)", "             [bt] (1)", "             [bt] (2)",
        "             [bt] (3)", "             [bt] (4)",
        "           (cut; the whole cause: --json)",
    ]  # fmt: skip


def test_compare_shows_only_what_differs_and_the_metrics_side_by_side() -> None:
    other = {**CONFIG, "data_uri": "s3://bucket/datasets/b/abalone.csv",
             "hyperparameters": {"max_depth": "8", "eta": "0.1", "gamma": "1"}}  # fmt: skip
    a = runs.load_run(
        HistoryOnly([]), execution("a", "SUCCEEDED", output=json.dumps({"evaluation": EVALUATION}))
    )
    b = runs.load_run(HistoryOnly([]), execution("b", "RUNNING", config=other))

    assert runs.compare(a, b) == [
        "          a                  b",
        "  status  SUCCEEDED          RUNNING",
        "  gate    rmse 2.286 <= 2.5  —",
        "  result  gate passed        running",
        "",
        "Config that differs:",
        "  hyperparameters.gamma      —  1",
        "  hyperparameters.max_depth  5  8",
        "",
        "Metrics on the test set:",
        "  r2    0.5502  —",
        "  rmse  2.286   —",
    ]


class Pages:
    """ListExecutions in pages of at most two, as AWS pages with nextToken."""

    def __init__(self, count: int) -> None:
        self.items = [{"name": f"run-{i}"} for i in range(count)]
        self.requests: list[dict[str, Any]] = []

    def list_executions(self, **request: Any) -> dict[str, Any]:
        self.requests.append(request)
        start = int(request.get("nextToken", 0))
        size = min(2, request["maxResults"])
        page: dict[str, Any] = {"executions": self.items[start : start + size]}
        if start + size < len(self.items):
            page["nextToken"] = str(start + size)
        return page


def test_listing_follows_next_tokens_to_the_limit_or_the_end() -> None:
    limited, more = runs.list_executions(Pages(5), "arn:sm", 3, None)
    everything, more_after_all = runs.list_executions(Pages(5), "arn:sm", None, "FAILED")

    assert ([e["name"] for e in limited], more) == (["run-0", "run-1", "run-2"], True)
    assert (len(everything), more_after_all) == (5, False)
    pages = Pages(5)
    runs.list_executions(pages, "arn:sm", None, "FAILED")
    assert pages.requests[0] == {
        "stateMachineArn": "arn:sm",
        "statusFilter": "FAILED",
        "maxResults": 1000,
    }
