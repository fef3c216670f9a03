"""Target 3: the pipeline's training step against a bare ``xgboost.train`` on the same data.

Target: the training step's wall at most 1.3x a bare ``xgboost.train`` with the same data, params,
num_round and nthread, measured in the same run. The bare baseline reads the training job's own
train/validation CSVs with the same reader (jobkit.read_target_first_csv) and is timed two ways:
- as a fresh ``python`` process (spawn -> exit: interpreter, imports, read, DMatrix, train): the
  fair baseline for a job, and the one the 1.3x target is judged on, against the Train state's
  duration in the execution history (TaskStateEntered -> TaskStateExited);
- in this process (read + DMatrix + train, and xgboost.train alone), against the training job's
  own ``train_seconds`` (xgboost.train alone inside the job).
Pipeline runs and baselines alternate so machine noise hits them alike.
Usage: python bench/bench_training.py [--quick] [--repeats N]
"""

from __future__ import annotations

import argparse
import json
import os
import shutil
import subprocess
import sys
import tempfile
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent))

import common  # noqa: E402

TARGET = 1.3
# The job runner starts jobs with OMP_WAIT_POLICY=PASSIVE unless set (jobs.py base_env); give the
# baselines the same OpenMP setting. Set before xgboost (libgomp) is loaded in this process.
os.environ.setdefault("OMP_WAIT_POLICY", "PASSIVE")
DATA_DIR = Path(tempfile.gettempdir()) / "sfn-bench-data"

BARE = r"""
import json, sys, time
spec = json.loads(sys.argv[1])
sys.path.insert(0, spec["jobkit_dir"])
import jobkit
xgb = jobkit.import_xgboost()  # the same import as the training job
def matrix(path):
    y, x = jobkit.read_target_first_csv(path)
    return xgb.DMatrix(x, label=y, feature_names=spec["features"], nthread=spec["nthread"])
dtrain = matrix(spec["train"])
dvalid = matrix(spec["validation"])
started = time.perf_counter()
xgb.train(spec["params"], dtrain, num_boost_round=spec["num_round"],
          evals=[(dtrain, "train"), (dvalid, "validation")], verbose_eval=False)
print(json.dumps({"train_seconds": time.perf_counter() - started}))
"""


def bare_spec(t: common.RunTimings, keep: Path, nthread: int) -> dict:
    """Copy the training job's inputs to ``keep`` and resolve its params as train.py does."""
    sys.path[:0] = [str(common.CONTAINERS / "common"), str(common.CONTAINERS / "training")]
    import train as train_script  # containers/training/train.py

    from sfn_mlops.local.jobs import decode_hyperparameters

    data = t.train_job_dir / "opt_ml" / "input" / "data"
    keep.mkdir(parents=True, exist_ok=True)
    files = {}
    for channel in ("train", "validation", "schema"):
        source = next((data / channel).iterdir())
        files[channel] = str(shutil.copy(source, keep / source.name))
    schema = json.loads(Path(files["schema"]).read_text())
    hps = decode_hyperparameters(t.train_hyperparameters)
    params, num_round, early = train_script.resolve_hyperparameters(hps, schema)
    if early:
        raise SystemExit("early_stopping_rounds is set: the bare baseline would not match")
    params["nthread"] = nthread
    return {
        "jobkit_dir": str(common.CONTAINERS / "common"),
        "train": files["train"],
        "validation": files["validation"],
        "features": list(schema["features"]),
        "params": params,
        "num_round": num_round,
        "nthread": nthread,
    }


def bare_fresh(spec: dict) -> tuple[float, float]:
    started = time.perf_counter()
    out = subprocess.run(
        [sys.executable, "-c", BARE, json.dumps(spec)],
        check=True,
        capture_output=True,
        text=True,
        cwd=common.REPO,
    )
    wall = time.perf_counter() - started
    return wall, json.loads(out.stdout.strip().splitlines()[-1])["train_seconds"]


def bare_in_process(spec: dict, nthread: int | None = None) -> tuple[float, float]:
    sys.path.insert(0, spec["jobkit_dir"])
    import jobkit

    xgb = jobkit.import_xgboost()

    nthread = nthread or spec["nthread"]
    params = dict(spec["params"], nthread=nthread)
    started = time.perf_counter()
    mats = []
    for path in (spec["train"], spec["validation"]):
        y, x = jobkit.read_target_first_csv(path)
        mats.append(xgb.DMatrix(x, label=y, feature_names=spec["features"], nthread=nthread))
    train_start = time.perf_counter()
    xgb.train(
        params,
        mats[0],
        num_boost_round=spec["num_round"],
        evals=[(mats[0], "train"), (mats[1], "validation")],
        verbose_eval=False,
    )
    end = time.perf_counter()
    return end - started, end - train_start


def pipeline(args: list[str]) -> tuple[common.RunTimings, Path]:
    workspace = Path(tempfile.mkdtemp(prefix="sfn-bench-train-"))
    run = common.run_cli(workspace, *args)
    return common.timings(workspace, run), workspace


