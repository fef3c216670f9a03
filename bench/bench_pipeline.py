"""Target 1: `sfn-mlops run` on abalone, against the workspace's local service.

Targets (issue 10): warm wall (service already up, a run already done in the workspace) <= 2.0 s
from process spawn to exit; cold wall (fresh workspace, no service: the command starts it)
<= 5 s; overhead (warm wall - the jobs' own work) <= 25 % of the warm wall. A job's own work is
its script's process from start to exit, measured in the same run (see common.JobTiming: the
start is the process's /proc start time the runner records, the exit is the end of the
"Training" transition for training jobs and is bracketed by file times for processing jobs,
which record none).

Each repeat: a fresh workspace with no service (cold: the CLI starts the service, deploys,
copies abalone), then a second run in the same workspace with the service still up (warm),
then `control.stop`. Baselines in the same repeat, interleaved: a bare interpreter
(`python -c pass`) and an interpreter that imports what `sfn-mlops run` imports. After the
repeats, one more warm run under `python -X importtime` (not counted) shows what the CLI's
imports cost. Usage: python bench/bench_pipeline.py [--quick] [--repeats N]
"""

from __future__ import annotations

import argparse
import json
import subprocess
import sys
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent))

import common  # noqa: E402

WARM_TARGET = 2.0
COLD_TARGET = 5.0
OVERHEAD_TARGET = 0.25
BEFORE_WARM = 4.5  # the figure for the in-process local cloud (docs: 4.79 s at 5d6ad81)
CLI_IMPORTS = """
import json, time
t0 = time.perf_counter()
import sfn_mlops.cli, sfn_mlops.local.control, sfn_mlops.data, sfn_mlops.follow, sfn_mlops.report
t1 = time.perf_counter()
import boto3
t2 = time.perf_counter()
clients = {}
for name in ("s3", "stepfunctions", "sagemaker"):
    started = time.perf_counter()
    boto3.client(name, endpoint_url="http://127.0.0.1:9", region_name="us-east-1")
    clients[name] = time.perf_counter() - started
print(json.dumps({"sfn_mlops": t1 - t0, "boto3": t2 - t1, **clients}))
"""


#: `--training-slice`: the pipeline as issue 10 measured it, without the Clarify states.
TRAINING_SLICE = ("--set", "clarify.enabled=false")
RUN_ARGS: tuple[str, ...] = ()


def measure(workspace: Path) -> dict:
    run = common.run_cli(workspace, *RUN_ARGS)
    t = common.timings(workspace, run)
    jobs = t.job_seconds
    return {
        "wall": run.wall,
        "jobs": jobs,
        "overhead": run.wall - jobs,
        "share": (run.wall - jobs) / run.wall,
        "per_job": {s: j.process for s, j in t.jobs.items()},
        "per_state": {s: st.seconds for s, st in t.states.items()},
        "exit_bracket": {s: j.exit_high - j.exit_low for s, j in t.jobs.items()},
        "launch": {
            s: j.script_start - j.launch_requested
            for s, j in t.jobs.items()
            if j.launch_requested == j.launch_requested  # noqa: PLR0124 - NaN: not recorded
        },
        "job_parts": {
            s: {
                "entered -> created": j.created - t.states[s].entered,
                "created -> runner start": j.started - j.created,
                "runner start -> script start": j.download,
                "script": j.process,
                "script exit -> EndTime": j.upload,
                "EndTime -> TaskSucceeded": t.task_done.get(s, t.states[s].exited) - j.ended,
                "TaskSucceeded -> exited": t.states[s].exited
                - t.task_done.get(s, t.states[s].exited),
            }
            for s, j in t.jobs.items()
        },
        "train_seconds": t.train_seconds,
        "breakdown": common.breakdown(run, t, workspace),
        "peak_rss": run.peak_rss,
        "cli_cpu": run.cli_cpu,
        "service_cpu": run.service_cpu,
        "jobs_cpu": run.jobs_cpu,
        "was_up": run.service_was_up,
    }


def spawn_wall(code: str) -> tuple[float, dict]:
    """Spawn -> exit of ``python -c code``, and the JSON it printed last (if any)."""
    started = time.perf_counter()
    out = subprocess.run(
        [sys.executable, "-c", code], check=True, cwd=common.REPO, capture_output=True, text=True
    ).stdout.strip()
    wall = time.perf_counter() - started
    return wall, json.loads(out.splitlines()[-1]) if out else {}


def deploy_calls(workspace: Path, count: int = 3) -> list[float]:
    """The warm deploy alone: the CLI's admin call, repeated against the running service."""
    from sfn_mlops.local import control

    info = control.find(workspace)
    walls = []
    for _ in range(count):
        started = time.perf_counter()
        control.admin(info, "deploy", {"project": str(common.REPO)})
        walls.append(time.perf_counter() - started)
    return walls


