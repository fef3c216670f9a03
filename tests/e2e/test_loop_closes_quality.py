"""The loop closes for concept drift: `demo drift --mode quality` to the alarm back at OK.

As test_loop_closes.py, with model quality on (the default) and the data-quality schedule
judging unchanged traffic. It closes because each deployment captures under its own endpoint
config's name: after the retraining, Model Monitor reads the new config's destination, so no
run scores the stale model's predictions against the new labels again (before, the next
scheduled run did, breached, and held the alarm for another window).
"""

from __future__ import annotations

import re
from pathlib import Path
from typing import Any

import pytest
from loop_steps import assert_timeline

from sfn_mlops.loop_timeline import RETRAINING_PREFIXES

pytestmark = pytest.mark.e2e


def test_falling_quality_ends_with_the_alarm_back_at_ok(
    cli: Any, workspace: Path, aws: Any
) -> None:
    first = cli(
        workspace, "run", "--name", "first", "--set", "clarify.enabled=false",
        "--set", "deployment.strategy=canary",
        "--set", "monitoring.evaluation_periods=2", "--set", "monitoring.datapoints_to_alarm=1",
    )  # fmt: skip
    assert first.code == 0, first.out + first.err
    result = cli(workspace, "demo", "drift", "--mode", "quality", "--ok-timeout", "240")
    assert result.code == 0, result.out + result.err
    found = re.search(r"Retraining started by the alarm: (\S+)", result.out)
    assert found, result.out
    retraining = found[1]
    assert retraining.startswith("quality-")
    assert_timeline(result.out, retraining, "sfn-mlops-model-quality", back_to_ok=True)
    assert re.search(r"\[7/7\] \d\d:\d\d:\d\d  the alarms? returned to OK$", result.out, re.M)
    retrainings = [name for name in aws.execution_names() if name.startswith(RETRAINING_PREFIXES)]
    assert retrainings == [retraining], retrainings
