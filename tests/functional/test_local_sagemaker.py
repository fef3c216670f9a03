"""The local SageMaker job service through plain boto3: processing and training jobs really run.

The job code is a tiny script written per test, not the project's containers/ code.
"""

from __future__ import annotations

import io
import json
import os
import signal
import subprocess
import sys
import tarfile
import textwrap
import time
from typing import Any

import boto3
import pytest
from botocore.exceptions import ClientError

from sfn_mlops.local import jobs
from sfn_mlops.local.cloud import LocalCloud
from sfn_mlops.local.credentials import Principal
from sfn_mlops.local.processes import start_time

BUCKET = "sm-bucket"
XGBOOST = "683313688378.dkr.ecr.us-east-1.amazonaws.com/sagemaker-xgboost:1.7-1"
SKLEARN = "683313688378.dkr.ecr.us-east-1.amazonaws.com/sagemaker-scikit-learn:1.2-1-cpu-py3"
ROLE = "arn:aws:iam::123456789012:role/SageMakerRole"


@pytest.fixture
def sm_cloud(cloud: LocalCloud, monkeypatch: pytest.MonkeyPatch) -> LocalCloud:
    """The functional tests' local cloud (tests/functional/conftest.py) with a bucket."""
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


def put_script(s3: Any, key: str, source: str) -> str:
    return put(s3, key, textwrap.dedent(source))


def put_sourcedir(s3: Any, key: str, files: dict[str, str]) -> str:
    buffer = io.BytesIO()
    with tarfile.open(fileobj=buffer, mode="w:gz") as tar:
        for name, source in files.items():
            data = textwrap.dedent(source).encode()
            info = tarfile.TarInfo(name)
            info.size = len(data)
            tar.addfile(info, io.BytesIO(data))
    return put(s3, key, buffer.getvalue())


def wait(sm: Any, kind: str, name: str, timeout: float = 10.0) -> dict[str, Any]:
    describe = getattr(sm, f"describe_{kind}_job")
    key = "TrainingJobName" if kind == "training" else "ProcessingJobName"
    status_key = "TrainingJobStatus" if kind == "training" else "ProcessingJobStatus"
    deadline = time.monotonic() + timeout
    while True:
        job = describe(**{key: name})
        if job[status_key] in ("Completed", "Failed", "Stopped"):
            return job  # type: ignore[no-any-return]
        assert time.monotonic() < deadline, f"{name} still {job[status_key]}"
        time.sleep(0.02)


def processing_request(name: str, code_uri: str, **overrides: Any) -> dict[str, Any]:
    request: dict[str, Any] = {
        "ProcessingJobName": name,
        "RoleArn": ROLE,
        "AppSpecification": {
            "ImageUri": SKLEARN,
            "ContainerEntrypoint": ["python3", "/opt/ml/processing/input/code/job.py"],
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
                    "S3Uri": code_uri,
                    "LocalPath": "/opt/ml/processing/input/code",
                    "S3DataType": "S3Prefix",
                },
            }
        ],
        "StoppingCondition": {"MaxRuntimeInSeconds": 60},
    }
    request.update(overrides)
    return request


def training_request(name: str, hyperparameters: dict[str, str], **overrides: Any) -> dict:
    request: dict[str, Any] = {
        "TrainingJobName": name,
        "RoleArn": ROLE,
        "AlgorithmSpecification": {"TrainingImage": XGBOOST, "TrainingInputMode": "File"},
        "HyperParameters": hyperparameters,
        "InputDataConfig": [
            {
                "ChannelName": "train",
                "DataSource": {
                    "S3DataSource": {
                        "S3DataType": "S3Prefix",
                        "S3Uri": f"s3://{BUCKET}/data/train/",
                    }
                },
                "ContentType": "text/csv",
            }
        ],
        "OutputDataConfig": {"S3OutputPath": f"s3://{BUCKET}/models/"},
        "ResourceConfig": {"InstanceCount": 1, "InstanceType": "ml.m5.large", "VolumeSizeInGB": 5},
        "StoppingCondition": {"MaxRuntimeInSeconds": 60},
    }
    request.update(overrides)
    return request


