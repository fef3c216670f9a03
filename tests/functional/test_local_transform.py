"""Batch transform jobs for real, through boto3: CreateTransformJob runs the model's handlers.

The pipeline's model with the project's inference code in script mode (``endpoint_models``), the
XGBoost container's default handler, and a small probe script whose answers say how the job
called it (the rows in each call, its environment).
"""

from __future__ import annotations

import csv
import gzip
import io
import json
import re
import tarfile
import textwrap
import time
from typing import Any

import boto3
import numpy as np
import pytest
from botocore.exceptions import ClientError
from endpoint_models import BUCKET, put_inference_code, put_model, train_booster

from sfn_mlops.local.cloud import LocalCloud
from sfn_mlops.local.jobs import transform

IMAGE = "683313688378.dkr.ecr.us-east-1.amazonaws.com/sagemaker-xgboost:3.0-5"
ROLE = "arn:aws:iam::123456789012:role/sagemaker"
CODES = {"F": 0.0, "I": 1.0, "M": 2.0}
#: Answers each row with the number of rows its call had; PROBE_* in the environment change it.
PROBE = """
import os, time

calls = []

def input_fn(body, content_type):
    return body.decode().splitlines()

def predict_fn(rows, model):
    calls.append(len(rows))
    time.sleep(float(os.environ.get("PROBE_SLEEP", "0")))
    if os.environ.get("PROBE_FAIL_FIRST") and len(calls) == 1:
        raise RuntimeError("a transient failure")
    return rows

def output_fn(rows, accept):
    end = "" if os.environ.get("PROBE_NO_NEWLINE") else "\\n"
    if os.environ.get("PROBE_ECHO"):
        return "\\n".join(rows) + end, "text/csv"
    return "\\n".join(str(len(rows)) for _ in rows) + end, "text/csv"
"""


@pytest.fixture(scope="module")
def booster() -> Any:
    return train_booster()


@pytest.fixture
def sm(cloud: LocalCloud, monkeypatch: pytest.MonkeyPatch) -> Any:
    monkeypatch.setenv("AWS_DEFAULT_REGION", "us-east-1")
    monkeypatch.setenv("AWS_EC2_METADATA_DISABLED", "true")
    return boto3.client("sagemaker")


@pytest.fixture
def s3(sm: Any) -> Any:
    return boto3.client("s3")


def create_model(
    sm: Any, cloud: LocalCloud, booster: Any, name: str = "m1", env: Any = "inference"
) -> str:
    """A SageMaker model of ``booster``: ``env`` "inference" (the project's code in script
    mode), "probe" (PROBE), or None (the container's default handler)."""
    url = put_model(cloud, name, booster)
    if env == "inference":
        env = put_inference_code(cloud)
    elif env == "probe":
        buffer = io.BytesIO()
        with tarfile.open(fileobj=buffer, mode="w:gz") as tar:
            data = textwrap.dedent(PROBE).encode()
            info = tarfile.TarInfo("probe.py")
            info.size = len(data)
            tar.addfile(info, io.BytesIO(data))
        cloud.objects.put_bytes(BUCKET, "probe/sourcedir.tar.gz", buffer.getvalue())
        env = {
            "SAGEMAKER_PROGRAM": "probe.py",
            "SAGEMAKER_SUBMIT_DIRECTORY": f"s3://{BUCKET}/probe/sourcedir.tar.gz",
        }
    container = {"Image": IMAGE, "ModelDataUrl": url, "Environment": env or {}}
    sm.create_model(ModelName=name, PrimaryContainer=container, ExecutionRoleArn=ROLE)
    return name


