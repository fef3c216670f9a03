"""Which local runtime stands for which SageMaker container image.

The local cloud runs no containers: each image a job names maps, by a row of ``IMAGES``, to a
runtime on this machine. The framework images run the job's own scripts with the local Python;
the Clarify image, whose container has no entrypoint of ours (it takes an analysis config and
data), runs the local Clarify runtime ``containers/clarify/run.py`` with the local Python; the
Model Monitor analyzer image runs the local monitor runtime ``containers/monitor/run.py``, with
no arguments (its configuration is the environment Model Monitor sets, as in its container).
Add a row (and, for a new kind, teach ``sfn_mlops.local.jobs`` to start it) to support another
image.
"""

from __future__ import annotations

from dataclasses import dataclass
from fnmatch import fnmatchcase
from pathlib import Path

from sfn_mlops.local.errors import validation

PYTHON_SCRIPT = "python-script"
CLARIFY = "clarify"
MONITOR = "model-monitor"
_CONTAINERS = Path(__file__).resolve().parents[3] / "containers"
#: The local Clarify runtime (the project's own, beside the job code it stands with).
CLARIFY_RUNTIME = _CONTAINERS / "clarify" / "run.py"
#: The local Model Monitor analyzer runtime.
MONITOR_RUNTIME = _CONTAINERS / "monitor" / "run.py"


@dataclass(frozen=True)
class LocalRuntime:
    """How the local cloud runs a job whose image matches ``pattern``."""

    pattern: str  # fnmatch pattern over the image URI
    kind: str  # PYTHON_SCRIPT: the job's script; CLARIFY / MONITOR: CLARIFY_/MONITOR_RUNTIME
    description: str


IMAGES: tuple[LocalRuntime, ...] = (
    LocalRuntime(
        "*/sagemaker-xgboost:*",
        PYTHON_SCRIPT,
        "SageMaker XGBoost framework image (script mode) -> the job's script on the local Python",
    ),
    LocalRuntime(
        "*/sagemaker-scikit-learn:*",
        PYTHON_SCRIPT,
        "SageMaker scikit-learn framework image -> the job's script on the local Python",
    ),
    LocalRuntime(
        "*/sagemaker-clarify-processing:*",
        CLARIFY,
        "SageMaker Clarify image -> local Clarify runtime (containers/clarify/run.py)",
    ),
    LocalRuntime(
        "*/sagemaker-model-monitor-analyzer*",
        MONITOR,
        "SageMaker Model Monitor analyzer image -> local monitor runtime "
        "(containers/monitor/run.py)",
    ),
)


def known_images() -> list[str]:
    return [row.pattern for row in IMAGES]


def runtime_for(image_uri: str) -> LocalRuntime:
    """The local runtime for ``image_uri``; a ValidationException naming it when there is none."""
    for row in IMAGES:
        if fnmatchcase(image_uri, row.pattern):
            return row
    raise validation(
        f"Image {image_uri!r} has no local runtime. The local runtime knows these images: "
        f"{', '.join(known_images())}. Use one of them, or run with --aws to use the real service."
    )
