"""Model Monitor data quality: the local analyzer (containers/monitor/run.py) beside pandas.

Target (issue): baseline statistics plus a drift check of 1,000,000 rows x 10 features (8
numeric, 2 categorical) within 2x the time of one ``pandas.read_csv`` + ``DataFrame.describe()``
of the same file. Each side runs as its own process (interpreter start and imports count, as in
a job): the analyzer's baseline job on the CSV, then its monitoring job on a shifted copy (csv
``dataset_format``, the baseline's statistics and constraints), and, as the second monitoring
figure, a captured JSONL window of 100,000 of the shifted rows (1,000 requests of 100 rows).
Every figure is the median of --repeats runs, with the child's peak RSS.

    .venv/bin/python bench/bench_monitor.py            # 3 repeats
    .venv/bin/python bench/bench_monitor.py --quick    # 1 repeat, 200k rows (a smoke check)
"""

from __future__ import annotations

import argparse
import json
import os
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import numpy as np

REPO = Path(__file__).resolve().parents[1]
RUNTIME = REPO / "containers" / "monitor" / "run.py"
TARGET_RATIO = 2.0
NUMERIC, CATEGORICAL = 8, 2
# Runs a script as __main__ and reports the process's peak RSS (KiB) on its last stderr line.
WRAP = (
    "import resource, runpy, sys\n"
    "code = 0\n"
    "sys.argv = sys.argv[1:]  # the script's own argv\n"
    "try:\n"
    "    runpy.run_path(sys.argv[0], run_name='__main__')\n"
    "except SystemExit as exit:\n"
    "    code = exit.code or 0\n"
    "print('RSS', resource.getrusage(resource.RUSAGE_SELF).ru_maxrss, file=sys.stderr)\n"
    "sys.exit(code)\n"
)
PANDAS = (
    "import sys, pandas as pd\nframe = pd.read_csv(sys.argv[1])\nframe.describe(include='all')\n"
)


def write_data(path: Path, rows: int, seed: int, shift: float) -> None:
    rng = np.random.default_rng(seed)
    columns = {}
    for i in range(NUMERIC):
        values = rng.normal(10.0 * i + shift * (i % 2) * (1.0 + i), 1.0 + i, rows)
        columns[f"x{i}"] = np.char.mod("%.6g", values)
    for i in range(CATEGORICAL):
        columns[f"c{i}"] = rng.choice(np.array(["a", "b", "c", "d", "e"]), rows)
    header = ",".join(columns)
    with open(path, "w") as out:
        out.write(header + "\n")
        stacked = np.stack(list(columns.values()), axis=1)
        for start in range(0, rows, 100_000):
            out.write("\n".join(",".join(r) for r in stacked[start : start + 100_000]) + "\n")


def write_capture(source: Path, folder: Path, rows: int) -> None:
    with open(source) as stream:
        next(stream)  # the header
        lines = [next(stream).rstrip("\n") for _ in range(rows)]
    hour = folder / "ep" / "AllTraffic" / "2026" / "12" / "03" / "10"
    hour.mkdir(parents=True)
    with open(hour / "capture.jsonl", "w") as out:
        for start in range(0, len(lines), 100):
            body = "\n".join(lines[start : start + 100])
            record = {
                "captureData": {"endpointInput": {"observedContentType": "text/csv",
                                                  "mode": "INPUT", "data": body,
                                                  "encoding": "CSV"}},
                "eventMetadata": {"eventId": str(start), "inferenceTime": "2026-12-03T10:30:00Z"},
                "eventVersion": "0",
            }  # fmt: skip
            out.write(json.dumps(record) + "\n")


def child(
    script: str | Path, args: list[str], env: dict[str, str] | None = None
) -> tuple[float, int]:
    """(seconds, peak RSS in KiB) of one process."""
    start = time.perf_counter()
    done = subprocess.run(
        [sys.executable, "-c", WRAP, str(script), *args],
        env={**os.environ, **(env or {})},
        capture_output=True,
        text=True,
    )
    seconds = time.perf_counter() - start
    if done.returncode != 0:
        raise SystemExit(f"{script} failed ({done.returncode}): {done.stderr[-2000:]}")
    rss = int(done.stderr.strip().splitlines()[-1].split()[1])  # KiB on Linux
    return seconds, rss


