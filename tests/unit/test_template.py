from __future__ import annotations

import re
from pathlib import Path

import pytest

from sfn_mlops.template import LocalStack, TemplateError, substitute

TEMPLATE = """
Transform: AWS::Serverless-2016-10-31
Parameters:
  CodePrefix: {Type: String, Default: code/latest}
  Email: {Type: String, Default: ""}
Conditions:
  HasEmail: !Not [!Equals [!Ref Email, ""]]
Globals:
  Function:
    Timeout: 30
    Environment: {Variables: {LOG_LEVEL: INFO}}
Resources:
  Bucket: {Type: AWS::S3::Bucket}
  Topic: {Type: AWS::SNS::Topic}
  Fn:
    Type: AWS::Serverless::Function
    Properties:
      CodeUri: lambdas/fn/
      Handler: app.handler
      MemorySize: 256
      Environment:
        Variables:
          BUCKET: !Ref Bucket
          MODE: !If [HasEmail, mail, quiet]
  Pipeline:
    Type: AWS::Serverless::StateMachine
    Properties:
      DefinitionUri: machine.asl.json
      DefinitionSubstitutions:
        Bucket: !Ref Bucket
        FnArn: !GetAtt Fn.Arn
        TopicArn: !Ref Topic
        Code: !Sub "s3://${Bucket}/${CodePrefix}"
        Region: !Sub "${AWS::Region}-${!Literal}"
        Joined: !Join [",", [a, !Ref CodePrefix]]
"""


@pytest.fixture
def template(tmp_path: Path) -> Path:
    path = tmp_path / "template.yaml"
    path.write_text(TEMPLATE)
    return path


def test_functions_merge_globals_and_resolve_refs(template: Path) -> None:
    (fn,) = LocalStack(template).functions()
    assert fn.name == "Fn"
    assert fn.arn == "arn:aws:lambda:us-east-1:123456789012:function:Fn"
    assert fn.code_dir == (template.parent / "lambdas/fn").resolve()
    assert (fn.timeout, fn.memory_size, fn.handler) == (30, 256, "app.handler")
    assert fn.environment == {"LOG_LEVEL": "INFO", "BUCKET": "sfn-mlops-bucket", "MODE": "quiet"}


def test_conditions_follow_parameters(template: Path) -> None:
    (fn,) = LocalStack(template, parameters={"Email": "a@b.c"}).functions()
    assert fn.environment["MODE"] == "mail"


def test_definition_substitutions(template: Path) -> None:
    (machine,) = LocalStack(template, parameters={"CodePrefix": "code/abc"}).state_machines()
    assert machine.substitutions == {
        "Bucket": "sfn-mlops-bucket",
        "FnArn": "arn:aws:lambda:us-east-1:123456789012:function:Fn",
        "TopicArn": "arn:aws:sns:us-east-1:123456789012:Topic",
        "Code": "s3://sfn-mlops-bucket/code/abc",
        "Region": "us-east-1-${Literal}",
        "Joined": "a,code/abc",
    }


def test_unknown_parameter_is_named(template: Path) -> None:
    with pytest.raises(TemplateError, match=r"unknown parameter\(s\) \['Nope'\]"):
        LocalStack(template, parameters={"Nope": "x"})


def test_substitute_reports_missing_placeholders() -> None:
    assert substitute('{"a": "${X}"}', {"X": "1"}, "here") == '{"a": "1"}'
    with pytest.raises(TemplateError, match=r"here: no DefinitionSubstitutions entry for \['Y'\]"):
        substitute('{"a": "${Y}"}', {"X": "1"}, "here")


CUSTOM_TEMPLATE = """
Transform: AWS::Serverless-2016-10-31
Resources:
  Bucket: {Type: AWS::S3::Bucket}
  CopyFn:
    Type: AWS::Serverless::Function
    Properties: {CodeUri: lambdas/copy/, Handler: app.handler, AutoPublishAlias: live}
  Code:
    Type: Custom::JobCode
    Properties:
      ServiceToken: !GetAtt CopyFn.Arn
      BucketName: !Ref Bucket
      CodeVersion: !Ref CopyFn.Version
      Alias: !Ref CopyFn.Alias
  Pipeline:
    Type: AWS::Serverless::StateMachine
    Properties:
      DefinitionUri: machine.asl.json
      DefinitionSubstitutions:
        CodeUri: !GetAtt Code.CodeUri
"""


