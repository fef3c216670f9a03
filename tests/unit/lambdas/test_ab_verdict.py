"""The A/B test's decision (lambdas/ab_test/verdict.py): looks, alpha split, timeouts, issues."""

from __future__ import annotations

from collections.abc import Callable
from datetime import UTC, datetime, timedelta
from types import ModuleType
from typing import Any

import pytest

STARTED = datetime(2026, 12, 7, 12, 0, tzinfo=UTC)
SETTINGS = {
    "min_samples": 100,
    "alpha": 0.05,
    "max_looks": 5,
    "max_duration_hours": 24.0,
    "on_timeout": "keep_champion",
    "step_percent": 25,
    "max_error_rate_increase": 0.01,
}


@pytest.fixture
def verdict(load_lambda: Callable[..., list[ModuleType]]) -> ModuleType:
    (module,) = load_lambda("ab_test", "verdict")
    return module


def _errors(n: int, level: float, spread: float = 0.5) -> list[float]:
    """n absolute errors around ``level`` (a fixed pattern: no randomness)."""
    return [level + spread * ((i % 7) - 3) / 3 for i in range(n)]


def _decide(verdict: ModuleType, champion: list[float], challenger: list[float], *,
            hours: float = 1.0, looks_done: int = 0, problem: str = "regression",
            **settings: Any) -> Any:  # fmt: skip
    return verdict.decide(
        problem,
        SETTINGS | settings,
        verdict.VariantTally("Champion", "m1", 0.9, champion, invocations=1000),
        verdict.VariantTally("Challenger", "m2", 0.1, challenger, invocations=1000),
        started=STARTED,
        now=STARTED + timedelta(hours=hours),
        looks_done=looks_done,
    )


def test_no_look_before_min_samples(verdict: ModuleType) -> None:
    result = _decide(verdict, _errors(500, 2.0), _errors(99, 1.0))
    assert result.action == "wait"
    assert result.look == 0
    assert result.next_step == "look 1 of 5 when both variants have 100 labelled requests"


def test_a_better_challenger_wins_at_the_first_look(verdict: ModuleType) -> None:
    result = _decide(verdict, _errors(100, 2.0), _errors(100, 1.5))
    assert result.action == "promote"
    assert result.look == 1
    assert result.test.name == "Welch's t-test"
    assert result.test.p_value < 0.05 / 5
    assert result.reason == (
        "look 1 of 5: the challenger is better: mae 1.492 challenger against 1.992 champion "
        "n 100/100 Welch's t-test p 9.26e-21 below 0.01"
    )


def test_a_worse_challenger_is_retired(verdict: ModuleType) -> None:
    result = _decide(verdict, _errors(120, 1.5), _errors(130, 2.0))
    assert (result.action, result.look) == ("retire", 1)
    assert "the challenger is worse" in result.reason


def test_each_look_tests_at_alpha_over_the_planned_looks(verdict: ModuleType) -> None:
    """A difference significant at alpha but not at alpha / max_looks is no verdict."""
    champion, challenger = _errors(100, 2.0), _errors(100, 1.89)
    p = verdict.compare("regression", *(
        verdict.VariantTally(n, "m", 0.5, o) for n, o in (("a", champion), ("b", challenger))
    )).p_value  # fmt: skip
    assert 0.01 < p < 0.05
    assert _decide(verdict, champion, challenger).action == "wait"
    assert _decide(verdict, champion, challenger, max_looks=1).action == "promote"


def test_between_looks_nothing_is_tested(verdict: ModuleType) -> None:
    """Look 1 was made at n 100; at n 150 the clear difference waits for look 2 (n 200)."""
    result = _decide(verdict, _errors(150, 2.0), _errors(150, 1.0), looks_done=1)
    assert (result.action, result.look) == ("wait", 1)
    assert result.next_step == "look 2 of 5 when both variants have 200 labelled requests"
    assert _decide(verdict, _errors(200, 2.0), _errors(200, 1.0), looks_done=1).look == 2


def test_all_looks_spent_without_a_verdict_keeps_the_champion(verdict: ModuleType) -> None:
    same = _errors(500, 2.0)
    result = _decide(verdict, same, list(same), looks_done=4)
    assert (result.action, result.look) == ("retire", 5)
    assert result.reason.startswith("all 5 planned looks made without a verdict")
    assert result.reason.endswith("on_timeout keeps the champion")


def test_running_out_of_time_ends_as_configured(verdict: ModuleType) -> None:
    same = _errors(150, 2.0)
    kept = _decide(verdict, same, list(same), hours=24.0, looks_done=1)
    assert kept.action == "retire"
    assert kept.reason.startswith("ran out of time after 24 h of 24 without a verdict")
    promoted = _decide(
        verdict, same, list(same), hours=30.0, looks_done=1, on_timeout="promote_challenger"
    )
    assert promoted.action == "promote"
    assert promoted.reason.endswith("on_timeout promotes the challenger")
    assert _decide(verdict, same, list(same), hours=23.9, looks_done=1).action == "wait"


def test_a_challenger_with_server_errors_is_retired_first(verdict: ModuleType) -> None:
    result = verdict.decide(
        "regression",
        SETTINGS,
        verdict.VariantTally("Champion", "m1", 0.9, _errors(100, 2.0), 1000, 1),
        verdict.VariantTally("Challenger", "m2", 0.1, _errors(100, 1.0), 100, 3),
        started=STARTED,
        now=STARTED,
        looks_done=0,
    )
    assert result.action == "retire"
    assert result.reason == (
        "the challenger's server error rate 3.00% exceeds the champion's 0.10% by more than 1.00%"
    )


@pytest.mark.parametrize("problem", ["binary", "multiclass"])
def test_classification_compares_accuracy(verdict: ModuleType, problem: str) -> None:
    champion = [1.0] * 130 + [0.0] * 70  # accuracy 0.65
    challenger = [1.0] * 170 + [0.0] * 30  # 0.85
    result = _decide(verdict, champion, challenger, problem=problem)
    assert result.action == "promote"
    assert result.test.name == "two-proportion z-test"
    assert "accuracy 0.85 challenger against 0.65 champion" in result.reason
    assert _decide(verdict, challenger, champion, problem=problem).action == "retire"
