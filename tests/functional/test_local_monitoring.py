"""Local Model Monitor through plain boto3: job definitions, monitoring schedules, their
executions as processing jobs (staging, environment, outputs, CloudWatch metrics, status) and
SageMaker's errors.

The endpoint is a real one of the local control plane (CreateModel, CreateEndpointConfig with
DataCaptureConfig, CreateEndpoint) whose data plane is a stand-in that serves nothing: monitoring
reads DescribeEndpoint and the capture objects, which the tests put in the local S3 themselves.
The monitoring container is the scikit-learn framework image running ``PROBE`` (it records what
it was given and writes violations and metric lines), so staging and publishing are checked
without the local analyzer runtime.
"""

from __future__ import annotations

import datetime as dt
import functools
import json
import subprocess
import time
import uuid
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

import boto3
import pytest
from botocore.exceptions import ClientError
from waiting import until

from sfn_mlops.local.cloud import LocalCloud
from sfn_mlops.local.errors import AwsError
from sfn_mlops.local.jobs import monitoring
from sfn_mlops.local.services.sagemaker_monitoring import wait_for_execution

BUCKET = "monitoring"
ENDPOINT = "churn"
CAPTURE = f"s3://{BUCKET}/capture"
REPORTS = f"s3://{BUCKET}/reports"
ROLE = "arn:aws:iam::123456789012:role/SageMakerRole"
SKLEARN = "683313688378.dkr.ecr.us-east-1.amazonaws.com/sagemaker-scikit-learn:1.2-1-cpu-py3"
XGBOOST = "683313688378.dkr.ecr.us-east-1.amazonaws.com/sagemaker-xgboost:3.0-5"
ANALYZER = "156813124566.dkr.ecr.us-east-1.amazonaws.com/sagemaker-model-monitor-analyzer"
MONITOR_RUNTIME = Path(__file__).resolve().parents[2] / "containers" / "monitor" / "run.py"
HOURLY = "cron(0 * ? * * *)"
UTC = dt.timezone.utc
#: Deliveries and monitoring runs happen on threads: poll for them.
eventually = functools.partial(
    until, what="the monitoring run", timeout=10.0, poll=0.02
)
PROBE = """
import json, os, pathlib, sys
env = {k: v for k, v in os.environ.items() if k.islower() or k.startswith(("SFN_MLOPS_", "PROBE"))}
out = pathlib.Path(os.environ["output_path"])
def listing(folder):
    root = pathlib.Path(folder)
    return sorted(str(p.relative_to(root)) for p in root.rglob("*") if p.is_file())
record = {
    "env": env,
    "capture": listing(os.environ["dataset_source"]),
    "baseline": [pathlib.Path(os.environ[k]).read_text()
                 for k in ("baseline_statistics", "baseline_constraints") if k in os.environ],
    "ground_truth": listing(os.environ["ground_truth_source"])
                    if "ground_truth_source" in os.environ else None,
}
(out / "probe.json").write_text(json.dumps(record))
if os.environ.get("PROBE_FAIL"):
    pathlib.Path(os.environ["SFN_MLOPS_MESSAGE_FILE"]).write_text("ClientError: probe failed")
    sys.exit(1)
violations = [{"feature_name": "x", "constraint_check_type": "baseline_drift_check",
               "description": "drift"}] * int(os.environ.get("PROBE_VIOLATIONS", "0"))
(out / "constraint_violations.json").write_text(json.dumps({"violations": violations}))
dims = [{"Name": "Endpoint", "Value": os.environ["sagemaker_endpoint_name"]},
        {"Name": "MonitoringSchedule", "Value": os.environ["sagemaker_monitoring_schedule_name"]}]
lines = [
    json.dumps({"MetricName": "feature_baseline_drift_x", "Timestamp": os.environ["end_time"],
                "Dimensions": dims, "Value": 0.25}),
    "not json",
    json.dumps({"MetricName": "no_value", "Timestamp": os.environ["end_time"]}),
    json.dumps({"MetricName": "feature_data_x", "Timestamp": os.environ["end_time"],
                "Dimensions": dims, "Unit": "None",
                "StatisticValues": {"SampleCount": 4, "Sum": 10, "Minimum": 1, "Maximum": 4}}),
]
metrics = pathlib.Path(os.environ["SFN_MLOPS_METRICS_DIR"])
(metrics / "metrics.jsonl").write_text("\\n".join(lines) + "\\n")
"""


class StandInHost:
    """The endpoints' data plane, serving nothing (the control plane is the real one)."""

    def serve(self, endpoint_name: str, fleets: Any, capture: Any) -> int:
        return 9000

    def stop(self, endpoint_name: str) -> None:
        pass

    def stop_all(self) -> None:
        pass


