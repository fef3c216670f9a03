"""The one module that touches moto's private ASL interpreter (the LocalStack-derived engine).

It (a) dispatches SageMaker Task resources, including ``.sync``, to the local services through
boto3, and points every integration's boto3 client where ``AWS_ENDPOINT_URL`` says, (b) turns
integration failures into the States errors AWS gives so Retry and Catch work, (c) corrects the
engine's divergences from AWS (``$.a[0].b`` gives the value, not a one-item list; a Fail state or
a Parallel/Map branch may raise a ``States.*`` error; ``States.ALL`` does not catch the terminal
``States.Runtime`` and ``States.DataLimitExceeded``; ``$$.Execution.RedriveCount``), (d) scales
Retry delays by the workspace time scale, (e) writes each history event to the metadata store as
it happens, (f) parses definitions safely from many threads of one long-lived process, and
(g) lets SendTaskSuccess/Failure/Heartbeat answer a ``.waitForTaskToken`` task (``answer_task``).
moto is pinned exactly; tests/functional/test_engine_contract.py pins what this module relies on.
"""

# The Batch stub below must be in sys.modules before moto's engine modules are imported.
# ruff: noqa: E402

from __future__ import annotations

import base64
import datetime as dt
import json
import logging
import os
import sys
import threading
import time
import types
import uuid
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any, Literal

import boto3
from botocore.config import Config
from botocore.exceptions import ClientError

from sfn_mlops.local import credentials

_BATCH_INTEGRATION = (
    "moto.stepfunctions.parser.asl.component.state.exec.state_task.service.state_task_service_batch"
)


class _BatchNotEmulated:
    def __init__(self) -> None:
        raise ValueError("arn:aws:states:::batch:* tasks are not emulated by the local cloud")


def _stub_batch_integration() -> None:
    """Stand in for the engine's AWS Batch integration before the engine is imported.

    That one module imports all of moto's Batch and EC2 models (1.5 s of every cold start,
    measured) and local mode does not emulate Batch. Only this module of the engine is replaced.
    """
    if _BATCH_INTEGRATION not in sys.modules:
        stub = types.ModuleType(_BATCH_INTEGRATION)
        stub.StateTaskServiceBatch = _BatchNotEmulated  # type: ignore[attr-defined]
        sys.modules[_BATCH_INTEGRATION] = stub


_stub_batch_integration()

from moto.stepfunctions.parser.api import (
    ExecutionFailedEventDetails,
    HistoryEventType,
    StateMachineType,
    TaskFailedEventDetails,
    TaskTimedOutEventDetails,
)
from moto.stepfunctions.parser.asl.component.common.error_name import error_equals_decl
from moto.stepfunctions.parser.asl.component.common.error_name.custom_error_name import (
    CustomErrorName,
)
from moto.stepfunctions.parser.asl.component.common.error_name.error_name import ErrorName
from moto.stepfunctions.parser.asl.component.common.error_name.failure_event import (
    FailureEvent,
    FailureEventException,
)
from moto.stepfunctions.parser.asl.component.common.error_name.states_error_name import (
    StatesErrorName,
)
from moto.stepfunctions.parser.asl.component.common.error_name.states_error_name_type import (
    StatesErrorNameType,
)
from moto.stepfunctions.parser.asl.component.common.retry import retrier_decl
from moto.stepfunctions.parser.asl.component.common.timeouts.timeout import TimeoutSeconds
from moto.stepfunctions.parser.asl.component.eval_component import EvalComponent
from moto.stepfunctions.parser.asl.component.program.program import Program
from moto.stepfunctions.parser.asl.component.state.exec.state_map.iteration import (
    iteration_worker,
)
from moto.stepfunctions.parser.asl.component.state.exec.state_parallel import branches_decl
from moto.stepfunctions.parser.asl.component.state.exec.state_task import state_task_factory
from moto.stepfunctions.parser.asl.component.state.exec.state_task.service import (
    state_task_service_callback as callback_module,
)
from moto.stepfunctions.parser.asl.component.state.exec.state_task.service import (
    state_task_service_factory,
)
from moto.stepfunctions.parser.asl.component.state.exec.state_task.service.resource import (
    ResourceCondition,
)
from moto.stepfunctions.parser.asl.component.state.exec.state_task.service.state_task_service_callback import (  # noqa: E501
    StateTaskServiceCallback,
)
from moto.stepfunctions.parser.asl.component.state.fail import state_fail
from moto.stepfunctions.parser.asl.component.state.wait.wait_function.wait_function import (
    WaitFunction,
)
from moto.stepfunctions.parser.asl.eval.callback.callback import (
    CallbackEndpoint,
    CallbackOutcome,
    CallbackOutcomeFailure,
    CallbackOutcomeSuccess,
    CallbackOutcomeTimedOut,
    HeartbeatEndpoint,
    HeartbeatTimedOut,
    HeartbeatTimeoutError,
)
from moto.stepfunctions.parser.asl.eval.environment import Environment
from moto.stepfunctions.parser.asl.eval.evaluation_details import (
    AWSExecutionDetails,
    EvaluationDetails,
    ExecutionDetails,
    StateMachineDetails,
)
from moto.stepfunctions.parser.asl.eval.event.event_detail import EventDetails
from moto.stepfunctions.parser.asl.eval.event.event_manager import EventManager
from moto.stepfunctions.parser.asl.eval.program_state import (
    ProgramEnded,
    ProgramError,
    ProgramStopped,
    ProgramTimedOut,
)
from moto.stepfunctions.parser.asl.eval.states import ContextObject, TaskData
from moto.stepfunctions.parser.asl.parse.asl_parser import AmazonStateLanguageParser
from moto.stepfunctions.parser.asl.parse.preprocessor import Preprocessor
from moto.stepfunctions.parser.asl.utils import boto_client, json_path
from moto.stepfunctions.parser.asl.utils.encoding import to_json_str
from moto.stepfunctions.parser.backend.execution_worker import SyncExecutionWorker
from moto.stepfunctions.parser.backend.execution_worker_comm import ExecutionWorkerCommunication

