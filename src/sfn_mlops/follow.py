"""Follow an execution through its history events: one line per state, with durations.

Works the same against the local cloud and AWS, since it only reads the execution history
(and, for long SageMaker jobs, their status) through boto3.
"""

from __future__ import annotations

import json
import time
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Any

if TYPE_CHECKING:
    from sfn_mlops.config import PipelineConfig

_JOB_LABELS = {
    "TrainingJobName": "training job",
    "ProcessingJobName": "processing job",
    "HyperParameterTuningJobName": "tuning job",
    "TransformJobName": "transform job",
}
TERMINAL = {"SUCCEEDED", "FAILED", "TIMED_OUT", "ABORTED"}
_JOB_NAME_KEYS = {
    "TrainingJobName": "describe_training_job",
    "ProcessingJobName": "describe_processing_job",
    "HyperParameterTuningJobName": "describe_hyper_parameter_tuning_job",
    "TransformJobName": "describe_transform_job",
}


#: Preprocess, Train and Evaluate each stop at max_runtime_seconds; provisioning comes on top.
JOB_STATES = 3
FOLLOW_SLACK_SECONDS = 3600.0


def follow_timeout(config: PipelineConfig) -> float:
    """How long following a run may take before it is reported as stuck."""
    approval = (
        config.registry.approval_timeout_seconds if config.registry.approval == "manual" else 0
    )
    return JOB_STATES * config.max_runtime_seconds + approval + FOLLOW_SLACK_SECONDS


def cause_summary(cause: str | None, limit: int = 300) -> str:
    """The line a person needs from a cause: a job's own reason, a Lambda's message.

    A failed processing job's own words are its ExitMessage (the container's
    /opt/ml/output/message), more telling than its FailureReason (how the container ended);
    a training job's are its FailureReason (/opt/ml/output/failure).
    """
    if not cause:
        return ""
    try:
        parsed = json.loads(cause)
    except ValueError:
        return cause[:limit]
    if isinstance(parsed, dict):
        for key in ("ExitMessage", "FailureReason", "errorMessage"):
            if parsed.get(key):
                return str(parsed[key])[:limit]
    return cause[:limit]


def _awaited_package(details: dict[str, Any], parameters: dict[str, Any]) -> str | None:
    """GROUP/VERSION of the model version a callback Task waits on (WaitForApproval)."""
    if details.get("resource") != "invoke.waitForTaskToken":
        return None
    payload = parameters.get("Payload")
    arn = payload.get("model_package_arn") if isinstance(payload, dict) else None
    if not isinstance(arn, str) or "model-package/" not in arn:
        return None
    return arn.split("model-package/", 1)[1]


def tuning_progress(job: dict[str, Any]) -> str:
    """A tuning job's training jobs done/running/failed and the best objective so far."""
    counters = job.get("TrainingJobStatusCounters")
    if not isinstance(counters, dict):
        return ""
    text = (
        f" ({counters.get('Completed', 0)} done, {counters.get('InProgress', 0)} running, "
        f"{counters.get('RetryableError', 0) + counters.get('NonRetryableError', 0)} failed"
    )
    best = (job.get("BestTrainingJob") or {}).get("FinalHyperParameterTuningJobObjectiveMetric")
    if best:
        text += f"; best {best['MetricName']} {best['Value']:.4g}"
    return text + ")"


@dataclass
class _OpenState:
    name: str
    started: float
    job: tuple[str, str, str] | None = None  # (describe method, name key, job name)
    last_progress: float = 0.0