@pytest.fixture
def sm(cloud: LocalCloud) -> Iterator[Any]:
    cloud.endpoint_hosts = StandInHost()  # type: ignore[attr-defined]
    client = boto3.client("sagemaker")
    boto3.client("s3").create_bucket(Bucket=BUCKET)
    client.create_model(
        ModelName="churn-model",
        PrimaryContainer={"Image": XGBOOST, "ModelDataUrl": f"s3://{BUCKET}/model.tar.gz"},
        ExecutionRoleArn=ROLE,
    )
    client.create_endpoint_config(
        EndpointConfigName="churn-config",
        ProductionVariants=[
            {"VariantName": "AllTraffic", "ModelName": "churn-model",
             "InstanceType": "ml.m5.large", "InitialInstanceCount": 1}
        ],
        DataCaptureConfig={
            "EnableCapture": True, "InitialSamplingPercentage": 100, "DestinationS3Uri": CAPTURE,
            "CaptureOptions": [{"CaptureMode": "Input"}, {"CaptureMode": "Output"}],
        },
    )  # fmt: skip
    client.create_endpoint(EndpointName=ENDPOINT, EndpointConfigName="churn-config")
    eventually(lambda: client.describe_endpoint(EndpointName=ENDPOINT)["EndpointStatus"]
               == "InService")  # fmt: skip
    yield client
    cloud.service("sagemaker").stop_monitoring()


def code_of(err: pytest.ExceptionInfo[ClientError]) -> str:
    return str(err.value.response["Error"]["Code"])


def steady_now() -> dt.datetime:
    """Now, at least 15 s before the next hour: the run's window has the hours the test saw."""
    now = dt.datetime.now(UTC)
    if now.minute == 59 and now.second >= 45:
        time.sleep(61 - now.second)
        now = dt.datetime.now(UTC)
    return now


def hour_path(moment: dt.datetime) -> str:
    return moment.strftime("%Y/%m/%d/%H")


def put_capture(
    moment: dt.datetime, outputs: dict[str, str] | None = None, variant: str = "AllTraffic"
) -> str:
    """A capture object as an endpoint writes it (a line per event id -> CSV output); its key
    under the endpoint's folder."""
    name = f"{moment:%M-%S}-{moment.microsecond // 1000:03d}-{uuid.uuid4()}.jsonl"
    relative = f"{variant}/{hour_path(moment)}/{name}"
    lines = [
        json.dumps({
            "captureData": {
                "endpointInput": {"observedContentType": "text/csv", "mode": "INPUT",
                                  "data": "1,2", "encoding": "CSV"},
                "endpointOutput": {"observedContentType": "text/csv", "mode": "OUTPUT",
                                   "data": output, "encoding": "CSV"},
            },
            "eventMetadata": {"eventId": event_id,
                              "inferenceTime": f"{moment:%Y-%m-%dT%H:%M:%S}Z"},
            "eventVersion": "0",
        })
        for event_id, output in (outputs or {str(uuid.uuid4()): "0.7"}).items()
    ]  # fmt: skip
    boto3.client("s3").put_object(
        Bucket=BUCKET, Key=f"capture/{ENDPOINT}/{relative}", Body="\n".join(lines) + "\n"
    )
    return f"{ENDPOINT}/{relative}"


def probe_app(tmp_path: Path) -> dict[str, Any]:
    script = tmp_path / "probe.py"
    script.write_text(PROBE)
    return {"ImageUri": SKLEARN, "ContainerEntrypoint": ["python3", str(script)]}


def endpoint_input(**extra: Any) -> dict[str, Any]:
    return {"EndpointName": ENDPOINT, "LocalPath": "/opt/ml/processing/input/endpoint", **extra}


OUTPUT = {
    "MonitoringOutputs": [
        {"S3Output": {"S3Uri": REPORTS, "LocalPath": "/opt/ml/processing/output",
                      "S3UploadMode": "Continuous"}}
    ]
}  # fmt: skip
RESOURCES = {"ClusterConfig": {"InstanceCount": 1, "InstanceType": "ml.m5.xlarge",
                               "VolumeSizeInGB": 20}}  # fmt: skip


