"""The one module that touches moto's private ASL interpreter (the LocalStack-derived engine).

It (a) dispatches SageMaker Task resources, including ``.sync``, to the local services through
boto3, (b) turns integration failures into the States errors AWS gives so Retry and Catch work,
(c) corrects the engine's divergences from AWS (``$.a[0].b`` gives the value, not a one-item
list; a Fail state may re-raise a caught ``States.*`` error), (d) scales Retry delays by the
workspace time scale, and (e) writes each history event to the metadata store as it happens.
moto is pinned exactly; tests/functional/test_engine_contract.py pins what this module relies on.
"""

from __future__ import annotations

import datetime as dt
import json
import logging
import sys
import time
from collections.abc import Callable
from typing import Any

from botocore.exceptions import ClientError
from moto.stepfunctions.parser.api import (
    HistoryEventType,
    StateMachineType,
    TaskFailedEventDetails,
)
from moto.stepfunctions.parser.asl.component.common.error_name.custom_error_name import (
    CustomErrorName,
)
from moto.stepfunctions.parser.asl.component.common.error_name.error_name import ErrorName
from moto.stepfunctions.parser.asl.component.common.error_name.failure_event import (
    FailureEvent,
)
from moto.stepfunctions.parser.asl.component.common.error_name.states_error_name import (
    StatesErrorName,
)
from moto.stepfunctions.parser.asl.component.common.error_name.states_error_name_type import (
    StatesErrorNameType,
)
from moto.stepfunctions.parser.asl.component.common.retry import retrier_decl
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
    ProgramRunning,
    ProgramStopped,
    ProgramTimedOut,
)
from moto.stepfunctions.parser.asl.utils import json_path
from moto.stepfunctions.parser.asl.utils.boto_client import boto_client_for
from moto.stepfunctions.parser.asl.utils.encoding import to_json_str
from moto.stepfunctions.parser.backend.execution_worker import SyncExecutionWorker
from moto.stepfunctions.parser.backend.execution_worker_comm import ExecutionWorkerCommunication

SYNC_POLL_SECONDS = 0.05
_SAGEMAKER_JOBS = {
    "createTrainingJob": ("describe_training_job", "TrainingJobName", "TrainingJobStatus"),
    "createProcessingJob": ("describe_processing_job", "ProcessingJobName", "ProcessingJobStatus"),
    "createTransformJob": ("describe_transform_job", "TransformJobName", "TransformJobStatus"),
}
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
            service="sagemaker",
            region=resource_runtime_part.region,
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

        def resolve() -> Any:
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


# (c') Fail states that re-raise a caught error ------------------------------------------------
class _RaisedErrorName(ErrorName):
    """Any name a Fail state's ErrorPath resolves to, ``States.TaskFailed`` included.

    AWS lets a Fail state re-raise a caught ``States.*`` error; the engine builds every Fail
    error as a custom name and rejects that prefix, ending the run with ``States.Runtime``.
    """


def _fail_error_name(name: str | None) -> ErrorName:
    if name and name.startswith("States."):
        return _RaisedErrorName(error_name=name)
    return CustomErrorName(error_name=name)


# (d) Retry delays -------------------------------------------------------------------------
class _ScaledTime:
    """Stands in for ``time`` inside the retrier: tests shrink the waits, not the logic."""

    def __getattr__(self, name: str) -> Any:
        return getattr(time, name)

    @staticmethod
    def sleep(seconds: float) -> None:
        time.sleep(seconds * _time_scale())


def _install_patches() -> None:
    # The engine logs every caught failure with its whole parse tree; the history has it all.
    logging.getLogger("moto.stepfunctions.parser").setLevel(logging.CRITICAL)
    state_task_factory.state_task_service_for = _service_for  # type: ignore[assignment]
    for name, module in list(sys.modules.items()):
        if name.startswith("moto.stepfunctions.parser") and (
            getattr(module, "extract_json", None) is _original_extract_json
        ):
            module.extract_json = extract_json  # type: ignore[attr-defined]
    retrier_decl.time = _ScaledTime()  # type: ignore[assignment]
    state_fail.CustomErrorName = _fail_error_name  # type: ignore[misc,assignment]
    # AWS polls a .sync job about once a minute; the engine every 0.5 s; local jobs finish in
    # seconds, so each 0.5 s was up to 15% of a whole abalone run.
    callback_module._DELAY_SECONDS_SYNC_CONDITION_CHECK = SYNC_POLL_SECONDS  # type: ignore[misc]


# (e) Executions ---------------------------------------------------------------------------
class _RecordingEventManager(EventManager):
    """Hands each history event to ``record`` the moment the engine adds it."""

    def __init__(self, record: Callable[[dict[str, Any]], None]) -> None:
        super().__init__(cloud_watch_logging_session=None)
        self._record = record

    def _publish_history_event(self, *args: Any, **kwargs: Any) -> None:
        super()._publish_history_event(*args, **kwargs)
        self._record(json.loads(to_json_str(self._history_event_list[-1])))


class _Worker(SyncExecutionWorker):
    def __init__(self, details: EvaluationDetails, record: Callable[[dict], None]) -> None:
        self._record = record
        super().__init__(
            evaluation_details=details,
            exec_comm=_NoComm(),
            cloud_watch_logging_session=None,
            activity_store={},
        )

    def _get_evaluation_environment(self) -> Environment:
        env = super()._get_evaluation_environment()
        env.event_manager = _RecordingEventManager(self._record)
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
            start_time=start_time.isoformat(timespec="milliseconds").replace("+00:00", "Z"),
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
    worker.start()
    return outcome(worker.env)


def _stop(worker: _Worker, error: str, cause: str, wait: float = 10.0) -> None:
    """What StopExecution does: the running state is abandoned and the execution ABORTED.

    The engine only accepts a stop once its program runs (after parsing), so a stop that comes
    earlier waits for that moment, as a stop of a just-started AWS execution would.
    """
    deadline = time.monotonic() + wait
    while time.monotonic() < deadline:
        state = worker.env.program_state() if worker.env is not None else None
        if isinstance(state, ProgramRunning):
            worker.stop(dt.datetime.now(dt.timezone.utc), error=error, cause=cause)
            return
        if state is not None:  # already ended
            return
        time.sleep(0.01)


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


def parse_definition(definition: str) -> None:
    """Raise ``ValueError`` naming the problem if the engine cannot run ``definition``."""
    from moto.stepfunctions.parser.asl.parse.asl_parser import AmazonStateLanguageParser

    try:
        AmazonStateLanguageParser.parse(definition)
    except Exception as err:  # the parser raises many types; all mean "invalid definition"
        raise ValueError(f"{type(err).__name__}: {err}") from err


_install_patches()
