"""Prune's pure parts: durations, which finished executions keep/older_than select."""

from __future__ import annotations

import pytest

from sfn_mlops.local import prune


@pytest.mark.parametrize(
    ("text", "seconds"),
    [("90s", 90), ("30m", 1800), ("12h", 43200), ("7d", 604800), ("2w", 1209600), ("1.5h", 5400)],
)
def test_durations(text: str, seconds: float) -> None:
    assert prune.parse_duration(text) == seconds


@pytest.mark.parametrize("text", ["7", "d", "7 days", "-1d", "7y", ""])
def test_bad_durations_say_what_is_expected(text: str) -> None:
    with pytest.raises(prune.PruneError, match="e.g. 7d, 12h"):
        prune.parse_duration(text)


def _execution(name: str, status: str, started: float, stopped: float | None) -> prune.Execution:
    return prune.Execution(f"arn:{name}", name, status, started, stopped)


NEWEST_FIRST = [
    _execution("running", "RUNNING", 400, None),
    _execution("d", "SUCCEEDED", 300, 310),
    _execution("c", "FAILED", 200, 290),
    _execution("b", "ABORTED", 100, 150),
    _execution("a", "SUCCEEDED", 0, 50),
]


@pytest.mark.parametrize(
    ("keep", "older_than", "selected"),
    [
        (0, None, ["d", "c", "b", "a"]),
        (2, None, ["b", "a"]),
        (9, None, []),
        (None, 100, ["c", "b", "a"]),  # stopped at or before 400 - 100 = 300
        (None, 0, ["d", "c", "b", "a"]),
        (3, 300, ["a"]),  # both: outside the 3 newest and stopped by 100
    ],
)
def test_selection(keep: int | None, older_than: float | None, selected: list[str]) -> None:
    chosen = prune._selected(NEWEST_FIRST, keep, older_than, now=400)
    assert [e.name for e in chosen] == selected


def test_an_input_prefix_covers_keys_not_folders() -> None:
    assert prune._covers("s3://b/runs/r", "s3://b/runs/r-2/")  # S3Prefix matches keys
    assert prune._covers("s3://b", "s3://b/runs/r/")
    assert not prune._covers("s3://b", "s3://bb/runs/r/")
    assert not prune._covers("s3://b/runs/r/x", "s3://b/runs/r/")
    assert prune._under("s3://b/runs/r/x", "s3://b/runs/r/")
    assert prune._under("s3://b/runs/r", "s3://b/runs/r/")
    assert not prune._under("s3://b/runs/r-2/x", "s3://b/runs/r/")
