"""Hyperparameter tuning jobs in the local service, through plain boto3: each training job really
runs (a tiny script that prints XGBoost's per-round lines, or the project's own train.py).
"""

from __future__ import annotations

import io
import json
import os
import re
import subprocess
import sys
import tarfile
import textwrap
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import boto3
import pytest
from botocore.exceptions import ClientError

from sfn_mlops.local import jobs
from sfn_mlops.local.cloud import LocalCloud
from sfn_mlops.local.jobs import tuning
from sfn_mlops.packaging import build_bundle

BUCKET = "tune-bucket"
XGBOOST = "683313688378.dkr.ecr.us-east-1.amazonaws.com/sagemaker-xgboost:3.0-5"
ROLE = "arn:aws:iam::123456789012:role/SageMakerRole"
REPO = Path(__file__).resolve().parents[2]
NUMBER = r"([-+]?[0-9]*\.?[0-9]+(?:[eE][-+]?[0-9]+)?)"
#: The MetricDefinitions regex for XGBoost's per-round lines, locally (a tab) and in SageMaker's
#: CloudWatch logs (the tab written as #011), as the SageMaker XGBoost image defines its own.
VALIDATION_RMSE = r".*\[[0-9]+\].*(?:\t|#011)validation-rmse:" + NUMBER + ".*"
TRAIN_RMSE = r".*\[[0-9]+\].*(?:\t|#011)train-rmse:" + NUMBER + ".*"
METRICS = [
    {"Name": "validation:rmse", "Regex": VALIDATION_RMSE},
    {"Name": "train:rmse", "Regex": TRAIN_RMSE},
]

#: A stand-in for train.py: XGBoost's eval line per round, from its hyperparameters.
SCRIPT = """
    import json, os, sys, time
    hps = json.loads(os.environ["SM_HPS"])
    if hps.get("fail") == "yes":
        sys.exit(3)
    x = float(hps.get("x", 0.3))
    depth = int(hps.get("depth", 1))
    kind = hps.get("kind", "a")
    rounds = int(hps.get("rounds", 3))
    pause = float(hps.get("pause", 0))
    base = (x - 0.3) ** 2 + 0.1 * depth + {"a": 0.0, "b": 0.5, "bad": 5.0}.get(kind, 1.0)
    if hps.get("silent") == "yes":
        rounds = 0
    for i in range(rounds):
        value = base + 1.0 / (i + 1)
        print(f"[{i}]\\ttrain-rmse:{value / 2:.6f}\\tvalidation-rmse:{value:.6f}", flush=True)
        time.sleep(pause if kind != "slow" else 30)
    print("argv", json.dumps(sys.argv[1:]))
    open(os.path.join(os.environ["SM_MODEL_DIR"], "model.txt"), "w").write("m")
"""


def expected(x: float = 0.3, depth: int = 1, kind: str = "a", rounds: int = 3) -> float:
    """The objective SCRIPT prints last, as the log has it (6 decimals)."""
    base = (x - 0.3) ** 2 + 0.1 * depth + {"a": 0.0, "b": 0.5, "bad": 5.0}.get(kind, 1.0)
    return float(f"{base + 1.0 / rounds:.6f}")


@pytest.fixture
def tune_cloud(cloud: LocalCloud) -> Iterator[LocalCloud]:
    boto3.client("s3").create_bucket(Bucket=BUCKET)
    yield cloud
    tuning.shutdown_all(cloud)
    jobs.shutdown_all(cloud)


@pytest.fixture
def sm(tune_cloud: LocalCloud) -> Any:
    return boto3.client("sagemaker")


@pytest.fixture
def s3(tune_cloud: LocalCloud) -> Any:
    return boto3.client("s3")


def put(s3: Any, key: str, body: bytes | str) -> str:
    s3.put_object(Bucket=BUCKET, Key=key, Body=body)
    return f"s3://{BUCKET}/{key}"


def sourcedir(s3: Any, files: dict[str, bytes]) -> str:
    buffer = io.BytesIO()
    with tarfile.open(fileobj=buffer, mode="w:gz") as tar:
        for name, data in files.items():
            info = tarfile.TarInfo(name)
            info.size = len(data)
            tar.addfile(info, io.BytesIO(data))
    return put(s3, "code/sourcedir.tar.gz", buffer.getvalue())


def script_mode(s3: Any) -> dict[str, str]:
    put(s3, "data/train/train.csv", "1,2\n")
    uri = sourcedir(s3, {"train.py": textwrap.dedent(SCRIPT).encode()})
    return {
        "sagemaker_program": json.dumps("train.py"),
        "sagemaker_submit_directory": json.dumps(uri),
    }


def definition(static: dict[str, str], **overrides: Any) -> dict[str, Any]:
    result: dict[str, Any] = {
        "StaticHyperParameters": static,
        "AlgorithmSpecification": {
            "TrainingImage": XGBOOST,
            "TrainingInputMode": "File",
            "MetricDefinitions": METRICS,
        },
        "RoleArn": ROLE,
        "InputDataConfig": [
            {
                "ChannelName": "train",
                "DataSource": {
                    "S3DataSource": {
                        "S3DataType": "S3Prefix",
                        "S3Uri": f"s3://{BUCKET}/data/train/",
                    }
                },
                "ContentType": "text/csv",
            }
        ],
        "OutputDataConfig": {"S3OutputPath": f"s3://{BUCKET}/models/"},
        "ResourceConfig": {"InstanceCount": 1, "InstanceType": "ml.m5.large", "VolumeSizeInGB": 5},
        "StoppingCondition": {"MaxRuntimeInSeconds": 60},
    }
    result.update(overrides)
    return result