def script_mode(s3: Any, source: str, **extra: str) -> dict[str, str]:
    uri = put_sourcedir(s3, "code/sourcedir.tar.gz", {"train.py": source})
    return {
        "sagemaker_program": json.dumps("train.py"),
        "sagemaker_submit_directory": json.dumps(uri),
        **extra,
    }


# processing -------------------------------------------------------------------------------------
PROCESSING_SCRIPT = """
    import argparse, os, pathlib, sys
    parser = argparse.ArgumentParser()
    parser.add_argument("--input")
    parser.add_argument("--out")
    args = parser.parse_args()
    rows = (pathlib.Path(args.input) / "part" / "rows.csv").read_text().splitlines()
    out = pathlib.Path(args.out)
    (out / "nested").mkdir(parents=True)
    (out / "nested" / "count.txt").write_text(f"{len(rows)} {os.environ['GREETING']}")
    message = pathlib.Path(args.input).parents[2] / "output" / "message"
    message.write_text("processed")
    print("argv", sys.argv[1:])
"""


def test_processing_job_copies_inputs_reroots_paths_and_uploads_outputs(
    sm: Any, s3: Any, sm_cloud: LocalCloud
) -> None:
    code = put_script(s3, "code/proc/job.py", PROCESSING_SCRIPT)
    put(s3, "raw/part/rows.csv", "a\nb\nc\n")
    request = processing_request(
        "Prep-Job-1",
        code,
        ProcessingInputs=[
            processing_request("x", code)["ProcessingInputs"][0],
            {
                "InputName": "data",
                "S3Input": {
                    "S3Uri": f"s3://{BUCKET}/raw/",
                    "LocalPath": "/opt/ml/processing/input/data",
                    "S3DataType": "S3Prefix",
                },
            },
        ],
        ProcessingOutputConfig={
            "Outputs": [
                {
                    "OutputName": "result",
                    "S3Output": {
                        "S3Uri": f"s3://{BUCKET}/out/result",
                        "LocalPath": "/opt/ml/processing/output",
                        "S3UploadMode": "EndOfJob",
                    },
                }
            ]
        },
        Environment={"GREETING": "hello"},
    )
    request["AppSpecification"]["ContainerArguments"] = [
        "--input",
        "/opt/ml/processing/input/data",
        "--out=/opt/ml/processing/output",
    ]

    created = sm.create_processing_job(**request)
    job = wait(sm, "processing", "Prep-Job-1")

    arn = "arn:aws:sagemaker:us-east-1:123456789012:processing-job/prep-job-1"
    assert created["ProcessingJobArn"] == arn
    assert job["ProcessingJobStatus"] == "Completed", job.get("FailureReason")
    assert job["ProcessingJobArn"] == arn
    assert job["ProcessingJobName"] == "Prep-Job-1"
    assert job["ExitMessage"] == "processed"
    assert "FailureReason" not in job
    assert job["AppSpecification"] == request["AppSpecification"]
    assert job["Environment"] == {"GREETING": "hello"}
    assert job["ProcessingInputs"][1]["S3Input"] == {
        "S3Uri": f"s3://{BUCKET}/raw/",
        "LocalPath": "/opt/ml/processing/input/data",
        "S3DataType": "S3Prefix",
        "S3InputMode": "File",
        "S3DataDistributionType": "FullyReplicated",
        "S3CompressionType": "None",
    }
    for key in ("CreationTime", "ProcessingStartTime", "ProcessingEndTime", "LastModifiedTime"):
        assert job[key].tzinfo is not None
    assert job["CreationTime"] <= job["ProcessingStartTime"] <= job["ProcessingEndTime"]
    body = s3.get_object(Bucket=BUCKET, Key="out/result/nested/count.txt")["Body"].read()
    assert body == b"3 hello"
    opt_ml = sm_cloud.jobs_dir / "Prep-Job-1" / "opt_ml"
    log = jobs.job_log_path(sm_cloud, "Prep-Job-1").read_text()
    assert (
        f"argv ['--input', '{opt_ml}/processing/input/data', '--out={opt_ml}/processing/output']"
        in log
    )

    summaries = sm.list_processing_jobs(NameContains="Prep")["ProcessingJobSummaries"]
    assert [(s["ProcessingJobName"], s["ProcessingJobStatus"]) for s in summaries] == [
        ("Prep-Job-1", "Completed")
    ]


