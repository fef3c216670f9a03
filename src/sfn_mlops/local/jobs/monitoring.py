"""Model Monitor executions: each one a local processing job, as SageMaker runs them.

An execution of a monitoring schedule (fired by its cron at scaled time, or at once for a
one-time ``NOW`` schedule) is a processing job named as SageMaker names them
(``model-monitoring-<yyyymmddHHMM of ScheduledTime>-<24 hex>``) whose image is the job
definition's; the Model Monitor analyzer image runs the local monitor runtime
(``sfn_mlops.local.images``). What the job is given (``processing_request``):

- the analysis window: the hour before ``ScheduledTime``, or ScheduleConfig's
  DataAnalysisStartTime/EndTime (else EndpointInput's StartTimeOffset/EndTimeOffset) as
  offsets from it;
- the endpoint's data capture of the window: objects chosen by their ``yyyy/mm/dd/hh`` key path,
  each hour the window touches plus the hour before (a capture file named by its first record
  may hold later ones), staged as ``<EndpointInput.LocalPath>/<endpoint>/<variant>/yyyy/mm/dd/hh/``;
  when the window's own hours hold no object the execution fails "Job inputs had no data"
  without a job, as SageMaker's does;
- the baseline: StatisticsResource in ``/opt/ml/processing/baseline/stats/``,
  ConstraintsResource in ``/opt/ml/processing/baseline/constraints/``; record preprocessor and
  post-analytics scripts in ``/opt/ml/processing/code/preprocessing|postprocessing/``;
- for ModelQuality, GroundTruthS3Input's ``yyyy/mm/dd/hh`` objects of the same hours in
  ``/opt/ml/processing/groundtruth/yyyy/mm/dd/hh/`` (env ``ground_truth_source``);
- the environment of the Model Monitor container contract (``contract_environment``), then the
  job definition's own Environment; ``/opt/ml`` paths are re-rooted by the runner. Not in the
  request (local only, so a process here can find them): ``SFN_MLOPS_METRICS_DIR`` and
  ``SFN_MLOPS_MESSAGE_FILE``, where ``/opt/ml/output/metrics/cloudwatch`` and
  ``/opt/ml/output/message`` are on this machine;
- the output: MonitoringOutput's LocalPath, uploaded to
  ``<S3Uri>/<endpoint>/<schedule>/yyyy/mm/dd/hh/`` (ScheduledTime's hour).

When the job completes, the JSON lines the container wrote under
``/opt/ml/output/metrics/cloudwatch/`` are published to the local CloudWatch as the job's role
(``cloudwatch:PutMetricData`` with the line's ``cloudwatch:namespace``; a namespace the role may
not publish to, or a malformed line, is logged in the job's log and skipped) and
``constraint_violations.json`` is counted. The execution's status is read from its job:
InProgress, Stopping, Completed (or CompletedWithViolations when violations were found),
Stopped, Failed (the job's ExitMessage, else its FailureReason). A stored execution whose
service died is Failed on recovery.
"""

from __future__ import annotations

import datetime as dt
import hashlib
import json
import logging
import os
import re
import threading
import time
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from sfn_mlops.local import cron
from sfn_mlops.local.errors import AwsError
from sfn_mlops.local.jobs import aws_calls, registry
from sfn_mlops.local.jobs.paths import reroot
from sfn_mlops.local.jobs.processing import METRICS_DIR, ProcessingRun
from sfn_mlops.local.jobs.state import FAILURE_REASON_LIMIT, KIND_PROCESSING, new_job_doc
from sfn_mlops.local.metadata import AlreadyExists
from sfn_mlops.local.objectstore import parse_s3_uri
from sfn_mlops.local.processes import same_process, start_time

log = logging.getLogger("sfn_mlops.local.monitoring")

