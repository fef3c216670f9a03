"""The training pipeline's definition: committed file, error handling, placeholders, gate."""

from __future__ import annotations

import json
import re
from pathlib import Path
from typing import Any

import pytest
import yaml

from sfn_mlops.local import engine
from state_machines import training_pipeline
from state_machines.training_pipeline import ASL_PATH, PLACEHOLDERS, build_definition, render

REPO = Path(__file__).resolve().parents[3]
PLACEHOLDER = re.compile(r"\$\{(\w+)\}")
EXPECTED_PLACEHOLDERS = {
    "ArtifactBucket",
    "SageMakerRoleArn",
    "XGBoostImageUri",
    "CodeUri",
    "ReadEvaluationFunctionArn",
    "FailureTopicArn",
    "ClarifyImageUri",
    "PrepareClarifyFunctionArn",
    "BiasGateFunctionArn",
    "RegisterModelFunctionArn",
    "DeployModelFunctionArn",
    "FindChampionFunctionArn",
    "CollectDataFunctionArn",
    "WaitForApprovalFunctionArn",
    "ModelMonitorImageUri",
    "SetUpMonitoringFunctionArn",
}
DUMMY_VALUES = {
    "ArtifactBucket": "sfn-mlops-artifacts",
    "SageMakerRoleArn": "arn:aws:iam::123456789012:role/SageMakerExecutionRole",
    "XGBoostImageUri": "683313688378.dkr.ecr.us-east-1.amazonaws.com/sagemaker-xgboost:3.0-5",
    "CodeUri": "s3://sfn-mlops-artifacts/code/latest",
    "ReadEvaluationFunctionArn": "arn:aws:lambda:us-east-1:123456789012:function:ReadEvaluation",
    "FailureTopicArn": "arn:aws:sns:us-east-1:123456789012:FailureTopic",
    "ClarifyImageUri": (
        "205585389593.dkr.ecr.us-east-1.amazonaws.com/sagemaker-clarify-processing:1.0"
    ),
    "PrepareClarifyFunctionArn": "arn:aws:lambda:us-east-1:123456789012:function:PrepareClarify",
    "BiasGateFunctionArn": "arn:aws:lambda:us-east-1:123456789012:function:BiasGate",
    "RegisterModelFunctionArn": "arn:aws:lambda:us-east-1:123456789012:function:RegisterModel",
    "DeployModelFunctionArn": "arn:aws:lambda:us-east-1:123456789012:function:DeployModel",
    "FindChampionFunctionArn": "arn:aws:lambda:us-east-1:123456789012:function:FindChampion",
    "CollectDataFunctionArn": "arn:aws:lambda:us-east-1:123456789012:function:CollectData",
    "WaitForApprovalFunctionArn": "arn:aws:lambda:us-east-1:123456789012:function:WaitApproval",
    "ModelMonitorImageUri": (
        "156813124566.dkr.ecr.us-east-1.amazonaws.com/sagemaker-model-monitor-analyzer"
    ),
    "SetUpMonitoringFunctionArn": "arn:aws:lambda:us-east-1:123456789012:function:SetUpMonitoring",
}


@pytest.fixture(scope="module")
def definition() -> dict[str, Any]:
    return build_definition()


def _tasks(definition: dict[str, Any]) -> dict[str, dict[str, Any]]:
    return {name: s for name, s in definition["States"].items() if s["Type"] == "Task"}


def _walk_keys(node: Any):
    if isinstance(node, dict):
        for key, value in node.items():
            yield key
            yield from _walk_keys(value)
    elif isinstance(node, list):
        for item in node:
            yield from _walk_keys(item)


def test_committed_asl_is_up_to_date():
    committed = ASL_PATH.read_text(encoding="utf-8")

    assert committed == render(build_definition()), (
        f"{ASL_PATH.name} is stale: regenerate it with "
        "`python -m state_machines.training_pipeline` and commit the result"
    )