def test_processing_exit_without_failure_file_points_at_the_log(
    sm: Any, s3: Any, sm_cloud: LocalCloud
) -> None:
    code = put_script(
        s3, "code/fail/job.py", "import sys\nprint('boom', file=sys.stderr)\nsys.exit(3)\n"
    )

    sm.create_processing_job(**processing_request("exits-3", code))
    job = wait(sm, "processing", "exits-3")

    log = jobs.job_log_path(sm_cloud, "exits-3")
    assert job["ProcessingJobStatus"] == "Failed"
    assert job["FailureReason"] == f"AlgorithmError: script exited with code 3; see the log: {log}"
    assert "boom" in log.read_text()


def test_a_jobs_code_calls_aws_as_its_role_with_keys_of_its_own(
    sm: Any, s3: Any, sm_cloud: LocalCloud
) -> None:
    script = """
        import os, boto3
        boto3.client("s3").list_buckets()  # signed with the job's keys, verified by the service
        print("key", os.environ["AWS_ACCESS_KEY_ID"])
    """
    code = put_script(s3, "code/caller/job.py", script)

    sm.create_processing_job(**processing_request("calls-aws", code))
    job = wait(sm, "processing", "calls-aws")

    log = jobs.job_log_path(sm_cloud, "calls-aws").read_text()
    assert job["ProcessingJobStatus"] == "Completed", log
    key_id = log.split("key ", 1)[1].split()[0]
    key = sm_cloud.credentials.lookup(key_id)
    assert key is not None and key.principal == Principal(ROLE, "SageMaker")
    assert key_id != sm_cloud.credentials.admin().access_key_id


def test_processing_max_runtime_stops_the_job(sm: Any, s3: Any) -> None:
    code = put_script(s3, "code/slow/job.py", "import time\ntime.sleep(30)\n")

    started = time.monotonic()
    sm.create_processing_job(
        **processing_request("slow-proc", code, StoppingCondition={"MaxRuntimeInSeconds": 1})
    )
    job = wait(sm, "processing", "slow-proc")

    assert job["ProcessingJobStatus"] == "Stopped"
    assert time.monotonic() - started < 5


# training ---------------------------------------------------------------------------------------
TRAIN_SCRIPT = """
    import json, os, pathlib, sys
    model = pathlib.Path(os.environ["SM_MODEL_DIR"])
    (model / "xgboost-model").write_text("model")
    (model / "extra").mkdir()
    (model / "extra" / "schema.json").write_text("{}")
    info = {
        "argv": sys.argv[1:],
        "cwd": os.getcwd(),
        "names": {k: os.environ[k] for k in sorted(os.environ) if k.startswith("SM_")},
        "train": sorted(os.listdir(os.environ["SM_CHANNEL_TRAIN"])),
        "config": {
            p.name: json.loads(p.read_text())
            for p in pathlib.Path(os.environ["SM_INPUT_CONFIG_DIR"]).iterdir()
        },
    }
    out = pathlib.Path(os.environ["SM_OUTPUT_DATA_DIR"])
    (out / "info.json").write_text(json.dumps(info))
"""


def read_tar(s3: Any, key: str) -> dict[str, bytes]:
    data = s3.get_object(Bucket=BUCKET, Key=key)["Body"].read()
    with tarfile.open(fileobj=io.BytesIO(data), mode="r:gz") as tar:
        return {
            m.name: tar.extractfile(m).read()  # type: ignore[union-attr]
            for m in tar.getmembers()
            if m.isfile()
        }


