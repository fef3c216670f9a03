"""What SageMaker does as a job's role around its container (sfn_mlops.local.jobs.aws_calls):
the repository an image URI names, the log stream as SageMaker names it, the instance metrics."""

from __future__ import annotations

import pytest

from sfn_mlops.local.iam import ANY
from sfn_mlops.local.jobs import aws_calls
from sfn_mlops.local.jobs.state import KIND_PROCESSING, KIND_TRAINING, KIND_TRANSFORM
from sfn_mlops.local.processes import Usage

XGBOOST = "683313688378.dkr.ecr.us-east-1.amazonaws.com/sagemaker-xgboost"


@pytest.mark.parametrize(
    ("image", "repository"),
    [
        (f"{XGBOOST}:3.0-5", "arn:aws:ecr:us-east-1:683313688378:repository/sagemaker-xgboost"),
        (
            "683313688378.dkr.ecr.us-east-1.amazonaws.com/sagemaker-model-monitor-analyzer",
            "arn:aws:ecr:us-east-1:683313688378:repository/sagemaker-model-monitor-analyzer",
        ),
        (
            "111122223333.dkr.ecr.eu-west-1.amazonaws.com/team/model@sha256:" + "a" * 64,
            "arn:aws:ecr:eu-west-1:111122223333:repository/team/model",
        ),
    ],
)
def test_an_image_pull_needs_the_token_and_the_images_repository(
    image: str, repository: str
) -> None:
    assert [(n.action, n.resource) for n in aws_calls.image_pull(image)] == [
        ("ecr:GetAuthorizationToken", ANY),
        ("ecr:BatchGetImage", repository),
        ("ecr:GetDownloadUrlForLayer", repository),
    ]


def test_an_image_outside_ecr_makes_no_ecr_call() -> None:
    assert aws_calls.image_pull("sagemaker-clarify-processing-is-not-offered-in-xx-1") == ()


def test_log_streams_are_named_as_sagemaker_names_them() -> None:
    assert aws_calls.log_stream(KIND_TRAINING, "run-1-train", 1700000000.9) == (
        "/aws/sagemaker/TrainingJobs",
        "run-1-train/algo-1-1700000000",
    )
    assert aws_calls.log_stream(KIND_PROCESSING, "run-1-eval", 1700000000.0)[1] == (
        "run-1-eval/algo-1-1700000000"
    )
    group, stream = aws_calls.log_stream(KIND_TRANSFORM, "batch-1", 1700000000.0)
    instance = aws_calls.host(KIND_TRANSFORM, "batch-1")
    assert (group, stream) == ("/aws/sagemaker/TransformJobs", f"batch-1/{instance}-1700000000")
    assert instance.startswith("i-") and len(instance) == 19
    assert [n.action for n in aws_calls.log_delivery(group, stream, "us-east-1", "1" * 12)] == [
        "logs:CreateLogGroup",
        "logs:CreateLogStream",
        "logs:DescribeLogStreams",
        "logs:PutLogEvents",
    ]


def test_instance_metrics_are_the_containers_cpu_and_peak_memory() -> None:
    memory = aws_calls.memory_bytes()
    usage = Usage(cpu_seconds=3.0, max_rss_bytes=memory // 4)
    request = aws_calls.instance_metrics(KIND_TRAINING, "run-1-train", usage, 2.0, 1700000000.0)
    host = [{"Name": "Host", "Value": "run-1-train/algo-1"}]
    assert request["Namespace"] == "/aws/sagemaker/TrainingJobs"
    assert [
        (d["MetricName"], d["Value"], d["Unit"], d["Dimensions"]) for d in request["MetricData"]
    ] == [
        ("CPUUtilization", 150.0, "Percent", host),  # each core 0-100, summed
        ("MemoryUtilization", pytest.approx(25.0, abs=0.01), "Percent", host),
    ]
    needs = aws_calls.metrics_publication("/aws/sagemaker/TrainingJobs", "us-east-1", "1" * 12)
    assert [(n.action, dict(n.context)) for n in needs] == [
        ("cloudwatch:PutMetricData", {"cloudwatch:namespace": "/aws/sagemaker/TrainingJobs"})
    ]