def test_check_flag_reports_a_stale_file(tmp_path, monkeypatch, capsys):
    stale = tmp_path / "training_pipeline.asl.json"
    stale.write_text("{}\n", encoding="utf-8")
    monkeypatch.setattr(training_pipeline, "ASL_PATH", stale)

    assert training_pipeline.main(["--check"]) == 1
    assert "python -m state_machines.training_pipeline" in capsys.readouterr().err
    assert training_pipeline.main([]) == 0
    assert training_pipeline.main(["--check"]) == 0


def test_states_run_in_order(definition):
    order, name = [], definition["StartAt"]
    while name is not None:
        order.append(name)
        name = definition["States"][name].get("Next")

    assert order == ["PrepareRun", "FindChampion", "CollectData", "Preprocess", "TuningEnabled"]
    states = definition["States"]
    assert states["TuningEnabled"]["Default"] == "Train"
    assert states["TuningEnabled"]["Choices"] == [
        {"Variable": "$.config.tuning.enabled", "BooleanEquals": True, "Next": "Tune"}
    ]
    assert states["Tune"]["Next"] == "DescribeBestTrainingJob"
    order, name = [], "Train"
    while name is not None:
        order.append(name)
        name = states[name].get("Next")
    assert order == ["Train", "Evaluate", "ReadEvaluation", "ChampionGate"]
    assert states["DescribeBestTrainingJob"]["Next"] == "Evaluate"


def test_tuning_runs_the_training_job_of_train_over_the_configured_ranges(definition):
    states = definition["States"]
    tune, train = states["Tune"], states["Train"]
    assert tune["Resource"] == "arn:aws:states:::sagemaker:createHyperParameterTuningJob.sync"
    parameters = tune["Parameters"]
    assert parameters["HyperParameterTuningJobConfig.$"] == "$.config.tuning.job_config"
    definition_ = parameters["TrainingJobDefinition"]
    for key in ("InputDataConfig", "OutputDataConfig", "ResourceConfig", "RoleArn"):
        assert definition_[key] == train["Parameters"][key], key
    assert definition_["AlgorithmSpecification"]["MetricDefinitions.$"] == (
        "$.config.tuning.metric_definitions"
    )
    best = states["DescribeBestTrainingJob"]
    assert best["Resource"] == "arn:aws:states:::aws-sdk:sagemaker:describeTrainingJob"
    assert best["Parameters"] == {"TrainingJobName.$": "$.steps.tune.best.TrainingJobName"}
    assert best["ResultPath"] == train["ResultPath"] == "$.steps.train"


def test_clarify_runs_after_the_quality_gate_and_gates_on_bias(definition):
    states = definition["States"]
    assert states["CreateModel"]["Next"] == "ClarifyEnabled"
    assert states["ClarifyEnabled"]["Choices"] == [
        {"Variable": "$.config.clarify.enabled", "BooleanEquals": True, "Next": "PrepareClarify"}
    ]
    assert states["ClarifyEnabled"]["Default"] == "RegisterModel"
    order, name = [], "PrepareClarify"
    while name is not None:
        order.append(name)
        name = states[name].get("Next")
    assert order == ["PrepareClarify", "Clarify", "ReadBiasReport", "BiasGate"]
    assert states["CreateModel"]["Resource"] == "arn:aws:states:::sagemaker:createModel"
    assert states["CreateModel"]["Parameters"]["PrimaryContainer"] == {
        "Image": "${XGBoostImageUri}",
        "ModelDataUrl.$": "$.steps.train.model_artifacts",
        "Environment": {
            "SAGEMAKER_PROGRAM": "inference.py",
            "SAGEMAKER_SUBMIT_DIRECTORY": "${CodeUri}/inference/sourcedir.tar.gz",
        },
    }
    assert states["BiasGate"]["Choices"] == [
        {"Variable": "$.bias.passed", "BooleanEquals": True, "Next": "RegisterModel"}
    ]
    assert states["BiasGate"]["Default"] == "BiasCheckFailed"
    assert states["BiasCheckFailed"] == {
        "Type": "Fail",
        "Error": "BiasCheckFailed",
        "CausePath": "$.bias.cause",
    }


