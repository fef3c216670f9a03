"""``make deploy`` (sfn_mlops.aws.deploy): each piece offline; sam itself is never run here."""

from __future__ import annotations

import shlex
import sys
from pathlib import Path
from typing import Any

import boto3
import pytest

from sfn_mlops import settings
from sfn_mlops.aws import deploy
from sfn_mlops.packaging import Bundle, build_bundle

from .conftest import REGION

PROJECT = settings.project_root(Path(__file__).resolve().parents[3])
BUNDLE = build_bundle(PROJECT / "containers")
CODE_PREFIX = f"code/{BUNDLE.digest}"
STATE_MACHINE_ARN = "arn:aws:states:us-east-1:123456789012:stateMachine:TrainingPipeline"


# --- samconfig.toml --------------------------------------------------------------------------


def test_sam_defaults_come_from_the_project_samconfig():
    assert deploy.sam_defaults(PROJECT) == deploy.SamDefaults("sfn-mlops", "us-east-1")


def test_sam_defaults_without_samconfig(tmp_path):
    assert deploy.sam_defaults(tmp_path) == deploy.SamDefaults("sfn-mlops", "us-east-1")


def test_sam_defaults_read_the_deploy_parameters(tmp_path):
    (tmp_path / "samconfig.toml").write_text(
        'version = 0.1\n[default.deploy.parameters]\nstack_name = "ml"\nregion = "eu-west-1"\n'
    )

    assert deploy.sam_defaults(tmp_path) == deploy.SamDefaults("ml", "eu-west-1")


# --- command construction --------------------------------------------------------------------


def test_sam_commands():
    commands = deploy.sam_commands(
        ".venv-sam/bin/sam",
        stack_name="sfn-mlops",
        region="us-east-1",
        parameters={"CodePrefix": "code/0123456789abcdef"},
    )

    assert commands == [
        [".venv-sam/bin/sam", "build", "--template-file", "template.yaml"],
        [
            ".venv-sam/bin/sam",
            "deploy",
            "--stack-name",
            "sfn-mlops",
            "--region",
            "us-east-1",
            "--no-fail-on-empty-changeset",
            "--parameter-overrides",
            "CodePrefix=code/0123456789abcdef",
        ],
    ]


def test_sam_build_in_a_container():
    build, _ = deploy.sam_commands(
        "sam",
        stack_name="s",
        region="us-east-1",
        parameters={"CodePrefix": "c"},
        use_container=True,
    )

    assert build == ["sam", "build", "--template-file", "template.yaml", "--use-container"]


@pytest.mark.parametrize(
    ("parameters", "expected"),
    [
        ({"CodePrefix": "code/abc"}, "CodePrefix=code/abc"),
        (
            {"CodePrefix": "code/abc", "NotificationEmail": "me@example.com"},
            "CodePrefix=code/abc NotificationEmail=me@example.com",
        ),
        ({"NotificationEmail": ""}, 'NotificationEmail=""'),
        ({"Note": 'a "b" c'}, 'Note="a \\"b\\" c"'),
    ],
)
def test_parameter_overrides(parameters, expected):
    assert deploy.parameter_overrides(parameters) == expected


def test_parameter_names_are_checked():
    with pytest.raises(deploy.DeployError, match="'Code-Prefix'"):
        deploy.parameter_overrides({"Code-Prefix": "x"})


def test_us_east_1_uses_the_template_image():
    assert deploy.deploy_parameters("code/abc", "us-east-1") == {"CodePrefix": "code/abc"}


def test_other_regions_get_their_own_xgboost_image():
    parameters = deploy.deploy_parameters("code/abc", "eu-west-1")

    assert parameters == {
        "CodePrefix": "code/abc",
        "XGBoostImageUri": "141502667606.dkr.ecr.eu-west-1.amazonaws.com/sagemaker-xgboost:3.0-5",
    }


def test_an_explicit_image_wins():
    parameters = deploy.deploy_parameters("code/abc", "eu-west-1", {"XGBoostImageUri": "my/img"})

    assert parameters == {"CodePrefix": "code/abc", "XGBoostImageUri": "my/img"}