def summarize(label: str, results: list[dict]) -> dict:
    keys = ("wall", "jobs", "overhead", "share", "peak_rss", "cli_cpu", "service_cpu", "jobs_cpu")
    med = {k: common.median([r[k] for r in results]) for k in keys}
    print(f"\n## {label}: medians of {len(results)} runs")
    print(
        f"wall {med['wall']:.2f} s  vs  the jobs' own work {med['jobs']:.2f} s "
        f"(wall/jobs {common.ratio(med['wall'], med['jobs'])}); overhead "
        f"{med['overhead']:.2f} s = {med['share']:.0%} of the wall; "
        f"peak RSS (CLI + service trees) {med['peak_rss'] / 2**20:.0f} MiB"
    )
    print(
        f"CPU in the run: CLI process {med['cli_cpu']:.2f} s, service process (engine, HTTP, "
        f"runner threads) {med['service_cpu']:.2f} s, job processes {med['jobs_cpu']:.2f} s"
    )
    print("walls: " + ", ".join(f"{r['wall']:.2f}" for r in results))
    rows = []
    for state in results[0]["per_state"]:
        state_s = common.median([r["per_state"].get(state, float("nan")) for r in results])
        # a job of a Parallel branch is put on the state its branch entered last, which can
        # differ from run to run: only states that ran a job in every run are compared
        if all(state in r["per_job"] for r in results):
            job_s = common.median([r["per_job"][state] for r in results])
            bracket = common.median([r["exit_bracket"][state] for r in results])
            rows.append(
                [
                    state,
                    f"{state_s:.3f}",
                    f"{job_s:.3f}",
                    f"{state_s - job_s:.3f}",
                    common.ratio(state_s, job_s),
                    f"{bracket * 1000:.0f}",
                ]
            )
        else:
            rows.append([state, f"{state_s:.3f}", "-", f"{state_s:.3f}", "-", "-"])
    print(
        common.table(
            rows,
            [
                "state",
                "state s",
                "job script s",
                "state - job s",
                "state/job",
                "exit bracket ms",
            ],
        )
    )
    columns = list(next(iter(results[0]["job_parts"].values())))
    rows = [
        [state]
        + [
            f"{common.median([r['job_parts'][state][c] for r in results]) * 1000:.0f}"
            for c in columns
        ]
        for state in results[0]["job_parts"]
        if all(state in r["job_parts"] for r in results)
    ]
    print("job states, ms (medians):")
    print(common.table(rows, ["state", *columns]))
    launch = [v for r in results for v in r["launch"].values()]
    if launch:
        print(
            "training job: 'Training' transition start -> script process start (fork server "
            f"launch): {common.median(launch) * 1000:.0f} ms"
        )
    train = [r["train_seconds"] for r in results if r["train_seconds"] is not None]
    if train:
        print(
            f"xgboost.train() alone inside the training job (training_metrics.json): "
            f"{common.median(train):.3f} s of the {med_job(results, 'Train'):.3f} s training script"
        )
    parts: list[str] = []
    for r in results:
        parts += [p for p in r["breakdown"] if p not in parts]
    rows = [
        [
            p,
            f"{common.median([r['breakdown'].get(p, 0.0) for r in results]):.3f}",
            f"{common.median([r['breakdown'].get(p, 0.0) / r['wall'] for r in results]):.0%}",
        ]
        for p in parts
    ]
    print("\nwhere the wall goes (medians of each part; the parts of one run add up to its wall):")
    print(common.table(rows, ["part", "seconds", "share of wall"]))
    return med


def med_job(results: list[dict], state: str) -> float:
    return common.median([r["per_job"].get(state, float("nan")) for r in results])


def import_profile(workspace: Path) -> None:
    """One warm run under -X importtime (not counted): the costliest top-level imports."""
    run = common.run_cli(workspace, python_flags=("-X", "importtime"))
    costs: dict[str, int] = {}
    for _, line in run.lines:
        if not line.startswith("import time:") or "|" not in line:
            continue
        _, cumulative, name = (part.strip() for part in line[12:].split("|"))
        if cumulative.isdigit() and not line.rsplit("|", 1)[1].startswith("  "):
            costs[name] = costs.get(name, 0) + int(cumulative)
    total = sum(costs.values())
    top = sorted(costs.items(), key=lambda kv: -kv[1])[:10]
    print(
        f"\n## imports of one warm `sfn-mlops run` (-X importtime, wall {run.wall:.2f} s, "
        f"not counted): {total / 1e6:.2f} s of top-level imports"
    )
    print(common.table([[n, f"{us / 1e6:.3f}"] for n, us in top], ["top-level import", "s"]))


def iam_pair(workspace: Path, repeat: int, enforced: list[float], off: list[float]) -> None:
    """Two more warm runs, local IAM enforced and off, in alternating order by repeat."""
    from sfn_mlops.local.authorization import write_mode

    order = [("enforce", enforced), ("off", off)]
    try:
        for mode, walls in order if repeat % 2 == 0 else reversed(order):
            write_mode(workspace, mode)
            walls.append(measure(workspace)["wall"])
    finally:
        write_mode(workspace, "enforce")


