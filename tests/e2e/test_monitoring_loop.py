"""The monitoring loop on a real local stack: no traffic, the two demo modes, then bad input.

One workspace: a first run deploys the model with its monitors; a monitoring run with no
captured data reports it and raises no alarm; `demo drift` goes from shifted traffic to a
retrained, registered and deployed version, and `demo drift --mode quality` does the same from
falling quality; last, malformed capture lines and bad ground truth are counted, never fatal.
The tests run in this order (each builds on the stack the one before left).
"""

from __future__ import annotations

import csv
import datetime as dt
import re
import uuid
from pathlib import Path
from typing import Any

import boto3
import pytest
from loop_steps import assert_timeline, demo_retraining, retrainings
from waiting import until

from sfn_mlops.demo import wait_for_capture
from sfn_mlops.monitor_cli import DEFAULT_ENDPOINT, monitoring_alarms

pytestmark = pytest.mark.e2e

FIRST = "first"
GROUP = "sfn-mlops-models"
FEATURES = ["M", "0.455", "0.365", "0.095", "0.514", "0.2245", "0.101", "0.15"]


@pytest.fixture(scope="module")
def deployed(cli: Any, workspace: Path) -> Any:
    """Daily monitoring at an hour half a day away: at the tests' time scale an hourly schedule
    would fire every 36 s and start retrainings of its own beside the demos'. The alarms judge
    the default period, the schedule's day (864 s here), in a sliding window: a job's own
    seconds do not shrink with the time scale, and its result still counts."""
    hour = (dt.datetime.now(dt.UTC).hour + 12) % 24
    return cli(
        workspace, "run", "--name", FIRST, "--set", "clarify.enabled=false",
        "--set", "deployment.strategy=canary",
        "--set", f"monitoring.schedule=cron(0 {hour} ? * * *)",
    )  # fmt: skip


def _versions(aws: Any) -> int:
    listed = aws.sagemaker.list_model_packages(ModelPackageGroupName=GROUP)
    return len(listed["ModelPackageSummaryList"])


def _endpoint_config(aws: Any) -> str:
    described = aws.sagemaker.describe_endpoint(EndpointName=DEFAULT_ENDPOINT)
    return str(described["EndpointConfigName"])


def test_a_window_without_traffic_reports_no_data_and_no_alarm(
    deployed: Any, cli: Any, workspace: Path, aws: Any
) -> None:
    assert deployed.code == 0, deployed.out + deployed.err
    result = cli(workspace, "monitor", "run-now", "--kind", "all")
    assert result.code == 0, result.out + result.err
    assert result.out.count("no data in the window") == 2, result.out
    cloudwatch = boto3.client("cloudwatch")
    alarms = until(
        lambda: (found := monitoring_alarms(cloudwatch, DEFAULT_ENDPOINT))
        and all(alarm["StateValue"] != "INSUFFICIENT_DATA" for alarm in found)
        and found,
        "every monitoring alarm to be judged",
    )
    assert all(alarm["StateValue"] != "ALARM" for alarm in alarms), alarms
    assert retrainings(aws) == []


def test_shifted_traffic_retrains_and_deploys_a_new_version(
    cli: Any, workspace: Path, aws: Any
) -> None:
    result = cli(workspace, "demo", "drift", "--ok-timeout", "0")
    assert result.code == 0, result.out + result.err
    retraining = demo_retraining(result.out)
    assert_timeline(result.out, retraining, "sfn-mlops-data-quality")
    assert retrainings(aws) == [retraining] and retraining.startswith("drift-")
    assert "baseline_drift_check length" in result.out
    assert aws.describe(retraining)["status"] == "SUCCEEDED"
    assert f"Registered {GROUP}/2 (Approved)" in result.summary(retraining)
    assert _endpoint_config(aws) == f"{retraining}-config"
    _beats_the_stale_model_on_recent_rows(aws, retraining)