KIND_SCHEDULE = "sagemaker-monitoring-schedule"
KIND_EXECUTION = "sagemaker-monitoring-execution"
KIND_DATA_QUALITY = "sagemaker-data-quality-job-definition"
KIND_MODEL_QUALITY = "sagemaker-model-quality-job-definition"
DATA_QUALITY, MODEL_QUALITY = "DataQuality", "ModelQuality"
DEFINITION_KINDS = {DATA_QUALITY: KIND_DATA_QUALITY, MODEL_QUALITY: KIND_MODEL_QUALITY}
NOW = "NOW"
NO_DATA = "Job inputs had no data"
TERMINAL = frozenset({"Completed", "CompletedWithViolations", "Failed", "Stopped"})
#: CloudWatch namespaces of the metrics a container writes without naming one.
NAMESPACES = {
    DATA_QUALITY: "aws/sagemaker/Endpoints/data-metrics",
    MODEL_QUALITY: "aws/sagemaker/Endpoints/model-metrics",
}
DATASET_FORMAT = json.dumps(
    {"sagemakerCaptureJson": {"captureIndexNames": ["endpointInput", "endpointOutput"]}}
)
VIOLATIONS_FILE = "constraint_violations.json"
BASELINE_STATISTICS = "/opt/ml/processing/baseline/stats"
BASELINE_CONSTRAINTS = "/opt/ml/processing/baseline/constraints"
GROUND_TRUTH = "/opt/ml/processing/groundtruth"
PREPROCESSOR = "/opt/ml/processing/code/preprocessing"
POSTPROCESSOR = "/opt/ml/processing/code/postprocessing"
DEFAULT_MAX_RUNTIME = 3600  # Model Monitor's default StoppingCondition
_HOUR = dt.timedelta(hours=1)
_DURATION = re.compile(r"^([-+])?P(?:(\d+)D)?(?:T(?=\d)(?:(\d+)H)?(?:(\d+)M)?(?:(\d+)S)?)?$")
_HOUR_PATH = re.compile(r"^(\d{4})/(\d{2})/(\d{2})/(\d{2})/")
_MAX_TICK = 1.0
_MIN_GAP = 0.05


def utc(epoch: float) -> dt.datetime:
    return dt.datetime.fromtimestamp(epoch, dt.timezone.utc)


def iso(moment: dt.datetime) -> str:
    return moment.astimezone(dt.timezone.utc).strftime("%Y-%m-%dT%H:%M:%SZ")


def hour_path(moment: dt.datetime) -> str:
    return moment.strftime("%Y/%m/%d/%H")


# the job definition and the window --------------------------------------------------------
def parse_offset(text: str) -> dt.timedelta:
    """An ISO 8601 duration offset such as ``-PT1H``, ``-PT0H``, ``-P1D``; ValueError if not."""
    match = _DURATION.match(text)
    if match is None or text.rstrip("T").endswith("P"):
        raise ValueError(f"{text!r} is not an ISO 8601 duration such as -PT1H")
    sign, days, hours, minutes, seconds = match.groups()
    delta = dt.timedelta(
        days=int(days or 0), hours=int(hours or 0), minutes=int(minutes or 0),
        seconds=int(seconds or 0),
    )  # fmt: skip
    return -delta if sign == "-" else delta


def window_offsets(
    schedule_config: dict[str, Any] | None, endpoint_input: dict[str, Any]
) -> tuple[dt.timedelta, dt.timedelta]:
    """(start, end) offsets from ScheduledTime: the schedule's, else the input's, else an hour."""
    config = schedule_config or {}
    start = config.get("DataAnalysisStartTime") or endpoint_input.get("StartTimeOffset")
    end = config.get("DataAnalysisEndTime") or endpoint_input.get("EndTimeOffset")
    return (
        parse_offset(start) if start else -_HOUR,
        parse_offset(end) if end else dt.timedelta(0),
    )


@dataclass(frozen=True)
class Spec:
    """A monitoring job definition, whichever way the schedule names it."""

    type: str
    name: str | None  # None for an inline MonitoringJobDefinition
    app: dict[str, Any]
    baseline: dict[str, Any]
    endpoint_input: dict[str, Any]
    ground_truth: str | None
    output: dict[str, Any]
    resources: dict[str, Any]
    stopping: dict[str, Any] | None
    environment: dict[str, str]
    role_arn: str
    network: dict[str, Any] | None


