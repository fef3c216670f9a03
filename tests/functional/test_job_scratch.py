"""A job's folder is scratch: inputs hard-linked from the object store, outputs moved into it,
and once the job has ended (any status) only its log is left.

The job code is a tiny script written per test; the service runs in-process (conftest.py).
"""

from __future__ import annotations

import io
import json
import subprocess
import sys
import tarfile
import textwrap
import time
from pathlib import Path
from typing import Any

import boto3
import pytest

from sfn_mlops import cli
from sfn_mlops.local import jobs, objectstore
from sfn_mlops.local.cloud import LocalCloud

BUCKET = "scratch-bucket"
SKLEARN = "683313688378.dkr.ecr.us-east-1.amazonaws.com/sagemaker-scikit-learn:1.2-1-cpu-py3"
XGBOOST = "683313688378.dkr.ecr.us-east-1.amazonaws.com/sagemaker-xgboost:3.0-5"
ROLE = "arn:aws:iam::123456789012:role/SageMakerRole"
ONLY_THE_LOG = [jobs.paths.LOG_NAME]


@pytest.fixture
def sm_cloud(cloud: LocalCloud, monkeypatch: pytest.MonkeyPatch) -> LocalCloud:
    monkeypatch.setenv("AWS_DEFAULT_REGION", "us-east-1")
    monkeypatch.setenv("AWS_EC2_METADATA_DISABLED", "true")
    boto3.client("s3").create_bucket(Bucket=BUCKET)
    return cloud


@pytest.fixture
def sm(sm_cloud: LocalCloud) -> Any:
    return boto3.client("sagemaker")


@pytest.fixture
def s3(sm_cloud: LocalCloud) -> Any:
    return boto3.client("s3")


def put(s3: Any, key: str, body: bytes | str) -> str:
    s3.put_object(Bucket=BUCKET, Key=key, Body=body)
    return f"s3://{BUCKET}/{key}"


def left_in(cloud: LocalCloud, name: str) -> list[str]:
    return sorted(p.name for p in jobs.job_dir(cloud, name).iterdir())


def wait(sm: Any, kind: str, name: str, timeout: float = 10.0) -> dict[str, Any]:
    describe = getattr(sm, f"describe_{kind}_job")
    key, status = (
        ("TrainingJobName", "TrainingJobStatus")
        if kind == "training"
        else ("ProcessingJobName", "ProcessingJobStatus")
    )
    deadline = time.monotonic() + timeout
    while True:
        job = describe(**{key: name})
        if job[status] in jobs.TERMINAL:
            return job  # type: ignore[no-any-return]
        assert time.monotonic() < deadline, f"{name} still {job[status]}"
        time.sleep(0.02)


def processing(
    s3: Any, name: str, source: str, inputs: dict[str, str], outputs: dict[str, str]
) -> dict[str, Any]:
    """A processing request: the script at /opt/ml/processing/code, inputs and outputs by path."""
    code = put(s3, f"code/{name}/job.py", textwrap.dedent(source))
    items = {"/opt/ml/processing/code": code, **inputs}
    return {
        "ProcessingJobName": name,
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
                "InputName": f"in{index}",
                "S3Input": {"S3Uri": uri, "LocalPath": path, "S3DataType": "S3Prefix"},
            }
            for index, (path, uri) in enumerate(items.items())
        ],
        "ProcessingOutputConfig": {
            "Outputs": [
                {
                    "OutputName": f"out{index}",
                    "S3Output": {"S3Uri": uri, "LocalPath": path, "S3UploadMode": "EndOfJob"},
                }
                for index, (path, uri) in enumerate(outputs.items())
            ]
        },
        "StoppingCondition": {"MaxRuntimeInSeconds": 60},
    }


