"""Amazon SageMaker processing and training jobs, run on this machine by the local job runner,
and models (CreateModel, DescribeModel, DeleteModel, ListModels: records the local Clarify
runtime reads to find a model's data).

Create checks names and the request the way SageMaker does (plus what the local runtime cannot
run: an unknown image, Pipe mode, manifest files, more than one instance) and returns at once;
the job runs in a background thread (``sfn_mlops.local.jobs``). Describe and List answer in
SageMaker's shapes, with timestamps as timezone-aware datetimes.
"""

from __future__ import annotations

import copy
import datetime as dt
import re
import time
from collections.abc import Callable
from typing import Any

from sfn_mlops.local import jobs
from sfn_mlops.local.errors import AwsError, validation
from sfn_mlops.local.images import CLARIFY, MONITOR, runtime_for
from sfn_mlops.local.metadata import AlreadyExists
from sfn_mlops.local.services.sagemaker_hosting import HostingMixin
from sfn_mlops.local.services.sagemaker_monitoring import MonitoringMixin
from sfn_mlops.local.services.sagemaker_registry import RegistryMixin
from sfn_mlops.local.services.sagemaker_transform import TransformMixin
from sfn_mlops.local.services.sagemaker_tuning import TuningMixin
from sfn_mlops.local.shapes import timestamp

_NAME = re.compile(r"^[a-zA-Z0-9](-*[a-zA-Z0-9]){0,62}$")
_NAME_PATTERN = "^[a-zA-Z0-9](-*[a-zA-Z0-9]){0,62}"
NOT_FOUND = "Requested resource not found."
KIND_MODEL = "sagemaker-model"
_MODEL_ECHO = (
    "PrimaryContainer",
    "Containers",
    "InferenceExecutionConfig",
    "ExecutionRoleArn",
    "VpcConfig",
    "EnableNetworkIsolation",
)

_TRAINING_ECHO = (
    "HyperParameters",
    "AlgorithmSpecification",
    "RoleArn",
    "InputDataConfig",
    "OutputDataConfig",
    "ResourceConfig",
    "VpcConfig",
    "StoppingCondition",
    "EnableNetworkIsolation",
    "EnableInterContainerTrafficEncryption",
    "EnableManagedSpotTraining",
    "CheckpointConfig",
    "DebugHookConfig",
    "ExperimentConfig",
    "DebugRuleConfigurations",
    "TensorBoardOutputConfig",
    "ProfilerConfig",
    "ProfilerRuleConfigurations",
    "Environment",
    "RetryStrategy",
    "RemoteDebugConfig",
    "InfraCheckConfig",
)
_PROCESSING_ECHO = (
    "ProcessingInputs",
    "ProcessingOutputConfig",
    "ProcessingResources",
    "StoppingCondition",
    "AppSpecification",
    "Environment",
    "NetworkConfig",
    "RoleArn",
    "ExperimentConfig",
)


def _epoch(value: Any) -> float:
    """A List filter time as botocore hands it over: datetime, ISO string or epoch number."""
    if isinstance(value, dt.datetime):
        return (value if value.tzinfo else value.replace(tzinfo=dt.timezone.utc)).timestamp()
    if isinstance(value, (int, float)):
        return float(value)
    parsed = dt.datetime.fromisoformat(str(value).replace("Z", "+00:00"))
    return _epoch(parsed)


def _check_name(name: str, member: str) -> None:
    if not _NAME.match(name):
        raise validation(
            f"1 validation error detected: Value '{name}' at '{member}' failed to satisfy "
            f"constraint: Member must satisfy regular expression pattern: {_NAME_PATTERN}"
        )


def _unsupported(what: str) -> AwsError:
    return validation(f"{what} is not supported locally; run with --aws to use the real service")


def _check_local_path(path: str | None, member: str) -> None:
    if not path or not (path == "/opt/ml" or path.startswith("/opt/ml/")):
        raise validation(
            f"{member} {path!r} must be a folder under /opt/ml (the local runtime maps /opt/ml "
            "to the job's folder)"
        )


def _check_instances(count: int, member: str) -> None:
    if count != 1:
        raise _unsupported(f"{member}={count} (the local runtime runs one instance)")


def _check_s3_uri(uri: str, member: str) -> None:
    if not uri.startswith("s3://") or len(uri) <= len("s3://"):
        raise validation(f"{member} {uri!r} must be an S3 URI: s3://bucket/prefix")