def test_training_script_mode_runs_like_the_training_toolkit(
    sm: Any, s3: Any, sm_cloud: LocalCloud
) -> None:
    put(s3, "data/train/train.csv", "1,2\n")
    hps = script_mode(
        s3, TRAIN_SCRIPT, max_depth="5", eta="0.1", objective="binary:logistic", verbose="true"
    )

    created = sm.create_training_job(**training_request("Train-1", hps))
    job = wait(sm, "training", "Train-1")

    assert created["TrainingJobArn"] == (
        "arn:aws:sagemaker:us-east-1:123456789012:training-job/train-1"
    )
    assert job["TrainingJobStatus"] == "Completed", job.get("FailureReason")
    assert job["SecondaryStatus"] == "Completed"
    assert [t["Status"] for t in job["SecondaryStatusTransitions"]] == [
        "Starting",
        "Downloading",
        "Training",
        "Uploading",
        "Completed",
    ]
    assert all("EndTime" in t for t in job["SecondaryStatusTransitions"])
    model_uri = f"s3://{BUCKET}/models/Train-1/output/model.tar.gz"
    assert job["ModelArtifacts"] == {"S3ModelArtifacts": model_uri}
    assert job["HyperParameters"] == hps
    assert job["TrainingTimeInSeconds"] == job["BillableTimeInSeconds"] >= 1
    assert job["TrainingStartTime"] <= job["TrainingEndTime"]
    assert job["StoppingCondition"] == {"MaxRuntimeInSeconds": 60}

    model = read_tar(s3, "models/Train-1/output/model.tar.gz")
    assert model == {"xgboost-model": b"model", "extra/schema.json": b"{}"}
    info = json.loads(read_tar(s3, "models/Train-1/output/output.tar.gz")["info.json"])
    args = [
        "--eta",
        "0.1",
        "--max_depth",
        "5",
        "--objective",
        "binary:logistic",
        "--verbose",
        "True",
    ]
    assert info["argv"] == args
    opt_ml = sm_cloud.jobs_dir / "Train-1" / "opt_ml"
    assert info["cwd"] == str(opt_ml / "code")
    assert info["train"] == ["train.csv"]
    env = info["names"]
    assert json.loads(env["SM_HPS"]) == {
        "eta": 0.1,
        "max_depth": 5,
        "objective": "binary:logistic",
        "verbose": True,
    }
    assert env["SM_HP_MAX_DEPTH"] == "5"
    assert env["SM_HP_OBJECTIVE"] == "binary:logistic"
    assert env["SM_HP_VERBOSE"] == "true"
    assert json.loads(env["SM_USER_ARGS"]) == args
    assert json.loads(env["SM_CHANNELS"]) == ["train"]
    assert env["SM_CHANNEL_TRAIN"] == str(opt_ml / "input" / "data" / "train")
    assert env["SM_MODEL_DIR"] == str(opt_ml / "model")
    assert env["SM_OUTPUT_DIR"] == str(opt_ml / "output")
    assert env["SM_OUTPUT_DATA_DIR"] == str(opt_ml / "output" / "data")
    assert env["SM_INPUT_DIR"] == str(opt_ml / "input")
    assert env["SM_INPUT_CONFIG_DIR"] == str(opt_ml / "input" / "config")
    assert env["SM_MODULE_NAME"] == "train"
    assert env["SM_NUM_GPUS"] == "0"
    assert int(env["SM_NUM_CPUS"]) == max(1, len(os.sched_getaffinity(0)) - 1)
    assert env["SM_CURRENT_HOST"] == "algo-1"
    assert json.loads(env["SM_HOSTS"]) == ["algo-1"]
    config = info["config"]  # as the script read them: the job's folder is gone by now
    assert config["hyperparameters.json"] == hps
    assert config["inputdataconfig.json"] == {
        "train": {
            "ContentType": "text/csv",
            "TrainingInputMode": "File",
            "S3DistributionType": "FullyReplicated",
            "RecordWrapperType": "None",
        }
    }
    assert config["resourceconfig.json"]["hosts"] == ["algo-1"]
    assert sorted(p.name for p in jobs.job_dir(sm_cloud, "Train-1").iterdir()) == ["job.log"]


def test_training_failure_file_becomes_the_failure_reason(sm: Any, s3: Any) -> None:
    put(s3, "data/train/train.csv", "1,2\n")
    source = """
        import os, pathlib, sys
        reason = "UserError: column 'y' is missing " + "x" * 2000
        pathlib.Path(os.environ["SM_OUTPUT_DIR"], "failure").write_text(reason)
        sys.exit(1)
    """
    sm.create_training_job(**training_request("fails", script_mode(s3, source)))
    job = wait(sm, "training", "fails")

    assert job["TrainingJobStatus"] == "Failed"
    assert job["SecondaryStatus"] == "Failed"
    assert job["FailureReason"].startswith("UserError: column 'y' is missing xxx")
    assert len(job["FailureReason"]) == 1024
    assert "ModelArtifacts" not in job