def definition_spec(kind_type: str, doc: dict[str, Any]) -> Spec:
    """A stored DataQuality or ModelQuality job definition as a Spec."""
    prefix = kind_type
    app = doc[f"{prefix}AppSpecification"]
    job_input = doc[f"{prefix}JobInput"]
    return Spec(
        type=kind_type,
        name=doc["JobDefinitionName"],
        app=app,
        baseline=doc.get(f"{prefix}BaselineConfig") or {},
        endpoint_input=job_input.get("EndpointInput") or {},
        ground_truth=(job_input.get("GroundTruthS3Input") or {}).get("S3Uri"),
        output=doc[f"{prefix}JobOutputConfig"],
        resources=doc["JobResources"],
        stopping=doc.get("StoppingCondition"),
        environment=dict(app.get("Environment") or {}),
        role_arn=doc["RoleArn"],
        network=doc.get("NetworkConfig"),
    )


def inline_spec(definition: dict[str, Any]) -> Spec:
    """A schedule's own MonitoringJobDefinition (a data quality job) as a Spec."""
    inputs = definition["MonitoringInputs"]
    return Spec(
        type=DATA_QUALITY,
        name=None,
        app=definition["MonitoringAppSpecification"],
        baseline=definition.get("BaselineConfig") or {},
        endpoint_input=(inputs[0].get("EndpointInput") or {}) if inputs else {},
        ground_truth=None,
        output=definition["MonitoringOutputConfig"],
        resources=definition["MonitoringResources"],
        stopping=definition.get("StoppingCondition"),
        environment=dict(definition.get("Environment") or {}),
        role_arn=definition["RoleArn"],
        network=definition.get("NetworkConfig"),
    )


def schedule_spec(cloud: Any, config: dict[str, Any]) -> Spec:
    """The job definition a schedule config runs; KeyError naming it when it is gone."""
    if config.get("MonitoringJobDefinition"):
        return inline_spec(config["MonitoringJobDefinition"])
    kind_type = config.get("MonitoringType") or DATA_QUALITY
    name = config["MonitoringJobDefinitionName"]
    doc = cloud.metadata.get(DEFINITION_KINDS[kind_type], name)
    if doc is None:
        raise KeyError(f"{kind_type} job definition {name}")
    return definition_spec(kind_type, doc)


# what the job is given --------------------------------------------------------------------
def _hours(start: dt.datetime, end: dt.datetime) -> list[dt.datetime]:
    """The hours the window [start, end) touches."""
    hour = start.replace(minute=0, second=0, microsecond=0)
    found = []
    while hour < end:
        found.append(hour)
        hour += _HOUR
    return found


def _hour_folders(
    cloud: Any, uri: str, hours: list[dt.datetime], nested: bool
) -> dict[tuple[str, dt.datetime], str]:
    """{(sub-folder, hour): S3 prefix} of the ``yyyy/mm/dd/hh`` folders under ``uri`` holding
    objects in ``hours``; ``nested``: one folder level (the variant) before the hour path."""
    bucket, prefix = parse_s3_uri(uri)
    prefix = prefix.rstrip("/") + "/" if prefix.strip("/") else ""
    wanted = set(hours)
    found: dict[tuple[str, dt.datetime], str] = {}
    try:
        listing = list(cloud.objects.list(bucket, prefix))
    except AwsError:  # no such bucket: no data
        return found
    for info in listing:
        rest = info.key[len(prefix) :]
        sub = ""
        if nested:
            sub, _, rest = rest.partition("/")
        match = _HOUR_PATH.match(rest)
        if match is None:
            continue
        try:
            year, month, day, hour_of_day = (int(part) for part in match.groups())
            hour = dt.datetime(year, month, day, hour_of_day, tzinfo=dt.timezone.utc)
        except ValueError:
            continue
        if hour in wanted:
            folder = f"{sub}/{hour_path(hour)}" if nested else hour_path(hour)
            found[(sub, hour)] = f"s3://{bucket}/{prefix}{folder}/"
    return found


def _s3_input(name: str, uri: str, local_path: str) -> dict[str, Any]:
    return {
        "InputName": name,
        "AppManaged": False,
        "S3Input": {
            "S3Uri": uri,
            "LocalPath": local_path,
            "S3DataType": "S3Prefix",
            "S3InputMode": "File",
            "S3DataDistributionType": "FullyReplicated",
            "S3CompressionType": "None",
        },
    }