def test_clarify_jobs_run_in_parallel_with_the_clarify_contract(definition):
    parallel = definition["States"]["Clarify"]
    assert parallel["Type"] == "Parallel"
    assert parallel["Catch"] == [
        {"ErrorEquals": ["States.ALL"], "ResultPath": "$.error", "Next": "NotifyFailure"}
    ]
    jobs = {}
    for branch in parallel["Branches"]:
        (name,) = branch["States"]
        jobs[name] = branch["States"][name]
    assert set(jobs) == {"BiasCheck", "Explainability"}
    for task in jobs.values():
        assert task["Resource"] == "arn:aws:states:::sagemaker:createProcessingJob.sync"
        assert task["Retry"][0]["ErrorEquals"] == ["SageMaker.AmazonSageMakerException"]
        params = task["Parameters"]
        assert params["AppSpecification"] == {"ImageUri": "${ClarifyImageUri}"}
        inputs = {i["InputName"]: i["S3Input"]["LocalPath"] for i in params["ProcessingInputs"]}
        assert inputs == {
            "analysis_config": "/opt/ml/processing/input/config",
            "dataset": "/opt/ml/processing/input/data",
        }
        (output,) = params["ProcessingOutputConfig"]["Outputs"]
        assert (output["OutputName"], output["S3Output"]["LocalPath"]) == (
            "analysis_result",
            "/opt/ml/processing/output",
        )


def test_every_task_retries_transient_errors_only(definition):
    for name, task in _tasks(definition).items():
        assert task.get("Retry"), f"{name} has no Retry"
        for retrier in task["Retry"]:
            assert not {"States.ALL", "States.TaskFailed"} & set(retrier["ErrorEquals"]), name
            if retrier["ErrorEquals"] == ["EndpointBusy"]:  # another run's deployment: wait
                assert (name, retrier["MaxAttempts"], retrier["MaxDelaySeconds"]) == (
                    "DeployModel",
                    60,
                    60,
                )
                continue
            assert {k: v for k, v in retrier.items() if k != "ErrorEquals"} == {
                "IntervalSeconds": 2,
                "MaxAttempts": 3,
                "BackoffRate": 2.0,
                "MaxDelaySeconds": 30,
                "JitterStrategy": "FULL",
            }, name


def test_retried_error_names(definition):
    tasks = _tasks(definition)
    sagemaker = ["SageMaker.AmazonSageMakerException"]

    assert tasks["Preprocess"]["Retry"][0]["ErrorEquals"] == sagemaker
    assert tasks["Train"]["Retry"][0]["ErrorEquals"] == sagemaker
    assert tasks["Evaluate"]["Retry"][0]["ErrorEquals"] == sagemaker
    assert tasks["ReadEvaluation"]["Retry"][0]["ErrorEquals"] == [
        "Lambda.ServiceException",
        "Lambda.AWSLambdaException",
        "Lambda.SdkClientException",
        "Lambda.TooManyRequestsException",
        "EvaluationReportUnavailable",
    ]
    assert tasks["NotifyFailure"]["Retry"][0]["ErrorEquals"] == [
        "SNS.ThrottledException",
        "SNS.InternalErrorException",
    ]


def test_every_task_catches_into_the_failure_path(definition):
    for name, task in _tasks(definition).items():
        expected = (
            {"ErrorEquals": ["States.ALL"], "ResultPath": None, "Next": "PipelineFailed"}
            if name == "NotifyFailure"
            else {"ErrorEquals": ["States.ALL"], "ResultPath": "$.error", "Next": "NotifyFailure"}
        )
        if name == "MarkRolledBack":  # best effort: a failure to mark must not hide the rollback
            assert task["Catch"] == [{**expected, "ResultPath": None}]
            continue
        assert task.get("Catch", [])[-1:] == [expected], name
        own = [catch["ErrorEquals"] for catch in task["Catch"][:-1]]
        expected_own = {
            "WaitForApproval": [["ModelRejected"], ["States.Timeout"]],
            "CreateModel": [["SageMaker.AmazonSageMakerException"]],  # ModelMadeAlready
        }
        assert own == expected_own.get(name, []), name


