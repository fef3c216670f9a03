"""AWS Step Functions: state machines and durable executions run by the local engine.

An execution runs in a thread of the local service; its status and every history event are
written to the metadata store as they happen. Stopping one also stops the SageMaker job its
running state waits for, as StopExecution does in AWS. Executions a dead predecessor of the
service left RUNNING are marked FAILED when the service starts (``recover``).
"""

from __future__ import annotations

import contextlib
import datetime as dt
import json
import os
import re
import threading
import time
from collections.abc import Callable
from typing import Any

from sfn_mlops.local.errors import AwsError
from sfn_mlops.local.shapes import timestamp

_NAME = re.compile(r"^[A-Za-z0-9_-]{1,80}$")
_MACHINES = "sfn/state-machine"
_EXECUTIONS = "sfn/execution"
_TERMINAL = {"SUCCEEDED", "FAILED", "TIMED_OUT", "ABORTED"}


def _now() -> float:
    return time.time()


class StepFunctions:
    def __init__(self, cloud: Any) -> None:
        self.cloud = cloud
        self.db = cloud.metadata
        self._threads: dict[str, threading.Thread] = {}
        self._stoppers: dict[str, Callable[[str, str], None]] = {}
        self._early_stops: dict[str, tuple[str, str]] = {}  # asked before the engine could stop
        self._stop_lock = threading.Lock()

    # state machines ------------------------------------------------------------------------
    def _machine(self, arn: str) -> dict[str, Any]:
        name = arn.rpartition(":")[2]
        doc = self.db.get(_MACHINES, name)
        if doc is None or doc["stateMachineArn"] != arn:
            raise AwsError("StateMachineDoesNotExist", f"State Machine Does Not Exist: '{arn}'")
        return doc

    def _check_definition(self, definition: str) -> None:
        from sfn_mlops.local.asl_schema import check_definition_schema
        from sfn_mlops.local.engine import parse_definition

        try:
            parsed = json.loads(definition)
            parse_definition(definition)
        except ValueError as err:
            raise AwsError(
                "InvalidDefinition", f"Invalid State Machine Definition: '{err}'"
            ) from err
        problems = check_definition_schema(parsed) if isinstance(parsed, dict) else []
        if problems:
            raise AwsError(
                "InvalidDefinition", f"Invalid State Machine Definition: '{', '.join(problems)}'"
            )

    def _check_managed_rules(self, definition: str, role_arn: str) -> None:
        """Step Functions makes the managed EventBridge rules of the definition's `.sync`
        SageMaker Tasks as the state machine's role when it is created or updated, and refuses
        it when the role may not (`iam.managed_rule_needs`), with the AccessDeniedException
        AWS answers: "'ROLE_ARN' is not authorized to create managed-rule." (the message names
        no action: the local service adds the decision that refused it)."""
        from sfn_mlops.local.engine import STATE_MACHINE_SESSION
        from sfn_mlops.local.iam import managed_rule_needs

        wanted = managed_rule_needs(json.loads(definition), self.cloud.region, self.cloud.account)
        if not wanted:
            return
        iam = self.cloud.authorization
        denied = iam.denial(iam.caller(role_arn, STATE_MACHINE_SESSION), wanted)
        if denied is not None:
            raise AwsError(
                "AccessDeniedException",
                f"'{role_arn}' is not authorized to create managed-rule. "
                f"(sfn-mlops local mode: {denied})",
            )

    def create_state_machine(self, params: dict[str, Any]) -> dict[str, Any]:
        name = params["name"]
        if not _NAME.match(name):
            raise AwsError("InvalidName", f"Invalid Name: '{name}'")
        if params.get("type", "STANDARD") != "STANDARD":
            raise AwsError("ValidationException", "Only STANDARD state machines run locally")
        self._check_definition(params["definition"])
        self._check_managed_rules(params["definition"], params["roleArn"])
        arn = self.cloud.arn("states", f"stateMachine:{name}")
        existing = self.db.get(_MACHINES, name)
        if existing is not None:
            if (
                existing["definition"] == params["definition"]
                and existing["roleArn"] == params["roleArn"]
            ):
                return {"stateMachineArn": arn, "creationDate": timestamp(existing["creationDate"])}
            raise AwsError("StateMachineAlreadyExists", f"State Machine Already Exists: '{arn}'")
        doc = {
            "stateMachineArn": arn,
            "name": name,
            "definition": params["definition"],
            "roleArn": params["roleArn"],
            "type": "STANDARD",
            "creationDate": _now(),
        }
        self.db.create(_MACHINES, name, doc)
        return {"stateMachineArn": arn, "creationDate": timestamp(doc["creationDate"])}

    def update_state_machine(self, params: dict[str, Any]) -> dict[str, Any]:
        doc = self._machine(params["stateMachineArn"])
        if "definition" in params:
            self._check_definition(params["definition"])
        if "definition" in params or "roleArn" in params:
            self._check_managed_rules(
                params.get("definition", doc["definition"]), params.get("roleArn", doc["roleArn"])
            )
        if "definition" in params:
            doc["definition"] = params["definition"]
        if "roleArn" in params:
            doc["roleArn"] = params["roleArn"]
        doc["updateDate"] = _now()
        self.db.put(_MACHINES, doc["name"], doc)
        return {"updateDate": timestamp(doc["updateDate"])}

    def describe_state_machine(self, params: dict[str, Any]) -> dict[str, Any]:
        doc = self._machine(params["stateMachineArn"])
        return {
            "stateMachineArn": doc["stateMachineArn"],
            "name": doc["name"],
            "status": "ACTIVE",
            "definition": doc["definition"],
            "roleArn": doc["roleArn"],
            "type": doc["type"],
            "creationDate": timestamp(doc["creationDate"]),
        }

    def list_state_machines(self, params: dict[str, Any]) -> dict[str, Any]:
        return {
            "stateMachines": [
                {
                    "stateMachineArn": d["stateMachineArn"],
                    "name": d["name"],
                    "type": d["type"],
                    "creationDate": timestamp(d["creationDate"]),
                }
                for d in self.db.list(_MACHINES)
            ]
        }

    def delete_state_machine(self, params: dict[str, Any]) -> dict[str, Any]:
        name = params["stateMachineArn"].rpartition(":")[2]
        self.db.delete(_MACHINES, name)
        return {}

    # executions ----------------------------------------------------------------------------
    def start_execution(self, params: dict[str, Any]) -> dict[str, Any]:
        machine = self._machine(params["stateMachineArn"])
        name = params.get("name") or _default_name()
        if not _NAME.match(name):
            raise AwsError("InvalidName", f"Invalid Name: '{name}'")
        raw_input = params.get("input", "{}")
        try:
            execution_input = json.loads(raw_input)
        except json.JSONDecodeError as err:
            raise AwsError("InvalidExecutionInput", f"Invalid execution input: {err}") from err
        arn = self.cloud.arn("states", f"execution:{machine['name']}:{name}")
        existing = self.db.get(_EXECUTIONS, arn)
        if existing is not None:
            if existing["status"] == "RUNNING" and existing["input"] == raw_input:
                return {"executionArn": arn, "startDate": timestamp(existing["startDate"])}
            raise AwsError("ExecutionAlreadyExists", f"Execution Already Exists: '{arn}'")
        doc = {
            "executionArn": arn,
            "stateMachineArn": machine["stateMachineArn"],
            "name": name,
            "status": "RUNNING",
            "startDate": _now(),
            "input": raw_input,
            "pid": os.getpid(),
            # What DescribeStateMachineForExecution answers after later deploys.
            "definition": machine["definition"],
            "roleArn": machine["roleArn"],
            "definitionDate": machine.get("updateDate", machine["creationDate"]),
        }
        self.db.create(_EXECUTIONS, arn, doc)
        thread = threading.Thread(
            target=self._run, args=(machine, doc, execution_input), name=f"execution-{name}"
        )
        self._threads[arn] = thread
        thread.start()
        return {"executionArn": arn, "startDate": timestamp(doc["startDate"])}

    def _run(self, machine: dict[str, Any], doc: dict[str, Any], execution_input: Any) -> None:
        from sfn_mlops.local.engine import run_execution

        arn = doc["executionArn"]
        try:
            result = run_execution(
                definition=machine["definition"],
                state_machine_arn=machine["stateMachineArn"],
                state_machine_name=machine["name"],
                execution_arn=arn,
                execution_name=doc["name"],
                execution_input=execution_input,
                role_arn=machine["roleArn"],
                account=self.cloud.account,
                region=self.cloud.region,
                start_time=timestamp(doc["startDate"]) or dt.datetime.now(dt.timezone.utc),
                record=lambda event: self.db.append(arn, event),
                time_scale=lambda: self.cloud.time_scale,
                on_start=lambda stop: self._stopper_ready(arn, stop),
            )
        except Exception as err:  # an engine crash must still end the execution
            result = {
                "status": "FAILED",
                "error": "States.Runtime",
                "cause": f"{type(err).__name__}: {err}",
            }
        self.db.update(_EXECUTIONS, arn, stopDate=_now(), **result)

    def wait(self, execution_arn: str, timeout: float | None = None) -> None:
        """Join the thread running an execution of this process (tests and the CLI use it)."""
        thread = self._threads.get(execution_arn)
        if thread is not None:
            thread.join(timeout)

    def _execution(self, arn: str) -> dict[str, Any]:
        doc = self.db.get(_EXECUTIONS, arn)
        if doc is None:
            raise AwsError("ExecutionDoesNotExist", f"Execution Does Not Exist: '{arn}'")
        return dict(doc)

    def running(self) -> list[str]:
        """Names of the executions this service runs now."""
        return [
            arn.rpartition(":")[2]
            for arn, thread in list(self._threads.items())
            if thread.is_alive()
        ]

    def recover(self) -> list[str]:
        """Mark FAILED what a predecessor left RUNNING (its jobs are recovered by the runner)."""
        recovered = []
        for doc in self.db.list(_EXECUTIONS):
            if doc["status"] != "RUNNING" or doc["executionArn"] in self._threads:
                continue
            self.db.update(
                _EXECUTIONS,
                doc["executionArn"],
                status="FAILED",
                stopDate=_now(),
                error="SfnMlops.LocalServiceStopped",
                cause=f"The local service that ran this execution (pid {doc['pid']}) stopped "
                "(killed or crashed) before the execution finished; its running job was stopped "
                "and marked Failed. Start the execution again.",
            )
            self.db.append(
                doc["executionArn"], _failed_event(doc, self.db.read(doc["executionArn"]))
            )
            recovered.append(doc["executionArn"])
        return recovered

    def stop_all(self, error: str, cause: str) -> list[str]:
        """Stop every execution this service runs (the service is shutting down)."""
        arns = [arn for arn, thread in list(self._threads.items()) if thread.is_alive()]
        for arn in arns:
            self.stop_execution({"executionArn": arn, "error": error, "cause": cause})
        return arns

    def describe_execution(self, params: dict[str, Any]) -> dict[str, Any]:
        doc = self._execution(params["executionArn"])
        result = {
            "executionArn": doc["executionArn"],
            "stateMachineArn": doc["stateMachineArn"],
            "name": doc["name"],
            "status": doc["status"],
            "startDate": timestamp(doc["startDate"]),
            "input": doc["input"],
            "inputDetails": {"included": True},
        }
        if doc.get("stopDate"):
            result["stopDate"] = timestamp(doc["stopDate"])
        if doc["status"] == "SUCCEEDED":
            result["output"] = doc.get("output", "{}")
            result["outputDetails"] = {"included": True}
        for key in ("error", "cause"):
            if doc.get(key) is not None:
                result[key] = doc[key]
        return result

    def describe_state_machine_for_execution(self, params: dict[str, Any]) -> dict[str, Any]:
        """The definition the execution started with (executions recorded before the service
        kept it get the state machine's current one)."""
        doc = self._execution(params["executionArn"])
        machine = self._machine(doc["stateMachineArn"])
        return {
            "stateMachineArn": doc["stateMachineArn"],
            "name": machine["name"],
            "definition": doc.get("definition", machine["definition"]),
            "roleArn": doc.get("roleArn", machine["roleArn"]),
            "updateDate": timestamp(
                doc.get("definitionDate", machine.get("updateDate", machine["creationDate"]))
            ),
        }

    def list_executions(self, params: dict[str, Any]) -> dict[str, Any]:
        machine = params.get("stateMachineArn")
        status = params.get("statusFilter")
        items = []
        for doc in self.db.list(_EXECUTIONS):
            if machine and doc["stateMachineArn"] != machine:
                continue
            doc = self._execution(doc["executionArn"])
            if status and doc["status"] != status:
                continue
            item = {
                "executionArn": doc["executionArn"],
                "stateMachineArn": doc["stateMachineArn"],
                "name": doc["name"],
                "status": doc["status"],
                "startDate": timestamp(doc["startDate"]),
            }
            if doc.get("stopDate"):
                item["stopDate"] = timestamp(doc["stopDate"])
            items.append(item)
        items.sort(key=lambda item: item["startDate"], reverse=True)  # AWS: the newest first
        return _page(items, params, "executions", params.get("maxResults") or 100)

    def get_execution_history(self, params: dict[str, Any]) -> dict[str, Any]:
        self._execution(params["executionArn"])
        events = self.db.read(params["executionArn"])
        for event in events:
            event["timestamp"] = _parse_timestamp(event["timestamp"])
        if params.get("reverseOrder"):
            events.reverse()
        return _page(events, params, "events", params.get("maxResults") or 1000)

    def stop_execution(self, params: dict[str, Any]) -> dict[str, Any]:
        arn = params["executionArn"]
        doc = self._execution(arn)
        if doc["status"] in _TERMINAL:
            return {"stopDate": timestamp(doc.get("stopDate"))}
        request = (params.get("error", ""), params.get("cause", ""))
        with self._stop_lock:
            stop = self._stoppers.get(arn)
            if stop is None:  # the engine has not started it yet: it stops as soon as it can
                self._early_stops[arn] = request
        if stop is not None:
            stop(*request)
        self.wait(arn, timeout=30)
        self._stop_jobs(arn)
        return {"stopDate": timestamp(self._execution(arn).get("stopDate"))}

    # callbacks (.waitForTaskToken) -----------------------------------------------------------
    def send_task_success(self, params: dict[str, Any]) -> dict[str, Any]:
        token, output = params["taskToken"], params["output"]
        self._token_execution(token)
        try:
            json.loads(output)
        except ValueError as err:
            raise AwsError("InvalidOutput", f"Invalid Output: '{err}'") from err
        return self._answer(token, "success", output=output)

    def send_task_failure(self, params: dict[str, Any]) -> dict[str, Any]:
        token = params["taskToken"]
        self._token_execution(token)
        return self._answer(token, "failure", error=params.get("error"), cause=params.get("cause"))

    def send_task_heartbeat(self, params: dict[str, Any]) -> dict[str, Any]:
        token = params["taskToken"]
        self._token_execution(token)
        return self._answer(token, "heartbeat")

    @staticmethod
    def _token_execution(token: str) -> str:
        from sfn_mlops.local.engine import task_token_execution

        try:
            return task_token_execution(token)
        except ValueError as err:
            raise AwsError("InvalidToken", f"Invalid Token: '{err}'") from err

    def _answer(self, token: str, answer: Any, **details: str | None) -> dict[str, Any]:
        """Deliver an answer, or say why the token's task cannot take it.

        As AWS: a task that has closed (answered, timed out, its execution stopped or ended,
        or run by a predecessor of this service) is ``TaskTimedOut``; a token whose execution
        this workspace does not know is ``TaskDoesNotExist``.
        """
        from sfn_mlops.local.engine import answer_task

        arn = self._token_execution(token)
        thread = self._threads.get(arn)  # only this service's own tasks: not another workspace's
        if thread is not None and thread.is_alive() and answer_task(token, answer, **details):
            return {}
        if self.db.get(_EXECUTIONS, arn) is None:
            raise AwsError("TaskDoesNotExist", "Task Does Not Exist: 'no execution issued it'")
        raise AwsError("TaskTimedOut", "Task Timed Out: 'Provided task does not exist anymore'")

    def _stopper_ready(self, arn: str, stop: Callable[[str, str], None]) -> None:
        with self._stop_lock:
            self._stoppers[arn] = stop
            request = self._early_stops.pop(arn, None)
        if request is not None:  # called before the engine runs: stop from another thread
            threading.Thread(target=stop, args=request, daemon=True).start()

    def _stop_jobs(self, arn: str) -> None:
        """AWS stops the SageMaker job a ``.sync`` task waits for when its execution stops."""
        sagemaker = self.cloud.service("sagemaker")
        for job_name, stop in _scheduled_jobs(self.db.read(arn)):
            with contextlib.suppress(AwsError):  # already ended: nothing to stop
                getattr(sagemaker, stop)({_JOB_KEYS[stop]: job_name})


