"""Contract tests for the engine adapter: the behaviour of moto's private ASL engine we rely on.

If a moto upgrade changes any of this, these tests say what broke.
"""

from __future__ import annotations

import datetime as dt
import json
from pathlib import Path
from typing import Any

import boto3
import pytest

from sfn_mlops.local import engine
from sfn_mlops.local.cloud import LocalCloud
from sfn_mlops.local.metadata import MetadataStore
from sfn_mlops.local.services.lambda_ import FUNCTIONS

ROLE = "arn:aws:iam::123456789012:role/test"
IMAGE = "683313688378.dkr.ecr.us-east-1.amazonaws.com/sagemaker-xgboost:3.0-5"


def run(cloud: LocalCloud, definition: dict[str, Any], payload: Any = None) -> dict[str, Any]:
    sfn = boto3.client("stepfunctions")
    name = f"m{abs(hash(json.dumps(definition, sort_keys=True))) % 10**8}"
    try:
        arn = sfn.create_state_machine(name=name, definition=json.dumps(definition), roleArn=ROLE)[
            "stateMachineArn"
        ]
    except sfn.exceptions.StateMachineAlreadyExists:
        arn = cloud.arn("states", f"stateMachine:{name}")
    execution = sfn.start_execution(stateMachineArn=arn, input=json.dumps(payload or {}))
    cloud.service("sfn").wait(execution["executionArn"])
    result = sfn.describe_execution(executionArn=execution["executionArn"])
    result["events"] = sfn.get_execution_history(executionArn=execution["executionArn"])["events"]
    return result


def add_function(cloud: LocalCloud, tmp_path: Path, name: str, body: str, timeout: int = 5) -> str:
    code = tmp_path / name
    code.mkdir()
    (code / "app.py").write_text(body)
    arn = cloud.arn("lambda", f"function:{name}")
    cloud.metadata.put(
        FUNCTIONS,
        name,
        {
            "FunctionName": name,
            "FunctionArn": arn,
            "Handler": "app.handler",
            "CodeDir": str(code),
            "Timeout": timeout,
            "MemorySize": 128,
            "Environment": {"Variables": {"GREETING": "hello"}},
        },
    )
    return arn


def lambda_task(arn: str, **extra: Any) -> dict[str, Any]:
    return {
        "Type": "Task",
        "Resource": "arn:aws:states:::lambda:invoke",
        "Parameters": {"FunctionName": arn, "Payload.$": "$"},
        "OutputPath": "$.Payload",
        **extra,
    }


def test_the_engine_itself_still_diverges_on_indexed_paths() -> None:
    # The divergence the adapter corrects; if moto fixes it, the correction can go.
    data = {"a": [{"b": 5}]}
    assert engine._original_extract_json("$.a[0].b", data) == [5]
    assert engine.extract_json("$.a[0].b", data) == 5
    assert engine.extract_json("$.a[*].b", data) == [5]
    assert engine.extract_json("$.a[0]", data) == {"b": 5}


def test_indexed_path_gives_the_value_in_a_running_execution(cloud: LocalCloud) -> None:
    definition = {
        "StartAt": "Pick",
        "States": {"Pick": {"Type": "Pass", "Parameters": {"x.$": "$.a[0].b"}, "End": True}},
    }
    result = run(cloud, definition, {"a": [{"b": 7}, {"b": 8}]})
    assert result["status"] == "SUCCEEDED"
    assert json.loads(result["output"]) == {"x": 7}


def test_choice_and_fail_with_cause_path(cloud: LocalCloud) -> None:
    definition = {
        "StartAt": "Gate",
        "States": {
            "Gate": {
                "Type": "Choice",
                "Choices": [{"Variable": "$.v", "NumericLessThanEqualsPath": "$.t", "Next": "Ok"}],
                "Default": "Low",
            },
            "Ok": {"Type": "Succeed"},
            "Low": {"Type": "Fail", "Error": "TooLow", "CausePath": "$.why"},
        },
    }
    assert run(cloud, definition, {"v": 1, "t": 2, "why": "-"})["status"] == "SUCCEEDED"
    failed = run(cloud, definition, {"v": 3, "t": 2, "why": "v is 3, needs <= 2"})
    assert (failed["status"], failed["error"], failed["cause"]) == (
        "FAILED",
        "TooLow",
        "v is 3, needs <= 2",
    )


