"""The decision of an A/B test: plain data in, a verdict out (no AWS, no clock of its own).

Looks are planned by sample size, not by the clock: look k happens when both variants have
``k * min_samples`` labelled requests (k = 1 .. ``max_looks``); the scheduled evaluations in
between only report. Each look tests at ``alpha / max_looks``: by Bonferroni's inequality the
chance that any of the planned looks gives a verdict when the variants are equally good is at
most ``alpha``, however the looks fall (a look skipped because the data passed two milestones
between two evaluations only makes the test more cautious). When all planned looks are spent,
or ``max_duration_hours`` has passed, without a verdict, the test ends as ``on_timeout`` says.

Before quality, issues: a challenger whose share of server errors (Invocation5XXErrors per
Invocation) exceeds the champion's by more than ``max_error_rate_increase`` is retired at once.
"""

from __future__ import annotations

import math
from collections.abc import Mapping
from dataclasses import dataclass, field
from datetime import datetime
from typing import Any, Literal

from stats import TestResult, two_proportion_z_test, welch_t_test

Action = Literal["wait", "promote", "retire"]
REGRESSION = "regression"
#: problem type -> (metric name, True when a larger value is better)
METRICS = {
    "regression": ("mae", False),
    "binary": ("accuracy", True),
    "multiclass": ("accuracy", True),
}


@dataclass
class VariantTally:
    """One variant's running tally: its per-request outcomes (regression: the absolute error;
    classification: 1.0 right, 0.0 wrong) and its CloudWatch numbers since the test started."""

    name: str
    model: str
    weight: float
    outcomes: list[float] = field(default_factory=list)
    invocations: int = 0
    errors_5xx: int = 0
    model_latency_us: float | None = None  # the average

    @property
    def n(self) -> int:
        return len(self.outcomes)

    def metric(self) -> float | None:
        return math.fsum(self.outcomes) / self.n if self.outcomes else None

    def error_rate(self) -> float:
        return self.errors_5xx / self.invocations if self.invocations else 0.0


@dataclass(frozen=True)
class Verdict:
    action: Action
    reason: str
    look: int  # the planned look this evaluation made (0: none)
    test: TestResult | None
    next_step: str  # what happens next, for a person


def per_look_alpha(settings: Mapping[str, Any]) -> float:
    return float(settings["alpha"]) / int(settings["max_looks"])


def compare(problem_type: str, champion: VariantTally, challenger: VariantTally) -> TestResult:
    if problem_type == REGRESSION:
        return welch_t_test(champion.outcomes, challenger.outcomes)
    return two_proportion_z_test(
        round(math.fsum(champion.outcomes)),
        champion.n,
        round(math.fsum(challenger.outcomes)),
        challenger.n,
    )


def challenger_better(problem_type: str, test: TestResult) -> bool:
    """The statistic is positive when the challenger's metric is the larger."""
    larger_is_better = METRICS[problem_type][1]
    return test.statistic > 0 if larger_is_better else test.statistic < 0


def describe(
    problem_type: str, champion: VariantTally, challenger: VariantTally, test: TestResult | None
) -> str:
    name = METRICS[problem_type][0]

    def value(tally: VariantTally) -> str:
        metric = tally.metric()
        return "none" if metric is None else f"{metric:.4g}"

    text = (
        f"{name} {value(challenger)} challenger against {value(champion)} champion "
        f"n {challenger.n}/{champion.n}"
    )
    if test is not None:
        text += f" {test.name} p {test.p_value:.3g}"
    return text


def _timeout(settings: Mapping[str, Any], why: str, look: int, test: TestResult | None) -> Verdict:
    if settings["on_timeout"] == "promote_challenger":
        return Verdict(
            "promote",
            f"{why}: on_timeout promotes the challenger",
            look,
            test,
            "traffic moves to the challenger step by step",
        )
    return Verdict(
        "retire", f"{why}: on_timeout keeps the champion", look, test, "the challenger is retired"
    )


def issues(
    settings: Mapping[str, Any], champion: VariantTally, challenger: VariantTally, looks_done: int
) -> Verdict | None:
    """The error guard: a retirement when the challenger fails requests noticeably more often
    than the champion (also checked at every step of a shift after a win), else None."""
    limit = float(settings["max_error_rate_increase"])
    if challenger.error_rate() - champion.error_rate() <= limit:
        return None
    return Verdict(
        "retire",
        f"the challenger's server error rate {challenger.error_rate():.2%} exceeds the "
        f"champion's {champion.error_rate():.2%} by more than {limit:.2%}",
        looks_done,
        None,
        "the challenger is retired",
    )


def decide(
    problem_type: str,
    settings: Mapping[str, Any],
    champion: VariantTally,
    challenger: VariantTally,
    *,
    started: datetime,
    now: datetime,
    looks_done: int,
) -> Verdict:
    """What the test does now. ``looks_done``: the last planned look made (0 before any)."""
    troubled = issues(settings, champion, challenger, looks_done)
    if troubled is not None:
        return troubled
    min_samples, max_looks = int(settings["min_samples"]), int(settings["max_looks"])
    n = min(champion.n, challenger.n)
    due = min(n // min_samples, max_looks)
    hours = (now - started).total_seconds() / 3600
    if due > looks_done:
        test = compare(problem_type, champion, challenger)
        threshold = per_look_alpha(settings)
        summary = describe(problem_type, champion, challenger, test)
        if test.p_value < threshold:
            if challenger_better(problem_type, test):
                return Verdict(
                    "promote",
                    f"look {due} of {max_looks}: the challenger is better: "
                    f"{summary} below {threshold:.3g}",
                    due,
                    test,
                    "traffic moves to the challenger step by step",
                )
            return Verdict(
                "retire",
                f"look {due} of {max_looks}: the challenger is worse: "
                f"{summary} below {threshold:.3g}",
                due,
                test,
                "the challenger is retired",
            )
        if due >= max_looks:
            return _timeout(
                settings,
                f"all {max_looks} planned looks made without a verdict ({summary})",
                due,
                test,
            )
    if hours >= float(settings["max_duration_hours"]):
        test = compare(problem_type, champion, challenger) if n >= 2 else None
        return _timeout(
            settings,
            f"ran out of time after {hours:.3g} h of {float(settings['max_duration_hours']):g} "
            f"without a verdict ({describe(problem_type, champion, challenger, test)})",
            max(due, looks_done),
            test,
        )
    looks = max(due, looks_done)
    wanted = (looks + 1) * min_samples
    return Verdict(
        "wait",
        f"no verdict yet ({describe(problem_type, champion, challenger, None)})",
        looks,
        None,
        f"look {looks + 1} of {max_looks} when both variants have {wanted} labelled requests",
    )
