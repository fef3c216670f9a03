"""Training jobs: the SageMaker training toolkit's contract for script mode.

Channels are copied to ``/opt/ml/input/data/<channel>``; ``input/config`` gets
hyperparameters.json, inputdataconfig.json and resourceconfig.json; the script gets the
``SM_*`` variables and its hyperparameters as ``--key value`` arguments; ``/opt/ml/model``
becomes ``model.tar.gz`` (members at the archive root) and ``/opt/ml/output/data``
``output.tar.gz``. A failing script's reason is read from ``/opt/ml/output/failure``, the file
AWS reads a training job's FailureReason from.
"""

from __future__ import annotations

import json
import os
import sys
import tarfile
from pathlib import Path
from typing import Any

from sfn_mlops.local.errors import AwsError
from sfn_mlops.local.images import PYTHON_SCRIPT, runtime_for
from sfn_mlops.local.jobs.launch import Launch
from sfn_mlops.local.jobs.paths import local_command
from sfn_mlops.local.jobs.runner import Run, read_limited
from sfn_mlops.local.jobs.state import JobFailed
from sfn_mlops.local.objectstore import parse_s3_uri

CURRENT_HOST = "algo-1"
SAGEMAKER_HP_PREFIX = "sagemaker_"  # the toolkit keeps these out of the user's hyperparameters
FAILURE_FILE = Path("output") / "failure"  # under /opt/ml


def decode_hyperparameters(raw: dict[str, str]) -> dict[str, Any]:
    """Each value JSON-decoded when it is JSON, as the training toolkit reads them."""
    decoded: dict[str, Any] = {}
    for key, value in raw.items():
        try:
            decoded[key] = json.loads(value)
        except (TypeError, ValueError):
            decoded[key] = value
    return decoded


def to_cmd_args(hyperparameters: dict[str, Any]) -> list[str]:
    """``--key value`` pairs in key order, as the training toolkit's ``to_cmd_args``."""
    args: list[str] = []
    for key in sorted(hyperparameters):
        value = hyperparameters[key]
        if isinstance(value, dict):
            value = ",".join(f"{k}={v}" for k, v in sorted(value.items()))
        args += [f"--{key}" if len(key) > 1 else f"-{key}", str(value)]
    return args


def job_cpus() -> int:
    """The cores a local job may use: all but one, which the service and the CLI keep.

    A container has its instance's cores to itself; a local job shares them with the service
    that follows it and the CLI that polls it. Measured on 2 cores (docs/benchmarks.md): with
    both cores, xgboost's OpenMP threads waited at every barrier for a descheduled partner, and
    abalone's 150 rounds took 0.54 s instead of 0.17 s with one thread; 1M rows take 10 s with
    one thread against 6.6 s with two.
    """
    cores = len(os.sched_getaffinity(0)) if hasattr(os, "sched_getaffinity") else os.cpu_count()
    return max(1, (cores or 1) - 1)


def _env_value(value: Any) -> str:
    if isinstance(value, str):
        return value
    return json.dumps(value, sort_keys=True, separators=(",", ":"))