def request(name: str, model: str = "m1", prefix: str = "in/", **overrides: Any) -> dict:
    """A CSV transform of s3://models/<prefix> to s3://models/out/<name>, by line."""
    job: dict[str, Any] = {
        "TransformJobName": name,
        "ModelName": model,
        "TransformInput": {
            "DataSource": {
                "S3DataSource": {"S3DataType": "S3Prefix", "S3Uri": f"s3://{BUCKET}/{prefix}"}
            },
            "ContentType": "text/csv",
            "SplitType": "Line",
        },
        "TransformOutput": {
            "S3OutputPath": f"s3://{BUCKET}/out/{name}",
            "Accept": "text/csv",
            "AssembleWith": "Line",
        },
        "TransformResources": {"InstanceType": "ml.m5.large", "InstanceCount": 1},
    }
    for key, value in overrides.items():
        if isinstance(value, dict) and isinstance(job.get(key), dict):
            job[key] = {**job[key], **value}
        else:
            job[key] = value
    return job


def wait(sm: Any, name: str, timeout: float = 60.0) -> dict[str, Any]:
    deadline = time.monotonic() + timeout
    while True:
        job = sm.describe_transform_job(TransformJobName=name)
        if job["TransformJobStatus"] in ("Completed", "Failed", "Stopped"):
            return job  # type: ignore[no-any-return]
        assert time.monotonic() < deadline, job
        time.sleep(0.05)


def run(sm: Any, **job: Any) -> dict[str, Any]:
    sm.create_transform_job(**job)
    return wait(sm, job["TransformJobName"])


def keys(s3: Any, prefix: str) -> list[str]:
    listed = s3.list_objects_v2(Bucket=BUCKET, Prefix=prefix).get("Contents", [])
    return sorted(item["Key"] for item in listed)


def body(s3: Any, key: str) -> str:
    return s3.get_object(Bucket=BUCKET, Key=key)["Body"].read().decode()  # type: ignore[no-any-return]


def rows_of(rng: np.random.Generator, count: int) -> tuple[str, np.ndarray]:
    """``count`` raw rows (sex, length, weight) as CSV, and the matrix the model scores."""
    sexes = rng.choice(list(CODES), count)
    values = np.round(rng.random((count, 2)), 3)
    text = "".join(f"{s},{a},{b}\n" for s, (a, b) in zip(sexes, values, strict=True))
    matrix = np.column_stack([[CODES[s] for s in sexes], values]).astype(np.float32)
    return text, matrix


def log_of(cloud: LocalCloud, name: str) -> str:
    path = cloud.jobs_dir / name / "job.log"
    return path.read_text() if path.is_file() else ""


# ------------------------------------------------------------------ what a job writes
def test_each_object_becomes_its_out_object_scored_by_the_models_own_handlers(
    sm: Any, s3: Any, cloud: LocalCloud, booster: Any
) -> None:
    create_model(sm, cloud, booster)
    rng = np.random.default_rng(1)
    first, first_matrix = rows_of(rng, 5)
    second, second_matrix = rows_of(rng, 300)
    s3.put_object(Bucket=BUCKET, Key="in/a.csv", Body=first.encode())
    s3.put_object(Bucket=BUCKET, Key="in/sub/b.csv", Body=second.encode())

    job = run(sm, **request("t1", BatchStrategy="MultiRecord", MaxPayloadInMB=1))

    assert job["TransformJobStatus"] == "Completed", job.get("FailureReason")
    assert keys(s3, "out/t1/") == ["out/t1/a.csv.out", "out/t1/sub/b.csv.out"]
    for key, matrix in (("out/t1/a.csv.out", first_matrix), ("out/t1/sub/b.csv.out",
                                                               second_matrix)):  # fmt: skip
        predicted = [float(v) for v in body(s3, key).splitlines()]
        assert np.allclose(predicted, booster.inplace_predict(matrix), atol=1e-6)
    assert job["TransformInput"]["CompressionType"] == "None"  # SageMaker's defaults, echoed
    assert (job["BatchStrategy"], job["MaxPayloadInMB"], job["ModelName"]) == (
        "MultiRecord",
        1,
        "m1",
    )
    assert job["CreationTime"] <= job["TransformStartTime"] <= job["TransformEndTime"]
    assert "[sagemaker logs]: MaxConcurrentTransforms=1, MaxPayloadInMB=1, " in log_of(cloud, "t1")

    listed = sm.list_transform_jobs(StatusEquals="Completed", NameContains="t")
    summary = listed["TransformJobSummaries"][0]
    assert (summary["TransformJobName"], summary["TransformJobStatus"]) == ("t1", "Completed")
    assert sm.list_transform_jobs(StatusEquals="Failed")["TransformJobSummaries"] == []


