"""Each check on small templates written for it, and the pieces the checks are made of."""

from __future__ import annotations

import json
import textwrap
from pathlib import Path
from typing import Any

import pytest

from sfn_mlops.aws import checks, iam, lambda_code
from sfn_mlops.intrinsics import Stack

FN_ARN = "arn:aws:lambda:us-east-1:123456789012:function:Fn"

SECURE_BUCKET = """
  Bucket:
    Type: AWS::S3::Bucket
    Properties:
      BucketEncryption:
        ServerSideEncryptionConfiguration:
          - ServerSideEncryptionByDefault: {SSEAlgorithm: aws:kms}
      PublicAccessBlockConfiguration:
        BlockPublicAcls: true
        BlockPublicPolicy: true
        IgnorePublicAcls: true
        RestrictPublicBuckets: true
  BucketPolicy:
    Type: AWS::S3::BucketPolicy
    Properties:
      Bucket: !Ref Bucket
      PolicyDocument:
        Statement:
          - Effect: Deny
            Principal: "*"
            Action: s3:*
            Resource: [!GetAtt Bucket.Arn, !Sub "${Bucket.Arn}/*"]
            Condition: {Bool: {aws:SecureTransport: false}}
"""


def project(
    tmp_path: Path,
    resources: str,
    definition: dict[str, Any] | None = None,
    code: dict[str, str] | None = None,
) -> checks.Project:
    """A SAM template with `resources`, an ASL file `machine.asl.json` and Lambda code in `fn/`."""
    template = "Transform: AWS::Serverless-2016-10-31\nResources:\n" + resources
    (tmp_path / "template.yaml").write_text(template)
    if definition is not None:
        (tmp_path / "machine.asl.json").write_text(json.dumps(definition))
    (tmp_path / "fn").mkdir(exist_ok=True)
    for name, text in (code or {}).items():
        (tmp_path / "fn" / name).write_text(textwrap.dedent(text))
    loaded = checks.load_project(tmp_path / "template.yaml")
    assert loaded.translation_problem is None
    return loaded


def task(resource: str, parameters: dict[str, Any]) -> dict[str, Any]:
    return {
        "StartAt": "T",
        "States": {
            "T": {"Type": "Task", "Resource": resource, "Parameters": parameters, "End": True}
        },
    }


MACHINE = """
  Machine:
    Type: AWS::Serverless::StateMachine
    Properties:
      DefinitionUri: machine.asl.json
      DefinitionSubstitutions: {subs}
      Policies: {policies}
"""
FUNCTION = """
  Fn:
    Type: AWS::Serverless::Function
    Properties:
      Runtime: python3.12
      CodeUri: fn/
      Handler: app.handler
      Environment: {{Variables: {env}}}
      Policies: {policies}
"""


# iam ---------------------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("granted", "needed", "covered"),
    [
        ("arn:aws:sagemaker:r:a:training-job/*", "arn:aws:sagemaker:r:a:training-job/*", True),
        ("arn:aws:sagemaker:r:a:training-job/abc*", "arn:aws:sagemaker:r:a:training-job/*", False),
        ("*", "arn:aws:sagemaker:r:a:training-job/*", True),
        (f"{FN_ARN}*", FN_ARN, True),
        (f"{FN_ARN}Other", FN_ARN, False),
        ("arn:aws:s3:::b?cket/*", "arn:aws:s3:::bucket/*", True),
    ],
)
def test_glob_covers(granted: str, needed: str, covered: bool) -> None:
    assert iam.glob_covers(granted, needed) is covered


def test_actions_match_case_insensitively_and_deny_wins() -> None:
    allow = iam.Statement("Allow", ("S3:getobject",), ("*",), False, "p")
    deny = iam.Statement("Deny", ("s3:*",), ("arn:aws:s3:::secret/*",), False, "p")
    granted = iam.Principal("Role", [allow, deny])
    assert iam.is_granted(granted, iam.Need("s3:GetObject", "arn:aws:s3:::open/k", "x"))
    assert not iam.is_granted(granted, iam.Need("s3:GetObject", "arn:aws:s3:::secret/k", "x"))


