"""The bytes a run adds to the workspace, by category (issue 6 item 6).

A fresh workspace (no service: the command starts one), one abalone run, then a second run in
the same workspace; after each, the files under the workspace are summed by category:

- objects: ``objects/`` (the object store: staged data, splits, models, reports, job code);
- jobs: job folders less their logs (the scratch ``/opt/ml`` trees, archives);
- logs: the jobs' ``job.log`` files and ``logs/`` (service and Lambda logs);
- metadata: ``metadata.db`` and its WAL after a checkpoint (SQLite reuses freed pages);
- other: the example data cache (``datasets/``), reports, the service's record.

Each file is counted once per inode, so a hard link into the object store adds nothing.
With ``prune`` available, ``sfn-mlops prune --keep 1`` is run at the end and its effect shown.
Usage: python bench/bench_workspace.py [--clarify]
"""

from __future__ import annotations

import argparse
import sqlite3
import subprocess
import sys
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent))

import common  # noqa: E402

CATEGORIES = ("objects", "jobs", "logs", "metadata", "other")
NO_CLARIFY = ("--set", "clarify.enabled=false")


def category(relative: Path) -> str:
    top = relative.parts[0]
    if top == "objects":
        return "objects"
    if top == "jobs":
        return "logs" if relative.name == "job.log" else "jobs"
    if top == "logs":
        return "logs"
    if top.startswith("metadata.db"):
        return "metadata"
    return "other"


def checkpoint(workspace: Path) -> None:
    """Fold the WAL into the database so the figure is the data kept, not the log of writes."""
    db = workspace / "metadata.db"
    if db.is_file():
        with sqlite3.connect(db, timeout=30) as connection:
            connection.execute("PRAGMA wal_checkpoint(TRUNCATE)")


def sizes(workspace: Path) -> dict[str, int]:
    """Bytes per category; a file with several names (hard links) counts once."""
    checkpoint(workspace)
    totals = dict.fromkeys(CATEGORIES, 0)
    seen: set[tuple[int, int]] = set()
    for path in workspace.rglob("*"):
        if path.is_symlink() or not path.is_file():
            continue
        stat = path.stat()
        if (stat.st_dev, stat.st_ino) in seen:
            continue
        seen.add((stat.st_dev, stat.st_ino))
        totals[category(path.relative_to(workspace))] += stat.st_size
    totals["total"] = sum(totals.values())
    return totals


def has_prune() -> bool:
    argv = [str(common.CLI), "prune", "--help"]
    return subprocess.run(argv, capture_output=True, cwd=common.REPO).returncode == 0


def prune(workspace: Path) -> str:
    argv = [str(common.CLI), "--workspace", str(workspace), "prune", "--keep", "1"]
    done = subprocess.run(argv, capture_output=True, text=True, cwd=common.REPO)
    if done.returncode != 0:
        raise RuntimeError(f"prune exited {done.returncode}: {done.stderr}")
    return done.stdout.strip().splitlines()[-1] if done.stdout.strip() else ""


def kb(value: int) -> str:
    return f"{value / 1000:,.0f} kB"


def report(rows: dict[str, dict[str, int]]) -> str:
    names = list(rows)
    header = ["category", *names]
    body = [[name, *(kb(rows[column][name]) for column in names)] for name in CATEGORIES]
    body.append(["total", *(kb(rows[column]["total"]) for column in names)])
    return common.table(body, header)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--clarify", action="store_true", help="run with Clarify (default off)")
    args = parser.parse_args()
    run_args = () if args.clarify else NO_CLARIFY
    common.print_machine()
    print(f"run: sfn-mlops run {' '.join(run_args)} (abalone, 4,177 rows, 216,900 B CSV)")
    with common.workspace("bench-ws-") as workspace:
        common.run_cli(workspace, *run_args)
        first = sizes(workspace)
        common.run_cli(workspace, *run_args)
        second = sizes(workspace)
        rows = {
            "after run 1 (cold)": first,
            "added by run 2": {k: second[k] - first[k] for k in second},
            "after run 2": second,
        }
        if has_prune():
            line = prune(workspace)
            after = sizes(workspace)
            rows["after prune --keep 1"] = after
            print(f"prune --keep 1: {line}")
        print(report(rows))


if __name__ == "__main__":
    main()
