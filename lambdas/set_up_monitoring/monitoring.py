"""Model Monitor on the endpoint after each deployment: its schedules read the new model's
baselines, and its alarms start a retraining.

A job definition cannot be changed, so each run makes its own (named after the run) and points
the endpoint's schedule at it; the definition it replaces is deleted. One alarm watches each
feature's drift metric (the template cannot know the data's columns), one the model-quality
metric. Every alarm treats a period without data as not breaching: a monitoring run that saw no
traffic raises no alarm. Their period is the schedule's interval by default (an hour, as in AWS's
drift alarm sample): CloudWatch's sliding window then holds each run's result until the next
run's, however late in the hour Model Monitor publishes it.
"""

from __future__ import annotations

import contextlib
import hashlib
import json
import time
from typing import Any

DATA_QUALITY, MODEL_QUALITY = "DataQuality", "ModelQuality"
#: How long a run waits for its schedule update to take before it keeps the old definition.
SWITCH_CHECKS, SWITCH_WAIT_SECONDS = 10, 1.0
DATA_METRICS = "aws/sagemaker/Endpoints/data-metrics"
MODEL_METRICS = "aws/sagemaker/Endpoints/model-metrics"
CAPTURE_DIR = "/opt/ml/processing/input/endpoint"
OUTPUT_DIR = "/opt/ml/processing/output"
#: The baseline describes the features the endpoint receives, so the monitor reads the
#: captured requests (the baseline has no prediction column).
CAPTURE_FORMAT = json.dumps({"sagemakerCaptureJson": {"captureIndexNames": ["endpointInput"]}})
INSTANCE = {"InstanceCount": 1, "InstanceType": "ml.m5.large", "VolumeSizeInGB": 20}
MAX_RUNTIME = {"MaxRuntimeInSeconds": 1800}
#: Where each problem type's prediction is in the endpoint's CSV answer (containers/inference):
#: the value itself (regression, multiclass label), or P(positive) for binary.
QUALITY_ATTRIBUTES = {
    "Regression": {"InferenceAttribute": "0"},
    "BinaryClassification": {"ProbabilityAttribute": "0", "ProbabilityThresholdAttribute": 0.5},
    "MulticlassClassification": {"InferenceAttribute": "0"},
}
STATISTICS_KEYS = {
    "Regression": "regression_metrics",
    "BinaryClassification": "binary_classification_metrics",
    "MulticlassClassification": "multiclass_classification_metrics",
}


class MonitoringError(Exception):
    """The baselines do not let the monitors be set up (names what is missing)."""


def schedule_name(endpoint: str, kind: str) -> str:
    return f"{endpoint}-{'data' if kind == DATA_QUALITY else 'model'}-quality"


def drift_alarm_name(endpoint: str, feature: str) -> str:
    return f"{endpoint}-drift-{feature}"[:255]


def quality_alarm_name(endpoint: str) -> str:
    return f"{endpoint}-model-quality"


def definition_name(endpoint: str, kind: str, run_name: str) -> str:
    """Unique per run and kind, within SageMaker's 63 characters."""
    digest = hashlib.sha256(f"{run_name}/{kind}".encode()).hexdigest()[:8]
    short = "dq" if kind == DATA_QUALITY else "mq"
    return f"{endpoint[:40].rstrip('-')}-{short}-{digest}"


def read_json(s3: Any, uri: str) -> dict[str, Any]:
    bucket, _, key = uri.removeprefix("s3://").partition("/")
    try:
        body = s3.get_object(Bucket=bucket, Key=key)["Body"].read()
    except s3.exceptions.NoSuchKey as err:
        raise MonitoringError(f"{uri}: the baseline job wrote no such file") from err
    return json.loads(body)  # type: ignore[no-any-return]


def write_json(s3: Any, uri: str, document: dict[str, Any]) -> None:
    bucket, _, key = uri.removeprefix("s3://").partition("/")
    s3.put_object(Bucket=bucket, Key=key, Body=json.dumps(document, indent=2).encode())