def test_request_from_the_command_line(monkeypatch):
    monkeypatch.delenv(deploy.SAM_ENV, raising=False)
    args = deploy.build_parser().parse_args(
        ["--project", str(PROJECT), "--parameter", "NotificationEmail=me@example.com"]
    )

    request = deploy.request_from(args)

    assert request == deploy.DeployRequest(
        project=PROJECT,
        stack_name="sfn-mlops",
        region="us-east-1",
        sam=str(PROJECT / ".venv-sam/bin/sam"),
        parameters={"NotificationEmail": "me@example.com"},
    )


def test_sam_from_the_environment_and_the_flag(monkeypatch):
    monkeypatch.setenv(deploy.SAM_ENV, "/opt/sam/bin/sam")
    parse = deploy.build_parser().parse_args

    from_env = deploy.request_from(parse(["--project", str(PROJECT)]))
    from_flag = deploy.request_from(parse(["--project", str(PROJECT), "--sam", "/usr/bin/sam"]))

    assert from_env.sam == "/opt/sam/bin/sam"
    assert from_flag.sam == "/usr/bin/sam"


@pytest.mark.parametrize(
    ("argument", "message"),
    [
        ("NotificationEmail", "expected KEY=VALUE"),
        ("CodePrefix=code/x", "set from the job code's content hash"),
    ],
)
def test_bad_parameter_arguments(argument, message):
    args = deploy.build_parser().parse_args(["--project", str(PROJECT), "--parameter", argument])

    with pytest.raises(deploy.DeployError, match=message):
        deploy.request_from(args)


# --- stack outputs ---------------------------------------------------------------------------


def test_stack_outputs(stacks):
    created = stacks.create("sfn-mlops", {"StateMachineArn": STATE_MACHINE_ARN})

    outputs = deploy.stack_outputs(stacks.client, "sfn-mlops")

    assert outputs.stack_name == "sfn-mlops"
    assert outputs.region == REGION
    assert outputs.status == "CREATE_COMPLETE"
    assert outputs.values == created
    assert outputs.require("StateMachineArn") == STATE_MACHINE_ARN
    assert outputs.require("ArtifactBucketName").startswith("sfn-mlops-artifactbucket-")


def test_stack_that_does_not_exist(stacks):
    with pytest.raises(deploy.StackNotFound) as raised:
        deploy.stack_outputs(stacks.client, "no-such-stack")

    assert str(raised.value) == (
        "stack 'no-such-stack' not found in us-east-1: deploy it with `make deploy`, or pass the "
        "--stack-name and --region it was deployed with "
        "(Stack with id no-such-stack does not exist)"
    )


def test_stack_without_the_output(stacks):
    stacks.create("other", {"Something": "x"}, with_bucket=False)
    outputs = deploy.stack_outputs(stacks.client, "other")

    with pytest.raises(deploy.MissingStackOutput) as raised:
        outputs.require("ArtifactBucketName")

    assert str(raised.value) == (
        "stack 'other' in us-east-1 (CREATE_COMPLETE) has no output 'ArtifactBucketName' "
        "(its outputs: Something); is it an sfn-mlops stack? Deploy it again with `make deploy`"
    )


def test_other_cloudformation_errors_propagate(aws):
    from botocore.stub import Stubber

    client = boto3.client("cloudformation", region_name=REGION)
    with Stubber(client) as stubber:
        stubber.add_client_error("describe_stacks", "Throttling", http_status_code=400)
        with pytest.raises(client.exceptions.ClientError) as raised:
            deploy.stack_outputs(client, "sfn-mlops")

    assert raised.value.response["Error"]["Code"] == "Throttling"


# --- upload ----------------------------------------------------------------------------------


@pytest.fixture
def s3(aws):
    client = boto3.client("s3", region_name=REGION)
    client.create_bucket(Bucket="artifacts")
    return client


def _keys(s3: Any, prefix: str = "") -> dict[str, bytes]:
    listing = s3.list_objects_v2(Bucket="artifacts", Prefix=prefix).get("Contents", [])
    return {
        item["Key"]: s3.get_object(Bucket="artifacts", Key=item["Key"])["Body"].read()
        for item in listing
    }


