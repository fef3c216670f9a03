"""UpdateEndpoint's DeploymentConfig as SageMaker carries it out: a plain, testable state machine.

A deployment moves an endpoint's traffic from the old fleet (blue) to the new one (green):

- **blue/green** (``BlueGreenUpdatePolicy``, and the default when there is no DeploymentConfig):
  the green fleet's models are loaded with no traffic, then traffic moves ``ALL_AT_ONCE``, in two
  steps (``CANARY``: the canary share, a wait of ``WaitIntervalInSeconds``, the rest) or in equal
  steps (``LINEAR``: ``LinearStepSize`` per step, a wait after each), and after the last step the
  blue fleet keeps running for ``TerminationWaitInSeconds`` (the bake) before it is stopped;
- **rolling** (``RollingUpdatePolicy``): batches of ``MaximumBatchSize`` of the capacity move, a
  wait of ``WaitIntervalInSeconds`` after each; a rollback moves back in batches of
  ``RollbackMaximumBatchSize`` (all at once when it is absent or 100%).

While traffic moves and during every wait, any alarm of ``AutoRollbackConfiguration`` in state
``ALARM`` rolls all traffic back to the old fleet, which never stopped serving; so does passing
``MaximumExecutionTimeoutInSeconds``. A green model that cannot load fails the deployment before
any traffic moves. The clock, the sleeper, the host and the alarm reader are injected, so tests
run the schedule in virtual time; waits are the configured seconds times ``time_scale``.
"""

from __future__ import annotations

import math
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from typing import Any, Protocol

from sfn_mlops.local.errors import validation

#: Seconds between two alarm checks while a step waits (before the time scale).
ALARM_POLL_SECONDS = 1.0

SUCCEEDED = "Succeeded"
ROLLED_BACK = "RolledBack"
FAILED = "Failed"  # the green fleet never took traffic (a model did not load)


class Host(Protocol):
    """The endpoint data plane (``sfn_mlops.local.endpoints.EndpointHosts``), as used here."""

    def serve(self, endpoint_name: str, fleets: list[tuple[Any, float]], capture: Any) -> int: ...


class Cancelled(Exception):
    """The deployment was stopped from outside (DeleteEndpoint, the service stopping)."""


@dataclass(frozen=True)
class Step:
    """Traffic on the green fleet after this step, and the monitored wait that follows it."""

    green_share: float
    wait_seconds: float
    status: str  # the green variants' VariantStatus while the step waits: ActivatingTraffic/Baking
    message: str


@dataclass(frozen=True)
class Plan:
    strategy: str  # ALL_AT_ONCE | CANARY | LINEAR | ROLLING
    steps: tuple[Step, ...]
    alarms: tuple[str, ...]
    timeout_seconds: float | None
    rollback_steps: tuple[float, ...]  # green shares while rolling back, ending at 0.0


@dataclass
class Progress:
    """What DescribeEndpoint shows of a deployment in progress."""

    green_share: float = 0.0
    status: str = "Creating"
    message: str = ""
    started: float = 0.0  # clock time this status began
    history: list[tuple[float, str]] = field(default_factory=list)  # (green share, status)


@dataclass(frozen=True)
class Outcome:
    result: str  # SUCCEEDED | ROLLED_BACK | FAILED
    failure_reason: str | None = None


# planning -----------------------------------------------------------------------------------
def _share(size: dict[str, Any], capacity: int) -> float:
    """A CapacitySize as a share of the fleet's capacity."""
    value = float(size["Value"])
    if size["Type"] == "INSTANCE_COUNT":
        return min(1.0, value / capacity)
    return min(1.0, value / 100.0)


def _check_size(size: dict[str, Any], capacity: int, member: str, low: float, high: float) -> None:
    share = float(size["Value"]) / (capacity if size["Type"] == "INSTANCE_COUNT" else 100.0)
    if not low - 1e-9 <= share <= high + 1e-9:
        raise validation(
            f"{member} {size['Type']} {size['Value']} must be between {low:.0%} and {high:.0%} "
            f"of the variant's total instance count ({capacity})"
        )


def _ramp(step: float) -> list[float]:
    count = math.ceil(round(1.0 / step, 9))
    return [min(1.0, step * index) for index in range(1, count + 1)]


def _instances(share: float, capacity: int) -> int:
    return max(1, math.ceil(round(share * capacity, 9))) if share > 0 else 0


