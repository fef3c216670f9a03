"""The callback pattern locally: ``sns:publish.waitForTaskToken`` answered by SendTask*.

The state machine publishes its task token to a local SNS topic; the test reads it from the
topic's message store, as a human approver or a worker would, and answers through boto3.
"""

from __future__ import annotations

import json
import time
from typing import Any

import boto3
import pytest
from botocore.exceptions import ClientError

from sfn_mlops.local import engine
from sfn_mlops.local.cloud import LocalCloud
from sfn_mlops.local.errors import AwsError
from sfn_mlops.local.services.sns import published_messages

ROLE = "arn:aws:iam::123456789012:role/test"
CAUGHT = {"Type": "Pass", "End": True}


def waiting_task(topic: str, **extra: Any) -> dict[str, Any]:
    return {
        "Type": "Task",
        "Resource": "arn:aws:states:::sns:publish.waitForTaskToken",
        "Parameters": {
            "TopicArn": topic,
            "Message": {"token.$": "$$.Task.Token", "job.$": "$.job"},
        },
        "End": True,
        **extra,
    }


def start(name: str, task: dict[str, Any], **states: Any) -> str:
    """Start a one-task machine (plus ``states``) and return the execution ARN."""
    sfn = boto3.client("stepfunctions")
    definition = {"StartAt": "Wait", "States": {"Wait": task, **states}}
    machine = sfn.create_state_machine(name=name, definition=json.dumps(definition), roleArn=ROLE)[
        "stateMachineArn"
    ]
    return sfn.start_execution(stateMachineArn=machine, input='{"job": "j-1"}')["executionArn"]


def token_of(cloud: LocalCloud, seen: int = 0, timeout: float = 5.0) -> str:
    """The token in the next message published after ``seen`` messages."""
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        messages = published_messages(cloud)
        if len(messages) > seen:
            message = json.loads(messages[seen]["Message"])
            assert message["job"] == "j-1"
            return str(message["token"])
        time.sleep(0.01)
    raise AssertionError("no task token was published")


def finish(cloud: LocalCloud, execution: str) -> dict[str, Any]:
    sfn = boto3.client("stepfunctions")
    cloud.service("sfn").wait(execution, timeout=10)
    result = sfn.describe_execution(executionArn=execution)
    assert result["status"] != "RUNNING"
    result["events"] = sfn.get_execution_history(executionArn=execution)["events"]
    return result


def error_code(call: Any, **kwargs: Any) -> str:
    with pytest.raises(ClientError) as raised:
        call(**kwargs)
    return str(raised.value.response["Error"]["Code"])


@pytest.fixture
def topic(cloud: LocalCloud) -> str:
    return str(boto3.client("sns").create_topic(Name="approvals")["TopicArn"])


def test_success_resumes_with_the_output_and_the_token_then_closes(
    cloud: LocalCloud, topic: str
) -> None:
    sfn = boto3.client("stepfunctions")
    execution = start("ok", waiting_task(topic))
    token = token_of(cloud)
    assert engine.task_token_execution(token) == execution
    sfn.send_task_heartbeat(taskToken=token)  # allowed without HeartbeatSeconds too
    sfn.send_task_success(taskToken=token, output='{"approved": true}')
    result = finish(cloud, execution)
    assert result["status"] == "SUCCEEDED"
    assert json.loads(result["output"]) == {"approved": True}
    types = [event["type"] for event in result["events"]]
    assert types[types.index("TaskScheduled") :] == [
        "TaskScheduled",
        "TaskStarted",
        "TaskSubmitted",
        "TaskSucceeded",
        "TaskStateExited",
        "ExecutionSucceeded",
    ]
    succeeded = next(e for e in result["events"] if e["type"] == "TaskSucceeded")
    assert succeeded["taskSucceededEventDetails"]["resource"] == "publish.waitForTaskToken"
    assert json.loads(succeeded["taskSucceededEventDetails"]["output"]) == {"approved": True}
    # the task has closed: the token is refused as AWS refuses it
    assert error_code(sfn.send_task_success, taskToken=token, output="{}") == "TaskTimedOut"
    assert error_code(sfn.send_task_heartbeat, taskToken=token) == "TaskTimedOut"


def test_a_failure_is_caught_by_its_error_name(cloud: LocalCloud, topic: str) -> None:
    catch = [{"ErrorEquals": ["Rejected"], "ResultPath": "$.error", "Next": "Caught"}]
    execution = start("caught", waiting_task(topic, Catch=catch), Caught=CAUGHT)
    boto3.client("stepfunctions").send_task_failure(
        taskToken=token_of(cloud), error="Rejected", cause="not good enough"
    )
    result = finish(cloud, execution)
    assert result["status"] == "SUCCEEDED"
    error = json.loads(result["output"])["error"]
    assert error == {"Error": "Rejected", "Cause": "not good enough"}
    failed = next(e for e in result["events"] if e["type"] == "TaskFailed")
    assert failed["taskFailedEventDetails"]["error"] == "Rejected"


def test_a_retried_failure_gets_a_new_token(cloud: LocalCloud, topic: str) -> None:
    retry = [{"ErrorEquals": ["Busy"], "IntervalSeconds": 1, "MaxAttempts": 1}]
    sfn = boto3.client("stepfunctions")
    execution = start("retried", waiting_task(topic, Retry=retry))
    first = token_of(cloud)
    sfn.send_task_failure(taskToken=first, error="Busy")
    second = token_of(cloud, seen=1)
    assert second != first
    sfn.send_task_success(taskToken=second, output='"done"')
    assert json.loads(finish(cloud, execution)["output"]) == "done"