def test_failure_path(definition):
    states = definition["States"]

    assert states["NotifyFailure"]["Resource"] == "arn:aws:states:::sns:publish"
    assert states["NotifyFailure"]["Parameters"] == {
        "TopicArn": "${FailureTopicArn}",
        "Subject": "sfn-mlops pipeline failed",
        "Message": {
            "execution.$": "$$.Execution.Id",
            "error.$": "$.error.Error",
            "cause.$": "$.error.Cause",
        },
    }
    assert states["NotifyFailure"]["ResultPath"] is None
    assert states["NotifyFailure"]["Next"] == "PipelineFailed"
    assert states["PipelineFailed"] == {
        "Type": "Fail",
        "ErrorPath": "$.error.Error",
        "CausePath": "$.error.Cause",
    }


def test_placeholders(definition):
    used = set(PLACEHOLDER.findall(json.dumps(definition)))

    assert used == EXPECTED_PLACEHOLDERS
    assert set(PLACEHOLDERS) == EXPECTED_PLACEHOLDERS


def test_template_substitutes_every_placeholder():
    class CfnLoader(yaml.SafeLoader):
        """Reads CloudFormation's short-form tags (!Ref, !Sub, ...) as plain values."""

    CfnLoader.add_multi_constructor("!", lambda loader, suffix, node: None)
    template = yaml.load((REPO / "template.yaml").read_text(), Loader=CfnLoader)  # noqa: S506
    machine = template["Resources"]["TrainingPipeline"]["Properties"]

    assert machine["DefinitionUri"] == "state_machines/training_pipeline.asl.json"
    assert set(machine["DefinitionSubstitutions"]) == EXPECTED_PLACEHOLDERS


def test_quality_gate_compares_the_numbers(definition):
    assert definition["States"]["QualityGate"]["Choices"] == [
        {
            "Or": [
                {
                    "And": [
                        {"Variable": "$.evaluation.direction", "StringEquals": "minimize"},
                        {
                            "Variable": "$.evaluation.gated_value",
                            "NumericLessThanEqualsPath": "$.evaluation.threshold",
                        },
                    ]
                },
                {
                    "And": [
                        {"Variable": "$.evaluation.direction", "StringEquals": "maximize"},
                        {
                            "Variable": "$.evaluation.gated_value",
                            "NumericGreaterThanEqualsPath": "$.evaluation.threshold",
                        },
                    ]
                },
            ],
            "Next": "OverfitGate",
        }
    ]
    assert definition["States"]["QualityGate"]["Default"] == "ModelQualityBelowThreshold"
    assert definition["States"]["ModelDeployed"] == {"Type": "Succeed"}
    assert definition["States"]["ModelQualityBelowThreshold"] == {
        "Type": "Fail",
        "Error": "ModelQualityBelowThreshold",
        "CausePath": "$.evaluation.cause",
    }


def test_hyperparameters_come_from_the_execution_input(definition):
    train = definition["States"]["Train"]["Parameters"]

    assert "HyperParameters" not in train
    assert train["HyperParameters.$"] == (
        "States.JsonMerge($.config.hyperparameters, $.run.script_mode, false)"
    )
    assert definition["States"]["PrepareRun"]["Parameters"]["script_mode"] == {
        "sagemaker_program": '"train.py"',
        "sagemaker_submit_directory": '"${CodeUri}/training/sourcedir.tar.gz"',
    }


def test_jsonpath_only(definition):
    keys = set(_walk_keys(definition))

    assert not keys & {"QueryLanguage", "Assign", "Arguments", "Output"}


def test_parses_with_the_local_engine_parser():
    text = PLACEHOLDER.sub(lambda m: DUMMY_VALUES[m.group(1)], ASL_PATH.read_text())

    engine.parse_definition(text)  # raises ValueError naming the problem


def test_sdk_extensions_validate_their_fields():
    with pytest.raises(ValueError, match="jitter_strategy"):
        training_pipeline.Retry(error_equals=["X"], jitter_strategy="HALF")
    with pytest.raises(ValueError, match="error_path"):
        training_pipeline.Fail("F", error="E", error_path="$.e")
    with pytest.raises(TypeError, match="not supported"):
        training_pipeline.Fail("F", result_selector={})