SYNC_POLL_SECONDS = 0.025  # a DescribeTrainingJob over loopback costs about 2 ms
WAIT_SLICE_SECONDS = 0.1
_SAGEMAKER_JOBS = {
    "createTrainingJob": ("describe_training_job", "TrainingJobName", "TrainingJobStatus"),
    "createProcessingJob": ("describe_processing_job", "ProcessingJobName", "ProcessingJobStatus"),
    "createTransformJob": ("describe_transform_job", "TransformJobName", "TransformJobStatus"),
    "createHyperParameterTuningJob": (
        "describe_hyper_parameter_tuning_job",
        "HyperParameterTuningJobName",
        "HyperParameterTuningJobStatus",
    ),
}
#: Seconds between two Describes of a ``.sync`` task's job where SYNC_POLL_SECONDS is too often:
#: a DescribeHyperParameterTuningJob answer carries the config, the training job definition and
#: the best job (about 14 ms of the service's and the client's CPU through boto3, measured with
#: 20 training jobs: at every 25 ms a third of a core taken from the training jobs it waits for).
_SYNC_DESCRIBE_INTERVAL = {"createHyperParameterTuningJob": 0.25}
_time_scale: Callable[[], float] = lambda: 1.0  # noqa: E731


# (a, b) SageMaker, the optimised integration that moto leaves unsupported --------------------
class StateTaskServiceSageMaker(StateTaskServiceCallback):
    """``arn:aws:states:::sagemaker:<action>[.sync]`` answered through boto3 (local or real)."""

    def __init__(self) -> None:
        super().__init__(
            supported_integration_patterns={
                ResourceCondition.WaitForTaskToken,  # type: ignore[arg-type]
                ResourceCondition.Sync,  # type: ignore[arg-type]
            }
        )

    def _validate_service_integration_is_supported(self) -> None:
        condition = self.resource.condition
        if condition == ResourceCondition.Sync and self.resource.api_action not in _SAGEMAKER_JOBS:
            raise ValueError(
                f"{self.resource.resource_arn}: .sync is only defined for SageMaker jobs"
            )

    def _client(self, resource_runtime_part: Any, state_credentials: Any) -> Any:
        return boto_client_for(
            region=resource_runtime_part.region,
            service="sagemaker",
            state_credentials=state_credentials,
        )

    def _eval_service_task(
        self,
        env: Environment,
        resource_runtime_part: Any,
        normalised_parameters: dict,
        state_credentials: Any,
    ) -> None:
        client = self._client(resource_runtime_part, state_credentials)
        action = self._get_boto_service_action()
        response = getattr(client, action)(**normalised_parameters)
        response.pop("ResponseMetadata", None)
        env.stack.append(response)

    def _build_sync_resolver(
        self,
        env: Environment,
        resource_runtime_part: Any,
        normalised_parameters: dict,
        state_credentials: Any,
    ) -> Callable[[], Any]:
        describe, name_key, status_key = _SAGEMAKER_JOBS[self.resource.api_action]
        client = self._client(resource_runtime_part, state_credentials)
        job_name = normalised_parameters[name_key]
        interval = _SYNC_DESCRIBE_INTERVAL.get(self.resource.api_action, 0.0)
        last_describe = [-interval]

        def resolve() -> Any:
            if interval and time.monotonic() - last_describe[0] < interval:
                return None  # not yet time to ask again
            last_describe[0] = time.monotonic()
            job = getattr(client, describe)(**{name_key: job_name})
            job.pop("ResponseMetadata", None)
            status = job[status_key]
            if status in ("InProgress", "Stopping"):
                return None  # the engine sleeps SYNC_POLL_SECONDS, then asks again
            job = json.loads(to_json_str(job))
            if status == "Completed":
                return job
            raise SageMakerJobFailed(job)

        return resolve

    def _from_error(self, env: Environment, ex: Exception) -> FailureEvent:
        if isinstance(ex, SageMakerJobFailed):
            task_failed = StatesErrorName(typ=StatesErrorNameType.StatesTaskFailed)
            return self._failure(env, task_failed, to_json_str(ex.job))
        if isinstance(ex, ClientError):
            error = ex.response["Error"]
            cause = (
                f"{error.get('Message', '')} (Service: AmazonSageMaker; Status Code: "
                f"{ex.response['ResponseMetadata'].get('HTTPStatusCode', 400)}; "
                f"Error Code: {error.get('Code')}; "
                f"Request ID: {ex.response['ResponseMetadata'].get('RequestId')}; Proxy: null)"
            )
            name = CustomErrorName(error_name="SageMaker.AmazonSageMakerException")
            return self._failure(env, name, cause)
        return super()._from_error(env=env, ex=ex)

    def _failure(self, env: Environment, error: ErrorName, cause: str) -> FailureEvent:
        return FailureEvent(
            env=env,
            error_name=error,
            event_type=HistoryEventType.TaskFailed,
            event_details=EventDetails(  # type: ignore[typeddict-item]  # total=True in moto
                taskFailedEventDetails=TaskFailedEventDetails(
                    error=error.error_name,
                    cause=cause,
                    resource=self._get_sfn_resource(),
                    resourceType=self._get_sfn_resource_type(),
                )
            ),
        )


