"""The deployment state machine (sfn_mlops.local.deployments) in virtual time.

The clock, the sleeper, the host and the alarms are injected: every test asserts the exact
routing table the host was given and when.
"""

from __future__ import annotations

from collections.abc import Callable, Sequence
from typing import Any

import pytest

from sfn_mlops.local import deployments
from sfn_mlops.local.errors import AwsError

BLUE, GREEN = "blue", "green"


class Clock:
    def __init__(self) -> None:
        self.now = 0.0

    def __call__(self) -> float:
        return self.now

    def sleep(self, seconds: float) -> None:
        self.now += seconds


class LoadError(Exception):
    pass


class Host:
    """Records each routing table with the time it was set; ``load_seconds`` per call."""

    def __init__(self, clock: Clock, load_seconds: float = 0.0, fail: bool = False) -> None:
        self.clock = clock
        self.load_seconds = load_seconds
        self.fail = fail
        self.calls: list[tuple[float, list[tuple[str, float]]]] = []

    def serve(self, endpoint_name: str, fleets: list[tuple[Any, float]], capture: Any) -> int:
        self.clock.now += self.load_seconds
        if self.fail and any(fleet == GREEN for fleet, _ in fleets):
            raise LoadError("model.tar.gz has no model file")
        table = [(fleet, round(share, 6)) for fleet, share in fleets]
        self.calls.append((round(self.clock.now, 6), table))
        return 8080


def run(
    config: dict[str, Any] | None,
    *,
    capacity: int = 1,
    alarm_at: float | None = None,
    scale: float = 1.0,
    load_seconds: float = 0.0,
    fail: bool = False,
) -> tuple[deployments.Outcome, Host, list[deployments.Progress]]:
    clock = Clock()
    host = Host(clock, load_seconds, fail)

    def alarms(names: Sequence[str]) -> list[str]:
        return list(names) if alarm_at is not None and clock.now >= alarm_at - 1e-9 else []

    seen: list[deployments.Progress] = []
    snapshot: Callable[[deployments.Progress], None] = lambda p: seen.append(  # noqa: E731
        deployments.Progress(p.green_share, p.status, p.message, p.started)
    )
    deployment = deployments.Deployment(
        endpoint_name="ep",
        old_fleet=BLUE,
        new_fleet=GREEN,
        capture=None,
        plan=deployments.plan(config, capacity),
        host=host,
        alarms_in_alarm=alarms,
        clock=clock,
        sleep=clock.sleep,
        time_scale=scale,
        on_progress=snapshot,
        load_error=LoadError,
    )
    return deployment.run(), host, seen


def blue_green(routing: dict[str, Any], bake: int = 0, **extra: Any) -> dict[str, Any]:
    policy = {"TrafficRoutingConfiguration": routing, "TerminationWaitInSeconds": bake, **extra}
    return {
        "BlueGreenUpdatePolicy": policy,
        "AutoRollbackConfiguration": {"Alarms": [{"AlarmName": "errors"}]},
    }


def test_no_deployment_config_is_all_at_once_without_a_bake() -> None:
    outcome, host, _ = run(None)
    assert outcome == deployments.Outcome(deployments.SUCCEEDED)
    assert host.calls == [
        (0.0, [(BLUE, 1.0), (GREEN, 0.0)]),  # green models loaded before any traffic moves
        (0.0, [(BLUE, 0.0), (GREEN, 1.0)]),
        (0.0, [(GREEN, 1.0)]),  # blue terminated
    ]


def test_canary_shifts_the_canary_waits_then_shifts_the_rest_and_bakes() -> None:
    config = blue_green(
        {
            "Type": "CANARY",
            "CanarySize": {"Type": "CAPACITY_PERCENT", "Value": 10},
            "WaitIntervalInSeconds": 60,
        },
        bake=120,
    )
    outcome, host, progress = run(config)
    assert outcome.result == deployments.SUCCEEDED
    assert host.calls == [
        (0.0, [(BLUE, 1.0), (GREEN, 0.0)]),
        (0.0, [(BLUE, 0.9), (GREEN, 0.1)]),
        (60.0, [(BLUE, 0.0), (GREEN, 1.0)]),
        (180.0, [(GREEN, 1.0)]),
    ]
    baking = [p for p in progress if p.status == "Baking"]
    assert [(p.green_share, p.started) for p in baking] == [(0.1, 0.0), (1.0, 60.0)]
    assert "Baking for 120 seconds (TerminationWaitInSeconds)" in baking[-1].message