def test_falling_quality_retrains_and_deploys_a_new_version(
    cli: Any, workspace: Path, aws: Any
) -> None:
    result = cli(workspace, "demo", "drift", "--mode", "quality", "--ok-timeout", "0")
    assert result.code == 0, result.out + result.err
    retraining = demo_retraining(result.out)
    assert_timeline(result.out, retraining, "sfn-mlops-model-quality")
    assert retraining.startswith("quality-")
    assert len(retrainings(aws)) == 2, aws.execution_names()
    assert "GreaterThanThreshold rmse" in result.out
    assert aws.describe(retraining)["status"] == "SUCCEEDED"
    assert _versions(aws) == 3
    assert _endpoint_config(aws) == f"{retraining}-config"
    _beats_the_stale_model_on_recent_rows(aws, retraining)
    assert "judged on recent rows only" in result.summary(retraining)


def _beats_the_stale_model_on_recent_rows(aws: Any, retraining: str) -> None:
    report = _evaluation(aws, retraining)
    assert report["data"]["test_from"] == "recent", report["data"]  # judged on the present
    new = report["regression_metrics"]["rmse"]["value"]
    stale = report["champion"]["regression_metrics"]["rmse"]["value"]
    assert new <= 0.7 * stale, (new, stale)  # at least 30% better on post-drift labels


def _evaluation(aws: Any, run: str) -> dict[str, Any]:
    """The run's evaluation.json (in the artifact bucket, which also holds the capture)."""
    return dict(aws.json_object(f"s3://{_bucket(aws)}/runs/{run}/evaluation/evaluation.json"))


def _capture_prefix(aws: Any) -> str:
    """Where the endpoint's current config captures (one destination per config)."""
    config = aws.sagemaker.describe_endpoint_config(EndpointConfigName=_endpoint_config(aws))
    destination = str(config["DataCaptureConfig"]["DestinationS3Uri"])
    return destination.removeprefix("s3://").split("/", 1)[1]


def _bucket(aws: Any) -> str:
    """The endpoint's capture bucket: the stack's artifact bucket."""
    config = aws.sagemaker.describe_endpoint_config(EndpointConfigName=_endpoint_config(aws))
    return str(config["DataCaptureConfig"]["DestinationS3Uri"].removeprefix("s3://").split("/")[0])


def test_malformed_capture_and_bad_ground_truth_are_counted_not_fatal(
    cli: Any, workspace: Path, aws: Any, tmp_path: Path
) -> None:
    since = dt.datetime.now(dt.UTC)
    runtime = boto3.client("sagemaker-runtime")
    ids = [f"bad-input-{i}" for i in range(40)]
    for inference_id in ids:
        runtime.invoke_endpoint(
            EndpointName=DEFAULT_ENDPOINT, ContentType="text/csv",
            Body=",".join(FEATURES).encode(), InferenceId=inference_id,
        )  # fmt: skip
    bucket, destination = _bucket(aws), _capture_prefix(aws)
    aws.s3.put_object(
        Bucket=bucket,
        Key=f"{destination}/{DEFAULT_ENDPOINT}/AllTraffic/{since:%Y/%m/%d/%H}/{uuid.uuid4()}.jsonl",
        Body=b'not json\n{"captureData": 5}\n{"no": "capture"}\n',
    )
    labels = tmp_path / "labels.csv"
    with open(labels, "w", newline="") as stream:
        writer = csv.writer(stream)
        writer.writerow(["inference_id", "label"])
        writer.writerows([[i, "10"] for i in ids[:35]] + [[i, "many"] for i in ids[35:]])
        writer.writerows([["never-sent-1", "9"], ["never-sent-2", "9"]])
    assert cli(workspace, "monitor", "ground-truth", str(labels)).code == 0
    wait_for_capture(aws.s3, bucket, since, len(ids) + 3)
    result = cli(workspace, "monitor", "run-now", "--kind", "all")
    assert result.code == 0, result.out + result.err
    assert result.out.count("3 malformed capture lines") == 2, result.out
    assert "5 invalid labels" in result.out, result.out
    # the 2 never sent, and the labels of requests the earlier deployments served (their
    # captures are under their own configs' destinations, which this run does not read)
    unknown = re.search(r"(\d+) unknown event ids", result.out)
    assert unknown and int(unknown[1]) >= 2, result.out
    assert "sfn-mlops-model-quality: Completed" in result.out