def config(
    strategy: str = "Random",
    *,
    max_jobs: int | None = 4,
    parallel: int = 2,
    ranges: dict[str, Any] | None = None,
    objective: str = "validation:rmse",
    **extra: Any,
) -> dict[str, Any]:
    limits: dict[str, Any] = {"MaxParallelTrainingJobs": parallel}
    if max_jobs is not None:
        limits["MaxNumberOfTrainingJobs"] = max_jobs
    result: dict[str, Any] = {
        "Strategy": strategy,
        "HyperParameterTuningJobObjective": {"Type": "Minimize", "MetricName": objective},
        "ResourceLimits": limits,
        "ParameterRanges": ranges
        if ranges is not None
        else {
            "IntegerParameterRanges": [{"Name": "depth", "MinValue": "1", "MaxValue": "4"}],
            "ContinuousParameterRanges": [
                {"Name": "x", "MinValue": "0.0", "MaxValue": "1.0", "ScalingType": "Linear"}
            ],
            "CategoricalParameterRanges": [{"Name": "kind", "Values": ["a", "b"]}],
        },
    }
    result.update(extra)
    return result


def wait_tuning(sm: Any, name: str, timeout: float = 60.0) -> dict[str, Any]:
    deadline = time.monotonic() + timeout
    while True:
        job = sm.describe_hyper_parameter_tuning_job(HyperParameterTuningJobName=name)
        if job["HyperParameterTuningJobStatus"] in ("Completed", "Failed", "Stopped"):
            return job  # type: ignore[no-any-return]
        assert time.monotonic() < deadline, f"{name} still {job['HyperParameterTuningJobStatus']}"
        time.sleep(0.05)


def training_jobs(sm: Any, name: str, **params: Any) -> list[dict[str, Any]]:
    return sm.list_training_jobs_for_hyper_parameter_tuning_job(  # type: ignore[no-any-return]
        HyperParameterTuningJobName=name, MaxResults=100, **params
    )["TrainingJobSummaries"]


def wait_printing(sm: Any, cloud: LocalCloud, name: str, count: int) -> None:
    """Until ``count`` training jobs of the tuning job print their first round (a stop sent
    before a job's process has its own process group is lost until the runner's SIGKILL)."""
    deadline = time.monotonic() + 10
    while True:
        logs = [jobs.job_log_path(cloud, s["TrainingJobName"]) for s in training_jobs(sm, name)]
        printing = [p for p in logs if p.is_file() and "[0]\t" in p.read_text()]
        if len(printing) >= count:
            return
        assert time.monotonic() < deadline, f"{len(printing)} of {count} jobs print"
        time.sleep(0.02)


def by_index(summaries: list[dict[str, Any]]) -> list[dict[str, Any]]:
    return sorted(summaries, key=lambda s: s["TrainingJobName"].rsplit("-", 2)[-2])


def create(sm: Any, name: str, cfg: dict[str, Any], static: dict[str, str], **kw: Any) -> str:
    arn = sm.create_hyper_parameter_tuning_job(
        HyperParameterTuningJobName=name,
        HyperParameterTuningJobConfig=cfg,
        TrainingJobDefinition=definition(static, **kw),
    )["HyperParameterTuningJobArn"]
    return str(arn)


def _objective(summary: dict[str, Any]) -> float:
    return float(summary["FinalHyperParameterTuningJobObjectiveMetric"]["Value"])


