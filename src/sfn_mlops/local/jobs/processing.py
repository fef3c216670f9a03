"""Processing jobs: inputs copied to their LocalPath, the entrypoint run, outputs uploaded.

A processing container reports why it failed (or anything else) in ``/opt/ml/output/message``:
DescribeProcessingJob returns its first KB as ``ExitMessage`` once the job is terminal. AWS
reads no ``failure`` file for processing jobs, so neither does this runner; FailureReason says
how the container ended, but for Clarify's image, whose FailureReason carries its own words
(``_exit_reason``). The Clarify image runs the local Clarify runtime with the container's paths
and the job's name (it tags the shadow endpoint it makes with it). The Model Monitor analyzer
image runs the local monitor runtime with no arguments; ``SFN_MLOPS_METRICS_DIR`` and
``SFN_MLOPS_MESSAGE_FILE`` tell it where this machine has ``/opt/ml/output/metrics/cloudwatch``
and ``/opt/ml/output/message``.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

from sfn_mlops.local.images import (
    CLARIFY,
    CLARIFY_RUNTIME,
    MONITOR,
    MONITOR_RUNTIME,
    PYTHON_SCRIPT,
    runtime_for,
)
from sfn_mlops.local.jobs.launch import Launch
from sfn_mlops.local.jobs.paths import local_command, reroot
from sfn_mlops.local.jobs.runner import Run, read_limited
from sfn_mlops.local.jobs.state import FAILURE_REASON_LIMIT

EXIT_MESSAGE = Path("output") / "message"  # under /opt/ml
#: Local only: where a Model Monitor container's files are on this machine (/opt/ml re-rooted).
METRICS_DIR_ENV, MESSAGE_FILE_ENV = "SFN_MLOPS_METRICS_DIR", "SFN_MLOPS_MESSAGE_FILE"
METRICS_DIR = Path("output") / "metrics" / "cloudwatch"  # under /opt/ml
#: The Clarify container's contract: its config, data and output folders, and the message file.
CLARIFY_ARGUMENTS = (
    "--config", "/opt/ml/processing/input/config/analysis_config.json",
    "--data-dir", "/opt/ml/processing/input/data",
    "--output-dir", "/opt/ml/processing/output",
    "--message-file", "/opt/ml/output/message",
)  # fmt: skip


class ProcessingRun(Run):
    def download_inputs(self) -> None:
        for item in self.request.get("ProcessingInputs", []):
            s3 = item["S3Input"]
            self.download(s3["S3Uri"], Path(reroot(s3["LocalPath"], self.opt_ml)))
        for item in self._outputs():
            Path(reroot(item["S3Output"]["LocalPath"], self.opt_ml)).mkdir(
                parents=True, exist_ok=True
            )

    def launch(self) -> Launch:
        app = self.request["AppSpecification"]
        kind = runtime_for(app["ImageUri"]).kind
        if kind == CLARIFY:
            command = ["python3", str(CLARIFY_RUNTIME), *CLARIFY_ARGUMENTS, "--job-name", self.name]
        elif kind == MONITOR:  # configured by its environment only, as the analyzer image is
            command = ["python3", str(MONITOR_RUNTIME)]
        else:
            command = list(app.get("ContainerEntrypoint", []))
            command += list(app.get("ContainerArguments", []))
        warm = kind in (PYTHON_SCRIPT, CLARIFY, MONITOR)
        env = self.base_env()
        if kind == MONITOR:
            env.update(self.monitor_paths())
        return Launch(local_command(command, self.opt_ml), env, self.folder, warm)

    def image_uri(self) -> str:
        return str(self.request["AppSpecification"]["ImageUri"])

    def monitor_paths(self) -> dict[str, str]:
        """Where this machine has /opt/ml/output/metrics/cloudwatch and /opt/ml/output/message
        (the container contract's paths, which a process here cannot open as they are)."""
        return {
            METRICS_DIR_ENV: str(self.opt_ml / METRICS_DIR),
            MESSAGE_FILE_ENV: str(self.opt_ml / EXIT_MESSAGE),
        }

    def _outputs(self) -> list[dict[str, Any]]:
        return list((self.request.get("ProcessingOutputConfig") or {}).get("Outputs", []))

    def upload_outputs(self, status: str) -> dict[str, Any]:
        if status != "Completed":
            return {}
        folders = [
            Path(reroot(item["S3Output"]["LocalPath"], self.opt_ml)) for item in self._outputs()
        ]
        for item, folder in zip(self._outputs(), folders, strict=True):
            # Moved into the store unless another output's folder overlaps (it uploads them too).
            alone = not any(_overlap(folder, other) for other in folders if other is not folder)
            self.upload_dir(folder, item["S3Output"]["S3Uri"], move=alone)
        return {}

    def messages(self) -> dict[str, str]:
        message = read_limited(self.opt_ml / EXIT_MESSAGE)
        return {"ExitMessage": message} if message else {}

    def _exit_reason(self, code: int) -> str:
        """Clarify's image reports its failure in FailureReason itself, as an AWS user saw it:
        ``ClientError: ClientError: An error occurred (AccessDeniedException) when calling the
        CreateEndpointConfig operation: ..., exit code: 1`` (the category, the container's own
        words, the exit code); any other image: how its process ended."""
        message = read_limited(self.opt_ml / EXIT_MESSAGE)
        kind = runtime_for(self.request["AppSpecification"]["ImageUri"]).kind
        if kind != CLARIFY or not message or code <= 0:
            return super()._exit_reason(code)
        category = "ClientError" if message.startswith("ClientError:") else "AlgorithmError"
        return f"{category}: {message}, exit code: {code}"[:FAILURE_REASON_LIMIT]


def _overlap(one: Path, other: Path) -> bool:
    return one == other or one.is_relative_to(other) or other.is_relative_to(one)