@dataclass
class Follower:
    """Prints what the execution does; call ``poll`` until it returns a terminal status."""

    sfn: Any
    sagemaker: Any
    execution_arn: str
    echo: Callable[[str], None] = print
    progress_every: float = 5.0
    events: list[dict[str, Any]] = field(default_factory=list)
    _open: dict[str, _OpenState] = field(default_factory=dict)
    _failed: set[str] = field(default_factory=set)
    _current: str = ""  # the state last entered
    # event id -> the state it belongs to, along previousEventId (Parallel branches interleave)
    _owner: dict[int, str] = field(default_factory=dict)

    def poll(self) -> str:
        new = self._new_events()
        for event in new:
            self._show(event)
        self._show_progress()
        return str(self.sfn.describe_execution(executionArn=self.execution_arn)["status"])

    def wait(self, interval: float = 0.1, timeout: float | None = None) -> dict[str, Any]:
        deadline = None if timeout is None else time.monotonic() + timeout
        while (status := self.poll()) not in TERMINAL:
            if deadline is not None and time.monotonic() > deadline:
                raise TimeoutError(f"{self.execution_arn} still {status} after {timeout} s")
            time.sleep(interval)
        for event in self._new_events():
            self._show(event)
        return dict(self.sfn.describe_execution(executionArn=self.execution_arn))

    def _new_events(self) -> list[dict[str, Any]]:
        events: list[dict[str, Any]] = []
        token = None
        while True:
            kwargs = {"executionArn": self.execution_arn, "maxResults": 1000}
            if token:
                kwargs["nextToken"] = token
            page = self.sfn.get_execution_history(**kwargs)
            events += page["events"]
            token = page.get("nextToken")
            if not token:
                break
        new = events[len(self.events) :]
        self.events = events
        return new

    def _owner_of(self, event: dict[str, Any]) -> str:
        """The state a Task* event belongs to: its chain of previous events leads to the
        state's entry (in a Parallel state the branches' events interleave)."""
        owner = self._owner.get(event.get("previousEventId", -1), self._current)
        if "id" in event:
            self._owner[event["id"]] = owner
        return owner

    def _show(self, event: dict[str, Any]) -> None:
        kind = event["type"]
        now = event["timestamp"].timestamp()
        if kind.endswith("StateEntered"):
            name = event["stateEnteredEventDetails"]["name"]
            self._open[name] = _OpenState(name, now)
            self._current = name
            if "id" in event:
                self._owner[event["id"]] = name
            return
        owner = self._owner_of(event)
        if kind.endswith("StateExited"):
            name = event["stateExitedEventDetails"]["name"]
            state = self._open.pop(name, None)
            took = now - state.started if state else 0.0
            if name in self._failed:
                self.echo(f"  ✘ {name:<28} {took:7.1f} s  (failed; handled by its Catch)")
            else:
                self.echo(f"  ✔ {name:<28} {took:7.1f} s")
        elif kind == "TaskSucceeded":
            self._failed.discard(owner)
        elif kind == "TaskScheduled":
            self._note_job(owner, event["taskScheduledEventDetails"])
        elif kind in ("TaskFailed", "TaskTimedOut", "LambdaFunctionFailed"):
            details = next(v for k, v in event.items() if k.endswith("EventDetails"))
            name = owner or "?"
            self._failed.add(name)
            # The error's name only: its cause is printed once, in the summary below.
            self.echo(f"  ✘ {name:<28} {details.get('error', '')}")
        elif kind == "FailStateEntered":
            pass
        elif kind == "ExecutionFailed":
            details = event["executionFailedEventDetails"]
            self.echo(f"  ✘ failed: {details.get('error')}")

    def _note_job(self, name: str, details: dict[str, Any]) -> None:
        if name not in self._open:
            return
        try:
            parameters = json.loads(details.get("parameters", "{}"))
        except ValueError:
            return
        package = _awaited_package(details, parameters)
        if package:
            self.echo(
                f"  ⏸ {name:<28} {package} waits for a decision: "
                f"`sfn-mlops models approve {package}` (or reject) resumes the run"
            )
        for key, method in _JOB_NAME_KEYS.items():
            if key in parameters:
                self._open[name].job = (method, key, parameters[key])  # type: ignore[index]
                self.echo(f"  ▸ {name:<28} {_JOB_LABELS[key]} {parameters[key]}")

    def _show_progress(self) -> None:
        now = time.time()
        for state in self._open.values():
            if (
                state.job is None
                or now - max(state.started, state.last_progress) < self.progress_every
            ):
                continue
            state.last_progress = now
            method, key, job_name = state.job
            try:
                job = getattr(self.sagemaker, method)(**{key: job_name})
            except Exception:  # progress is best effort; the history is the source of truth
                continue
            status = job.get("SecondaryStatus") or job.get(key.replace("Name", "Status"), "")
            status += tuning_progress(job)
            self.echo(f"    … {state.name}: {status}, {now - state.started:.0f} s")