# the whole search ------------------------------------------------------------------------------
def test_random_search_runs_training_jobs_named_as_sagemaker_names_them(
    sm: Any, s3: Any, tune_cloud: LocalCloud
) -> None:
    static = script_mode(s3)
    arn = create(sm, "tune-1", config(RandomSeed=7), static)
    job = wait_tuning(sm, "tune-1")

    assert arn == "arn:aws:sagemaker:us-east-1:123456789012:hyper-parameter-tuning-job/tune-1"
    assert job["HyperParameterTuningJobStatus"] == "Completed", job.get("FailureReason")
    assert job["TrainingJobStatusCounters"] == {
        "Completed": 4,
        "InProgress": 0,
        "RetryableError": 0,
        "NonRetryableError": 0,
        "Stopped": 0,
    }
    assert job["ObjectiveStatusCounters"] == {"Succeeded": 4, "Pending": 0, "Failed": 0}
    assert job["HyperParameterTuningJobConfig"]["TrainingJobEarlyStoppingType"] == "Off"
    assert job["TrainingJobDefinition"]["StaticHyperParameters"] == {
        **static,
        "_tuning_objective_metric": "validation:rmse",
    }
    assert job["CreationTime"] <= job["HyperParameterTuningEndTime"]
    summaries = by_index(training_jobs(sm, "tune-1"))
    assert [s["TrainingJobName"][:11] for s in summaries] == [f"tune-1-00{i}-" for i in range(1, 5)]
    for summary in summaries:
        assert re.fullmatch(r"tune-1-\d{3}-[0-9a-f]{8}", summary["TrainingJobName"])
        tuned = summary["TunedHyperParameters"]
        assert sorted(tuned) == ["depth", "kind", "x"]
        assert 1 <= int(tuned["depth"]) <= 4 and 0.0 <= float(tuned["x"]) <= 1.0
        assert tuned["kind"] in ("a", "b")
        value = expected(float(tuned["x"]), int(tuned["depth"]), tuned["kind"])
        assert summary["FinalHyperParameterTuningJobObjectiveMetric"] == {
            "Type": "Minimize",
            "MetricName": "validation:rmse",
            "Value": pytest.approx(value),
        }
        assert summary["ObjectiveStatus"] == "Succeeded"
        assert summary["TrainingJobStatus"] == "Completed"
        assert summary["TuningJobName"] == "tune-1"
    best = min(summaries, key=_objective)
    assert job["BestTrainingJob"]["TrainingJobName"] == best["TrainingJobName"]
    assert job["BestTrainingJob"]["TunedHyperParameters"] == best["TunedHyperParameters"]

    first = summaries[0]
    described = sm.describe_training_job(TrainingJobName=first["TrainingJobName"])
    assert described["TuningJobArn"] == arn
    assert described["HyperParameters"] == {
        **static,
        **first["TunedHyperParameters"],
        "_tuning_objective_metric": "validation:rmse",
    }
    assert described["AlgorithmSpecification"]["MetricDefinitions"] == METRICS
    finals = {m["MetricName"]: m["Value"] for m in described["FinalMetricDataList"]}
    assert finals == {
        "validation:rmse": pytest.approx(_objective(first)),
        "train:rmse": pytest.approx(_objective(first) / 2, abs=1e-6),
    }
    log = jobs.job_log_path(tune_cloud, first["TrainingJobName"]).read_text()
    assert "--_tuning_objective_metric" in log  # the script got it, as in SageMaker

    # The same RandomSeed gives the same hyperparameters.
    create(sm, "tune-2", config(RandomSeed=7), static)
    wait_tuning(sm, "tune-2")
    again = by_index(training_jobs(sm, "tune-2"))
    assert [s["TunedHyperParameters"] for s in again] == [
        s["TunedHyperParameters"] for s in summaries
    ]


def test_no_more_training_jobs_run_at_once_than_allowed(sm: Any, s3: Any, tune_cloud: LocalCloud):
    static = {**script_mode(s3), "pause": "0.05", "rounds": "4"}
    create(sm, "parallel", config(max_jobs=5, parallel=2, RandomSeed=1), static)
    assert wait_tuning(sm, "parallel")["HyperParameterTuningJobStatus"] == "Completed"

    docs = [
        tune_cloud.metadata.get(jobs.KIND_TRAINING, s["TrainingJobName"])
        for s in training_jobs(sm, "parallel")
    ]
    events = sorted([(d["CreationTime"], 1) for d in docs] + [(d["EndTime"], -1) for d in docs])
    at_once = peak = 0
    for _, step in events:
        at_once += step
        peak = max(peak, at_once)
    assert len(docs) == 5
    assert peak == tuning.parallel_limit(2)  # 2, or 1 on a 1-core machine


def test_list_training_jobs_sorts_filters_and_pages(sm: Any, s3: Any) -> None:
    create(sm, "listed", config(RandomSeed=3), script_mode(s3))
    wait_tuning(sm, "listed")

    by_value = training_jobs(sm, "listed", SortBy="FinalObjectiveMetricValue")
    values = [_objective(s) for s in by_value]
    assert values == sorted(values)
    descending = training_jobs(sm, "listed", SortBy="Name", SortOrder="Descending")
    names = [s["TrainingJobName"] for s in descending]
    assert names == sorted(names, reverse=True)
    assert training_jobs(sm, "listed", StatusEquals="Failed") == []
    page = sm.list_training_jobs_for_hyper_parameter_tuning_job(
        HyperParameterTuningJobName="listed", MaxResults=3
    )
    assert len(page["TrainingJobSummaries"]) == 3 and page["NextToken"]
    rest = sm.list_training_jobs_for_hyper_parameter_tuning_job(
        HyperParameterTuningJobName="listed", NextToken=page["NextToken"]
    )
    assert len(rest["TrainingJobSummaries"]) == 1

    summaries = sm.list_hyper_parameter_tuning_jobs(NameContains="list")[
        "HyperParameterTuningJobSummaries"
    ]
    assert [(s["HyperParameterTuningJobName"], s["Strategy"]) for s in summaries] == [
        ("listed", "Random")
    ]
    assert summaries[0]["HyperParameterTuningJobStatus"] == "Completed"
    assert summaries[0]["TrainingJobStatusCounters"]["Completed"] == 4
    assert summaries[0]["ResourceLimits"] == {
        "MaxNumberOfTrainingJobs": 4,
        "MaxParallelTrainingJobs": 2,
    }
    assert (
        sm.list_hyper_parameter_tuning_jobs(StatusEquals="InProgress")[
            "HyperParameterTuningJobSummaries"
        ]
        == []
    )


