"""Amazon SageMaker Runtime: InvokeEndpoint, answered by the endpoint's own serving process.

The request goes to the endpoint as a client on loopback would send it (``/invocations``), and
the answer comes back in the runtime's shape: the body, its content type and the variant that
served it; a container's error becomes ``ModelError`` (424) with the container's status and
message, as SageMaker reports it.
"""

from __future__ import annotations

from typing import Any

from sfn_mlops.local import endpoint_server
from sfn_mlops.local.errors import AwsError
from sfn_mlops.local.services.sagemaker_hosting import KIND_ENDPOINT

_HEADERS = {  # InvokeEndpoint member -> the header the container receives
    "ContentType": "Content-Type",
    "Accept": "Accept",
    "CustomAttributes": endpoint_server.CUSTOM_ATTRIBUTES_HEADER,
    "TargetVariant": endpoint_server.TARGET_VARIANT_HEADER,
    "InferenceId": endpoint_server.INFERENCE_ID_HEADER,
}
_UNSUPPORTED = ("TargetModel", "TargetContainerHostname", "InferenceComponentName", "SessionId")


class SageMakerRuntime:
    def __init__(self, cloud: Any) -> None:
        self.cloud = cloud

    def invoke_endpoint(self, params: dict[str, Any]) -> dict[str, Any]:
        name = params["EndpointName"]
        for member in _UNSUPPORTED:
            if member in params:
                raise AwsError(
                    "ValidationError",
                    f"{member} is not supported by sfn-mlops local endpoints "
                    "(multi-model, multi-container and inference components are not emulated)",
                )
        hosts = self.cloud.endpoint_hosts
        if self.cloud.metadata.get(KIND_ENDPOINT, name) is None or hosts.port(name) is None:
            raise AwsError(
                "ValidationError", f"Endpoint {name} of account {self.cloud.account} not found."
            )
        headers = {header: str(params[m]) for m, header in _HEADERS.items() if m in params}
        body = params.get("Body") or b""
        result = hosts.invoke(name, body if isinstance(body, bytes) else body.read(), headers)
        if result.routing_error:
            raise AwsError("ValidationError", result.body.decode("utf-8", "replace"))
        if result.status != 200:
            raise self._model_error(name, result.status, result.body.decode("utf-8", "replace"))
        answer: dict[str, Any] = {"Body": result.body, "ContentType": result.content_type}
        if result.variant:
            answer["InvokedProductionVariant"] = result.variant
        if result.custom_attributes is not None:
            answer["CustomAttributes"] = result.custom_attributes
        return answer

    def _model_error(self, name: str, status: int, message: str) -> AwsError:
        kind = "client" if status < 500 else "server"
        log_group = f"/aws/sagemaker/Endpoints/{name}"
        return AwsError(
            "ModelError",
            f'Received {kind} error ({status}) from primary with message "{message}". See '
            f"{self.cloud.endpoint_hosts.folder(name) / 'endpoint.log'} (the local log of "
            f"{log_group}) in account {self.cloud.account} for more information.",
            424,
            OriginalStatusCode=status,
            OriginalMessage=message,
            LogStreamArn=self.cloud.arn("logs", f"log-group:{log_group}"),
        )