def _engine_env(monkeypatch: pytest.MonkeyPatch) -> None:
    for name, setting in {
        "AWS_DEFAULT_REGION": "us-east-1",
        "AWS_EC2_METADATA_DISABLED": "true",
        "AWS_ACCESS_KEY_ID": "testing",
        "AWS_SECRET_ACCESS_KEY": "testing",
    }.items():
        monkeypatch.setenv(name, setting)


def _run_in_local_engine(definition: dict[str, Any], execution_input: dict[str, Any]) -> dict:
    """Runs a definition in moto's ASL interpreter (the local engine) until it stops."""
    import time

    import boto3
    from moto import mock_aws

    text = PLACEHOLDER.sub(lambda m: DUMMY_VALUES[m.group(1)], json.dumps(definition))
    with mock_aws(config={"stepfunctions": {"execute_state_machine": True}}):
        sfn = boto3.client("stepfunctions", region_name="us-east-1")
        machine = sfn.create_state_machine(
            name="gate", definition=text, roleArn="arn:aws:iam::123456789012:role/sfn"
        )["stateMachineArn"]
        execution = sfn.start_execution(
            stateMachineArn=machine, name="run-1", input=json.dumps(execution_input)
        )["executionArn"]
        deadline = time.monotonic() + 10
        while time.monotonic() < deadline:
            described = sfn.describe_execution(executionArn=execution)
            if described["status"] != "RUNNING":
                return described
            time.sleep(0.02)
    raise AssertionError("the execution did not finish within 10 s")


@pytest.mark.parametrize(
    ("direction", "value", "status"),
    [
        ("minimize", 2.5, "SUCCEEDED"),
        ("minimize", 3.0, "SUCCEEDED"),
        ("minimize", 3.4, "FAILED"),
        ("maximize", 3.4, "SUCCEEDED"),
        ("maximize", 2.5, "FAILED"),
    ],
)
def test_run_set_up_and_gate_in_the_local_engine(definition, monkeypatch, direction, value, status):
    """PrepareRun, the hyperparameter merge and the gate, without the jobs in between."""
    _engine_env(monkeypatch)
    states = definition["States"]
    train = states["Train"]["Parameters"]
    machine = {
        "StartAt": "PrepareRun",
        "States": {
            "PrepareRun": {**states["PrepareRun"], "Next": "TrainingRequest"},
            "TrainingRequest": {
                "Type": "Pass",
                "Parameters": {
                    "HyperParameters.$": train["HyperParameters.$"],
                    "S3OutputPath.$": train["OutputDataConfig"]["S3OutputPath.$"],
                },
                "ResultPath": "$.request",
                "Next": "QualityGate",
            },
            "QualityGate": {
                **states["QualityGate"],
                "Choices": [{**states["QualityGate"]["Choices"][0], "Next": "Passed"}],
            },
            "Passed": {"Type": "Succeed"},
            "ModelQualityBelowThreshold": states["ModelQualityBelowThreshold"],
        },
    }
    cause = f"rmse is {value} on the test set; the quality gate requires rmse <= 3.0"
    execution_input = {
        "config": {
            "hyperparameters": {"objective": "reg:squarederror", "num_round": "200"},
            "clarify": {"enabled": False},
        },
        "evaluation": {
            "direction": direction,
            "value": value,
            "gated_value": value,
            "threshold": 3.0,
            "cause": cause,
        },
    }

    described = _run_in_local_engine(machine, execution_input)

    assert described["status"] == status
    if status == "FAILED":
        assert (described["error"], described["cause"]) == ("ModelQualityBelowThreshold", cause)
        return
    output = json.loads(described["output"])
    assert output["run"]["job_names"] == {
        "preprocess": "run-1-preprocess",
        "train": "run-1-train",
        "tune": "run-1-tune",
        "evaluate": "run-1-evaluate",
        "model": "run-1-model",
        "bias": "run-1-bias",
        "explainability": "run-1-explain",
        "data_baseline": "run-1-dq-base",
        "quality_baseline": "run-1-mq-base",
    }
    assert output["request"] == {
        "HyperParameters": {
            "objective": "reg:squarederror",
            "num_round": "200",
            "sagemaker_program": '"train.py"',
            "sagemaker_submit_directory": '"s3://sfn-mlops-artifacts/code/latest/training/'
            'sourcedir.tar.gz"',
        },
        "S3OutputPath": "s3://sfn-mlops-artifacts/runs/run-1/training",
    }