def test_grid_search_runs_every_categorical_combination_in_order(sm: Any, s3: Any) -> None:
    ranges = {
        "CategoricalParameterRanges": [
            {"Name": "kind", "Values": ["a", "b"]},
            {"Name": "depth", "Values": ["1", "2", "3"]},
        ]
    }
    create(sm, "grid", config("Grid", max_jobs=None, ranges=ranges), script_mode(s3))
    job = wait_tuning(sm, "grid")

    assert job["HyperParameterTuningJobStatus"] == "Completed"
    tuned = [s["TunedHyperParameters"] for s in by_index(training_jobs(sm, "grid"))]
    assert tuned == [{"kind": k, "depth": d} for k in ("a", "b") for d in ("1", "2", "3")]
    assert job["BestTrainingJob"]["TunedHyperParameters"] == {"kind": "a", "depth": "1"}
    assert job["BestTrainingJob"]["FinalHyperParameterTuningJobObjectiveMetric"]["Value"] == (
        pytest.approx(expected(depth=1, kind="a"))
    )


def test_bayesian_search_uses_the_tpe_sampler_within_the_ranges(sm: Any, s3: Any) -> None:
    ranges = {
        "IntegerParameterRanges": [
            {"Name": "depth", "MinValue": "1", "MaxValue": "64", "ScalingType": "Logarithmic"}
        ],
        "ContinuousParameterRanges": [
            {
                "Name": "x",
                "MinValue": "0.5",
                "MaxValue": "0.999",
                "ScalingType": "ReverseLogarithmic",
            }
        ],
    }
    cfg = config("Bayesian", max_jobs=4, parallel=2, ranges=ranges, RandomSeed=11)
    create(sm, "bayes", cfg, script_mode(s3))
    job = wait_tuning(sm, "bayes")

    assert job["HyperParameterTuningJobStatus"] == "Completed", job.get("FailureReason")
    summaries = training_jobs(sm, "bayes")
    assert len(summaries) == 4
    for summary in summaries:
        tuned = summary["TunedHyperParameters"]
        assert 1 <= int(tuned["depth"]) <= 64
        assert 0.5 <= float(tuned["x"]) <= 0.999
    best = min(summaries, key=_objective)
    assert job["BestTrainingJob"]["TrainingJobName"] == best["TrainingJobName"]


def test_a_discrete_space_never_repeats_a_combination(sm: Any, s3: Any) -> None:
    ranges = {
        "IntegerParameterRanges": [{"Name": "depth", "MinValue": "1", "MaxValue": "2"}],
        "CategoricalParameterRanges": [{"Name": "kind", "Values": ["a", "b"]}],
    }
    for strategy in ("Random", "Bayesian"):
        name = f"all-{strategy.lower()}"
        create(sm, name, config(strategy, max_jobs=4, ranges=ranges, RandomSeed=5), script_mode(s3))
        assert wait_tuning(sm, name)["HyperParameterTuningJobStatus"] == "Completed"
        combos = {tuple(sorted(s["TunedHyperParameters"].items())) for s in training_jobs(sm, name)}
        assert len(combos) == 4


# the project's own training script --------------------------------------------------------------
def test_train_py_objective_is_the_last_validation_line_of_its_log(
    sm: Any, s3: Any, tune_cloud: LocalCloud
) -> None:
    bundle = build_bundle(REPO / "containers").files
    code = put(s3, "code/training/sourcedir.tar.gz", bundle["training/sourcedir.tar.gz"])
    rows = [f"{i % 7 + 0.5 * (i % 3)},{i % 7},{i % 3}" for i in range(60)]
    for channel in ("train", "validation"):
        put(s3, f"prep/{channel}/{channel}.csv", "\n".join(rows) + "\n")
    schema = {
        "target": "y",
        "problem_type": "regression",
        "features": ["a", "b"],
        "categorical": {},
    }
    put(s3, "prep/schema/schema.json", json.dumps(schema))
    channels = [
        {
            "ChannelName": channel,
            "DataSource": {
                "S3DataSource": {
                    "S3DataType": "S3Prefix",
                    "S3Uri": f"s3://{BUCKET}/prep/{channel}/",
                }
            },
        }
        for channel in ("train", "validation", "schema")
    ]
    static = {
        "sagemaker_program": json.dumps("train.py"),
        "sagemaker_submit_directory": json.dumps(code),
        "num_round": "5",
        "eval_metric": "rmse",
    }
    ranges = {
        "ContinuousParameterRanges": [{"Name": "eta", "MinValue": "0.1", "MaxValue": "0.5"}],
    }
    cfg = config(max_jobs=2, parallel=2, ranges=ranges, RandomSeed=2)
    create(sm, "train-py", cfg, static, InputDataConfig=channels)
    job = wait_tuning(sm, "train-py")

    assert job["HyperParameterTuningJobStatus"] == "Completed", job.get("FailureReason")
    for summary in training_jobs(sm, "train-py"):
        log = jobs.job_log_path(tune_cloud, summary["TrainingJobName"]).read_text()
        printed = re.findall(r"^\[4\]\ttrain-rmse:\S+\tvalidation-rmse:(\S+)$", log, re.M)
        assert printed, log
        assert _objective(summary) == pytest.approx(float(printed[-1]))
        described = sm.describe_training_job(TrainingJobName=summary["TrainingJobName"])
        assert described["ModelArtifacts"]["S3ModelArtifacts"].endswith("/output/model.tar.gz")