def test_parallel_branches_give_a_list(cloud: LocalCloud) -> None:
    branch = {"StartAt": "P", "States": {"P": {"Type": "Pass", "Result": 1, "End": True}}}
    other = {"StartAt": "Q", "States": {"Q": {"Type": "Pass", "Result": 2, "End": True}}}
    definition = {
        "StartAt": "Both",
        "States": {"Both": {"Type": "Parallel", "Branches": [branch, other], "End": True}},
    }
    result = run(cloud, definition)
    assert json.loads(result["output"]) == [1, 2]


def test_lambda_payload_environment_and_error_names(cloud: LocalCloud, tmp_path: Path) -> None:
    ok = add_function(
        cloud,
        tmp_path,
        "echo",
        "import os\n"
        "def handler(event, context):\n"
        "    return {'got': event, 'greeting': os.environ['GREETING'],"
        " 'fn': context.function_name}\n",
    )
    bad = add_function(
        cloud, tmp_path, "boom", "def handler(event, context):\n    raise KeyError('missing')\n"
    )
    result = run(cloud, {"StartAt": "A", "States": {"A": lambda_task(ok, End=True)}}, {"x": 1})
    assert json.loads(result["output"]) == {"got": {"x": 1}, "greeting": "hello", "fn": "echo"}

    catching = {
        "StartAt": "A",
        "States": {
            "A": lambda_task(
                bad,
                Catch=[{"ErrorEquals": ["KeyError"], "ResultPath": "$.error", "Next": "Caught"}],
            ),
            "Caught": {"Type": "Pass", "End": True},
        },
    }
    result = run(cloud, catching)
    error = json.loads(result["output"])["error"]
    assert error["Error"] == "KeyError"
    assert json.loads(error["Cause"])["errorMessage"] == "'missing'"


def test_lambda_timeout_kills_the_worker(cloud: LocalCloud, tmp_path: Path) -> None:
    slow = add_function(
        cloud, tmp_path, "slow", "import time\ndef handler(e, c):\n    time.sleep(30)\n", timeout=1
    )
    result = run(cloud, {"StartAt": "A", "States": {"A": lambda_task(slow, End=True)}})
    assert result["status"] == "FAILED"
    assert result["error"] == "Sandbox.Timedout"
    assert "Task timed out after 1.00 seconds" in result["cause"]


def test_retry_on_a_transient_error_then_success(cloud: LocalCloud) -> None:
    topic = boto3.client("sns").create_topic(Name="alerts")["TopicArn"]
    cloud.metadata.add_fault("sns", "Publish", "ThrottlingException", times=2)
    definition = {
        "StartAt": "Notify",
        "States": {
            "Notify": {
                "Type": "Task",
                "Resource": "arn:aws:states:::sns:publish",
                "Parameters": {"TopicArn": topic, "Message": "hi"},
                "Retry": [
                    {
                        "ErrorEquals": ["SNS.ThrottlingException"],
                        "IntervalSeconds": 10,
                        "MaxAttempts": 3,
                        "BackoffRate": 2,
                    }
                ],
                "End": True,
            }
        },
    }
    result = run(cloud, definition)
    assert result["status"] == "SUCCEEDED"
    failures = [e for e in result["events"] if e["type"] == "TaskFailed"]
    assert [f["taskFailedEventDetails"]["error"] for f in failures] == [
        "SNS.ThrottlingException"
    ] * 2
    # Retry waits are scaled by the workspace time scale (0.001 here), not skipped.
    assert (result["stopDate"] - result["startDate"]).total_seconds() < 5


def test_sagemaker_api_errors_are_amazon_sagemaker_exception(cloud: LocalCloud) -> None:
    cloud.metadata.add_fault("sagemaker", "CreateModel", "ValidationException", times=1)
    definition = {
        "StartAt": "Create",
        "States": {
            "Create": {
                "Type": "Task",
                "Resource": "arn:aws:states:::sagemaker:createModel",
                "Parameters": {"ModelName": "m", "ExecutionRoleArn": ROLE},
                "Catch": [
                    {
                        "ErrorEquals": ["SageMaker.AmazonSageMakerException"],
                        "ResultPath": "$.error",
                        "Next": "Caught",
                    }
                ],
                "End": True,
            },
            "Caught": {"Type": "Pass", "End": True},
        },
    }
    result = run(cloud, definition)
    error = json.loads(result["output"])["error"]
    assert error["Error"] == "SageMaker.AmazonSageMakerException"
    assert "Error Code: ValidationException" in error["Cause"]