def test_upload_puts_every_file_under_the_code_prefix(s3):
    lines: list[str] = []

    result = deploy.upload_bundle(s3, BUNDLE, "artifacts", CODE_PREFIX, echo=lines.append)

    expected = {f"{CODE_PREFIX}/{name}": content for name, content in BUNDLE.files.items()}
    assert _keys(s3) == expected
    assert result.uploaded == sorted(expected)
    assert result.skipped == []
    assert lines == [
        f"Job code: {len(expected)} file(s) uploaded, 0 already there "
        f"(s3://artifacts/{CODE_PREFIX}/)"
    ]
    # what the state machine's CodeUri points at
    assert f"{CODE_PREFIX}/training/sourcedir.tar.gz" in expected
    assert f"{CODE_PREFIX}/processing/preprocess.py" in expected
    assert f"{CODE_PREFIX}/evaluation/evaluate.py" in expected


def test_upload_skips_objects_already_there(s3):
    deploy.upload_bundle(s3, BUNDLE, "artifacts", CODE_PREFIX, echo=lambda _: None)
    put_calls: list[str] = []
    s3.meta.events.register(
        "before-call.s3.PutObject", lambda params, **_: put_calls.append(params["Key"])
    )

    result = deploy.upload_bundle(s3, BUNDLE, "artifacts", CODE_PREFIX, echo=lambda _: None)

    assert result.uploaded == []
    assert result.skipped == sorted(f"{CODE_PREFIX}/{name}" for name in BUNDLE.files)
    assert put_calls == []


def test_upload_replaces_an_object_of_another_size_and_keeps_the_rest(s3):
    bundle = Bundle({"processing/preprocess.py": b"print('v2')\n", "training/train.py": b"x"})
    s3.put_object(Bucket="artifacts", Key="code/h/processing/preprocess.py", Body=b"partial")
    s3.put_object(Bucket="artifacts", Key="code/h/training/train.py", Body=b"x")
    s3.put_object(Bucket="artifacts", Key="code/old/training/train.py", Body=b"old")

    result = deploy.upload_bundle(s3, bundle, "artifacts", "code/h", echo=lambda _: None)

    assert result.uploaded == ["code/h/processing/preprocess.py"]
    assert result.skipped == ["code/h/training/train.py"]
    assert _keys(s3) == {
        "code/h/processing/preprocess.py": b"print('v2')\n",
        "code/h/training/train.py": b"x",
        "code/old/training/train.py": b"old",
    }


# --- the whole deploy ------------------------------------------------------------------------


def _request(**overrides: Any) -> deploy.DeployRequest:
    values: dict[str, Any] = {
        "project": PROJECT,
        "stack_name": "sfn-mlops",
        "region": REGION,
        "sam": sys.executable,  # an executable that exists; the runner never runs it
    }
    return deploy.DeployRequest(**{**values, **overrides})


def test_deploy_runs_sam_then_uploads_to_the_stack_bucket(stacks):
    ran: list[tuple[list[str], Path]] = []

    def fake_sam(command, cwd):
        ran.append((list(command), cwd))
        if command[1] == "deploy":  # the stack exists once sam deploy has run
            stacks.create("sfn-mlops", {"StateMachineArn": STATE_MACHINE_ARN})
        return 0

    lines: list[str] = []
    session = boto3.Session(region_name=REGION)
    session.client = _client_factory(session, stacks.client)

    outputs = deploy.deploy(_request(), session=session, runner=fake_sam, echo=lines.append)

    assert [command for command, _ in ran] == deploy.sam_commands(
        sys.executable,
        stack_name="sfn-mlops",
        region=REGION,
        parameters={"CodePrefix": CODE_PREFIX},
    )
    assert {cwd for _, cwd in ran} == {PROJECT}
    bucket = outputs.require("ArtifactBucketName")
    s3 = boto3.client("s3", region_name=REGION)
    listing = s3.list_objects_v2(Bucket=bucket)["Contents"]
    assert sorted(item["Key"] for item in listing) == sorted(
        f"{CODE_PREFIX}/{name}" for name in BUNDLE.files
    )
    assert lines[0] == f"$ {shlex.join(ran[0][0])}"
    assert lines[-1] == (
        f"Deployed stack sfn-mlops in us-east-1; job code at s3://{bucket}/{CODE_PREFIX}/\n"
        "Start a run: sfn-mlops run --aws --stack-name sfn-mlops --region us-east-1"
    )


