"""The end-of-run summary: metrics, the gate's decision and why, the Clarify headline (bias
metrics, top SHAP features), where the artifacts and reports are."""

from __future__ import annotations

import json
from collections.abc import Callable
from pathlib import Path
from typing import Any

from sfn_mlops.follow import cause_summary

TOP_FEATURES = 5


def last_exit(events: list[dict[str, Any]], state: str) -> dict[str, Any] | None:
    """The history event of ``state``'s last exit."""
    for event in reversed(events):
        details = event.get("stateExitedEventDetails")
        if details and details.get("name") == state:
            return event
    return None


def state_output(events: list[dict[str, Any]], state: str) -> dict[str, Any] | None:
    """The output of the last exit of ``state``, from the history events."""
    event = last_exit(events, state)
    if event is None:
        return None
    return json.loads(event["stateExitedEventDetails"].get("output") or "null")  # type: ignore[no-any-return]


def summarize(
    execution: dict[str, Any],
    events: list[dict[str, Any]],
    echo: Callable[[str], None] = print,
    local_path: Callable[[str], str | None] = lambda uri: None,
    read_json: Callable[[str], Any] | None = None,
) -> None:
    """``read_json(uri)`` reads a run's JSON report (None when it cannot); by default the
    local file ``local_path`` names."""
    status = execution["status"]
    if execution.get("stopDate"):
        took = (execution["stopDate"] - execution["startDate"]).total_seconds()
        echo(f"\nExecution {execution['name']}: {status} in {took:.1f} s")
    else:
        started = f"{execution['startDate']:%Y-%m-%d %H:%M:%S}"
        echo(f"\nExecution {execution['name']}: {status} (started {started})")
    _retraining(execution, echo)
    _tuning(state_output(events, "Tune"), echo)
    evaluated = state_output(events, "ReadEvaluation")
    evaluation = (evaluated or {}).get("evaluation")
    _data(state_output(events, "CollectData"), (evaluation or {}).get("data"), echo)
    if evaluation:
        metrics = ", ".join(f"{k} {v:.4g}" for k, v in evaluation["metrics"].items())
        echo(f"Metrics on the test set: {metrics}")
        _overfitting(evaluation.get("overfitting"), echo)
        if _kept_production(evaluation, echo):
            echo(
                "Kept the production model: the new one is registered as Rejected, nothing deployed"
            )
        else:
            verdict = "PASSED" if evaluation["passed"] else "FAILED"
            echo(f"Quality gate {verdict}: {gate_phrase(evaluation)}")
    clarified = state_output(events, "ReadBiasReport") or state_output(events, "Clarify")
    if clarified:
        _clarify(clarified, echo, read_json or (lambda uri: _read_json(local_path(uri))))
    _release(events, echo)
    ended_badly = status not in ("SUCCEEDED", "RUNNING")
    if ended_badly and (execution.get("error") or execution.get("cause")):
        echo(f"Error: {execution.get('error')}")
        echo(f"Cause: {cause_summary(execution.get('cause'), limit=2000)}")
    latest = (
        clarified or evaluated or state_output(events, "Evaluate") or state_output(events, "Train")
    )
    if latest:
        _artifacts(latest, echo, local_path)


def _retraining(execution: dict[str, Any], echo: Callable[[str], None]) -> None:
    """Why a retraining ran: the alarm or the schedule, and the run it retrained."""
    try:
        why = json.loads(execution.get("input") or "{}").get("retraining")
    except (ValueError, AttributeError):
        return
    if not isinstance(why, dict):
        return
    cause = f"alarm {why.get('alarm')}" if why.get("reason") == "alarm" else "the schedule"
    after = why.get("previous_execution")
    echo(f"Retraining started by {cause} at {why.get('since')}, after {after}")


def _data(
    collected: dict[str, Any] | None, judged: dict[str, Any] | None, echo: Callable[[str], None]
) -> None:
    """What the run trained on (CollectData's manifest) and what it was judged on."""
    data = ((collected or {}).get("steps") or {}).get("data")
    if not data:
        return
    rows = data.get("captured_rows") or {}
    skipped = ", ".join(f"{n} {kind.replace('_', ' ')}" for kind, n in data["skipped"].items())
    echo(f"Data: {data['why']}; manifest {data['manifest_uri']}")
    if rows.get("recent") or rows.get("older"):
        echo(
            f"  labelled production traffic: {rows.get('recent', 0)} recent rows, "
            f"{rows.get('older', 0)} older" + (f" (left out: {skipped})" if skipped else "")
        )
    if judged and judged.get("test_from") == "recent":
        echo(
            f"  judged on recent rows only ({judged['recent_rows']}); "
            f"{judged['older_kept']} of {judged['older_rows']} older rows kept for training"
        )
    elif judged and judged.get("note") and judged["note"] != "all data is recent":
        echo(f"  {judged['note']}")


