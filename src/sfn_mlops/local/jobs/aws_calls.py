"""What SageMaker does as a job's role around its container, decided here for the same role.

SageMaker makes these calls with the job's execution role (its ``RoleArn``; a transform job's
model's ``ExecutionRoleArn``), which is why that role needs ECR, CloudWatch Logs and
``cloudwatch:PutMetricData`` (SageMaker Developer Guide, "How to use SageMaker execution
roles", the CreateProcessingJob, CreateTrainingJob and CreateModel "Execution Role
Permissions", https://docs.aws.amazon.com/sagemaker/latest/dg/sagemaker-roles.html). Each need
comes from ``iam.needs`` with the parameters AWS's component sends, so the actions, ARN formats
and condition keys are the Service Authorization Reference's:

- **The image pull**, when the job starts: ``ecr:GetAuthorizationToken`` (no resource),
  ``ecr:BatchGetImage`` and ``ecr:GetDownloadUrlForLayer`` on the repository the image URI
  names (``ACCOUNT.dkr.ecr.REGION.amazonaws.com/REPOSITORY[:TAG|@DIGEST]``): the three a pull
  makes (Amazon ECR User Guide, "Using Amazon ECR images with Amazon ECS", "the
  ecr:BatchGetImage, ecr:GetDownloadUrlForLayer, and ecr:GetAuthorizationToken APIs",
  https://docs.aws.amazon.com/AmazonECR/latest/userguide/ECR_on_ECS.html).
  ``ecr:BatchCheckLayerAvailability``, which SageMaker's role page also lists, is a push's
  check of the layers a registry already has; a pull does not call it, so it is not required.
  A denial fails the job with SageMaker's FailureReason for an image it cannot pull,
  "ClientError: Cannot pull algorithm container. Either the image does not exist or its
  permissions are incorrect." (as jobs report it: aws/sagemaker-python-sdk issues 57, 1968),
  followed by the decision that refused it. An image URI that is not ECR's makes no ECR call.
- **The log stream**, when the container starts: ``logs:CreateLogGroup`` and
  ``logs:DescribeLogStreams`` on the group, ``logs:CreateLogStream`` and ``logs:PutLogEvents``
  on the stream, named as SageMaker names them (SageMaker Developer Guide, "Log Amazon
  SageMaker Events with Amazon CloudWatch",
  https://docs.aws.amazon.com/sagemaker/latest/dg/logging-cloudwatch.html):
  ``/aws/sagemaker/TrainingJobs`` ``[training-job-name]/algo-[instance-number-in-cluster]-
  [epoch_timestamp]``, ``/aws/sagemaker/ProcessingJobs`` ``[processing-job-name]/[hostname]-
  [epoch_timestamp]``, ``/aws/sagemaker/TransformJobs`` ``[transform-job-name]/[instance-id]-
  [epoch_timestamp]``. AWS documents no failure for a role that may not write logs: the
  container runs and its output never reaches CloudWatch Logs. So here: the job runs, and its
  log says what CloudWatch Logs would have refused (the log itself is kept: it is the local
  stand-in for the stream; there is no local CloudWatch Logs).
- **The instance metrics**, for each host (SageMaker Developer Guide, "Monitor Amazon SageMaker
  with Amazon CloudWatch", "SageMaker Jobs and Endpoint Metrics",
  https://docs.aws.amazon.com/sagemaker/latest/dg/monitoring-cloudwatch.html):
  ``CPUUtilization`` (each core 0-100, summed) and ``MemoryUtilization`` (0-100) in
  ``/aws/sagemaker/ProcessingJobs``, ``TrainingJobs``, ``TransformJobs``, dimension ``Host``
  ``[job-name]/algo-[n]`` (a transform's ``[job-name]/[instance-id]``). AWS publishes them every
  minute; here one datum each when the container has ended: its CPU time over the wall time
  it ran, and its peak resident memory over this machine's memory (``DiskUtilization`` is not
  measured). ``cloudwatch:PutMetricData`` is decided with ``cloudwatch:namespace``; a denial
  leaves them unpublished, as nothing in the job depends on them.

A host's "instance id" is made from the job's name (``i-`` and 17 hex digits, the form of an EC2
instance id): local mode has no instances, and a transform job's stream needs one.
"""

from __future__ import annotations

import hashlib
import os
import re
from functools import lru_cache
from typing import Any