def _blue_green(policy: dict[str, Any], capacity: int) -> tuple[str, list[Step]]:
    routing = policy.get("TrafficRoutingConfiguration") or {"Type": "ALL_AT_ONCE"}
    kind = routing["Type"]
    wait = float(routing.get("WaitIntervalInSeconds", 0))
    if kind == "CANARY":
        size = routing.get("CanarySize")
        if size is None:
            raise validation("CanarySize is required when TrafficRoutingConfiguration is CANARY")
        _check_size(size, capacity, "CanarySize", 0.0, 0.5)
        canary = _share(size, capacity)
        message = (
            f"Baking for {wait:g} seconds (WaitIntervalInSeconds) with traffic enabled on canary "
            f"capacity of {_instances(canary, capacity)} instance(s) ({canary:.0%} of traffic)."
        )
        shares = [(canary, wait, message)]
    elif kind == "LINEAR":
        size = routing.get("LinearStepSize")
        if size is None:
            raise validation(
                "LinearStepSize is required when TrafficRoutingConfiguration is LINEAR"
            )
        _check_size(size, capacity, "LinearStepSize", 0.1, 0.5)
        shares = [
            (
                share,
                wait,
                f"Baking for {wait:g} seconds (WaitIntervalInSeconds) with traffic enabled on "
                f"{_instances(share, capacity)} instance(s) ({share:.0%} of traffic).",
            )
            for share in _ramp(_share(size, capacity))[:-1]
        ]
    else:
        shares = []
    steps = [Step(share, seconds, "Baking", text) for share, seconds, text in shares]
    bake = float(policy.get("TerminationWaitInSeconds", 0))
    steps.append(
        Step(
            1.0,
            bake,
            "Baking",
            f"Baking for {bake:g} seconds (TerminationWaitInSeconds) with traffic enabled on "
            f"full capacity of {capacity} instance(s).",
        )
    )
    return kind, steps


def _rolling(policy: dict[str, Any], capacity: int) -> tuple[list[Step], list[float]]:
    _check_size(policy["MaximumBatchSize"], capacity, "MaximumBatchSize", 0.05, 0.5)
    wait = float(policy.get("WaitIntervalInSeconds", 0))
    steps = [
        Step(
            share,
            wait,
            "Baking",
            f"Baking for {wait:g} seconds (WaitIntervalInSeconds) with traffic enabled on "
            f"{_instances(share, capacity)} of {capacity} instance(s) of the new fleet.",
        )
        for share in _ramp(_share(policy["MaximumBatchSize"], capacity))
    ]
    back = policy.get("RollbackMaximumBatchSize")
    rollback = [0.0] if back is None else [1.0 - s for s in _ramp(_share(back, capacity))]
    return steps, rollback


def plan(config: dict[str, Any] | None, capacity: int) -> Plan:
    """The schedule for a DeploymentConfig (None: blue/green, all at once, no bake).

    ``capacity`` is the new fleet's instance count (the sum over its variants).
    """
    config = config or {}
    if config.get("BlueGreenUpdatePolicy") and config.get("RollingUpdatePolicy"):
        raise validation(
            "Only one update policy may be given in DeploymentConfig: BlueGreenUpdatePolicy "
            "or RollingUpdatePolicy"
        )
    alarms = tuple(
        alarm["AlarmName"]
        for alarm in (config.get("AutoRollbackConfiguration") or {}).get("Alarms", [])
    )
    rolling = config.get("RollingUpdatePolicy")
    if rolling is not None:
        steps, rollback = _rolling(rolling, capacity)
        timeout = rolling.get("MaximumExecutionTimeoutInSeconds")
        return Plan("ROLLING", tuple(steps), alarms, timeout, tuple(rollback))
    policy = config.get("BlueGreenUpdatePolicy") or {}
    kind, blue_green = _blue_green(policy, capacity)
    timeout = policy.get("MaximumExecutionTimeoutInSeconds")
    if timeout is not None:
        waits = sum(step.wait_seconds for step in blue_green)
        if timeout <= waits:
            raise validation(
                f"MaximumExecutionTimeoutInSeconds ({timeout}) must be larger than the total "
                f"waiting time of TerminationWaitInSeconds and WaitIntervalInSeconds ({waits:g})"
            )
    return Plan(kind, tuple(blue_green), alarms, timeout, (0.0,))