def _file_input(name: str, uri: str, folder: str) -> tuple[dict[str, Any], str]:
    """An input of one object, and the path of its file in the container."""
    file_name = parse_s3_uri(uri)[1].rstrip("/").rpartition("/")[2]
    return _s3_input(name, uri, folder), f"{folder}/{file_name}"


@dataclass(frozen=True)
class Window:
    scheduled: dt.datetime
    start: dt.datetime
    end: dt.datetime

    @property
    def staged_hours(self) -> list[dt.datetime]:
        """The window's hours and the hour before them."""
        own = _hours(self.start, self.end)
        return [own[0] - _HOUR, *own] if own else []


class NoData(Exception):
    """The window holds no captured data: the execution fails without a job."""


def contract_environment(
    spec: Spec, window: Window, endpoint: str, schedule: str, files: dict[str, str]
) -> dict[str, str]:
    """The environment Model Monitor gives its container (BYOC "Container Contract Inputs" and
    the sagemaker SDK's model_monitoring.py), then the job definition's own."""
    output = spec.output["MonitoringOutputs"][0]["S3Output"]
    env = {
        "dataset_format": DATASET_FORMAT,
        "dataset_source": spec.endpoint_input["LocalPath"],
        "output_path": output["LocalPath"],
        "publish_cloudwatch_metrics": "Enabled",
        "sagemaker_endpoint_name": endpoint,
        "sagemaker_monitoring_schedule_name": schedule,
        "start_time": iso(window.start),
        "end_time": iso(window.end),
        **files,
    }
    if spec.type == MODEL_QUALITY:
        env["analysis_type"] = "MODEL_QUALITY"
        env["ground_truth_source"] = GROUND_TRUTH
        optional = {
            "problem_type": spec.app.get("ProblemType"),
            "inference_attribute": spec.endpoint_input.get("InferenceAttribute"),
            "probability_attribute": spec.endpoint_input.get("ProbabilityAttribute"),
            "probability_threshold_attribute": spec.endpoint_input.get(
                "ProbabilityThresholdAttribute"
            ),
        }
        env.update({key: str(value) for key, value in optional.items() if value is not None})
    env.update(spec.environment)
    return env


def processing_request(
    cloud: Any, spec: Spec, window: Window, schedule: str, capture_uri: str, job_name: str
) -> dict[str, Any]:
    """The CreateProcessingJob request of one execution; NoData when the window is empty."""
    endpoint = spec.endpoint_input["EndpointName"]
    local = spec.endpoint_input["LocalPath"].rstrip("/")
    hours = window.staged_hours
    own = set(hours[1:])
    capture = _hour_folders(cloud, f"{capture_uri.rstrip('/')}/{endpoint}", hours, nested=True)
    if not any(hour in own for _, hour in capture):
        raise NoData(NO_DATA)
    inputs = [
        _s3_input(f"endpoint_input_{i}", uri, f"{local}/{endpoint}/{variant}/{hour_path(hour)}")
        for i, ((variant, hour), uri) in enumerate(sorted(capture.items()), start=1)
    ]
    files: dict[str, str] = {}
    sources: tuple[tuple[str, str, str | None, str], ...] = (
        ("baseline_statistics", "statistics",
         (spec.baseline.get("StatisticsResource") or {}).get("S3Uri"), BASELINE_STATISTICS),
        ("baseline_constraints", "constraints",
         (spec.baseline.get("ConstraintsResource") or {}).get("S3Uri"), BASELINE_CONSTRAINTS),
        ("record_preprocessor_script", "pre_processor_script",
         spec.app.get("RecordPreprocessorSourceUri"), PREPROCESSOR),
        ("post_analytics_processor_script", "post_processor_script",
         spec.app.get("PostAnalyticsProcessorSourceUri"), POSTPROCESSOR),
    )  # fmt: skip
    for env_name, input_name, uri, folder in sources:
        if uri:
            item, path = _file_input(input_name, uri, folder)
            inputs.append(item)
            files[env_name] = path
    if spec.type == MODEL_QUALITY and spec.ground_truth:
        truth = _hour_folders(cloud, spec.ground_truth, hours, nested=False)
        inputs += [
            _s3_input(f"ground_truth_input_{i}", uri, f"{GROUND_TRUTH}/{hour_path(hour)}")
            for i, ((_, hour), uri) in enumerate(sorted(truth.items()), start=1)
        ]
    output = spec.output["MonitoringOutputs"][0]["S3Output"]
    destination = (
        f"{output['S3Uri'].rstrip('/')}/{endpoint}/{schedule}/{hour_path(window.scheduled)}"
    )
    app = {"ImageUri": spec.app["ImageUri"]}
    app |= {
        k: spec.app[k] for k in ("ContainerEntrypoint", "ContainerArguments") if spec.app.get(k)
    }
    request: dict[str, Any] = {
        "ProcessingJobName": job_name,
        "ProcessingInputs": inputs,
        "ProcessingOutputConfig": {
            "Outputs": [
                {
                    "OutputName": "monitoring_output",
                    "AppManaged": False,
                    "S3Output": {
                        "S3Uri": destination,
                        "LocalPath": output["LocalPath"],
                        "S3UploadMode": output.get("S3UploadMode", "Continuous"),
                    },
                }
            ]
        },
        "ProcessingResources": spec.resources,
        "StoppingCondition": spec.stopping or {"MaxRuntimeInSeconds": DEFAULT_MAX_RUNTIME},
        "AppSpecification": app,
        "Environment": contract_environment(spec, window, endpoint, schedule, files),
        "RoleArn": spec.role_arn,
    }
    if spec.network:
        request["NetworkConfig"] = spec.network
    return request