# processing -------------------------------------------------------------------------------------
def _check_processing_input(item: dict[str, Any]) -> None:
    name = item.get("InputName", "?")
    s3 = item.get("S3Input")
    if s3 is None:
        raise _unsupported(f"ProcessingInput {name!r} without S3Input (DatasetDefinition)")
    if s3.get("S3DataType") != "S3Prefix":
        raise _unsupported(f"ProcessingInput {name!r}: S3DataType {s3.get('S3DataType')}")
    if s3.get("S3InputMode", "File") != "File":
        raise _unsupported(f"ProcessingInput {name!r}: S3InputMode {s3['S3InputMode']}")
    if s3.get("S3CompressionType", "None") != "None":
        raise _unsupported(f"ProcessingInput {name!r}: S3CompressionType {s3['S3CompressionType']}")
    _check_s3_uri(s3["S3Uri"], f"ProcessingInput {name!r} S3Uri")
    _check_local_path(s3.get("LocalPath"), f"ProcessingInput {name!r} LocalPath")


def _check_processing(params: dict[str, Any]) -> None:
    _check_name(params["ProcessingJobName"], "processingJobName")
    app = params["AppSpecification"]
    # The Clarify and Model Monitor images bring their own entrypoint (a runtime of ours).
    if runtime_for(app["ImageUri"]).kind not in (CLARIFY, MONITOR) and not app.get(
        "ContainerEntrypoint"
    ):
        raise validation(
            "AppSpecification.ContainerEntrypoint is required locally: the local runtime runs "
            'the entrypoint as given, e.g. ["python3", "/opt/ml/processing/code/job.py"]'
        )
    cluster = params["ProcessingResources"]["ClusterConfig"]
    _check_instances(cluster["InstanceCount"], "ProcessingResources.ClusterConfig.InstanceCount")
    for item in params.get("ProcessingInputs", []):
        _check_processing_input(item)
    for item in (params.get("ProcessingOutputConfig") or {}).get("Outputs", []):
        name = item.get("OutputName", "?")
        if "S3Output" not in item:
            raise _unsupported(f"ProcessingOutput {name!r} without S3Output (FeatureStoreOutput)")
        _check_s3_uri(item["S3Output"]["S3Uri"], f"ProcessingOutput {name!r} S3Uri")
        _check_local_path(item["S3Output"]["LocalPath"], f"ProcessingOutput {name!r} LocalPath")


def _processing_defaults(params: dict[str, Any]) -> dict[str, Any]:
    request = copy.deepcopy(params)
    for item in request.get("ProcessingInputs", []):
        item.setdefault("AppManaged", False)
        s3 = item["S3Input"]
        s3.setdefault("S3InputMode", "File")
        s3.setdefault("S3DataDistributionType", "FullyReplicated")
        s3.setdefault("S3CompressionType", "None")
    for item in (request.get("ProcessingOutputConfig") or {}).get("Outputs", []):
        item.setdefault("AppManaged", False)
        item["S3Output"].setdefault("S3UploadMode", "EndOfJob")
    return request


# training ---------------------------------------------------------------------------------------
def _check_channel(channel: dict[str, Any], default_mode: str) -> None:
    name = channel["ChannelName"]
    source = channel["DataSource"].get("S3DataSource")
    if source is None:
        raise _unsupported(f"Channel {name!r} without S3DataSource (FileSystemDataSource)")
    if source["S3DataType"] != "S3Prefix":
        raise _unsupported(f"Channel {name!r}: S3DataType {source['S3DataType']}")
    mode = channel.get("InputMode", default_mode)
    if mode == "Pipe":
        raise _unsupported(f"Channel {name!r}: InputMode Pipe")
    if channel.get("CompressionType", "None") != "None":
        raise _unsupported(f"Channel {name!r}: CompressionType {channel['CompressionType']}")
    _check_s3_uri(source["S3Uri"], f"Channel {name!r} S3Uri")


def _check_training(params: dict[str, Any]) -> None:
    _check_name(params["TrainingJobName"], "trainingJobName")
    algorithm = params.get("AlgorithmSpecification") or {}
    if not algorithm.get("TrainingImage"):
        raise _unsupported("AlgorithmSpecification without TrainingImage (AlgorithmName)")
    runtime_for(algorithm["TrainingImage"])
    resources = params.get("ResourceConfig") or {}
    if resources.get("InstanceGroups"):
        raise _unsupported("ResourceConfig.InstanceGroups (heterogeneous clusters)")
    _check_instances(resources.get("InstanceCount", 1), "ResourceConfig.InstanceCount")
    default_mode = algorithm.get("TrainingInputMode", "File")
    channels = params.get("InputDataConfig", [])
    names = [c["ChannelName"] for c in channels]
    if len(set(names)) != len(names):
        raise validation(f"Channel names must be unique: {names}")
    for channel in channels:
        _check_channel(channel, default_mode)
    output = params.get("OutputDataConfig") or {}
    _check_s3_uri(output.get("S3OutputPath", ""), "OutputDataConfig.S3OutputPath")


