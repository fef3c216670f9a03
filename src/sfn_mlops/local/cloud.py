"""The local cloud: one workspace folder holding every local service's state."""

from __future__ import annotations

import importlib
import threading
from functools import cached_property
from pathlib import Path
from typing import Any

from sfn_mlops import settings
from sfn_mlops.local.credentials import KeyStore
from sfn_mlops.local.metadata import MetadataStore
from sfn_mlops.local.objectstore import ObjectStore

# botocore service id (hyphenized) -> the class that answers it.
SERVICES: dict[str, str] = {
    "s3": "sfn_mlops.local.services.s3:S3",
    "sagemaker": "sfn_mlops.local.services.sagemaker:SageMaker",
    "sfn": "sfn_mlops.local.services.stepfunctions:StepFunctions",
    "lambda": "sfn_mlops.local.services.lambda_:Lambda",
    "sns": "sfn_mlops.local.services.sns:SNS",
    "cloudwatch": "sfn_mlops.local.services.cloudwatch:CloudWatch",
    "eventbridge": "sfn_mlops.local.services.eventbridge:EventBridge",
    "sagemaker-runtime": "sfn_mlops.local.services.sagemaker_runtime:SageMakerRuntime",
}


class LocalCloud:
    """Shared by the services of one process; every process of a workspace sees the same state."""

    region = settings.LOCAL_REGION
    account = settings.LOCAL_ACCOUNT

    def __init__(self, root: Path, *, time_scale: float | None = None) -> None:
        self.root = root
        self.root.mkdir(parents=True, exist_ok=True)
        self.objects = ObjectStore(root / "objects")
        self.metadata = MetadataStore(root / "metadata.db")
        self.time_scale = settings.time_scale(time_scale)
        self._services: dict[str, Any] = {}
        self._lock = threading.Lock()

    @cached_property
    def jobs_dir(self) -> Path:
        return self.root / "jobs"

    @cached_property
    def logs_dir(self) -> Path:
        return self.root / "logs"

    @cached_property
    def credentials(self) -> KeyStore:
        """The workspace's access keys: who may call its service, and as whom each runs."""
        return KeyStore(self.root)

    @cached_property
    def authorization(self) -> Any:
        """IAM for the deployed template's principals (``sfn_mlops.local.authorization``)."""
        from sfn_mlops.local.authorization import Authorization

        return Authorization(self.root, self.region, self.account)

    @cached_property
    def endpoint_hosts(self) -> Any:
        """The serving processes of the endpoints (``sfn_mlops.local.endpoints``)."""
        from sfn_mlops.local.endpoints import EndpointHosts

        return EndpointHosts(self)

    def arn(self, service: str, resource: str) -> str:
        return f"arn:aws:{service}:{self.region}:{self.account}:{resource}"

    def service(self, name: str) -> Any:
        """The local service answering ``name``, created on first use."""
        with self._lock:
            if name not in self._services:
                if name not in SERVICES:
                    from sfn_mlops.local.errors import AwsError

                    raise AwsError(
                        "NotImplemented",
                        f"sfn-mlops local mode does not emulate the {name!r} service; "
                        f"emulated: {', '.join(sorted(SERVICES))}",
                        501,
                    )
                module_name, _, class_name = SERVICES[name].partition(":")
                cls = getattr(importlib.import_module(module_name), class_name)
                self._services[name] = cls(self)
            return self._services[name]
