"""The deploy-time Parameters schema check, against botocore's service models."""

from __future__ import annotations

import json
import re
from pathlib import Path
from typing import Any

from sfn_mlops.local.asl_schema import check_definition_schema

ASL = Path(__file__).resolve().parents[3] / "state_machines" / "training_pipeline.asl.json"


def processing_task(**parameters: Any) -> dict[str, Any]:
    return {
        "Type": "Task",
        "Resource": "arn:aws:states:::sagemaker:createProcessingJob.sync",
        "Parameters": {
            "ProcessingJobName.$": "$.name",
            "RoleArn": "arn:aws:iam::123456789012:role/r",
            "AppSpecification": {"ImageUri": "image"},
            "ProcessingResources": {
                "ClusterConfig": {
                    "InstanceCount": 1,
                    "InstanceType": "ml.m5.xlarge",
                    "VolumeSizeInGB": 30,
                }
            },
            **parameters,
        },
        "End": True,
    }


def machine(state: dict[str, Any]) -> dict[str, Any]:
    return {"StartAt": "Preprocess", "States": {"Preprocess": state}}


def test_the_committed_pipeline_passes() -> None:
    text = re.sub(r"\$\{\w+\}", "placeholder", ASL.read_text())
    assert check_definition_schema(json.loads(text)) == []


def test_an_unknown_top_level_field_is_named_with_its_state_path() -> None:
    state = processing_task()
    state["Parameters"]["AppSpecificaton"] = state["Parameters"].pop("AppSpecification")
    assert check_definition_schema(machine(state)) == [
        'SCHEMA_VALIDATION_FAILED: The field "AppSpecificaton" is not supported by Step '
        "Functions at /States/Preprocess/Parameters"
    ]


def test_a_nested_typo_is_found_in_static_objects() -> None:
    state = processing_task()
    cluster = state["Parameters"]["ProcessingResources"]["ClusterConfig"]
    cluster["InstanceCont"] = cluster.pop("InstanceCount")
    assert check_definition_schema(machine(state)) == [
        'SCHEMA_VALIDATION_FAILED: The field "InstanceCont" is not supported by Step '
        "Functions at /States/Preprocess/Parameters"
    ]


def test_lists_of_objects_are_checked_and_members_are_case_sensitive() -> None:
    state = processing_task(Tags=[{"Key": "team", "Value": "ml"}, {"key": "x", "Value": "y"}])
    assert check_definition_schema(machine(state)) == [
        'SCHEMA_VALIDATION_FAILED: The field "key" is not supported by Step Functions at '
        "/States/Preprocess/Parameters"
    ]


def test_a_dynamic_field_names_its_member_and_is_not_looked_into() -> None:
    state = processing_task(**{"Environment.$": "$.env", "NetworkConfg.$": "$.net"})
    assert check_definition_schema(machine(state)) == [
        'SCHEMA_VALIDATION_FAILED: The field "NetworkConfg" is not supported by Step '
        "Functions at /States/Preprocess/Parameters"
    ]


def test_states_in_parallel_branches_and_map_processors_are_checked() -> None:
    bad = processing_task(Bogus=1)
    definition = {
        "StartAt": "P",
        "States": {
            "P": {
                "Type": "Parallel",
                "Branches": [{"StartAt": "A", "States": {"A": bad}}],
                "Next": "M",
            },
            "M": {
                "Type": "Map",
                "ItemProcessor": {"StartAt": "B", "States": {"B": bad}},
                "Next": "I",
            },
            "I": {"Type": "Map", "Iterator": {"StartAt": "C", "States": {"C": bad}}, "End": True},
        },
    }
    assert [m.rsplit(" at ", 1)[1] for m in check_definition_schema(definition)] == [
        "/States/P/Branches/0/States/A/Parameters",
        "/States/M/ItemProcessor/States/B/Parameters",
        "/States/I/Iterator/States/C/Parameters",
    ]


def test_lambda_and_sns_integrations_are_checked_but_payloads_are_free() -> None:
    definition = {
        "StartAt": "L",
        "States": {
            "L": {
                "Type": "Task",
                "Resource": "arn:aws:states:::lambda:invoke.waitForTaskToken",
                "Parameters": {"FunctionName": "f", "Payload": {"anything": {"goes": 1}}},
                "Next": "S",
            },
            "S": {
                "Type": "Task",
                "Resource": "arn:aws:states:::sns:publish",
                "Parameters": {"TopicArn": "t", "Mesage": "hi"},
                "End": True,
            },
        },
    }
    assert check_definition_schema(definition) == [
        'SCHEMA_VALIDATION_FAILED: The field "Mesage" is not supported by Step Functions at '
        "/States/S/Parameters"
    ]


def test_other_resources_are_left_alone() -> None:
    definition = machine(
        {
            "Type": "Task",
            "Resource": "arn:aws:lambda:us-east-1:123456789012:function:f",
            "Parameters": {"Whatever": 1},
            "End": True,
        }
    )
    assert check_definition_schema(definition) == []