class SageMakerJobFailed(Exception):
    def __init__(self, job: dict[str, Any]) -> None:
        super().__init__(job.get("FailureReason", "job failed"))
        self.job = job


_original_service_for = state_task_service_factory.state_task_service_for


def _service_for(service_name: str) -> Any:
    if service_name == "sagemaker":
        return StateTaskServiceSageMaker()
    return _original_service_for(service_name)


# (a') Every integration's boto3 client -------------------------------------------------------
_original_boto_client_for = boto_client.boto_client_for
_CLIENT_CONFIG = Config(
    parameter_validation=False,  # as Step Functions: the service validates and answers
    retries={"max_attempts": 0, "total_max_attempts": 1},  # the definition's Retry decides
    connect_timeout=TimeoutSeconds.DEFAULT_TIMEOUT_SECONDS,
    read_timeout=TimeoutSeconds.DEFAULT_TIMEOUT_SECONDS,
)
_client_lock = threading.Lock()
_clients: dict[tuple[str, str, str | None, str | None], Any] = {}
#: The session name the state machine's role signs its integrations' calls under.
STATE_MACHINE_SESSION = "StepFunctions"


def boto_client_for(region: str, service: str, state_credentials: Any = None) -> Any:
    """The client a Task's integration calls the service with.

    moto's points at its own server (localhost:5000) with fixed keys. Ours sets no endpoint, so
    botocore's standard ``AWS_ENDPOINT_URL`` (the local service sets it to itself) or AWS's own
    endpoint decides. Against a local service of this process, it signs with the keys of the
    role the engine passes (the state machine's, or the Task's ``Credentials.RoleArn``), as
    Step Functions calls services as that role; elsewhere credentials resolve as for any boto3
    client. Clients are thread safe and kept (a SageMaker client takes about 14 ms to make);
    sessions are not, so they are made one at a time.
    """
    endpoint = os.environ.get("AWS_ENDPOINT_URL")
    keys = _role_keys(endpoint, getattr(state_credentials, "role_arn", None))
    key = (service, region, endpoint, keys["aws_access_key_id"] if keys else None)
    with _client_lock:
        if key not in _clients:
            _clients[key] = boto3.client(
                service, region_name=region, config=_CLIENT_CONFIG, **(keys or {})
            )
        return _clients[key]


