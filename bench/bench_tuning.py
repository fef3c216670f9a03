"""A local hyperparameter tuning job against the same configurations trained one after another.

Target: tuning 20 training jobs on abalone (at most 2 in parallel) takes at most 1.5x the time
of training the same 20 configurations one after another in one Python process with
``xgboost.train``, measured side by side in one run.

How: one workspace and its real local service (``control.ensure_running``, as the CLI starts
it), driven through plain boto3 pointed at it. The abalone data is split and encoded by the
pipeline's own preprocessing code (``containers/processing/preprocess.py``: 70/15/15, seed 42);
the training jobs run the pipeline's ``containers/training/train.py`` in script mode with the
pipeline's base hyperparameters (150 rounds, ``reg:squarederror``, ``eval_metric=rmse``) and
tune max_depth 3-9, eta 0.05-0.3 (log), min_child_weight 1-10 and subsample 0.5-1.0 against
``validation:rmse`` read from each job's log. A warm-up tuning job of 2 training jobs runs
first and is not counted (the service's fork server has started by then, as it has for a
user's second run).

- **tuning**: CreateHyperParameterTuningJob (20 jobs, MaxParallelTrainingJobs 2, RandomSeed)
  to the first DescribeHyperParameterTuningJob that says Completed, polled every 0.25 s as the
  local engine's ``createHyperParameterTuningJob.sync`` polls it (one Describe costs about
  14 ms of CPU: polled every 20 ms it took a third of a core from the training jobs). The
  service's own CreationTime -> HyperParameterTuningEndTime is printed beside it.
- **sequential baseline**: a fresh ``python`` process reads the same train/validation CSVs
  once with the jobs' reader (``jobkit.read_target_first_csv``), builds the DMatrix once, and
  calls ``xgboost.train`` for each of the 20 configurations the tuning job ran (its
  TunedHyperParameters with the static ones, resolved by ``train.resolve_hyperparameters``,
  the same rounds, the train+validation evals without printing, ``nthread`` = the threads each
  job got, ``SM_NUM_CPUS``, and the jobs' ``OMP_WAIT_POLICY=PASSIVE``). Timed inside the
  process from the first read to the last train; the interpreter's start and imports are
  reported beside it, not counted.
- For information: the same loop with ``nthread`` = all cores.

Tuning runs and baselines alternate, for Bayesian (the config's default strategy; judged) and
Random (for information), 5 times each. Usage: python bench/bench_tuning.py [--repeats N]
"""

from __future__ import annotations

import argparse
import json
import os
import subprocess
import sys
import tempfile
import time
from pathlib import Path
from typing import Any

sys.path.insert(0, str(Path(__file__).resolve().parent))

import common  # noqa: E402

TARGET = 1.5
JOBS = 20
PARALLEL = 2
POLL_SECONDS = 0.25  # engine._SYNC_DESCRIBE_INTERVAL for a tuning job's .sync
BUCKET = "bench-tuning"
IMAGE = "683313688378.dkr.ecr.us-east-1.amazonaws.com/sagemaker-xgboost:3.0-5"
ROLE = "arn:aws:iam::123456789012:role/SageMakerRole"
NUMBER = r"([-+]?[0-9]*\.?[0-9]+(?:[eE][-+]?[0-9]+)?)"
OBJECTIVE = "validation:rmse"
METRICS = [{"Name": OBJECTIVE, "Regex": r".*\[[0-9]+\].*(?:\t|#011)validation-rmse:" + NUMBER}]
RANGES = {
    "IntegerParameterRanges": [
        {"Name": "max_depth", "MinValue": "3", "MaxValue": "9", "ScalingType": "Linear"},
        {"Name": "min_child_weight", "MinValue": "1", "MaxValue": "10", "ScalingType": "Linear"},
    ],
    "ContinuousParameterRanges": [
        {"Name": "eta", "MinValue": "0.05", "MaxValue": "0.3", "ScalingType": "Logarithmic"},
        {"Name": "subsample", "MinValue": "0.5", "MaxValue": "1.0", "ScalingType": "Linear"},
    ],
}
STATIC = {"num_round": "150", "objective": "reg:squarederror", "eval_metric": "rmse"}

BASELINE = r"""
import json, sys, time
started = time.perf_counter()
spec = json.loads(sys.argv[1])
sys.path[:0] = spec["paths"]
import jobkit
xgb = jobkit.import_xgboost()
imported = time.perf_counter()
def matrix(path):
    y, x = jobkit.read_target_first_csv(path)
    return xgb.DMatrix(x, label=y, feature_names=spec["features"], nthread=spec["nthread"])
dtrain = matrix(spec["train"])
dvalid = matrix(spec["validation"])
for params, rounds in spec["configs"]:
    xgb.train(dict(params, nthread=spec["nthread"]), dtrain, num_boost_round=rounds,
              evals=[(dtrain, "train"), (dvalid, "validation")], verbose_eval=False)
done = time.perf_counter()
print(json.dumps({"seconds": done - imported, "startup": imported - started}))
"""