class TrainingRun(Run):
    def _channels(self) -> list[dict[str, Any]]:
        return list(self.request.get("InputDataConfig", []))

    def download_inputs(self) -> None:
        for channel in self._channels():
            uri = channel["DataSource"]["S3DataSource"]["S3Uri"]
            self.download(uri, self.opt_ml / "input" / "data" / channel["ChannelName"])
        self._write_config()

    def _input_data_config(self) -> dict[str, Any]:
        mode = self.request["AlgorithmSpecification"].get("TrainingInputMode", "File")
        config = {}
        for channel in self._channels():
            source = channel["DataSource"]["S3DataSource"]
            entry = {
                "TrainingInputMode": channel.get("InputMode", mode),
                "S3DistributionType": source.get("S3DataDistributionType", "FullyReplicated"),
                "RecordWrapperType": channel.get("RecordWrapperType", "None"),
            }
            if "ContentType" in channel:
                entry["ContentType"] = channel["ContentType"]
            config[channel["ChannelName"]] = entry
        return config

    def _resource_config(self) -> dict[str, Any]:
        instance_type = (self.request.get("ResourceConfig") or {}).get("InstanceType", "local")
        return {
            "current_host": CURRENT_HOST,
            "current_instance_type": instance_type,
            "current_group_name": "homogeneousCluster",
            "hosts": [CURRENT_HOST],
            "instance_groups": [
                {
                    "instance_group_name": "homogeneousCluster",
                    "instance_type": instance_type,
                    "hosts": [CURRENT_HOST],
                }
            ],
            "network_interface_name": "eth0",
        }

    def _write_config(self) -> None:
        config = self.opt_ml / "input" / "config"
        files = {
            "hyperparameters.json": self.request.get("HyperParameters") or {},
            "inputdataconfig.json": self._input_data_config(),
            "resourceconfig.json": self._resource_config(),
        }
        for name, content in files.items():
            (config / name).write_text(json.dumps(content, indent=2))

    def _fetch_code(self, submit_dir: str) -> None:
        """The submit directory (a tar.gz, or a prefix of files) into ``opt_ml/code``."""
        code = self.opt_ml / "code"
        if not submit_dir.startswith("s3://"):
            raise JobFailed(
                f"UserError: sagemaker_submit_directory {submit_dir!r} must be an s3:// URI"
            )
        if not submit_dir.endswith((".tar.gz", ".tgz")):
            self.download(submit_dir, code)
            return
        self.log(f"extracting {submit_dir} -> {code}")
        try:
            archive = self.cloud.objects.head(*parse_s3_uri(submit_dir)).path
            with tarfile.open(archive, "r:*") as tar:
                tar.extractall(code, filter="data")
        except AwsError as err:
            raise JobFailed(f"UserError: cannot download {submit_dir}: {err.message}") from err
        except (tarfile.TarError, OSError) as err:
            raise JobFailed(f"UserError: cannot extract {submit_dir}: {err}") from err

    def _script(self, hps: dict[str, Any]) -> tuple[str, str]:
        program, submit_dir = hps.get("sagemaker_program"), hps.get("sagemaker_submit_directory")
        if not program or not submit_dir:
            raise JobFailed(
                "UserError: the local runtime runs the XGBoost image in script mode; set "
                "sagemaker_program/sagemaker_submit_directory (JSON-encoded hyperparameters, "
                'e.g. "\\"train.py\\"" and "\\"s3://bucket/code/sourcedir.tar.gz\\"")'
            )
        return str(program), str(submit_dir)

    def image_uri(self) -> str:
        return str(self.request["AlgorithmSpecification"].get("TrainingImage") or "")

    def launch(self) -> Launch:
        hps = decode_hyperparameters(self.request.get("HyperParameters") or {})
        user_hps = {k: v for k, v in hps.items() if not k.startswith(SAGEMAKER_HP_PREFIX)}
        algorithm = self.request["AlgorithmSpecification"]
        env = self.base_env()
        env.update(self._sm_env(user_hps))
        code = self.opt_ml / "code"
        warm = runtime_for(algorithm["TrainingImage"]).kind == PYTHON_SCRIPT
        if algorithm.get("ContainerEntrypoint"):
            if hps.get("sagemaker_submit_directory"):
                self._fetch_code(str(hps["sagemaker_submit_directory"]))
            command = list(algorithm["ContainerEntrypoint"])
            command += list(algorithm.get("ContainerArguments", []))
            return Launch(local_command(command, self.opt_ml), env, code, warm)
        program, submit_dir = self._script(hps)
        self._fetch_code(submit_dir)
        if not (code / program).is_file():
            raise JobFailed(
                f"UserError: sagemaker_program {program!r} is not in the submit directory "
                f"{submit_dir}"
            )
        args = to_cmd_args(user_hps)
        env.update(
            SM_MODULE_NAME=Path(program).stem,
            SM_MODULE_DIR=submit_dir,
            SM_USER_ENTRY_POINT=program,
            SM_USER_ARGS=json.dumps(args),
            PYTHONPATH=os.pathsep.join(filter(None, [str(code), env.get("PYTHONPATH")])),
        )
        return Launch([sys.executable, program, *args], env, code, warm)

    def _sm_env(self, user_hps: dict[str, Any]) -> dict[str, str]:
        opt = self.opt_ml
        channels = sorted(c["ChannelName"] for c in self._channels())
        env = {
            "SM_MODEL_DIR": str(opt / "model"),
            "SM_INPUT_DIR": str(opt / "input"),
            "SM_INPUT_CONFIG_DIR": str(opt / "input" / "config"),
            "SM_OUTPUT_DIR": str(opt / "output"),
            "SM_OUTPUT_DATA_DIR": str(opt / "output" / "data"),
            "SM_OUTPUT_INTERMEDIATE_DIR": str(opt / "output" / "intermediate"),
            "SM_CHANNELS": json.dumps(channels),
            "SM_HPS": _env_value(user_hps),
            "SM_NUM_CPUS": str(job_cpus()),
            "SM_NUM_GPUS": "0",
            "SM_CURRENT_HOST": CURRENT_HOST,
            "SM_HOSTS": json.dumps([CURRENT_HOST]),
            "SM_NETWORK_INTERFACE_NAME": "eth0",
            "SM_INPUT_DATA_CONFIG": _env_value(self._input_data_config()),
            "SM_RESOURCE_CONFIG": _env_value(self._resource_config()),
        }
        for name in channels:
            env[f"SM_CHANNEL_{name.upper()}"] = str(opt / "input" / "data" / name)
        for key, value in user_hps.items():
            env[f"SM_HP_{key.upper()}"] = _env_value(value)
        return env

    def failure_written(self) -> str | None:
        return read_limited(self.opt_ml / FAILURE_FILE)

    def upload_outputs(self, status: str) -> dict[str, Any]:
        """model.tar.gz (members at the archive root) and output.tar.gz, also when stopped.

        Each archive is written in the job's folder and moved into the object store, its one
        copy; the folder is removed when the job ends.
        """
        prefix = self.request["OutputDataConfig"]["S3OutputPath"].rstrip("/")
        base = f"{prefix}/{self.name}/output"
        fields: dict[str, Any] = {}
        model_dir = self.opt_ml / "model"
        if status == "Completed" or has_files(model_dir):
            archive = self._tar(model_dir, self.folder / "model.tar.gz")
            self.upload_file(archive, f"{base}/model.tar.gz")
            fields["ModelArtifacts"] = {"S3ModelArtifacts": f"{base}/model.tar.gz"}
        data_dir = self.opt_ml / "output" / "data"
        if has_files(data_dir):
            archive = self._tar(data_dir, self.folder / "output.tar.gz")
            self.upload_file(archive, f"{base}/output.tar.gz")
        return fields

    @staticmethod
    def _tar(folder: Path, archive: Path) -> Path:
        with tarfile.open(archive, "w:gz", compresslevel=6) as tar:
            for path in sorted(folder.iterdir()):
                tar.add(path, arcname=path.name)
        return archive


def has_files(folder: Path) -> bool:
    return folder.is_dir() and any(p.is_file() for p in folder.rglob("*"))