def test_the_container_default_handler_scores_numeric_csv(
    sm: Any, s3: Any, cloud: LocalCloud, booster: Any
) -> None:
    create_model(sm, cloud, booster, env=None)
    rng = np.random.default_rng(2)
    _, matrix = rows_of(rng, 50)
    text = "".join(",".join(str(v) for v in row) + "\n" for row in matrix.tolist())
    s3.put_object(Bucket=BUCKET, Key="in/numbers.csv", Body=text.encode())

    job = run(sm, **request("t1"))

    assert job["TransformJobStatus"] == "Completed", job.get("FailureReason")
    predicted = [float(v) for v in body(s3, "out/t1/numbers.csv.out").splitlines()]
    assert np.allclose(predicted, booster.inplace_predict(matrix), atol=1e-6)


def test_multi_record_batches_are_whole_lines_up_to_max_payload(
    sm: Any, s3: Any, cloud: LocalCloud, booster: Any
) -> None:
    create_model(sm, cloud, booster, env="probe")
    lines = [f"{i},{'x' * (i % 40)}\n" for i in range(60_000)]  # 1.9 MiB in all
    s3.put_object(Bucket=BUCKET, Key="in/big.csv", Body="".join(lines).encode())

    job = run(sm, **request("t1", MaxPayloadInMB=1))

    assert job["TransformJobStatus"] == "Completed", job.get("FailureReason")
    sizes = [int(v) for v in body(s3, "out/t1/big.csv.out").splitlines()]
    calls, start = [], 0
    while start < len(sizes):  # each call's rows answered its row count
        calls.append(sizes[start])
        start += sizes[start]
    assert sum(calls) == len(lines) and len(calls) == 2
    first = sum(len(line) for line in lines[: calls[0]])
    assert first <= transform.MB < first + len(lines[calls[0]])  # as many as fit, no more


def test_concurrent_transforms_keep_the_records_in_order(
    sm: Any, s3: Any, cloud: LocalCloud, booster: Any
) -> None:
    create_model(sm, cloud, booster, env="probe")
    text = "".join(f"{i:07d},{'x' * 20}\n" for i in range(120_000))  # 3.4 MB: 4 payloads
    s3.put_object(Bucket=BUCKET, Key="in/a.csv", Body=text.encode())

    job = run(
        sm,
        **request(
            "t1", MaxPayloadInMB=1, MaxConcurrentTransforms=3, Environment={"PROBE_ECHO": "1"}
        ),
    )

    assert job["TransformJobStatus"] == "Completed", job.get("FailureReason")
    assert job["MaxConcurrentTransforms"] == 3
    assert body(s3, "out/t1/a.csv.out") == text
    assert "MaxConcurrentTransforms=3, MaxPayloadInMB=1, BatchStrategy=MULTI_RECORD" in log_of(
        cloud, "t1"
    )


