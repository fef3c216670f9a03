"""Clarify's bias metrics: containers/clarify/bias.py against smclarify on the same data.

Target: every pre- and post-training metric on 1,000,000 rows at least 20x faster than
smclarify (AWS's open-source implementation of Clarify's bias metrics), measured side by side in
one run. The data: a seeded credit table (a text facet `gender`, the sensitive group "female";
numeric columns age, income, debt_ratio, branch; `branch` is also the group variable of CDDL and
CDDPL; a binary label and predicted label). Each repeat times, interleaved, bias.bias_report
(pre-training alone, post-training alone, both in one call, FT alone, post-training but FT) and
smclarify's bias_report (one call per stage, as a Clarify job runs both; FT alone; post-training
but FT), then checks that every value agrees within 1e-9. After the repeats, all 21 again with
FT's neighbour search on one thread (`bias.FT_SEARCH_THREADS = 1`; by default it uses every
core, smclarify's scikit-learn search one). "All 21" for smclarify is its
pre-training call plus its post-training call; "the 20 but FT" is its pre-training call plus
its post-training call without FT, against one call of ours. Medians of the repeats; wall and
CPU seconds of this process.
Usage: python bench/bench_bias.py [--rows N] [--repeats N]
"""

from __future__ import annotations

import argparse
import logging
import os
import statistics
import subprocess
import sys
import time
import warnings
from collections.abc import Callable
from pathlib import Path
from typing import Any

import numpy as np
import pandas as pd

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT / "containers" / "clarify"))

import bias  # noqa: E402

TARGET = 20.0
TOLERANCE = 1e-9
ANALYSIS: dict[str, Any] = {
    "label": "approved",
    "label_values_or_threshold": [1],
    "facets": [{"name_or_index": "gender", "value_or_threshold": ["female"]}],
    "group_variable": "branch",
    "predicted_label": "predicted_approved",
}


def credit_table(rows: int, seed: int = 0) -> pd.DataFrame:
    rng = np.random.default_rng(seed)
    gender = rng.choice(["female", "male", "nonbinary"], rows, p=[0.45, 0.5, 0.05])
    age = rng.integers(18, 80, rows)
    income = np.round(rng.lognormal(10.5, 0.5, rows), 2)
    debt_ratio = np.round(rng.beta(2, 5, rows), 3)
    branch = rng.integers(0, 6, rows)
    score = (
        income / 40_000 - debt_ratio + (gender == "male") * 0.3 + branch * 0.05
        + rng.normal(0, 0.5, rows)
    )  # fmt: skip
    predicted = score + rng.normal(0, 0.3, rows)
    return pd.DataFrame(
        {
            "gender": gender,
            "age": age,
            "income": income,
            "debt_ratio": debt_ratio,
            "branch": branch,
            "approved": (score > 0.8).astype(int),
            "predicted_approved": (predicted > 0.8).astype(int),
        }
    )


WITHOUT_FT = [m for m in bias.POST_TRAINING_METRICS if m != "FT"]
# (pre-training methods, post-training methods) of each measured selection
SELECTIONS: dict[str, tuple[Any, Any]] = {
    "pre": ("all", None),
    "post": (None, "all"),
    "all": ("all", "all"),
    "FT": (None, ["FT"]),
    "post without FT": (None, WITHOUT_FT),
}


def ours(frame: pd.DataFrame, selection: str) -> dict[str, Any]:
    pre, post = SELECTIONS[selection]
    return bias.bias_report(frame, **ANALYSIS, pre_training_methods=pre, post_training_methods=post)


def smclarify(
    frame: pd.DataFrame, stage: str, metrics: list[str] | None = None
) -> list[dict[str, Any]]:
    """smclarify's report for one stage (it takes text columns as object dtype)."""
    from smclarify.bias import report as r

    label = ANALYSIS["label"]
    predicted = ANALYSIS["predicted_label"]
    (facet,) = ANALYSIS["facets"]
    return r.bias_report(
        frame,
        r.FacetColumn(facet["name_or_index"], list(facet["value_or_threshold"])),
        r.LabelColumn(label, frame[label], list(ANALYSIS["label_values_or_threshold"])),
        r.StageType.PRE_TRAINING if stage == "pre" else r.StageType.POST_TRAINING,
        r.LabelColumn(predicted, frame[predicted]) if stage == "post" else None,
        metrics=metrics or ["all"],
        group_variable=frame[ANALYSIS["group_variable"]],
    )


def timed(run: Callable[[], Any]) -> tuple[float, float, Any]:
    wall, cpu = time.perf_counter(), time.process_time()
    result = run()
    return time.perf_counter() - wall, time.process_time() - cpu, result


