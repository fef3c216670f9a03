"""SageMaker batch transform jobs, run on this machine: CreateTransformJob, DescribeTransformJob,
ListTransformJobs, StopTransformJob.

A mixin of ``sfn_mlops.local.services.sagemaker.SageMaker``. Create checks the request as
SageMaker does (the model exists, the input prefix has objects, the DataProcessing expressions
parse) and what the local runtime cannot do, then returns at once; the job runs as a job of the
service (``sfn_mlops.local.jobs.transform``): InProgress -> Completed, Failed (FailureReason) or
Stopping -> Stopped.

Honoured: TransformInput (S3Prefix and ManifestFile, ContentType, CompressionType None|Gzip,
SplitType None|Line), BatchStrategy, MaxPayloadInMB, MaxConcurrentTransforms, TransformOutput
(S3OutputPath, Accept, AssembleWith), DataProcessing for text/csv, DataCaptureConfig
(DestinationS3Uri, GenerateInferenceId), Environment, ModelClientConfig (the invocation timeout
and retries). Recorded only: TransformResources.InstanceType and VolumeKmsKeyId, the KmsKeyIds,
ExperimentConfig, Tags. Rejected as not emulated: AugmentedManifestFile and Converse sources,
SplitType RecordIO|TFRecord, MaxPayloadInMB 0 (chunked streaming), InstanceCount above 1,
DataProcessing on JSON, an image whose local runtime is not the framework images' Python.
"""

from __future__ import annotations

import copy
from collections.abc import Callable
from typing import Any

from sfn_mlops.local import jobs
from sfn_mlops.local.errors import AwsError, validation
from sfn_mlops.local.images import PYTHON_SCRIPT, runtime_for
from sfn_mlops.local.jobs import transform
from sfn_mlops.local.metadata import AlreadyExists
from sfn_mlops.local.objectstore import parse_s3_uri
from sfn_mlops.local.shapes import timestamp

KIND_TRANSFORM = jobs.KIND_TRANSFORM
_TRANSFORM_ECHO = (
    "ModelName",
    "MaxConcurrentTransforms",
    "ModelClientConfig",
    "MaxPayloadInMB",
    "BatchStrategy",
    "Environment",
    "TransformInput",
    "TransformOutput",
    "DataCaptureConfig",
    "TransformResources",
    "DataProcessing",
    "ExperimentConfig",
)
_DOCUMENTED = "text/csv with SplitType Line and AssembleWith Line (the combination AWS documents)"


def _media(value: str | None) -> str:
    return (value or "").split(";", 1)[0].strip().lower()


def _trivial(expression: str | None) -> bool:
    return expression is None or expression.strip() in ("", "$")


def _line_csv(params: dict[str, Any]) -> bool:
    """Records are CSV lines on the way in and out: what record-level processing needs."""
    inputs, outputs = params["TransformInput"], params["TransformOutput"]
    return (
        _media(inputs.get("ContentType")) == transform.CSV
        and _media(outputs.get("Accept")) == transform.CSV
        and inputs.get("SplitType") == "Line"
        and outputs.get("AssembleWith") == "Line"
    )


def _check_input(spec: dict[str, Any]) -> None:
    from sfn_mlops.local.services.sagemaker import _check_s3_uri, _unsupported

    source = spec["DataSource"]["S3DataSource"]
    if source["S3DataType"] not in ("S3Prefix", "ManifestFile"):
        raise _unsupported(f"TransformInput S3DataType {source['S3DataType']}")
    _check_s3_uri(source["S3Uri"], "TransformInput.DataSource.S3DataSource.S3Uri")
    if spec.get("SplitType", "None") not in ("None", "Line"):
        raise _unsupported(f"TransformInput.SplitType {spec['SplitType']}")


def _check_limits(params: dict[str, Any]) -> None:
    from sfn_mlops.local.services.sagemaker import _unsupported

    payload = params.get("MaxPayloadInMB")
    if payload == 0:
        raise _unsupported("MaxPayloadInMB 0 (objects streamed with HTTP chunked encoding)")
    limit = transform.MAX_PAYLOAD_MB
    if payload is not None and payload > limit:
        raise validation(f"MaxPayloadInMB ({payload}) must not be greater than {limit} MB.")
    concurrent = params.get("MaxConcurrentTransforms") or 1
    if payload is not None and concurrent * payload > limit:
        raise validation(
            f"MaxConcurrentTransforms x MaxPayloadInMB ({concurrent} x {payload} = "
            f"{concurrent * payload}) must not be greater than {limit} MB."
        )


def _check_data_processing(params: dict[str, Any]) -> None:
    """The filters parse as SageMaker's CSV JSONPath; record-level work needs CSV lines."""
    from sfn_mlops.local.services.sagemaker import _unsupported

    processing = params.get("DataProcessing") or {}
    media = {
        "InputFilter": ("ContentType", params["TransformInput"].get("ContentType")),
        "OutputFilter": ("Accept", params["TransformOutput"].get("Accept")),
    }
    for member, (header, value) in media.items():
        expression = processing.get(member)
        if _trivial(expression):
            continue
        if _media(value) != transform.CSV:
            raise _unsupported(
                f"DataProcessing.{member} {expression!r} with {header} {value!r} (JSON data "
                "processing; text/csv is emulated)"
            )
        try:
            transform.parse_filter(expression, member, _media(value))
        except transform.FilterError as err:
            raise validation(str(err)) from err
    record_level = processing.get("JoinSource") == "Input" or not _trivial(
        processing.get("OutputFilter")
    )
    if record_level and not _line_csv(params):
        raise _unsupported(f"DataProcessing JoinSource/OutputFilter other than on {_DOCUMENTED}")


