"""SageMaker Model Monitor: data and model quality job definitions, monitoring schedules and
their executions, run on this machine.

A mixin of ``sfn_mlops.local.services.sagemaker.SageMaker``. Operations: Create, Describe,
List and Delete DataQualityJobDefinition and ModelQualityJobDefinition; Create, Describe, List,
Update, Delete, Start and Stop MonitoringSchedule; ListMonitoringExecutions. Each execution is a
local processing job (``sfn_mlops.local.jobs.monitoring``: what it is given, how its status is
read); ``wait_for_execution`` waits for one through any boto3 client.

Validated as SageMaker does: names; one of EndpointInput and BatchTransformInput; a schedule
names exactly one of MonitoringJobDefinitionName (of MonitoringType DataQuality or
ModelQuality, default DataQuality) and MonitoringJobDefinition; the job definition and the
endpoint exist (ValidationException, DescribeEndpoint's message); the schedule expressions
Model Monitor accepts: hourly ``cron(0 * ? * * *)``, every N hours ``cron(0 H/N ? * * *)`` or
``cron(0 */N ? * * *)``, daily ``cron(0 H ? * * *)`` and the one-time ``NOW``, which needs
DataAnalysisStartTime and DataAnalysisEndTime; those offsets are ISO 8601 durations such as
``-PT1H``, not after the scheduled time, start before end and at most 24 hours apart. A
duplicate name is ResourceInUse; a missing schedule or job definition ResourceNotFound. The
messages are in our words where SageMaker's are not documented.

Honoured: the image (its local runtime; the framework images need ContainerEntrypoint),
ContainerEntrypoint/ContainerArguments, Environment, the baseline's statistics and constraints,
RecordPreprocessorSourceUri and PostAnalyticsProcessorSourceUri (staged, their paths in the
environment), EndpointInput (LocalPath, the time offsets and for ModelQuality the inference,
probability and threshold attributes), GroundTruthS3Input, MonitoringOutputs (S3UploadMode
Continuous is uploaded at the end of the job), StoppingCondition (default 3600 s). Recorded
only: InstanceType, VolumeSizeInGB, KMS keys, NetworkConfig, RoleArn, Tags. Rejected as not
emulated: BatchTransformInput, ModelBias and ModelExplainability, Pipe mode, more than one
instance, https:// output URIs, the Clarify image, UpdateMonitoringSchedule to ``NOW`` (one-time
runs are CreateMonitoringSchedule with ``NOW``, as in SageMaker).
"""

from __future__ import annotations

import copy
import datetime as dt
import re
import time
from collections.abc import Callable
from typing import Any

from sfn_mlops.local.errors import AwsError, validation
from sfn_mlops.local.images import CLARIFY, PYTHON_SCRIPT, runtime_for
from sfn_mlops.local.jobs import monitoring
from sfn_mlops.local.jobs.monitoring import DATA_QUALITY, MODEL_QUALITY, NOW, Spec
from sfn_mlops.local.metadata import AlreadyExists
from sfn_mlops.local.services.sagemaker_hosting import in_window, page
from sfn_mlops.local.shapes import timestamp

_LABELS = {DATA_QUALITY: "data-quality", MODEL_QUALITY: "model-quality"}
_SCHEDULE_FORMS = re.compile(r"^cron\(0 (\*|\d{1,2}|\d{1,2}/\d{1,2}|\*/\d{1,2}) \? \* \* \*\)$")
_MAX_WINDOW = dt.timedelta(hours=24)
_SCHEDULE_ECHO_ORDER = ("Name", "CreationTime", "Status")


def _not_found(message: str) -> AwsError:
    return AwsError("ResourceNotFound", message)


def _check_offset(text: str | None, member: str) -> dt.timedelta | None:
    if text is None:
        return None
    try:
        offset = monitoring.parse_offset(text)
    except ValueError as err:
        raise validation(
            f"{member} {text!r} is not an ISO 8601 duration offset such as -PT1H"
        ) from err
    if offset > dt.timedelta(0):
        raise validation(
            f"{member} {text!r} is after the scheduled time: offsets are negative, e.g. -PT1H"
        )
    return offset


