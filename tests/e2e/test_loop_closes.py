"""The loop closes: `demo drift` from shifted traffic to the alarm back at OK, all seven steps.

The monitoring-loop module keeps a daily schedule, whose alarm holds a breach for 864 s at the
tests' time scale; here the schedule is hourly (its alarm window, two periods of 36 s each
here, outlasts the gap between two scheduled runs), so the breach leaves the window while the
test waits. Scheduled runs fire every 36 s beside the demo's own: before the retraining they
breach too (the alarm stays in ALARM, one episode, one retraining); after it they judge the
shifted traffic against the new baselines. One breaching period of the two holds the alarm
(datapoints_to_alarm 1), so it returns to OK only once no run breaches. Model quality is off:
the stale model's answers to shifted rows miss their labels too, and its alarm could start the
retraining before the drift alarm does (test_loop_closes_quality.py closes that loop).
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

import pytest
from loop_steps import closes_the_loop

pytestmark = pytest.mark.e2e


def test_shifted_traffic_ends_with_the_alarm_back_at_ok(
    cli: Any, workspace: Path, aws: Any
) -> None:
    retraining = closes_the_loop(
        cli, workspace, aws, "data", "--set", "monitoring.model_quality.enabled=false"
    )
    assert retraining.startswith("drift-")
