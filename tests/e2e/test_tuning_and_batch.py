"""A tuned run whose best model goes on, then batch scoring with the model it registered."""

from __future__ import annotations

import json
import time
from pathlib import Path
from typing import Any

import boto3
import pandas as pd
import pytest

from sfn_mlops.data import example_dataset
from sfn_mlops.monitor_cli import DEFAULT_ENDPOINT, monitoring_alarms
from sfn_mlops.report import state_output

pytestmark = pytest.mark.e2e

TUNED = "tuned"
TUNING = (
    "tuning={strategy: Random, random_seed: 1, max_jobs: 4, max_parallel_jobs: 2, "
    "ranges: {max_depth: {type: integer, min: 2, max: 6}, "
    "eta: {type: continuous, min: 0.05, max: 0.3, scaling: Logarithmic}}}"
)


@pytest.fixture(scope="module")
def tuned(cli: Any, workspace: Path) -> Any:
    return cli(workspace, "run", "--name", TUNED, "--set", "clarify.enabled=false", "--set", TUNING)


@pytest.fixture(scope="module")
def abalone(tmp_path_factory: pytest.TempPathFactory) -> pd.DataFrame:
    return pd.read_csv(example_dataset(tmp_path_factory.mktemp("example")))


def test_a_tuned_run_trains_every_job_and_its_best_model_goes_on(tuned: Any, aws: Any) -> None:
    assert tuned.code == 0, tuned.out + tuned.err
    jobs = aws.sagemaker.list_training_jobs_for_hyper_parameter_tuning_job(
        HyperParameterTuningJobName=f"{TUNED}-tune"
    )["TrainingJobSummaries"]
    assert len(jobs) == 4 and {job["TrainingJobStatus"] for job in jobs} == {"Completed"}
    tuning = aws.sagemaker.describe_hyper_parameter_tuning_job(
        HyperParameterTuningJobName=f"{TUNED}-tune"
    )
    best = tuning["BestTrainingJob"]
    scores = [job["FinalHyperParameterTuningJobObjectiveMetric"]["Value"] for job in jobs]
    assert best["FinalHyperParameterTuningJobObjectiveMetric"]["Value"] == min(scores)
    output = json.loads(aws.describe(TUNED)["output"])
    assert output["steps"]["train"]["job_name"] == best["TrainingJobName"]
    evaluated = aws.sagemaker.describe_training_job(TrainingJobName=best["TrainingJobName"])
    assert (
        output["steps"]["train"]["model_artifacts"]
        == (evaluated["ModelArtifacts"]["S3ModelArtifacts"])
    )
    summary = tuned.summary(TUNED)
    assert f"Tuning {TUNED}-tune: 4 training jobs completed, 0 failed" in summary
    tuned_values = best["TunedHyperParameters"]
    assert f"best hyperparameters: eta={tuned_values['eta']}, max_depth=" in summary
    assert state_output(aws.history(TUNED), "ReadEvaluation") is not None


def test_batch_scores_a_file_with_the_approved_model_and_keeps_the_ids(
    tuned: Any, abalone: pd.DataFrame, cli: Any, workspace: Path, aws: Any, tmp_path: Path
) -> None:
    rows = abalone.head(50).assign(id=[f"a{i}" for i in range(50)])
    data = tmp_path / "new.csv"
    rows.to_csv(data, index=False)
    scored = cli(
        workspace, "batch", "--data", str(data), "--output", str(tmp_path / "out"),
        "--id-column", "id", "--name", "batch-1",
    )  # fmt: skip
    assert scored.code == 0, scored.out + scored.err
    assert "Data: " in scored.out and "50 rows; ignored columns: rings" in scored.out
    lines = (tmp_path / "out" / "new.csv.out").read_text().splitlines()
    assert [line.split(",")[0] for line in lines] == list(rows["id"])
    features = rows.drop(columns=["id", "rings"])
    body = features.to_csv(header=False, index=False).encode()
    # The endpoint serves the same approved model: the batch's predictions are its answers.
    runtime = boto3.client("sagemaker-runtime")
    served = runtime.invoke_endpoint(EndpointName="sfn-mlops", ContentType="text/csv", Body=body)
    expected = [float(v) for v in served["Body"].read().decode().split()]
    assert [float(line.split(",")[1]) for line in lines] == pytest.approx(expected, abs=1e-5)


@pytest.mark.parametrize(
    ("args", "message"),
    [
        (["--model-version", "99"], "no model version sfn-mlops-models/99"),
        (["--output", "s3://no-such-bucket/x/"], "bucket no-such-bucket cannot be written"),
        (["--id-column", "nope"], "--id-column ['nope'] is not a column"),
    ],
)
def test_bad_batch_input_is_named_before_anything_runs(
    tuned: Any, abalone: pd.DataFrame, cli: Any, workspace: Path, tmp_path: Path,
    args: list[str], message: str,
) -> None:  # fmt: skip
    data = tmp_path / "new.csv"
    abalone.head(5).to_csv(data, index=False)
    out = ["--output", str(tmp_path / "out")] if "--output" not in args else []
    result = cli(workspace, "batch", "--data", str(data), *out, *args)
    assert result.code == 2 and message in result.err, result.out + result.err


def test_an_alarm_started_retraining_tunes_too(tuned: Any, aws: Any) -> None:
    """The Retrain Lambda reruns the tuned run's config: its name leaves room for <name>-tune
    (a tuning job's name has at most 32 characters; its names once had up to 40)."""
    assert tuned.code == 0, tuned.out + tuned.err
    cloudwatch = boto3.client("cloudwatch")
    (alarm, *_) = monitoring_alarms(cloudwatch, DEFAULT_ENDPOINT)
    before = set(aws.execution_names())
    cloudwatch.set_alarm_state(
        AlarmName=alarm["AlarmName"], StateValue="ALARM", StateReason="e2e: retrain with tuning"
    )
    deadline = time.monotonic() + 300
    while True:
        started = [name for name in set(aws.execution_names()) - before]
        if started and aws.describe(started[0])["status"] != "RUNNING":
            break
        assert time.monotonic() < deadline, f"no retraining ended: {started}"
        time.sleep(0.5)
    (name,) = started
    assert len(name) <= 27 and name.startswith(("drift-", "quality-")), name
    assert aws.describe(name)["status"] == "SUCCEEDED", aws.describe(name)
    tuning = aws.sagemaker.describe_hyper_parameter_tuning_job(
        HyperParameterTuningJobName=f"{name}-tune"
    )
    assert tuning["HyperParameterTuningJobStatus"] == "Completed"
    cloudwatch.set_alarm_state(AlarmName=alarm["AlarmName"], StateValue="OK", StateReason="done")
