"""The local endpoints' data plane: one serving process per endpoint, owned by the local service.

The control plane (``services/sagemaker_hosting.py`` and ``deployments.py``) decides what an
endpoint serves; this module makes it so. ``serve`` starts the endpoint's process
(``sfn_mlops.local.endpoint_server``) the first time, on a port that it then keeps for the
endpoint's life (a user's URL stays valid across deployments), and later hands it new routing
tables: a deployment shifts traffic by calling ``serve`` with the old and the new fleet and
their shares. ``invoke`` is how the service's ``sagemaker-runtime`` reaches an endpoint.
"""

from __future__ import annotations

import http.client
import json
import logging
import os
import subprocess
import sys
import threading
import time
from collections.abc import Sequence
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any

from sfn_mlops.local import endpoint_server
from sfn_mlops.local.credentials import SERVICE_TOKEN_ENV, TOKEN_HEADER, without_credentials

log = logging.getLogger("sfn_mlops.local.endpoints")

_START_SECONDS = 60.0
_CAPTURE_ROTATE_SECONDS = 10.0
METRICS_SECONDS = 1.0  # how often the endpoints' counters become datapoints (times time_scale)
NAMESPACE = "AWS/SageMaker"


class EndpointError(Exception):
    """An endpoint cannot serve what it was given (a model does not load, the process died)."""


@dataclass(frozen=True)
class VariantSpec:
    name: str
    model_name: str
    image: str
    model_data_url: str
    environment: dict[str, str]
    instance_count: int
    weight: float


@dataclass(frozen=True)
class Fleet:
    """The variants of one endpoint config, as one deployment generation serves them."""

    fleet_id: str
    variants: tuple[VariantSpec, ...]


@dataclass(frozen=True)
class CaptureSpec:
    destination_s3_uri: str
    sampling_percentage: int
    capture_input: bool
    capture_output: bool
    csv_content_types: tuple[str, ...] = ()  # empty: base64, as SageMaker captures by default
    json_content_types: tuple[str, ...] = ()


@dataclass(frozen=True)
class InvokeResult:
    status: int
    body: bytes
    content_type: str
    variant: str | None
    routing_error: bool = False  # the endpoint, not the model, refused (e.g. an unknown variant)
    custom_attributes: str | None = None


@dataclass
class _Process:
    popen: subprocess.Popen[bytes]
    port: int
    log_path: Path
    spec: dict[str, Any]  # what it serves now: a process that dies is started again with it
    connections: threading.local = field(default_factory=threading.local)