def test_a_fault_after_the_call_makes_it_and_loses_the_answer(cloud: LocalCloud) -> None:
    """A create made on the server side whose answer is lost: a retry under the same name is
    refused as AWS refuses a second model of a name."""
    cloud.metadata.add_fault("sagemaker", "CreateModel", "InternalFailure", after=True)
    definition = {
        "StartAt": "Create",
        "States": {
            "Create": {
                "Type": "Task",
                "Resource": "arn:aws:states:::sagemaker:createModel",
                "Parameters": {
                    "ModelName": "m",
                    "ExecutionRoleArn": ROLE,
                    "PrimaryContainer": {"Image": IMAGE, "ModelDataUrl": "s3://b/model.tar.gz"},
                },
                "Retry": [
                    {"ErrorEquals": ["SageMaker.AmazonSageMakerException"], "MaxAttempts": 1}
                ],
                "End": True,
            },
        },
    }
    result = run(cloud, definition)
    assert result["status"] == "FAILED"
    assert "Cannot create already existing model" in result["cause"]
    assert boto3.client("sagemaker").describe_model(ModelName="m")["ModelName"] == "m"


def test_history_is_durable_for_other_processes(cloud: LocalCloud) -> None:
    definition = {"StartAt": "P", "States": {"P": {"Type": "Pass", "End": True}}}
    result = run(cloud, definition)
    fresh = MetadataStore(cloud.root / "metadata.db")  # what a new process opens
    stored = fresh.read(result["executionArn"])
    assert [e["type"] for e in stored] == [
        "ExecutionStarted",
        "PassStateEntered",
        "PassStateExited",
        "ExecutionSucceeded",
    ]


def test_errors_in_aws_shapes(cloud: LocalCloud) -> None:
    sfn = boto3.client("stepfunctions")
    with pytest.raises(sfn.exceptions.InvalidDefinition):
        sfn.create_state_machine(
            name="bad", definition='{"StartAt": "Nope", "States": {}}', roleArn=ROLE
        )
    with pytest.raises(sfn.exceptions.ExecutionDoesNotExist):
        sfn.describe_execution(executionArn=cloud.arn("states", "execution:x:y"))
    definition = {"StartAt": "P", "States": {"P": {"Type": "Pass", "End": True}}}
    arn = sfn.create_state_machine(name="ok", definition=json.dumps(definition), roleArn=ROLE)[
        "stateMachineArn"
    ]
    first = sfn.start_execution(stateMachineArn=arn, name="once")
    cloud.service("sfn").wait(first["executionArn"])
    with pytest.raises(sfn.exceptions.ExecutionAlreadyExists):
        sfn.start_execution(stateMachineArn=arn, name="once")


def test_batch_tasks_are_refused_clearly(cloud: LocalCloud) -> None:
    # The engine's Batch integration is stubbed out (see engine._stub_batch_integration).
    definition = {
        "StartAt": "B",
        "States": {
            "B": {
                "Type": "Task",
                "Resource": "arn:aws:states:::batch:submitJob.sync",
                "Parameters": {"JobName": "j", "JobQueue": "q", "JobDefinition": "d"},
                "End": True,
            }
        },
    }
    sfn = boto3.client("stepfunctions")
    with pytest.raises(sfn.exceptions.InvalidDefinition, match="batch:\\* tasks are not emulated"):
        sfn.create_state_machine(name="batch", definition=json.dumps(definition), roleArn=ROLE)


def test_a_fail_state_can_re_raise_a_caught_states_error(cloud: LocalCloud) -> None:
    definition = {
        "StartAt": "Boom",
        "States": {
            "Boom": {
                "Type": "Fail",
                "ErrorPath": "$.error.Error",
                "CausePath": "$.error.Cause",
            }
        },
    }
    result = run(cloud, definition, {"error": {"Error": "States.TaskFailed", "Cause": "job died"}})
    assert (result["status"], result["error"], result["cause"]) == (
        "FAILED",
        "States.TaskFailed",
        "job died",
    )


def test_stop_execution_aborts_a_running_execution(cloud: LocalCloud) -> None:
    definition = {"StartAt": "W", "States": {"W": {"Type": "Wait", "Seconds": 60, "End": True}}}
    sfn = boto3.client("stepfunctions")
    arn = sfn.create_state_machine(name="waits", definition=json.dumps(definition), roleArn=ROLE)[
        "stateMachineArn"
    ]
    execution = sfn.start_execution(stateMachineArn=arn)["executionArn"]
    sfn.stop_execution(executionArn=execution, error="Interrupted", cause="stopped by the test")
    result = sfn.describe_execution(executionArn=execution)
    assert result["status"] == "ABORTED"
    events = sfn.get_execution_history(executionArn=execution)["events"]
    assert events[-1]["type"] == "ExecutionAborted"