def test_custom_resources_resolve_and_their_answer_feeds_get_att(tmp_path: Path) -> None:
    path = tmp_path / "template.yaml"
    path.write_text(CUSTOM_TEMPLATE)
    stack = LocalStack(path)

    (resource,) = stack.custom_resources()
    stack.provide("Code", {"CodeUri": "s3://sfn-mlops-bucket/code/0123456789abcdef"})

    function = "arn:aws:lambda:us-east-1:123456789012:function:CopyFn"
    assert resource.logical_id == "Code"
    assert resource.resource_type == "Custom::JobCode"
    assert resource.service_token == function
    assert resource.properties == {
        "ServiceToken": function,
        "BucketName": "sfn-mlops-bucket",
        "CodeVersion": f"{function}:$LATEST",
        "Alias": f"{function}:live",
    }
    (machine,) = stack.state_machines()
    assert machine.substitutions == {"CodeUri": "s3://sfn-mlops-bucket/code/0123456789abcdef"}


def test_only_a_custom_resource_can_be_provided(tmp_path: Path) -> None:
    path = tmp_path / "template.yaml"
    path.write_text(CUSTOM_TEMPLATE)

    with pytest.raises(TemplateError, match="Bucket is no custom resource of the template"):
        LocalStack(path).provide("Bucket", {"Arn": "x"})


def test_the_xgboost_image_mapping_is_the_sagemaker_sdks_table() -> None:
    """template.yaml's XGBoostImage mapping: the account of each region's 3.0-5 image."""
    import json

    import sagemaker

    from sfn_mlops.template import load

    table = Path(sagemaker.__file__).parent / "image_uri_config" / "xgboost.json"
    registries = json.loads(table.read_text())["training"]["versions"]["3.0-5"]["registries"]
    root = Path(__file__).resolve().parents[2]
    mapping = load(root / "template.yaml")["Mappings"]["XGBoostImage"]
    assert {region: row["Account"] for region, row in mapping.items()} == {
        region: account for region, account in registries.items() if "-iso" not in region
    }


def test_the_clarify_image_mapping_is_the_sagemaker_sdks_table() -> None:
    """template.yaml's ClarifyImage mapping: the account of each region's Clarify 1.0 image."""
    import json

    import sagemaker

    from sfn_mlops.template import load

    table = Path(sagemaker.__file__).parent / "image_uri_config" / "clarify.json"
    config = json.loads(table.read_text())["processing"]["versions"]["1.0"]
    assert config["repository"] == "sagemaker-clarify-processing"
    root = Path(__file__).resolve().parents[2]
    mapping = load(root / "template.yaml")["Mappings"]["ClarifyImage"]
    assert {r: row["Account"] for r, row in mapping.items() if row["Account"] != "none"} == {
        region: account for region, account in config["registries"].items() if "-iso" not in region
    }


def test_the_deployed_functions_and_state_machine_are_traced_with_xray() -> None:
    """What `sam deploy` creates, from the SAM translation: X-Ray on, and allowed to write."""
    from sfn_mlops.aws.checks import load_project

    project = load_project(Path(__file__).resolve().parents[2] / "template.yaml")
    assert project.cfn is not None, project.translation_problem
    resources = project.cfn["Resources"]
    functions = {k: v for k, v in resources.items() if v["Type"] == "AWS::Lambda::Function"}
    machines = [v for v in resources.values() if v["Type"] == "AWS::StepFunctions::StateMachine"]
    assert len(functions) == 15
    for name, function in functions.items():
        assert function["Properties"]["TracingConfig"] == {"Mode": "Active"}, name
        role = resources[function["Properties"]["Role"]["Fn::GetAtt"][0]]
        managed = role["Properties"].get("ManagedPolicyArns", [])
        assert any("AWSXrayWriteOnlyAccess" in str(arn) for arn in managed), name
    assert len(machines) == 2  # the training pipeline and batch inference
    for machine in machines:
        assert machine["Properties"]["TracingConfiguration"] == {"Enabled": True}


