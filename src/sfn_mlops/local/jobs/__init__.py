"""The local SageMaker job runner: SageMaker's container contract on one machine.

The local service owns every job it starts; each runs in a thread of the service and its
process is a fresh child of the fork server (framework images' Python scripts) or a
subprocess. Modules:

- ``paths``: the job's folder, its log, ``/opt/ml`` re-rooted under it;
- ``state``: the job document and the words SageMaker uses for each kind of job;
- ``runner``: one run's lifecycle (status, watchdog for MaxRuntimeInSeconds and stops);
- ``processing`` / ``training``: each kind's inputs, command and outputs;
- ``launch``, ``forkserver``, ``forkserver_main``: starting the job's process;
- ``aws_calls``: what SageMaker does as the job's role around the container (image pull, log
  stream, instance metrics);
- ``registry``: the runs of this process, shutdown, and jobs whose service died.
"""

from __future__ import annotations

from sfn_mlops.local.jobs.launch import prewarm
from sfn_mlops.local.jobs.paths import job_dir, job_log_path
from sfn_mlops.local.jobs.registry import (
    KINDS,
    recover_orphans,
    refresh,
    request_stop,
    shutdown_all,
    submit,
)
from sfn_mlops.local.jobs.state import (
    DEFAULT_MAX_RUNTIME,
    KIND_PROCESSING,
    KIND_TRAINING,
    KIND_TRANSFORM,
    TERMINAL,
    new_job_doc,
)
from sfn_mlops.local.jobs.training import decode_hyperparameters

__all__ = [
    "DEFAULT_MAX_RUNTIME",
    "KIND_PROCESSING",
    "KIND_TRAINING",
    "KIND_TRANSFORM",
    "KINDS",
    "TERMINAL",
    "decode_hyperparameters",
    "job_dir",
    "job_log_path",
    "new_job_doc",
    "prewarm",
    "recover_orphans",
    "refresh",
    "request_stop",
    "shutdown_all",
    "submit",
]