def test_release_registers_then_deploys_and_waits_a_bounded_time(definition):
    states = definition["States"]
    assert states["RegisterModel"]["Next"] == "ApprovalNeeded"
    needed = states["ApprovalNeeded"]
    assert needed["Choices"] == [
        {
            "Variable": "$.registration.ModelApprovalStatus",
            "StringEquals": "PendingManualApproval",
            "Next": "WaitForApproval",
        }
    ]
    assert needed["Default"] == "DeploymentWanted"
    wanted = states["DeploymentWanted"]
    assert wanted["Choices"][0]["Next"] == "DeployModel"
    assert wanted["Default"] == "ModelRegistered"  # deployment is off
    assert states["DeployModel"]["Next"] == "DescribeEndpoint"
    assert states["DescribeEndpoint"]["Resource"] == (
        "arn:aws:states:::aws-sdk:sagemaker:describeEndpoint"
    )
    ready = states["EndpointReady"]
    assert [choice["Next"] for choice in ready["Choices"]] == [
        "MonitoringWanted",
        "DeploymentRolledBack",  # InService on the old config: SageMaker rolled it back
        "EndpointFailed",
        "DeployedThenSuperseded",  # InService on a later run's config
        "EndpointWaitTimedOut",
    ]
    order, name = [], ready["Default"]
    while name != "DescribeEndpoint":
        order.append(name)
        name = states[name]["Next"]
    assert order == ["CountPoll", "WaitForEndpoint", "StorePollsLeft"]
    assert states["CountPoll"]["Parameters"]["wait.$"] == (
        "States.ArrayGetItem($.deployment.waits, $.deployment.polls_left)"
    )
    assert states["WaitForEndpoint"]["SecondsPath"] == "$.poll.wait"
    for failure in ("DeploymentRolledBack", "EndpointFailed", "EndpointWaitTimedOut"):
        # recorded as a Catch records an error, then notified, then PipelineFailed
        assert states[failure]["Type"] == "Pass"
        assert states[failure]["Parameters"]["Error"] == failure
        assert states[failure]["ResultPath"] == "$.error"
        expected = "MarkRolledBack" if failure == "DeploymentRolledBack" else "NotifyFailure"
        assert states[failure]["Next"] == expected
    assert states["MarkRolledBack"]["Next"] == "NotifyFailure"
    assert states["NotifyFailure"]["Next"] == "PipelineFailed"


def test_a_rolled_back_version_is_marked_rejected_naming_why(definition):
    """FindChampion, `batch` and the batch schedule take the newest Approved version: the one
    rolled back leaves them. Every path the rollback reads is one the states before keep."""
    states = definition["States"]
    mark = states["MarkRolledBack"]
    assert mark["Resource"] == "arn:aws:states:::aws-sdk:sagemaker:updateModelPackage"
    assert mark["Parameters"]["ModelApprovalStatus"] == "Rejected"
    assert "$.endpoint.FailureReason" in mark["Parameters"]["ApprovalDescription.$"]
    assert mark["ResultPath"] is None  # the error stays for the notification
    cause = states["DeploymentRolledBack"]["Parameters"]["Cause.$"]
    read = re.findall(r"\$\.(\w+)\.(\w+)", cause + mark["Parameters"]["ModelPackageArn.$"])
    kept = {
        "registration": states["RegisterModel"]["ResultSelector"],
        "deployment": states["DeployModel"]["ResultSelector"],
    }
    for step, key in read:
        if step in kept:
            assert f"{key}.$" in kept[step], (step, key)
    assert ("endpoint", "FailureReason") in read  # DescribeEndpoint's whole answer