def test_canary_by_instance_count_is_a_share_of_the_capacity() -> None:
    config = blue_green(
        {
            "Type": "CANARY",
            "CanarySize": {"Type": "INSTANCE_COUNT", "Value": 1},
            "WaitIntervalInSeconds": 5,
        }
    )
    _, host, _ = run(config, capacity=4)
    assert host.calls[1] == (0.0, [(BLUE, 0.75), (GREEN, 0.25)])


def test_linear_moves_equal_steps_with_a_wait_after_each() -> None:
    config = blue_green(
        {
            "Type": "LINEAR",
            "LinearStepSize": {"Type": "CAPACITY_PERCENT", "Value": 25},
            "WaitIntervalInSeconds": 30,
        },
        bake=10,
    )
    outcome, host, _ = run(config)
    assert outcome.result == deployments.SUCCEEDED
    assert [(t, table[-1][1]) for t, table in host.calls] == [
        (0.0, 0.0),
        (0.0, 0.25),
        (30.0, 0.5),
        (60.0, 0.75),
        (90.0, 1.0),
        (100.0, 1.0),
    ]


def test_waits_are_scaled_by_the_time_scale() -> None:
    config = blue_green(
        {
            "Type": "CANARY",
            "CanarySize": {"Type": "CAPACITY_PERCENT", "Value": 20},
            "WaitIntervalInSeconds": 600,
        },
        bake=300,
    )
    _, host, _ = run(config, scale=0.01)
    assert [t for t, _ in host.calls] == [0.0, 0.0, 6.0, 9.0]


def test_alarm_during_the_shift_rolls_all_traffic_back_to_the_old_fleet() -> None:
    config = blue_green(
        {
            "Type": "CANARY",
            "CanarySize": {"Type": "CAPACITY_PERCENT", "Value": 10},
            "WaitIntervalInSeconds": 60,
        },
        bake=120,
    )
    outcome, host, _ = run(config, alarm_at=30)
    assert outcome.result == deployments.ROLLED_BACK
    assert outcome.failure_reason is not None and "errors" in outcome.failure_reason
    assert host.calls == [
        (0.0, [(BLUE, 1.0), (GREEN, 0.0)]),
        (0.0, [(BLUE, 0.9), (GREEN, 0.1)]),
        (30.0, [(BLUE, 1.0), (GREEN, 0.0)]),
        (30.0, [(BLUE, 1.0)]),  # green terminated; blue never stopped serving
    ]


def test_alarm_during_the_bake_rolls_back_after_the_full_shift() -> None:
    config = blue_green({"Type": "ALL_AT_ONCE", "WaitIntervalInSeconds": 0}, bake=100)
    outcome, host, _ = run(config, alarm_at=50)
    assert outcome.result == deployments.ROLLED_BACK
    assert host.calls[-3:] == [
        (0.0, [(BLUE, 0.0), (GREEN, 1.0)]),
        (50.0, [(BLUE, 1.0), (GREEN, 0.0)]),
        (50.0, [(BLUE, 1.0)]),
    ]


def test_an_alarm_already_in_alarm_stops_the_first_step() -> None:
    config = blue_green({"Type": "ALL_AT_ONCE", "WaitIntervalInSeconds": 0})
    outcome, host, _ = run(config, alarm_at=0)
    assert outcome.result == deployments.ROLLED_BACK
    assert host.calls[-1] == (0.0, [(BLUE, 1.0)])


def test_rolling_moves_batches_and_rolls_back_in_rollback_batches() -> None:
    config = {
        "RollingUpdatePolicy": {
            "MaximumBatchSize": {"Type": "INSTANCE_COUNT", "Value": 1},
            "WaitIntervalInSeconds": 10,
            "RollbackMaximumBatchSize": {"Type": "INSTANCE_COUNT", "Value": 2},
        },
        "AutoRollbackConfiguration": {"Alarms": [{"AlarmName": "latency"}]},
    }
    outcome, host, _ = run(config, capacity=4)
    assert outcome.result == deployments.SUCCEEDED
    assert [(t, table[-1][1]) for t, table in host.calls] == [
        (0.0, 0.0),
        (0.0, 0.25),
        (10.0, 0.5),
        (20.0, 0.75),
        (30.0, 1.0),
        (40.0, 1.0),
    ]
    outcome, host, _ = run(config, capacity=4, alarm_at=25)
    assert outcome.result == deployments.ROLLED_BACK
    assert [(t, table) for t, table in host.calls[-3:]] == [
        (25.0, [(BLUE, 0.5), (GREEN, 0.5)]),
        (25.0, [(BLUE, 1.0), (GREEN, 0.0)]),
        (25.0, [(BLUE, 1.0)]),
    ]