def test_training_without_sagemaker_program_fails_with_a_clear_reason(sm: Any, s3: Any) -> None:
    put(s3, "data/train/train.csv", "1,2\n")
    sm.create_training_job(**training_request("algorithm-mode", {"num_round": "10"}))
    job = wait(sm, "training", "algorithm-mode")

    assert job["TrainingJobStatus"] == "Failed"
    assert "runs the XGBoost image in script mode" in job["FailureReason"]
    assert "sagemaker_program/sagemaker_submit_directory" in job["FailureReason"]


def test_training_max_runtime_exceeded_is_stopped(sm: Any, s3: Any) -> None:
    put(s3, "data/train/train.csv", "1,2\n")
    source = """
        import os, pathlib, time
        pathlib.Path(os.environ["SM_MODEL_DIR"], "checkpoint").write_text("partial")
        time.sleep(30)
    """
    request = training_request(
        "too-slow", script_mode(s3, source), StoppingCondition={"MaxRuntimeInSeconds": 1}
    )
    started = time.monotonic()
    sm.create_training_job(**request)
    job = wait(sm, "training", "too-slow")

    assert time.monotonic() - started < 5
    assert job["TrainingJobStatus"] == "Stopped"
    assert job["SecondaryStatus"] == "MaxRuntimeExceeded"
    assert job["SecondaryStatusTransitions"][-1]["Status"] == "MaxRuntimeExceeded"
    assert job["ModelArtifacts"]["S3ModelArtifacts"].endswith("too-slow/output/model.tar.gz")


def test_stop_training_job_ends_the_running_script(sm: Any, s3: Any, sm_cloud: LocalCloud) -> None:
    put(s3, "data/train/train.csv", "1,2\n")
    source = "import time\nprint('started', flush=True)\ntime.sleep(30)\n"
    sm.create_training_job(**training_request("to-stop", script_mode(s3, source)))
    log = jobs.job_log_path(sm_cloud, "to-stop")
    deadline = time.monotonic() + 5
    while not (log.is_file() and "started" in log.read_text()):
        assert time.monotonic() < deadline, "the script never started"
        time.sleep(0.02)

    started = time.monotonic()
    sm.stop_training_job(TrainingJobName="to-stop")
    stopping = sm.describe_training_job(TrainingJobName="to-stop")
    job = wait(sm, "training", "to-stop")

    # Stopping until the runner has ended the script (which may already have happened).
    assert (stopping["TrainingJobStatus"], stopping["SecondaryStatus"]) in (
        ("Stopping", "Stopping"),
        ("Stopped", "Stopped"),
    )
    assert job["TrainingJobStatus"] == "Stopped"
    assert time.monotonic() - started < 2
    assert "stopping (stop): SIGTERM to the process group" in log.read_text()
    assert job["SecondaryStatus"] == "Stopped"
    assert [t["Status"] for t in job["SecondaryStatusTransitions"]][-2:] == ["Stopping", "Stopped"]
    with pytest.raises(ClientError) as err:
        sm.stop_training_job(TrainingJobName="to-stop")
    assert err.value.response["Error"] == {
        "Code": "ValidationException",
        "Message": "The request was rejected because the training job is in status Stopped.",
    }
    listed = sm.list_training_jobs(StatusEquals="Stopped")["TrainingJobSummaries"]
    assert [s["TrainingJobName"] for s in listed] == ["to-stop"]


# errors -----------------------------------------------------------------------------------------
def test_duplicate_name_is_resource_in_use(sm: Any, s3: Any) -> None:
    put(s3, "data/train/train.csv", "1,2\n")
    request = training_request("twice", script_mode(s3, "pass\n"))
    sm.create_training_job(**request)

    with pytest.raises(sm.exceptions.ResourceInUse) as err:
        sm.create_training_job(**request)

    assert err.value.response["Error"]["Message"] == (
        "Training job names must be unique within an AWS account and region, and a training job "
        "with this name already exists "
        "(arn:aws:sagemaker:us-east-1:123456789012:training-job/twice)"
    )
    wait(sm, "training", "twice")


