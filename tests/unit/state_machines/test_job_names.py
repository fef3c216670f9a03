"""Every name the state machines derive from the execution's name fits the API that takes it,
for the longest name each entry point can start a run with (issue 21, item 4).

The derived names are read from the definitions (`States.Format('{}-suffix',
$$.Execution.Name)` in a Pass state); their consumers are the Task parameters that read them
(as they are, or with a retry's `-N`: `attempt_name`), each checked against its member's
constraints in botocore's model, as the local service checks a request.
"""

from __future__ import annotations

import importlib
import re
import sys
import uuid
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
from botocore import xform_name

from sfn_mlops.batch_cli import MAX_BATCH_NAME
from sfn_mlops.cli import MAX_RUN_NAME, MAX_TUNING_JOB_NAME, TUNING_SUFFIX
from sfn_mlops.local.server import service_model
from sfn_mlops.local.validation import _check_constraints
from state_machines import batch_inference, training_pipeline

ROOT = Path(__file__).resolve().parents[3]
_DERIVED = re.compile(r"^States\.Format\('\{\}(?P<suffix>[-a-z]+)', \$\$\.Execution\.Name\)$")
_INTEGRATION = re.compile(r"^arn:aws:states:::sagemaker:(?P<action>[A-Za-z]+)(\.sync)?$")


def _states(definition: dict[str, Any]) -> Iterator[dict[str, Any]]:
    for state in definition["States"].values():
        yield state
        for branch in state.get("Branches", []):
            yield from _states(branch)


def _derived(definition: dict[str, Any]) -> dict[str, str]:
    """`$.run.job_names.train` -> "-train", for each name a Pass state derives."""
    found = {}
    for state in _states(definition):
        if state["Type"] != "Pass":
            continue
        base = state.get("ResultPath", "$")
        for path, value in _leaves(state.get("Parameters", {}), base):
            match = _DERIVED.match(value) if isinstance(value, str) else None
            if match:
                found[path] = match["suffix"]
    return found


def _leaves(node: dict[str, Any], path: str) -> Iterator[tuple[str, Any]]:
    for key, value in node.items():
        name = f"{path}.{key.removesuffix('.$')}"
        if isinstance(value, dict):
            yield from _leaves(value, name)
        else:
            yield name, value


def _consumers(
    definition: dict[str, Any], derived: dict[str, str]
) -> list[tuple[str, str, str, str]]:
    """(derived path, SageMaker operation, member, longest retry suffix) for each Task
    parameter that takes one."""
    attempts = {training_pipeline.attempt_name(path): path for path in derived}
    found = []
    for state in _states(definition):
        match = _INTEGRATION.match(str(state.get("Resource", "")))
        if state["Type"] != "Task" or match is None:
            continue
        operation = match["action"][:1].upper() + match["action"][1:]
        for member, value in state.get("Parameters", {}).items():
            if not member.endswith(".$"):
                continue
            if value in derived:
                found.append((value, operation, member.removesuffix(".$"), ""))
            elif value in attempts:
                suffix = training_pipeline.RETRY_SUFFIX
                found.append((attempts[value], operation, member.removesuffix(".$"), suffix))
    return found


def _retrain_names() -> list[str]:
    sys.path.insert(0, str(ROOT / "lambdas" / "retrain"))
    try:
        retrain = importlib.import_module("retrain")
    finally:
        sys.path.remove(str(ROOT / "lambdas" / "retrain"))
    alarm = {
        "detail-type": "CloudWatch Alarm State Change",
        "detail": {
            "alarmName": "e" * 63 + "-model-quality",
            "state": {"value": "ALARM", "timestamp": "2026-12-03T10:01:07.000+0000"},
        },
    }
    schedule = {"detail-type": "Scheduled Event", "time": "2026-12-07T03:00:00Z"}
    return [retrain.trigger(alarm)["name"], retrain.trigger(schedule)["name"]]


#: Per state machine, the longest execution name each entry point starts it with, and whether
#: the run may tune. A name started by hand is the starter's to keep short (README).
ENTRY_POINTS = {
    "training_pipeline": {
        "sfn-mlops run": ("r" * MAX_RUN_NAME, False),
        "sfn-mlops run, with tuning": ("r" * (MAX_TUNING_JOB_NAME - len(TUNING_SUFFIX)), True),
        "the Retrain Lambda (alarm)": (_retrain_names()[0], True),
        "the Retrain Lambda (schedule)": (_retrain_names()[1], True),
    },
    "batch_inference": {
        "sfn-mlops batch": ("b" * MAX_BATCH_NAME, False),
        # the batch schedule's EventBridge rule: Step Functions names the execution a UUID
        "the batch schedule": (str(uuid.uuid4()), False),
    },
}
MACHINES = {
    "training_pipeline": training_pipeline.build_definition(),
    "batch_inference": batch_inference.build_definition(),
}
CASES = [(machine, entry) for machine, entries in ENTRY_POINTS.items() for entry in entries]


@pytest.mark.parametrize(("machine", "entry"), CASES)
def test_derived_names_fit_what_sagemaker_takes(machine: str, entry: str) -> None:
    definition = MACHINES[machine]
    name, tuning = ENTRY_POINTS[machine][entry]
    derived = _derived(definition)
    consumers = _consumers(definition, derived)
    assert consumers, "no derived name reaches a SageMaker call: the walk is broken"
    problems: list[str] = []
    for path, operation, member, retried in consumers:
        if operation == "CreateHyperParameterTuningJob" and not tuning:
            continue
        shape = service_model("sagemaker").operation_model(operation).input_shape.members[member]
        _check_constraints(f"{name}{derived[path]}{retried}", shape, xform_name(member), problems)
    assert problems == []


def test_the_walk_sees_the_tuning_job_and_the_transform_job() -> None:
    training = _consumers(MACHINES["training_pipeline"], _derived(MACHINES["training_pipeline"]))
    batch = _consumers(MACHINES["batch_inference"], _derived(MACHINES["batch_inference"]))
    retried = training_pipeline.RETRY_SUFFIX
    assert (
        "$.run.job_names.tune",
        "CreateHyperParameterTuningJob",
        "HyperParameterTuningJobName",
        retried,
    ) in training
    assert ("$.batch.job", "CreateTransformJob", "TransformJobName", retried) in batch
    jobs = [c for c in training if c[1].endswith("Job")]
    assert len(jobs) >= 6 and all(c[3] == retried for c in jobs), jobs


def test_each_job_create_retried_on_a_sagemaker_error_names_each_attempt() -> None:
    """A create SageMaker made but whose answer was lost is retried under a new name: every
    .sync job Task with a Retry takes its name from `attempt_name`, for every retry it allows."""
    for definition in MACHINES.values():
        for state in _states(definition):
            if not str(state.get("Resource", "")).endswith("Job.sync"):
                continue
            (name,) = [v for k, v in state["Parameters"].items() if k.endswith("JobName.$")]
            if "$$.State.RetryCount" not in name:
                assert name == "$.steps.tune.best.TrainingJobName"  # a describe, not a create
                continue
            attempts = max(r["MaxAttempts"] for r in state["Retry"])
            assert name.count("States.Format(") == attempts, (state, name)
