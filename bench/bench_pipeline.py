"""Target 1: the slice on abalone, CLI cold start included.

Targets: wall <= 20 s on a 2-core machine; overhead (wall - the jobs' own compute) <= 25 % of
the wall. A job's own compute is the wall time of its script process, as the job runner records
it (the "Training" secondary-status transition: subprocess start -> exit).

Each repeat: a fresh workspace (cold: deploy, abalone copied, no earlier state), then a second
run in the same workspace (warm). Usage: python bench/bench_pipeline.py [--quick] [--repeats N]
"""

from __future__ import annotations

import argparse
import shutil
import sys
import tempfile
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent))

import common  # noqa: E402

WALL_TARGET = 20.0
OVERHEAD_TARGET = 0.25


def measure(workspace: Path) -> dict:
    run = common.run_cli(workspace)
    t = common.timings(workspace, run)
    jobs = t.job_seconds
    return {
        "wall": run.wall,
        "jobs": jobs,
        "overhead": run.wall - jobs,
        "share": (run.wall - jobs) / run.wall,
        "per_job": {s: j.process for s, j in t.jobs.items()},
        "per_state": {s: st.seconds for s, st in t.states.items()},
        "train_seconds": t.train_seconds,
        "breakdown": common.breakdown(run, t),
        "peak_rss": run.peak_rss,
        "cli_cpu": run.cli_cpu,
    }


def summarize(label: str, results: list[dict]) -> dict:
    med = {
        k: common.median([r[k] for r in results])
        for k in ("wall", "jobs", "overhead", "share", "peak_rss", "cli_cpu")
    }
    print(f"\n## {label}: medians of {len(results)} runs")
    print(
        f"wall {med['wall']:.2f} s  vs  sum of job compute {med['jobs']:.2f} s "
        f"(wall/jobs {common.ratio(med['wall'], med['jobs'])}); overhead "
        f"{med['overhead']:.2f} s = {med['share']:.0%} of the wall; "
        f"peak tree RSS {med['peak_rss'] / 2**20:.0f} MiB; "
        f"CLI process CPU {med['cli_cpu']:.2f} s"
    )
    print("walls: " + ", ".join(f"{r['wall']:.2f}" for r in results))
    rows = []
    for state in results[0]["per_state"]:
        state_s = common.median([r["per_state"].get(state, 0.0) for r in results])
        if state in results[0]["per_job"]:
            job_s = common.median([r["per_job"][state] for r in results])
            rows.append(
                [
                    state,
                    f"{state_s:.2f}",
                    f"{job_s:.2f}",
                    f"{state_s - job_s:.2f}",
                    common.ratio(state_s, job_s),
                ]
            )
        else:
            rows.append([state, f"{state_s:.2f}", "-", f"{state_s:.2f}", "-"])
    print(common.table(rows, ["state", "state s", "job process s", "state - job s", "state/job"]))
    train = [r["train_seconds"] for r in results if r["train_seconds"] is not None]
    if train:
        print(
            f"xgboost.train() alone inside the training job (training_metrics.json): "
            f"{common.median(train):.2f} s of the {med_job(results, 'Train'):.2f} s "
            "training process"
        )
    parts = list(results[0]["breakdown"])
    rows = [
        [
            p,
            f"{common.median([r['breakdown'][p] for r in results]):.2f}",
            f"{common.median([r['breakdown'][p] / r['wall'] for r in results]):.0%}",
        ]
        for p in parts
    ]
    print("\nwhere the wall goes (medians; parts add up to the wall):")
    print(common.table(rows, ["part", "seconds", "share of wall"]))
    return med


def med_job(results: list[dict], state: str) -> float:
    return common.median([r["per_job"].get(state, 0.0) for r in results])


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--quick", action="store_true", help="3 repeats instead of 5")
    parser.add_argument("--repeats", type=int)
    args = parser.parse_args()
    repeats = args.repeats or (3 if args.quick else 5)
    common.print_machine()
    cold, warm = [], []
    for i in range(repeats):
        workspace = Path(tempfile.mkdtemp(prefix="sfn-bench-pipeline-"))
        try:
            cold.append(measure(workspace))
            warm.append(measure(workspace))
        finally:
            shutil.rmtree(workspace, ignore_errors=True)
        print(
            f"repeat {i + 1}/{repeats}: cold {cold[-1]['wall']:.2f} s "
            f"(jobs {cold[-1]['jobs']:.2f} s), warm {warm[-1]['wall']:.2f} s "
            f"(jobs {warm[-1]['jobs']:.2f} s)",
            flush=True,
        )
    c = summarize("cold (fresh workspace)", cold)
    w = summarize("warm (second run, same workspace)", warm)
    print("\n## Target 1 (judged on the cold run)")
    rows = []
    for label, figures in (("cold", c), ("warm", w)):
        rows.append(_target_row(f"wall, {label}", figures["wall"], WALL_TARGET, "{:.2f} s"))
        rows.append(
            _target_row(f"overhead share, {label}", figures["share"], OVERHEAD_TARGET, "{:.0%}")
        )
    print(common.table(rows, ["figure", "median", "target", "ratio to target", "verdict"]))
    return 0


def _target_row(figure: str, value: float, target: float, fmt: str) -> list[str]:
    """One figure against its upper bound: the value, the bound, their ratio and the verdict."""
    bound = f"<= {target:.0f} s" if fmt.endswith(" s") else f"<= {target:.0%}"
    return [
        figure,
        fmt.format(value),
        bound,
        common.ratio(value, target),
        common.verdict(value <= target),
    ]


if __name__ == "__main__":
    sys.exit(main())