def test_describe_unknown_job_is_validation_exception(sm: Any) -> None:
    for call, key in (
        (sm.describe_training_job, "TrainingJobName"),
        (sm.describe_processing_job, "ProcessingJobName"),
    ):
        with pytest.raises(ClientError) as err:
            call(**{key: "nope"})
        assert err.value.response["Error"] == {
            "Code": "ValidationException",
            "Message": "Requested resource not found.",
        }


def test_unknown_image_names_it_and_the_known_images(sm: Any, s3: Any) -> None:
    request = training_request("odd-image", {})
    request["AlgorithmSpecification"]["TrainingImage"] = (
        "123.dkr.ecr.us-east-1.amazonaws.com/mine:1"
    )

    with pytest.raises(ClientError) as err:
        sm.create_training_job(**request)

    error = err.value.response["Error"]
    assert error["Code"] == "ValidationException"
    assert "'123.dkr.ecr.us-east-1.amazonaws.com/mine:1'" in error["Message"]
    assert "*/sagemaker-xgboost:*" in error["Message"]
    assert "*/sagemaker-scikit-learn:*" in error["Message"]


@pytest.mark.parametrize(
    ("change", "expected"),
    [
        ({"TrainingJobName": "bad_name"}, "failed to satisfy constraint"),
        (
            {
                "ResourceConfig": {
                    "InstanceCount": 2,
                    "InstanceType": "ml.m5.large",
                    "VolumeSizeInGB": 5,
                }
            },
            "not supported locally",
        ),
    ],
)
def test_requests_the_local_runtime_cannot_run_are_rejected(
    sm: Any, change: dict[str, Any], expected: str
) -> None:
    with pytest.raises(ClientError) as err:
        sm.create_training_job(**training_request("job", {}, **change))
    assert err.value.response["Error"]["Code"] == "ValidationException"
    assert expected in err.value.response["Error"]["Message"]


def test_manifest_file_input_is_not_supported_locally(sm: Any) -> None:
    request = processing_request("manifest", f"s3://{BUCKET}/code/")
    request["ProcessingInputs"][0]["S3Input"]["S3DataType"] = "ManifestFile"
    with pytest.raises(ClientError) as err:
        sm.create_processing_job(**request)
    assert err.value.response["Error"]["Code"] == "ValidationException"
    assert "ManifestFile is not supported locally" in err.value.response["Error"]["Message"]


def test_job_whose_owner_process_died_is_marked_failed(sm: Any, sm_cloud: LocalCloud) -> None:
    gone = subprocess.Popen([sys.executable, "-c", "pass"])
    gone.wait()
    arn = sm_cloud.arn("sagemaker", "training-job/orphan")
    doc = jobs.new_job_doc(jobs.KIND_TRAINING, "orphan", arn, training_request("orphan", {}))
    doc["OwnerPid"] = gone.pid
    sm_cloud.metadata.create(jobs.KIND_TRAINING, "orphan", doc)

    job = sm.describe_training_job(TrainingJobName="orphan")

    assert job["TrainingJobStatus"] == "Failed"
    assert job["FailureReason"].startswith(
        f"PlatformError: the local service (pid {gone.pid}) stopped while the job ran; see the log"
    )


# failure reasons by job type --------------------------------------------------------------------
def test_processing_reason_is_the_exit_message_and_no_failure_file_is_read(
    sm: Any, s3: Any, sm_cloud: LocalCloud
) -> None:
    source = """
        import pathlib, sys
        output = pathlib.Path(__file__).resolve().parents[3] / "output"
        (output / "message").write_text("UserError: column 'price' is not numeric")
        (output / "failure").write_text("not read for processing jobs")
        sys.exit(1)
    """
    code = put_script(s3, "code/msg/job.py", source)
    sm.create_processing_job(**processing_request("says-why", code))
    job = wait(sm, "processing", "says-why")

    log = jobs.job_log_path(sm_cloud, "says-why")
    assert job["ProcessingJobStatus"] == "Failed"
    assert job["ExitMessage"] == "UserError: column 'price' is not numeric"
    assert job["FailureReason"] == f"AlgorithmError: script exited with code 1; see the log: {log}"
    text = log.read_text()
    assert "Processing job failed. Reason: AlgorithmError" not in text  # no transitions kept
    assert "training" not in text.lower()