CATCH_ALL = [{"ErrorEquals": ["States.ALL"], "ResultPath": "$.error", "Next": "Caught"}]
CAUGHT = {"Type": "Pass", "End": True}


def invoke_with_payload(payload: dict[str, Any], **extra: Any) -> dict[str, Any]:
    """A Task whose Parameters fail before any call is made when a path is missing."""
    return {
        "Type": "Task",
        "Resource": "arn:aws:states:::lambda:invoke",
        "Parameters": {"FunctionName": "never-called", "Payload": payload},
        **extra,
    }


def fails(error: str, cause: str) -> dict[str, Any]:
    return {"StartAt": "F", "States": {"F": {"Type": "Fail", "Error": error, "Cause": cause}}}


def test_states_all_neither_retries_nor_catches_a_runtime_error(cloud: LocalCloud) -> None:
    task = invoke_with_payload(
        {"x.$": "$.missing"},
        Retry=[{"ErrorEquals": ["States.ALL"], "MaxAttempts": 3}],
        Catch=CATCH_ALL,
        End=True,
    )
    result = run(cloud, {"StartAt": "A", "States": {"A": task, "Caught": CAUGHT}})
    assert (result["status"], result["error"], result["cause"]) == (
        "FAILED",
        "States.Runtime",
        "An error occurred while executing the state 'A' (entered at the event id #2). "
        "The JSONPath '$.missing' could not be found in the input '{}'",
    )
    assert [e["type"] for e in result["events"]] == [
        "ExecutionStarted",
        "TaskStateEntered",
        "TaskFailed",
        "ExecutionFailed",
    ]


def test_states_all_does_not_catch_data_limit_exceeded_but_its_own_name_does(
    cloud: LocalCloud, tmp_path: Path
) -> None:
    big = add_function(cloud, tmp_path, "big", "def handler(e, c):\n    return 'x' * 300_000\n")
    by_all = {"StartAt": "A", "States": {"A": lambda_task(big, Catch=CATCH_ALL), "Caught": CAUGHT}}
    result = run(cloud, by_all)
    assert (result["status"], result["error"]) == ("FAILED", "States.DataLimitExceeded")

    by_name = [
        {"ErrorEquals": ["States.DataLimitExceeded"], "ResultPath": "$.error", "Next": "Caught"}
    ]
    caught = {"StartAt": "A", "States": {"A": lambda_task(big, Catch=by_name), "Caught": CAUGHT}}
    result = run(cloud, caught)
    assert result["status"] == "SUCCEEDED"
    assert json.loads(result["output"])["error"]["Error"] == "States.DataLimitExceeded"


def test_states_all_still_catches_task_failures(cloud: LocalCloud, tmp_path: Path) -> None:
    bad = add_function(cloud, tmp_path, "oops", "def handler(e, c):\n    raise ValueError('no')\n")
    definition = {
        "StartAt": "A",
        "States": {"A": lambda_task(bad, Catch=CATCH_ALL), "Caught": CAUGHT},
    }
    result = run(cloud, definition)
    assert result["status"] == "SUCCEEDED"
    assert json.loads(result["output"])["error"]["Error"] == "ValueError"


def test_a_states_error_from_a_parallel_branch_reaches_the_outer_catch(cloud: LocalCloud) -> None:
    parallel = {
        "Type": "Parallel",
        "Branches": [fails("States.TaskFailed", "the job died")],
        "Catch": [
            {"ErrorEquals": ["States.TaskFailed"], "ResultPath": "$.error", "Next": "Caught"}
        ],
        "End": True,
    }
    result = run(cloud, {"StartAt": "P", "States": {"P": parallel, "Caught": CAUGHT}})
    assert result["status"] == "SUCCEEDED"
    assert json.loads(result["output"]) == {
        "error": {"Error": "States.TaskFailed", "Cause": "the job died"}
    }


def test_a_states_error_from_a_map_iteration_reaches_the_outer_catch(cloud: LocalCloud) -> None:
    mapped = {
        "Type": "Map",
        "ItemsPath": "$.items",
        "ItemProcessor": fails("States.Permissions", "denied"),
        "Catch": [
            {"ErrorEquals": ["States.Permissions"], "ResultPath": "$.error", "Next": "Caught"}
        ],
        "End": True,
    }
    result = run(cloud, {"StartAt": "M", "States": {"M": mapped, "Caught": CAUGHT}}, {"items": [1]})
    assert result["status"] == "SUCCEEDED"
    assert json.loads(result["output"]) == {
        "items": [1],
        "error": {"Error": "States.Permissions", "Cause": "denied"},
    }