def analyzer(out: Path, source: Path, baseline: Path | None, fmt: str) -> dict[str, str]:
    env = {
        "dataset_format": fmt,
        "dataset_source": str(source),
        "output_path": str(out),
        "SFN_MLOPS_MESSAGE_FILE": str(out / "message"),
        "SFN_MLOPS_METRICS_DIR": str(out / "metrics"),
        "publish_cloudwatch_metrics": "Enabled",
        "sagemaker_endpoint_name": "ep",
        "sagemaker_monitoring_schedule_name": "sched",
    }
    if baseline is not None:
        env["baseline_statistics"] = str(baseline / "statistics.json")
        env["baseline_constraints"] = str(baseline / "constraints.json")
    return env


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--repeats", type=int, default=3)
    parser.add_argument("--rows", type=int, default=1_000_000)
    parser.add_argument("--quick", action="store_true")
    parser.add_argument("--write", nargs=4, metavar=("PATH", "ROWS", "SEED", "SHIFT"),
                        help=argparse.SUPPRESS)  # fmt: skip
    args = parser.parse_args()
    if args.write:
        path, count, seed, shift = args.write
        write_data(Path(path), int(count), int(seed), float(shift))
        return
    repeats, rows = (1, 200_000) if args.quick else (args.repeats, args.rows)
    csv_fmt = json.dumps({"csv": {"header": True}})
    capture_fmt = json.dumps({"sagemakerCaptureJson": {"captureIndexNames": ["endpointInput"]}})
    with tempfile.TemporaryDirectory(prefix="bench-monitor-") as tmp:
        root = Path(tmp)
        (root / "base").mkdir()
        (root / "now").mkdir()
        # Written by a child: this process stays small, and Linux keeps a parent's peak RSS
        # in its children's ru_maxrss across fork and exec.
        for folder, seed, shift in (("base", 0, 0.0), ("now", 1, 0.5)):
            target = str(root / folder / "data.csv")
            subprocess.run(
                [sys.executable, __file__, "--write", target, str(rows), str(seed), str(shift)],
                check=True,
            )
        write_capture(root / "now" / "data.csv", root / "capture", min(rows, 100_000))
        size = (root / "base" / "data.csv").stat().st_size / 2**20
        keys = ("pandas", "base", "mon", "cap")
        figures: dict[str, list[tuple[float, int]]] = {k: [] for k in keys}
        script = root / "pandas_describe.py"
        script.write_text(PANDAS)
        for i in range(repeats + 1):  # the first round is a warm-up (page cache), untimed
            out = root / f"run{i}"
            base_env = analyzer(out / "baseline", root / "base", None, csv_fmt)
            mon_env = analyzer(out / "monitor", root / "now", out / "baseline", csv_fmt)
            cap_env = analyzer(out / "capture", root / "capture", out / "baseline", capture_fmt)
            results = {
                "pandas": child(script, [str(root / "base" / "data.csv")]),
                "base": child(RUNTIME, [], base_env),
                "mon": child(RUNTIME, [], mon_env),
                "cap": child(RUNTIME, [], cap_env),
            }
            if i:
                for key, value in results.items():
                    figures[key].append(value)
        violations = json.loads((out / "monitor" / "constraint_violations.json").read_text())
    med = {k: statistics.median(s for s, _ in v) for k, v in figures.items()}
    rss = {k: max(r for _, r in v) / 1024 for k, v in figures.items()}
    both = med["base"] + med["mon"]
    print(f"data: {rows:,} rows x {NUMERIC + CATEGORICAL} columns ({size:.0f} MiB CSV), "
          f"{repeats} repeats, {os.cpu_count()} CPUs; medians beside the baseline")  # fmt: skip
    print(f"pandas read_csv + describe           {med['pandas']:7.2f} s  "
          f"peak RSS {rss['pandas']:6.0f} MiB  (baseline)")  # fmt: skip
    for key, label in (("base", "analyzer baseline job"), ("mon", "analyzer monitoring (csv)")):
        print(f"{label:<36} {med[key]:7.2f} s  peak RSS {rss[key]:6.0f} MiB  "
              f"{med[key] / med['pandas']:.2f}x pandas")  # fmt: skip
    print(f"baseline + monitoring                {both:7.2f} s  "
          f"{both / med['pandas']:.2f}x pandas  (target <= {TARGET_RATIO:.1f}x: "
          f"{'PASS' if both <= TARGET_RATIO * med['pandas'] else 'MISS'})")  # fmt: skip
    print(f"monitoring of a 100k-row capture     {med['cap']:7.2f} s  "
          f"peak RSS {rss['cap']:6.0f} MiB")  # fmt: skip
    drifted = sorted(v["feature_name"] for v in violations["violations"])
    print(f"violations on the shifted copy: {drifted} (expected x1, x3, x5, x7)")


if __name__ == "__main__":
    main()