def _check_capture(params: dict[str, Any]) -> None:
    from sfn_mlops.local.services.sagemaker import _check_s3_uri, _unsupported

    capture = params.get("DataCaptureConfig")
    if not capture:
        return
    _check_s3_uri(capture["DestinationS3Uri"], "DataCaptureConfig.DestinationS3Uri")
    if capture.get("GenerateInferenceId") and not _line_csv(params):
        raise _unsupported(f"DataCaptureConfig.GenerateInferenceId other than on {_DOCUMENTED}")


def _check_transform(params: dict[str, Any]) -> None:
    from sfn_mlops.local.services.sagemaker import _check_instances, _check_s3_uri

    _check_input(params["TransformInput"])
    _check_s3_uri(params["TransformOutput"]["S3OutputPath"], "TransformOutput.S3OutputPath")
    _check_limits(params)
    _check_data_processing(params)
    _check_capture(params)
    resources = params["TransformResources"]
    _check_instances(resources["InstanceCount"], "TransformResources.InstanceCount")


def _transform_defaults(params: dict[str, Any]) -> dict[str, Any]:
    request = copy.deepcopy(params)
    request.pop("Tags", None)
    request["TransformInput"].setdefault("CompressionType", "None")
    request["TransformInput"].setdefault("SplitType", "None")
    return request


class TransformMixin:
    """CreateTransformJob ... StopTransformJob; the jobs run in ``jobs.transform``."""

    cloud: Any
    _model: Callable[[str], dict[str, Any]]
    _container: Callable[[str], dict[str, Any]]
    _get: Callable[[str, str], dict[str, Any]]
    _stop: Callable[[str, str, str], dict[str, Any]]
    _list: Callable[..., dict[str, Any]]

    def _transform_container(self, model_name: str) -> dict[str, Any]:
        """The model's container (``Could not find model`` when there is none); its image's
        local runtime must run Python serving code."""
        from sfn_mlops.local.services.sagemaker import _unsupported

        container = self._container(model_name)
        runtime = runtime_for(container["Image"])
        if runtime.kind != PYTHON_SCRIPT:
            raise _unsupported(
                f"Batch transform with the image {container['Image']} ({runtime.description})"
            )
        return container

    def _check_inputs(self, params: dict[str, Any]) -> None:
        """SageMaker lists the input when the job is created: no object is a ValidationException."""
        source = params["TransformInput"]["DataSource"]["S3DataSource"]
        try:
            transform.resolve_inputs(self.cloud.objects, source)
        except transform.InputsMissing as err:
            if source["S3DataType"] != "S3Prefix":
                raise validation(f"Cannot read the input data source: {err}") from err
            role = self._model(params["ModelName"]).get("ExecutionRoleArn")
            bucket = parse_s3_uri(source["S3Uri"])[0]
            message = transform.no_objects_message(source["S3Uri"], bucket, self.cloud.region, role)
            raise validation(message) from err

    def create_transform_job(self, params: dict[str, Any]) -> dict[str, Any]:
        from sfn_mlops.local.services.sagemaker import _check_name

        name = params["TransformJobName"]
        _check_name(name, "transformJobName")
        container = self._transform_container(params["ModelName"])
        _check_transform(params)
        self._check_inputs(params)
        arn = self.cloud.arn("sagemaker", f"transform-job/{name.lower()}")
        doc = jobs.new_job_doc(KIND_TRANSFORM, name, arn, _transform_defaults(params))
        doc["ModelContainer"] = copy.deepcopy(container)
        doc["ModelRoleArn"] = self._model(params["ModelName"]).get("ExecutionRoleArn", "")
        try:
            transform.submit(self.cloud, doc)
        except AlreadyExists as err:
            raise AwsError(
                "ResourceInUse",
                "Transform job names must be unique within an AWS account and region, and a "
                f"transform job with this name already exists ({arn})",
            ) from err
        return {"TransformJobArn": arn}

    def describe_transform_job(self, params: dict[str, Any]) -> dict[str, Any]:
        from sfn_mlops.local.services.sagemaker import _drop_none, _status

        doc = self._get(KIND_TRANSFORM, params["TransformJobName"])
        request = doc["Request"]
        result = {key: request[key] for key in _TRANSFORM_ECHO if key in request}
        result.update(
            TransformJobName=doc["Name"],
            TransformJobArn=doc["Arn"],
            TransformJobStatus=_status(doc)[0],
            FailureReason=doc.get("FailureReason"),
            CreationTime=timestamp(doc["CreationTime"]),
            TransformStartTime=timestamp(doc.get("StartTime")),
            TransformEndTime=timestamp(doc.get("EndTime")),
        )
        return _drop_none(result)

    def stop_transform_job(self, params: dict[str, Any]) -> dict[str, Any]:
        return self._stop(KIND_TRANSFORM, params["TransformJobName"], "transform job")

    def list_transform_jobs(self, params: dict[str, Any]) -> dict[str, Any]:
        from sfn_mlops.local.services.sagemaker import _drop_none, _last_modified, _status

        def summary(doc: dict[str, Any]) -> dict[str, Any]:
            return _drop_none(
                {
                    "TransformJobName": doc["Name"],
                    "TransformJobArn": doc["Arn"],
                    "CreationTime": timestamp(doc["CreationTime"]),
                    "TransformEndTime": timestamp(doc.get("EndTime")),
                    "LastModifiedTime": timestamp(_last_modified(doc)),
                    "TransformJobStatus": _status(doc)[0],
                    "FailureReason": doc.get("FailureReason"),
                }
            )

        return self._list(KIND_TRANSFORM, params, summary, "TransformJobSummaries")
