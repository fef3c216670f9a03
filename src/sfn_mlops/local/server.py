"""AWS's wire protocols on one loopback port: any AWS client reaches the local services here.

Requests are parsed and answers serialized from botocore's service models by LocalStack's
protocol layer (``localstack-core``), never by hand per operation; every request is validated
against the same model (``sfn_mlops.local.validation``) before a service sees it. Each service
is a plain provider class with one method per operation (``create_training_job(params)``) that
returns the output shape as a dict or raises ``AwsError``. Paths under ``/_sfn-mlops/`` are the
service's own (status, deploy, shutdown): no S3 bucket name can start with ``_``.
"""

from __future__ import annotations

import json
import logging
import threading
import time
import uuid
from collections.abc import Callable
from functools import cache
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from typing import Any

import botocore.session
from botocore import xform_name
from botocore.model import OperationModel, ServiceModel
from localstack.aws.api import CommonServiceException
from localstack.aws.protocol.parser import (
    OperationNotFoundParserError,
    RequestParserError,
    create_parser,
)
from localstack.aws.protocol.serializer import create_serializer
from localstack.aws.protocol.service_router import ProtocolError, determine_aws_protocol
from localstack.http import Request, Response

from sfn_mlops.local.errors import AwsError
from sfn_mlops.local.validation import validate_request

log = logging.getLogger("sfn_mlops.local.server")

ADMIN_PREFIX = "/_sfn-mlops/"

#: SigV4 signing name -> (botocore service name, the local service that answers it).
SIGNING_NAMES: dict[str, tuple[str, str]] = {
    "s3": ("s3", "s3"),
    "states": ("stepfunctions", "sfn"),
    "sagemaker": ("sagemaker", "sagemaker"),
    "sns": ("sns", "sns"),
    "lambda": ("lambda", "lambda"),
    "monitoring": ("cloudwatch", "cloudwatch"),
    "events": ("events", "eventbridge"),
}

RUNTIME_MAX_PAYLOAD = 6 * 1024 * 1024  # InvokeEndpoint's limit: 6 MB

AdminHandler = Callable[[dict[str, Any]], dict[str, Any]]


@cache
def service_model(name: str) -> ServiceModel:
    return botocore.session.get_session().get_service_model(name)


@cache
def _parser(name: str, protocol: str) -> Any:
    return create_parser(service_model(name), protocol)  # type: ignore[arg-type]


@cache
def _serializer(name: str, protocol: str) -> Any:
    return create_serializer(service_model(name), protocol)  # type: ignore[arg-type]


def signing_name(request: Request) -> str | None:
    """The service a request was signed for: SigV4's ``Credential=AKID/date/region/SERVICE/...``
    in its Authorization header or, presigned, in ``X-Amz-Credential``."""
    auth = request.headers.get("Authorization", "")
    if auth.startswith("AWS ") or "Signature" in request.args:
        return "s3"  # signature version 2, which only S3 still takes (boto3's presigned URLs)
    _, _, credential = auth.partition("Credential=")
    credential = credential or request.args.get("X-Amz-Credential", "")
    parts = credential.split(",")[0].split("/")
    return parts[3] if len(parts) >= 5 else None


def _is_runtime(request: Request) -> bool:
    """sagemaker-runtime signs as ``sagemaker`` too: its calls are REST paths, the control
    plane's are JSON calls named by ``X-Amz-Target``."""
    return "X-Amz-Target" not in request.headers and request.path.startswith("/endpoints/")


def _count_rejected(cloud: Any, path: str, status: int) -> None:
    name = path.split("/")[2] if path.count("/") >= 3 else ""
    if name and "endpoint_hosts" in vars(cloud):
        cloud.endpoint_hosts.count_rejected(name, status)


def dispatch(cloud: Any, service: str, operation: str, params: dict[str, Any]) -> dict[str, Any]:
    """Call the local implementation of ``service:operation`` (an injected fault comes first)."""
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


