"""AWS's wire protocols on one loopback port: any AWS client reaches the local services here.

Requests are parsed and answers serialized from botocore's service models by LocalStack's
protocol layer (``localstack-core``), never by hand per operation; every request is validated
against the same model (``sfn_mlops.local.validation``) before a service sees it. Each service
is a plain provider class with one method per operation (``create_training_job(params)``) that
returns the output shape as a dict or raises ``AwsError``. Paths under ``/_sfn-mlops/`` are the
service's own (status, deploy, shutdown): no S3 bucket name can start with ``_``.

Who may call: only requests addressed to this loopback port and not sent by another site's page
(``loopback``); AWS requests signed with a key of the workspace (``signatures``,
``credentials``), whose principal goes on the request (``CALLER``) and to the provider call;
the service's own paths with the workspace's service token.
"""

from __future__ import annotations

import json
import logging
import threading
import time
import uuid
from collections.abc import Callable
from functools import cache, lru_cache
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

from sfn_mlops.local import credentials, loopback
from sfn_mlops.local.credentials import TOKEN_HEADER, Principal
from sfn_mlops.local.errors import AwsError
from sfn_mlops.local.metadata import AFTER_CALL
from sfn_mlops.local.signatures import AuthFailure, Verifier, aws_error
from sfn_mlops.local.validation import validate_request

log = logging.getLogger("sfn_mlops.local.server")

ADMIN_PREFIX = "/_sfn-mlops/"
#: The request environ key of the authenticated caller (a ``credentials.Principal``).
CALLER = "sfn_mlops.caller"

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