def _role_keys(endpoint: str | None, role_arn: str | None) -> dict[str, str] | None:
    store = credentials.served_at(endpoint)
    if store is None or not role_arn:
        return None
    return store.for_role(role_arn, STATE_MACHINE_SESSION).client_kwargs()


# (c) JSONPath ---------------------------------------------------------------------------
_original_extract_json = json_path.extract_json
_NON_DEFINITE = ("*", ":", "?", "..", ",")


def extract_json(path: str, data: Any) -> Any:
    """AWS gives the value for a definite path such as ``$.a[0].b``, not a one-item list."""
    value = _original_extract_json(path, data)
    definite = "[" in path and not any(token in path for token in _NON_DEFINITE)
    if definite and isinstance(value, list) and len(value) == 1:
        return value[0]
    return value


# (c') States errors raised by a Fail state or carried out of a Parallel or Map branch ---------
class _RaisedErrorName(ErrorName):
    """A ``States.*`` name the engine has no type for (AWS adds new ones)."""


def _error_name(error_name: str | None) -> ErrorName:
    """The error a Fail state raises or a failed branch hands to its Parallel or Map state.

    The engine rebuilds both as custom names, which reject the ``States.`` prefix: a branch's
    ``States.TaskFailed`` became a ``ValueError`` and the run ended in ``States.Runtime``.
    A known name keeps its States type, so Retry and Catch match it as AWS does.
    """
    if error_name and error_name.startswith("States."):
        try:
            return StatesErrorName.from_name(error_name)
        except ValueError:
            return _RaisedErrorName(error_name=error_name)
    return CustomErrorName(error_name=error_name)


_original_failed_details = FailureEventException.get_execution_failed_event_details


def _execution_failed_details(self: FailureEventException) -> ExecutionFailedEventDetails | None:
    """A failed branch reaches its Parallel or Map state with the branch's final error and cause.

    The engine decorated a ``States.Runtime`` cause once more at each level it crossed
    ("An error occurred while executing the state 'P' ... An error occurred ... 'A' ...").
    """
    event_details: dict[str, Any] = dict(self.failure_event.event_details or {})
    details = event_details.get("executionFailedEventDetails")
    if details is None:
        return _original_failed_details(self)
    kept = {key: details[key] for key in ("error", "cause") if details.get(key) is not None}
    return ExecutionFailedEventDetails(**kept)  # type: ignore[typeddict-item]


# (c'') Terminal errors ------------------------------------------------------------------------
_original_error_equals = error_equals_decl.ErrorEqualsDecl._eval_body
_RUNTIME = StatesErrorNameType.StatesRuntime.to_name()
_DATA_LIMIT = StatesErrorNameType.StatesStatesDataLimitExceeded.to_name()
_TIMEOUT = StatesErrorNameType.StatesTimeout.to_name()
_HEARTBEAT_TIMEOUT = StatesErrorNameType.StatesHeartbeatTimeout.to_name()


def _error_equals(self: error_equals_decl.ErrorEqualsDecl, env: Environment) -> None:
    """AWS: ``States.Runtime`` is never retried or caught; ``States.ALL`` does not match it nor
    the terminal ``States.DataLimitExceeded`` (which a Catch naming it does match).

    The engine's ``States.ALL`` matched both, so a missing path was caught and notified. And
    ``States.Timeout`` also matches ``States.HeartbeatTimeout``, as AWS documents.
    """
    name = getattr(env.stack[-1], "error_name", None)
    named = any(error.error_name == name for error in self.error_names)
    if name == _RUNTIME or (name == _DATA_LIMIT and not named):
        env.stack.pop()
        env.stack.append(False)
        return
    if name == _HEARTBEAT_TIMEOUT and any(e.error_name == _TIMEOUT for e in self.error_names):
        env.stack.pop()
        env.stack.append(True)
        return
    _original_error_equals(self, env)