def _choice_paths(rule: dict) -> list[str]:
    paths = [rule[key] for key in ("Variable",) if key in rule]
    paths += [value for key, value in rule.items() if key.endswith("Path") and key != "Next"]
    nested_rules = rule.get("And", []) + rule.get("Or", []) + [rule.get("Not")] * ("Not" in rule)
    for nested in nested_rules:
        paths += _choice_paths(nested)
    return paths


def test_what_endpoint_ready_reads_of_the_deployment_is_what_deploy_model_keeps(definition):
    """A Choice on a path that does not exist fails the execution with States.Runtime (the
    rollback branch once read PreviousConfigName, which the ResultSelector dropped)."""
    states = definition["States"]
    kept = {key.removesuffix(".$") for key in states["DeployModel"]["ResultSelector"]}
    read = {
        path.split(".")[2]
        for choice in states["EndpointReady"]["Choices"]
        for path in _choice_paths(choice)
        if path.startswith("$.deployment.")
    }
    assert read == {"EndpointConfigName", "PreviousConfigName", "polls_left"}
    assert read <= kept


def test_a_deployed_model_gets_its_baselines_then_its_monitors(definition):
    states = definition["States"]
    wanted = states["MonitoringWanted"]
    assert wanted["Choices"] == [
        {"Variable": "$.config.monitoring.enabled", "BooleanEquals": True, "Next": "Baselines"}
    ]
    assert wanted["Default"] == "ModelDeployed"
    baselines = states["Baselines"]
    assert baselines["Next"] == "SetUpMonitoring"
    assert states["SetUpMonitoring"]["Next"] == "ModelDeployed"
    data, quality = baselines["Branches"]
    job = data["States"]["DataQualityBaseline"]["Parameters"]
    assert job["AppSpecification"] == {"ImageUri": "${ModelMonitorImageUri}"}
    assert (
        job["Environment"]["dataset_source"] == job["ProcessingInputs"][0]["S3Input"]["LocalPath"]
    )
    assert json.loads(job["Environment"]["dataset_format"]) == {
        "csv": {"header": True, "output_columns_position": "START"}
    }
    assert quality["StartAt"] == "ModelQualityWanted"
    analysis = quality["States"]["ModelQualityBaseline"]["Parameters"]["Environment"]
    assert analysis["analysis_type"] == "MODEL_QUALITY"
    assert analysis["problem_type.$"] == "$.config.monitoring.model_quality.problem_type"
    for state in (baselines, states["SetUpMonitoring"]):
        assert state["Catch"][0]["Next"] == "NotifyFailure"


def test_manual_approval_pauses_on_a_task_token_for_a_bounded_time(definition):
    states = definition["States"]
    wait = states["WaitForApproval"]
    assert wait["Resource"] == "arn:aws:states:::lambda:invoke.waitForTaskToken"
    assert wait["Parameters"] == {
        "FunctionName": "${WaitForApprovalFunctionArn}",
        "Payload": {
            "token.$": "$$.Task.Token",
            "model_package_arn.$": "$.registration.ModelPackageArn",
            "execution_arn.$": "$$.Execution.Id",
        },
    }
    assert wait["TimeoutSecondsPath"] == "$.config.registry.approval_timeout_seconds"
    assert (wait["ResultPath"], wait["Next"]) == ("$.registration", "DeploymentWanted")
    rejected, timed_out, _ = wait["Catch"]
    assert states[rejected["Next"]] == {
        "Type": "Fail", "Error": "ModelRejected", "CausePath": "$.error.Cause",
    }  # fmt: skip
    cause = states[timed_out["Next"]]
    assert cause["Type"] == "Pass" and cause["Next"] == "ApprovalTimedOut"
    assert states["ApprovalTimedOut"]["Error"] == "ApprovalTimedOut"