RULES = """
Resources:
  Fn:
    Type: AWS::Serverless::Function
    Properties:
      CodeUri: lambdas/fn/
      Handler: app.handler
      Events:
        Decided:
          Type: EventBridgeRule
          Properties:
            Pattern: {source: [aws.sagemaker], detail: {ModelApprovalStatus: [Approved]}}
        Nightly:
          Type: Schedule
          Properties: {Schedule: rate(1 day), Enabled: false, Input: '{"why": "schedule"}'}
  Alarm:
    Type: AWS::CloudWatch::Alarm
    Properties:
      AlarmName: !Sub "${AWS::StackName}-errors"
      MetricName: Invocation5XXErrors
"""


def test_function_events_become_rules_targeting_the_function(tmp_path: Path) -> None:
    path = tmp_path / "template.yaml"
    path.write_text(RULES)
    decided, nightly = LocalStack(path).event_rules()
    assert (decided.name, decided.target_id, decided.enabled) == (
        "FnDecided",
        "FnDecidedLambdaTarget",
        True,
    )
    assert decided.pattern == {
        "source": ["aws.sagemaker"],
        "detail": {"ModelApprovalStatus": ["Approved"]},
    }
    assert decided.target_arn == "arn:aws:lambda:us-east-1:123456789012:function:Fn"
    assert decided.role_arn is None  # its Lambda permission lets events.amazonaws.com invoke
    assert (nightly.schedule, nightly.enabled, nightly.input) == (
        "rate(1 day)",
        False,
        '{"why": "schedule"}',
    )
    assert LocalStack(path).alarms() == [
        {"AlarmName": "sfn-mlops-errors", "MetricName": "Invocation5XXErrors"}
    ]


@pytest.mark.parametrize(
    ("event", "message"),
    [
        ("{Type: SQS, Properties: {Queue: q}}", "Events of type EventBridgeRule, .* not SQS"),
        (
            "{Type: EventBridgeRule, Properties: {Pattern: {}, DeadLetterConfig: {}}}",
            r"Events.E: not emulated locally: \['DeadLetterConfig'\]",
        ),
    ],
)
def test_an_event_source_local_mode_cannot_make_is_named(
    tmp_path: Path, event: str, message: str
) -> None:
    path = tmp_path / "template.yaml"
    path.write_text(
        "Resources:\n  Fn:\n    Type: AWS::Serverless::Function\n    Properties:\n"
        f"      CodeUri: x/\n      Handler: app.h\n      Events:\n        E: {event}\n"
    )
    with pytest.raises(TemplateError, match=message):
        LocalStack(path).event_rules()


def test_the_configs_default_rollback_alarms_are_the_templates() -> None:
    from sfn_mlops.config import STACK_ENDPOINT, STACK_ROLLBACK_ALARMS, load_config

    stack = LocalStack(Path(__file__).resolve().parents[2] / "template.yaml")
    alarms = {alarm["AlarmName"]: alarm for alarm in stack.alarms()}
    assert sorted(alarms) == sorted(STACK_ROLLBACK_ALARMS)
    for alarm in alarms.values():
        assert {"Name": "EndpointName", "Value": STACK_ENDPOINT} in alarm["Dimensions"]
    default = load_config(None, []).execution_input("s3://b/d.csv")["config"]["deployment"]
    assert default["rollback_alarms"] == list(STACK_ROLLBACK_ALARMS)
    other = load_config(None, ["deployment.endpoint_name=other"]).deployment_input()
    assert other["rollback_alarms"] == []  # the stack's alarms watch its own endpoint only


def test_the_model_monitor_image_mapping_is_the_sagemaker_sdks_table() -> None:
    """template.yaml's ModelMonitorImage mapping: the analyzer image's account per region."""
    import json

    import sagemaker

    from sfn_mlops.template import load

    table = Path(sagemaker.__file__).parent / "image_uri_config" / "model-monitor.json"
    config = json.loads(table.read_text())["versions"][""]
    assert config["repository"] == "sagemaker-model-monitor-analyzer"
    root = Path(__file__).resolve().parents[2]
    mapping = load(root / "template.yaml")["Mappings"]["ModelMonitorImage"]
    assert {r: row["Account"] for r, row in mapping.items() if row["Account"] != "none"} == {
        region: account for region, account in config["registries"].items() if "-iso" not in region
    }