def _check_window(schedule_config: dict[str, Any] | None, endpoint_input: dict[str, Any]) -> None:
    config = schedule_config or {}
    _check_offset(config.get("DataAnalysisStartTime"), "DataAnalysisStartTime")
    _check_offset(config.get("DataAnalysisEndTime"), "DataAnalysisEndTime")
    _check_offset(endpoint_input.get("StartTimeOffset"), "EndpointInput.StartTimeOffset")
    _check_offset(endpoint_input.get("EndTimeOffset"), "EndpointInput.EndTimeOffset")
    start, end = monitoring.window_offsets(schedule_config, endpoint_input)
    if start >= end:
        raise validation("The start time of the monitoring window must be before its end time.")
    if end - start > _MAX_WINDOW:
        raise validation(
            "The end time of the monitoring window must not follow its start time by more "
            "than 24 hours."
        )


def _check_expression(schedule_config: dict[str, Any]) -> None:
    expression = schedule_config["ScheduleExpression"]
    if expression == NOW:
        if not (
            schedule_config.get("DataAnalysisStartTime")
            and schedule_config.get("DataAnalysisEndTime")
        ):
            raise validation(
                "DataAnalysisStartTime and DataAnalysisEndTime are required when "
                "ScheduleExpression is NOW."
            )
        return
    match = _SCHEDULE_FORMS.match(expression)
    valid = match is not None
    if match is not None and match.group(1) != "*":
        hour, _, every = match.group(1).partition("/")
        valid = (hour == "*" or int(hour) <= 23) and (not every or 1 <= int(every) <= 24)
    if not valid:
        raise validation(
            f"Invalid ScheduleExpression {expression!r}: Model Monitor schedules are hourly "
            "cron(0 * ? * * *), every N hours cron(0 H/N ? * * *), daily cron(0 H ? * * *) "
            "or NOW (one time, with DataAnalysisStartTime and DataAnalysisEndTime)."
        )


def _check_s3(uri: str | None, member: str) -> None:
    from sfn_mlops.local.services.sagemaker import _check_s3_uri, _unsupported

    if uri is None:
        return
    if uri.startswith("https://"):
        raise _unsupported(f"{member} {uri!r} (an https:// URI)")
    _check_s3_uri(uri, member)


def _check_spec(spec: Spec) -> None:
    """What SageMaker checks in a job definition, and what the local runtime cannot run."""
    from sfn_mlops.local.services.sagemaker import (
        _check_instances,
        _check_local_path,
        _unsupported,
    )

    runtime = runtime_for(spec.app["ImageUri"])
    if runtime.kind == CLARIFY:
        raise _unsupported(f"A {spec.type} job with the image {spec.app['ImageUri']}")
    if runtime.kind == PYTHON_SCRIPT and not spec.app.get("ContainerEntrypoint"):
        raise validation(
            "ContainerEntrypoint is required locally for the image "
            f"{spec.app['ImageUri']}: the local runtime runs the entrypoint as given"
        )
    for member in ("RecordPreprocessorSourceUri", "PostAnalyticsProcessorSourceUri"):
        _check_s3(spec.app.get(member), member)
    for member in ("StatisticsResource", "ConstraintsResource"):
        _check_s3((spec.baseline.get(member) or {}).get("S3Uri"), f"{member}.S3Uri")
    endpoint_input = spec.endpoint_input
    _check_local_path(endpoint_input.get("LocalPath"), "EndpointInput.LocalPath")
    if endpoint_input.get("S3InputMode", "File") != "File":
        raise _unsupported(f"EndpointInput.S3InputMode {endpoint_input['S3InputMode']}")
    _check_window(None, endpoint_input)
    outputs = spec.output["MonitoringOutputs"]
    if len(outputs) != 1:
        raise validation("MonitoringOutputs must have exactly one MonitoringOutput.")
    _check_s3(outputs[0]["S3Output"]["S3Uri"], "MonitoringOutput.S3Output.S3Uri")
    _check_local_path(outputs[0]["S3Output"]["LocalPath"], "MonitoringOutput.S3Output.LocalPath")
    cluster = spec.resources["ClusterConfig"]
    _check_instances(cluster["InstanceCount"], "ClusterConfig.InstanceCount")
    if spec.type == MODEL_QUALITY:
        if not spec.ground_truth:
            raise validation("ModelQualityJobInput.GroundTruthS3Input.S3Uri is required.")
        _check_s3(spec.ground_truth, "GroundTruthS3Input.S3Uri")