def test_an_uncaught_branch_error_fails_the_execution_with_its_name_and_cause(
    cloud: LocalCloud,
) -> None:
    parallel = {"Type": "Parallel", "Branches": [fails("States.Timeout", "slow")], "End": True}
    result = run(cloud, {"StartAt": "P", "States": {"P": parallel}})
    assert (result["status"], result["error"], result["cause"]) == (
        "FAILED",
        "States.Timeout",
        "slow",
    )


def test_a_runtime_error_in_a_branch_fails_the_execution_with_the_branch_cause(
    cloud: LocalCloud,
) -> None:
    branch = {
        "StartAt": "A",
        "States": {"A": invoke_with_payload({"x.$": "$.missing"}, End=True)},
    }
    parallel = {"Type": "Parallel", "Branches": [branch], "Catch": CATCH_ALL, "End": True}
    result = run(cloud, {"StartAt": "P", "States": {"P": parallel, "Caught": CAUGHT}})
    assert (result["status"], result["error"], result["cause"]) == (
        "FAILED",
        "States.Runtime",
        "An error occurred while executing the state 'A' (entered at the event id #4). "
        "The JSONPath '$.missing' could not be found in the input '{}'",
    )


def test_the_context_object_execution_has_aws_members(cloud: LocalCloud) -> None:
    definition = {
        "StartAt": "P",
        "States": {"P": {"Type": "Pass", "Parameters": {"e.$": "$$.Execution"}, "End": True}},
    }
    result = run(cloud, definition, {"a": 1})
    start = result["startDate"].astimezone(dt.timezone.utc)
    assert json.loads(result["output"])["e"] == {
        "Id": result["executionArn"],
        "Input": {"a": 1},
        "Name": result["name"],
        "RoleArn": ROLE,
        "StartTime": start.strftime("%Y-%m-%dT%H:%M:%S.") + f"{start.microsecond // 1000:03d}Z",
        "RedriveCount": 0,  # no RedriveTime: AWS adds it only to a redriven execution
    }


def test_a_request_the_service_rejects_is_amazon_sagemaker_exception(cloud: LocalCloud) -> None:
    # Integrations send what the definition says (no client-side validation, as AWS); the
    # service's ValidationException and its message reach the Catch.
    definition = {
        "StartAt": "Create",
        "States": {
            "Create": {
                "Type": "Task",
                "Resource": "arn:aws:states:::sagemaker:createEndpointConfig",
                "Parameters": {"EndpointConfigName": "c"},
                "Catch": CATCH_ALL,
                "End": True,
            },
            "Caught": CAUGHT,
        },
    }
    error = json.loads(run(cloud, definition)["output"])["error"]
    assert error["Error"] == "SageMaker.AmazonSageMakerException"
    assert error["Cause"].startswith(
        "1 validation error detected: Value null at 'productionVariants' failed to satisfy "
        "constraint: Member must not be null (Service: AmazonSageMaker; Status Code: 400; "
    )
    assert "Error Code: ValidationException" in error["Cause"]


def test_create_state_machine_rejects_a_parameters_field_the_api_does_not_accept(
    cloud: LocalCloud,
) -> None:
    sfn = boto3.client("stepfunctions")
    task = {
        "Type": "Task",
        "Resource": "arn:aws:states:::sagemaker:createProcessingJob.sync",
        "Parameters": {
            "ProcessingJobName": "j",
            "RoleArn": ROLE,
            "AppSpecificaton": {"ImageUri": "image"},
            "ProcessingResources": {
                "ClusterConfig": {
                    "InstanceCont": 1,
                    "InstanceType": "ml.m5.xlarge",
                    "VolumeSizeInGB": 30,
                }
            },
        },
        "End": True,
    }
    definition = json.dumps({"StartAt": "Preprocess", "States": {"Preprocess": task}})
    with pytest.raises(sfn.exceptions.InvalidDefinition) as raised:
        sfn.create_state_machine(name="typo", definition=definition, roleArn=ROLE)
    assert raised.value.response["Error"]["Message"] == (
        "Invalid State Machine Definition: 'SCHEMA_VALIDATION_FAILED: The field "
        '"AppSpecificaton" is not supported by Step Functions at /States/Preprocess/Parameters, '
        'SCHEMA_VALIDATION_FAILED: The field "InstanceCont" is not supported by Step Functions '
        "at /States/Preprocess/Parameters'"
    )