# (d) Retry delays -------------------------------------------------------------------------
class _ScaledTime:
    """Stands in for ``time`` inside the retrier: tests shrink the waits, not the logic."""

    def __getattr__(self, name: str) -> Any:
        return getattr(time, name)

    @staticmethod
    def sleep(seconds: float) -> None:
        time.sleep(seconds * _time_scale())


def _wait_interval(self: WaitFunction, env: Environment, wait_seconds: int) -> None:
    """A Wait state's wait, which a stop always ends within ``WAIT_SLICE_SECONDS``.

    The engine waits on an event that a stop sets and at once clears again: a stop that came
    after the state checked it was running but before it began waiting was lost, and the
    stopped execution stayed RUNNING for the whole wait (measured: 1 stop in 300).
    """
    deadline = time.monotonic() + wait_seconds
    while env.is_running():
        remaining = deadline - time.monotonic()
        if remaining <= 0:
            return
        env.program_state_event.wait(min(remaining, WAIT_SLICE_SECONDS))


# (e') Stops ------------------------------------------------------------------------------
_original_set_error = Environment.set_error


def _set_error(self: Environment, error: ExecutionFailedEventDetails) -> None:
    """A stopped execution stays ABORTED when its abandoned state then fails.

    A callback wait that a stop ends raises in its state; the engine turned that into FAILED.
    """
    if not isinstance(self.program_state(), ProgramStopped):
        _original_set_error(self, error)


# (f) Parsing ----------------------------------------------------------------------------
_parse_lock = threading.Lock()


def _fresh_scopes(self: Preprocessor) -> None:
    """Each parse gets its own query-language scope stack.

    The engine keeps that stack on the class: shared by all threads and never emptied after
    a rejected definition, so one bad JSONata definition made every later JSONPath one fail.
    """
    self._query_language_per_scope = []


def _parse(definition: str) -> Program:
    """Parse under one lock: ANTLR's Python runtime shares its DFA cache between parsers."""
    with _parse_lock:
        program, _ = AmazonStateLanguageParser.parse(definition)
    return program  # type: ignore[return-value]


def parse_definition(definition: str) -> None:
    """Raise ``ValueError`` naming the problem if the engine cannot run ``definition``."""
    try:
        _parse(definition)
    except Exception as err:  # the parser raises many types; all mean "invalid definition"
        raise ValueError(f"{type(err).__name__}: {err}") from err


def _rebind(original: Any, replacement: Any) -> None:
    """Replace a function in every engine module that imported it by name."""
    for name, module in list(sys.modules.items()):
        if name.startswith("moto.stepfunctions.parser"):
            for attribute, value in list(vars(module).items()):
                if value is original:
                    setattr(module, attribute, replacement)


def _install_patches() -> None:
    # The engine logs every caught failure with its whole parse tree; the history has it all.
    logging.getLogger("moto.stepfunctions.parser").setLevel(logging.CRITICAL)
    state_task_factory.state_task_service_for = _service_for  # type: ignore[assignment]
    _rebind(_original_extract_json, extract_json)
    _rebind(_original_boto_client_for, boto_client_for)
    retrier_decl.time = _ScaledTime()  # type: ignore[assignment]
    WaitFunction._wait_interval = _wait_interval  # type: ignore[method-assign,assignment]
    for module in (state_fail, branches_decl, iteration_worker, callback_module):
        module.CustomErrorName = _error_name  # type: ignore[attr-defined,misc,assignment]
    FailureEventException.get_execution_failed_event_details = _execution_failed_details  # type: ignore[method-assign]
    error_equals_decl.ErrorEqualsDecl._eval_body = _error_equals  # type: ignore[method-assign]
    Preprocessor.__init__ = _fresh_scopes  # type: ignore[method-assign,assignment]
    Environment.set_error = _set_error  # type: ignore[method-assign]
    ContextObject.update_task_token = _update_task_token  # type: ignore[method-assign]
    StateTaskServiceCallback._eval_execution = _callback_execution  # type: ignore[method-assign,assignment]
    StateTaskServiceCallback._eval_wait_for_task_token = _eval_wait_for_task_token  # type: ignore[method-assign,assignment]
    StateTaskServiceCallback._from_error = _callback_from_error  # type: ignore[method-assign]
    # AWS polls a .sync job about once a minute; the engine every 0.5 s; local jobs finish in
    # fractions of a second from the fork server, so each 0.5 s was up to 15% of an abalone run.
    callback_module._DELAY_SECONDS_SYNC_CONDITION_CHECK = SYNC_POLL_SECONDS  # type: ignore[misc]