def training(s3: Any, name: str, source: str, **overrides: Any) -> dict[str, Any]:
    buffer = io.BytesIO()
    with tarfile.open(fileobj=buffer, mode="w:gz") as tar:
        data = textwrap.dedent(source).encode()
        info = tarfile.TarInfo("train.py")
        info.size = len(data)
        tar.addfile(info, io.BytesIO(data))
    code = put(s3, f"code/{name}/sourcedir.tar.gz", buffer.getvalue())
    put(s3, "data/train/train.csv", "1,2\n")
    request = {
        "TrainingJobName": name,
        "RoleArn": ROLE,
        "AlgorithmSpecification": {"TrainingImage": XGBOOST, "TrainingInputMode": "File"},
        "HyperParameters": {
            "sagemaker_program": json.dumps("train.py"),
            "sagemaker_submit_directory": json.dumps(code),
        },
        "InputDataConfig": [
            {
                "ChannelName": "train",
                "DataSource": {
                    "S3DataSource": {
                        "S3DataType": "S3Prefix",
                        "S3Uri": f"s3://{BUCKET}/data/train/",
                    }
                },
            }
        ],
        "OutputDataConfig": {"S3OutputPath": f"s3://{BUCKET}/models/"},
        "ResourceConfig": {"InstanceCount": 1, "InstanceType": "ml.m5.large", "VolumeSizeInGB": 5},
        "StoppingCondition": {"MaxRuntimeInSeconds": 60},
    }
    request.update(overrides)
    return request


def clones(folder: Path) -> bool:
    """Whether this file system makes copy-on-write clones (then inputs are not hard links)."""
    source = folder / "probe"
    source.write_bytes(b"x")
    return objectstore._reflink(source, folder / "probe-clone")


# inputs ---------------------------------------------------------------------------------------
INODES = """
    import json, os, pathlib
    data = pathlib.Path("/opt/ml/processing/input/data".replace("/opt/ml", os.environ["OPT_ML"]))
    stats = {p.name: [p.stat().st_ino, p.stat().st_nlink] for p in data.iterdir()}
    out = data.parents[1] / "output"
    (out / "inodes.json").write_text(json.dumps(stats))
"""


def test_processing_inputs_are_hard_links_to_the_objects(
    sm: Any, s3: Any, sm_cloud: LocalCloud, tmp_path: Path
) -> None:
    if clones(tmp_path):
        pytest.skip("this file system clones (copy-on-write): inputs are clones, not links")
    data = put(s3, "datasets/r1/rows.csv", "a,b\n1,2\n")
    request = processing(
        s3,
        "links",
        INODES,
        {"/opt/ml/processing/input/data": data},
        {"/opt/ml/processing/output": f"s3://{BUCKET}/runs/r1/out"},
    )
    request["Environment"] = {"OPT_ML": "/opt/ml"}  # re-rooted by the runner
    sm.create_processing_job(**request)
    job = wait(sm, "processing", "links")

    assert job["ProcessingJobStatus"] == "Completed", job.get("FailureReason")
    stats = json.loads(s3.get_object(Bucket=BUCKET, Key="runs/r1/out/inodes.json")["Body"].read())
    stored = sm_cloud.objects.head(BUCKET, "datasets/r1/rows.csv").path.stat()
    assert stats == {"rows.csv": [stored.st_ino, 2]}  # the object's file, under a second name
    assert stored.st_nlink == 1  # and the job's name is gone with its folder


# the folder once the job has ended ------------------------------------------------------------
WRITES_OUTPUTS = """
    import pathlib
    root = pathlib.Path(__file__).resolve().parents[2]
    (root / "processing" / "output" / "nested").mkdir(parents=True, exist_ok=True)
    (root / "processing" / "output" / "nested" / "split.csv").write_text("1,2\\n")
    (root / "processing" / "output" / "top.csv").write_text("3,4\\n")
    (root / "output" / "message").write_text("wrote 2 files")
"""


def test_completed_processing_job_leaves_only_its_log(
    sm: Any, s3: Any, sm_cloud: LocalCloud
) -> None:
    data = put(s3, "datasets/r2/rows.csv", "a\n1\n")
    request = processing(
        s3,
        "done",
        WRITES_OUTPUTS,
        {"/opt/ml/processing/input/data": data},
        {"/opt/ml/processing/output": f"s3://{BUCKET}/runs/r2/out"},
    )
    sm.create_processing_job(**request)
    job = wait(sm, "processing", "done")

    assert job["ProcessingJobStatus"] == "Completed", job.get("FailureReason")
    assert job["ExitMessage"] == "wrote 2 files"  # read before the folder went
    listed = s3.list_objects_v2(Bucket=BUCKET, Prefix="runs/r2/out/")["Contents"]
    assert [o["Key"] for o in listed] == ["runs/r2/out/nested/split.csv", "runs/r2/out/top.csv"]
    assert left_in(sm_cloud, "done") == ONLY_THE_LOG
    assert sm_cloud.objects.head(BUCKET, "datasets/r2/rows.csv").path.stat().st_nlink == 1


