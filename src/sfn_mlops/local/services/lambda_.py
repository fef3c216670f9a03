"""AWS Lambda: functions from template.yaml run in warm worker processes of their own.

Each worker has the function's environment and code folder, like a Lambda execution
environment; a worker that overruns the timeout is killed, as Lambda does, and the invocation
answers with Lambda's error payload so Step Functions sees the same error names.
"""

from __future__ import annotations

import base64
import io
import json
import os
import selectors
import subprocess
import sys
import threading
import time
import uuid
from pathlib import Path
from typing import Any

from botocore.response import StreamingBody

from sfn_mlops import settings
from sfn_mlops.local.credentials import AccessKey
from sfn_mlops.local.errors import AwsError

FUNCTIONS = "lambda/function"
MAX_PAYLOAD_BYTES = 6 * 1024 * 1024
_BASE_ENV_KEYS = (
    "PATH",
    "HOME",
    "LANG",
    "TZ",
    "SYSTEMROOT",
    "PYTHONPATH",
    "VIRTUAL_ENV",
    "AWS_ENDPOINT_URL",  # the local service: the function's boto3 clients reach it
)


class _Worker:
    """One warm execution environment."""

    def __init__(self, spec: dict[str, Any], cloud: Any) -> None:
        log_dir = cloud.logs_dir / "lambda"
        log_dir.mkdir(parents=True, exist_ok=True)
        self.log_path = log_dir / f"{spec['FunctionName']}.log"
        env = {k: os.environ[k] for k in _BASE_ENV_KEYS if k in os.environ}
        env.update(
            {
                "AWS_REGION": cloud.region,
                "AWS_DEFAULT_REGION": cloud.region,
                **_role_key(spec, cloud).environment(),  # its execution role's own keys
                "AWS_EC2_METADATA_DISABLED": "true",
                "AWS_LAMBDA_FUNCTION_NAME": spec["FunctionName"],
                "AWS_LAMBDA_FUNCTION_MEMORY_SIZE": str(spec["MemorySize"]),
                "AWS_LAMBDA_FUNCTION_VERSION": "$LATEST",
                "AWS_LAMBDA_LOG_GROUP_NAME": f"/aws/lambda/{spec['FunctionName']}",
                "AWS_LAMBDA_LOG_STREAM_NAME": str(self.log_path),
                "LAMBDA_TASK_ROOT": spec["CodeDir"],
                "_HANDLER": spec["Handler"],
                "SFN_MLOPS_FUNCTION_ARN": spec["FunctionArn"],
                settings.WORKSPACE_ENV: str(cloud.root),
                settings.TIME_SCALE_ENV: str(cloud.time_scale),
                "PYTHONUNBUFFERED": "1",
            }
        )
        env.update(spec.get("Environment", {}).get("Variables", {}))
        # No X-Ray here (as under `sam local`): Powertools' Tracer would look for a daemon.
        env["POWERTOOLS_TRACE_DISABLED"] = "true"
        with open(self.log_path, "ab") as log:
            self.process = subprocess.Popen(
                [sys.executable, "-m", "sfn_mlops.local.lambda_worker"],
                stdin=subprocess.PIPE,
                stdout=subprocess.PIPE,
                stderr=log,
                env=env,
                cwd=spec["CodeDir"],
            )

    def invoke(
        self, event: Any, request_id: str, timeout: float
    ) -> tuple[dict | None, tuple[str, str]]:
        """Return the worker's reply, or None and Lambda's (errorType, reason) for a dead one."""
        deadline = time.time() + timeout
        request = {"event": event, "request_id": request_id, "deadline_ms": int(deadline * 1000)}
        assert self.process.stdin and self.process.stdout
        try:
            self.process.stdin.write(json.dumps(request).encode() + b"\n")
            self.process.stdin.flush()
        except BrokenPipeError:
            return None, ("Runtime.ExitError", f"Runtime exited: exit status {self.process.poll()}")
        with selectors.DefaultSelector() as selector:
            selector.register(self.process.stdout, selectors.EVENT_READ)
            if not selector.select(max(deadline - time.time(), 0)):
                self.kill()
                return None, ("Sandbox.Timedout", f"Task timed out after {timeout:.2f} seconds")
        line = self.process.stdout.readline()
        if not line:
            return None, ("Runtime.ExitError", f"Runtime exited: exit status {self.process.wait()}")
        return json.loads(line), ("", "")

    def kill(self) -> None:
        self.process.kill()
        self.process.wait()

    def alive(self) -> bool:
        return self.process.poll() is None