def test_the_metric_regexes_match_sagemakers_log_lines_too() -> None:
    local = "[12]\ttrain-rmse:1.5\tvalidation-rmse:2.25"
    cloudwatch = "[12]#011train-rmse:1.5#011validation-rmse:2.25"
    plain = "validation-rmse:" + NUMBER  # sfn_mlops.tuning.metric_regex's form matches too
    for line in (local, cloudwatch):
        assert tuning.metric_value(re.compile(VALIDATION_RMSE), line) == 2.25
        assert tuning.metric_value(re.compile(TRAIN_RMSE), line) == 1.5
        assert tuning.metric_value(re.compile(plain), line) == 2.25
    merror = "[3]\ttrain-merror:0.1\tvalidation-merror:0.2"
    error = r".*\[[0-9]+\].*(?:\t|#011)validation-error:" + NUMBER + ".*"
    assert tuning.metric_value(re.compile(error), merror) is None  # error is not merror
    assert tuning.metric_value(re.compile(VALIDATION_RMSE), "[1]\tvalidation-rmsle:0.3") is None


# failures, stops, limits ----------------------------------------------------------------------
def test_no_success_in_five_attempts_fails_the_tuning_job(sm: Any, s3: Any) -> None:
    static = {**script_mode(s3), "fail": "yes"}
    create(sm, "failing", config(max_jobs=8, parallel=1, RandomSeed=1), static)
    job = wait_tuning(sm, "failing")

    assert job["HyperParameterTuningJobStatus"] == "Failed"
    assert job["FailureReason"] == (
        "No training job succeeded after 5 attempts. Please take a look at the training job "
        "failures to get more details."
    )
    assert job["TrainingJobStatusCounters"]["NonRetryableError"] == 5
    assert job["ObjectiveStatusCounters"] == {"Succeeded": 0, "Pending": 0, "Failed": 5}
    assert "BestTrainingJob" not in job
    summaries = training_jobs(sm, "failing")
    assert len(summaries) == 5
    assert all(
        s["FailureReason"].startswith("AlgorithmError: script exited with code 3")
        for s in summaries
    )


def test_a_job_that_emits_no_objective_has_objective_status_failed(sm: Any, s3: Any) -> None:
    ranges = {"CategoricalParameterRanges": [{"Name": "silent", "Values": ["yes", "no"]}]}
    create(sm, "silent", config("Grid", max_jobs=None, parallel=1, ranges=ranges), script_mode(s3))
    job = wait_tuning(sm, "silent")

    assert job["HyperParameterTuningJobStatus"] == "Completed"
    assert job["TrainingJobStatusCounters"]["Completed"] == 2
    assert job["ObjectiveStatusCounters"] == {"Succeeded": 1, "Pending": 0, "Failed": 1}
    assert job["BestTrainingJob"]["TunedHyperParameters"] == {"silent": "no"}
    quiet = next(
        s for s in training_jobs(sm, "silent") if s["TunedHyperParameters"]["silent"] == "yes"
    )
    assert quiet["ObjectiveStatus"] == "Failed"
    assert "FinalHyperParameterTuningJobObjectiveMetric" not in quiet
    assert "FinalMetricDataList" not in sm.describe_training_job(
        TrainingJobName=quiet["TrainingJobName"]
    )


def test_stop_stops_the_running_training_jobs(sm: Any, s3: Any, tune_cloud: LocalCloud) -> None:
    static = {**script_mode(s3), "kind": "slow", "rounds": "2"}
    ranges = {"IntegerParameterRanges": [{"Name": "depth", "MinValue": "1", "MaxValue": "9"}]}
    create(sm, "stopped", config(max_jobs=4, parallel=2, ranges=ranges, RandomSeed=1), static)
    wait_printing(sm, tune_cloud, "stopped", tuning.parallel_limit(2))

    sm.stop_hyper_parameter_tuning_job(HyperParameterTuningJobName="stopped")
    stopping = sm.describe_hyper_parameter_tuning_job(HyperParameterTuningJobName="stopped")
    job = wait_tuning(sm, "stopped")

    assert stopping["HyperParameterTuningJobStatus"] in ("Stopping", "Stopped")
    assert job["HyperParameterTuningJobStatus"] == "Stopped"
    assert job["TrainingJobStatusCounters"]["Stopped"] == tuning.parallel_limit(2)
    assert all(s["TrainingJobStatus"] == "Stopped" for s in training_jobs(sm, "stopped"))
    with pytest.raises(ClientError) as err:
        sm.stop_hyper_parameter_tuning_job(HyperParameterTuningJobName="stopped")
    assert err.value.response["Error"]["Code"] == "ValidationException"
    assert "is in status Stopped" in err.value.response["Error"]["Message"]