#: The local service answering -> its botocore model (the names IAM's tables use).
MODEL_NAMES = {local: model for model, local in SIGNING_NAMES.values()} | {
    "sagemaker-runtime": "sagemaker-runtime"
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
    serializer = create_serializer(service_model(name), protocol)  # type: ignore[arg-type]
    serializer._get_mime_type = _remembered(serializer._get_mime_type)  # type: ignore[method-assign,assignment]
    return serializer


def _remembered(pick: Callable[[dict[str, str]], str]) -> Callable[[Any], str]:
    """The serializer's answer type depends on the Accept and Content-Type headers alone; the
    choice (werkzeug's Accept parsing, a third of the service's own time per call) is kept."""

    @lru_cache(maxsize=64)
    def by_headers(accept: str | None, content_type: str | None) -> str:
        headers = {"Accept": accept, "Content-Type": content_type}
        return pick({k: v for k, v in headers.items() if v is not None})

    def mime_type(headers: Any) -> str:
        if not headers:
            return by_headers(None, None)
        return by_headers(headers.get("Accept"), headers.get("Content-Type"))

    return mime_type


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


def dispatch(
    cloud: Any,
    service: str,
    operation: str,
    params: dict[str, Any],
    caller: Principal | None = None,
) -> dict[str, Any]:
    """Call the local implementation of ``service:operation`` (an injected fault comes first).

    ``caller`` is who signed the request (None for the service's own calls), for IAM."""
    fault = cloud.metadata.take_fault(service, operation)
    if fault is not None and not fault.startswith(AFTER_CALL):
        raise AwsError(fault, f"Injected fault for {service}:{operation}", 400)
    iam = None
    if caller is not None:
        iam = cloud.authorization.caller(*_role_session(caller))
        cloud.authorization.authorize(iam, MODEL_NAMES[service], operation, params)
    handler = getattr(cloud.service(service), xform_name(operation), None)
    if handler is None:
        raise AwsError(
            "NotImplemented",
            f"sfn-mlops local mode does not emulate {service}:{operation}; "
            "run with --aws to use the real service",
            501,
        )
    try:
        result: dict[str, Any] = handler(params) or {}
    except AwsError as err:
        if err.code == "NoSuchKey" and service == "s3" and iam is not None:
            _not_found_or_denied(cloud, iam, params)
        raise
    if fault is not None:  # made, and its answer lost on the way back
        code = fault.removeprefix(AFTER_CALL)
        raise AwsError(code, f"Injected fault after {service}:{operation} was made", 500)
    return result


def _role_session(caller: Principal) -> tuple[str | None, str]:
    """(role ARN, session) of a signed request; (None, "") for the account's administrator."""
    return (None, "") if caller.is_admin else (caller.arn, caller.session_name)


def _not_found_or_denied(cloud: Any, iam: Any, params: dict[str, Any]) -> None:
    """S3 says NoSuchKey only to a caller that may list the bucket; any other gets 403 Access
    Denied (Amazon S3 API Reference, GetObject, "Permissions")."""
    bucket = str(params.get("Bucket", ""))
    if not cloud.authorization.may_list_bucket(iam, bucket):
        raise AwsError("AccessDenied", "Access Denied", 403)


class AwsGateway:
    """Turns one HTTP request into one provider call and its answer, in the service's protocol."""

    def __init__(self, cloud: Any, admin: dict[str, AdminHandler] | None = None) -> None:
        self.cloud = cloud
        self.admin = admin or {}
        self.last_request = time.monotonic()
        self.port = 0  # set once the server is bound
        self.verifier = Verifier(cloud.credentials, cloud.region)

    def handle(self, request: Request) -> Response:
        self.last_request = time.monotonic()
        refused = loopback.refusal(
            request.headers.get("Host"), request.headers.get("Origin"), self.port
        )
        if refused is not None:
            return _plain_error(403, "Forbidden", refused)
        if request.path.startswith(ADMIN_PREFIX):
            return self._admin(request)
        route = _route(request)
        if isinstance(route, Response):
            return route
        name, model_name, local_name = route
        try:
            protocol = determine_aws_protocol(request, service_model(model_name))
        except ProtocolError as err:
            return _plain_error(400, "SerializationException", str(err))
        request_id = str(uuid.uuid4())
        try:
            verified = self.verifier.verify(request, name)
        except AuthFailure as failure:
            error = aws_error(failure, service_model(model_name), protocol)
            operation = _error_operation(model_name, protocol, request)
            return self._error(model_name, protocol, operation, request, request_id, error)
        if verified.body is not None:
            request = _with_body(request, verified.body)
        request.environ[CALLER] = verified.key.principal
        if local_name == "sagemaker-runtime" and len(request.get_data()) > RUNTIME_MAX_PAYLOAD:
            _count_rejected(self.cloud, request.path, 413)  # before parsing, as AWS does
            return Response(f"HTTP content length exceeded {RUNTIME_MAX_PAYLOAD} bytes.", 413)
        return self._call(model_name, local_name, protocol, request, request_id)

    def _call(
        self, model_name: str, local_name: str, protocol: str, request: Request, request_id: str
    ) -> Response:
        operation: OperationModel | None = None
        try:
            operation, parsed = _parse(model_name, protocol, request)
            params = _without_none(parsed)
            validate_request(operation, params, request, protocol)
            result = dispatch(
                self.cloud, local_name, operation.name, params, request.environ[CALLER]
            )
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
        if not self.cloud.credentials.token_matches(request.headers.get(TOKEN_HEADER)):
            return _plain_error(
                403,
                "AccessDenied",
                f"the service's own paths ({ADMIN_PREFIX}) need the workspace's service token in "
                f"{TOKEN_HEADER}; sfn-mlops reads it from "
                f"{self.cloud.credentials.path} (mode 0600)",
            )
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


def _route(request: Request) -> tuple[str, str, str] | Response:
    """(signing name, botocore service, local service) of a signed request, or the answer to
    one that names no service the local cloud answers."""
    name = signing_name(request)
    if name is None:
        return _plain_error(
            403,
            "MissingAuthenticationTokenException",
            "Missing Authentication Token: sfn-mlops local mode answers requests signed with AWS "
            "Signature Version 4 by a key of the workspace (`sfn-mlops local env` prints the "
            "administrator's)",
        )
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
    return name, model_name, local_name


def _error_operation(model_name: str, protocol: str, request: Request) -> OperationModel:
    """An operation to serialize a refusal with: the request's, or any of the service's when
    the request cannot be read (the error's shape is the protocol's, not the operation's)."""
    try:
        return _parse(model_name, protocol, request)[0]
    except Exception:  # noqa: BLE001 - whatever an unauthenticated request holds
        model = service_model(model_name)
        return model.operation_model(model.operation_names[0])


def _with_body(request: Request, body: bytes) -> Request:
    """The request with its decoded ``aws-chunked`` body, as S3 stores the object."""
    headers = {
        key: value
        for key, value in request.headers.items()
        if key.lower() not in ("content-length", "content-encoding", "x-amz-decoded-content-length")
    }
    encoding = [
        part.strip()
        for part in request.headers.get("Content-Encoding", "").split(",")
        if part.strip() and part.strip() != "aws-chunked"
    ]
    if encoding:
        headers["Content-Encoding"] = ", ".join(encoding)
    headers["Content-Length"] = str(len(body))
    return Request(
        method=request.method,
        path=request.path,
        headers=headers,
        body=body,
        query_string=request.query_string,
        raw_path=request.path,
        remote_addr=request.remote_addr or "",
        server=request.server,
    )


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
        credentials.serve(self.url, cloud.credentials)  # the engine's integrations sign with it
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
        credentials.unserve(self.url)
        self.httpd.shutdown()
        self.httpd.server_close()
        if self._thread is not None:
            self._thread.join(5)
