"""``sfn-mlops prune`` on executions the in-process service really ran (conftest.py).

Each execution stages its data under ``datasets/<name>/`` and runs one processing job,
``<name>-job``, writing under ``runs/<name>/``, as the pipeline lays them out.
"""

from __future__ import annotations

import json
import time
from typing import Any

import boto3
import pytest
from botocore.exceptions import ClientError

from sfn_mlops import cli
from sfn_mlops.local import jobs, prune
from sfn_mlops.local.cloud import LocalCloud

BUCKET = "prune-bucket"
RUNS = f"s3://{BUCKET}/runs"
ROLE = "arn:aws:iam::123456789012:role/test"
SKLEARN = "683313688378.dkr.ecr.us-east-1.amazonaws.com/sagemaker-scikit-learn:1.2-1-cpu-py3"
SCRIPT = """import pathlib, shutil
root = pathlib.Path(__file__).resolve().parents[2]
shutil.copy(root / "processing" / "data" / "rows.csv", root / "processing" / "out" / "split.csv")
"""
JOB = {
    "Type": "Task",
    "Resource": "arn:aws:states:::sagemaker:createProcessingJob.sync",
    "Parameters": {
        "ProcessingJobName.$": "States.Format('{}-job', $$.Execution.Name)",
        "RoleArn": ROLE,
        "AppSpecification": {
            "ImageUri": SKLEARN,
            "ContainerEntrypoint": ["python3", "/opt/ml/processing/code/job.py"],
        },
        "ProcessingResources": {
            "ClusterConfig": {
                "InstanceCount": 1,
                "InstanceType": "ml.m5.large",
                "VolumeSizeInGB": 5,
            }
        },
        "ProcessingInputs": [
            {
                "InputName": "code",
                "S3Input": {
                    "S3Uri": f"s3://{BUCKET}/code/job.py",
                    "LocalPath": "/opt/ml/processing/code",
                    "S3DataType": "S3Prefix",
                },
            },
            {
                "InputName": "data",
                "S3Input": {
                    "S3Uri.$": "$.data",
                    "LocalPath": "/opt/ml/processing/data",
                    "S3DataType": "S3Prefix",
                },
            },
        ],
        "ProcessingOutputConfig": {
            "Outputs": [
                {
                    "OutputName": "out",
                    "S3Output": {
                        "S3Uri.$": f"States.Format('{RUNS}/{{}}/out', $$.Execution.Name)",
                        "LocalPath": "/opt/ml/processing/out",
                        "S3UploadMode": "EndOfJob",
                    },
                }
            ]
        },
        "StoppingCondition": {"MaxRuntimeInSeconds": 60},
    },
}
MACHINES = {
    "succeeds": {"StartAt": "Job", "States": {"Job": {**JOB, "End": True}}},
    "fails": {
        "StartAt": "Job",
        "States": {
            "Job": {**JOB, "Next": "Fail"},
            "Fail": {"Type": "Fail", "Error": "Gate", "Cause": "below the threshold"},
        },
    },
    "waits": {"StartAt": "W", "States": {"W": {"Type": "Wait", "Seconds": 600, "End": True}}},
}


@pytest.fixture
def aws(cloud: LocalCloud, monkeypatch: pytest.MonkeyPatch) -> Any:
    monkeypatch.setenv("AWS_DEFAULT_REGION", "us-east-1")
    monkeypatch.setenv("AWS_EC2_METADATA_DISABLED", "true")
    s3 = boto3.client("s3")
    s3.create_bucket(Bucket=BUCKET)
    s3.put_object(Bucket=BUCKET, Key="code/job.py", Body=SCRIPT)
    sfn = boto3.client("stepfunctions")
    for name, definition in MACHINES.items():
        sfn.create_state_machine(name=name, definition=json.dumps(definition), roleArn=ROLE)
    return sfn


def start(cloud: LocalCloud, sfn: Any, machine: str, name: str, data: str | None = None) -> str:
    """Stage ``datasets/<name>/rows.csv`` (unless ``data`` names other data) and start."""
    if data is None:
        cloud.objects.put_bytes(BUCKET, f"datasets/{name}/rows.csv", b"a,b\n1,2\n")
        data = f"s3://{BUCKET}/datasets/{name}/rows.csv"
    arn = cloud.arn("states", f"stateMachine:{machine}")
    execution = sfn.start_execution(
        stateMachineArn=arn, name=name, input=json.dumps({"data": data})
    )["executionArn"]
    return str(execution)


def finish(cloud: LocalCloud, sfn: Any, machine: str, name: str) -> None:
    execution = start(cloud, sfn, machine, name)
    cloud.service("sfn").wait(execution)
    expected = "SUCCEEDED" if machine == "succeeds" else "FAILED"
    assert sfn.describe_execution(executionArn=execution)["status"] == expected


def exists(cloud: LocalCloud, sfn: Any, name: str) -> dict[str, bool]:
    """What is left of one execution: records, job folder, run prefix, staged data."""
    arn = cloud.arn("states", f"execution:succeeds:{name}")
    try:
        sfn.describe_execution(executionArn=arn)
        execution = True
    except sfn.exceptions.ExecutionDoesNotExist:
        execution = any(
            cloud.metadata.get(prune.EXECUTIONS, cloud.arn("states", f"execution:{m}:{name}"))
            for m in MACHINES
        )
    bucket = cloud.objects.root / BUCKET
    return {
        "execution": execution,
        "history": bool(cloud.metadata.read(arn)),
        "job": cloud.metadata.get(jobs.KIND_PROCESSING, f"{name}-job") is not None,
        "job folder": jobs.job_dir(cloud, f"{name}-job").exists(),
        "runs": (bucket / "runs" / name).exists(),
        "datasets": (bucket / "datasets" / name).exists(),
    }