def data_quality(
    sm: Any, name: str, app: dict[str, Any], env: dict[str, str] | None = None, **extra: Any
) -> str:
    s3 = boto3.client("s3")
    s3.put_object(Bucket=BUCKET, Key="baseline/statistics.json", Body=b'{"version": 0.0}')
    s3.put_object(Bucket=BUCKET, Key="baseline/constraints.json", Body=b'{"features": []}')
    return str(
        sm.create_data_quality_job_definition(
            JobDefinitionName=name,
            DataQualityBaselineConfig={
                "ConstraintsResource": {"S3Uri": f"s3://{BUCKET}/baseline/constraints.json"},
                "StatisticsResource": {"S3Uri": f"s3://{BUCKET}/baseline/statistics.json"},
            },
            DataQualityAppSpecification={**app, "Environment": env or {}},
            DataQualityJobInput={"EndpointInput": endpoint_input()},
            DataQualityJobOutputConfig=OUTPUT,
            JobResources=RESOURCES,
            RoleArn=ROLE,
            StoppingCondition={"MaxRuntimeInSeconds": 600},
            **extra,
        )["JobDefinitionArn"]
    )


def model_quality(sm: Any, name: str, app: dict[str, Any], **extra: Any) -> str:
    return str(
        sm.create_model_quality_job_definition(
            JobDefinitionName=name,
            ModelQualityAppSpecification={**app, "ProblemType": "BinaryClassification"},
            ModelQualityJobInput={
                "EndpointInput": endpoint_input(
                    ProbabilityAttribute="0", ProbabilityThresholdAttribute=0.5
                ),
                "GroundTruthS3Input": {"S3Uri": f"s3://{BUCKET}/ground-truth"},
            },
            ModelQualityJobOutputConfig=OUTPUT,
            JobResources=RESOURCES,
            RoleArn=ROLE,
            **extra,
        )["JobDefinitionArn"]
    )


def inline_definition(app: dict[str, Any]) -> dict[str, Any]:
    return {
        "MonitoringInputs": [{"EndpointInput": endpoint_input()}],
        "MonitoringOutputConfig": OUTPUT,
        "MonitoringResources": RESOURCES,
        "MonitoringAppSpecification": app,
        "Environment": {"PROBE_VIOLATIONS": "1"},
        "RoleArn": ROLE,
    }


def schedule_config(
    definition: str, expression: str = HOURLY, kind: str = "DataQuality", **window: str
) -> dict[str, Any]:
    return {
        "ScheduleConfig": {"ScheduleExpression": expression, **window},
        "MonitoringJobDefinitionName": definition,
        "MonitoringType": kind,
    }


def run_now(sm: Any, name: str, definition: str, kind: str = "DataQuality") -> dict[str, Any]:
    sm.create_monitoring_schedule(
        MonitoringScheduleName=name,
        MonitoringScheduleConfig=schedule_config(
            definition, "NOW", kind, DataAnalysisStartTime="-PT1H", DataAnalysisEndTime="-PT0H"
        ),
    )
    return wait_for_execution(sm, name, timeout=15, poll=0.05)


def probe_record(summary: dict[str, Any]) -> dict[str, Any]:
    job = boto3.client("sagemaker").describe_processing_job(
        ProcessingJobName=summary["ProcessingJobArn"].rpartition("/")[2]
    )
    uri = job["ProcessingOutputConfig"]["Outputs"][0]["S3Output"]["S3Uri"]
    bucket, _, prefix = uri.removeprefix("s3://").partition("/")
    body = boto3.client("s3").get_object(Bucket=bucket, Key=f"{prefix}/probe.json")["Body"]
    return dict(json.loads(body.read()))