# (g) Callbacks: .waitForTaskToken tasks answered by SendTaskSuccess/Failure/Heartbeat ----------
def new_task_token(execution_arn: str) -> str:
    """A task token that names its execution, as AWS's tokens do.

    So an answer can tell a task that has closed (its execution ended, or a restarted service
    forgot it) from one that never existed, without keeping every token ever issued.
    """
    body = json.dumps({"executionArn": execution_arn, "task": uuid.uuid4().hex})
    return base64.urlsafe_b64encode(body.encode()).decode()


def task_token_execution(token: str) -> str:
    """The execution ``token`` names; ``ValueError`` if no local service can have issued it."""
    try:
        arn = json.loads(base64.urlsafe_b64decode(token.encode()))["executionArn"]
    except (ValueError, TypeError, KeyError) as err:  # binascii.Error is a ValueError
        raise ValueError("not a task token of the local service") from err
    if not isinstance(arn, str):
        raise ValueError("not a task token of the local service")
    return arn


def _update_task_token(self: ContextObject) -> str:
    token = new_task_token(self.context_object_data["Execution"]["Id"])
    self.context_object_data["Task"] = TaskData(Token=token)
    return token


@dataclass
class _WaitingTask:
    frame: Environment  # the attempt's frame: it stops running on a state timeout or a stop
    endpoint: CallbackEndpoint
    last_beat: float = field(default_factory=time.monotonic)
    closed: bool = False  # answered or timed out: later answers are refused


_waiting_lock = threading.Lock()
_waiting: dict[str, _WaitingTask] = {}
_original_callback_execution = StateTaskServiceCallback._eval_execution
_original_wait_for_task_token = StateTaskServiceCallback._eval_wait_for_task_token
_original_callback_from_error = StateTaskServiceCallback._from_error


def _callback_execution(self: StateTaskServiceCallback, env: Environment) -> None:
    """Each attempt of a callback Task gets its own token, open to answers while it runs.

    The engine made one token per state, so a Retry's next attempt found the last one's
    answer and failed at once; and answers had no way in from outside the engine.
    """
    patterns = self._supported_integration_patterns
    if not self._is_integration_pattern() or ResourceCondition.WaitForTaskToken not in patterns:
        _original_callback_execution(self, env)
        return
    token = env.states.context_object.update_task_token()
    endpoint = env.callback_pool_manager.add(token)
    if self.resource.condition == ResourceCondition.WaitForTaskToken:
        with _waiting_lock:  # open before the service call: a fast worker may answer during it
            _waiting[token] = _WaitingTask(frame=env, endpoint=endpoint)
    try:
        _original_callback_execution(self, env)
    finally:
        with _waiting_lock:
            _waiting.pop(token, None)