def set_up(
    sagemaker: Any, cloudwatch: Any, s3: Any, *, endpoint: str, run_name: str,
    baseline_uri: str, settings: dict[str, Any], image_uri: str, role_arn: str, bucket: str,
) -> dict[str, Any]:  # fmt: skip
    """Both monitors (model quality when on) and their alarms; what was made."""
    common = {"image_uri": image_uri, "role_arn": role_arn, "bucket": bucket}
    data = _data_quality(sagemaker, s3, endpoint, run_name, baseline_uri, settings, **common)
    schedules, alarms = [data["schedule"]], []
    period = settings["alarm_period_seconds"]
    for feature in data["features"]:
        alarms.append(
            _put_alarm(
                cloudwatch,
                drift_alarm_name(endpoint, feature),
                settings,
                period,
                namespace=DATA_METRICS,
                metric=f"feature_baseline_drift_{feature}",
                dimensions=_dimensions(endpoint, data["schedule"]),
                threshold=settings["drift_threshold"],
                higher_is_worse=True,
                description=f"Feature {feature} of {endpoint} drifted from its training "
                "baseline (Model Monitor); starts a retraining.",
            )  # fmt: skip
        )
    quality = settings["model_quality"]
    if quality["enabled"]:
        made = _model_quality(sagemaker, s3, endpoint, run_name, baseline_uri, settings, **common)
        schedules.append(made["schedule"])
        alarms.append(
            _put_alarm(
                cloudwatch,
                quality_alarm_name(endpoint),
                settings,
                period,
                namespace=MODEL_METRICS,
                metric=quality["metric"],
                dimensions=_dimensions(endpoint, made["schedule"]),
                threshold=made["threshold"],
                higher_is_worse=quality["higher_is_worse"],
                description=f"The {quality['metric']} of {endpoint} against the uploaded "
                "ground truth passed its limit (Model Monitor); starts a retraining.",
            )  # fmt: skip
        )
    return {"schedules": schedules, "alarms": alarms}


def _data_quality(
    sagemaker: Any, s3: Any, endpoint: str, run_name: str, baseline_uri: str,
    settings: dict[str, Any], *, image_uri: str, role_arn: str, bucket: str,
) -> dict[str, Any]:  # fmt: skip
    statistics = f"{baseline_uri}/data-quality/statistics.json"
    constraints_uri = f"{baseline_uri}/data-quality/constraints.json"
    features = [f["name"] for f in read_json(s3, statistics).get("features", [])]
    if not features:
        raise MonitoringError(f"{statistics} describes no features")
    # The suggested constraints, with the config's drift threshold.
    constraints = read_json(s3, constraints_uri)
    distribution = constraints.setdefault("monitoring_config", {}).setdefault(
        "distribution_constraints", {}
    )
    distribution["comparison_threshold"] = settings["drift_threshold"]
    distribution["categorical_comparison_threshold"] = settings["drift_threshold"]
    write_json(s3, constraints_uri, constraints)
    name = definition_name(endpoint, DATA_QUALITY, run_name)
    sagemaker.create_data_quality_job_definition(
        JobDefinitionName=name,
        DataQualityBaselineConfig={
            "ConstraintsResource": {"S3Uri": constraints_uri},
            "StatisticsResource": {"S3Uri": statistics},
        },
        DataQualityAppSpecification={
            "ImageUri": image_uri,
            "Environment": {"dataset_format": CAPTURE_FORMAT},
        },
        DataQualityJobInput={"EndpointInput": _endpoint_input(endpoint)},
        DataQualityJobOutputConfig=_output(bucket, endpoint, "data-quality"),
        JobResources={"ClusterConfig": INSTANCE},
        RoleArn=role_arn,
        StoppingCondition=MAX_RUNTIME,
    )
    schedule = schedule_name(endpoint, DATA_QUALITY)
    _point_schedule(sagemaker, schedule, name, DATA_QUALITY, settings["schedule"])
    return {"schedule": schedule, "features": features}


def _model_quality(
    sagemaker: Any, s3: Any, endpoint: str, run_name: str, baseline_uri: str,
    settings: dict[str, Any], *, image_uri: str, role_arn: str, bucket: str,
) -> dict[str, Any]:  # fmt: skip
    quality = settings["model_quality"]
    problem = quality["problem_type"]
    statistics = read_json(s3, f"{baseline_uri}/model-quality/statistics.json")
    baseline = statistics.get(STATISTICS_KEYS[problem], {}).get(quality["metric"], {})
    if "value" not in baseline:
        raise MonitoringError(
            f"{baseline_uri}/model-quality/statistics.json has no {quality['metric']} value"
        )
    threshold = quality["threshold"]
    if threshold is None:
        factor = (
            1 + quality["tolerance"] if quality["higher_is_worse"] else 1 - quality["tolerance"]
        )
        threshold = float(baseline["value"]) * factor
    name = definition_name(endpoint, MODEL_QUALITY, run_name)
    sagemaker.create_model_quality_job_definition(
        JobDefinitionName=name,
        ModelQualityBaselineConfig={
            "ConstraintsResource": {"S3Uri": f"{baseline_uri}/model-quality/constraints.json"}
        },
        ModelQualityAppSpecification={"ImageUri": image_uri, "ProblemType": problem},
        ModelQualityJobInput={
            "EndpointInput": {
                **_endpoint_input(endpoint),
                **QUALITY_ATTRIBUTES[problem],
                **_window(quality),
            },
            "GroundTruthS3Input": {"S3Uri": ground_truth_uri(bucket, endpoint)},
        },
        ModelQualityJobOutputConfig=_output(bucket, endpoint, "model-quality"),
        JobResources={"ClusterConfig": INSTANCE},
        RoleArn=role_arn,
        StoppingCondition=MAX_RUNTIME,
    )
    schedule = schedule_name(endpoint, MODEL_QUALITY)
    _point_schedule(sagemaker, schedule, name, MODEL_QUALITY, settings["schedule"])
    return {"schedule": schedule, "threshold": threshold}