STATE_MACHINE_SCHEDULE = """
Transform: AWS::Serverless-2016-10-31
Parameters:
  Every:
    Type: String
    Default: rate(1 day)
    AllowedPattern: "^(rate|cron)\\\\(.+\\\\)$"
  Switch:
    Type: String
    Default: DISABLED
    AllowedValues: [ENABLED, DISABLED]
  Data:
    Type: String
    Default: ""
Rules:
  SwitchNeedsData:
    RuleCondition: !Equals [!Ref Switch, ENABLED]
    Assertions:
      - Assert: !Not [!Equals [!Ref Data, ""]]
        AssertDescription: A schedule needs Data.
Resources:
  Machine:
    Type: AWS::Serverless::StateMachine
    Properties:
      DefinitionUri: machine.asl.json
      Events:
        Nightly:
          Type: Schedule
          Properties:
            Schedule: !Ref Every
            State: !Ref Switch
            Input: !Sub '{"data": "${Data}"}'
"""


def test_state_machine_events_become_rules_starting_executions(tmp_path: Path) -> None:
    path = tmp_path / "template.yaml"
    path.write_text(STATE_MACHINE_SCHEDULE)
    parameters = {"Switch": "ENABLED", "Data": "s3://b/in/", "Every": "cron(0 2 * * ? *)"}
    (rule,) = LocalStack(path, parameters=parameters).event_rules()
    assert (rule.name, rule.target_id, rule.schedule, rule.enabled) == (
        "MachineNightly",
        "MachineNightlyStepFunctionsTarget",
        "cron(0 2 * * ? *)",
        True,
    )
    assert rule.target_arn == "arn:aws:states:us-east-1:123456789012:stateMachine:Machine"
    assert rule.input == '{"data": "s3://b/in/"}'
    # SAM gives the rule a role to start executions with (<rule>Role); IAM decides as that role
    assert rule.role_arn == "arn:aws:iam::123456789012:role/MachineNightlyRole"


@pytest.mark.parametrize(
    ("parameters", "message"),
    [
        ({"Switch": "ENABLED"}, "template rule SwitchNeedsData: A schedule needs Data."),
        ({"Switch": "yes"}, "Parameter 'Switch' must be one of AllowedValues"),
        ({"Every": "daily"}, "Parameter 'Every' failed to satisfy constraint"),
    ],
)
def test_parameters_are_checked_as_cloudformation_checks_them(
    tmp_path: Path, parameters: dict[str, str], message: str
) -> None:
    path = tmp_path / "template.yaml"
    path.write_text(STATE_MACHINE_SCHEDULE)
    with pytest.raises(TemplateError, match=re.escape(message)):
        LocalStack(path, parameters=parameters)


def test_local_deploy_reads_samconfig_parameter_overrides(tmp_path: Path) -> None:
    from sfn_mlops.local.deploy import samconfig_parameters

    (tmp_path / "samconfig.toml").write_text(
        "[default.deploy.parameters]\n"
        "parameter_overrides = \"Switch=ENABLED Every='cron(0 2 * * ? *)'\"\n"
    )
    assert samconfig_parameters(tmp_path) == {"Switch": "ENABLED", "Every": "cron(0 2 * * ? *)"}
    (tmp_path / "samconfig.toml").write_text(
        '[default.deploy.parameters]\nparameter_overrides = ["Switch=ENABLED", "Data"]\n'
    )
    with pytest.raises(TemplateError, match="'Data' is not Key=Value"):
        samconfig_parameters(tmp_path)
    (tmp_path / "samconfig.toml").write_text(  # the unquoted form the README once showed
        "[default.deploy.parameters]\nparameter_overrides = \"Every=cron(0 2 * * ? *)\"\n"
    )
    with pytest.raises(TemplateError, match=r"'2' is not Key=Value \(quote a value with spaces"):
        samconfig_parameters(tmp_path)
