"""The defects a review against AWS's documentation found (issue 21, D1-D7), each re-introduced
on its own in a scratch copy of the project: the offline gate (or the test named) refuses it
as AWS would. D3 (metadata values SageMaker's pattern refuses) is caught by the local service's
validation: tests/functional/test_release_lambdas.py; D4 (the rollback Choice reading a path
DeployModel dropped) by tests/unit/state_machines/test_training_pipeline.py and the rollback
scenario in tests/e2e/test_pipeline_scenarios.py.
"""

from __future__ import annotations

import importlib
import sys
from pathlib import Path
from typing import Any

import pytest
from test_aws_gate_fixtures import ROOT, lay_out

from sfn_mlops.aws import checks


def _gate_with(tmp_path: Path, file: str, old: str, new: str) -> list[str]:
    lay_out(tmp_path)
    path = tmp_path / file
    text = path.read_text(encoding="utf-8")
    assert old in text, f"{old!r} is no longer in {file}: refresh this test"
    path.write_text(text.replace(old, new), encoding="utf-8")
    return [str(problem) for problem in checks.run_all(tmp_path / "template.yaml")]


def test_d1_clarify_shadow_endpoint_under_the_wrong_name(tmp_path: Path) -> None:
    problems = _gate_with(tmp_path, "template.yaml", ":endpoint/sm-clarify-*", ":endpoint/x-*")
    assert problems and all("SageMakerExecutionRole" in p for p in problems)
    assert any("sagemaker:InvokeEndpoint" in p and "endpoint/sm-clarify-*" in p for p in problems)


def test_d2_guarded_update_without_describe_alarms(tmp_path: Path) -> None:
    problems = _gate_with(
        tmp_path,
        "template.yaml",
        "Action: cloudwatch:DescribeAlarms",
        "Action: cloudwatch:ListMetrics",
    )
    assert len(problems) == 1
    assert "deploy_model/deployment.py" in problems[0] and "DeployModelFunction" in problems[0]
    assert "calls sagemaker.update_endpoint, which needs cloudwatch:DescribeAlarms;" in problems[0]


def test_d6_a_region_one_image_mapping_lacks(tmp_path: Path) -> None:
    problems = _gate_with(tmp_path, "template.yaml", '    il-central-1: {Account: "none"}\n', "")
    assert problems
    assert all("Mappings.ClarifyImage has no row for il-central-1" in p for p in problems)


def test_d7_not_found_expected_without_list_bucket(tmp_path: Path) -> None:
    """BiasGate tells a missing analysis.json by NoSuchKey: S3 answers 403 without ListBucket."""
    problems = _gate_with(
        tmp_path,
        "template.yaml",
        "      CodeUri: lambdas/bias_gate/\n",
        "      CodeUri: lambdas/bias_gate/\n      Role: !GetAtt PrepareClarifyFunctionRole.Arn\n",
    )
    assert problems
    assert all("BiasGateFunction" in p and "s3:ListBucket" in p for p in problems)
    assert "get_object expecting NoSuchKey" in problems[0]


@pytest.fixture
def retrain() -> Any:
    sys.path.insert(0, str(ROOT / "lambdas" / "retrain"))
    try:
        sys.modules.pop("retrain", None)
        return importlib.import_module("retrain")
    finally:
        sys.path.remove(str(ROOT / "lambdas" / "retrain"))


@pytest.mark.parametrize(
    "alarm",
    [
        "an-endpoint-name-of-sixty-three-characters-which-sagemaker-allows-drift-f",
        "an-endpoint-name-of-sixty-three-characters-which-sagemaker-allo-model-quality",
        "some-alarm-of-the-users",
    ],
)
def test_d5_retraining_names_leave_room_for_the_tuning_job(retrain: Any, alarm: str) -> None:
    """<execution>-tune must fit HyperParameterTuningJobName (32) from every entry point."""
    from sfn_mlops.local.server import service_model
    from sfn_mlops.local.validation import _check_constraints

    event = {
        "detail-type": "CloudWatch Alarm State Change",
        "detail": {
            "alarmName": alarm,
            "state": {"value": "ALARM", "timestamp": "2026-12-03T10:01:07.000+0000"},
        },
    }
    schedule = {"detail-type": "Scheduled Event", "time": "2026-12-07T03:00:00Z"}
    shape = service_model("sagemaker").shape_for("HyperParameterTuningJobName")
    for name in (retrain.trigger(event)["name"], retrain.trigger(schedule)["name"]):
        problems: list[str] = []
        _check_constraints(f"{name}-tune", shape, "hyperParameterTuningJobName", problems)
        assert problems == [], name


def test_r5_a_scheduled_batch_may_read_its_data_where_it_is() -> None:
    """BatchDataUri may name a bucket of the user's: the transform job's role reads it."""
    from sfn_mlops.aws import iam
    from sfn_mlops.intrinsics import Stack

    project = checks.load_project(ROOT / "template.yaml")
    assert project.cfn is not None
    for uri, granted in (("", False), ("s3://their-data/batches/in/", True)):
        stack = Stack(project.cfn, parameters={"BatchDataUri": uri})
        role = iam.principal(stack, "SageMakerExecutionRole")
        need = iam.Need("s3:GetObject", "arn:aws:s3:::their-data/batches/in/rows.csv", "batch")
        assert iam.is_granted(role, need) is granted
        other = iam.Need("s3:GetObject", "arn:aws:s3:::another-bucket/rows.csv", "batch")
        assert not iam.is_granted(role, other)