def test_an_uncaught_failure_fails_the_execution_with_it(cloud: LocalCloud, topic: str) -> None:
    execution = start("uncaught", waiting_task(topic))
    boto3.client("stepfunctions").send_task_failure(
        taskToken=token_of(cloud), error="Rejected", cause="no"
    )
    result = finish(cloud, execution)
    assert (result["status"], result["error"], result["cause"]) == ("FAILED", "Rejected", "no")


def test_timeout_seconds_ends_the_wait_with_states_timeout(cloud: LocalCloud, topic: str) -> None:
    # 100 s at the test workspace's time scale of 0.001: 0.1 s
    execution = start("times-out", waiting_task(topic, TimeoutSeconds=100))
    token = token_of(cloud)
    result = finish(cloud, execution)
    assert (result["status"], result["error"]) == ("FAILED", "States.Timeout")
    timed_out = next(e for e in result["events"] if e["type"] == "TaskTimedOut")
    assert timed_out["taskTimedOutEventDetails"]["error"] == "States.Timeout"
    error = error_code(boto3.client("stepfunctions").send_task_success, taskToken=token, output="1")
    assert error == "TaskTimedOut"


def test_heartbeats_keep_the_task_alive_until_they_stop(cloud: LocalCloud, topic: str) -> None:
    cloud.time_scale = 0.01  # HeartbeatSeconds 20: 0.2 s between heartbeats at most
    catch = [{"ErrorEquals": ["States.Timeout"], "ResultPath": "$.error", "Next": "Caught"}]
    task = waiting_task(topic, HeartbeatSeconds=20, TimeoutSeconds=1000, Catch=catch)
    execution = start("beats", task, Caught=CAUGHT)
    token = token_of(cloud)
    sfn = boto3.client("stepfunctions")
    for _ in range(6):  # 0.3 s in all, longer than one heartbeat interval
        sfn.send_task_heartbeat(taskToken=token)
        time.sleep(0.05)
    assert sfn.describe_execution(executionArn=execution)["status"] == "RUNNING"
    result = finish(cloud, execution)  # heartbeats stop: the task times out, caught
    assert result["status"] == "SUCCEEDED"
    assert json.loads(result["output"])["error"]["Error"] == "States.HeartbeatTimeout"
    timed_out = next(e for e in result["events"] if e["type"] == "TaskTimedOut")
    assert timed_out["taskTimedOutEventDetails"]["error"] == "States.HeartbeatTimeout"


def test_tokens_of_a_stopped_execution_are_refused(cloud: LocalCloud, topic: str) -> None:
    sfn = boto3.client("stepfunctions")
    execution = start("stopped", waiting_task(topic))
    token = token_of(cloud)
    started = time.monotonic()
    sfn.stop_execution(executionArn=execution, error="Cancelled")
    assert time.monotonic() - started < 2  # the wait does not outlive the stop
    result = finish(cloud, execution)
    assert result["status"] == "ABORTED"
    assert [e["type"] for e in result["events"][-2:]] == ["TaskSubmitted", "ExecutionAborted"]
    assert error_code(sfn.send_task_success, taskToken=token, output="{}") == "TaskTimedOut"


def test_unknown_malformed_and_invalid_output_are_refused(cloud: LocalCloud, topic: str) -> None:
    sfn = boto3.client("stepfunctions")
    nobody = engine.new_task_token(cloud.arn("states", "execution:gone:e-1"))
    assert error_code(sfn.send_task_success, taskToken=nobody, output="{}") == "TaskDoesNotExist"
    assert error_code(sfn.send_task_failure, taskToken=nobody) == "TaskDoesNotExist"
    assert error_code(sfn.send_task_heartbeat, taskToken="not-a-token") == "InvalidToken"
    execution = start("bad-output", waiting_task(topic))
    token = token_of(cloud)
    assert error_code(sfn.send_task_success, taskToken=token, output="{nope") == "InvalidOutput"
    sfn.send_task_success(taskToken=token, output="[1]")  # the task is still open
    assert json.loads(finish(cloud, execution)["output"]) == [1]


def test_the_engine_hooks_the_callback_code_it_relies_on() -> None:
    # What the adapter replaces in moto's callback Task; a rename in moto fails here first.
    from moto.stepfunctions.parser.asl.eval.callback.callback import HeartbeatEndpoint

    assert HeartbeatEndpoint(heartbeat_seconds=3)._heartbeat_seconds == 3
    callback = engine.StateTaskServiceCallback
    assert callback._eval_wait_for_task_token is engine._eval_wait_for_task_token  # type: ignore[comparison-overlap]
    assert callback._eval_execution is engine._callback_execution  # type: ignore[comparison-overlap]


def test_a_restarted_service_refuses_its_predecessors_tokens(cloud: LocalCloud, topic: str) -> None:
    execution = start("restarted", waiting_task(topic, TimeoutSeconds=500))  # 0.5 s
    token = token_of(cloud)
    restarted = LocalCloud(cloud.root, time_scale=0.001).service("sfn")
    assert restarted.recover() == [execution]  # what the daemon does when it starts again
    with pytest.raises(AwsError) as raised:
        restarted.send_task_success({"taskToken": token, "output": "{}"})
    assert raised.value.code == "TaskTimedOut"
    cloud.service("sfn").wait(execution, timeout=5)  # the old thread ends by its timeout