def test_training_reads_no_exit_message(sm: Any, s3: Any, sm_cloud: LocalCloud) -> None:
    put(s3, "data/train/train.csv", "1,2\n")
    source = """
        import os, pathlib, sys
        pathlib.Path(os.environ["SM_OUTPUT_DIR"], "message").write_text("not read for training")
        sys.exit(2)
    """
    sm.create_training_job(**training_request("no-message", script_mode(s3, source)))
    job = wait(sm, "training", "no-message")

    log = jobs.job_log_path(sm_cloud, "no-message")
    assert job["FailureReason"] == f"AlgorithmError: script exited with code 2; see the log: {log}"
    assert job["SecondaryStatusTransitions"][-1]["StatusMessage"] == (
        f"Training job failed. Reason: {job['FailureReason']}"
    )


def test_processing_job_is_worded_as_a_processing_job(
    sm: Any, s3: Any, sm_cloud: LocalCloud
) -> None:
    code = put_script(s3, "code/ok/job.py", "print('ok')\n")
    sm.create_processing_job(**processing_request("worded", code))
    job = wait(sm, "processing", "worded")

    assert job["ProcessingJobStatus"] == "Completed"
    assert "SecondaryStatusTransitions" not in job
    doc = sm_cloud.metadata.get(jobs.KIND_PROCESSING, "worded")
    assert doc["Transitions"] == []
    text = jobs.job_log_path(sm_cloud, "worded").read_text()
    assert "Processing container started. Processing in progress." in text
    assert "Uploading processing outputs" in text
    assert "training" not in text.lower()


# the service's jobs: shutdown and recovery after a crash -----------------------------------------
def _sleeper() -> subprocess.Popen[bytes]:
    """A stand-in for a job's process left behind by a dead service: its own process group."""
    return subprocess.Popen(
        [sys.executable, "-c", "import time; time.sleep(60)"], start_new_session=True
    )


def _orphan_doc(
    sm_cloud: LocalCloud, name: str, owner: int, child: int, started: int | None
) -> None:
    arn = sm_cloud.arn("sagemaker", f"training-job/{name}")
    doc = jobs.new_job_doc(jobs.KIND_TRAINING, name, arn, training_request(name, {}))
    doc.update(OwnerPid=owner, OwnerStartTime=None, ChildPid=child, ChildStartTime=started)
    sm_cloud.metadata.create(jobs.KIND_TRAINING, name, doc)


def test_recover_orphans_kills_the_dead_services_jobs_and_fails_them(
    sm: Any, sm_cloud: LocalCloud
) -> None:
    gone = subprocess.Popen([sys.executable, "-c", "pass"])
    gone.wait()
    ours, stranger = _sleeper(), _sleeper()
    try:
        _orphan_doc(sm_cloud, "left-running", gone.pid, ours.pid, start_time(ours.pid))
        # A pid now used by another process (its start time differs) is never killed.
        _orphan_doc(sm_cloud, "pid-reused", gone.pid, stranger.pid, 1)

        assert jobs.recover_orphans(sm_cloud) == ["left-running", "pid-reused"]

        assert ours.wait(timeout=5) == -signal.SIGKILL
        assert stranger.poll() is None
        job = sm.describe_training_job(TrainingJobName="left-running")
        assert job["TrainingJobStatus"] == "Failed"
        assert job["SecondaryStatus"] == "Failed"
        log = jobs.job_log_path(sm_cloud, "left-running")
        assert job["FailureReason"] == (
            f"PlatformError: the local service (pid {gone.pid}) stopped while the job ran; "
            f"see the log: {log}"
        )
        assert jobs.recover_orphans(sm_cloud) == []
    finally:
        for proc in (ours, stranger):
            proc.kill()
            proc.wait()


def test_recover_orphans_leaves_the_jobs_this_service_runs(
    sm: Any, s3: Any, sm_cloud: LocalCloud
) -> None:
    put(s3, "data/train/train.csv", "1,2\n")
    source = "import time\nprint('started', flush=True)\ntime.sleep(30)\n"
    sm.create_training_job(**training_request("ours", script_mode(s3, source)))

    assert jobs.recover_orphans(sm_cloud) == []
    assert sm.describe_training_job(TrainingJobName="ours")["TrainingJobStatus"] == "InProgress"
    sm.stop_training_job(TrainingJobName="ours")
    assert wait(sm, "training", "ours")["TrainingJobStatus"] == "Stopped"