ALL_THERE = dict.fromkeys(["execution", "job", "job folder", "runs", "datasets"], True)


def test_keep_n_removes_the_older_executions_and_everything_they_left(
    cloud: LocalCloud, aws: Any
) -> None:
    for name in ("a", "b", "c"):
        finish(cloud, aws, "succeeds", name)
    assert {k: v for k, v in exists(cloud, aws, "a").items() if k != "history"} == ALL_THERE

    result = prune.prune(cloud.root, keep=1)

    assert [e.name for e in result.removed] == ["b", "a"]
    assert result.kept == []
    assert not any(exists(cloud, aws, "a").values())
    assert not any(exists(cloud, aws, "b").values())
    assert exists(cloud, aws, "c") == {**ALL_THERE, "history": True}
    with pytest.raises(ClientError) as err:
        boto3.client("sagemaker").describe_processing_job(ProcessingJobName="a-job")
    assert err.value.response["Error"]["Code"] == "ValidationException"
    assert all(e.jobs == [f"{e.name}-job"] for e in result.removed)
    assert result.bytes >= 2 * len(SCRIPT)  # each run's data and split at least
    assert not (cloud.root / prune.TRASH).exists()
    assert [o.key for o in cloud.objects.list(BUCKET, "code/")] == ["code/job.py"]


def test_the_newest_succeeded_execution_is_kept_for_its_model(cloud: LocalCloud, aws: Any) -> None:
    finish(cloud, aws, "succeeds", "good")
    finish(cloud, aws, "fails", "newer-but-failed")

    result = prune.prune(cloud.root, keep=0)

    assert [e.name for e in result.removed] == ["newer-but-failed"]
    assert [(e.name, e.kept_because) for e in result.kept] == [
        ("good", "the newest SUCCEEDED execution: its model is kept")
    ]
    assert exists(cloud, aws, "good")["runs"]


def test_older_than_removes_only_executions_stopped_that_long_ago(
    cloud: LocalCloud, aws: Any
) -> None:
    finish(cloud, aws, "fails", "f1")
    finish(cloud, aws, "succeeds", "s1")
    hour = prune.parse_duration("1h")

    assert prune.prune(cloud.root, older_than=hour, now=time.time() + 1800).removed == []
    later = prune.prune(cloud.root, older_than=hour, now=time.time() + 7200)

    assert [e.name for e in later.removed] == ["f1"]
    assert exists(cloud, aws, "s1")["execution"]


def test_dry_run_says_what_it_would_remove_and_removes_nothing(
    cloud: LocalCloud, aws: Any, capsys: pytest.CaptureFixture[str]
) -> None:
    finish(cloud, aws, "fails", "old")
    finish(cloud, aws, "succeeds", "new")

    code = cli.main(["--workspace", str(cloud.root), "prune", "--keep", "0", "--dry-run"])

    out = capsys.readouterr().out.splitlines()
    assert code == cli.EXIT_OK
    assert out[0].startswith("would remove old (FAILED): 1 jobs, ")
    assert out[1] == "kept new (SUCCEEDED): the newest SUCCEEDED execution: its model is kept"
    assert out[2].startswith("1 executions to remove, would free ")
    assert exists(cloud, aws, "old")["runs"] and exists(cloud, aws, "old")["job"]


def test_running_executions_and_what_they_read_are_never_removed(
    cloud: LocalCloud, aws: Any
) -> None:
    finish(cloud, aws, "fails", "source")
    finish(cloud, aws, "succeeds", "latest")
    reader = start(cloud, aws, "waits", "reader", data=f"s3://{BUCKET}/datasets/source/")
    try:
        result = prune.prune(cloud.root, keep=0)

        assert result.removed == []
        assert sorted((e.name, e.kept_because) for e in result.kept) == [
            ("latest", "the newest SUCCEEDED execution: its model is kept"),
            ("reader", "it is running"),
            ("source", f"reader (running) reads s3://{BUCKET}/datasets/source/"),
        ]
    finally:
        aws.stop_execution(executionArn=reader)

    after = prune.prune(cloud.root, keep=0)
    assert sorted(e.name for e in after.removed) == ["reader", "source"]


def test_a_model_made_outside_the_execution_keeps_its_data(cloud: LocalCloud, aws: Any) -> None:
    finish(cloud, aws, "fails", "trained")
    finish(cloud, aws, "succeeds", "latest")
    boto3.client("sagemaker").create_model(
        ModelName="hand-made",
        PrimaryContainer={"Image": SKLEARN, "ModelDataUrl": f"s3://{BUCKET}/runs/trained/out/"},
        ExecutionRoleArn=ROLE,
    )

    result = prune.prune(cloud.root, keep=0)

    assert result.removed == []
    assert ("trained", f"hand-made points into s3://{BUCKET}/runs/trained/") in [
        (e.name, e.kept_because) for e in result.kept
    ]


def test_prune_needs_keep_or_older_than(cloud: LocalCloud, capsys: Any) -> None:
    with pytest.raises(prune.PruneError, match="--keep N"):
        prune.prune(cloud.root)
    assert cli.main(["--workspace", str(cloud.root), "prune"]) == cli.EXIT_USAGE
    assert "--older-than 7d" in capsys.readouterr().err