def _client_factory(session: Any, cloudformation: Any) -> Any:
    """The session's clients, except CloudFormation: the test's (hooked or moto) client."""
    make = session.client

    def client(name: str, **kwargs: Any) -> Any:
        return cloudformation if name == "cloudformation" else make(name, **kwargs)

    return client


def test_deploy_stops_when_sam_fails(aws):
    ran: list[list[str]] = []

    def failing_sam(command, cwd):
        ran.append(list(command))
        return 1

    with pytest.raises(deploy.DeployError) as raised:
        deploy.deploy(_request(), runner=failing_sam, echo=lambda _: None)

    assert str(raised.value) == f"`{sys.executable} build` failed with exit code 1; see above"
    assert len(ran) == 1
    assert boto3.client("s3", region_name=REGION).list_buckets()["Buckets"] == []


def test_deploy_when_the_stack_has_no_bucket_output(stacks):
    def fake_sam(command, cwd):
        if command[1] == "deploy":
            stacks.create("sfn-mlops", {"StateMachineArn": STATE_MACHINE_ARN}, with_bucket=False)
        return 0

    session = boto3.Session(region_name=REGION)
    session.client = _client_factory(session, stacks.client)

    with pytest.raises(deploy.MissingStackOutput, match="no output 'ArtifactBucketName'"):
        deploy.deploy(_request(), session=session, runner=fake_sam, echo=lambda _: None)


def test_dry_run_prints_the_plan_and_touches_nothing(capsys):
    class NoSession:
        def __getattr__(self, name):
            raise AssertionError(f"a dry run used the AWS session ({name})")

    def no_sam(command, cwd):
        raise AssertionError("a dry run ran sam")

    result = deploy.deploy(_request(sam="sam", dry_run=True), session=NoSession(), runner=no_sam)

    assert result is None
    out = capsys.readouterr().out.splitlines()
    assert out[0] == f"Dry run: nothing is built, deployed or uploaded. In {PROJECT}:"
    assert out[1] == "$ sam build --template-file template.yaml"
    assert out[2] == (
        "$ sam deploy --stack-name sfn-mlops --region us-east-1 --no-fail-on-empty-changeset "
        f"--parameter-overrides CodePrefix={CODE_PREFIX}"
    )
    assert out[3] == (
        "then read output ArtifactBucketName of stack sfn-mlops in us-east-1 and upload to "
        f"s3://<ArtifactBucketName>/{CODE_PREFIX}/ (skipping objects already there):"
    )
    name = "training/sourcedir.tar.gz"
    assert f"  {CODE_PREFIX}/{name}  ({len(BUNDLE.files[name]):,} bytes)" in out[4:]
    assert len(out[4:]) == len(BUNDLE.files)


def test_main_dry_run(capsys, monkeypatch):
    monkeypatch.delenv(deploy.SAM_ENV, raising=False)

    code = deploy.main(["--project", str(PROJECT), "--dry-run", "--stack-name", "ml"])

    assert code == 0
    out = capsys.readouterr().out
    assert f"$ {PROJECT / '.venv-sam/bin/sam'} deploy --stack-name ml --region us-east-1" in out


def test_no_credentials_is_reported_before_sam_runs(monkeypatch, tmp_path):
    for name in ("AWS_ACCESS_KEY_ID", "AWS_SECRET_ACCESS_KEY", "AWS_SESSION_TOKEN"):
        monkeypatch.delenv(name, raising=False)
    monkeypatch.setenv("AWS_SHARED_CREDENTIALS_FILE", str(tmp_path / "none"))
    monkeypatch.setenv("AWS_CONFIG_FILE", str(tmp_path / "none"))

    def no_sam(command, cwd):
        raise AssertionError("sam ran without credentials")

    with pytest.raises(deploy.DeployError) as raised:
        deploy.deploy(_request(), runner=no_sam)

    assert str(raised.value) == deploy.NO_CREDENTIALS


def test_missing_sam_is_reported(tmp_path, capsys):
    code = deploy.main(["--project", str(PROJECT), "--sam", str(tmp_path / "sam")])

    assert code == 1
    assert capsys.readouterr().err == (
        f"deploy: error: the SAM CLI is not at {tmp_path / 'sam'}: set up .venv-sam "
        "(`python3 -m venv .venv-sam && .venv-sam/bin/pip install aws-sam-cli`), "
        "or pass SAM=/path/to/sam\n"
    )