# running --------------------------------------------------------------------------------------
class Deployment:
    """One UpdateEndpoint: run() moves traffic step by step and says how it ended."""

    def __init__(
        self,
        *,
        endpoint_name: str,
        old_fleet: Any,
        new_fleet: Any,
        capture: Any,
        plan: Plan,
        host: Host,
        alarms_in_alarm: Callable[[Sequence[str]], list[str]],
        clock: Callable[[], float],
        sleep: Callable[[float], object],
        time_scale: float = 1.0,
        on_progress: Callable[[Progress], None] | None = None,
        cancelled: Callable[[], bool] = lambda: False,
        load_error: type[Exception] = Exception,
    ) -> None:
        self.endpoint_name = endpoint_name
        self.old_fleet = old_fleet
        self.new_fleet = new_fleet
        self.capture = capture
        self.plan = plan
        self.host = host
        self.alarms_in_alarm = alarms_in_alarm
        self.clock = clock
        self.sleep = sleep
        self.time_scale = time_scale
        self.on_progress = on_progress or (lambda _: None)
        self.cancelled = cancelled
        self.load_error = load_error
        self.progress = Progress()
        self._started = 0.0

    def run(self) -> Outcome:
        self._started = self.clock()
        self._report(0.0, "Creating", "Launching the new fleet: loading its models.")
        try:
            self._route(0.0)  # load the green models before any traffic moves
        except self.load_error as err:
            return Outcome(FAILED, f"The new endpoint configuration could not be deployed: {err}")
        for step in self.plan.steps:
            self._report(step.green_share, "ActivatingTraffic", _activating(step))
            self._route(step.green_share)
            self._report(step.green_share, step.status, step.message)
            reason = self._watch(step.wait_seconds)
            if reason is not None:
                self._roll_back(step.green_share)
                return Outcome(ROLLED_BACK, reason)
        self.host.serve(self.endpoint_name, [(self.new_fleet, 1.0)], self.capture)
        self._report(1.0, "Deleting", "Terminating the old fleet.")
        return Outcome(SUCCEEDED)

    def _route(self, green: float) -> None:
        self._check_cancelled()
        fleets = [(self.old_fleet, 1.0 - green), (self.new_fleet, green)]
        self.host.serve(self.endpoint_name, fleets, self.capture)

    def _watch(self, seconds: float) -> str | None:
        """Wait ``seconds`` (scaled), checking the alarms and the timeout; why to roll back."""
        deadline = self.clock() + seconds * self.time_scale
        while True:
            reason = self._rollback_reason()
            if reason is not None:
                return reason
            left = deadline - self.clock()
            if left <= 0:
                return None
            self.sleep(min(left, max(ALARM_POLL_SECONDS * self.time_scale, 1e-3)))

    def _rollback_reason(self) -> str | None:
        self._check_cancelled()
        if self.plan.alarms:
            firing = self.alarms_in_alarm(self.plan.alarms)
            if firing:
                return (
                    "Deployment was rolled back because the CloudWatch alarm(s) "
                    f"{', '.join(firing)} in AutoRollbackConfiguration went to ALARM."
                )
        timeout = self.plan.timeout_seconds
        if timeout is not None and self.clock() - self._started > timeout * self.time_scale:
            return (
                f"Deployment was rolled back because it did not finish within "
                f"MaximumExecutionTimeoutInSeconds ({timeout:g} s)."
            )
        return None

    def _roll_back(self, green: float) -> None:
        for share in self.plan.rollback_steps:
            if share < green:
                self._report(share, "ActivatingTraffic", "Rolling back to the old fleet.")
                self.host.serve(
                    self.endpoint_name,
                    [(self.old_fleet, 1.0 - share), (self.new_fleet, share)],
                    self.capture,
                )
        self.host.serve(self.endpoint_name, [(self.old_fleet, 1.0)], self.capture)
        self._report(0.0, "Deleting", "Rolled back: terminating the new fleet.")

    def _report(self, share: float, status: str, message: str) -> None:
        now = self.clock()
        self.progress.green_share = share
        self.progress.status = status
        self.progress.message = message
        self.progress.started = now
        self.progress.history.append((share, status))
        self.on_progress(self.progress)

    def _check_cancelled(self) -> None:
        if self.cancelled():
            raise Cancelled(self.endpoint_name)


def _activating(step: Step) -> str:
    return f"Activating traffic on the new fleet: {step.green_share:.0%} of traffic."
