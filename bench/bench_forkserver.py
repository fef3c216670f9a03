"""Fork server vs subprocess: how long a job takes to start, and a whole abalone training job.

Two figures, each the median of several runs, fork server and subprocess alternating:
- start latency: from asking for the job's process to the script's first line, and to the
  script having imported what the jobs import (jobkit, pandas, xgboost without scikit-learn);
- the abalone training job (containers/training/train.py on the pipeline's own preprocessed
  abalone data and default hyperparameters), from CreateTrainingJob to Completed, run by the
  job runner in this process (no CLI, no service).
Usage: python bench/bench_forkserver.py [--repeats N]
"""

from __future__ import annotations

import argparse
import io
import json
import os
import statistics
import sys
import tarfile
import tempfile
import time
from pathlib import Path

REPO = Path(__file__).resolve().parents[1]
CONTAINERS = REPO / "containers"
for _key, _value in (("AWS_DEFAULT_REGION", "us-east-1"), ("AWS_EC2_METADATA_DISABLED", "true")):
    os.environ.setdefault(_key, _value)

from sfn_mlops.config import load_config  # noqa: E402
from sfn_mlops.data import example_dataset  # noqa: E402
from sfn_mlops.local import jobs  # noqa: E402
from sfn_mlops.local.cloud import LocalCloud  # noqa: E402
from sfn_mlops.local.jobs import forkserver, launch  # noqa: E402
from sfn_mlops.local.services.sagemaker import SageMaker  # noqa: E402

NO_FORK_SERVER = "SFN_MLOPS_NO_FORK_SERVER"
BUCKET = "bench"
XGBOOST = "683313688378.dkr.ecr.us-east-1.amazonaws.com/sagemaker-xgboost:3.0-5"
PROBE = """import time
first = time.time()
import sys
sys.path.insert(0, {common!r})
import jobkit, pandas
jobkit.import_xgboost()
print(first, time.time())
"""
MODES = ("fork server", "subprocess")


def set_mode(mode: str) -> None:
    if mode == "subprocess":
        os.environ[NO_FORK_SERVER] = "1"
    else:
        os.environ.pop(NO_FORK_SERVER, None)


def start_latency(folder: Path, mode: str) -> tuple[float, float]:
    """Seconds from asking for the process to the script's first line and to its imports."""
    (folder / "probe.py").write_text(PROBE.format(common=str(CONTAINERS / "common")))
    log_path = folder / f"probe-{mode.replace(' ', '-')}.log"
    log_path.unlink(missing_ok=True)
    env = launch.default_env()
    set_mode(mode)
    with open(log_path, "ab") as log:
        asked = time.time()
        proc = launch.start(
            launch.Launch([sys.executable, "probe.py"], env, folder, warm=True), log, log_path
        )
        assert proc.wait() == 0, log_path.read_text()
    first, imported = (float(v) for v in log_path.read_text().split())
    return first - asked, imported - asked


def prepare(cloud: LocalCloud, folder: Path) -> dict:
    """The pipeline's preprocessing of abalone (in this process), uploaded as the job's channels."""
    sys.path[:0] = [str(CONTAINERS / "common"), str(CONTAINERS / "processing")]
    import preprocess  # containers/processing/preprocess.py

    config = load_config()
    data = example_dataset(folder / "data")
    out = folder / "prepared"
    code = preprocess.main(
        ["--input-dir", str(data), "--output-dir", str(out)], config.processing_env()
    )
    assert code == 0
    cloud.objects.create_bucket(BUCKET)
    for channel in ("train", "validation", "schema"):
        cloud.objects.upload_dir(out / channel, f"s3://{BUCKET}/data/{channel}")
    buffer = io.BytesIO()
    with tarfile.open(fileobj=buffer, mode="w:gz") as tar:
        tar.add(CONTAINERS / "training" / "train.py", arcname="train.py")
        tar.add(CONTAINERS / "common" / "jobkit.py", arcname="jobkit.py")
    cloud.objects.put_bytes(BUCKET, "code/sourcedir.tar.gz", buffer.getvalue())
    hps = config.resolved_hyperparameters()
    hps["sagemaker_program"] = json.dumps("train.py")
    hps["sagemaker_submit_directory"] = json.dumps(f"s3://{BUCKET}/code/sourcedir.tar.gz")
    return hps


def training_job(cloud: LocalCloud, name: str, hps: dict, mode: str) -> float:
    """Seconds from CreateTrainingJob to Completed."""
    set_mode(mode)
    channels = [
        {
            "ChannelName": channel,
            "DataSource": {
                "S3DataSource": {"S3DataType": "S3Prefix", "S3Uri": f"s3://{BUCKET}/data/{channel}"}
            },
        }
        for channel in ("train", "validation", "schema")
    ]
    started = time.monotonic()
    SageMaker(cloud).create_training_job(
        {
            "TrainingJobName": name,
            "RoleArn": "arn:aws:iam::123456789012:role/Bench",
            "AlgorithmSpecification": {"TrainingImage": XGBOOST, "TrainingInputMode": "File"},
            "HyperParameters": hps,
            "InputDataConfig": channels,
            "OutputDataConfig": {"S3OutputPath": f"s3://{BUCKET}/models/"},
            "ResourceConfig": {
                "InstanceCount": 1,
                "InstanceType": "ml.m5.large",
                "VolumeSizeInGB": 5,
            },
            "StoppingCondition": {"MaxRuntimeInSeconds": 600},
        }
    )
    while True:
        doc = cloud.metadata.get(jobs.KIND_TRAINING, name)
        if doc["Status"] in jobs.TERMINAL:
            break
        time.sleep(0.005)
    elapsed = time.monotonic() - started
    assert doc["Status"] == "Completed", doc["FailureReason"]
    return elapsed


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--repeats", type=int, default=7)
    args = parser.parse_args()
    assert jobs.prewarm(), "the fork server did not start"
    results: dict[str, dict[str, list[float]]] = {
        m: {"first": [], "imported": [], "job": []} for m in MODES
    }
    with tempfile.TemporaryDirectory() as tmp:
        folder = Path(tmp)
        cloud = LocalCloud(folder / "workspace")
        hps = prepare(cloud, folder)
        for index in range(args.repeats):
            for mode in MODES:
                first, imported = start_latency(folder, mode)
                results[mode]["first"].append(first)
                results[mode]["imported"].append(imported)
                name = f"{mode.split()[0]}-{index}"
                results[mode]["job"].append(training_job(cloud, name, hps, mode))
    forkserver.shutdown()
    print(f"median of {args.repeats} runs, {os.cpu_count()} CPUs, Python {sys.version.split()[0]}")
    print(f"{'':14}{'to first line':>15}{'to imports done':>17}{'abalone training job':>22}")
    for mode in MODES:
        row = {key: statistics.median(values) for key, values in results[mode].items()}
        print(
            f"{mode:14}{row['first'] * 1000:>12.1f} ms{row['imported'] * 1000:>14.1f} ms"
            f"{row['job']:>20.3f} s"
        )


if __name__ == "__main__":
    main()