def test_max_runtime_stops_the_running_job_and_completes(
    sm: Any, s3: Any, tune_cloud: LocalCloud
) -> None:
    ranges = {"CategoricalParameterRanges": [{"Name": "kind", "Values": ["a", "slow"]}]}
    cfg = config("Grid", max_jobs=None, parallel=1, ranges=ranges)
    cfg["ResourceLimits"]["MaxRuntimeInSeconds"] = 120
    create(sm, "timed", cfg, script_mode(s3))
    wait_printing(sm, tune_cloud, "timed", 2)
    doc = tune_cloud.metadata.get(tuning.KIND_TUNING, "timed")
    tune_cloud.metadata.update(tuning.KIND_TUNING, "timed", CreationTime=doc["CreationTime"] - 121)

    job = wait_tuning(sm, "timed")

    assert job["HyperParameterTuningJobStatus"] == "Completed"
    assert job["TrainingJobStatusCounters"]["Completed"] == 1
    assert job["TrainingJobStatusCounters"]["Stopped"] == 1
    assert job["BestTrainingJob"]["TunedHyperParameters"] == {"kind": "a"}


def test_target_objective_value_ends_the_search(sm: Any, s3: Any) -> None:
    ranges = {"CategoricalParameterRanges": [{"Name": "kind", "Values": ["a", "b", "c", "d"]}]}
    target = {"TargetObjectiveMetricValue": expected(kind="a") + 0.001}
    cfg = config(
        "Grid", max_jobs=None, parallel=1, ranges=ranges, TuningJobCompletionCriteria=target
    )
    create(sm, "target", cfg, script_mode(s3))
    job = wait_tuning(sm, "target")

    assert job["HyperParameterTuningJobStatus"] == "Completed"
    assert [s["TunedHyperParameters"] for s in training_jobs(sm, "target")] == [{"kind": "a"}]


def test_best_objective_not_improving_ends_the_search(sm: Any, s3: Any) -> None:
    values = ["a", "b", "c", "bad", "d"]  # a is best; b, c and bad do not improve on it
    ranges = {"CategoricalParameterRanges": [{"Name": "kind", "Values": values}]}
    criteria = {"BestObjectiveNotImproving": {"MaxNumberOfTrainingJobsNotImproving": 3}}
    cfg = config(
        "Grid", max_jobs=None, parallel=1, ranges=ranges, TuningJobCompletionCriteria=criteria
    )
    create(sm, "plateau", cfg, script_mode(s3))
    job = wait_tuning(sm, "plateau")

    assert job["HyperParameterTuningJobStatus"] == "Completed"
    assert len(training_jobs(sm, "plateau")) == 4
    assert job["TuningJobCompletionDetails"] == {"NumberOfTrainingJobsObjectiveNotImproving": 3}


def test_early_stopping_stops_a_job_worse_than_the_median_of_earlier_ones(sm: Any, s3: Any) -> None:
    static = {**script_mode(s3), "rounds": "16", "pause": "0.05"}
    ranges = {"CategoricalParameterRanges": [{"Name": "kind", "Values": ["a", "bad"]}]}
    cfg = config(
        "Grid", max_jobs=None, parallel=1, ranges=ranges, TrainingJobEarlyStoppingType="Auto"
    )
    create(sm, "early", cfg, static)
    job = wait_tuning(sm, "early")

    assert job["HyperParameterTuningJobStatus"] == "Completed"
    good, bad = by_index(training_jobs(sm, "early"))
    assert good["TrainingJobStatus"] == "Completed"
    assert bad["TrainingJobStatus"] == "Stopped"
    assert job["TrainingJobStatusCounters"]["Stopped"] == 1
    assert bad["TrainingEndTime"] - bad["TrainingStartTime"] < (
        good["TrainingEndTime"] - good["TrainingStartTime"]
    )
    assert job["BestTrainingJob"]["TrainingJobName"] == good["TrainingJobName"]


def test_median_rule() -> None:
    earlier = [[3.0, 2.0, 1.0], [5.0, 4.0, 3.0], [4.0]]
    # epoch 0: running averages 3, 5, 4 -> median 4; epoch 1: 2.5, 4.5 -> 3.5
    assert not tuning.median_rule_stops([4.0], earlier, minimize=True)
    assert tuning.median_rule_stops([4.1], earlier, minimize=True)
    assert tuning.median_rule_stops([1.0, 3.6], earlier, minimize=True)
    assert not tuning.median_rule_stops([1.0, 3.6], earlier, minimize=False)
    assert not tuning.median_rule_stops([9.0], [], minimize=True)  # nothing to compare with
    assert tuning.improves(0.98, 1.0, minimize=True) and not tuning.improves(0.995, 1.0, True)


# what SageMaker rejects --------------------------------------------------------------------------
INTEGER = {"Name": "depth", "MinValue": "1", "MaxValue": "4"}