def _window(quality: dict[str, Any]) -> dict[str, str]:
    """The captures a run scores, for ground truth that arrives late; none: the last hour."""
    if not quality.get("start_time_offset"):
        return {}
    return {
        "StartTimeOffset": quality["start_time_offset"],
        "EndTimeOffset": quality["end_time_offset"],
    }


def ground_truth_uri(bucket: str, endpoint: str) -> str:
    """Where ground truth for the endpoint goes (``yyyy/mm/dd/hh/`` under it, as SageMaker)."""
    return f"s3://{bucket}/ground-truth/{endpoint}"


def _endpoint_input(endpoint: str) -> dict[str, Any]:
    return {
        "EndpointName": endpoint,
        "LocalPath": CAPTURE_DIR,
        "S3InputMode": "File",
        "S3DataDistributionType": "FullyReplicated",
    }


def _output(bucket: str, endpoint: str, kind: str) -> dict[str, Any]:
    uri = f"s3://{bucket}/monitoring/{endpoint}/{kind}"
    return {
        "MonitoringOutputs": [
            {"S3Output": {"S3Uri": uri, "LocalPath": OUTPUT_DIR, "S3UploadMode": "EndOfJob"}}
        ]
    }


def _point_schedule(
    sagemaker: Any, schedule: str, definition: str, kind: str, expression: str
) -> None:
    """Create the schedule, or point it at the new definition and delete the one it had."""
    config = {
        "ScheduleConfig": {"ScheduleExpression": expression},
        "MonitoringJobDefinitionName": definition,
        "MonitoringType": kind,
    }
    try:
        current = sagemaker.describe_monitoring_schedule(MonitoringScheduleName=schedule)
    except sagemaker.exceptions.ResourceNotFound:
        sagemaker.create_monitoring_schedule(
            MonitoringScheduleName=schedule, MonitoringScheduleConfig=config
        )
        return
    sagemaker.update_monitoring_schedule(
        MonitoringScheduleName=schedule, MonitoringScheduleConfig=config
    )
    previous = current["MonitoringScheduleConfig"].get("MonitoringJobDefinitionName")
    if previous and previous != definition and _switched(sagemaker, schedule, definition):
        delete = (
            sagemaker.delete_data_quality_job_definition
            if kind == DATA_QUALITY
            else sagemaker.delete_model_quality_job_definition
        )
        with contextlib.suppress(sagemaker.exceptions.ResourceNotFound):
            delete(JobDefinitionName=previous)


def _switched(sagemaker: Any, schedule: str, definition: str) -> bool:
    """Whether the schedule runs the new definition yet. UpdateMonitoringSchedule is
    asynchronous (Pending, then Scheduled or Failed); until it has taken, the old definition
    is what the schedule runs, so it is kept (a definition costs nothing)."""
    for attempt in range(SWITCH_CHECKS):
        described = sagemaker.describe_monitoring_schedule(MonitoringScheduleName=schedule)
        status = described["MonitoringScheduleStatus"]
        named = described["MonitoringScheduleConfig"].get("MonitoringJobDefinitionName")
        if status != "Pending":
            return bool(status == "Scheduled" and named == definition)
        if attempt + 1 < SWITCH_CHECKS:
            time.sleep(SWITCH_WAIT_SECONDS)
    return False


def _dimensions(endpoint: str, schedule: str) -> list[dict[str, str]]:
    return [
        {"Name": "Endpoint", "Value": endpoint},
        {"Name": "MonitoringSchedule", "Value": schedule},
    ]


def _put_alarm(
    cloudwatch: Any, name: str, settings: dict[str, Any], period: int, *, namespace: str,
    metric: str, dimensions: list[dict[str, str]], threshold: float, higher_is_worse: bool,
    description: str,
) -> str:  # fmt: skip
    cloudwatch.put_metric_alarm(
        AlarmName=name,
        AlarmDescription=description,
        Namespace=namespace,
        MetricName=metric,
        Dimensions=dimensions,
        Statistic="Maximum" if higher_is_worse else "Minimum",
        Period=period,
        EvaluationPeriods=settings["evaluation_periods"],
        DatapointsToAlarm=settings["datapoints_to_alarm"],
        Threshold=float(threshold),
        ComparisonOperator="GreaterThanThreshold" if higher_is_worse else "LessThanThreshold",
        TreatMissingData="notBreaching",
    )
    return name