class EndpointHosts:
    """The serving processes of one local cloud, by endpoint name."""

    def __init__(self, cloud: Any) -> None:
        self.cloud = cloud
        self.root = Path(cloud.root) / "endpoints"
        self._lock = threading.Lock()
        self._processes: dict[str, _Process] = {}
        self._stop_pump = threading.Event()
        self._pump: threading.Thread | None = None

    def folder(self, endpoint_name: str) -> Path:
        return self.root / endpoint_name

    def serve(
        self,
        endpoint_name: str,
        fleets: Sequence[tuple[Fleet, float]],
        capture: CaptureSpec | None,
    ) -> int:
        """Serve ``fleets`` (each with its traffic share) at the endpoint; returns its port.

        Returns once every model is loaded and the new table takes the traffic; raises
        EndpointError (the process's own message) when a model cannot load, the old table
        still serving.
        """
        spec = self._spec(endpoint_name, fleets, capture)
        with self._lock:
            process = self._processes.get(endpoint_name)
            if process is not None and process.popen.poll() is None:
                self._update(process, spec)
                process.spec = spec
                return process.port
            process = self._start(endpoint_name, spec)
            self._processes[endpoint_name] = process
            if self._pump is None:
                self._pump = threading.Thread(target=self._pump_metrics, daemon=True,
                                              name="endpoint-metrics")  # fmt: skip
                self._pump.start()
            return process.port

    def port(self, endpoint_name: str) -> int | None:
        process = self._processes.get(endpoint_name)
        return process.port if process is not None and process.popen.poll() is None else None

    def pid(self, endpoint_name: str) -> int | None:
        process = self._processes.get(endpoint_name)
        return process.popen.pid if process is not None and process.popen.poll() is None else None

    def stop(self, endpoint_name: str) -> None:
        with self._lock:
            process = self._processes.pop(endpoint_name, None)
        if process is not None:
            _terminate(process.popen)

    def stop_all(self) -> None:
        self._stop_pump.set()
        with self._lock:
            processes, self._processes = dict(self._processes), {}
        for process in processes.values():
            _terminate(process.popen)

    def invoke(self, endpoint_name: str, body: bytes, headers: dict[str, str]) -> InvokeResult:
        """One request to the endpoint's ``/invocations``, as a client on loopback sends it."""
        process = self._processes.get(endpoint_name)
        if process is None or process.popen.poll() is not None:
            raise EndpointError(f"endpoint {endpoint_name} has no serving process")
        status, answer, reply = _request(process, "POST", "/invocations", body, headers)
        return InvokeResult(
            status=status,
            body=answer,
            content_type=reply.get("Content-Type", "application/octet-stream"),
            variant=reply.get(endpoint_server.VARIANT_HEADER),
            routing_error=bool(reply.get(endpoint_server.ROUTING_ERROR_HEADER)),
            custom_attributes=reply.get(endpoint_server.CUSTOM_ATTRIBUTES_HEADER),
        )

    def count_rejected(self, endpoint_name: str, status: int) -> None:
        """A request the runtime refused before the endpoint saw it (over 6 MB) still counts
        in the variant's Invocation4XXErrors, as in SageMaker."""
        process = self._processes.get(endpoint_name)
        if process is not None and process.popen.poll() is None:
            path = f"{endpoint_server.ADMIN}rejected?status={status}"
            _request(process, "POST", path, b"", self._admin_headers())

    def take_metrics(self, endpoint_name: str) -> dict[str, Any]:
        """Per variant: the counters and latencies since the last call (CloudWatch's source)."""
        process = self._processes.get(endpoint_name)
        if process is None or process.popen.poll() is not None:
            return {}
        _, answer, _ = _request(
            process, "GET", endpoint_server.ADMIN + "metrics", b"", self._admin_headers()
        )
        result: dict[str, Any] = json.loads(answer)
        return result

    def serving(self) -> list[str]:
        return [name for name in list(self._processes) if self.port(name) is not None]

    def publish_metrics(self) -> int:
        """The counters of every serving endpoint as CloudWatch datapoints (AWS/SageMaker,
        EndpointName and VariantName, as SageMaker reports them); returns how many."""
        try:
            cloudwatch = self.cloud.service("cloudwatch")
        except Exception:  # noqa: BLE001 - without a local CloudWatch there is nowhere to put them
            return 0
        data = [
            datum
            for name in self.serving()
            for variant, counters in self._metrics_of(name).items()
            for datum in _datapoints(name, variant, counters)
        ]
        for start in range(0, len(data), 1000):  # PutMetricData takes 1000 a call
            cloudwatch.record_metrics(
                {"Namespace": NAMESPACE, "MetricData": data[start : start + 1000]}
            )
        return len(data)

    def _metrics_of(self, name: str) -> dict[str, Any]:
        try:
            return self.take_metrics(name)
        except EndpointError:
            return {}

    def revive(self) -> list[str]:
        """Start again, on the same port and with the same models and routing, each endpoint
        whose serving process died (a crash, a ``kill -9``), as SageMaker replaces a failed
        instance; returns their names."""
        revived = []
        with self._lock:
            for name, process in list(self._processes.items()):
                code = process.popen.poll()
                if code is None:
                    continue
                log.warning("endpoint %s: its serving process exited (%s); starting it again",
                            name, code)  # fmt: skip
                try:
                    self._processes[name] = self._start(name, process.spec)
                    revived.append(name)
                except EndpointError:
                    log.exception("endpoint %s could not be started again", name)
                    del self._processes[name]  # tried once: invoking it now says so
        return revived

    def _pump_metrics(self) -> None:
        """Every second (times the time scale): the metrics, and a look for dead processes."""
        interval = max(0.05, METRICS_SECONDS * self.cloud.time_scale)
        while not self._stop_pump.wait(interval):
            try:
                self.revive()
                self.publish_metrics()
            except Exception:  # noqa: BLE001 - metrics must never stop the endpoints
                log.exception("endpoint metrics could not be published")

    # ------------------------------------------------------------------ the processes
    def _spec(
        self, name: str, fleets: Sequence[tuple[Fleet, float]], capture: CaptureSpec | None
    ) -> dict[str, Any]:
        return {
            "endpoint_name": name,
            "folder": str(self.folder(name)),
            "objects_root": str(self.cloud.objects.root),
            "rotate_seconds": _CAPTURE_ROTATE_SECONDS * self.cloud.time_scale,
            "fleets": [
                {
                    "fleet_id": fleet.fleet_id,
                    "share": share,
                    "variants": [asdict(variant) for variant in fleet.variants],
                }
                for fleet, share in fleets
            ],
            "capture": asdict(capture) if capture is not None else None,
        }

    def _start(self, name: str, spec: dict[str, Any]) -> _Process:
        folder = self.folder(name)
        folder.mkdir(parents=True, exist_ok=True)
        published = endpoint_server.publish_leftovers(folder / "spool", self.cloud.objects.root)
        if published:
            log.warning("endpoint %s: published %d capture file(s) left by a killed process",
                        name, published)  # fmt: skip
        port_file = folder / "port"
        if port_file.is_file():
            spec = {**spec, "port": int(port_file.read_text() or 0)}
        spec_path = folder / "spec.json"
        spec_path.write_text(json.dumps(spec))
        log_path = folder / "endpoint.log"
        with open(log_path, "ab") as log_file:
            popen = subprocess.Popen(
                [sys.executable, "-m", "sfn_mlops.local.endpoint_server", str(spec_path)],
                stdout=subprocess.PIPE,
                stderr=log_file,
                stdin=subprocess.DEVNULL,
                env=self._environment(),
                start_new_session=True,
            )
        assert popen.stdout is not None
        line = _read_line(popen, _START_SECONDS)
        if not line:
            popen.wait(5)
            raise EndpointError(_last_error(log_path) or f"endpoint {name} did not start")
        port = int(json.loads(line)["port"])
        port_file.write_text(str(port))
        return _Process(popen=popen, port=port, log_path=log_path, spec=spec)

    def _environment(self) -> dict[str, str]:
        """The service's environment without its AWS keys (an endpoint calls no AWS service),
        with the token of the endpoint's own paths."""
        return {
            **without_credentials(dict(os.environ)),
            "OMP_NUM_THREADS": "1",
            SERVICE_TOKEN_ENV: self.cloud.credentials.service_token(),
        }

    def _admin_headers(self) -> dict[str, str]:
        return {TOKEN_HEADER: self.cloud.credentials.service_token()}

    def _update(self, process: _Process, spec: dict[str, Any]) -> None:
        body = json.dumps(spec).encode()
        status, answer, _ = _request(
            process, "POST", endpoint_server.ADMIN + "routing", body,
            {"Content-Type": "application/json", **self._admin_headers()},
            timeout=_START_SECONDS,
        )  # fmt: skip
        if status != 200:
            raise EndpointError(answer.decode("utf-8", "replace"))