class Lambda:
    def __init__(self, cloud: Any) -> None:
        self.cloud = cloud
        self._idle: dict[str, list[_Worker]] = {}
        self._lock = threading.Lock()

    def _spec(self, function_name: str) -> dict[str, Any]:
        name = function_name.split(":function:")[-1].split(":")[0]
        spec = self.cloud.metadata.get(FUNCTIONS, name)
        if spec is None:
            known = ", ".join(
                sorted(f["FunctionName"] for f in self.cloud.metadata.list(FUNCTIONS))
            )
            raise AwsError(
                "ResourceNotFoundException",
                f"Function not found: {self.cloud.arn('lambda', f'function:{name}')}"
                f" (local functions: {known or 'none; run sfn-mlops deploy first'})",
                404,
            )
        return spec

    def get_function(self, params: dict[str, Any]) -> dict[str, Any]:
        return {"Configuration": _configuration(self._spec(params["FunctionName"]))}

    def list_functions(self, params: dict[str, Any]) -> dict[str, Any]:
        return {"Functions": [_configuration(s) for s in self.cloud.metadata.list(FUNCTIONS)]}

    def invoke(self, params: dict[str, Any]) -> dict[str, Any]:
        spec = self._spec(params["FunctionName"])
        payload = params.get("Payload") or b"{}"
        if hasattr(payload, "read"):
            payload = payload.read()
        if len(payload) > MAX_PAYLOAD_BYTES:
            raise AwsError(
                "RequestTooLargeException",
                f"Request must be smaller than {MAX_PAYLOAD_BYTES} bytes for the Invoke operation",
                413,
            )
        try:
            event = json.loads(payload)
        except ValueError as err:
            raise AwsError(
                "InvalidRequestContentException", f"Could not parse request body into json: {err}"
            ) from err
        invocation = params.get("InvocationType", "RequestResponse")
        if invocation == "DryRun":
            return {"StatusCode": 204}
        if invocation == "Event":
            threading.Thread(target=self._run, args=(spec, event), daemon=True).start()
            return {"StatusCode": 202}
        body, function_error, log_tail = self._run(spec, event)
        result: dict[str, Any] = {
            "StatusCode": 200,
            "ExecutedVersion": "$LATEST",
            "Payload": StreamingBody(io.BytesIO(body), len(body)),
        }
        if function_error:
            result["FunctionError"] = function_error
        if params.get("LogType") == "Tail":
            result["LogResult"] = base64.b64encode(log_tail[-4096:]).decode()
        return result

    def _run(self, spec: dict[str, Any], event: Any) -> tuple[bytes, str | None, bytes]:
        request_id = str(uuid.uuid4())
        worker = self._take(spec)
        start = worker.log_path.stat().st_size if worker.log_path.exists() else 0
        reply, (error_type, reason) = worker.invoke(event, request_id, float(spec["Timeout"]))
        if reply is None:
            error = {
                "errorType": error_type,
                "errorMessage": f"RequestId: {request_id} Error: {reason}",
            }
            body, function_error = json.dumps(error).encode(), "Unhandled"
        else:
            self._give_back(spec["FunctionName"], worker)
            if "error" in reply:
                body, function_error = json.dumps(reply["error"]).encode(), "Unhandled"
            else:
                body, function_error = json.dumps(reply["result"]).encode(), None
        tail = _read_from(worker.log_path, start)
        return body, function_error, tail

    def _take(self, spec: dict[str, Any]) -> _Worker:
        with self._lock:
            idle = self._idle.setdefault(spec["FunctionName"], [])
            while idle:
                worker = idle.pop()
                if worker.alive():
                    return worker
        return _Worker(spec, self.cloud)

    def _give_back(self, name: str, worker: _Worker) -> None:
        if worker.alive():
            with self._lock:
                self._idle.setdefault(name, []).append(worker)

    def prewarm(self) -> None:
        """Start one execution environment per function now, like provisioned concurrency.

        A worker's start (interpreter, imports, handler module) then overlaps the jobs that run
        before the function's first invocation instead of adding to it.
        """
        for spec in self.cloud.metadata.list(FUNCTIONS):
            with self._lock:
                if self._idle.get(spec["FunctionName"]):
                    continue
            self._give_back(spec["FunctionName"], _Worker(spec, self.cloud))

    def shutdown(self) -> None:
        with self._lock:
            for workers in self._idle.values():
                for worker in workers:
                    worker.kill()
            self._idle.clear()


def _role_key(spec: dict[str, Any], cloud: Any) -> AccessKey:
    """The keys of the function's execution role, as Lambda gives a function its role's
    temporary credentials (a session named after the function)."""
    name = spec["FunctionName"]
    role = spec.get("Role") or f"arn:aws:iam::{cloud.account}:role/{name}Role"  # an older record
    key: AccessKey = cloud.credentials.for_role(role, name)
    return key


def _read_from(path: Path, offset: int) -> bytes:
    try:
        with open(path, "rb") as log:
            log.seek(offset)
            return log.read()
    except FileNotFoundError:
        return b""


def _configuration(spec: dict[str, Any]) -> dict[str, Any]:
    return {
        "FunctionName": spec["FunctionName"],
        "FunctionArn": spec["FunctionArn"],
        "Runtime": spec.get("Runtime", "python3.12"),
        "Handler": spec["Handler"],
        "Timeout": spec["Timeout"],
        "MemorySize": spec["MemorySize"],
        "Environment": spec.get("Environment", {"Variables": {}}),
        **({"Role": spec["Role"]} if spec.get("Role") else {}),
        "Version": "$LATEST",
    }