def _training_defaults(params: dict[str, Any]) -> dict[str, Any]:
    request = copy.deepcopy(params)
    algorithm = request["AlgorithmSpecification"]
    algorithm.setdefault("TrainingInputMode", "File")
    algorithm.setdefault("EnableSageMakerMetricsTimeSeries", False)
    for channel in request.get("InputDataConfig", []):
        channel.setdefault("CompressionType", "None")
        channel.setdefault("RecordWrapperType", "None")
        source = channel["DataSource"]["S3DataSource"]
        source.setdefault("S3DataDistributionType", "FullyReplicated")
    request.setdefault("StoppingCondition", {"MaxRuntimeInSeconds": jobs.DEFAULT_MAX_RUNTIME})
    request.setdefault("HyperParameters", {})
    request["OutputDataConfig"].setdefault("KmsKeyId", "")
    for flag in (
        "EnableNetworkIsolation",
        "EnableInterContainerTrafficEncryption",
        "EnableManagedSpotTraining",
    ):
        request.setdefault(flag, False)
    return request


def _seconds(doc: dict[str, Any]) -> int | None:
    if doc.get("StartTime") is None or doc.get("EndTime") is None:
        return None
    return max(1, round(doc["EndTime"] - doc["StartTime"]))


def _status(doc: dict[str, Any]) -> tuple[str, str]:
    """(status, secondary status), Stopping while a stop request is being carried out."""
    if doc["Status"] == "InProgress" and doc.get("StopRequested"):
        return "Stopping", "Stopping"
    return doc["Status"], doc["SecondaryStatus"]


def _last_modified(doc: dict[str, Any]) -> float:
    return max(doc["LastModifiedTime"], doc.get("StopRequested") or 0.0)


def _transitions(doc: dict[str, Any]) -> list[dict[str, Any]]:
    out = []
    for item in doc["Transitions"]:
        entry: dict[str, Any] = {
            "Status": item["Status"],
            "StartTime": timestamp(item["StartTime"]),
            "StatusMessage": item["StatusMessage"],
        }
        if "EndTime" in item:
            entry["EndTime"] = timestamp(item["EndTime"])
        out.append(entry)
    return out


def _drop_none(result: dict[str, Any]) -> dict[str, Any]:
    return {key: value for key, value in result.items() if value is not None}