# errors ---------------------------------------------------------------------------------------
def test_requests_sagemaker_rejects_are_rejected(sm: Any, tmp_path: Path) -> None:
    app = probe_app(tmp_path)
    data_quality(sm, "dq", app)

    def error(call: Callable[[], Any]) -> tuple[str, str]:
        with pytest.raises(ClientError) as err:
            call()
        return code_of(err), str(err.value.response["Error"]["Message"])

    def schedule(config: dict[str, Any], name: str = "s") -> Callable[[], Any]:
        return lambda: sm.create_monitoring_schedule(
            MonitoringScheduleName=name, MonitoringScheduleConfig=config
        )

    unknown_image = {"ImageUri": "1.dkr.ecr.us-east-1.amazonaws.com/mine:1"}
    assert error(lambda: data_quality(sm, "dq2", unknown_image))[0] == "ValidationException"
    assert error(lambda: data_quality(sm, "dq2", {"ImageUri": SKLEARN}))[0] == (
        "ValidationException"  # a framework image runs its ContainerEntrypoint
    )
    code, message = error(lambda: data_quality(sm, "dq", app))
    assert code == "ResourceInUse" and "dq" in message
    assert error(lambda: data_quality(sm, "bad_name", app))[0] == "ValidationException"
    for expression in ("cron(0 12 * * ? *)", "cron(30 * ? * * *)", "cron(0 24 ? * * *)",
                       "rate(1 hour)", "Hourly: cron(0 * ? * * *)"):  # fmt: skip
        code, message = error(schedule(schedule_config("dq", expression)))
        assert (code, message.startswith("Invalid ScheduleExpression")) == (
            "ValidationException",
            True,
        ), expression
    code, message = error(schedule(schedule_config("dq", "NOW")))
    assert (code, "DataAnalysisStartTime" in message) == ("ValidationException", True)
    for start, end in (("-PT0H", "-PT1H"), ("-P2D", "-PT0H"), ("-PT1H", "PT1H"), ("-1H", "-PT0H")):
        config = schedule_config("dq", "NOW", DataAnalysisStartTime=start, DataAnalysisEndTime=end)
        assert error(schedule(config))[0] == "ValidationException", (start, end)
    assert error(schedule(schedule_config("missing")))[0] == "ValidationException"
    assert error(schedule({**schedule_config("dq"), "MonitoringType": "ModelBias"}))[0] == (
        "ValidationException"
    )
    both = {**schedule_config("dq"), "MonitoringJobDefinition": inline_definition(app)}
    assert error(schedule(both))[0] == "ValidationException"
    sm.delete_endpoint(EndpointName=ENDPOINT)
    eventually(lambda: not sm.list_endpoints()["Endpoints"])
    code, message = error(schedule(schedule_config("dq")))
    assert (code, "Could not find endpoint" in message) == ("ValidationException", True)
    for call in (
        lambda: sm.describe_monitoring_schedule(MonitoringScheduleName="none"),
        lambda: sm.delete_monitoring_schedule(MonitoringScheduleName="none"),
        lambda: sm.start_monitoring_schedule(MonitoringScheduleName="none"),
        lambda: sm.stop_monitoring_schedule(MonitoringScheduleName="none"),
        lambda: sm.describe_data_quality_job_definition(JobDefinitionName="none"),
        lambda: sm.delete_model_quality_job_definition(JobDefinitionName="none"),
    ):
        assert error(call)[0] == "ResourceNotFound"


# schedules ------------------------------------------------------------------------------------
def test_definitions_and_schedules_crud(sm: Any, cloud: LocalCloud, tmp_path: Path) -> None:
    cloud.time_scale = 1.0  # nothing fires during the test: the next hour is real time away
    app = probe_app(tmp_path)
    dq_arn = data_quality(sm, "dq", app)
    assert dq_arn == "arn:aws:sagemaker:us-east-1:123456789012:data-quality-job-definition/dq"
    model_quality(sm, "mq", app)
    described = sm.describe_data_quality_job_definition(JobDefinitionName="dq")
    assert described["DataQualityJobInput"]["EndpointInput"]["EndpointName"] == ENDPOINT
    assert described["JobDefinitionArn"] == dq_arn and "Tags" not in described
    listed = sm.list_model_quality_job_definitions(EndpointName=ENDPOINT)
    assert [s["MonitoringJobDefinitionName"] for s in listed["JobDefinitionSummaries"]] == ["mq"]
    assert (
        sm.list_data_quality_job_definitions(EndpointName="other")["JobDefinitionSummaries"] == []
    )

    arn = sm.create_monitoring_schedule(
        MonitoringScheduleName="hourly", MonitoringScheduleConfig=schedule_config("dq")
    )["MonitoringScheduleArn"]
    assert arn == "arn:aws:sagemaker:us-east-1:123456789012:monitoring-schedule/hourly"
    sm.create_monitoring_schedule(
        MonitoringScheduleName="quality",
        MonitoringScheduleConfig=schedule_config("mq", "cron(0 */6 ? * * *)", "ModelQuality"),
    )
    with pytest.raises(ClientError) as err:
        sm.create_monitoring_schedule(
            MonitoringScheduleName="hourly", MonitoringScheduleConfig=schedule_config("dq")
        )
    assert code_of(err) == "ResourceInUse"
    schedule = sm.describe_monitoring_schedule(MonitoringScheduleName="hourly")
    assert (schedule["MonitoringScheduleStatus"], schedule["EndpointName"]) == (
        "Scheduled",
        ENDPOINT,
    )
    assert schedule["MonitoringScheduleConfig"] == schedule_config("dq")
    assert "LastMonitoringExecutionSummary" not in schedule
    names = lambda **kw: [  # noqa: E731
        s["MonitoringScheduleName"]
        for s in sm.list_monitoring_schedules(**kw)["MonitoringScheduleSummaries"]
    ]
    assert names() == ["quality", "hourly"]
    assert names(MonitoringTypeEquals="ModelQuality") == ["quality"]
    assert names(SortBy="Name", SortOrder="Ascending") == ["hourly", "quality"]

    sm.stop_monitoring_schedule(MonitoringScheduleName="hourly")
    assert names(StatusEquals="Stopped") == ["hourly"]
    sm.start_monitoring_schedule(MonitoringScheduleName="hourly")
    daily = schedule_config("dq", "cron(0 17 ? * * *)")
    sm.update_monitoring_schedule(MonitoringScheduleName="hourly", MonitoringScheduleConfig=daily)
    schedule = sm.describe_monitoring_schedule(MonitoringScheduleName="hourly")
    assert schedule["MonitoringScheduleConfig"]["ScheduleConfig"]["ScheduleExpression"] == (
        "cron(0 17 ? * * *)"
    )
    assert schedule["MonitoringScheduleStatus"] == "Scheduled"
    with pytest.raises(ClientError) as err:
        sm.update_monitoring_schedule(
            MonitoringScheduleName="hourly",
            MonitoringScheduleConfig=schedule_config(
                "dq", "NOW", DataAnalysisStartTime="-PT1H", DataAnalysisEndTime="-PT0H"
            ),
        )
    assert code_of(err) == "ValidationException"
    sm.delete_monitoring_schedule(MonitoringScheduleName="hourly")
    assert names() == ["quality"]
    sm.delete_data_quality_job_definition(JobDefinitionName="dq")
    assert sm.list_data_quality_job_definitions()["JobDefinitionSummaries"] == []