def _tuning(tuned: dict[str, Any] | None, echo: Callable[[str], None]) -> None:
    """The search's counts and its best training job's hyperparameters."""
    tuning = ((tuned or {}).get("steps") or {}).get("tune")
    if not tuning:
        return
    best, counters = tuning["best"], tuning["counters"]
    objective = best.get("FinalHyperParameterTuningJobObjectiveMetric") or {}
    failed = counters.get("RetryableError", 0) + counters.get("NonRetryableError", 0)
    echo(
        f"Tuning {tuning['job_name']}: {counters.get('Completed', 0)} training jobs completed, "
        f"{failed} failed, {counters.get('Stopped', 0)} stopped; best {best['TrainingJobName']}"
        + (f" ({objective['MetricName']} {objective['Value']:.4g})" if objective else "")
    )
    tuned_values = ", ".join(f"{k}={v}" for k, v in sorted(best["TunedHyperParameters"].items()))
    echo(f"  best hyperparameters: {tuned_values}")


def _overfitting(found: dict[str, Any] | None, echo: Callable[[str], None]) -> None:
    """The gate metric on each split and the train/test gap; whether the model overfits."""
    if not found or found.get("gap") is None:
        return
    scores = ", ".join(
        f"{found[split]:.4g} {split}"
        for split in ("train", "validation", "test")
        if found.get(split) is not None
    )
    echo(f"Overfitting check: {found['metric']} {scores}; train/test gap {found['gap']:.4g}")
    if found["limit"] is not None:
        verdict = "within" if found["passed"] else "over"
        echo(f"  {verdict} gate.max_train_test_gap = {found['limit']:g}")
    elif found["overfits"]:
        worse = (
            f" ({found['gap'] / abs(found['train']):.0%} of the training value)"
            if found["train"]
            else ""
        )
        echo(
            f"  the model overfits: its test score is worse than its training score by more "
            f"than a quarter{worse}; gate.max_train_test_gap can gate on it"
        )


def interval_phrase(interval: dict[str, Any] | None) -> str:
    """` (95% interval 2.1 to 2.52)`, or "" without one."""
    if not interval:
        return ""
    return f" ({interval['level']:.0%} interval {interval['lower']:.4g} to {interval['upper']:.4g})"


def gate_phrase(evaluation: dict[str, Any]) -> str:
    """`rmse = 2.286 (95% interval 2.1 to 2.5), required <= 2.5`; with gate.confidence, the
    bound that decided: `..., its upper bound 2.5 required <= 2.5 (gate.confidence)`."""
    sign = "<=" if evaluation["direction"] == "minimize" else ">="
    shown = f"{evaluation['metric']} = {evaluation['value']:.4g}"
    required = f"required {sign} {evaluation['threshold']:g}"
    bound = evaluation.get("bound") or "value"
    if bound == "value":
        return f"{shown}, {required}{interval_phrase(evaluation.get('interval'))}"
    return (
        f"{shown}{interval_phrase(evaluation.get('interval'))}, its {bound} bound "
        f"{evaluation['gated_value']:.4g} {required} (gate.confidence)"
    )


def champion_phrase(evaluation: dict[str, Any]) -> str:
    """Both scores, the verdict, and the paired difference with its interval; with
    gate.champion_significance, the bound that decided."""
    champion = evaluation["champion"]
    text = (
        f"{evaluation['metric']} {evaluation['value']:.4g} new, {champion['value']:.4g} "
        f"production: the new model {_verdict(champion, evaluation['value'])}"
    )
    difference = champion.get("difference") or {}
    if difference.get("confidence_interval"):
        text += (
            f"; paired difference {difference['mean']:.4g}"
            f"{interval_phrase(difference['confidence_interval'])}, not better in "
            f"{difference['share_not_better']:.1%} of resamples"
        )
    if champion.get("significance") is not None and champion.get("difference_bound") is not None:
        side = "<" if evaluation["direction"] == "minimize" else ">"
        text += (
            f"; gate.champion_significance {champion['significance']:g}: its one-sided bound "
            f"{champion['difference_bound']:.4g} required {side} "
            f"{champion['required_difference']:g}"
        )
    return text


def _kept_production(evaluation: dict[str, Any], echo: Callable[[str], None]) -> bool:
    """Both scores, new and production, when there is a model in production; True when the
    production model stays (the new one does not beat it by the margin)."""
    champion = evaluation.get("champion") or {}
    if not champion.get("present"):
        return False
    echo(f"Against production ({champion['source']}): {champion_phrase(evaluation)}")
    return not champion["beats"]


def _verdict(champion: dict[str, Any], value: float) -> str:
    if not champion["beats"]:
        return "does not beat it"
    if champion.get("significance") is not None:
        return "beats it significantly"
    return "matches it (within gate.champion_margin)" if value == champion["value"] else "beats it"