def test_task_needs_of_each_integration() -> None:
    invoke = iam.task_needs("arn:aws:states:::lambda:invoke", {"FunctionName": "Fn:live"})
    assert invoke == [iam.Need("lambda:InvokeFunction", FN_ARN, "lambda:invoke")]
    model = iam.task_needs(
        "arn:aws:states:::sagemaker:createModel",
        {"ModelName.$": "$.name", "ExecutionRoleArn": "arn:aws:iam::123456789012:role/R"},
    )
    assert [(n.action, n.resource) for n in model] == [
        ("sagemaker:CreateModel", "arn:aws:sagemaker:us-east-1:123456789012:model/*"),
        ("iam:PassRole", "arn:aws:iam::123456789012:role/R"),
    ]
    sdk = iam.task_needs("arn:aws:states:::aws-sdk:sagemaker:describeModelPackage", {})
    assert sdk == [iam.Need("sagemaker:DescribeModelPackage", None, sdk[0].reason)]
    with pytest.raises(iam.UnknownIntegration):
        iam.task_needs("arn:aws:states:::glue:startJobRun.sync", {})


# lambda_code -------------------------------------------------------------------------------


def test_aws_calls_follow_the_client_across_modules(tmp_path: Path) -> None:
    (tmp_path / "app.py").write_text(
        "import boto3\nimport notify\n\ndef handler(e, c):\n"
        "    notify.send(boto3.client('sns'), e)\n    e.get('x')\n"
    )
    (tmp_path / "notify.py").write_text(
        "def send(client, e):\n    client.publish(TopicArn=e['t'], Message='m')\n"
    )
    (tmp_path / "tests").mkdir()
    (tmp_path / "tests" / "test_x.py").write_text("def t(c):\n    c.delete_topic()\n")
    calls = lambda_code.aws_calls(tmp_path)
    assert [(c.path.name, c.line, c.method, c.actions) for c in calls] == [
        ("notify.py", 2, "publish", ("sns:Publish",))
    ]


def test_iam_action_names_that_differ_from_the_operation(tmp_path: Path) -> None:
    (tmp_path / "app.py").write_text(
        "import boto3\ns3 = boto3.client(service_name='s3')\n"
        "s3.head_object(Bucket='b', Key='k')\ns3.get_paginator('list_objects_v2')\n"
        "s3.upload_file('f', 'b', 'k')\n"
    )
    assert [c.actions for c in lambda_code.aws_calls(tmp_path)] == [
        ("s3:GetObject",),
        ("s3:ListBucket",),
        ("s3:PutObject",),
    ]


def test_env_reads_without_a_default(tmp_path: Path) -> None:
    (tmp_path / "app.py").write_text(
        "import os\nBUCKET_ENV = 'BUCKET'\n"
        "a = os.environ['TOPIC_ARN']\nb = os.getenv(BUCKET_ENV)\n"
        "c = os.environ.get('LEVEL', 'INFO')\nd = os.getenv('MODE', default='x')\n"
    )
    assert [r.name for r in lambda_code.env_reads(tmp_path)] == ["TOPIC_ARN", "BUCKET"]


# resolve -----------------------------------------------------------------------------------


def test_resolve_maps_values_back_to_their_resource() -> None:
    stack = Stack(
        {
            "Parameters": {"Prefix": {"Type": "String", "Default": "code"}},
            "Resources": {"Bucket": {"Type": "AWS::S3::Bucket"}, "T": {"Type": "AWS::SNS::Topic"}},
        }
    )
    uri = stack.resolve({"Fn::Sub": "s3://${Bucket}/${Prefix}/${!Literal}"})
    assert uri == "s3://sfn-mlops-bucket/code/${Literal}"
    topic = stack.resolve({"Ref": "T"})
    assert stack.owner_of(topic) == checks.Owner("T", "AWS::SNS::Topic", "Ref")


# checks on small templates -------------------------------------------------------------------


