"""What the offline gate reads from a Lambda's code: a call on a client named after its
service is that service's only; an UpdateEndpoint that passes no DeploymentConfig needs no
cloudwatch:DescribeAlarms."""

from __future__ import annotations

from pathlib import Path

from sfn_mlops.aws import lambda_code

CODE = '''
import boto3

sagemaker = boto3.client("sagemaker")
events = boto3.client("events")


def plain(name, config):
    sagemaker.update_endpoint(EndpointName=name, EndpointConfigName=config)


def guarded(request):
    sagemaker.update_endpoint(**request)


def schedule(rule):
    events.enable_rule(Name=rule)
    sagemaker.describe_endpoint(EndpointName=rule)
'''


def _calls(tmp_path: Path) -> list[tuple[int, str, str, tuple[str, ...]]]:
    (tmp_path / "app.py").write_text(CODE, encoding="utf-8")
    return [(c.line, c.service, c.method, c.actions) for c in lambda_code.aws_calls(tmp_path)]


def test_the_receiver_names_the_service_and_keywords_narrow_update_endpoint(
    tmp_path: Path,
) -> None:
    assert _calls(tmp_path) == [
        (9, "sagemaker", "update_endpoint", ("sagemaker:UpdateEndpoint",)),
        (13, "sagemaker", "update_endpoint",
         ("sagemaker:UpdateEndpoint", "cloudwatch:DescribeAlarms")),
        (17, "events", "enable_rule", ("events:EnableRule",)),
        # events has a DescribeEndpoint too: not asked of the sagemaker client's call
        (18, "sagemaker", "describe_endpoint", ("sagemaker:DescribeEndpoint",)),
    ]  # fmt: skip