# ------------------------------------------------------------------ data and code
def prepare(folder: Path) -> dict[str, Path]:
    """abalone split and encoded by the preprocessing job's code; its files by channel."""
    sys.path[:0] = [str(common.CONTAINERS / "common"), str(common.CONTAINERS / "processing")]
    import preprocess

    from sfn_mlops.data import example_dataset

    raw = folder / "raw"
    raw.mkdir(parents=True)
    example_dataset(raw)
    out = folder / "prepared"
    split = preprocess.Split(train=0.7, validation=0.15, test=0.15, seed=42)
    preprocess.preprocess(
        input_dir=str(raw),
        output_dir=str(out),
        target="rings",
        problem_type="regression",
        categorical_columns=["sex"],
        split=split,
    )
    return {c: out / c / f"{c}.csv" for c in ("train", "validation")} | {
        "schema": out / "schema" / "schema.json"
    }


def upload(aws: dict[str, Any], files: dict[str, Path]) -> dict[str, str]:
    """The channels and the training code in the local S3; the static hyperparameters."""
    from sfn_mlops.packaging import build_bundle

    s3 = aws["s3"]
    s3.create_bucket(Bucket=BUCKET)
    for channel, path in files.items():
        s3.put_object(Bucket=BUCKET, Key=f"data/{channel}/{path.name}", Body=path.read_bytes())
    code = build_bundle(common.CONTAINERS).files["training/sourcedir.tar.gz"]
    s3.put_object(Bucket=BUCKET, Key="code/sourcedir.tar.gz", Body=code)
    return {
        **STATIC,
        "sagemaker_program": json.dumps("train.py"),
        "sagemaker_submit_directory": json.dumps(f"s3://{BUCKET}/code/sourcedir.tar.gz"),
    }


def definition(static: dict[str, str]) -> dict[str, Any]:
    channels = [
        {
            "ChannelName": channel,
            "DataSource": {
                "S3DataSource": {
                    "S3DataType": "S3Prefix",
                    "S3Uri": f"s3://{BUCKET}/data/{channel}/",
                }
            },
        }
        for channel in ("train", "validation", "schema")
    ]
    return {
        "StaticHyperParameters": static,
        "AlgorithmSpecification": {
            "TrainingImage": IMAGE,
            "TrainingInputMode": "File",
            "MetricDefinitions": METRICS,
        },
        "RoleArn": ROLE,
        "InputDataConfig": channels,
        "OutputDataConfig": {"S3OutputPath": f"s3://{BUCKET}/models/"},
        "ResourceConfig": {"InstanceCount": 1, "InstanceType": "ml.m5.large", "VolumeSizeInGB": 5},
        "StoppingCondition": {"MaxRuntimeInSeconds": 600},
    }


# ------------------------------------------------------------------ the two ways
def tune(aws: dict[str, Any], name: str, strategy: str, jobs: int, static: dict, seed: int) -> dict:
    sm = aws["sm"]
    config = {
        "Strategy": strategy,
        "HyperParameterTuningJobObjective": {"Type": "Minimize", "MetricName": OBJECTIVE},
        "ResourceLimits": {"MaxNumberOfTrainingJobs": jobs, "MaxParallelTrainingJobs": PARALLEL},
        "ParameterRanges": RANGES,
        "RandomSeed": seed,
    }
    started = time.perf_counter()
    sm.create_hyper_parameter_tuning_job(
        HyperParameterTuningJobName=name,
        HyperParameterTuningJobConfig=config,
        TrainingJobDefinition=definition(static),
    )
    while True:
        job = sm.describe_hyper_parameter_tuning_job(HyperParameterTuningJobName=name)
        if job["HyperParameterTuningJobStatus"] not in ("InProgress", "Stopping"):
            break
        time.sleep(POLL_SECONDS)
    wall = time.perf_counter() - started
    if job["HyperParameterTuningJobStatus"] != "Completed":
        raise RuntimeError(f"{name}: {job['HyperParameterTuningJobStatus']}: {job}")
    summaries = sm.list_training_jobs_for_hyper_parameter_tuning_job(
        HyperParameterTuningJobName=name, MaxResults=100
    )["TrainingJobSummaries"]
    service = (job["HyperParameterTuningEndTime"] - job["CreationTime"]).total_seconds()
    return {
        "wall": wall,
        "service": service,
        "tuned": [s["TunedHyperParameters"] for s in summaries],
        "best": job["BestTrainingJob"]["FinalHyperParameterTuningJobObjectiveMetric"]["Value"],
    }