def bench_size(label: str, args: list[str], repeats: int, nthread: int) -> dict:
    rows: dict[str, list[float]] = {
        k: []
        for k in ("state", "job", "job_train", "fresh", "fresh_train", "inproc", "inproc_train")
    }
    spec = None
    keep = Path(tempfile.mkdtemp(prefix="sfn-bench-train-data-"))
    single = None
    try:
        for i in range(repeats):
            t, workspace = pipeline(args)
            try:
                if spec is None:
                    spec = bare_spec(t, keep, nthread)
            finally:
                common.stop_service(workspace)
                shutil.rmtree(workspace, ignore_errors=True)
            rows["state"].append(t.states["Train"].seconds)
            rows["job"].append(t.jobs["Train"].process)
            rows["job_train"].append(t.train_seconds or float("nan"))
            fresh, fresh_train = bare_fresh(spec)
            rows["fresh"].append(fresh)
            rows["fresh_train"].append(fresh_train)
            inproc, inproc_train = bare_in_process(spec)
            rows["inproc"].append(inproc)
            rows["inproc_train"].append(inproc_train)
            print(
                f"{label} repeat {i + 1}/{repeats}: Train state {rows['state'][-1]:.2f} s, "
                f"job process {rows['job'][-1]:.2f} s, bare fresh process {fresh:.2f} s, "
                f"bare in-process {inproc:.2f} s (xgb.train {inproc_train:.2f} s vs "
                f"{rows['job_train'][-1]:.2f} s in the job)",
                flush=True,
            )
        single = bare_in_process(spec, nthread=1) if nthread != 1 else None
    finally:
        shutil.rmtree(keep, ignore_errors=True)
    med = {k: common.median(v) for k, v in rows.items()}
    med["nthread1_train"] = single[1] if single else float("nan")
    med["params"] = spec["params"] if spec else {}
    med["num_round"] = spec["num_round"] if spec else 0
    return med


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--quick", action="store_true", help="3 repeats, abalone only")
    parser.add_argument("--repeats", type=int)
    args = parser.parse_args()
    common.print_machine()
    nthread = len(os.sched_getaffinity(0))  # what the job runner gives the job (SM_NUM_CPUS)
    sizes = [("abalone (4,177 rows)", [], args.repeats or (3 if args.quick else 5))]
    if not args.quick:
        big = common.make_abalone_like(1_000_000, DATA_DIR / "abalone_1000000.csv", seed=1_000_000)
        sizes.append(("1M rows", common.data_args(big), args.repeats or 3))
    results = {label: bench_size(label, a, n, nthread) for label, a, n in sizes}
    for label, m in results.items():
        print(f"\n## {label}: medians; params {m['params']}, num_round {m['num_round']}")
        print(
            common.table(
                [
                    [
                        "Train state (history)",
                        f"{m['state']:.2f}",
                        "bare, fresh process",
                        f"{m['fresh']:.2f}",
                        common.ratio(m["state"], m["fresh"]),
                    ],
                    [
                        "training job process",
                        f"{m['job']:.2f}",
                        "bare, fresh process",
                        f"{m['fresh']:.2f}",
                        common.ratio(m["job"], m["fresh"]),
                    ],
                    [
                        "Train state (history)",
                        f"{m['state']:.2f}",
                        "bare, in-process read+train",
                        f"{m['inproc']:.2f}",
                        common.ratio(m["state"], m["inproc"]),
                    ],
                    [
                        "xgboost.train in the job",
                        f"{m['job_train']:.2f}",
                        "xgboost.train in-process",
                        f"{m['inproc_train']:.2f}",
                        common.ratio(m["job_train"], m["inproc_train"]),
                    ],
                    [
                        "xgboost.train in-process, nthread=1",
                        f"{m['nthread1_train']:.2f}",
                        f"xgboost.train in-process, nthread={nthread}",
                        f"{m['inproc_train']:.2f}",
                        common.ratio(m["nthread1_train"], m["inproc_train"]),
                    ],
                ],
                ["measured", "seconds", "baseline", "seconds", "ratio"],
            )
        )
    print(f"\n## Target 3: Train state <= {TARGET}x a bare xgboost.train in a fresh process")
    print(
        common.table(
            [
                [
                    label,
                    f"{m['state']:.2f} s",
                    f"{m['fresh']:.2f} s",
                    common.ratio(m["state"], m["fresh"]),
                    common.verdict(m["state"] <= TARGET * m["fresh"]),
                    common.ratio(m["state"], m["inproc"]),
                ]
                for label, m in results.items()
            ],
            [
                "data",
                "Train state",
                "bare fresh process",
                "ratio (judged)",
                "verdict",
                "ratio to in-process (info)",
            ],
        )
    )
    return 0


if __name__ == "__main__":
    sys.exit(main())
