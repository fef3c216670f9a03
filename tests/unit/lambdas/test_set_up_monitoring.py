"""SetUpMonitoring's model-quality job definition: the window of captures it scores."""

from __future__ import annotations

from collections.abc import Callable
from types import ModuleType
from typing import Any

import pytest


@pytest.mark.parametrize(
    ("offsets", "window"),
    [
        ({}, {}),  # the last hour, Model Monitor's default
        (
            {"start_time_offset": "-P8D", "end_time_offset": "-P1D"},
            {"StartTimeOffset": "-P8D", "EndTimeOffset": "-P1D"},
        ),
    ],
)
def test_late_ground_truth_widens_the_window(
    load_lambda: Callable[..., list[ModuleType]], offsets: dict[str, str], window: dict[str, Any]
) -> None:
    (monitoring,) = load_lambda("set_up_monitoring", "monitoring")
    quality = {"start_time_offset": None, "end_time_offset": None, **offsets}
    assert monitoring._window(quality) == window
