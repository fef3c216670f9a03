"""CollectData's window: where recent data starts, from the config and the production model."""

from __future__ import annotations

import datetime as dt
from collections.abc import Callable
from types import ModuleType
from typing import Any

import pytest

NOW = dt.datetime(2026, 12, 7, 12, 0, tzinfo=dt.UTC)
PREVIOUS = {"collected_at": "2026-12-01T08:00:00.000000Z"}


@pytest.fixture
def collect(load_lambda: Callable[..., list[ModuleType]]) -> ModuleType:
    (module,) = load_lambda("collect_data", "collect")
    return module


@pytest.mark.parametrize(
    ("text", "expected"),
    [("14d", dt.timedelta(days=14)), ("36h", dt.timedelta(hours=36)),
     ("90m", dt.timedelta(minutes=90)), ("P2DT3H", dt.timedelta(days=2, hours=3)),
     ("PT45M", dt.timedelta(minutes=45))],
)  # fmt: skip
def test_durations(collect: Any, text: str, expected: dt.timedelta) -> None:
    assert collect.duration(text) == expected


def test_a_duration_that_is_none_is_named(collect: Any) -> None:
    with pytest.raises(collect.CollectError, match="'P' is not a duration"):
        collect.duration("P")


def test_recent_starts_when_the_production_models_data_was_collected(collect: Any) -> None:
    window = collect.window_for(collect.DEFAULTS, PREVIOUS, NOW)
    assert window.since == dt.datetime(2026, 12, 1, 8, 0, tzinfo=dt.UTC) and window.rows is None


def test_a_configured_window_wins(collect: Any) -> None:
    by_time = collect.window_for({"window": "2d"}, PREVIOUS, NOW)
    assert by_time.since == NOW - dt.timedelta(days=2)
    by_rows = collect.window_for({"window": 500}, PREVIOUS, NOW)
    assert (by_rows.since, by_rows.rows) == (None, 500)


def test_without_a_known_production_model_everything_is_recent(collect: Any) -> None:
    window = collect.window_for(collect.DEFAULTS, None, NOW)
    assert (window.since, window.rows) == (None, None)
    item = {"uri": "s3://b/d/a.csv", "etag": "x", "last_modified": "2020-01-01T00:00:00Z"}
    assert collect._source_is_recent(item, set(), window, has_previous=False) is True


def test_a_source_file_is_recent_when_its_content_is_new(collect: Any) -> None:
    """By ETag, not by key: the CLI stages the same file under each run's own prefix."""
    window = collect.window_for(collect.DEFAULTS, PREVIOUS, NOW)
    item = {"uri": "s3://b/datasets/run-2/a.csv", "etag": "x",
            "last_modified": "2026-12-05T00:00:00Z"}  # fmt: skip
    assert collect._source_is_recent(item, {"x"}, window, True) is False
    assert collect._source_is_recent(item, {"y"}, window, True) is True
    assert collect._source_is_recent(item, set(), window, True) is True


def test_older_rows_are_left_out_after_a_model_quality_alarm(collect: Any) -> None:
    """The labels changed: older rows would teach the old world. Other runs keep a fifth."""
    assert collect.older_share_for({"alarm": "sfn-mlops-model-quality"}) == 0.0
    assert collect.older_share_for({"alarm": "sfn-mlops-drift-length"}) == 0.2
    assert collect.older_share_for(None) == 0.2


def test_a_capture_file_is_the_endpoints_in_either_layout(load_lambda: Any) -> None:
    """Each deployment captures under its endpoint config's name; earlier ones did not."""
    (capture_join,) = load_lambda("collect_data", "capture_join")
    root, hour = "data-capture/", "AllTraffic/2026/12/07/23/a.jsonl"
    assert capture_join.of_endpoint(f"{root}ep/{hour}", root, "ep")
    assert capture_join.of_endpoint(f"{root}r1-config/ep/{hour}", root, "ep")
    assert not capture_join.of_endpoint(f"{root}r1-config/other/{hour}", root, "ep")
    assert not capture_join.of_endpoint(f"{root}other/{hour}", root, "ep")
    assert not capture_join.of_endpoint(f"{root}ep/x.jsonl", root, "ep")