class AwsGateway:
    """Turns one HTTP request into one provider call and its answer, in the service's protocol."""

    def __init__(self, cloud: Any, admin: dict[str, AdminHandler] | None = None) -> None:
        self.cloud = cloud
        self.admin = admin or {}
        self.last_request = time.monotonic()
        self.port = 0  # set once the server is bound

    def handle(self, request: Request) -> Response:
        self.last_request = time.monotonic()
        if request.path.startswith(ADMIN_PREFIX):
            return self._admin(request)
        name = signing_name(request)
        if name not in SIGNING_NAMES:
            return _plain_error(
                400,
                "UnknownService",
                f"sfn-mlops local mode answers signed requests for {', '.join(SIGNING_NAMES)}; "
                f"this one was signed for {name!r}",
            )
        model_name, local_name = SIGNING_NAMES[name]
        if name == "sagemaker" and _is_runtime(request):
            model_name, local_name = "sagemaker-runtime", "sagemaker-runtime"
            if len(request.get_data()) > RUNTIME_MAX_PAYLOAD:  # before parsing, as AWS does
                _count_rejected(self.cloud, request.path, 413)
                return Response(f"HTTP content length exceeded {RUNTIME_MAX_PAYLOAD} bytes.", 413)
        try:
            protocol = determine_aws_protocol(request, service_model(model_name))
        except ProtocolError as err:
            return _plain_error(400, "SerializationException", str(err))
        request_id = str(uuid.uuid4())
        operation: OperationModel | None = None
        try:
            operation, parsed = _parse(model_name, protocol, request)
            params = _without_none(parsed)
            validate_request(operation, params, request, protocol)
            result = dispatch(self.cloud, local_name, operation.name, params)
            return _serializer(model_name, protocol).serialize_to_response(
                result, operation, request.headers, request_id
            )
        except AwsError as err:
            return self._error(model_name, protocol, operation, request, request_id, err)
        except Exception as err:  # noqa: BLE001 - a bug must answer 500, never kill the server
            log.exception("%s %s failed", model_name, operation.name if operation else "?")
            failure = AwsError("InternalFailure", f"{type(err).__name__}: {err}", 500)
            return self._error(model_name, protocol, operation, request, request_id, failure)

    def _error(
        self,
        model_name: str,
        protocol: str,
        operation: OperationModel | None,
        request: Request,
        request_id: str,
        err: AwsError,
    ) -> Response:
        if operation is None:  # the request could not even be parsed
            return _plain_error(err.status, err.code, err.message)
        error = CommonServiceException(
            err.code, err.message, status_code=err.status, sender_fault=err.status < 500
        )  # awsQueryCompatible services (SNS, CloudWatch) report the fault's side
        for member, value in err.members.items():
            setattr(error, member, value)  # the serializer reads the shape's members off it
        return _serializer(model_name, protocol).serialize_error_to_response(
            error, operation, request.headers, request_id
        )

    def _admin(self, request: Request) -> Response:
        action = request.path[len(ADMIN_PREFIX) :].strip("/")
        handler = self.admin.get(action)
        if handler is None:
            return _plain_error(404, "NotFound", f"no such admin action {action!r}")
        try:
            body = json.loads(request.get_data() or b"{}")
            result = handler(body)
        except AwsError as err:
            return _plain_error(err.status, err.code, err.message)
        except Exception as err:  # noqa: BLE001 - answered, logged, the server stays up
            log.exception("admin %s failed", action)
            return _plain_error(500, type(err).__name__, str(err))
        return Response(json.dumps(result, default=str), 200, mimetype="application/json")


def _parse(model_name: str, protocol: str, request: Request) -> tuple[OperationModel, Any]:
    """The operation and its parameters; a request the model cannot read is the caller's fault."""
    try:
        return _parser(model_name, protocol).parse(request)  # type: ignore[no-any-return]
    except OperationNotFoundParserError as err:
        raise AwsError("UnknownOperationException", str(err)) from err
    except RequestParserError as err:
        raise AwsError("SerializationException", f"{type(err).__name__}: {err}") from err


def _without_none(value: Any) -> Any:
    """The parser fills absent members with None; providers see only what the caller sent."""
    if isinstance(value, dict):
        return {k: _without_none(v) for k, v in value.items() if v is not None}
    if isinstance(value, list):
        return [_without_none(v) for v in value]
    return value


def _plain_error(status: int, code: str, message: str) -> Response:
    body = json.dumps({"__type": code, "message": message})
    return Response(body, status, mimetype="application/json")


class _Handler(BaseHTTPRequestHandler):
    protocol_version = "HTTP/1.1"  # keep-alive: boto3 and the AWS CLI reuse connections
    disable_nagle_algorithm = True  # headers and body go out in two writes: no 40 ms stall
    gateway: AwsGateway

    def _serve(self) -> None:
        length = int(self.headers.get("Content-Length") or 0)
        body = self.rfile.read(length) if length else b""
        if self.headers.get("Transfer-Encoding", "").lower() == "chunked":
            body = self._read_chunked()
        path, _, query = self.path.partition("?")
        request = Request(
            method=self.command,
            path=path,
            headers=dict(self.headers.items()),
            body=body,
            query_string=query,
            raw_path=path,
            remote_addr=self.client_address[0],
            server=("127.0.0.1", self.gateway.port),
        )
        response = self.gateway.handle(request)
        payload = response.get_data()
        self.send_response(response.status_code)
        for key, value in response.headers.items():
            if key.lower() not in ("content-length", "transfer-encoding", "connection"):
                self.send_header(key, value)
        self.send_header("Content-Length", str(len(payload)))
        self.end_headers()
        if self.command != "HEAD":
            self.wfile.write(payload)

    def _read_chunked(self) -> bytes:
        chunks: list[bytes] = []
        while True:
            size = int(self.rfile.readline().split(b";")[0].strip() or b"0", 16)
            if size == 0:
                self.rfile.readline()
                return b"".join(chunks)
            chunks.append(self.rfile.read(size))
            self.rfile.readline()

    do_GET = do_PUT = do_POST = do_DELETE = do_HEAD = do_PATCH = _serve

    def log_message(self, format: str, *args: Any) -> None:  # noqa: A002 - the base's name
        log.debug("%s - %s", self.address_string(), format % args)


class LocalServer:
    """One HTTP server on 127.0.0.1 answering every emulated AWS service of one workspace."""

    def __init__(
        self, cloud: Any, port: int = 0, admin: dict[str, AdminHandler] | None = None
    ) -> None:
        self.gateway = AwsGateway(cloud, admin)
        handler = type("Handler", (_Handler,), {"gateway": self.gateway})
        self.httpd = ThreadingHTTPServer(("127.0.0.1", port), handler)
        self.gateway.port = self.port
        self.httpd.daemon_threads = True
        self._thread: threading.Thread | None = None

    @property
    def port(self) -> int:
        return int(self.httpd.server_address[1])

    @property
    def url(self) -> str:
        return f"http://127.0.0.1:{self.port}"

    def start(self) -> LocalServer:
        """Serve from a background thread (tests, and the service's main loop)."""
        self._thread = threading.Thread(
            target=self.httpd.serve_forever, kwargs={"poll_interval": 0.1}, daemon=True
        )
        self._thread.start()
        return self

    def stop(self) -> None:
        self.httpd.shutdown()
        self.httpd.server_close()
        if self._thread is not None:
            self._thread.join(5)