def baseline(files: dict[str, Path], tuned: list[dict[str, str]], nthread: int) -> dict:
    """The same configurations, one after another, in one fresh Python process."""
    sys.path[:0] = [str(common.CONTAINERS / "common"), str(common.CONTAINERS / "training")]
    import train as train_script

    schema = json.loads(files["schema"].read_text())
    configs = []
    for hps in tuned:
        params, rounds, early = train_script.resolve_hyperparameters({**STATIC, **hps}, schema)
        if early:
            raise SystemExit("early_stopping_rounds is set: the baseline would not match")
        configs.append((params, rounds))
    spec = {
        "paths": [str(common.CONTAINERS / "common")],
        "train": str(files["train"]),
        "validation": str(files["validation"]),
        "features": list(schema["features"]),
        "configs": configs,
        "nthread": nthread,
    }
    from sfn_mlops.local.jobs.launch import RUNTIME_DEFAULTS

    started = time.perf_counter()
    out = subprocess.run(
        [sys.executable, "-c", BASELINE, json.dumps(spec)],
        check=True,
        capture_output=True,
        text=True,
        cwd=common.REPO,
        env={**os.environ, **RUNTIME_DEFAULTS},  # the jobs' OpenMP setting (PASSIVE waits)
    )
    result = json.loads(out.stdout.strip().splitlines()[-1])
    result["process"] = time.perf_counter() - started
    return dict(result)


# ------------------------------------------------------------------ the run
def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--repeats", type=int, default=5)
    args = parser.parse_args()
    common.print_machine()
    import boto3

    from sfn_mlops.local import control
    from sfn_mlops.local.jobs.training import job_cpus

    threads, cores = job_cpus(), len(os.sched_getaffinity(0))
    rows: dict[str, dict[str, list[float]]] = {}
    with common.workspace("sfn-bench-tuning-") as workspace:
        files = prepare(Path(tempfile.mkdtemp(dir=workspace, prefix="data-")))
        info = control.ensure_running(workspace)
        aws = {
            name: boto3.client(
                service, endpoint_url=info.url, region_name="us-east-1", **common.keys(workspace)
            )
            for name, service in (("sm", "sagemaker"), ("s3", "s3"))
        }
        static = upload(aws, files)
        warm = tune(aws, "warm-up", "Random", 2, static, seed=0)
        print(f"warm-up tuning job (2 jobs, not counted): {warm['wall']:.2f} s", flush=True)
        for repeat in range(1, args.repeats + 1):
            for strategy in ("Bayesian", "Random"):
                name = f"{strategy.lower()}-{repeat}"
                tuned = tune(aws, name, strategy, JOBS, static, seed=repeat)
                same = baseline(files, tuned["tuned"], threads)
                wide = baseline(files, tuned["tuned"], cores)
                row = rows.setdefault(strategy, {})
                for key, value in (
                    ("tuning", tuned["wall"]),
                    ("service", tuned["service"]),
                    ("baseline", same["seconds"]),
                    ("startup", same["startup"]),
                    ("wide", wide["seconds"]),
                    ("best", tuned["best"]),
                    ("paired", tuned["wall"] / same["seconds"]),
                ):
                    row.setdefault(key, []).append(value)
                print(
                    f"{strategy} repeat {repeat}/{args.repeats}: tuning {tuned['wall']:.2f} s "
                    f"(service {tuned['service']:.2f} s), sequential xgboost.train "
                    f"{same['seconds']:.2f} s (nthread={threads}; +{same['startup']:.2f} s "
                    f"start and imports), nthread={cores} {wide['seconds']:.2f} s; ratio "
                    f"{tuned['wall'] / same['seconds']:.2f}x; best {OBJECTIVE} "
                    f"{tuned['best']:.4f}; load {common.loadavg()}",
                    flush=True,
                )
    print(f"\n## Tuning {JOBS} training jobs on abalone (max {PARALLEL} in parallel): medians")
    table = []
    for strategy, row in rows.items():
        med = {key: common.median(values) for key, values in row.items()}
        ok = med["tuning"] <= TARGET * med["baseline"]
        table.append(
            [
                strategy + (" (judged)" if strategy == "Bayesian" else " (info)"),
                f"{med['tuning']:.2f} s",
                f"{med['baseline']:.2f} s",
                common.ratio(med["tuning"], med["baseline"]),
                common.verdict(ok) if strategy == "Bayesian" else "-",
                f"{med['wide']:.2f} s ({common.ratio(med['tuning'], med['wide'])})",
                f"{med['paired']:.2f}x",
                f"{med['best']:.4f}",
            ]
        )
    print(
        common.table(
            table,
            [
                "strategy",
                "tuning job",
                f"sequential, nthread={threads}",
                f"ratio (target <= {TARGET}x)",
                "verdict",
                f"sequential, nthread={cores}",
                "median of each repeat's ratio",
                f"best {OBJECTIVE}",
            ],
        )
    )
    print(f"load average at the end: {common.loadavg()}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