_JOB_KEYS = {
    "stop_training_job": "TrainingJobName",
    "stop_processing_job": "ProcessingJobName",
    "stop_transform_job": "TransformJobName",
    "stop_hyper_parameter_tuning_job": "HyperParameterTuningJobName",
}


def _scheduled_jobs(events: list[dict[str, Any]]) -> list[tuple[str, str]]:
    """(job name, stop method) of every SageMaker job a Task of this history started."""
    found = []
    for event in events:
        details = event.get("taskScheduledEventDetails")
        if not details or details.get("resourceType") != "sagemaker":
            continue
        try:
            parameters = json.loads(details.get("parameters") or "{}")
        except ValueError:
            continue
        for stop, key in _JOB_KEYS.items():
            if key in parameters:
                found.append((str(parameters[key]), stop))
    return found


def _failed_event(doc: dict[str, Any], events: list[dict[str, Any]]) -> dict[str, Any]:
    """The ExecutionFailed event that closes the history of a recovered execution."""
    previous = max((int(e.get("id", 0)) for e in events), default=0)
    stamp = dt.datetime.now(dt.timezone.utc).isoformat(timespec="milliseconds")
    return {
        "timestamp": stamp.replace("+00:00", "Z"),
        "type": "ExecutionFailed",
        "id": previous + 1,
        "previousEventId": previous,
        "executionFailedEventDetails": {
            "error": "SfnMlops.LocalServiceStopped",
            "cause": f"The local service (pid {doc['pid']}) stopped before the execution finished.",
        },
    }


def _page(items: list[Any], params: dict[str, Any], key: str, size: int) -> dict[str, Any]:
    start = int(params.get("nextToken") or 0)
    result: dict[str, Any] = {key: items[start : start + size]}
    if start + size < len(items):
        result["nextToken"] = str(start + size)
    return result


def _parse_timestamp(value: Any) -> dt.datetime:
    parsed = dt.datetime.fromisoformat(str(value).replace("Z", "+00:00"))
    return parsed if parsed.tzinfo else parsed.replace(tzinfo=dt.timezone.utc)


def _default_name() -> str:
    import uuid

    return str(uuid.uuid4())