def test_overlapping_outputs_each_get_every_file(sm: Any, s3: Any, sm_cloud: LocalCloud) -> None:
    request = processing(
        s3,
        "overlap",
        WRITES_OUTPUTS,
        {},
        {
            "/opt/ml/processing/output": f"s3://{BUCKET}/all",
            "/opt/ml/processing/output/nested": f"s3://{BUCKET}/nested",
        },
    )
    sm.create_processing_job(**request)
    job = wait(sm, "processing", "overlap")

    assert job["ProcessingJobStatus"] == "Completed", job.get("FailureReason")
    keys = [o["Key"] for o in s3.list_objects_v2(Bucket=BUCKET)["Contents"]]
    assert {"all/nested/split.csv", "all/top.csv", "nested/split.csv"} <= set(keys)
    assert left_in(sm_cloud, "overlap") == ONLY_THE_LOG


def test_failed_training_job_reason_is_read_before_the_folder_goes(
    sm: Any, s3: Any, sm_cloud: LocalCloud, capsys: pytest.CaptureFixture[str]
) -> None:
    source = """
        import os, pathlib, sys
        print("about to fail", flush=True)
        pathlib.Path(os.environ["SM_OUTPUT_DIR"], "failure").write_text("UserError: no column y")
        sys.exit(1)
    """
    sm.create_training_job(**training(s3, "fails", source))
    job = wait(sm, "training", "fails")

    assert (job["TrainingJobStatus"], job["FailureReason"]) == ("Failed", "UserError: no column y")
    assert left_in(sm_cloud, "fails") == ONLY_THE_LOG
    assert cli.main(["--workspace", str(sm_cloud.root), "jobs", "logs", "fails"]) == cli.EXIT_OK
    log = capsys.readouterr().out
    assert "about to fail" in log
    assert "Failed: UserError: no column y" in log


def test_stopped_training_job_uploads_its_model_then_leaves_only_its_log(
    sm: Any, s3: Any, sm_cloud: LocalCloud
) -> None:
    source = """
        import os, pathlib, time
        pathlib.Path(os.environ["SM_MODEL_DIR"], "checkpoint").write_text("partial")
        time.sleep(30)
    """
    request = training(s3, "too-slow", source, StoppingCondition={"MaxRuntimeInSeconds": 1})
    sm.create_training_job(**request)
    job = wait(sm, "training", "too-slow")

    assert job["TrainingJobStatus"] == "Stopped"
    archive = s3.get_object(Bucket=BUCKET, Key="models/too-slow/output/model.tar.gz")["Body"]
    with tarfile.open(fileobj=io.BytesIO(archive.read()), mode="r:gz") as tar:
        assert tar.getnames() == ["checkpoint"]
    assert left_in(sm_cloud, "too-slow") == ONLY_THE_LOG


def test_a_recovered_orphan_keeps_only_its_log(sm: Any, sm_cloud: LocalCloud) -> None:
    gone = subprocess.Popen([sys.executable, "-c", "pass"])
    gone.wait()
    folder = jobs.job_dir(sm_cloud, "orphan")
    (folder / "opt_ml" / "input" / "data").mkdir(parents=True)
    (folder / "opt_ml" / "input" / "data" / "big.csv").write_text("1\n" * 1000)
    (folder / "model.tar.gz").write_bytes(b"half")
    (folder / jobs.paths.LOG_NAME).write_text("what the job printed\n")
    request = {"TrainingJobName": "orphan", "AlgorithmSpecification": {}}
    doc = jobs.new_job_doc(jobs.KIND_TRAINING, "orphan", "arn:orphan", request)
    doc["OwnerPid"] = gone.pid
    sm_cloud.metadata.create(jobs.KIND_TRAINING, "orphan", doc)

    assert jobs.recover_orphans(sm_cloud) == ["orphan"]

    assert left_in(sm_cloud, "orphan") == ONLY_THE_LOG
    assert jobs.job_log_path(sm_cloud, "orphan").read_text() == "what the job printed\n"