# the job ----------------------------------------------------------------------------------
class MonitoringRun(ProcessingRun):
    """A processing job of Model Monitor: counts violations and publishes the container's
    CloudWatch metrics before its outputs go to the object store."""

    def __init__(self, cloud: Any, name: str, request: dict[str, Any], namespace: str) -> None:
        super().__init__(cloud, KIND_PROCESSING, name, request)
        self.namespace = namespace

    def download_inputs(self) -> None:
        super().download_inputs()
        (self.opt_ml / METRICS_DIR).mkdir(parents=True, exist_ok=True)

    def base_env(self) -> dict[str, str]:
        return {**super().base_env(), **self.monitor_paths()}  # whatever the image

    def upload_outputs(self, status: str) -> dict[str, Any]:
        fields: dict[str, Any] = {}
        if status == "Completed":
            fields["MonitoringViolations"] = self._violations()
            self._publish_metrics()
        fields.update(super().upload_outputs(status))
        return fields

    def _violations(self) -> int:
        outputs = self._outputs()
        if not outputs:
            return 0
        path = Path(reroot(outputs[0]["S3Output"]["LocalPath"], self.opt_ml)) / VIOLATIONS_FILE
        if not path.is_file():
            return 0
        try:
            violations = json.loads(path.read_text()).get("violations") or []
        except (ValueError, AttributeError) as err:
            self.log(f"{VIOLATIONS_FILE} is not a JSON object with a violations list: {err}")
            return 0
        return len(violations) if isinstance(violations, list) else 0

    def _publish_metrics(self) -> None:
        """Each line's datum, published as the job's role (PutMetricData decided with the
        line's ``cloudwatch:namespace``, once per namespace): a namespace the role may not
        publish to is logged and its lines left unpublished."""
        folder = self.opt_ml / METRICS_DIR
        files = sorted(p for p in folder.rglob("*") if p.is_file()) if folder.is_dir() else []
        published = skipped = refused = 0
        watch = self.cloud.service("cloudwatch")
        denials: dict[str, str | None] = {}  # namespace -> AWS's message, None if allowed
        for path in files:
            for number, line in enumerate(path.read_text(errors="replace").splitlines(), 1):
                if not line.strip():
                    continue
                try:
                    namespace, datum = metric_datum(json.loads(line), self.namespace)
                    if namespace not in denials:
                        denials[namespace] = self._metrics_denial(namespace)
                    if denials[namespace] is not None:
                        refused += 1
                        continue
                    watch.record_metrics({"Namespace": namespace, "MetricData": [datum]})
                except (AwsError, ValueError, TypeError, KeyError, AttributeError) as err:
                    detail = err.message if isinstance(err, AwsError) else str(err)
                    self.log(f"metrics {path.name}:{number} skipped (malformed): {detail}")
                    log.warning("job %s: metric line %s:%d skipped: %s", self.name,
                                path.name, number, detail)  # fmt: skip
                    skipped += 1
                    continue
                published += 1
        for namespace, denied in denials.items():
            if denied is not None:
                self.log(f"metrics of {namespace} not published: AccessDenied: {denied}")
        if files:
            self.log(
                f"published {published} CloudWatch metrics ({skipped} lines skipped, "
                f"{refused} refused)"
            )

    def _metrics_denial(self, namespace: str) -> str | None:
        region, account = self.cloud.region, self.cloud.account
        return self._role_denial(aws_calls.metrics_publication(namespace, region, account))