def differences(mine: dict[str, Any], theirs: dict[str, list[dict[str, Any]]]) -> list[str]:
    """Metrics whose value or error differs between the two reports."""
    found = []
    for key, stage in (
        ("pre_training_bias_metrics", "pre"),
        ("post_training_bias_metrics", "post"),
    ):
        (group,) = mine[key]["facets"]["gender"]
        (expected,) = theirs[stage]
        for m, e in zip(group["metrics"], expected["metrics"], strict=True):
            same = m["name"] == e["name"] and m.get("error") == e.get("error")
            if isinstance(e["value"], float):
                same = same and abs(m["value"] - e["value"]) <= TOLERANCE
            else:
                same = same and m["value"] == e["value"]
            if not same:
                found.append(f"{stage} {e['name']}: {m.get('value')} vs {e['value']}")
    return found


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--rows", type=int, default=1_000_000)
    parser.add_argument("--repeats", type=int, default=3)
    args = parser.parse_args()
    logging.disable(logging.CRITICAL)  # smclarify logs each metric error with a traceback
    warnings.simplefilter("ignore")  # and warns of pandas 3 deprecations

    frame = credit_table(args.rows)
    as_object = frame.assign(gender=frame["gender"].astype(object))  # what smclarify needs
    commit = subprocess.run(
        ["git", "rev-parse", "--short", "HEAD"], cwd=ROOT, capture_output=True, text=True
    ).stdout.strip()
    print(
        f"{args.rows:,} rows, {args.repeats} repeats, commit {commit}, "
        f"{time.strftime('%Y-%m-%d %H:%M')}, {os.cpu_count()} cores, "
        f"load {os.getloadavg()[0]:.2f}",
        flush=True,
    )
    ours(frame.head(1000), "all")  # warm: the imports (scikit-learn, scipy) are not timed
    smclarify(as_object.head(1000), "post")
    figures: dict[str, list[tuple[float, float]]] = {}
    mismatches: list[str] = []
    for repeat in range(args.repeats):
        for selection in SELECTIONS:
            wall, cpu, report = timed(lambda selection=selection: ours(frame, selection))
            figures.setdefault(f"ours {selection}", []).append((wall, cpu))
            if selection == "all":
                mine = report
        theirs = {}
        for stage, metrics in (("pre", None), ("post", None), ("FT", ["FT"]),
                               ("post without FT", WITHOUT_FT)):  # fmt: skip
            call_stage = "pre" if stage == "pre" else "post"
            wall, cpu, report = timed(
                lambda call_stage=call_stage, metrics=metrics: smclarify(
                    as_object, call_stage, metrics
                )
            )
            figures.setdefault(f"smclarify {stage}", []).append((wall, cpu))
            if metrics is None:
                theirs[stage] = report
        for total, parts in (("all", ("pre", "post")), ("without FT", ("pre", "post without FT"))):
            sums = [sum(figures[f"smclarify {p}"][-1][i] for p in parts) for i in (0, 1)]
            figures.setdefault(f"smclarify {total}", []).append((sums[0], sums[1]))
        mismatches += differences(mine, theirs)
        print(
            f"repeat {repeat + 1}: ours all {figures['ours all'][-1][0]:.2f} s, "
            f"smclarify all {figures['smclarify all'][-1][0]:.1f} s, load {os.getloadavg()[0]:.2f}",
            flush=True,
        )
    # ours without FT: one call, pre-training and post-training but FT
    for _ in range(args.repeats):
        wall, cpu, _report = timed(
            lambda: bias.bias_report(
                frame, **ANALYSIS, pre_training_methods="all", post_training_methods=WITHOUT_FT
            )
        )
        figures.setdefault("ours without FT", []).append((wall, cpu))
    # ours on one core: FT's neighbour search on one thread, as a local job on 2 cores gets
    bias.FT_SEARCH_THREADS = 1
    for _ in range(args.repeats):
        wall, cpu, _report = timed(lambda: ours(frame, "all"))
        figures.setdefault("ours all, 1 thread", []).append((wall, cpu))
    bias.FT_SEARCH_THREADS = -1
    figures["smclarify all, 1 thread"] = figures["smclarify all"]

    print_table(figures)
    print(f"target: all metrics >= {TARGET:.0f}x faster; load now {os.getloadavg()[0]:.2f}")
    print("values equal to smclarify's within 1e-9:", mismatches or "yes")


def print_table(figures: dict[str, list[tuple[float, float]]]) -> None:
    """Medians of wall and CPU seconds side by side, with the ratio and the verdicts."""

    def median(name: str, index: int) -> float:
        return statistics.median(f[index] for f in figures[name])

    print(f"\n{'metrics':<26}{'ours wall':>10}{'smclarify':>11}{'ratio':>8}  (CPU s: ours, theirs)")
    rows = [
        ("pre", "pre-training (8)"),
        ("post", "post-training (13)"),
        ("all", "all 21: the target"),
        ("FT", "FT alone"),
        ("without FT", "the 20 but FT"),
        ("all, 1 thread", "all 21, FT on 1 thread"),
    ]
    for key, title in rows:
        mine, theirs = median(f"ours {key}", 0), median(f"smclarify {key}", 0)
        verdict = ("PASS" if theirs / mine >= TARGET else "MISS") if key.startswith("all") else ""
        print(
            f"{title:<26}{mine:>9.2f}s{theirs:>10.1f}s{theirs / mine:>7.0f}x  "
            f"({median(f'ours {key}', 1):.2f}, {median(f'smclarify {key}', 1):.1f}) {verdict}"
        )


if __name__ == "__main__":
    main()