def test_maximum_execution_timeout_rolls_back() -> None:
    config = blue_green(
        {
            "Type": "CANARY",
            "CanarySize": {"Type": "CAPACITY_PERCENT", "Value": 10},
            "WaitIntervalInSeconds": 600,
        },
        MaximumExecutionTimeoutInSeconds=650,
    )
    outcome, host, _ = run(config, load_seconds=30)  # every routing change takes 30 s
    assert outcome.result == deployments.ROLLED_BACK
    assert "MaximumExecutionTimeoutInSeconds (650 s)" in str(outcome.failure_reason)
    rolled_back_at = host.calls[-2][0] - 30
    assert rolled_back_at == pytest.approx(651, abs=1.0)


def test_a_green_model_that_cannot_load_fails_before_traffic_moves() -> None:
    outcome, host, _ = run(None, fail=True)
    assert outcome.result == deployments.FAILED
    assert "model.tar.gz has no model file" in str(outcome.failure_reason)
    assert host.calls == []  # the old routing was never replaced


@pytest.mark.parametrize(
    ("config", "capacity", "words"),
    [
        (
            blue_green(
                {
                    "Type": "CANARY",
                    "CanarySize": {"Type": "INSTANCE_COUNT", "Value": 1},
                    "WaitIntervalInSeconds": 1,
                }
            ),
            1,
            "CanarySize INSTANCE_COUNT 1 must be between 0% and 50%",
        ),
        (
            blue_green(
                {
                    "Type": "LINEAR",
                    "LinearStepSize": {"Type": "CAPACITY_PERCENT", "Value": 5},
                    "WaitIntervalInSeconds": 1,
                }
            ),
            1,
            "LinearStepSize CAPACITY_PERCENT 5 must be between 10% and 50%",
        ),
        (
            blue_green({"Type": "CANARY", "WaitIntervalInSeconds": 1}),
            1,
            "CanarySize is required",
        ),
        (
            blue_green(
                {"Type": "ALL_AT_ONCE", "WaitIntervalInSeconds": 0},
                bake=700,
                MaximumExecutionTimeoutInSeconds=600,
            ),
            1,
            "must be larger than the total waiting time",
        ),
        (
            {
                "BlueGreenUpdatePolicy": {
                    "TrafficRoutingConfiguration": {
                        "Type": "ALL_AT_ONCE",
                        "WaitIntervalInSeconds": 0,
                    }
                },
                "RollingUpdatePolicy": {
                    "MaximumBatchSize": {"Type": "CAPACITY_PERCENT", "Value": 10},
                    "WaitIntervalInSeconds": 0,
                },
            },
            1,
            "Only one update policy",
        ),
        (
            {
                "RollingUpdatePolicy": {
                    "MaximumBatchSize": {"Type": "CAPACITY_PERCENT", "Value": 60},
                    "WaitIntervalInSeconds": 0,
                }
            },
            1,
            "MaximumBatchSize CAPACITY_PERCENT 60 must be between 5% and 50%",
        ),
    ],
)
def test_plan_rejects_what_sagemaker_rejects(
    config: dict[str, Any], capacity: int, words: str
) -> None:
    with pytest.raises(AwsError) as caught:
        deployments.plan(config, capacity)
    assert caught.value.code == "ValidationException"
    assert words in caught.value.message


def test_a_cancelled_deployment_stops_where_it_is() -> None:
    clock = Clock()
    host = Host(clock)
    deployment = deployments.Deployment(
        endpoint_name="ep",
        old_fleet=BLUE,
        new_fleet=GREEN,
        capture=None,
        plan=deployments.plan(None, 1),
        host=host,
        alarms_in_alarm=lambda names: [],
        clock=clock,
        sleep=clock.sleep,
        cancelled=lambda: len(host.calls) >= 1,
    )
    with pytest.raises(deployments.Cancelled):
        deployment.run()
    assert host.calls == [(0.0, [(BLUE, 1.0), (GREEN, 0.0)])]
