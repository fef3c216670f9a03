"""The job document in the metadata store, and the words SageMaker uses for each kind of job.

Training jobs report SecondaryStatus and SecondaryStatusTransitions; DescribeProcessingJob has
neither, so processing jobs keep no transitions and say "processing" where training says
"training".
"""

from __future__ import annotations

import os
import time
from dataclasses import dataclass
from typing import Any

KIND_PROCESSING = "sagemaker:processing-job"
KIND_TRAINING = "sagemaker:training-job"
KIND_TRANSFORM = "sagemaker:transform-job"

FAILURE_REASON_LIMIT = 1024  # SageMaker truncates FailureReason and ExitMessage at 1 KB.
DEFAULT_MAX_RUNTIME = 86400  # SageMaker's default StoppingCondition: one day
TERMINAL = frozenset({"Completed", "Failed", "Stopped"})


class JobFailed(Exception):
    """The job ends Failed with this reason (already prefixed with whose fault it is)."""

    def __init__(self, reason: str) -> None:
        super().__init__(reason)
        self.reason = reason[:FAILURE_REASON_LIMIT]


@dataclass(frozen=True)
class Wording:
    """How SageMaker words the progress of one kind of job."""

    label: str  # "training" or "processing"
    transitions: bool  # whether Describe reports SecondaryStatusTransitions
    running: str
    uploading: str

    def starting(self) -> str:
        return f"Starting the {self.label} job"

    def stopping(self) -> str:
        return f"Stopping the {self.label} job"

    def ended(self, secondary: str, failure: str | None = None) -> str:
        title = self.label.capitalize()
        return {
            "Completed": f"{title} job completed",
            "Stopped": f"{title} job stopped",
            "MaxRuntimeExceeded": f"{title} job exceeded MaxRuntimeInSeconds provided",
        }.get(secondary, f"{title} job failed. Reason: {failure}")


WORDING = {
    KIND_TRAINING: Wording(
        "training",
        transitions=True,
        running="Training image download completed. Training in progress.",
        uploading="Uploading generated training model",
    ),
    KIND_PROCESSING: Wording(
        "processing",
        transitions=False,
        running="Processing container started. Processing in progress.",
        uploading="Uploading processing outputs",
    ),
    KIND_TRANSFORM: Wording(
        "transform",
        transitions=False,  # DescribeTransformJob has no SecondaryStatus
        running="Transform container started. Transforming the input data.",
        uploading="Uploading the transformed data",
    ),
}


def now() -> float:
    return time.time()


def transition(status: str, message: str, start: float, end: float | None = None) -> dict:
    item: dict[str, Any] = {"Status": status, "StartTime": start, "StatusMessage": message}
    if end is not None:
        item["EndTime"] = end
    return item


def close_transitions(transitions: list[dict[str, Any]], at: float) -> list[dict[str, Any]]:
    """A copy whose last transition has ended at ``at``."""
    closed = [dict(item) for item in transitions]
    if closed and "EndTime" not in closed[-1]:
        closed[-1]["EndTime"] = at
    return closed


def new_job_doc(kind: str, name: str, arn: str, request: dict[str, Any]) -> dict[str, Any]:
    """The stored state of a job just created by this process (its owner)."""
    created = now()
    wording = WORDING[kind]
    transitions = [transition("Starting", wording.starting(), created)]
    return {
        "Name": name,
        "Arn": arn,
        "Request": request,
        "Status": "InProgress",
        "SecondaryStatus": "Starting" if wording.transitions else None,
        "Transitions": transitions if wording.transitions else [],
        "CreationTime": created,
        "LastModifiedTime": created,
        "StartTime": None,
        "EndTime": None,
        "FailureReason": None,
        "ExitMessage": None,
        "ModelArtifacts": None,
        "OwnerPid": os.getpid(),
        "ChildPid": None,
        "ChildStartTime": None,
        "StopRequested": None,
    }
