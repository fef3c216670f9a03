"""A/B tests that conclude (issue 22, item 3): how many labelled requests each verdict needs.

Simulated traffic and ground truth, simulated time (no sleeping): labelled requests arrive at
1, 2, 5 or 10 per second, split by the variants' weights (the challenger's share is
``ab_challenger_share``, 0.1 by default); the schedule evaluates every 5 minutes with the A/B
test function's own decision (``lambdas/ab_test/verdict.py``, the defaults of ``deployment.ab``:
min_samples 200, alpha 0.05 over 5 planned looks, 168 h). Per-request outcomes:

- regression: absolute errors of a normal error with sd 3 for the champion (MAE 2.39, as the
  abalone model's order of size), and sd 3 x ratio for the challenger;
- binary: correct with probability 0.80 for the champion and p for the challenger.

For each scenario and rate: the verdicts of ``--runs`` simulated tests (promote, retire,
timeout), the median labelled requests (both variants) and the median hours to the verdict.
Baseline in the same run: the fixed-horizon test of the same effect (one look at alpha 0.05
with power 0.8, its per-variant sample size from the true spread), and how often that single
look, simulated on the same kind of data, finds the difference.

    .venv/bin/python bench/bench_ab.py            # 200 runs per scenario and rate, ~1 min
    .venv/bin/python bench/bench_ab.py --runs 50
"""

from __future__ import annotations

import argparse
import math
import random
import statistics
import sys
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[1] / "lambdas" / "ab_test"))

import stats  # noqa: E402
import verdict  # noqa: E402

SETTINGS = {
    "min_samples": 200,
    "alpha": 0.05,
    "max_looks": 5,
    "max_duration_hours": 168.0,
    "on_timeout": "keep_champion",
    "step_percent": 25,
    "max_error_rate_increase": 0.01,
}
SHARE = 0.1
EVERY = timedelta(minutes=5)
RATES = (1, 2, 5, 10)
START = datetime(2026, 12, 7, tzinfo=UTC)
HALF_NORMAL_MEAN = math.sqrt(2 / math.pi)


@dataclass(frozen=True)
class Scenario:
    name: str
    problem: str
    champion: float  # regression: the error's sd; binary: P(correct)
    challenger: float

    def draw(self, rng: random.Random, challenger: bool) -> float:
        level = self.challenger if challenger else self.champion
        if self.problem == "regression":
            return abs(rng.gauss(0.0, level))
        return 1.0 if rng.random() < level else 0.0

    def expected(self) -> str:
        if self.champion == self.challenger:
            return "none"
        better = self.challenger < self.champion if self.problem == "regression" else (
            self.challenger > self.champion
        )
        return "promote" if better else "retire"

    def fixed_horizon(self, alpha: float = 0.05, power: float = 0.8) -> int | None:
        """Per-variant requests of one test at ``alpha`` with ``power``."""
        if self.champion == self.challenger:
            return None
        if self.problem == "binary":
            return stats.fixed_horizon_samples_proportions(
                self.champion, self.challenger, alpha, power
            )
        # |N(0, s)|: mean s*sqrt(2/pi), sd s*sqrt(1 - 2/pi)
        spread = math.sqrt(1 - 2 / math.pi)
        return stats.fixed_horizon_samples_means(
            (self.champion - self.challenger) * HALF_NORMAL_MEAN,
            self.champion * spread,
            self.challenger * spread,
            alpha,
            power,
        )


SCENARIOS = (
    Scenario("regression, challenger MAE -20%", "regression", 3.0, 2.4),
    Scenario("regression, challenger MAE -10%", "regression", 3.0, 2.7),
    Scenario("regression, equal", "regression", 3.0, 3.0),
    Scenario("regression, challenger MAE +10%", "regression", 3.0, 3.3),
    Scenario("binary, accuracy 0.80 -> 0.85", "binary", 0.80, 0.85),
    Scenario("binary, equal 0.80", "binary", 0.80, 0.80),
)


def simulate(scenario: Scenario, rate: float, rng: random.Random) -> tuple[str, int, float]:
    """(action, labelled requests of both variants at the verdict, hours)."""
    champion = verdict.VariantTally("Champion", "m1", 1 - SHARE)
    challenger = verdict.VariantTally("Challenger", "m2", SHARE)
    looks, now, arrived = 0, START, 0.0
    while True:
        now += EVERY
        arrived += rng.gauss(rate * EVERY.total_seconds(), math.sqrt(rate * 300))
        total = max(int(arrived), champion.n + challenger.n)
        while champion.n + challenger.n < total:
            to_challenger = rng.random() < SHARE
            (challenger if to_challenger else champion).outcomes.append(
                scenario.draw(rng, to_challenger)
            )
        result = verdict.decide(
            scenario.problem, SETTINGS, champion, challenger,
            started=START, now=now, looks_done=looks,
        )  # fmt: skip
        looks = max(looks, result.look)
        if result.action != "wait":
            action = "timeout" if "without a verdict" in result.reason else result.action
            hours = (now - START).total_seconds() / 3600
            return action, champion.n + challenger.n, hours


def fixed_power(scenario: Scenario, n: int, runs: int, rng: random.Random) -> float:
    """How often one look at ``n`` per variant (alpha 0.05) finds the right direction."""
    right = 0
    for _ in range(runs):
        a = verdict.VariantTally("a", "m1", 0.5, [scenario.draw(rng, False) for _ in range(n)])
        b = verdict.VariantTally("b", "m2", 0.5, [scenario.draw(rng, True) for _ in range(n)])
        test = verdict.compare(scenario.problem, a, b)
        better = verdict.challenger_better(scenario.problem, test)
        wanted = scenario.expected() == "promote"
        right += test.p_value < 0.05 and better == wanted
    return right / runs


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--runs", type=int, default=200)
    parser.add_argument("--seed", type=int, default=22)
    args = parser.parse_args()
    rng = random.Random(args.seed)
    print(
        "| scenario | labelled/s | right verdict | wrong verdict | no verdict (on_timeout) "
        "| median requests (both variants) | median hours | fixed horizon: requests (both) "
        "| its power |"
    )
    print("| --- | ---: | ---: | ---: | ---: | ---: | ---: | ---: | ---: |")
    for scenario in SCENARIOS:
        fixed = scenario.fixed_horizon()
        power = fixed_power(scenario, fixed, args.runs, rng) if fixed else None
        for rate in RATES:
            results = [simulate(scenario, rate, rng) for _ in range(args.runs)]
            actions = [a for a, _, _ in results]
            expected = scenario.expected()
            right = sum(a == expected for a in actions) if expected != "none" else 0
            timeout = actions.count("timeout")
            wrong = len(actions) - right - timeout
            requests = statistics.median(n for _, n, _ in results)
            hours = statistics.median(h for _, _, h in results)
            baseline = f"{math.ceil(fixed / SHARE):,}" if fixed else "-"
            print(
                f"| {scenario.name} | {rate} | {right / args.runs:.0%} | {wrong / args.runs:.0%} "
                f"| {timeout / args.runs:.0%} | {requests:,.0f} | {hours:.2f} | {baseline} "
                f"| {'-' if power is None else f'{power:.0%}'} |"
            )
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