# executions -----------------------------------------------------------------------------------
def test_a_one_time_run_stages_the_window_and_publishes_the_metrics(
    sm: Any, cloud: LocalCloud, tmp_path: Path
) -> None:
    now = steady_now()
    first_hour = (now - dt.timedelta(hours=1)).replace(minute=0, second=0, microsecond=0)
    inside = put_capture(now - dt.timedelta(seconds=5))
    before = put_capture(first_hour - dt.timedelta(minutes=30))  # the hour before the window's
    outside = put_capture(first_hour - dt.timedelta(minutes=90))
    data_quality(sm, "dq", probe_app(tmp_path), {"publish_cloudwatch_metrics": "Disabled"})
    summary = run_now(sm, "once", "dq")

    assert summary["MonitoringExecutionStatus"] == "Completed", summary
    assert (summary["MonitoringScheduleName"], summary["EndpointName"]) == ("once", ENDPOINT)
    assert (summary["MonitoringType"], summary["MonitoringJobDefinitionName"]) == (
        "DataQuality",
        "dq",
    )
    job_name = summary["ProcessingJobArn"].rpartition("/")[2]
    scheduled = summary["ScheduledTime"]
    assert job_name.startswith(f"model-monitoring-{scheduled:%Y%m%d%H%M}-")
    job = sm.describe_processing_job(ProcessingJobName=job_name)
    assert job["ProcessingJobStatus"] == "Completed"
    assert job["AppSpecification"]["ImageUri"] == SKLEARN
    output = job["ProcessingOutputConfig"]["Outputs"][0]["S3Output"]["S3Uri"]
    assert output == f"{REPORTS}/{ENDPOINT}/once/{hour_path(scheduled)}"

    record = probe_record(summary)
    assert inside in record["capture"] and before in record["capture"]
    assert outside not in record["capture"]
    env = record["env"]
    start, end = scheduled - dt.timedelta(hours=1), scheduled
    opt_ml = str(cloud.jobs_dir / job_name / "opt_ml")
    assert env["dataset_format"] == json.dumps(
        {"sagemakerCaptureJson": {"captureIndexNames": ["endpointInput", "endpointOutput"]}}
    )
    assert {k: env[k] for k in (
        "dataset_source", "output_path", "baseline_statistics", "baseline_constraints",
        "publish_cloudwatch_metrics", "sagemaker_endpoint_name",
        "sagemaker_monitoring_schedule_name", "start_time", "end_time",
        "SFN_MLOPS_METRICS_DIR",
    )} == {
        "dataset_source": f"{opt_ml}/processing/input/endpoint",
        "output_path": f"{opt_ml}/processing/output",
        "baseline_statistics": f"{opt_ml}/processing/baseline/stats/statistics.json",
        "baseline_constraints": f"{opt_ml}/processing/baseline/constraints/constraints.json",
        "publish_cloudwatch_metrics": "Disabled",  # the job definition's Environment wins
        "sagemaker_endpoint_name": ENDPOINT,
        "sagemaker_monitoring_schedule_name": "once",
        "start_time": f"{start:%Y-%m-%dT%H:%M:%S}Z",
        "end_time": f"{end:%Y-%m-%dT%H:%M:%S}Z",
        "SFN_MLOPS_METRICS_DIR": f"{opt_ml}/output/metrics/cloudwatch",
    }  # fmt: skip
    assert "analysis_type" not in env and record["ground_truth"] is None
    assert record["baseline"] == ['{"version": 0.0}', '{"features": []}']

    watch = boto3.client("cloudwatch")
    dims = [
        {"Name": "Endpoint", "Value": ENDPOINT},
        {"Name": "MonitoringSchedule", "Value": "once"},
    ]
    window = {"StartTime": end - dt.timedelta(minutes=5), "EndTime": end + dt.timedelta(minutes=5)}
    drift = watch.get_metric_statistics(
        Namespace="aws/sagemaker/Endpoints/data-metrics", MetricName="feature_baseline_drift_x",
        Dimensions=dims, Period=60, Statistics=["Sum"], **window,
    )["Datapoints"]  # fmt: skip
    assert [point["Sum"] for point in drift] == [0.25]
    data = watch.get_metric_statistics(
        Namespace="aws/sagemaker/Endpoints/data-metrics", MetricName="feature_data_x",
        Dimensions=dims, Period=60, Statistics=["Average", "Maximum", "SampleCount"], **window,
    )["Datapoints"]  # fmt: skip
    assert [(p["Average"], p["Maximum"], p["SampleCount"]) for p in data] == [(2.5, 4.0, 4.0)]
    log = (cloud.jobs_dir / job_name / "job.log").read_text()
    assert log.count("skipped (malformed)") == 2  # "not json" and the line without a value

    schedule = sm.describe_monitoring_schedule(MonitoringScheduleName="once")
    assert schedule["LastMonitoringExecutionSummary"] == summary