from sfn_mlops.local.iam import Need, needs
from sfn_mlops.local.jobs.state import KIND_PROCESSING, KIND_TRAINING, KIND_TRANSFORM
from sfn_mlops.local.processes import Usage

#: The log group and the metrics namespace of each kind of job (the same name).
GROUPS = {
    KIND_TRAINING: "/aws/sagemaker/TrainingJobs",
    KIND_PROCESSING: "/aws/sagemaker/ProcessingJobs",
    KIND_TRANSFORM: "/aws/sagemaker/TransformJobs",
}
HOST = "algo-1"  # the one host a local job runs on
IMAGE_NOT_PULLED = (
    "ClientError: Cannot pull algorithm container. Either the image does not exist or its "
    "permissions are incorrect."
)
_ECR_IMAGE = re.compile(
    r"^(?P<registry>\d{12})\.dkr\.ecr(?:-fips)?\.(?P<region>[a-z0-9-]+)\.amazonaws\.com(?:\.cn)?"
    r"/(?P<repository>[a-z0-9][a-z0-9._/-]*?)(?::[\w][\w.-]*)?(?:@sha256:[0-9a-f]{64})?$"
)


def host(kind: str, job_name: str) -> str:
    """The host a job runs on, as its log stream and metrics name it."""
    if kind == KIND_TRANSFORM:
        return "i-" + hashlib.sha256(job_name.encode()).hexdigest()[:17]
    return HOST


@lru_cache(maxsize=256)
def image_pull(image_uri: str) -> tuple[Need, ...]:
    """What pulling ``image_uri`` needs of the role; nothing for an image not in ECR. (Kept per
    image: the needs come from the image URI and the SAR, not from the deployed template.)"""
    match = _ECR_IMAGE.match(image_uri)
    if match is None:
        return ()
    region, registry = match["region"], match["registry"]
    repository = {"registryId": registry, "repositoryName": match["repository"]}
    return (
        *needs("ecr", "GetAuthorizationToken", {}, region, registry),
        *needs("ecr", "BatchGetImage", repository, region, registry),
        *needs("ecr", "GetDownloadUrlForLayer", repository, region, registry),
    )


def log_stream(kind: str, job_name: str, started: float) -> tuple[str, str]:
    """(log group, log stream) of the job's container, as SageMaker names them."""
    return GROUPS[kind], f"{job_name}/{host(kind, job_name)}-{int(started)}"


def log_delivery(group: str, stream: str, region: str, account: str) -> list[Need]:
    """What writing the container's output to ``group``/``stream`` needs of the role."""
    in_group = {"logGroupName": group}
    in_stream = {"logGroupName": group, "logStreamName": stream}
    listing = {"logGroupName": group, "logStreamNamePrefix": stream}
    return [
        *needs("logs", "CreateLogGroup", in_group, region, account),
        *needs("logs", "CreateLogStream", in_stream, region, account),
        *needs("logs", "DescribeLogStreams", listing, region, account),
        *needs("logs", "PutLogEvents", in_stream, region, account),
    ]


@lru_cache(maxsize=256)
def metrics_publication(namespace: str, region: str, account: str) -> tuple[Need, ...]:
    """What PutMetricData into ``namespace`` needs (with ``cloudwatch:namespace`` set)."""
    return tuple(needs("cloudwatch", "PutMetricData", {"Namespace": namespace}, region, account))


def memory_bytes() -> int:
    return os.sysconf("SC_PAGE_SIZE") * os.sysconf("SC_PHYS_PAGES")


def instance_metrics(
    kind: str, job_name: str, usage: Usage, seconds: float, at: float
) -> dict[str, Any]:
    """The PutMetricData request of one host's instance metrics for the container's run."""
    dimensions = [{"Name": "Host", "Value": f"{job_name}/{host(kind, job_name)}"}]
    cpu = 100.0 * usage.cpu_seconds / seconds if seconds > 0 else 0.0
    memory = min(100.0, 100.0 * usage.max_rss_bytes / memory_bytes())
    datum = {"Dimensions": dimensions, "Timestamp": at, "Unit": "Percent"}
    return {
        "Namespace": GROUPS[kind],
        "MetricData": [
            {"MetricName": "CPUUtilization", "Value": cpu, **datum},
            {"MetricName": "MemoryUtilization", "Value": memory, **datum},
        ],
    }