def test_the_overfit_gate_compares_the_gap_with_the_configured_limit(definition):
    states = definition["States"]
    gate = states["OverfitGate"]
    limit = "$.evaluation.overfitting.limit"
    assert gate["Choices"] == [
        {
            "Or": [
                {"Variable": limit, "IsNull": True},  # no gate.max_train_test_gap: no gate
                {
                    "Variable": "$.evaluation.overfitting.gap",
                    "NumericLessThanEqualsPath": limit,
                },
            ],
            "Next": "CreateModel",
        }
    ]
    assert states[gate["Default"]] == {
        "Type": "Fail",
        "Error": "ModelOverfits",
        "CausePath": "$.evaluation.overfitting.cause",
    }
    evaluate = states["Evaluate"]["Parameters"]
    channels = {i["InputName"]: i["S3Input"]["LocalPath"] for i in evaluate["ProcessingInputs"]}
    assert channels["train"] == "/opt/ml/processing/train"
    assert channels["validation"] == "/opt/ml/processing/validation"
    arguments = _evaluate_arguments(definition, {"metric": "rmse", "confidence": None})
    assert arguments[arguments.index("--train-dir") + 1] == "/opt/ml/processing/train"


def _evaluate_arguments(definition: dict[str, Any], gate: dict[str, Any]) -> list[str]:
    """The Evaluate job's ContainerArguments as the local engine evaluates them."""
    expression = definition["States"]["Evaluate"]["Parameters"]["AppSpecification"][
        "ContainerArguments.$"
    ]
    machine = {
        "StartAt": "Arguments",
        "States": {
            "Arguments": {"Type": "Pass", "Parameters": {"args.$": expression}, "End": True}
        },
    }
    described = _run_in_local_engine(machine, {"config": {"gate": gate}})
    assert described["status"] == "SUCCEEDED", described
    return json.loads(described["output"])["args"]


def test_the_evaluation_job_gets_the_gate_config_as_json(definition, monkeypatch):
    _engine_env(monkeypatch)
    gate = {"metric": "rmse", "direction": "minimize", "confidence": 0.9,
            "champion_significance": None}  # fmt: skip
    arguments = _evaluate_arguments(definition, gate)
    assert json.loads(arguments[arguments.index("--gate") + 1]) == gate
    assert arguments[:2] == ["--model-dir", "/opt/ml/processing/model"]
    assert "--message-file" in arguments


@pytest.mark.parametrize(
    ("champion", "direction", "value", "status"),
    [
        ({"present": False}, "minimize", 9.0, "SUCCEEDED"),
        ({"present": True, "significance": None, "required": 3.0}, "minimize", 2.9, "SUCCEEDED"),
        ({"present": True, "significance": None, "required": 3.0}, "minimize", 3.1, "FAILED"),
        (  # significance on: the paired bound decides, not the values
            {"present": True, "significance": 0.05, "required": 3.0,
             "difference_bound": -0.01, "required_difference": 0.0},
            "minimize", 3.5, "SUCCEEDED",
        ),
        (
            {"present": True, "significance": 0.05, "required": 3.0,
             "difference_bound": 0.0, "required_difference": 0.0},
            "minimize", 2.0, "FAILED",
        ),
        (
            {"present": True, "significance": 0.05, "required": 0.8,
             "difference_bound": 0.03, "required_difference": 0.02},
            "maximize", 0.5, "SUCCEEDED",
        ),
    ],
)  # fmt: skip
def test_the_champion_gate_in_the_local_engine(
    definition, monkeypatch, champion, direction, value, status
):
    _engine_env(monkeypatch)
    gate = definition["States"]["ChampionGate"]
    machine = {
        "StartAt": "ChampionGate",
        "States": {
            "ChampionGate": {
                **gate,
                "Choices": [{**choice, "Next": "Wins"} for choice in gate["Choices"]],
                "Default": "Kept",
            },
            "Wins": {"Type": "Succeed"},
            "Kept": {"Type": "Fail", "Error": "Kept"},
        },
    }
    evaluation = {"direction": direction, "value": value, "champion": champion}
    described = _run_in_local_engine(machine, {"evaluation": evaluation})
    assert described["status"] == status