class SageMaker(RegistryMixin, HostingMixin, TransformMixin, TuningMixin, MonitoringMixin):
    def __init__(self, cloud: Any) -> None:
        self.cloud = cloud

    # shared -----------------------------------------------------------------------------------
    def _create(self, kind: str, name: str, resource: str, request: dict[str, Any]) -> str:
        arn = self.cloud.arn("sagemaker", f"{resource}/{name.lower()}")
        try:
            jobs.submit(self.cloud, kind, jobs.new_job_doc(kind, name, arn, request))
        except AlreadyExists as err:
            label = resource.replace("-", " ")
            raise AwsError(
                "ResourceInUse",
                f"{label.capitalize()} names must be unique within an AWS account and region, "
                f"and a {label} with this name already exists ({arn})",
            ) from err
        return arn

    def _get(self, kind: str, name: str) -> dict[str, Any]:
        doc = self.cloud.metadata.get(kind, name)
        if doc is None:
            raise validation(NOT_FOUND)
        return jobs.refresh(self.cloud, kind, doc)

    def _stop(self, kind: str, name: str, label: str) -> dict[str, Any]:
        doc = self._get(kind, name)
        status, _ = _status(doc)
        if status != "InProgress":
            raise validation(f"The request was rejected because the {label} is in status {status}.")
        jobs.request_stop(self.cloud, kind, name)
        return {}

    def _list(
        self,
        kind: str,
        params: dict[str, Any],
        summary: Callable[[dict[str, Any]], dict[str, Any]],
        key: str,
    ) -> dict[str, Any]:
        docs = [jobs.refresh(self.cloud, kind, doc) for doc in self.cloud.metadata.list(kind)]
        docs = [doc for doc in docs if _matches(doc, params)]
        sort_by = params.get("SortBy", "CreationTime")
        sort_key: Callable[[dict[str, Any]], Any] = {
            "Name": lambda doc: doc["Name"],
            "Status": lambda doc: _status(doc)[0],
        }.get(sort_by, lambda doc: doc["CreationTime"])
        docs.sort(key=sort_key, reverse=params.get("SortOrder", "Descending") == "Descending")
        start = int(params.get("NextToken") or 0)
        size = int(params.get("MaxResults", 10))
        page = docs[start : start + size]
        result: dict[str, Any] = {key: [summary(doc) for doc in page]}
        if start + size < len(docs):
            result["NextToken"] = str(start + size)
        return result

    # processing jobs --------------------------------------------------------------------------
    def create_processing_job(self, params: dict[str, Any]) -> dict[str, Any]:
        _check_processing(params)
        request = _processing_defaults(params)
        name = params["ProcessingJobName"]
        arn = self._create(jobs.KIND_PROCESSING, name, "processing-job", request)
        return {"ProcessingJobArn": arn}

    def describe_processing_job(self, params: dict[str, Any]) -> dict[str, Any]:
        doc = self._get(jobs.KIND_PROCESSING, params["ProcessingJobName"])
        request = doc["Request"]
        result = {key: request[key] for key in _PROCESSING_ECHO if key in request}
        result.update(
            ProcessingJobName=doc["Name"],
            ProcessingJobArn=doc["Arn"],
            ProcessingJobStatus=_status(doc)[0],
            ExitMessage=doc.get("ExitMessage"),
            FailureReason=doc.get("FailureReason"),
            ProcessingStartTime=timestamp(doc.get("StartTime")),
            ProcessingEndTime=timestamp(doc.get("EndTime")),
            LastModifiedTime=timestamp(_last_modified(doc)),
            CreationTime=timestamp(doc["CreationTime"]),
        )
        return _drop_none(result)

    def stop_processing_job(self, params: dict[str, Any]) -> dict[str, Any]:
        return self._stop(jobs.KIND_PROCESSING, params["ProcessingJobName"], "processing job")

    def list_processing_jobs(self, params: dict[str, Any]) -> dict[str, Any]:
        def summary(doc: dict[str, Any]) -> dict[str, Any]:
            return _drop_none(
                {
                    "ProcessingJobName": doc["Name"],
                    "ProcessingJobArn": doc["Arn"],
                    "CreationTime": timestamp(doc["CreationTime"]),
                    "ProcessingEndTime": timestamp(doc.get("EndTime")),
                    "LastModifiedTime": timestamp(_last_modified(doc)),
                    "ProcessingJobStatus": _status(doc)[0],
                    "FailureReason": doc.get("FailureReason"),
                    "ExitMessage": doc.get("ExitMessage"),
                }
            )

        return self._list(jobs.KIND_PROCESSING, params, summary, "ProcessingJobSummaries")

    # training jobs ----------------------------------------------------------------------------
    def create_training_job(self, params: dict[str, Any]) -> dict[str, Any]:
        _check_training(params)
        request = _training_defaults(params)
        name = params["TrainingJobName"]
        arn = self._create(jobs.KIND_TRAINING, name, "training-job", request)
        return {"TrainingJobArn": arn}

    def describe_training_job(self, params: dict[str, Any]) -> dict[str, Any]:
        doc = self._get(jobs.KIND_TRAINING, params["TrainingJobName"])
        request = doc["Request"]
        status, secondary = _status(doc)
        result = {key: request[key] for key in _TRAINING_ECHO if key in request}
        seconds = _seconds(doc)
        result.update(
            TrainingJobName=doc["Name"],
            TrainingJobArn=doc["Arn"],
            ModelArtifacts=doc.get("ModelArtifacts"),
            TrainingJobStatus=status,
            SecondaryStatus=secondary,
            FailureReason=doc.get("FailureReason"),
            CreationTime=timestamp(doc["CreationTime"]),
            TrainingStartTime=timestamp(doc.get("StartTime")),
            TrainingEndTime=timestamp(doc.get("EndTime")),
            LastModifiedTime=timestamp(_last_modified(doc)),
            SecondaryStatusTransitions=_transitions(doc),
            TrainingTimeInSeconds=seconds,
            BillableTimeInSeconds=seconds,
        )
        result.update(self._tuning_fields(doc))  # TuningJobArn, FinalMetricDataList
        return _drop_none(result)

    def stop_training_job(self, params: dict[str, Any]) -> dict[str, Any]:
        return self._stop(jobs.KIND_TRAINING, params["TrainingJobName"], "training job")

    def list_training_jobs(self, params: dict[str, Any]) -> dict[str, Any]:
        def summary(doc: dict[str, Any]) -> dict[str, Any]:
            status, secondary = _status(doc)
            return _drop_none(
                {
                    "TrainingJobName": doc["Name"],
                    "TrainingJobArn": doc["Arn"],
                    "CreationTime": timestamp(doc["CreationTime"]),
                    "TrainingEndTime": timestamp(doc.get("EndTime")),
                    "LastModifiedTime": timestamp(_last_modified(doc)),
                    "TrainingJobStatus": status,
                    "SecondaryStatus": secondary,
                }
            )

        return self._list(jobs.KIND_TRAINING, params, summary, "TrainingJobSummaries")

    # models -----------------------------------------------------------------------------------
    def _model_arn(self, name: str) -> str:
        return str(self.cloud.arn("sagemaker", f"model/{name.lower()}"))

    def _model(self, name: str) -> dict[str, Any]:
        doc = self.cloud.metadata.get(KIND_MODEL, name)
        if doc is None:
            raise validation(f'Could not find model "{self._model_arn(name)}".')
        return doc

    def create_model(self, params: dict[str, Any]) -> dict[str, Any]:
        name = params["ModelName"]
        _check_name(name, "modelName")
        containers = params.get("Containers") or []
        primary = params.get("PrimaryContainer")
        if primary is None and not containers:
            raise validation("Either PrimaryContainer or Containers must be provided.")
        if primary is not None and containers:
            raise validation("Only one of PrimaryContainer or Containers may be provided.")
        for container in [primary] if primary else containers:
            uri = container.get("ModelDataUrl")
            if uri is not None:
                _check_s3_uri(uri, "ModelDataUrl")
        arn = self._model_arn(name)
        doc = {key: copy.deepcopy(params[key]) for key in _MODEL_ECHO if key in params}
        doc.update(ModelName=name, ModelArn=arn, CreationTime=time.time())
        doc.setdefault("EnableNetworkIsolation", False)
        try:
            self.cloud.metadata.create(KIND_MODEL, name, doc)
        except AlreadyExists as err:
            raise validation(f'Cannot create already existing model "{arn}".') from err
        return {"ModelArn": arn}

    def describe_model(self, params: dict[str, Any]) -> dict[str, Any]:
        doc = self._model(params["ModelName"])
        return {**doc, "CreationTime": timestamp(doc["CreationTime"])}

    def delete_model(self, params: dict[str, Any]) -> dict[str, Any]:
        name = params["ModelName"]
        self._model(name)
        self.cloud.metadata.delete(KIND_MODEL, name)
        return {}

    def list_models(self, params: dict[str, Any]) -> dict[str, Any]:
        docs = [doc for doc in self.cloud.metadata.list(KIND_MODEL) if _model_matches(doc, params)]
        if params.get("SortBy", "CreationTime") == "Name":
            docs.sort(key=lambda doc: doc["ModelName"])
        else:
            docs.sort(key=lambda doc: doc["CreationTime"])
        if params.get("SortOrder", "Descending") == "Descending":
            docs.reverse()
        start = int(params.get("NextToken") or 0)
        size = int(params.get("MaxResults", 10))
        result: dict[str, Any] = {
            "Models": [
                {
                    "ModelName": doc["ModelName"],
                    "ModelArn": doc["ModelArn"],
                    "CreationTime": timestamp(doc["CreationTime"]),
                }
                for doc in docs[start : start + size]
            ]
        }
        if start + size < len(docs):
            result["NextToken"] = str(start + size)
        return result


def _model_matches(doc: dict[str, Any], params: dict[str, Any]) -> bool:
    if "NameContains" in params and params["NameContains"] not in doc["ModelName"]:
        return False
    created = doc["CreationTime"]
    if "CreationTimeAfter" in params and created <= _epoch(params["CreationTimeAfter"]):
        return False
    return not ("CreationTimeBefore" in params and created >= _epoch(params["CreationTimeBefore"]))


def _matches(doc: dict[str, Any], params: dict[str, Any]) -> bool:
    """The List filters: name substring, status, creation and modification time windows."""
    if "NameContains" in params and params["NameContains"] not in doc["Name"]:
        return False
    if "StatusEquals" in params and _status(doc)[0] != params["StatusEquals"]:
        return False
    windows = (
        ("CreationTimeAfter", doc["CreationTime"], 1),
        ("CreationTimeBefore", doc["CreationTime"], -1),
        ("LastModifiedTimeAfter", _last_modified(doc), 1),
        ("LastModifiedTimeBefore", _last_modified(doc), -1),
    )
    for key, value, sign in windows:
        if key in params and (value - _epoch(params[key])) * sign <= 0:
            return False
    return True