def _check_job_input(job_input: dict[str, Any], member: str) -> None:
    from sfn_mlops.local.services.sagemaker import _unsupported

    has_endpoint, has_batch = "EndpointInput" in job_input, "BatchTransformInput" in job_input
    if has_endpoint == has_batch:
        raise validation(
            f"{member} must have exactly one of EndpointInput and BatchTransformInput."
        )
    if has_batch:
        raise _unsupported(f"{member}.BatchTransformInput (monitoring batch transform jobs)")


def _schedule_arn(cloud: Any, name: str) -> str:
    return str(cloud.arn("sagemaker", f"monitoring-schedule/{name.lower()}"))


def _definition_arn(cloud: Any, kind_type: str, name: str) -> str:
    return str(cloud.arn("sagemaker", f"{_LABELS[kind_type]}-job-definition/{name.lower()}"))


def _execution_summary(doc: dict[str, Any]) -> dict[str, Any]:
    summary = {
        "MonitoringScheduleName": doc["MonitoringScheduleName"],
        "ScheduledTime": timestamp(doc["ScheduledTime"]),
        "CreationTime": timestamp(doc["CreationTime"]),
        "LastModifiedTime": timestamp(doc["LastModifiedTime"]),
        "MonitoringExecutionStatus": doc["Status"],
        "ProcessingJobArn": doc.get("ProcessingJobArn"),
        "EndpointName": doc.get("EndpointName"),
        "FailureReason": doc.get("FailureReason"),
        "MonitoringJobDefinitionName": doc.get("MonitoringJobDefinitionName"),
        "MonitoringType": doc.get("MonitoringType"),
    }
    return {key: value for key, value in summary.items() if value is not None}