def metric_datum(line: Any, namespace: str) -> tuple[str, dict[str, Any]]:
    """(namespace, MetricDatum) of one line the container wrote; ValueError when malformed."""
    if not isinstance(line, dict):
        raise ValueError("a line must be a JSON object")
    name, stamp = line.get("MetricName"), line.get("Timestamp")
    if not isinstance(name, str) or not name:
        raise ValueError("MetricName is required")
    if isinstance(stamp, str):
        moment = dt.datetime.fromisoformat(stamp.replace("Z", "+00:00"))
        epoch = (moment if moment.tzinfo else moment.replace(tzinfo=dt.timezone.utc)).timestamp()
    elif isinstance(stamp, (int, float)) and not isinstance(stamp, bool):
        epoch = float(stamp)
    else:
        raise ValueError("Timestamp is required (ISO 8601 text or epoch seconds)")
    has_value, has_stats = "Value" in line, "StatisticValues" in line
    if has_value == has_stats:
        raise ValueError("exactly one of Value and StatisticValues is required")
    datum: dict[str, Any] = {"MetricName": name, "Timestamp": epoch}
    if has_value:
        if isinstance(line["Value"], bool) or not isinstance(line["Value"], (int, float)):
            raise ValueError("Value must be a number")
        datum["Value"] = float(line["Value"])
    else:
        stats = line["StatisticValues"]
        keys = ("SampleCount", "Sum", "Minimum", "Maximum")
        datum["StatisticValues"] = {key: float(stats[key]) for key in keys}
    dimensions = line.get("Dimensions") or []
    datum["Dimensions"] = [{"Name": str(d["Name"]), "Value": str(d["Value"])} for d in dimensions]
    if line.get("Unit"):
        datum["Unit"] = str(line["Unit"])
    return str(line.get("Namespace") or namespace), datum


# executions -------------------------------------------------------------------------------
def execution_key(schedule: dict[str, Any], scheduled: float) -> str:
    created = int(float(schedule["CreationTime"]) * 1000)
    return f"{schedule['MonitoringScheduleName']}/{created}/{int(scheduled * 1000)}"


def job_name_for(key: str, scheduled: float) -> str:
    digest = hashlib.sha256(key.encode()).hexdigest()[:24]
    return f"model-monitoring-{utc(scheduled):%Y%m%d%H%M}-{digest}"


def start_execution(cloud: Any, schedule: dict[str, Any], scheduled: float) -> dict[str, Any]:
    """Store one execution of ``schedule`` at ``scheduled`` and start its job; the stored doc.

    A second call for the same schedule and time returns the stored execution.
    """
    key = execution_key(schedule, scheduled)
    config = schedule["MonitoringScheduleConfig"]
    name = schedule["MonitoringScheduleName"]
    now = time.time()
    doc: dict[str, Any] = {
        "Key": key,
        "MonitoringScheduleName": name,
        "ScheduleCreationTime": schedule["CreationTime"],
        "ScheduledTime": scheduled,
        "CreationTime": now,
        "LastModifiedTime": now,
        "Status": "Pending",
        "EndpointName": schedule.get("EndpointName"),
        "MonitoringJobDefinitionName": config.get("MonitoringJobDefinitionName"),
        "MonitoringType": schedule.get("MonitoringType") or DATA_QUALITY,
        "ProcessingJobName": None,
        "FailureReason": None,
        "OwnerPid": os.getpid(),
        "OwnerStartTime": start_time(os.getpid()),
    }
    try:
        cloud.metadata.create(KIND_EXECUTION, key, doc)
    except AlreadyExists:
        return cloud.metadata.get(KIND_EXECUTION, key) or doc
    try:
        return _launch(cloud, schedule, doc, scheduled)
    except NoData as err:
        return _end(cloud, key, "Failed", str(err))
    except Exception as err:  # noqa: BLE001 - the execution records it; the schedule goes on
        log.exception("monitoring execution %s could not start", key)
        return _end(cloud, key, "Failed", f"PlatformError: {type(err).__name__}: {err}")


