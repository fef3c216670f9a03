"""Answer boto3 calls from the local services, so plain boto3 works in both modes.

botocore validates the parameters against the real service model first; a ``before-call``
handler then answers with the service's response shape, or with an AWS error that botocore
raises as the modelled ``ClientError``. Operations that are not emulated fail loudly.
"""

from __future__ import annotations

import uuid
from collections.abc import Callable
from typing import Any

import botocore.handlers
from botocore import xform_name
from botocore.awsrequest import AWSResponse
from botocore.model import OperationModel

from sfn_mlops.local.cloud import LocalCloud
from sfn_mlops.local.errors import AwsError

_PARAMS_KEY = "sfn_mlops_params"
_active: LocalCloud | None = None
_installed = False


class _EmptyBody:
    def stream(self, **_: Any) -> list[bytes]:
        return [b""]


def activate(cloud: LocalCloud) -> LocalCloud:
    """Route every boto3 client of this process, existing sessions and future ones, to ``cloud``."""
    global _active
    _install_handlers()
    _active = cloud
    return cloud


def deactivate() -> None:
    global _active
    _active = None


def active_cloud() -> LocalCloud | None:
    return _active


def _install_handlers() -> None:
    global _installed
    if _installed:
        return
    handlers: list[tuple[str, Callable[..., Any]]] = [
        ("before-parameter-build", _capture_params),
        ("before-call", _answer),
    ]
    botocore.handlers.BUILTIN_HANDLERS.extend(handlers)
    import boto3

    if boto3.DEFAULT_SESSION is not None:
        for event, handler in handlers:
            boto3.DEFAULT_SESSION.events.register(event, handler)
    _installed = True


def _capture_params(params: dict[str, Any], context: dict[str, Any], **_: Any) -> None:
    """Keep the API parameters: ``before-call`` only sees the serialized request."""
    context[_PARAMS_KEY] = dict(params)


def _answer(
    model: OperationModel, context: dict[str, Any], **_: Any
) -> tuple[AWSResponse, dict[str, Any]] | None:
    cloud = _active
    if cloud is None:
        return None
    service = model.service_model.service_id.hyphenize()
    params = context.get(_PARAMS_KEY, {})
    try:
        result = dispatch(cloud, service, model.name, params)
        return _response(200, result)
    except AwsError as err:
        return _response(err.status, {"Error": {"Code": err.code, "Message": err.message}})


def dispatch(cloud: LocalCloud, service: str, operation: str, params: dict[str, Any]) -> dict:
    """Call the local implementation of ``service:operation``."""
    fault = cloud.metadata.take_fault(service, operation)
    if fault is not None:
        raise AwsError(fault, f"Injected fault for {service}:{operation}", 400)
    handler = getattr(cloud.service(service), xform_name(operation), None)
    if handler is None:
        raise AwsError(
            "NotImplemented",
            f"sfn-mlops local mode does not emulate {service}:{operation}; "
            "run with --aws to use the real service",
            501,
        )
    result: dict[str, Any] = handler(params) or {}
    return result


def _response(status: int, body: dict[str, Any]) -> tuple[AWSResponse, dict[str, Any]]:
    request_id = str(uuid.uuid4())
    body["ResponseMetadata"] = {
        "RequestId": request_id,
        "HTTPStatusCode": status,
        "HTTPHeaders": {"x-amzn-requestid": request_id},
        "RetryAttempts": 0,
    }
    return AWSResponse("http://sfn-mlops.local/", status, {}, _EmptyBody()), body
