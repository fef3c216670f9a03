"""The loop closes for concept drift: `demo drift --mode quality` to the alarm back at OK.

As test_loop_closes.py, with model quality on (the default) and the data-quality schedule
judging unchanged traffic. It closes because each deployment captures under its own endpoint
config's name: after the retraining, Model Monitor reads the new config's destination, so no
run scores the stale model's predictions against the new labels again (before, the next
scheduled run did, breached, and held the alarm for another window).
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

import pytest
from loop_steps import closes_the_loop

pytestmark = pytest.mark.e2e


def test_falling_quality_ends_with_the_alarm_back_at_ok(
    cli: Any, workspace: Path, aws: Any
) -> None:
    retraining = closes_the_loop(cli, workspace, aws, "quality")
    assert retraining.startswith("quality-")