class MonitoringMixin:
    """The Model Monitor operations of the SageMaker provider (``services/sagemaker.py``)."""

    cloud: Any
    _endpoint: Callable[[str], dict[str, Any]]

    # the scheduler of this process -------------------------------------------------------
    def _monitoring_scheduler(self) -> monitoring.Scheduler:
        scheduler = self.__dict__.get("_monitoring")
        if scheduler is None:
            scheduler = self.__dict__.setdefault("_monitoring", monitoring.Scheduler(self.cloud))
        return scheduler  # type: ignore[no-any-return]

    def start_monitoring(self) -> None:
        """Fire the workspace's cron monitoring schedules from now on (the service's start)."""
        self._monitoring_scheduler().start()

    def stop_monitoring(self) -> None:
        self._monitoring_scheduler().shutdown()

    def recover_monitoring(self) -> list[str]:
        """Executions a dead service left running, marked Failed (after the jobs' recovery)."""
        return monitoring.recover_orphans(self.cloud)

    # job definitions ------------------------------------------------------------------------
    def _create_definition(self, kind_type: str, params: dict[str, Any]) -> dict[str, Any]:
        from sfn_mlops.local.services.sagemaker import _check_name

        name = params["JobDefinitionName"]
        _check_name(name, "jobDefinitionName")
        _check_job_input(params[f"{kind_type}JobInput"], f"{kind_type}JobInput")
        doc = copy.deepcopy({key: value for key, value in params.items() if key != "Tags"})
        _check_spec(monitoring.definition_spec(kind_type, doc))
        arn = _definition_arn(self.cloud, kind_type, name)
        doc.update(JobDefinitionArn=arn, CreationTime=time.time())
        try:
            self.cloud.metadata.create(monitoring.DEFINITION_KINDS[kind_type], name, doc)
        except AlreadyExists as err:
            raise AwsError(
                "ResourceInUse",
                f"A {_LABELS[kind_type]} job definition with the name {name} already exists "
                f"({arn}).",
            ) from err
        return {"JobDefinitionArn": arn}

    def _definition(self, kind_type: str, name: str) -> dict[str, Any]:
        doc = self.cloud.metadata.get(monitoring.DEFINITION_KINDS[kind_type], name)
        if doc is None:
            arn = _definition_arn(self.cloud, kind_type, name)
            raise _not_found(f"Could not find {_LABELS[kind_type]} job definition {arn}.")
        return doc  # type: ignore[no-any-return]

    def _describe_definition(self, kind_type: str, params: dict[str, Any]) -> dict[str, Any]:
        doc = self._definition(kind_type, params["JobDefinitionName"])
        return {**doc, "CreationTime": timestamp(doc["CreationTime"])}

    def _delete_definition(self, kind_type: str, params: dict[str, Any]) -> dict[str, Any]:
        name = params["JobDefinitionName"]
        self._definition(kind_type, name)
        self.cloud.metadata.delete(monitoring.DEFINITION_KINDS[kind_type], name)
        return {}

    def _list_definitions(self, kind_type: str, params: dict[str, Any]) -> dict[str, Any]:
        def endpoint_of(doc: dict[str, Any]) -> str:
            return str(monitoring.definition_spec(kind_type, doc).endpoint_input["EndpointName"])

        docs = [
            doc
            for doc in self.cloud.metadata.list(monitoring.DEFINITION_KINDS[kind_type])
            if params.get("NameContains", "") in doc["JobDefinitionName"]
            and params.get("EndpointName", endpoint_of(doc)) == endpoint_of(doc)
            and in_window(doc["CreationTime"], params)
        ]
        sort_keys: dict[str, Callable[[dict[str, Any]], Any]] = {
            "Name": lambda doc: doc["JobDefinitionName"],
            "CreationTime": lambda doc: doc["CreationTime"],
        }
        return page(
            docs,
            params,
            "JobDefinitionSummaries",
            lambda doc: {
                "MonitoringJobDefinitionName": doc["JobDefinitionName"],
                "MonitoringJobDefinitionArn": doc["JobDefinitionArn"],
                "CreationTime": timestamp(doc["CreationTime"]),
                "EndpointName": endpoint_of(doc),
            },
            sort_keys,
            "Descending",
        )

    def create_data_quality_job_definition(self, params: dict[str, Any]) -> dict[str, Any]:
        return self._create_definition(DATA_QUALITY, params)

    def describe_data_quality_job_definition(self, params: dict[str, Any]) -> dict[str, Any]:
        return self._describe_definition(DATA_QUALITY, params)

    def list_data_quality_job_definitions(self, params: dict[str, Any]) -> dict[str, Any]:
        return self._list_definitions(DATA_QUALITY, params)

    def delete_data_quality_job_definition(self, params: dict[str, Any]) -> dict[str, Any]:
        return self._delete_definition(DATA_QUALITY, params)

    def create_model_quality_job_definition(self, params: dict[str, Any]) -> dict[str, Any]:
        return self._create_definition(MODEL_QUALITY, params)

    def describe_model_quality_job_definition(self, params: dict[str, Any]) -> dict[str, Any]:
        return self._describe_definition(MODEL_QUALITY, params)

    def list_model_quality_job_definitions(self, params: dict[str, Any]) -> dict[str, Any]:
        return self._list_definitions(MODEL_QUALITY, params)

    def delete_model_quality_job_definition(self, params: dict[str, Any]) -> dict[str, Any]:
        return self._delete_definition(MODEL_QUALITY, params)

    # schedules -------------------------------------------------------------------------------
    def _checked_config(self, config: dict[str, Any]) -> tuple[dict[str, Any], Spec]:
        """The stored form of a MonitoringScheduleConfig (MonitoringType set), and its spec."""
        from sfn_mlops.local.services.sagemaker import _unsupported

        inline = config.get("MonitoringJobDefinition")
        named = config.get("MonitoringJobDefinitionName")
        if (inline is None) == (named is None):
            raise validation(
                "Exactly one of MonitoringJobDefinition and MonitoringJobDefinitionName must "
                "be provided in MonitoringScheduleConfig."
            )
        kind_type = config.get("MonitoringType") or DATA_QUALITY
        if kind_type not in (DATA_QUALITY, MODEL_QUALITY):
            raise _unsupported(f"MonitoringType {kind_type}")
        stored = {**copy.deepcopy(config), "MonitoringType": kind_type}
        if inline is not None:
            if kind_type != DATA_QUALITY:
                raise validation("A MonitoringJobDefinition is a DataQuality job definition.")
            inputs = inline["MonitoringInputs"]
            if len(inputs) != 1:
                raise validation("MonitoringInputs must have exactly one MonitoringInput.")
            _check_job_input(inputs[0], "MonitoringInput")
            spec = monitoring.inline_spec(stored["MonitoringJobDefinition"])
            _check_spec(spec)
        else:
            try:
                spec = monitoring.schedule_spec(self.cloud, stored)
            except KeyError as err:
                arn = _definition_arn(self.cloud, kind_type, str(named))
                raise validation(
                    f"Could not find {_LABELS[kind_type]} job definition {arn}."
                ) from err
        schedule_config = stored.get("ScheduleConfig")
        if schedule_config is not None:
            _check_expression(schedule_config)
        _check_window(schedule_config, spec.endpoint_input)
        self._endpoint(spec.endpoint_input["EndpointName"])  # Could not find endpoint "..."
        return stored, spec

    def _schedule(self, name: str) -> dict[str, Any]:
        doc = self.cloud.metadata.get(monitoring.KIND_SCHEDULE, name)
        if doc is None:
            arn = _schedule_arn(self.cloud, name)
            raise _not_found(f"Could not find monitoring schedule {arn}.")
        return doc  # type: ignore[no-any-return]

    def narrowed(self, schedule: dict[str, Any], window_start: str) -> dict[str, Any]:
        """The schedule with its window cut to start at ``window_start`` (an offset such as
        ``-PT10M``) and end at the run: what a one-time ``NOW`` schedule's
        DataAnalysisStartTime/EndTime give in SageMaker."""
        offset = _check_offset(window_start, "window_start")
        if offset is not None and -offset > _MAX_WINDOW:
            raise validation(f"window_start {window_start!r} is more than 24 hours back")
        narrowed = copy.deepcopy(schedule)
        config = narrowed["MonitoringScheduleConfig"].setdefault("ScheduleConfig", {})
        config.update(DataAnalysisStartTime=window_start, DataAnalysisEndTime="-PT0H")
        return narrowed

    def create_monitoring_schedule(self, params: dict[str, Any]) -> dict[str, Any]:
        from sfn_mlops.local.services.sagemaker import _check_name

        name = params["MonitoringScheduleName"]
        _check_name(name, "monitoringScheduleName")
        config, spec = self._checked_config(params["MonitoringScheduleConfig"])
        arn = _schedule_arn(self.cloud, name)
        now = time.time()
        doc = {
            "MonitoringScheduleName": name,
            "MonitoringScheduleArn": arn,
            "MonitoringScheduleStatus": "Scheduled",
            "MonitoringType": config["MonitoringType"],
            "MonitoringScheduleConfig": config,
            "EndpointName": spec.endpoint_input["EndpointName"],
            "CreationTime": now,
            "LastModifiedTime": now,
        }
        try:
            self.cloud.metadata.create(monitoring.KIND_SCHEDULE, name, doc)
        except AlreadyExists as err:
            raise AwsError(
                "ResourceInUse",
                f"A monitoring schedule with the name {name} already exists ({arn}).",
            ) from err
        if monitoring.schedule_expression(doc) == NOW:
            monitoring.start_execution(self.cloud, doc, now)
        else:
            self.start_monitoring()
        return {"MonitoringScheduleArn": arn}

    def _executions_of(self, doc: dict[str, Any]) -> list[dict[str, Any]]:
        return [
            execution
            for execution in monitoring.executions(self.cloud)
            if execution["MonitoringScheduleName"] == doc["MonitoringScheduleName"]
            and execution["ScheduleCreationTime"] == doc["CreationTime"]
        ]

    def describe_monitoring_schedule(self, params: dict[str, Any]) -> dict[str, Any]:
        doc = self._schedule(params["MonitoringScheduleName"])
        result = {
            "MonitoringScheduleArn": doc["MonitoringScheduleArn"],
            "MonitoringScheduleName": doc["MonitoringScheduleName"],
            "MonitoringScheduleStatus": doc["MonitoringScheduleStatus"],
            "MonitoringType": doc["MonitoringType"],
            "CreationTime": timestamp(doc["CreationTime"]),
            "LastModifiedTime": timestamp(doc["LastModifiedTime"]),
            "MonitoringScheduleConfig": doc["MonitoringScheduleConfig"],
            "EndpointName": doc["EndpointName"],
        }
        if doc.get("FailureReason"):
            result["FailureReason"] = doc["FailureReason"]
        runs = self._executions_of(doc)
        if runs:
            latest = max(runs, key=lambda e: (e["ScheduledTime"], e["CreationTime"]))
            result["LastMonitoringExecutionSummary"] = _execution_summary(latest)
        return result

    def list_monitoring_schedules(self, params: dict[str, Any]) -> dict[str, Any]:
        def wanted(doc: dict[str, Any]) -> bool:
            config = doc["MonitoringScheduleConfig"]
            filters = (
                ("EndpointName", doc["EndpointName"]),
                ("StatusEquals", doc["MonitoringScheduleStatus"]),
                ("MonitoringJobDefinitionName", config.get("MonitoringJobDefinitionName")),
                ("MonitoringTypeEquals", doc["MonitoringType"]),
            )
            return (
                params.get("NameContains", "") in doc["MonitoringScheduleName"]
                and all(params.get(key, value) == value for key, value in filters)
                and in_window(doc["CreationTime"], params)
                and in_window(doc["LastModifiedTime"], params, "LastModifiedTime")
            )

        docs = [doc for doc in self.cloud.metadata.list(monitoring.KIND_SCHEDULE) if wanted(doc)]

        def summary(doc: dict[str, Any]) -> dict[str, Any]:
            out = {
                "MonitoringScheduleName": doc["MonitoringScheduleName"],
                "MonitoringScheduleArn": doc["MonitoringScheduleArn"],
                "CreationTime": timestamp(doc["CreationTime"]),
                "LastModifiedTime": timestamp(doc["LastModifiedTime"]),
                "MonitoringScheduleStatus": doc["MonitoringScheduleStatus"],
                "EndpointName": doc["EndpointName"],
                "MonitoringType": doc["MonitoringType"],
            }
            definition = doc["MonitoringScheduleConfig"].get("MonitoringJobDefinitionName")
            if definition:
                out["MonitoringJobDefinitionName"] = definition
            return out

        sort_keys: dict[str, Callable[[dict[str, Any]], Any]] = {
            "Name": lambda doc: doc["MonitoringScheduleName"],
            "CreationTime": lambda doc: doc["CreationTime"],
            "Status": lambda doc: doc["MonitoringScheduleStatus"],
        }
        return page(docs, params, "MonitoringScheduleSummaries", summary, sort_keys, "Descending")

    def update_monitoring_schedule(self, params: dict[str, Any]) -> dict[str, Any]:
        from sfn_mlops.local.services.sagemaker import _unsupported

        name = params["MonitoringScheduleName"]
        self._schedule(name)
        new = params["MonitoringScheduleConfig"]
        if (new.get("ScheduleConfig") or {}).get("ScheduleExpression") == NOW:
            raise _unsupported(
                "UpdateMonitoringSchedule to NOW (for a one-time run create a schedule with "
                "ScheduleExpression NOW)"
            )
        config, spec = self._checked_config(new)
        doc = self.cloud.metadata.update(
            monitoring.KIND_SCHEDULE,
            name,
            MonitoringScheduleConfig=config,
            MonitoringType=config["MonitoringType"],
            EndpointName=spec.endpoint_input["EndpointName"],
            LastModifiedTime=time.time(),
        )
        self.start_monitoring()
        return {"MonitoringScheduleArn": doc["MonitoringScheduleArn"]}

    def delete_monitoring_schedule(self, params: dict[str, Any]) -> dict[str, Any]:
        name = params["MonitoringScheduleName"]
        self._schedule(name)
        self.cloud.metadata.delete(monitoring.KIND_SCHEDULE, name)
        return {}

    def start_monitoring_schedule(self, params: dict[str, Any]) -> dict[str, Any]:
        name = params["MonitoringScheduleName"]
        self._schedule(name)
        self.cloud.metadata.update(
            monitoring.KIND_SCHEDULE, name, MonitoringScheduleStatus="Scheduled",
            LastModifiedTime=time.time(),
        )  # fmt: skip
        self.start_monitoring()
        return {}

    def stop_monitoring_schedule(self, params: dict[str, Any]) -> dict[str, Any]:
        name = params["MonitoringScheduleName"]
        self._schedule(name)
        self.cloud.metadata.update(
            monitoring.KIND_SCHEDULE, name, MonitoringScheduleStatus="Stopped",
            LastModifiedTime=time.time(),
        )  # fmt: skip
        return {}

    # executions ------------------------------------------------------------------------------
    def list_monitoring_executions(self, params: dict[str, Any]) -> dict[str, Any]:
        def wanted(doc: dict[str, Any]) -> bool:
            filters = (
                ("MonitoringScheduleName", doc["MonitoringScheduleName"]),
                ("EndpointName", doc.get("EndpointName")),
                ("StatusEquals", doc["Status"]),
                ("MonitoringJobDefinitionName", doc.get("MonitoringJobDefinitionName")),
                ("MonitoringTypeEquals", doc.get("MonitoringType")),
            )
            return (
                all(params.get(key, value) == value for key, value in filters)
                and in_window(doc["ScheduledTime"], params, "ScheduledTime")
                and in_window(doc["CreationTime"], params)
                and in_window(doc["LastModifiedTime"], params, "LastModifiedTime")
            )

        docs = [doc for doc in monitoring.executions(self.cloud) if wanted(doc)]
        sort_keys: dict[str, Callable[[dict[str, Any]], Any]] = {
            "ScheduledTime": lambda doc: (doc["ScheduledTime"], doc["CreationTime"]),
            "CreationTime": lambda doc: doc["CreationTime"],
            "Status": lambda doc: doc["Status"],
        }
        request = {**params, "SortBy": params.get("SortBy", "ScheduledTime")}
        return page(
            docs, request, "MonitoringExecutionSummaries", _execution_summary, sort_keys,
            "Descending",
        )  # fmt: skip


def wait_for_execution(
    client: Any,
    schedule_name: str,
    *,
    timeout: float = 3600.0,
    poll: float = 1.0,
    sleep: Callable[[float], None] = time.sleep,
    clock: Callable[[], float] = time.monotonic,
) -> dict[str, Any]:
    """The latest execution of ``schedule_name`` once it has ended (its
    MonitoringExecutionSummary), through any boto3 SageMaker client, local or AWS.

    Polls ListMonitoringExecutions every ``poll`` seconds; TimeoutError after ``timeout``.
    """
    deadline = clock() + timeout
    while True:
        found = client.list_monitoring_executions(
            MonitoringScheduleName=schedule_name, SortBy="ScheduledTime",
            SortOrder="Descending", MaxResults=1,
        )["MonitoringExecutionSummaries"]  # fmt: skip
        if found and found[0]["MonitoringExecutionStatus"] in monitoring.TERMINAL:
            return dict(found[0])
        left = deadline - clock()
        if left <= 0:
            status = found[0]["MonitoringExecutionStatus"] if found else "none yet"
            raise TimeoutError(
                f"monitoring schedule {schedule_name}: no execution ended within {timeout:.0f} s "
                f"(latest: {status})"
            )
        sleep(min(poll, left))