def test_a_run_now_can_judge_only_the_traffic_since_an_offset(
    sm: Any, cloud: LocalCloud, tmp_path: Path
) -> None:
    """What ``sfn-mlops monitor run-now --window-start`` asks the service for: the schedule's
    own execution over a shorter window, as a NOW schedule's DataAnalysisStartTime would."""
    data_quality(sm, "dq", probe_app(tmp_path))
    hour = (dt.datetime.now(UTC).hour + 12) % 24  # a daily time that will not come in the test
    config = schedule_config("dq", f"cron(0 {hour} ? * * *)")
    sm.create_monitoring_schedule(MonitoringScheduleName="daily", MonitoringScheduleConfig=config)
    recent = put_capture(dt.datetime.now(UTC) - dt.timedelta(seconds=5))
    service = cloud.service("sagemaker")
    scheduled = time.time()
    monitoring.start_execution(cloud, service.narrowed(service._schedule("daily"), "-PT10M"),
                               scheduled)  # fmt: skip
    summary = wait_for_execution(sm, "daily", timeout=15, poll=0.05)
    record = probe_record(summary)
    start = dt.datetime.fromtimestamp(scheduled, UTC) - dt.timedelta(minutes=10)
    assert record["env"]["start_time"] == f"{start:%Y-%m-%dT%H:%M:%S}Z"
    assert recent in record["capture"]
    stored = sm.describe_monitoring_schedule(MonitoringScheduleName="daily")
    assert "DataAnalysisStartTime" not in stored["MonitoringScheduleConfig"]["ScheduleConfig"]
    for offset, why in (("PT10M", "after the scheduled time"), ("-P2D", "more than 24 hours"),
                        ("ten minutes", "not an ISO 8601 duration")):  # fmt: skip
        with pytest.raises(AwsError, match=why):
            service.narrowed(service._schedule("daily"), offset)


def test_a_window_without_capture_fails_without_a_job(
    sm: Any, cloud: LocalCloud, tmp_path: Path
) -> None:
    put_capture(dt.datetime.now(UTC) - dt.timedelta(hours=5))
    data_quality(sm, "dq", probe_app(tmp_path))
    summary = run_now(sm, "empty", "dq")
    assert (summary["MonitoringExecutionStatus"], summary["FailureReason"]) == (
        "Failed",
        "Job inputs had no data",
    )
    assert "ProcessingJobArn" not in summary
    assert sm.list_processing_jobs()["ProcessingJobSummaries"] == []
    assert boto3.client("cloudwatch").list_metrics()["Metrics"] == []