@pytest.mark.parametrize(
    ("cfg", "static", "message"),
    [
        (config(max_jobs=2, parallel=3), {}, "MaxParallelTrainingJobs (3) must be less than"),
        (
            config(ranges={"IntegerParameterRanges": [{**INTEGER, "MinValue": "5"}]}),
            {},
            "MinValue (5) is greater than MaxValue (4)",
        ),
        (
            config("Grid", max_jobs=None, ranges={"IntegerParameterRanges": [INTEGER]}),
            {},
            "The Grid strategy supports only categorical parameters; ['depth']",
        ),
        (
            config(
                "Grid",
                max_jobs=3,
                ranges={"CategoricalParameterRanges": [{"Name": "kind", "Values": ["a", "b"]}]},
            ),
            {},
            "MaxNumberOfTrainingJobs (3) must equal the number of distinct combinations",
        ),
        (config(), {"depth": "3"}, "Hyperparameter(s) ['depth'] are both static"),
        (
            config(objective="validation:auc"),
            {},
            "A metric is required for this hyperparameter tuning job objective. Provide a metric "
            "in the metric definitions.",
        ),
        (
            config(max_jobs=10, ranges={"IntegerParameterRanges": [INTEGER]}),
            {},
            "You don't have enough combinations of hyperparameter ranges. The total number of "
            "hyperparameter combinations for the provided ranges [4.0] must be equal or greater "
            "than the value of MaxNumberOfJobs, [10]. Provide additional ranges.",
        ),
        (
            config(
                ranges={
                    "ContinuousParameterRanges": [
                        {
                            "Name": "x",
                            "MinValue": "0",
                            "MaxValue": "1",
                            "ScalingType": "Logarithmic",
                        }
                    ]
                }
            ),
            {},
            "Logarithmic scaling works only for ranges whose values are greater than 0",
        ),
        (
            config(
                ranges={
                    "IntegerParameterRanges": [{**INTEGER, "ScalingType": "ReverseLogarithmic"}]
                }
            ),
            {},
            "ReverseLogarithmic scaling is supported only for continuous",
        ),
        (
            config(
                ranges={
                    "ContinuousParameterRanges": [
                        {
                            "Name": "x",
                            "MinValue": "0.1",
                            "MaxValue": "1",
                            "ScalingType": "ReverseLogarithmic",
                        }
                    ]
                }
            ),
            {},
            "entirely within 0 <= x < 1",
        ),
        (
            config(ranges={"IntegerParameterRanges": [{**INTEGER, "MaxValue": "4.5"}]}),
            {},
            "MaxValue '4.5' is not an integer",
        ),
        (config(max_jobs=None), {}, "MaxNumberOfTrainingJobs is required for the Random strategy"),
        (config("Hyperband"), {}, "The Hyperband strategy"),
        (
            config(
                TuningJobCompletionCriteria={
                    "ConvergenceDetected": {"CompleteOnConvergence": "Enabled"}
                }
            ),
            {},
            "ConvergenceDetected",
        ),
    ],
)
def test_sagemakers_checks(sm: Any, cfg: dict, static: dict, message: str) -> None:
    with pytest.raises(ClientError) as err:
        create(sm, "rejected", cfg, static)
    assert err.value.response["Error"]["Code"] == "ValidationException"
    assert message in err.value.response["Error"]["Message"]
    assert sm.list_hyper_parameter_tuning_jobs()["HyperParameterTuningJobSummaries"] == []


def test_what_the_local_runtime_cannot_run_is_refused_by_name(sm: Any, s3: Any) -> None:
    with pytest.raises(ClientError) as err:
        sm.create_hyper_parameter_tuning_job(
            HyperParameterTuningJobName="warm",
            HyperParameterTuningJobConfig=config(),
            TrainingJobDefinition=definition({}),
            WarmStartConfig={
                "ParentHyperParameterTuningJobs": [{"HyperParameterTuningJobName": "old"}],
                "WarmStartType": "IdenticalDataAndAlgorithm",
            },
        )
    assert (
        "WarmStartConfig (warm start from parent tuning jobs) is not emulated locally"
        in (err.value.response["Error"]["Message"])
    )
    spec = {
        "TrainingImage": "123.dkr.ecr.us-east-1.amazonaws.com/mine:1",
        "TrainingInputMode": "File",
        "MetricDefinitions": METRICS,
    }
    with pytest.raises(ClientError) as err:
        create(sm, "image", config(), {}, AlgorithmSpecification=spec)
    assert "has no local runtime" in err.value.response["Error"]["Message"]


def test_names_are_unique_and_unknown_names_not_found(sm: Any, s3: Any) -> None:
    static = script_mode(s3)
    create(sm, "once", config(max_jobs=1, parallel=1, RandomSeed=1), static)
    with pytest.raises(ClientError) as err:
        create(sm, "once", config(max_jobs=1, parallel=1), static)
    assert err.value.response["Error"]["Code"] == "ResourceInUse"
    assert err.value.response["Error"]["Message"] == (
        "A hyperparameter tuning job with the name, once, already exists. Choose a different name."
    )
    wait_tuning(sm, "once")
    for call in (
        sm.describe_hyper_parameter_tuning_job,
        sm.stop_hyper_parameter_tuning_job,
        sm.list_training_jobs_for_hyper_parameter_tuning_job,
    ):
        with pytest.raises(ClientError) as err:
            call(HyperParameterTuningJobName="nope")
        assert err.value.response["Error"]["Code"] == "ResourceNotFound"
        assert err.value.response["Error"]["Message"] == (
            "Amazon SageMaker can't find a tuning job called nope. Type another name."
        )