def test_split_type_none_sends_each_object_whole_up_to_max_payload(
    sm: Any, s3: Any, cloud: LocalCloud, booster: Any
) -> None:
    create_model(sm, cloud, booster, env="probe")
    s3.put_object(Bucket=BUCKET, Key="in/a.csv", Body=b"1\n2\n3\n")
    s3.put_object(Bucket=BUCKET, Key="big/b.csv", Body=b"1\n" * (transform.MB // 2 + 1))
    split_none = {"SplitType": "None"}

    job = run(sm, **request("t1", TransformInput=split_none))
    big = run(sm, **request("t2", prefix="big/", MaxPayloadInMB=1, TransformInput=split_none))

    assert job["TransformJobStatus"] == "Completed", job.get("FailureReason")
    assert body(s3, "out/t1/a.csv.out") == "3\n3\n3\n"  # one call with the three records
    assert big["TransformJobStatus"] == "Failed"
    assert big["FailureReason"].startswith(
        f"ClientError: s3://{BUCKET}/big/b.csv: the object is larger than MaxPayloadInMB (1 MB = "
        "1048576 bytes). Set SplitType to Line to send it in mini-batches"
    )


def test_single_record_calls_per_line_and_assemble_none_concatenates(
    sm: Any, s3: Any, cloud: LocalCloud, booster: Any
) -> None:
    create_model(sm, cloud, booster, env="probe")
    s3.put_object(Bucket=BUCKET, Key="in/a.csv", Body=b"1\n2\n\n3")

    job = run(
        sm,
        **request(
            "t1",
            BatchStrategy="SingleRecord",
            Environment={"PROBE_NO_NEWLINE": "1"},  # the job's Environment reaches the model
            TransformOutput={"AssembleWith": "None"},
        ),
    )

    assert job["TransformJobStatus"] == "Completed", job.get("FailureReason")
    assert job["Environment"] == {"PROBE_NO_NEWLINE": "1"}
    assert body(s3, "out/t1/a.csv.out") == "111"  # three records, one call each, no separator


def test_gzip_objects_and_a_manifest_file(
    sm: Any, s3: Any, cloud: LocalCloud, booster: Any
) -> None:
    create_model(sm, cloud, booster, env=None)
    s3.put_object(Bucket=BUCKET, Key="data/x/one.csv.gz", Body=gzip.compress(b"2,0.5,0.3\n"))
    s3.put_object(Bucket=BUCKET, Key="data/y/two.csv.gz", Body=gzip.compress(b"0,0.1,0.9\n"))
    manifest = [{"prefix": f"s3://{BUCKET}/data/"}, "x/one.csv.gz", "y/two.csv.gz"]
    s3.put_object(Bucket=BUCKET, Key="lists/batch.manifest", Body=json.dumps(manifest).encode())
    source = {"S3DataType": "ManifestFile", "S3Uri": f"s3://{BUCKET}/lists/batch.manifest"}

    job = run(
        sm,
        **request(
            "t1",
            TransformInput={"DataSource": {"S3DataSource": source}, "CompressionType": "Gzip"},
        ),
    )

    assert job["TransformJobStatus"] == "Completed", job.get("FailureReason")
    assert keys(s3, "out/t1/") == ["out/t1/x/one.csv.gz.out", "out/t1/y/two.csv.gz.out"]
    expected = booster.inplace_predict(np.array([[2, 0.5, 0.3]], np.float32))[0]
    assert np.isclose(float(body(s3, "out/t1/x/one.csv.gz.out")), expected, atol=1e-6)


# ------------------------------------------------------------------ DataProcessing
@pytest.mark.parametrize(
    ("ids", "processing"),
    [
        (1, {"InputFilter": "$[1:]", "JoinSource": "Input", "OutputFilter": "$[0,-1]"}),
        # AWS: a slice's end is included ("$[1:4] specifies the second through fifth columns")
        (2, {"InputFilter": "$[2:]", "JoinSource": "Input", "OutputFilter": "$[0:1,-1]"}),
    ],
)
def test_data_processing_keeps_the_ids_beside_the_prediction(
    sm: Any,
    s3: Any,
    cloud: LocalCloud,
    booster: Any,
    ids: int,
    processing: dict[str, str],
) -> None:
    create_model(sm, cloud, booster)
    raw, matrix = rows_of(np.random.default_rng(3), 20)
    lines = [",".join([f"id{i}", "x"][:ids]) + "," + row for i, row in enumerate(raw.split())]
    s3.put_object(Bucket=BUCKET, Key="in/ids.csv", Body=("\n".join(lines) + "\n").encode())

    job = run(sm, **request("t1", DataProcessing=processing))

    assert job["TransformJobStatus"] == "Completed", job.get("FailureReason")
    assert job["DataProcessing"] == processing
    out = list(csv.reader(io.StringIO(body(s3, "out/t1/ids.csv.out"))))
    assert [row[:ids] for row in out] == [line.split(",")[:ids] for line in lines]
    assert all(len(row) == ids + 1 for row in out)
    predicted = [float(row[-1]) for row in out]
    assert np.allclose(predicted, booster.inplace_predict(matrix), atol=1e-6)


def test_join_without_filters_appends_the_prediction_to_the_whole_record(
    sm: Any, s3: Any, cloud: LocalCloud, booster: Any
) -> None:
    create_model(sm, cloud, booster)
    s3.put_object(Bucket=BUCKET, Key="in/a.csv", Body=b'M,0.5,0.3\n"F",0.1,0.9\n')

    job = run(sm, **request("t1", DataProcessing={"JoinSource": "Input"}))

    assert job["TransformJobStatus"] == "Completed", job.get("FailureReason")
    out = list(csv.reader(io.StringIO(body(s3, "out/t1/a.csv.out"))))
    assert [row[:3] for row in out] == [["M", "0.5", "0.3"], ["F", "0.1", "0.9"]]


@pytest.mark.parametrize(
    ("expression", "row", "selected"),
    [
        ("$", list("abcde"), None),
        ("$[*]", list("abcde"), list("abcde")),
        ("$[1:]", list("abcde"), list("bcde")),
        ("$[1:3]", list("abcde"), list("bcd")),
        ("$[:1]", list("abcde"), list("ab")),
        ("$[0,3]", list("abcde"), list("ad")),
        ("$[-1]", list("abcde"), list("e")),
        ("$[0, 2:-2]", list("abcde"), list("acd")),
    ],
)
def test_csv_jsonpath_selects_as_sagemaker_documents(
    expression: str, row: list[str], selected: list[str] | None
) -> None:
    selection = transform.parse_filter(expression, "InputFilter", "text/csv")
    assert (selection.apply(row) if selection else None) == selected


def test_csv_jsonpath_index_outside_the_record_is_an_error() -> None:
    selection = transform.parse_filter("$[0,5]", "OutputFilter", "text/csv")
    assert selection is not None
    with pytest.raises(transform.FilterError, match="index 5 is not within the 3 columns"):
        selection.apply(["a", "b", "c"])


# ------------------------------------------------------------------ what SageMaker rejects
@pytest.mark.parametrize(
    ("overrides", "code", "message"),
    [
        (
            {"ModelName": "nope"},
            "ValidationException",
            'Could not find model "arn:aws:sagemaker:us-east-1:123456789012:model/nope".',
        ),
        (
            {
                "TransformInput": {
                    "DataSource": {
                        "S3DataSource": {"S3DataType": "S3Prefix", "S3Uri": f"s3://{BUCKET}/empty/"}
                    }
                }
            },  # fmt: skip
            "ValidationException",
            f'No S3 objects found under S3 URL "s3://{BUCKET}/empty/" given in input data source. '
            "Please ensure that the bucket exists in the selected region (us-east-1), that objects "
            f'exist under that S3 prefix, and that the role "{ROLE}" has "s3:ListBucket" '
            f'permissions on bucket "{BUCKET}".',
        ),
        (
            {"DataProcessing": {"InputFilter": "$.features"}},
            "ValidationException",
            'Invalid InputFilter: "$.features". Unexpected "." in JsonPath. Supported operators '
            "for \"text/csv\" are ['$', '[', ']', '*', ',', ':', '-', ' ']",
        ),
        (
            {"DataProcessing": {"JoinSource": "Input", "OutputFilter": "$[0;1]"}},
            "ValidationException",
            'Invalid OutputFilter: "$[0;1]". Unexpected ";" in JsonPath.',
        ),
        (
            {"MaxPayloadInMB": 101},
            "ValidationException",
            "MaxPayloadInMB (101) must not be greater than 100 MB.",
        ),
        (
            {"MaxPayloadInMB": 30, "MaxConcurrentTransforms": 4},
            "ValidationException",
            "MaxConcurrentTransforms x MaxPayloadInMB (4 x 30 = 120) must not be greater",
        ),
        (
            {
                "TransformInput": {"ContentType": "application/json"},
                "DataProcessing": {"InputFilter": "$.features"},
            },  # fmt: skip
            "ValidationException",
            "DataProcessing.InputFilter '$.features' with ContentType 'application/json' (JSON "
            "data processing; text/csv is emulated) is not supported locally",
        ),
        (
            {"TransformInput": {"SplitType": "RecordIO"}},
            "ValidationException",
            "TransformInput.SplitType RecordIO is not supported locally",
        ),
        (
            {"TransformResources": {"InstanceType": "ml.m5.large", "InstanceCount": 2}},
            "ValidationException",
            "TransformResources.InstanceCount=2 (the local runtime runs one instance)",
        ),
    ],
)
def test_create_rejects_what_sagemaker_rejects(
    sm: Any,
    s3: Any,
    cloud: LocalCloud,
    booster: Any,
    overrides: dict[str, Any],
    code: str,
    message: str,
) -> None:
    create_model(sm, cloud, booster)
    s3.put_object(Bucket=BUCKET, Key="in/a.csv", Body=b"M,0.5,0.3\n")
    with pytest.raises(ClientError) as caught:
        sm.create_transform_job(**request("t1", **overrides))
    assert caught.value.response["Error"]["Code"] == code
    assert message in caught.value.response["Error"]["Message"]
    assert sm.list_transform_jobs()["TransformJobSummaries"] == []


def test_names_are_unique_and_unknown_jobs_are_not_found(
    sm: Any, s3: Any, cloud: LocalCloud, booster: Any
) -> None:
    create_model(sm, cloud, booster)
    s3.put_object(Bucket=BUCKET, Key="in/a.csv", Body=b"M,0.5,0.3\n")
    run(sm, **request("t1"))
    with pytest.raises(ClientError) as caught:
        sm.create_transform_job(**request("t1"))
    assert caught.value.response["Error"]["Code"] == "ResourceInUse"
    for call in (sm.describe_transform_job, sm.stop_transform_job):
        with pytest.raises(ClientError) as caught:
            call(TransformJobName="nope")
        assert caught.value.response["Error"]["Message"] == "Requested resource not found."
    with pytest.raises(ClientError) as caught:
        sm.stop_transform_job(TransformJobName="t1")
    assert "the transform job is in status Completed" in caught.value.response["Error"]["Message"]


# ------------------------------------------------------------------ failures
def test_an_output_bucket_that_does_not_exist_fails_the_job_before_any_work(
    sm: Any, s3: Any, cloud: LocalCloud, booster: Any
) -> None:
    create_model(sm, cloud, booster)
    s3.put_object(Bucket=BUCKET, Key="in/a.csv", Body=b"M,0.5,0.3\n")

    job = run(sm, **request("t1", TransformOutput={"S3OutputPath": "s3://no-such-bucket/out"}))

    assert job["TransformJobStatus"] == "Failed"
    assert job["FailureReason"] == (
        "ClientError: cannot write to the output path s3://no-such-bucket/out: The specified "
        "bucket does not exist: no-such-bucket"
    )
    assert "running:" not in log_of(cloud, "t1")  # the model was never loaded


def test_a_model_error_fails_its_object_names_it_and_the_other_objects_are_kept(
    sm: Any, s3: Any, cloud: LocalCloud, booster: Any
) -> None:
    create_model(sm, cloud, booster)
    s3.put_object(Bucket=BUCKET, Key="in/a-good.csv", Body=b"M,0.5,0.3\n")
    s3.put_object(Bucket=BUCKET, Key="in/b-bad.csv", Body=b"M,0.5,0.3\nF,0.1\n")

    job = run(sm, **request("t1"))

    assert job["TransformJobStatus"] == "Failed"
    reason = job["FailureReason"]
    assert reason.startswith(
        f"ClientError: 400 from the model for s3://{BUCKET}/in/b-bad.csv (lines 1-2): row 2 has "
        "2 values; expected 3 in this order: ['sex', 'length', 'weight']; see the log: "
    )
    # SageMaker: no output for the object that failed; the others' outputs are kept.
    assert keys(s3, "out/t1/") == ["out/t1/a-good.csv.out"]
    log = log_of(cloud, "t1")
    assert f"[sagemaker logs]: {BUCKET}/in/b-bad.csv: ClientError: 400\n" in log
    assert f"[sagemaker logs]: {BUCKET}/in/b-bad.csv: row 2 has 2 values" in log


def test_a_record_larger_than_max_payload_fails_the_object(
    sm: Any, s3: Any, cloud: LocalCloud, booster: Any
) -> None:
    create_model(sm, cloud, booster, env="probe")
    big = b"1\n" + b"x" * (transform.MB + 10) + b"\n2\n"
    s3.put_object(Bucket=BUCKET, Key="in/a.csv", Body=big)

    job = run(sm, **request("t1", MaxPayloadInMB=1))

    assert job["TransformJobStatus"] == "Failed"
    assert job["FailureReason"].startswith(
        f"ClientError: s3://{BUCKET}/in/a.csv: the record at line 2 is larger than "
        "MaxPayloadInMB (1 MB = 1048576 bytes). Raise MaxPayloadInMB (at most 100) or split the "
        "record.; see the log: "
    )
    assert keys(s3, "out/t1/") == []


def test_a_model_error_is_retried_as_model_client_config_says(
    sm: Any, s3: Any, cloud: LocalCloud, booster: Any
) -> None:
    create_model(sm, cloud, booster, env="probe")
    s3.put_object(Bucket=BUCKET, Key="in/a.csv", Body=b"1\n2\n")
    env = {"PROBE_FAIL_FIRST": "1"}

    ok = run(sm, **request("t1", Environment=env))
    failed = run(
        sm, **request("t2", Environment=env, ModelClientConfig={"InvocationsMaxRetries": 0})
    )

    assert ok["TransformJobStatus"] == "Completed", ok.get("FailureReason")
    assert "500 from the model; retrying (1)" in log_of(cloud, "t1")
    assert failed["TransformJobStatus"] == "Failed"
    assert "AlgorithmError: 500 from the model for" in failed["FailureReason"]
    assert "RuntimeError: a transient failure" in failed["FailureReason"]


def test_an_invocation_past_its_timeout_fails_the_job(
    sm: Any, s3: Any, cloud: LocalCloud, booster: Any
) -> None:
    create_model(sm, cloud, booster, env="probe")
    s3.put_object(Bucket=BUCKET, Key="in/a.csv", Body=b"1\n")

    job = run(
        sm,
        **request(
            "t1",
            Environment={"PROBE_SLEEP": "30"},
            ModelClientConfig={"InvocationsTimeoutInSeconds": 1},
        ),
    )

    assert job["TransformJobStatus"] == "Failed"
    assert job["FailureReason"].startswith(
        f"ClientError: s3://{BUCKET}/in/a.csv (line 1): the model did not answer within "
        "InvocationsTimeoutInSeconds (1 s)"
    )
    assert keys(s3, "out/t1/") == []


def test_stop_ends_the_job_and_publishes_nothing(
    sm: Any, s3: Any, cloud: LocalCloud, booster: Any
) -> None:
    create_model(sm, cloud, booster, env="probe")
    s3.put_object(Bucket=BUCKET, Key="in/a.csv", Body=b"1\n")
    s3.put_object(Bucket=BUCKET, Key="in/b.csv", Body=b"2\n")
    sm.create_transform_job(**request("t1", Environment={"PROBE_SLEEP": "30"}))
    deadline = time.monotonic() + 30
    while "MaxConcurrentTransforms" not in log_of(cloud, "t1"):  # the model is loaded: it runs
        assert time.monotonic() < deadline
        time.sleep(0.05)

    sm.stop_transform_job(TransformJobName="t1")

    assert sm.describe_transform_job(TransformJobName="t1")["TransformJobStatus"] == "Stopping"
    job = wait(sm, "t1")
    assert job["TransformJobStatus"] == "Stopped"
    assert keys(s3, "out/t1/") == []  # StopTransformJob: "doesn't store the job's output"


# ------------------------------------------------------------------ batch data capture
def test_data_capture_writes_manifests_of_the_inputs_and_outputs_and_inference_ids(
    sm: Any, s3: Any, cloud: LocalCloud, booster: Any
) -> None:
    create_model(sm, cloud, booster)
    s3.put_object(Bucket=BUCKET, Key="in/a.csv", Body=b"M,0.5,0.3\nF,0.1,0.9\n")
    capture = {"DestinationS3Uri": f"s3://{BUCKET}/capture", "GenerateInferenceId": True}

    job = run(sm, **request("t1", DataCaptureConfig=capture))

    assert job["TransformJobStatus"] == "Completed", job.get("FailureReason")
    hour = job["TransformStartTime"].astimezone(dt_utc()).strftime("%Y/%m/%d/%H")
    assert keys(s3, "capture/") == [
        f"capture/input/{hour}/t1.jsonl",
        f"capture/output/{hour}/t1.jsonl",
    ]
    assert json.loads(body(s3, f"capture/input/{hour}/t1.jsonl")) == [
        {"prefix": f"s3://{BUCKET}/in/"},
        "a.csv",
    ]
    assert json.loads(body(s3, f"capture/output/{hour}/t1.jsonl")) == [
        {"prefix": f"s3://{BUCKET}/out/t1/"},
        "a.csv.out",
    ]
    started = job["TransformStartTime"].astimezone(dt_utc()).strftime("%Y-%m-%dT%H:%M:%SZ")
    rows = list(csv.reader(io.StringIO(body(s3, "out/t1/a.csv.out"))))
    assert [len(row) for row in rows] == [3, 3]  # prediction, inference id, job start (UTC)
    assert all(re.fullmatch(r"[0-9a-f-]{36}", row[1]) and row[2] == started for row in rows)
    assert rows[0][1] != rows[1][1]


def dt_utc() -> Any:
    import datetime as dt

    return dt.timezone.utc


# ------------------------------------------------------------------ Step Functions .sync
def test_create_transform_job_sync_returns_the_job_and_a_failure_is_task_failed(
    sm: Any, s3: Any, cloud: LocalCloud, booster: Any
) -> None:
    create_model(sm, cloud, booster)
    s3.put_object(Bucket=BUCKET, Key="in/a.csv", Body=b"M,0.5,0.3\n")
    s3.put_object(Bucket=BUCKET, Key="bad/a.csv", Body=b"M,0.5\n")
    parameters = request("x", prefix="in/")
    del parameters["TransformJobName"]
    parameters["TransformJobName.$"] = "$.name"
    parameters["TransformInput"]["DataSource"]["S3DataSource"] = {
        "S3DataType": "S3Prefix",
        "S3Uri.$": "$.data",
    }
    definition = {
        "StartAt": "Transform",
        "States": {
            "Transform": {
                "Type": "Task",
                "Resource": "arn:aws:states:::sagemaker:createTransformJob.sync",
                "Parameters": parameters,
                "Catch": [{"ErrorEquals": ["States.ALL"], "Next": "Caught"}],
                "End": True,
            },
            "Caught": {"Type": "Pass", "End": True},
        },
    }
    sfn = boto3.client("stepfunctions")
    arn = sfn.create_state_machine(name="batch", definition=json.dumps(definition), roleArn=ROLE)[
        "stateMachineArn"
    ]

    def execute(name: str, data: str) -> Any:
        payload = {"name": name, "data": f"s3://{BUCKET}/{data}"}
        started = sfn.start_execution(stateMachineArn=arn, input=json.dumps(payload))
        cloud.service("sfn").wait(started["executionArn"])
        return json.loads(sfn.describe_execution(executionArn=started["executionArn"])["output"])

    done = execute("good", "in/")
    assert done["TransformJobStatus"] == "Completed"
    assert done["TransformJobName"] == "good"
    assert done["TransformOutput"]["S3OutputPath"] == f"s3://{BUCKET}/out/x"
    failed = execute("bad", "bad/")
    assert failed["Error"] == "States.TaskFailed"
    cause = json.loads(failed["Cause"])
    assert cause["TransformJobStatus"] == "Failed"
    assert "row 1 has 2 values; expected 3" in cause["FailureReason"]