def test_violations_and_failures_set_the_execution_status(sm: Any, tmp_path: Path) -> None:
    put_capture(dt.datetime.now(UTC) - dt.timedelta(seconds=5))
    data_quality(sm, "drifting", probe_app(tmp_path), {"PROBE_VIOLATIONS": "2"})
    data_quality(sm, "broken", probe_app(tmp_path), {"PROBE_FAIL": "1"})
    assert run_now(sm, "drift", "drifting")["MonitoringExecutionStatus"] == (
        "CompletedWithViolations"
    )
    failed = run_now(sm, "fail", "broken")
    assert (failed["MonitoringExecutionStatus"], failed["FailureReason"]) == (
        "Failed",
        "ClientError: probe failed",  # the job's ExitMessage
    )
    sm.create_monitoring_schedule(
        MonitoringScheduleName="inline",
        MonitoringScheduleConfig={
            "ScheduleConfig": {"ScheduleExpression": "NOW", "DataAnalysisStartTime": "-PT1H",
                               "DataAnalysisEndTime": "-PT0H"},
            "MonitoringJobDefinition": inline_definition(probe_app(tmp_path)),
        },
    )  # fmt: skip
    inline = wait_for_execution(sm, "inline", timeout=15, poll=0.05)
    assert inline["MonitoringExecutionStatus"] == "CompletedWithViolations"
    assert "MonitoringJobDefinitionName" not in inline
    statuses = {
        s["MonitoringScheduleName"]: s["MonitoringExecutionStatus"]
        for s in sm.list_monitoring_executions()["MonitoringExecutionSummaries"]
    }
    assert statuses == {
        "drift": "CompletedWithViolations",
        "fail": "Failed",
        "inline": "CompletedWithViolations",
    }
    assert [
        s["MonitoringScheduleName"]
        for s in sm.list_monitoring_executions(StatusEquals="Failed")[
            "MonitoringExecutionSummaries"
        ]
    ] == ["fail"]


def test_model_quality_stages_ground_truth_and_its_attributes(
    sm: Any, cloud: LocalCloud, tmp_path: Path
) -> None:
    now = steady_now()
    put_capture(now - dt.timedelta(seconds=5))
    truth = f"{hour_path(now)}/labels.jsonl"
    boto3.client("s3").put_object(Bucket=BUCKET, Key=f"ground-truth/{truth}", Body=b"{}\n")
    boto3.client("s3").put_object(
        Bucket=BUCKET, Key=f"ground-truth/{hour_path(now - dt.timedelta(hours=4))}/old.jsonl",
        Body=b"{}\n",
    )  # fmt: skip
    model_quality(sm, "mq", probe_app(tmp_path))
    summary = run_now(sm, "quality", "mq", "ModelQuality")
    assert summary["MonitoringExecutionStatus"] == "Completed", summary
    record = probe_record(summary)
    assert record["ground_truth"] == [truth]
    job_name = summary["ProcessingJobArn"].rpartition("/")[2]
    env = record["env"]
    assert {k: env[k] for k in (
        "analysis_type", "problem_type", "probability_attribute",
        "probability_threshold_attribute", "ground_truth_source",
    )} == {
        "analysis_type": "MODEL_QUALITY",
        "problem_type": "BinaryClassification",
        "probability_attribute": "0",
        "probability_threshold_attribute": "0.5",
        "ground_truth_source": str(cloud.jobs_dir / job_name / "opt_ml/processing/groundtruth"),
    }  # fmt: skip
    assert "baseline_statistics" not in env
    metrics = boto3.client("cloudwatch").list_metrics(
        Namespace="aws/sagemaker/Endpoints/model-metrics"
    )["Metrics"]
    assert {m["MetricName"] for m in metrics} == {"feature_baseline_drift_x", "feature_data_x"}


def test_a_cron_schedule_runs_at_scaled_time(sm: Any, cloud: LocalCloud, tmp_path: Path) -> None:
    cloud.time_scale = 0.0001  # an hour of local time lasts 0.36 s
    put_capture(dt.datetime.now(UTC))
    data_quality(sm, "dq", probe_app(tmp_path))
    sm.create_monitoring_schedule(
        MonitoringScheduleName="hourly", MonitoringScheduleConfig=schedule_config("dq")
    )

    def executions() -> list[dict[str, Any]]:
        found = sm.list_monitoring_executions(
            MonitoringScheduleName="hourly", SortOrder="Ascending"
        )["MonitoringExecutionSummaries"]
        return list(found)

    runs = eventually(lambda: len(executions()) >= 2 and executions())
    sm.stop_monitoring_schedule(MonitoringScheduleName="hourly")
    first, second = runs[0], runs[1]
    next_hour = (dt.datetime.now(UTC) + dt.timedelta(hours=1)).replace(
        minute=0, second=0, microsecond=0
    )
    assert first["ScheduledTime"] in (next_hour - dt.timedelta(hours=1), next_hour)
    assert second["ScheduledTime"] - first["ScheduledTime"] == dt.timedelta(hours=1)
    # The first window (the hour before its time) holds the capture; the next one is empty.
    done = wait_for_execution(sm, "hourly", timeout=10, poll=0.05)  # the latest: no data
    assert (done["MonitoringExecutionStatus"], done.get("FailureReason")) == (
        "Failed",
        "Job inputs had no data",
    )
    first = eventually(
        lambda: next(
            s for s in executions() if s["ScheduledTime"] == first["ScheduledTime"]
            and s["MonitoringExecutionStatus"] != "InProgress"
        )
    )  # fmt: skip
    assert first["MonitoringExecutionStatus"] == "Completed", first