# the service's own life ------------------------------------------------------------------------
def test_a_tuning_job_whose_service_died_is_failed(sm: Any, tune_cloud: LocalCloud) -> None:
    gone = subprocess.Popen([sys.executable, "-c", "pass"])
    gone.wait()
    arn = tune_cloud.arn("sagemaker", "hyper-parameter-tuning-job/orphan")
    request = {"HyperParameterTuningJobConfig": config(), "TrainingJobDefinition": definition({})}
    objective = request["HyperParameterTuningJobConfig"]["HyperParameterTuningJobObjective"]
    doc = tuning.new_tuning_doc("orphan", arn, request, objective, 1)
    doc.update(OwnerPid=gone.pid, OwnerStartTime=None)
    tune_cloud.metadata.create(tuning.KIND_TUNING, "orphan", doc)

    assert tuning.recover_orphans(tune_cloud) == ["orphan"]
    job = sm.describe_hyper_parameter_tuning_job(HyperParameterTuningJobName="orphan")
    assert job["HyperParameterTuningJobStatus"] == "Failed"
    assert job["FailureReason"] == (
        f"PlatformError: the local service (pid {gone.pid}) stopped while the tuning job ran"
    )
    assert tuning.recover_orphans(tune_cloud) == []


def test_shutdown_ends_the_tuning_job_as_a_platform_error(
    sm: Any, s3: Any, tune_cloud: LocalCloud
) -> None:
    static = {**script_mode(s3), "kind": "slow"}
    ranges = {"IntegerParameterRanges": [{"Name": "depth", "MinValue": "1", "MaxValue": "9"}]}
    cfg = config(max_jobs=3, parallel=1, ranges=ranges, RandomSeed=1)
    create(sm, "at-shutdown", cfg, static)
    wait_printing(sm, tune_cloud, "at-shutdown", 1)

    assert tuning.shutdown_all(tune_cloud) == ["at-shutdown"]
    assert jobs.shutdown_all(tune_cloud) == [training_jobs(sm, "at-shutdown")[0]["TrainingJobName"]]

    job = sm.describe_hyper_parameter_tuning_job(HyperParameterTuningJobName="at-shutdown")
    assert job["HyperParameterTuningJobStatus"] == "Failed"
    assert job["FailureReason"] == (
        f"PlatformError: the local service (pid {os.getpid()}) shut down while the tuning job ran"
    )
    (only,) = training_jobs(sm, "at-shutdown")
    assert only["TrainingJobStatus"] == "Failed"
    assert only["FailureReason"].startswith(f"PlatformError: the local service (pid {os.getpid()})")


# Step Functions' .sync -------------------------------------------------------------------------
def run_sync(tune_cloud: LocalCloud, name: str, cfg: dict, static: dict) -> dict[str, Any]:
    sfn = boto3.client("stepfunctions")
    task = {
        "Type": "Task",
        "Resource": "arn:aws:states:::sagemaker:createHyperParameterTuningJob.sync",
        "Parameters": {
            "HyperParameterTuningJobName": name,
            "HyperParameterTuningJobConfig": cfg,
            "TrainingJobDefinition": definition(static),
        },
        "End": True,
    }
    machine = {"StartAt": "Tune", "States": {"Tune": task}}
    arn = sfn.create_state_machine(name=f"sm-{name}", definition=json.dumps(machine), roleArn=ROLE)[
        "stateMachineArn"
    ]
    execution = sfn.start_execution(stateMachineArn=arn, input="{}")["executionArn"]
    tune_cloud.service("sfn").wait(execution, timeout=60)
    result = sfn.describe_execution(executionArn=execution)
    history = sfn.get_execution_history(executionArn=execution)["events"]
    return {"execution": result, "events": history}


def test_sync_task_waits_and_gives_the_describe_output(
    sm: Any, s3: Any, tune_cloud: LocalCloud
) -> None:
    ran = run_sync(
        tune_cloud, "sync-ok", config(max_jobs=2, parallel=2, RandomSeed=4), script_mode(s3)
    )

    assert ran["execution"]["status"] == "SUCCEEDED"
    output = json.loads(ran["execution"]["output"])
    described = sm.describe_hyper_parameter_tuning_job(HyperParameterTuningJobName="sync-ok")
    assert output["HyperParameterTuningJobStatus"] == "Completed"
    assert (
        output["BestTrainingJob"]["TrainingJobName"]
        == described["BestTrainingJob"]["TrainingJobName"]
    )
    assert set(output) == set(described) - {"ResponseMetadata"}


def test_sync_task_fails_with_the_tuning_job_as_cause(sm: Any, s3: Any, tune_cloud: LocalCloud):
    static = {**script_mode(s3), "fail": "yes"}
    ran = run_sync(tune_cloud, "sync-bad", config(max_jobs=1, parallel=1, RandomSeed=4), static)

    assert ran["execution"]["status"] == "FAILED"
    failed = next(e for e in ran["events"] if e["type"] == "TaskFailed")["taskFailedEventDetails"]
    assert failed["error"] == "States.TaskFailed"
    cause = json.loads(failed["cause"])
    assert cause["HyperParameterTuningJobStatus"] == "Failed"
    assert cause["FailureReason"].startswith("No training job succeeded after 1 attempts.")