def _end(cloud: Any, key: str, status: str, reason: str | None) -> dict[str, Any]:
    reason = reason[:FAILURE_REASON_LIMIT] if reason else None
    return cloud.metadata.update(  # type: ignore[no-any-return]
        KIND_EXECUTION, key, Status=status, FailureReason=reason, LastModifiedTime=time.time()
    )


def _launch(
    cloud: Any, schedule: dict[str, Any], doc: dict[str, Any], scheduled: float
) -> dict[str, Any]:
    config = schedule["MonitoringScheduleConfig"]
    name = schedule["MonitoringScheduleName"]
    try:
        spec = schedule_spec(cloud, config)
    except KeyError as err:
        return _end(cloud, doc["Key"], "Failed", f"ClientError: {err.args[0]} does not exist")
    try:
        endpoint = cloud.service("sagemaker").describe_endpoint(
            {"EndpointName": spec.endpoint_input["EndpointName"]}
        )
    except AwsError as err:
        return _end(cloud, doc["Key"], "Failed", f"ClientError: {err.message}")
    capture_uri = (endpoint.get("DataCaptureConfig") or {}).get("DestinationS3Uri")
    if not capture_uri:
        raise NoData(NO_DATA)
    start, end = window_offsets(config.get("ScheduleConfig"), spec.endpoint_input)
    moment = utc(scheduled)
    window = Window(scheduled=moment, start=moment + start, end=moment + end)
    job_name = job_name_for(doc["Key"], scheduled)
    request = processing_request(cloud, spec, window, name, capture_uri, job_name)
    arn = cloud.arn("sagemaker", f"processing-job/{job_name}")
    namespace = NAMESPACES[spec.type]
    registry.submit(
        cloud,
        KIND_PROCESSING,
        new_job_doc(KIND_PROCESSING, job_name, arn, request),
        lambda stored: MonitoringRun(cloud, stored["Name"], stored["Request"], namespace),
    )
    return cloud.metadata.update(  # type: ignore[no-any-return]
        KIND_EXECUTION, doc["Key"], Status="InProgress", ProcessingJobName=job_name,
        ProcessingJobArn=arn, LastModifiedTime=time.time(),
    )  # fmt: skip


def _from_job(job: dict[str, Any]) -> tuple[str, str | None]:
    status = job["Status"]
    if status == "InProgress":
        return ("Stopping" if job.get("StopRequested") else "InProgress"), None
    if status == "Completed":
        flagged = (job.get("ExitMessage") or "").startswith("CompletedWithViolations")
        if job.get("MonitoringViolations") or flagged:
            return "CompletedWithViolations", None
        return "Completed", None
    if status == "Failed":
        return "Failed", job.get("ExitMessage") or job.get("FailureReason")
    return str(status), None


def refresh(cloud: Any, doc: dict[str, Any]) -> dict[str, Any]:
    """The execution's state, read from its job (stored once terminal); Failed when the
    service that started it died before its job was stored."""
    if doc["Status"] in TERMINAL:
        return doc
    job_name = doc.get("ProcessingJobName")
    job = cloud.metadata.get(KIND_PROCESSING, job_name) if job_name else None
    if job is None:
        if doc["Status"] == "Pending" and (
            int(doc["OwnerPid"]) == os.getpid()
            or same_process(int(doc["OwnerPid"]), doc.get("OwnerStartTime"))
        ):
            return doc
        return _end(
            cloud, doc["Key"], "Failed",
            f"PlatformError: the local service (pid {doc['OwnerPid']}) stopped before the "
            "execution's processing job started",
        )  # fmt: skip
    job = registry.refresh(cloud, KIND_PROCESSING, job)
    status, reason = _from_job(job)
    modified = max(float(doc["LastModifiedTime"]), float(job["LastModifiedTime"]))
    if status in TERMINAL:
        return cloud.metadata.update(  # type: ignore[no-any-return]
            KIND_EXECUTION, doc["Key"], Status=status, FailureReason=reason,
            LastModifiedTime=modified,
        )  # fmt: skip
    return {**doc, "Status": status, "LastModifiedTime": modified}