def _datapoints(endpoint: str, variant: str, counters: dict[str, Any]) -> list[dict[str, Any]]:
    """One endpoint variant's counters as PutMetricData items. The error counts are per
    invocation (0 or 1 each): their Sum is the count and their Average the error rate."""
    dimensions = [
        {"Name": "EndpointName", "Value": endpoint},
        {"Name": "VariantName", "Value": variant},
    ]
    invocations = counters["Invocations"]
    if not invocations:
        return []
    data = []
    for metric in ("Invocations", "Invocation4XXErrors", "Invocation5XXErrors"):
        count = counters[metric]
        low = 1.0 if metric == "Invocations" else 0.0 if count < invocations else 1.0
        high = 1.0 if metric == "Invocations" or count else 0.0
        data.append({"MetricName": metric, "Dimensions": dimensions, "Unit": "None",
                     "StatisticValues": {"SampleCount": float(invocations), "Sum": float(count),
                                         "Minimum": low, "Maximum": high}})  # fmt: skip
    for metric in ("ModelLatency", "OverheadLatency"):
        stats = {key: float(value) for key, value in counters[metric].items()}
        data.append({"MetricName": metric, "Dimensions": dimensions, "Unit": "Microseconds",
                     "StatisticValues": stats})  # fmt: skip
    return data


def _read_line(popen: subprocess.Popen[bytes], timeout: float) -> bytes:
    """The process's first line of output, or b"" if it exits (or says nothing) in time."""
    result: list[bytes] = []
    reader = threading.Thread(target=lambda: result.append(popen.stdout.readline()))  # type: ignore[union-attr]
    reader.daemon = True
    reader.start()
    reader.join(timeout)
    if not result:
        popen.kill()
        return b""
    return result[0].strip()


def _last_error(log_path: Path) -> str:
    lines = [line for line in log_path.read_text(errors="replace").splitlines() if line.strip()]
    return lines[-1] if lines else ""


def _request(
    process: _Process,
    method: str,
    path: str,
    body: bytes,
    headers: dict[str, str],
    timeout: float = 60.0,
) -> tuple[int, bytes, Any]:
    """One request on this thread's kept-alive connection (opened again once if it dropped)."""
    for attempt in (1, 2):
        connection = getattr(process.connections, "value", None)
        if connection is None:
            connection = http.client.HTTPConnection("127.0.0.1", process.port, timeout=timeout)
            process.connections.value = connection
        try:
            connection.request(method, path, body=body, headers=headers)
            response = connection.getresponse()
            return response.status, response.read(), response.headers
        except (ConnectionError, http.client.HTTPException, OSError):
            connection.close()
            process.connections.value = None
            if attempt == 2 or process.popen.poll() is not None:
                raise EndpointError("the endpoint's process does not answer") from None
    raise AssertionError("unreachable")


def _terminate(popen: subprocess.Popen[bytes], grace: float = 10.0) -> None:
    """SIGTERM (the process publishes its capture files), SIGKILL after ``grace`` seconds."""
    if popen.poll() is None:
        popen.terminate()
        try:
            popen.wait(grace)
        except subprocess.TimeoutExpired:
            popen.kill()
            popen.wait(5)
    if popen.stdout is not None:
        popen.stdout.close()


def wait_ready(port: int, timeout: float = 10.0) -> None:
    """Until ``/ping`` answers 200 (tests and the CLI use it after a start)."""
    deadline = time.monotonic() + timeout
    while True:
        try:
            connection = http.client.HTTPConnection("127.0.0.1", port, timeout=2)
            connection.request("GET", "/ping")
            if connection.getresponse().status == 200:
                return
        except OSError:
            if time.monotonic() > deadline:
                raise
        time.sleep(0.05)
