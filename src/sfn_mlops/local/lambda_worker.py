"""A warm Lambda execution environment: one process per function, reused across invocations.

The parent writes one JSON request per line to stdin; the worker answers one JSON line on the
protocol pipe. What the handler prints goes to stderr, which is the function's log.
"""

from __future__ import annotations

import importlib
import json
import os
import sys
import time
import traceback
from typing import Any, TextIO


class LambdaContext:
    """The context object Lambda's Python runtime passes to handlers."""

    def __init__(self, request_id: str, deadline_ms: int) -> None:
        self.function_name = os.environ["AWS_LAMBDA_FUNCTION_NAME"]
        self.function_version = os.environ.get("AWS_LAMBDA_FUNCTION_VERSION", "$LATEST")
        self.invoked_function_arn = os.environ["SFN_MLOPS_FUNCTION_ARN"]
        self.memory_limit_in_mb = int(os.environ.get("AWS_LAMBDA_FUNCTION_MEMORY_SIZE", "128"))
        self.aws_request_id = request_id
        self.log_group_name = os.environ.get("AWS_LAMBDA_LOG_GROUP_NAME", "")
        self.log_stream_name = os.environ.get("AWS_LAMBDA_LOG_STREAM_NAME", "")
        self.identity = None
        self.client_context = None
        self._deadline_ms = deadline_ms

    def get_remaining_time_in_millis(self) -> int:
        return max(self._deadline_ms - int(time.time() * 1000), 0)


def _error(error_type: str, message: str, trace: list[str] | None = None) -> dict[str, Any]:
    return {"errorMessage": message, "errorType": error_type, "stackTrace": trace or []}


def _load_handler(spec: str) -> Any:
    module_name, _, function_name = spec.rpartition(".")
    try:
        module = importlib.import_module(module_name)
    except Exception as err:
        raise _InitError(
            "Runtime.ImportModuleError", f"Unable to import module '{module_name}': {err}"
        ) from err
    handler = getattr(module, function_name, None)
    if handler is None:
        raise _InitError(
            "Runtime.HandlerNotFound",
            f"Handler '{function_name}' missing on module '{module_name}'",
        )
    return handler


class _InitError(Exception):
    def __init__(self, error_type: str, message: str) -> None:
        super().__init__(message)
        self.error_type = error_type


def serve(requests: TextIO, replies: TextIO) -> None:
    """The function's AWS clients reach the local service through ``AWS_ENDPOINT_URL``."""
    sys.path.insert(0, os.environ["LAMBDA_TASK_ROOT"])
    try:
        handler = _load_handler(os.environ["_HANDLER"])
        init_error = None
    except _InitError as err:
        handler, init_error = None, _error(err.error_type, str(err))
    for line in requests:
        request = json.loads(line)
        reply = {"error": init_error} if init_error is not None else _invoke(handler, request)
        replies.write(json.dumps(reply) + "\n")
        replies.flush()


def _invoke(handler: Any, request: dict[str, Any]) -> dict[str, Any]:
    context = LambdaContext(request["request_id"], request["deadline_ms"])
    try:
        result = handler(request["event"], context)
        return {"result": json.loads(json.dumps(result, default=str))}
    except Exception as err:
        trace = traceback.format_exception(err)
        print("".join(trace), file=sys.stderr, flush=True)
        return {"error": _error(type(err).__name__, str(err), trace)}


def main() -> None:
    # Keep the real stdout for replies; anything the handler prints goes to the log.
    replies = os.fdopen(os.dup(1), "w")
    os.dup2(2, 1)
    sys.stdout = sys.stderr
    serve(sys.stdin, replies)


if __name__ == "__main__":
    main()