def test_shutdown_all_ends_the_running_jobs_as_platform_errors(
    sm: Any, s3: Any, sm_cloud: LocalCloud
) -> None:
    put(s3, "data/train/train.csv", "1,2\n")
    source = "import time\nprint('started', flush=True)\ntime.sleep(30)\n"
    sm.create_training_job(**training_request("at-shutdown", script_mode(s3, source)))
    log = jobs.job_log_path(sm_cloud, "at-shutdown")
    deadline = time.monotonic() + 5
    while not (log.is_file() and "started" in log.read_text()):
        assert time.monotonic() < deadline, "the script never started"
        time.sleep(0.02)
    child = sm_cloud.metadata.get(jobs.KIND_TRAINING, "at-shutdown")["ChildPid"]

    assert jobs.shutdown_all(sm_cloud) == ["at-shutdown"]

    job = sm.describe_training_job(TrainingJobName="at-shutdown")
    assert job["TrainingJobStatus"] == "Failed"
    assert job["FailureReason"] == (
        f"PlatformError: the local service (pid {os.getpid()}) shut down while the job ran; "
        f"see the log: {log}"
    )
    assert start_time(child) is None  # the job's process is gone (and reaped)
    assert jobs.shutdown_all(sm_cloud) == []


# models -----------------------------------------------------------------------------------------
MODEL_DATA = f"s3://{BUCKET}/runs/r1/training/r1-train/output/model.tar.gz"


def create_model(sm: Any, name: str) -> dict[str, Any]:
    return sm.create_model(  # type: ignore[no-any-return]
        ModelName=name,
        PrimaryContainer={"Image": XGBOOST, "ModelDataUrl": MODEL_DATA},
        ExecutionRoleArn=ROLE,
    )


def test_create_describe_list_and_delete_a_model(sm: Any) -> None:
    arn = create_model(sm, "Run-1-Model")["ModelArn"]
    assert arn == "arn:aws:sagemaker:us-east-1:123456789012:model/run-1-model"
    model = sm.describe_model(ModelName="Run-1-Model")
    model.pop("ResponseMetadata")
    created = model.pop("CreationTime")
    assert created.tzinfo is not None
    assert model == {
        "ModelName": "Run-1-Model",
        "ModelArn": arn,
        "PrimaryContainer": {"Image": XGBOOST, "ModelDataUrl": MODEL_DATA},
        "ExecutionRoleArn": ROLE,
        "EnableNetworkIsolation": False,
    }
    create_model(sm, "other")
    listed = sm.list_models(SortBy="Name", SortOrder="Ascending")["Models"]
    assert [m["ModelName"] for m in listed] == ["Run-1-Model", "other"]
    assert [m["ModelName"] for m in sm.list_models(NameContains="Run")["Models"]] == ["Run-1-Model"]
    page = sm.list_models(MaxResults=1)
    assert [m["ModelName"] for m in page["Models"]] == ["other"]  # newest first
    assert page["NextToken"]
    sm.delete_model(ModelName="Run-1-Model")
    assert [m["ModelName"] for m in sm.list_models()["Models"]] == ["other"]


def test_model_errors_are_sagemakers(sm: Any) -> None:
    arn = "arn:aws:sagemaker:us-east-1:123456789012:model/missing"
    for call in (sm.describe_model, sm.delete_model):
        with pytest.raises(ClientError) as err:
            call(ModelName="missing")
        assert err.value.response["Error"]["Code"] == "ValidationException"
        assert err.value.response["Error"]["Message"] == f'Could not find model "{arn}".'
    create_model(sm, "twice")
    with pytest.raises(ClientError) as err:
        create_model(sm, "twice")
    assert err.value.response["Error"]["Message"] == (
        "Cannot create already existing model "
        '"arn:aws:sagemaker:us-east-1:123456789012:model/twice".'
    )
    with pytest.raises(ClientError) as err:
        sm.create_model(ModelName="bare", ExecutionRoleArn=ROLE)
    assert "PrimaryContainer or Containers" in err.value.response["Error"]["Message"]
    with pytest.raises(ClientError) as err:
        sm.create_model(ModelName="bad_name", PrimaryContainer={"Image": XGBOOST})
    assert err.value.response["Error"]["Code"] == "ValidationException"