def _eval_wait_for_task_token(
    self: StateTaskServiceCallback,
    env: Environment,
    timeout_seconds: int,
    callback_endpoint: CallbackEndpoint,
    heartbeat_endpoint: HeartbeatEndpoint | None,
) -> CallbackOutcome | HeartbeatTimedOut:
    """Wait for an answer: at most ``TimeoutSeconds``, and ``HeartbeatSeconds`` between
    heartbeats, both times the workspace time scale; a stop ends the wait at once.

    The engine's wait ran unscaled and ignored a stop, so a stopped execution stayed RUNNING
    until the timeout (by default 99999999 s).
    """
    task = _waiting.get(callback_endpoint.callback_id)
    if self.resource.condition != ResourceCondition.WaitForTaskToken or task is None:
        return _original_wait_for_task_token(  # type: ignore[no-any-return]
            self, env, timeout_seconds, callback_endpoint, heartbeat_endpoint
        )
    scale = _time_scale()
    deadline = time.monotonic() + timeout_seconds * scale
    beat = heartbeat_endpoint._heartbeat_seconds * scale if heartbeat_endpoint else None
    while env.is_running():
        now = time.monotonic()
        beat_deadline = task.last_beat + beat if beat is not None else deadline
        if now >= min(deadline, beat_deadline):
            with _waiting_lock:  # close first: an answer now is refused, not silently lost
                task.closed = True
            outcome = callback_endpoint.get_outcome()
            if outcome is not None:
                return outcome
            if now >= deadline:
                return CallbackOutcomeTimedOut(callback_id=callback_endpoint.callback_id)
            return HeartbeatTimedOut()
        # In slices: a stop does not wake the endpoint, and a heartbeat moves the deadline.
        wake = min(deadline, beat_deadline, now + WAIT_SLICE_SECONDS)
        outcome = callback_endpoint.wait(wake - now)
        if outcome is not None:
            return outcome
    return CallbackOutcomeTimedOut(callback_id=callback_endpoint.callback_id)


def _callback_from_error(
    self: StateTaskServiceCallback, env: Environment, ex: Exception
) -> FailureEvent:
    """A missed heartbeat is ``States.HeartbeatTimeout`` (the engine said ``States.Timeout``)."""
    if not isinstance(ex, HeartbeatTimeoutError):
        return _original_callback_from_error(self, env, ex)
    name = StatesErrorName(typ=StatesErrorNameType.StatesHeartbeatTimeout)
    return FailureEvent(
        env=env,
        error_name=name,
        event_type=HistoryEventType.TaskTimedOut,
        event_details=EventDetails(  # type: ignore[typeddict-item]  # total=True in moto
            taskTimedOutEventDetails=TaskTimedOutEventDetails(
                resourceType=self._get_sfn_resource_type(),
                resource=self._get_sfn_resource(),
                error=_HEARTBEAT_TIMEOUT,
            )
        ),
    )


def answer_task(
    token: str, answer: Literal["success", "failure", "heartbeat"], **details: str | None
) -> bool:
    """Hand SendTaskSuccess (``output``), SendTaskFailure (``error``, ``cause``) or
    SendTaskHeartbeat to the task waiting on ``token``.

    False when no task of this process is open to it: answered already, timed out, its
    execution ended, or issued by a service process that has stopped since.
    """
    with _waiting_lock:
        task = _waiting.get(token)
        if task is None or task.closed or not task.frame.is_running():
            return False
        if answer == "heartbeat":
            task.last_beat = time.monotonic()
            return True
        task.closed = True
        outcome: CallbackOutcome
        if answer == "success":
            outcome = CallbackOutcomeSuccess(callback_id=token, output=details["output"] or "null")
        else:
            outcome = CallbackOutcomeFailure(
                callback_id=token, error=details.get("error"), cause=details.get("cause")
            )
        task.endpoint.notify(outcome)
    return True


# (e) Executions ---------------------------------------------------------------------------
class _RecordingEventManager(EventManager):
    """Hands each history event to ``record`` the moment the engine adds it.

    After a stop only ``ExecutionAborted`` is added, as AWS writes it: the abandoned state's
    own ending (a callback wait ends at the stop) is no event of the execution.
    """

    def __init__(
        self, record: Callable[[dict[str, Any]], None], stopped: Callable[[], bool]
    ) -> None:
        super().__init__(cloud_watch_logging_session=None)
        self._record = record
        self._stopped = stopped

    def add_event(self, context: Any, event_type: Any, *args: Any, **kwargs: Any) -> int:
        if event_type != HistoryEventType.ExecutionAborted and self._stopped():
            return int(context.last_published_event_id or 0)
        return super().add_event(context, event_type, *args, **kwargs)

    def _publish_history_event(self, *args: Any, **kwargs: Any) -> None:
        super()._publish_history_event(*args, **kwargs)
        self._record(json.loads(to_json_str(self._history_event_list[-1])))


