"""Target 2: the same slice on 10k, 100k and 1M rows of abalone resampled with noise.

Target: 1,000,000 rows within 3 minutes wall and 4 GB peak memory (RSS summed over the CLI's
process tree and the workspace's service tree: the service, its Lambda workers, the fork server
and the jobs; sampled every 0.1 s). Shows how time grows with the rows, as a ratio to the 10k run
measured in the same invocation. Each size runs in a fresh workspace whose service is stopped
after it (the first command of a workspace starts the service, so every run here is cold).
Usage: python bench/bench_scale.py [--quick] [--repeats N] [--sizes 10000,100000,1000000]
"""

from __future__ import annotations

import argparse
import sys
import tempfile
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent))

import common  # noqa: E402

WALL_TARGET = 180.0
MEMORY_TARGET = 4 * 2**30
DATA_DIR = Path(tempfile.gettempdir()) / "sfn-bench-data"


def measure(data: Path) -> dict:
    with common.workspace("sfn-bench-scale-") as workspace:  # its service is stopped after
        run = common.run_cli(workspace, *common.data_args(data))
        t = common.timings(workspace, run)
    return {
        "wall": run.wall,
        "rss": run.peak_rss,
        "jobs": t.job_seconds,
        "states": {s: st.seconds for s, st in t.states.items()},
        "job": {s: j.process for s, j in t.jobs.items()},
        "train_seconds": t.train_seconds or float("nan"),
    }


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--quick", action="store_true", help="1 repeat, skip 1M rows")
    parser.add_argument("--repeats", type=int)
    parser.add_argument("--sizes", help="comma-separated row counts")
    args = parser.parse_args()
    repeats = args.repeats or (1 if args.quick else 3)
    sizes = (
        [int(s) for s in args.sizes.split(",")]
        if args.sizes
        else ([10_000, 100_000] if args.quick else [10_000, 100_000, 1_000_000])
    )
    common.print_machine()
    files = {n: common.make_abalone_like(n, DATA_DIR / f"abalone_{n}.csv", seed=n) for n in sizes}
    for n, path in files.items():
        print(f"data {n:>9,} rows: {path} ({path.stat().st_size / 2**20:.1f} MiB)", flush=True)
    results: dict[int, list[dict]] = {n: [] for n in sizes}
    for i in range(repeats):  # interleave sizes so machine noise hits them alike
        for n in sizes:
            r = measure(files[n])
            results[n].append(r)
            print(
                f"repeat {i + 1}/{repeats} {n:>9,} rows: wall {r['wall']:.1f} s, "
                f"peak RSS {r['rss'] / 2**20:.0f} MiB",
                flush=True,
            )
    base_n = sizes[0]
    base_wall = common.median([r["wall"] for r in results[base_n]])
    state_names = [
        s
        for s in results[base_n][0]["states"]
        if s in ("Preprocess", "Train", "Evaluate", "ReadEvaluation")
    ]
    rows = []
    for n in sizes:
        rs = results[n]
        wall = common.median([r["wall"] for r in rs])
        row = [
            f"{n:,}",
            f"{n / base_n:.0f}x",
            f"{wall:.1f}",
            common.ratio(wall, base_wall),
            f"{common.median([r['rss'] for r in rs]) / 2**20:.0f}",
            f"{common.median([r['jobs'] for r in rs]):.1f}",
        ]
        for s in state_names:
            state = common.median([r["states"].get(s, float("nan")) for r in rs])
            job = (
                common.median([r["job"].get(s, float("nan")) for r in rs])
                if s in rs[0]["job"]
                else None
            )
            row.append(f"{state:.1f}" + (f" ({job:.1f})" if job is not None else ""))
        row.append(f"{common.median([r['train_seconds'] for r in rs]):.2f}")
        rows.append(row)
    print(f"\n## Scale: medians of {repeats} run(s) per size; ratios to the {base_n:,}-row run")
    print(
        common.table(
            rows,
            ["rows", "rows ratio", "wall s", "wall ratio", "peak RSS MiB", "jobs s"]
            + [f"{s} s (job)" for s in state_names]
            + ["xgb.train s"],
        )
    )
    if 1_000_000 in results:
        rs = results[1_000_000]
        wall = common.median([r["wall"] for r in rs])
        rss = common.median([r["rss"] for r in rs])
        print("\n## Target 2 (1M rows)")
        print(
            common.table(
                [
                    [
                        "wall",
                        f"{wall:.1f} s",
                        f"<= {WALL_TARGET:.0f} s",
                        common.ratio(wall, WALL_TARGET),
                        common.verdict(wall <= WALL_TARGET),
                    ],
                    [
                        "peak RSS (tree)",
                        f"{rss / 2**30:.2f} GiB",
                        "<= 4 GiB",
                        common.ratio(rss, MEMORY_TARGET),
                        common.verdict(rss <= MEMORY_TARGET),
                    ],
                ],
                ["figure", "median", "target", "ratio to target", "verdict"],
            )
        )
    else:
        print("\nTarget 2: not judged (1M rows skipped; run without --quick)")
    return 0


if __name__ == "__main__":
    sys.exit(main())