def _release(events: list[dict[str, Any]], echo: Callable[[str], None]) -> None:
    """The registered version and where it was deployed."""
    registered = state_output(events, "RegisterModel")
    if registered and registered.get("registration"):
        version = registered["registration"]
        group = registered["config"]["registry"]["model_package_group"]
        status = version["ModelApprovalStatus"]
        echo(f"Registered {group}/{version['ModelPackageVersion']} ({status})")
        decided = state_output(events, "WaitForApproval")
        if decided and decided.get("registration"):
            echo(f"  then {decided['registration']['ModelApprovalStatus']} by a reviewer")
    deployed = state_output(events, "DeployModel")
    if deployed and deployed.get("deployment"):
        deployment = deployed["deployment"]
        settings = (deployed.get("config") or {}).get("deployment") or {}
        how = (
            "created"
            if deployment["Operation"] == "create"
            else traffic_steps(deployment["Strategy"], settings)
        )
        echo(
            f"Endpoint {deployment['EndpointName']} ({how}): config "
            f"{deployment['EndpointConfigName']}; `sfn-mlops endpoints describe "
            f"{deployment['EndpointName']}` gives its URL"
        )
    monitored = state_output(events, "SetUpMonitoring")
    if monitored and monitored.get("monitoring"):
        monitoring = monitored["monitoring"]
        prefix = monitored.get("run", {}).get("prefix")
        echo(
            f"Monitoring: schedules {', '.join(monitoring['schedules'])} on the new baselines "
            f"({prefix}/monitoring/); {len(monitoring['alarms'])} alarm"
            + ("" if len(monitoring["alarms"]) == 1 else "s")
        )


def traffic_steps(strategy: str, settings: dict[str, Any]) -> str:
    """How the traffic moved, from the run's resolved ``deployment`` settings
    (PipelineConfig.deployment_input: every key set, ``wait_seconds`` included):
    ``canary: 10% first, the rest after 60 s``."""
    if not settings:
        return strategy.replace("_", " ")
    wait = settings["wait_seconds"]
    if strategy == "canary":
        return f"canary: {settings['canary_percent']}% first, the rest after {wait} s"
    if strategy == "linear":
        return f"linear: {settings['linear_step_percent']}% every {wait} s"
    if strategy == "rolling":
        batch = settings["rolling_batch_percent"]
        return f"rolling: {batch}% of the instances per batch, {wait} s apart"
    if strategy == "ab":
        share = settings["ab_challenger_share"]
        return f"ab: the challenger takes {share:.0%} until the A/B test decides"
    return strategy.replace("_", " ")


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
    if "clarify" in output.get("steps", {}):
        items += [
            ("bias report", f"{prefix}/clarify/bias/report/report.html"),
            ("explanation", f"{prefix}/clarify/explainability/report/report.html"),
        ]
    shown = [(label, uri) for label, uri in items if uri]
    if not shown:
        return
    echo("Artifacts:")
    for label, uri in shown:
        path = local_path(uri)
        echo(f"  {label:<12} {uri}" + (f"\n  {'':<12} {path}" if path else ""))


def _clarify(
    output: dict[str, Any], echo: Callable[[str], None], read_json: Callable[[str], Any]
) -> None:
    """Headline bias metrics per facet, the bias gate, the top features by mean |SHAP|."""
    bias = output.get("bias")
    if bias:
        by_facet: dict[str, list[str]] = {}
        for item in bias.get("headline", []):
            value = item["value"]
            shown = "n/a" if value is None else f"{value:.4g}"
            by_facet.setdefault(item["facet"], []).append(f"{item['metric']} {shown}")
        for facet, metrics in by_facet.items():
            echo(f"Bias ({facet}): {', '.join(metrics)}")
        echo(f"Bias gate {'PASSED' if bias['passed'] else 'FAILED'}: {bias['cause']}")
    prefix = output.get("run", {}).get("prefix")
    if not prefix:
        return
    explained = read_json(f"{prefix}/clarify/explainability/report/analysis.json")
    for label, entry in ((explained or {}).get("explanations", {}).get("kernel_shap", {})).items():
        values = entry.get("global_shap_values", {})
        top = sorted(values.items(), key=lambda item: -abs(item[1]))[:TOP_FEATURES]
        ranked = ", ".join(f"{name} {value:.3g}" for name, value in top)
        label_text = "" if label == "label0" else f" ({label})"
        echo(f"Top features by mean |SHAP|{label_text}: {ranked}")


def _read_json(path: str | None) -> Any:
    if path is None or not Path(path).is_file():
        return None
    try:
        return json.loads(Path(path).read_text(encoding="utf-8"))
    except ValueError:
        return None
