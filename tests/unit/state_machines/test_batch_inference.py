"""The batch inference definition: committed file, placeholders, the transform's contract."""

from __future__ import annotations

import json
import re
from pathlib import Path
from typing import Any

import pytest

from sfn_mlops.local import engine
from sfn_mlops.template import LocalStack
from state_machines.batch_inference import ASL_PATH, PLACEHOLDERS, build_definition
from state_machines.training_pipeline import render

REPO = Path(__file__).resolve().parents[3]
PLACEHOLDER = re.compile(r"\$\{(\w+)\}")


@pytest.fixture(scope="module")
def definition() -> dict[str, Any]:
    return build_definition()


def test_committed_asl_is_up_to_date(definition: dict[str, Any]) -> None:
    assert ASL_PATH.read_text(encoding="utf-8") == render(definition), (
        "batch_inference.asl.json is stale: run `make asl`"
    )


def test_the_template_substitutes_every_placeholder_and_the_engine_parses_it() -> None:
    used = set(PLACEHOLDER.findall(ASL_PATH.read_text()))
    assert used == PLACEHOLDERS
    (machine,) = [
        m
        for m in LocalStack(REPO / "template.yaml").state_machines()
        if m.logical_id == "BatchInference"
    ]
    assert set(machine.substitutions) == PLACEHOLDERS
    engine.parse_definition(
        PLACEHOLDER.sub(lambda m: machine.substitutions[m.group(1)], ASL_PATH.read_text())
    )


def test_find_the_model_then_transform_then_publish(definition: dict[str, Any]) -> None:
    order, name = [], definition["StartAt"]
    while name is not None:
        order.append(name)
        name = definition["States"][name].get("Next")
    assert order == [
        "FindModel", "NameBatch", "CreateBatchModel", "Transform", "PublishOutput", "Scored",
    ]  # fmt: skip
    for state in ("FindModel", "CreateBatchModel", "Transform", "PublishOutput"):
        catch = definition["States"][state]["Catch"][-1]
        assert catch == {
            "ErrorEquals": ["States.ALL"],
            "ResultPath": "$.error",
            "Next": "NotifyFailure",
        }
    assert definition["States"]["NotifyFailure"]["Next"] == "BatchFailed"
    # A retried CreateModel told its model exists goes on with it; any other error fails.
    (made,) = definition["States"]["CreateBatchModel"]["Catch"][:-1]
    assert made["Next"] == "BatchModelMadeAlready"
    check = definition["States"]["BatchModelMadeAlready"]
    assert [c["Next"] for c in check["Choices"]] == ["Transform"]
    assert check["Default"] == "NotifyFailure"


def test_the_transform_job_carries_the_inputs_transform_semantics(
    definition: dict[str, Any],
) -> None:
    transform = definition["States"]["Transform"]
    assert transform["Resource"] == "arn:aws:states:::sagemaker:createTransformJob.sync"
    parameters = transform["Parameters"]
    assert parameters["TransformInput"]["SplitType.$"] == "$.transform.SplitType"
    assert parameters["TransformOutput"]["AssembleWith.$"] == "$.transform.AssembleWith"
    assert parameters["DataProcessing.$"] == "$.data_processing"
    assert parameters["DataCaptureConfig"] == {"DestinationS3Uri.$": "$.batch.capture"}
    # The job writes under the batch's own prefix; PublishOutput copies to the destination.
    assert parameters["TransformOutput"]["S3OutputPath.$"] == "$.batch.output"
    publish = definition["States"]["PublishOutput"]["Parameters"]["Payload"]
    assert publish == {
        "source.$": "$.batch.output",
        "destination.$": "$.destination_uri",
        "execution.$": "$$.Execution.Name",
    }
    json.dumps(definition)
