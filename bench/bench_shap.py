"""Clarify SHAP: containers/clarify/explain.py against shap's KernelExplainer, side by side.

Target (issue 12): >= 50x faster than Kernel SHAP, Clarify's method, on the same model,
baseline and 100 rows; also the time for 10k and 100k rows, and beside Kernel on 1,000 rows
(the pipeline's default `clarify.shap.max_records`; Kernel there: at most 3 repeats). The
model is the pipeline's on abalone (its default hyperparameters: 150 rounds, depth 5), `sex`
encoded as codes as the processing job does; the baseline is 10 K-means centroids, as Clarify
builds one. shap's own interventional TreeExplainer is timed beside it as a second baseline
(100 and 10k rows).
Every figure is the median of --repeats runs after one untimed warm-up (ours and Kernel on
100 rows alternated run by run); values are checked against both oracles.

    .venv/bin/python bench/bench_shap.py            # 5 repeats
    .venv/bin/python bench/bench_shap.py --quick    # 1 repeat, no 100k rows (a smoke check)
"""

from __future__ import annotations

import argparse
import os
import statistics
import subprocess
import sys
import time
from collections.abc import Callable
from pathlib import Path

import numpy as np

REPO = Path(__file__).resolve().parents[1]
sys.path[:0] = [str(REPO / "containers" / "clarify"), str(REPO / "containers" / "common")]

import explain  # noqa: E402
import jobkit  # noqa: E402

xgb = jobkit.import_xgboost()
TARGET_RATIO = 50.0
HYPERPARAMETERS = {"max_depth": 5, "eta": 0.1, "subsample": 0.8, "min_child_weight": 1}
ROUNDS = 150


def abalone() -> tuple[np.ndarray, np.ndarray, list[str]]:
    from sklego.datasets import load_abalone

    frame = load_abalone(as_frame=True)
    frame["sex"] = frame["sex"].astype("category").cat.codes.astype(float)
    features = [c for c in frame.columns if c != "rings"]
    return frame[features].to_numpy(float), frame["rings"].to_numpy(float), features


def timed(run: Callable[[], object], repeats: int) -> tuple[float, object]:
    times, result = [], None
    run()  # warm-up, untimed: first-call costs (allocator, caches) are not the method's
    for _ in range(repeats):
        start = time.perf_counter()
        result = run()
        times.append(time.perf_counter() - start)
    return statistics.median(times), result


def side_by_side(
    first: Callable[[], object], second: Callable[[], object], repeats: int
) -> tuple[float, float, object, object]:
    """Both medians, runs alternated (after one warm-up each) so that the shared machine's
    slow spells fall on both sides of the ratio alike."""
    first(), second()
    times: tuple[list[float], list[float]] = ([], [])
    results: list[object] = [None, None]
    for _ in range(repeats):
        for side, run in enumerate((first, second)):
            start = time.perf_counter()
            results[side] = run()
            times[side].append(time.perf_counter() - start)
    return statistics.median(times[0]), statistics.median(times[1]), results[0], results[1]


def line(what: str, ours: float, baseline_name: str, baseline: float | None) -> None:
    if baseline is None:
        print(f"{what:<34} ours {ours:8.3f} s")
        return
    ratio = baseline / ours
    verdict = "PASS" if ratio >= TARGET_RATIO else "MISS"
    print(
        f"{what:<34} ours {ours:8.3f} s   {baseline_name} {baseline:8.3f} s   "
        f"{ratio:6.1f}x  {verdict if what == '100 rows' and baseline_name == 'Kernel' else ''}"
    )


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--repeats", type=int, default=5)
    parser.add_argument("--quick", action="store_true")
    args = parser.parse_args()
    repeats = 1 if args.quick else max(3, args.repeats)

    import shap
    from sklearn.cluster import KMeans

    rows, label, names = abalone()
    booster = xgb.train(
        {**HYPERPARAMETERS, "seed": 0, "nthread": os.cpu_count()}, xgb.DMatrix(rows, label), ROUNDS
    )
    baseline = KMeans(n_clusters=10, random_state=0, n_init=10).fit(rows).cluster_centers_
    rng = np.random.default_rng(0)
    sample = rows[rng.choice(len(rows), 100, replace=False)]

    def margin(batch: np.ndarray) -> np.ndarray:
        return booster.inplace_predict(batch, predict_type="margin")

    def kernel(records: np.ndarray) -> Callable[[], np.ndarray]:
        def run() -> np.ndarray:
            explainer = shap.KernelExplainer(margin, baseline)
            return explainer.shap_values(records, silent=True)  # nsamples "auto": all 2**8

        return run

    def tree(records: np.ndarray) -> Callable[[], np.ndarray]:
        def run() -> np.ndarray:
            explainer = shap.TreeExplainer(
                booster, data=baseline, feature_perturbation="interventional"
            )
            return explainer.shap_values(records, check_additivity=False)

        return run

    def ours(records: np.ndarray) -> Callable[[], explain.Explanation]:
        return lambda: explain.shap_values(booster, records, baseline, names)

    describe(rows.shape, repeats)
    # Interleaved: ours, then each baseline, per size.
    ours_100, kernel_100, result, kernel_values = side_by_side(
        ours(sample), kernel(sample), repeats
    )
    tree_100, tree_values = timed(tree(sample), repeats)
    values = result.values
    print(
        f"max |ours - Kernel| = {np.abs(values - kernel_values).max():.2e}   "
        f"max |ours - TreeExplainer| = {np.abs(values - tree_values).max():.2e}   "
        f"additivity {np.abs(values.sum(1) + result.expected_value - margin(sample)).max():.2e}"
    )
    line("100 rows", ours_100, "Kernel", kernel_100)
    line("100 rows", ours_100, "TreeExplainer", tree_100)

    # 1,000 rows: the pipeline's default clarify.shap.max_records
    thousand = rows[rng.choice(len(rows), 1000, replace=False)]
    ours_1k, _ = timed(ours(thousand), repeats)
    kernel_1k, _ = timed(kernel(thousand), min(repeats, 3))
    line("1,000 rows (no target)", ours_1k, "Kernel", kernel_1k)

    big = rows[rng.integers(0, len(rows), 100_000)] * rng.normal(1.0, 0.01, (100_000, 1))
    ours_10k, _ = timed(ours(big[:10_000]), repeats)
    tree_10k, _ = timed(tree(big[:10_000]), repeats)
    line("10,000 rows", ours_10k, "TreeExplainer", tree_10k)
    if not args.quick:
        ours_100k, _ = timed(ours(big), repeats)
        line("100,000 rows", ours_100k, "", None)
    print(
        f"Kernel SHAP at its 100-row rate would take {kernel_100 / 100 * 10_000:.0f} s "
        f"for 10k rows and {kernel_100 / 100 * 100_000 / 60:.0f} min for 100k (estimate)"
    )


def describe(shape: tuple[int, int], repeats: int) -> None:
    commit = subprocess.run(
        ["git", "-C", str(REPO), "rev-parse", "--short", "HEAD"], capture_output=True, text=True
    ).stdout.strip()
    load = " ".join(f"{x:.2f}" for x in os.getloadavg())
    print(
        f"abalone {shape[0]} rows x {shape[1]} features, {ROUNDS} trees of depth "
        f"{HYPERPARAMETERS['max_depth']}, 10 K-means centroids; commit {commit}, nproc "
        f"{os.cpu_count()}, load {load}, medians of {repeats}"
    )


if __name__ == "__main__":
    main()