def test_an_execution_left_running_by_a_dead_service_is_failed(
    sm: Any, cloud: LocalCloud, tmp_path: Path
) -> None:
    cloud.time_scale = 1.0
    data_quality(sm, "dq", probe_app(tmp_path))
    sm.create_monitoring_schedule(
        MonitoringScheduleName="hourly", MonitoringScheduleConfig=schedule_config("dq")
    )
    dead = subprocess.Popen(["true"])
    dead.wait()
    schedule = cloud.metadata.get(monitoring.KIND_SCHEDULE, "hourly")
    assert schedule is not None
    scheduled = time.time() - 60
    key = monitoring.execution_key(schedule, scheduled)
    now = time.time()
    cloud.metadata.create(
        monitoring.KIND_EXECUTION,
        key,
        {
            "Key": key, "MonitoringScheduleName": "hourly",
            "ScheduleCreationTime": schedule["CreationTime"], "ScheduledTime": scheduled,
            "CreationTime": now, "LastModifiedTime": now, "Status": "Pending",
            "EndpointName": ENDPOINT, "MonitoringJobDefinitionName": "dq",
            "MonitoringType": "DataQuality", "ProcessingJobName": None, "FailureReason": None,
            "OwnerPid": dead.pid, "OwnerStartTime": None,
        },
    )  # fmt: skip
    assert cloud.service("sagemaker").recover_monitoring() == [key]
    summary = sm.describe_monitoring_schedule(MonitoringScheduleName="hourly")[
        "LastMonitoringExecutionSummary"
    ]
    assert summary["MonitoringExecutionStatus"] == "Failed"
    assert summary["FailureReason"].startswith("PlatformError: the local service")


@pytest.mark.skipif(not MONITOR_RUNTIME.is_file(), reason="containers/monitor/run.py not yet")
def test_model_quality_through_the_local_analyzer_runtime(sm: Any) -> None:
    now = steady_now()
    moment = now - dt.timedelta(seconds=30)
    predictions = {f"e{i}": f"{10 + i}.5" for i in range(4)}  # each 0.5 above its label
    put_capture(moment, predictions)
    s3 = boto3.client("s3")
    labels = [
        json.dumps({"groundTruthData": {"data": str(10 + i), "encoding": "CSV"},
                    "eventMetadata": {"eventId": f"e{i}"}, "eventVersion": "0"})
        for i in range(4)
    ]  # fmt: skip
    s3.put_object(
        Bucket=BUCKET, Key=f"ground-truth/{hour_path(now)}/labels.jsonl", Body="\n".join(labels)
    )
    constraints = {"version": 0.0, "regression_constraints": {
        "mae": {"threshold": 0.1, "comparison_operator": "GreaterThanThreshold"}}}  # fmt: skip
    s3.put_object(Bucket=BUCKET, Key="mq/constraints.json", Body=json.dumps(constraints))
    sm.create_model_quality_job_definition(
        JobDefinitionName="mq",
        ModelQualityBaselineConfig={
            "ConstraintsResource": {"S3Uri": f"s3://{BUCKET}/mq/constraints.json"}
        },
        ModelQualityAppSpecification={"ImageUri": ANALYZER, "ProblemType": "Regression"},
        ModelQualityJobInput={
            "EndpointInput": endpoint_input(InferenceAttribute="0"),
            "GroundTruthS3Input": {"S3Uri": f"s3://{BUCKET}/ground-truth"},
        },
        ModelQualityJobOutputConfig=OUTPUT,
        JobResources=RESOURCES,
        RoleArn=ROLE,
    )
    summary = run_now(sm, "quality", "mq", "ModelQuality")
    assert summary["MonitoringExecutionStatus"] == "CompletedWithViolations", summary
    points = boto3.client("cloudwatch").get_metric_statistics(
        Namespace="aws/sagemaker/Endpoints/model-metrics", MetricName="mae",
        Dimensions=[{"Name": "Endpoint", "Value": ENDPOINT},
                    {"Name": "MonitoringSchedule", "Value": "quality"}],
        StartTime=now - dt.timedelta(hours=1), EndTime=now + dt.timedelta(hours=1),
        Period=3600, Statistics=["Maximum"],
    )["Datapoints"]  # fmt: skip
    assert [p["Maximum"] for p in points] == [pytest.approx(0.5)]