def test_a_placeholder_without_a_substitution(tmp_path: Path) -> None:
    loaded = project(
        tmp_path,
        SECURE_BUCKET + MACHINE.format(subs="{Bucket: !Ref Bucket}", policies="[]"),
        {
            "StartAt": "P",
            "States": {"P": {"Type": "Pass", "Result": "${Bucket}/${Prefix}", "End": True}},
        },
    )
    assert [str(p) for p in checks.check_substitutions(loaded)] == [
        f"{tmp_path}/machine.asl.json: States.P.Result: uses ${{Prefix}}, which "
        "Resources.Machine.Properties.DefinitionSubstitutions does not define; add a Prefix "
        "entry there or use one of ['Bucket']"
    ]


def test_references_outside_the_template(tmp_path: Path) -> None:
    other = "arn:aws:lambda:us-east-1:111111111111:function:other"
    loaded = project(
        tmp_path,
        SECURE_BUCKET
        + MACHINE.format(subs="{Bucket: !Ref Bucket}", policies="[]")
        + FUNCTION.format(env="{BUCKET: !Ref Bucket}", policies="[]"),
        task(
            "arn:aws:states:::lambda:invoke",
            {"FunctionName": other, "Payload": {"u": "s3://${Bucket}/k"}},
        ),
        {"app.py": "import os\nBUCKET = os.environ['BUCKET']\nTOPIC = os.environ['TOPIC_ARN']\n"},
    )
    assert [(p.where, p.message.split(";")[0]) for p in checks.check_references(loaded)] == [
        (
            "States.T.Parameters.FunctionName",
            f"refers to {other}, which is no AWS::Lambda::Function of the template",
        ),
        (
            "Resources.Fn",
            "reads the environment variable TOPIC_ARN, which the template does not set for this "
            "function",
        ),
    ]


def test_an_integration_the_gate_does_not_know_fails(tmp_path: Path) -> None:
    loaded = project(
        tmp_path,
        SECURE_BUCKET + MACHINE.format(subs="{Bucket: !Ref Bucket}", policies="[]"),
        task("arn:aws:states:::glue:startJobRun.sync", {"JobName": "${Bucket}"}),
    )
    (problem,) = checks.check_iam_coverage(loaded)
    assert problem.where == "States.T"
    assert problem.message.startswith(
        "the gate does not know what IAM actions arn:aws:states:::glue:startJobRun.sync needs"
    )


def test_wildcard_actions_and_unreasoned_star_resources(tmp_path: Path) -> None:
    policies = """
        - Statement:
            - {Sid: Everything, Effect: Allow, Action: "s3:Get*", Resource: !GetAtt Bucket.Arn}
            - {Sid: Unscoped, Effect: Allow, Action: [sns:Publish], Resource: "*"}
            - {Sid: Metrics, Effect: Allow, Action: cloudwatch:PutMetricData, Resource: "*"}"""
    loaded = project(
        tmp_path,
        SECURE_BUCKET + FUNCTION.format(env="{}", policies=policies),
        code={"app.py": "x = 1\n"},
    )
    found = [
        (p.where.rsplit(".", 1)[-1], p.message.split(";")[0])
        for p in checks.check_iam_wildcards(loaded)
    ]
    assert found == [
        ("Statement[Everything]", "allows the wildcard action 's3:Get*'"),
        ("Statement[Unscoped]", "allows ['sns:Publish'] on Resource '*'"),
    ]


def test_an_unencrypted_bucket_without_tls_policy_and_an_unencrypted_topic(tmp_path: Path) -> None:
    loaded = project(
        tmp_path,
        """
  Bucket:
    Type: AWS::S3::Bucket
    Properties:
      PublicAccessBlockConfiguration:
        BlockPublicAcls: true
        BlockPublicPolicy: true
        IgnorePublicAcls: true
        RestrictPublicBuckets: true
  Topic:
    Type: AWS::SNS::Topic
""",
    )
    assert [p.message.split(";")[0] for p in checks.check_buckets(loaded)] == [
        "is not encrypted",
        "has no bucket policy denying requests without TLS",
    ]
    assert [(p.where, p.message.split(";")[0]) for p in checks.check_topics(loaded)] == [
        ("Resources.Topic", "is not encrypted")
    ]


def test_a_secure_bucket_passes(tmp_path: Path) -> None:
    assert checks.check_buckets(project(tmp_path, SECURE_BUCKET)) == []