def iam_summary(enforced: list[float], off: list[float]) -> None:
    on, bare = common.median(enforced), common.median(off)
    print(
        f"\nwarm wall, local IAM enforced vs off ({len(enforced)} pairs, alternating order): "
        f"median {on:.2f} s vs {bare:.2f} s = {common.ratio(on, bare)} "
        f"(target within 10%: {common.verdict(on <= bare * 1.10)})"
    )


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--quick", action="store_true", help="2 repeats instead of 5")
    parser.add_argument("--repeats", type=int)
    parser.add_argument("--no-import-profile", action="store_true")
    parser.add_argument(
        "--training-slice",
        action="store_true",
        help="run without Clarify (processing, training, evaluation, gate), as issue 10 measured",
    )
    args = parser.parse_args()
    global RUN_ARGS
    RUN_ARGS = TRAINING_SLICE if args.training_slice else ()
    repeats = args.repeats or (2 if args.quick else 5)
    common.print_machine()
    cold, warm, bare, imports = [], [], [], []
    warm_enforced: list[float] = []  # issue 21: warm runs with local IAM enforced and off
    warm_off: list[float] = []
    import_parts: list[dict] = []
    deploys: list[float] = []
    for i in range(repeats):
        with common.workspace("sfn-bench-pipeline-") as workspace:
            if common.service_info(workspace) is not None:
                raise RuntimeError(f"{workspace}: a service runs before the cold run")
            cold.append(measure(workspace))
            warm.append(measure(workspace))
            if not warm[-1]["was_up"] or cold[-1]["was_up"]:
                raise RuntimeError("cold run found a service, or warm run did not")
            iam_pair(workspace, i, warm_enforced, warm_off)
            deploys += deploy_calls(workspace)
            if i == repeats - 1 and not args.no_import_profile:
                import_profile(workspace)
            stopped = common.stop_service(workspace)
        bare.append(spawn_wall("pass")[0])
        wall, parts = spawn_wall(CLI_IMPORTS)
        imports.append(wall)
        import_parts.append(parts)
        print(
            f"repeat {i + 1}/{repeats}: cold {cold[-1]['wall']:.2f} s "
            f"(jobs {cold[-1]['jobs']:.2f} s), warm {warm[-1]['wall']:.2f} s "
            f"(jobs {warm[-1]['jobs']:.2f} s); bare python {bare[-1]:.3f} s, python + the "
            f"CLI's imports {imports[-1]:.3f} s; service stopped: {stopped}; "
            f"load {common.loadavg()}",
            flush=True,
        )
    iam_summary(warm_enforced, warm_off)
    c = summarize("cold (fresh workspace, no service: the command starts it)", cold)
    w = summarize("warm (service up, a run already done in the workspace)", warm)
    b, im = common.median(bare), common.median(imports)
    print(
        f"\nbaselines in the same repeats (spawn -> exit, medians of {repeats}): bare "
        f"`python -c pass` {b:.3f} s; python + the imports of `sfn-mlops run` {im:.3f} s. "
        f"Warm wall / bare python: {common.ratio(w['wall'], b)}; warm wall / python + CLI "
        f"imports: {common.ratio(w['wall'], im)}; warm wall / before (in-process local cloud, "
        f"{BEFORE_WARM} s): {common.ratio(w['wall'], BEFORE_WARM)}"
    )
    print(
        "in that process: "
        + ", ".join(
            f"{label} {common.median([p[key] for p in import_parts]):.3f} s"
            for key, label in (
                ("sfn_mlops", "import sfn_mlops.cli (+ control, data, follow, report)"),
                ("boto3", "import boto3"),
                ("s3", "first client (s3)"),
                ("stepfunctions", "stepfunctions client"),
                ("sagemaker", "sagemaker client"),
            )
        )
    )
    print(
        f"the warm deploy alone (admin call to the running service, {len(deploys)} calls): "
        f"median {common.median(deploys):.3f} s"
    )
    print(f"\n## Targets (load average at the end: {common.loadavg()})")
    rows = [
        _target_row("wall, warm", w["wall"], WARM_TARGET, "{:.2f} s"),
        _target_row("wall, cold", c["wall"], COLD_TARGET, "{:.2f} s"),
        _target_row("overhead share, warm", w["share"], OVERHEAD_TARGET, "{:.0%}"),
        _target_row("overhead share, cold (not a target)", c["share"], OVERHEAD_TARGET, "{:.0%}"),
    ]
    rows[-1][-1] = "-"
    print(common.table(rows, ["figure", "median", "target", "ratio to target", "verdict"]))
    return 0


def _target_row(figure: str, value: float, target: float, fmt: str) -> list[str]:
    """One figure against its upper bound: the value, the bound, their ratio and the verdict."""
    bound = f"<= {target:.1f} s" if fmt.endswith(" s") else f"<= {target:.0%}"
    return [
        figure,
        fmt.format(value),
        bound,
        common.ratio(value, target),
        common.verdict(value <= target),
    ]


if __name__ == "__main__":
    sys.exit(main())