def executions(cloud: Any) -> list[dict[str, Any]]:
    return [refresh(cloud, doc) for doc in cloud.metadata.list(KIND_EXECUTION)]


def recover_orphans(cloud: Any) -> list[str]:
    """At the service's start (after the jobs' recovery): executions left running by a dead
    service are Failed; their keys."""
    failed = []
    for doc in cloud.metadata.list(KIND_EXECUTION):
        if doc["Status"] in TERMINAL:
            continue
        if refresh(cloud, doc)["Status"] == "Failed":
            failed.append(doc["Key"])
    return sorted(failed)


# the scheduler ----------------------------------------------------------------------------
def schedule_expression(schedule: dict[str, Any]) -> str:
    """The schedule's expression; without a ScheduleConfig SageMaker picks a daily time."""
    config = schedule["MonitoringScheduleConfig"].get("ScheduleConfig")
    if config and config.get("ScheduleExpression"):
        return str(config["ScheduleExpression"])
    hour = int(hashlib.sha256(schedule["MonitoringScheduleName"].encode()).hexdigest(), 16) % 24
    return f"cron(0 {hour} ? * * *)"


class Scheduler:
    """Fires the cron schedules of one workspace from a daemon thread at scaled time.

    Each Scheduled schedule gets a ``cron.ScaledTimer`` when first seen (or changed, started
    again, or when the time scale changes): with ``time_scale`` 1 its executions are at the cron
    times; with s < 1 the one at cron time t starts ``(t - now) * s`` seconds of wall time
    after the schedule was seen, and its ScheduledTime is t.
    """

    def __init__(self, cloud: Any) -> None:
        self.cloud = cloud
        self._timers: dict[str, tuple[tuple[Any, ...], cron.ScaledTimer]] = {}
        self._lock = threading.Lock()
        self._stop = threading.Event()
        self._thread: threading.Thread | None = None

    def start(self) -> None:
        with self._lock:
            if self._thread is not None and self._thread.is_alive():
                return
            self._stop.clear()
            self._thread = threading.Thread(
                target=self._loop, name="sagemaker-monitoring-schedules", daemon=True
            )
            self._thread.start()

    def shutdown(self) -> None:
        self._stop.set()
        with self._lock:
            thread, self._thread = self._thread, None
        if thread is not None:
            thread.join(5)

    def _loop(self) -> None:
        tick = _MIN_GAP
        while not self._stop.wait(tick):
            try:
                tick = self.fire_due(time.monotonic())
            except Exception:  # noqa: BLE001 - one bad round must not stop the schedules
                log.exception("monitoring schedule round failed")
                tick = _MAX_TICK

    def fire_due(self, now: float) -> float:
        """Start every execution whose time has come; the wait until the next round."""
        waits, seen = [_MAX_TICK], set()
        scale = self.cloud.time_scale
        for schedule in self.cloud.metadata.list(KIND_SCHEDULE):
            expression = schedule_expression(schedule)
            if schedule["MonitoringScheduleStatus"] != "Scheduled" or expression == NOW:
                continue
            name = schedule["MonitoringScheduleName"]
            seen.add(name)
            key = (expression, scale, schedule["CreationTime"], schedule["LastModifiedTime"])
            entry = self._timers.get(name)
            if entry is None or entry[0] != key:
                timer = cron.ScaledTimer(cron.parse(expression), scale, time.time(), now, _MIN_GAP)
                self._timers[name] = entry = (key, timer)
            timer = entry[1]
            due = timer.due()
            if due is not None and now >= due and timer.next is not None:
                scheduled = timer.next.timestamp()
                timer.advance(now)
                start_execution(self.cloud, schedule, scheduled)
                due = timer.due()
            if due is not None:
                waits.append(max(due - time.monotonic(), 0.005))
        for name in set(self._timers) - seen:
            del self._timers[name]
        return min(waits)
