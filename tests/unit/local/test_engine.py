"""The engine adapter on its own: parsing, the integrations' boto3 clients, stopping a run.

No service and no network: the adapter's functions are called directly.
"""

from __future__ import annotations

import datetime as dt
import json
import socket
import subprocess
import sys
import threading
from pathlib import Path
from typing import Any

import boto3
import pytest
from botocore.exceptions import EndpointConnectionError
from moto.stepfunctions.parser.asl.component.state.exec.state_task.credentials import (
    StateCredentials,
)

from sfn_mlops.local import credentials, engine
from sfn_mlops.local.credentials import KeyStore

ROLE = "arn:aws:iam::123456789012:role/test"
# Rejected: ResultPath is a JSONPath field and this state machine is JSONata.
REJECTED_JSONATA = json.dumps(
    {
        "QueryLanguage": "JSONata",
        "StartAt": "P",
        "States": {"P": {"Type": "Pass", "ResultPath": "$.x", "End": True}},
    }
)


def jsonpath_definition(i: int) -> str:
    return json.dumps(
        {
            "StartAt": "P",
            "States": {
                "P": {"Type": "Pass", "Parameters": {"v": i, "w.$": "$.y"}, "Next": "J"},
                "J": {
                    "QueryLanguage": "JSONata",
                    "Type": "Pass",
                    "Output": "{% $states.input %}",
                    "End": True,
                },
            },
        }
    )


def jsonata_definition(i: int) -> str:
    return json.dumps(
        {
            "QueryLanguage": "JSONata",
            "StartAt": "P",
            "States": {"P": {"Type": "Pass", "Output": "{% " + str(i) + " %}", "End": True}},
        }
    )


def test_a_rejected_definition_does_not_poison_the_next_parse() -> None:
    with pytest.raises(ValueError, match="Unsupported declaration in QueryLanguage=JSONPath"):
        engine.parse_definition(REJECTED_JSONATA)

    engine.parse_definition(jsonpath_definition(0))  # was rejected: the JSONata scope stayed


def test_many_threads_parse_at_once() -> None:
    outcomes: list[str] = []

    def parse_many(thread: int) -> None:
        for i in range(100):
            kind = (thread + i) % 3
            definition = [REJECTED_JSONATA, jsonpath_definition(i), jsonata_definition(i)][kind]
            try:
                engine.parse_definition(definition)
                outcomes.append("accepted" if kind else "wrongly accepted")
            except ValueError:
                outcomes.append("wrongly rejected" if kind else "rejected")

    threads = [threading.Thread(target=parse_many, args=(t,)) for t in range(4)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join()

    assert sorted(set(outcomes)) == ["accepted", "rejected"]
    assert len(outcomes) == 400


def test_the_batch_integration_stays_stubbed_so_its_models_are_not_imported() -> None:
    code = (
        "import sys, sfn_mlops.local.engine\n"
        "print(sorted(m for m in sys.modules if m.startswith(('moto.batch', 'moto.ec2'))))"
    )
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True)
    assert out.stdout.strip() == "[]"


def closed_loopback_url() -> str:
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        return f"http://127.0.0.1:{probe.getsockname()[1]}"


def test_integration_clients_go_where_aws_endpoint_url_points(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    url = closed_loopback_url()
    monkeypatch.setenv("AWS_ENDPOINT_URL", url)
    monkeypatch.setenv("AWS_ACCESS_KEY_ID", "from-the-environment")
    monkeypatch.setenv("AWS_SECRET_ACCESS_KEY", "secret")
    monkeypatch.setattr(boto3, "DEFAULT_SESSION", None)  # resolved credentials are cached there

    client = engine.boto_client_for(region="eu-west-1", service="sagemaker")

    assert (client.meta.endpoint_url, client.meta.region_name) == (url, "eu-west-1")
    assert client.meta.config.retries["total_max_attempts"] == 1  # the Retry field decides
    assert client._request_signer._credentials.access_key == "from-the-environment"
    # No client-side validation: a wrong type is sent, as Step Functions sends it, and the
    # service answers (here nobody does) instead of botocore raising ParamValidationError.
    with pytest.raises(EndpointConnectionError):
        client.describe_training_job(TrainingJobName=5)


def test_integrations_sign_as_the_state_machines_role_at_a_service_of_this_process(
    monkeypatch: pytest.MonkeyPatch, tmp_path: Path
) -> None:
    url = closed_loopback_url()
    monkeypatch.setenv("AWS_ENDPOINT_URL", url)
    keys = KeyStore(tmp_path)
    credentials.serve(url, keys)
    try:
        client = engine.boto_client_for(
            region="us-east-1", service="sns", state_credentials=StateCredentials(role_arn=ROLE)
        )
    finally:
        credentials.unserve(url)
    signer = client._request_signer._credentials
    role_key = keys.for_role(ROLE, engine.STATE_MACHINE_SESSION)
    assert (signer.access_key, signer.secret_key) == (
        role_key.access_key_id,
        role_key.secret_access_key,
    )
    assert role_key.principal.caller_arn == (
        "arn:aws:sts::123456789012:assumed-role/test/StepFunctions"
    )


def test_every_engine_module_uses_our_client_factory() -> None:
    modules = [
        module
        for name, module in sys.modules.items()
        if name.startswith("moto.stepfunctions.parser") and hasattr(module, "boto_client_for")
    ]
    assert len(modules) >= 10  # aws-sdk, lambda, sns, sqs, ... and the utility module itself
    assert {module.boto_client_for for module in modules} == {engine.boto_client_for}


def run_and_stop_at_once(definition: str) -> tuple[dict[str, Any], list[str]]:
    """Run an execution in this thread while another thread stops it as soon as it can."""
    events: list[dict[str, Any]] = []

    def stop_from_another_thread(stop: Any) -> None:
        threading.Thread(target=stop, args=("Interrupted", "by the test")).start()

    result = engine.run_execution(
        definition=definition,
        state_machine_arn="arn:aws:states:us-east-1:123456789012:stateMachine:m",
        state_machine_name="m",
        execution_arn="arn:aws:states:us-east-1:123456789012:execution:m:e",
        execution_name="e",
        execution_input={},
        role_arn=ROLE,
        account="123456789012",
        region="us-east-1",
        start_time=dt.datetime.now(dt.timezone.utc),
        record=events.append,
        on_start=stop_from_another_thread,
    )
    return result, [event["type"] for event in events]


def waits_after_unused_states(unused: int) -> str:
    states: dict[str, Any] = {"W": {"Type": "Wait", "Seconds": 5, "End": True}}
    states.update({f"Unused{i}": {"Type": "Pass", "End": True} for i in range(unused)})
    return json.dumps({"StartAt": "W", "States": states})


def test_a_stop_always_ends_the_history_with_execution_aborted() -> None:
    # The stop races the engine's start (see engine._stop). Unused states vary the parse time,
    # so the stop lands at every moment of the start: before the fix about 1 run in 5 ended
    # ABORTED with ExecutionStarted as their last event.
    histories = [run_and_stop_at_once(waits_after_unused_states(i % 60)) for i in range(180)]
    assert {(result["status"], types[0], types[-1]) for result, types in histories} == {
        ("ABORTED", "ExecutionStarted", "ExecutionAborted")
    }