class _Worker(SyncExecutionWorker):
    def __init__(self, details: EvaluationDetails, record: Callable[[dict], None]) -> None:
        self._record = record
        # Set once a stop can no longer be lost: the program's loop runs, or it never will.
        self.stoppable = threading.Event()
        super().__init__(
            evaluation_details=details,
            exec_comm=_NoComm(),
            cloud_watch_logging_session=None,
            activity_store={},
        )

    def _get_evaluation_entrypoint(self) -> EvalComponent:
        program = _parse(self._evaluation_details.state_machine_details.definition)
        run_body = program._eval_body

        def signal_then_run_body(env: Environment) -> None:
            self.stoppable.set()
            run_body(env)

        program._eval_body = signal_then_run_body  # type: ignore[method-assign]
        return program

    def _get_evaluation_environment(self) -> Environment:
        env = super()._get_evaluation_environment()
        env.event_manager = _RecordingEventManager(
            self._record, lambda: isinstance(env.program_state(), ProgramStopped)
        )
        execution = env.states.context_object.context_object_data["Execution"]
        execution["RedriveCount"] = 0  # type: ignore[typeddict-unknown-key]  # AWS: 0 until redriven
        return env


class _NoComm(ExecutionWorkerCommunication):
    def terminated(self) -> None:
        """The caller reads the outcome from the environment once ``run`` returns."""


def run_execution(
    *,
    definition: str,
    state_machine_arn: str,
    state_machine_name: str,
    execution_arn: str,
    execution_name: str,
    execution_input: Any,
    role_arn: str,
    account: str,
    region: str,
    start_time: dt.datetime,
    record: Callable[[dict[str, Any]], None],
    time_scale: Callable[[], float] | None = None,
    on_start: Callable[[Callable[[str, str], None]], None] | None = None,
) -> dict[str, Any]:
    """Run one execution to its end in this thread; return status, output, error and cause."""
    global _time_scale
    if time_scale is not None:
        _time_scale = time_scale
    details = EvaluationDetails(
        aws_execution_details=AWSExecutionDetails(
            account=account, region=region, role_arn=role_arn
        ),
        execution_details=ExecutionDetails(
            arn=execution_arn,
            name=execution_name,
            role_arn=role_arn,
            inpt=execution_input,
            start_time=_iso_millis(start_time),
        ),
        state_machine_details=StateMachineDetails(
            arn=state_machine_arn,
            name=state_machine_name,
            typ=StateMachineType.STANDARD,
            definition=definition,
        ),
    )
    worker = _Worker(details, record)
    if on_start is not None:
        on_start(lambda error, cause: _stop(worker, error, cause))
    try:
        worker.start()
    finally:
        worker.stoppable.set()  # a parse failure ends the run before the program loop
    return outcome(worker.env)


def _iso_millis(moment: dt.datetime) -> str:
    """``$$.Execution.StartTime`` as AWS writes it: UTC, milliseconds, ``Z``."""
    utc = moment.astimezone(dt.timezone.utc) if moment.tzinfo else moment
    return utc.strftime("%Y-%m-%dT%H:%M:%S.") + f"{utc.microsecond // 1000:03d}Z"


def _stop(worker: _Worker, error: str, cause: str, wait: float = 10.0) -> None:
    """What StopExecution does: the running state is abandoned and the execution ABORTED.

    The stop waits until the program's own loop runs. The engine marks the program running
    (``Program.eval`` sets the first state) before its worker thread starts that loop, and the
    thread skips the loop, and with it the closing ``ExecutionAborted`` event, if the program is
    no longer running by then: a stop in that window ended the execution ABORTED with
    ``ExecutionStarted`` as its last event. Once the loop runs, a stop always ends in that event.
    """
    if worker.stoppable.wait(wait) and worker.env is not None:
        worker.stop(dt.datetime.now(dt.timezone.utc), error=error, cause=cause)


def outcome(env: Environment | None) -> dict[str, Any]:
    state = env.program_state() if env is not None else None
    if isinstance(state, ProgramEnded):
        return {"status": "SUCCEEDED", "output": to_json_str(env.states.get_input())}  # type: ignore[union-attr]
    if isinstance(state, ProgramError):
        error = state.error or {}
        return {"status": "FAILED", "error": error.get("error"), "cause": error.get("cause")}
    if isinstance(state, ProgramStopped):
        return {"status": "ABORTED"}
    if isinstance(state, ProgramTimedOut):
        return {"status": "TIMED_OUT"}
    return {"status": "FAILED", "error": "States.Runtime", "cause": f"engine ended in {state!r}"}


_install_patches()
