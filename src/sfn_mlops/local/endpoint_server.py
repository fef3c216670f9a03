"""One local endpoint: SageMaker's serving contract on a 127.0.0.1 port, in a process of its own.

The local service (``sfn_mlops.local.endpoints``) starts one of these per endpoint and tells it
what to serve: fleets (the variants of an endpoint config) with a traffic share each, as a
blue/green deployment shifts them. Each variant's model is loaded as the SageMaker XGBoost
container loads it: ``model.tar.gz`` unpacked into a model folder, and in script mode
(``SAGEMAKER_PROGRAM`` and ``SAGEMAKER_SUBMIT_DIRECTORY`` in the model's environment) the
user's ``model_fn``/``input_fn``/``predict_fn``/``output_fn``; without them, the container's
default handler (numeric CSV rows in, predictions out).

Paths: ``GET /ping``, ``POST /invocations`` (SageMaker's contract: what a container answers),
and under ``/_sfn-mlops/`` the service's own: ``POST routing`` (a new table, models loaded
before it takes effect, so no request ever meets a half-loaded variant) and ``GET metrics``
(the counters since the last read, for CloudWatch). Only requests addressed to this loopback
port and not sent by another site's page are answered (``loopback``); the service's own paths
also need the service's token (``SFN_MLOPS_SERVICE_TOKEN`` in this process's environment).

Data capture is SageMaker's: a JSON line per sampled request under
``<destination>/<endpoint>/<variant>/yyyy/mm/dd/hh/<mm-ss-mmm>-<uuid>.jsonl``. Lines are
written whole (one ``os.write`` of complete lines) to a ``.part`` file in the endpoint's spool
folder and the file is moved into the object store every ``rotate_seconds`` and at stop, so an
object is never half a file. A ``kill -9`` leaves the spool files behind; the service publishes
them at the next start, cut after their last newline (a kill during a write tears the last line).

    python -m sfn_mlops.local.endpoint_server SPEC.json   # prints {"port": N} once serving
"""

from __future__ import annotations

import base64
import hmac
import importlib.util
import json
import os
import random
import signal
import sys
import tarfile
import threading
import time
import uuid
from collections.abc import Callable
from dataclasses import dataclass, field
from datetime import UTC, datetime
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path
from typing import Any

from sfn_mlops.local import loopback
from sfn_mlops.local.credentials import SERVICE_TOKEN_ENV, TOKEN_HEADER

MAX_PAYLOAD = 6 * 1024 * 1024  # SageMaker's InvokeEndpoint limit: 6 MB
ADMIN = "/_sfn-mlops/"
VARIANT_HEADER = "X-Amzn-Invoked-Production-Variant"
TARGET_VARIANT_HEADER = "X-Amzn-SageMaker-Target-Variant"
INFERENCE_ID_HEADER = "X-Amzn-SageMaker-Inference-Id"
CUSTOM_ATTRIBUTES_HEADER = "X-Amzn-SageMaker-Custom-Attributes"
ROUTING_ERROR_HEADER = "X-Sfn-Mlops-Routing-Error"  # the endpoint refused, not the model
# The default handler reads a numeric CSV body this large or larger with pyarrow in one call;
# below it pyarrow's fixed cost per call is more than the value-by-value loop's.
FAST_CSV_BYTES = 16 * 1024
# Line breaks of str.splitlines that pyarrow does not break lines at (besides \n, \r and the
# non-ASCII ones), and NUL: a body with any of them takes the value-by-value loop.
_SPLITLINES_ONLY = (b"\x0b", b"\x0c", b"\x1c", b"\x1d", b"\x1e", b"\x00")
_FLUSH_SECONDS = 0.2


class LoadError(Exception):
    """A variant's model cannot be loaded: the endpoint (or the update) fails with this text."""


class RequestError(Exception):
    """A request the model's container answers with ``status`` and ``message``."""

    def __init__(self, status: int, message: str) -> None:
        super().__init__(message)
        self.status = status


# ------------------------------------------------------------------ models


@dataclass
class Handlers:
    """A model as the serving toolkit holds it: the loaded model and the four functions."""

    model: Any
    input_fn: Callable[[bytes, str], Any]
    predict_fn: Callable[[Any, Any], Any]
    output_fn: Callable[[Any, str], Any]
    user_error: type[Exception]


def load_variant(spec: dict[str, Any], objects_root: Path, folder: Path) -> Handlers:
    """Unpack the variant's model (and, in script mode, its code) and load it."""
    model_dir, code_dir = folder / "model", folder / "code"
    _unpack(spec["model_data_url"], objects_root, model_dir, "ModelDataUrl")
    environment = spec.get("environment") or {}
    program = environment.get("SAGEMAKER_PROGRAM")
    os.environ.setdefault("SFN_MLOPS_INFERENCE_THREADS", "1")  # see DESIGN: pin per worker
    if not program:
        return _default_handlers(model_dir)
    submit = environment.get("SAGEMAKER_SUBMIT_DIRECTORY")
    if not submit:
        raise LoadError(
            f"model {spec['model_name']}: SAGEMAKER_PROGRAM is {program!r} but "
            "SAGEMAKER_SUBMIT_DIRECTORY (the S3 URI of sourcedir.tar.gz) is not set"
        )
    _unpack(submit, objects_root, code_dir, "SAGEMAKER_SUBMIT_DIRECTORY")
    module = _import_script(code_dir, program, spec["model_name"])
    try:  # the toolkit's defaults stand in for the functions a script leaves out
        model = module.model_fn(str(model_dir)) if hasattr(module, "model_fn") else None
        model = model if model is not None else _load_booster(model_dir)
    except LoadError:
        raise
    except Exception as exc:  # noqa: BLE001 - the container reports any load failure
        raise LoadError(f"model {spec['model_name']}: model_fn failed: {exc}") from exc
    return Handlers(
        model=model,
        input_fn=getattr(module, "input_fn", _csv_input),
        predict_fn=getattr(module, "predict_fn", _predict_booster),
        output_fn=getattr(module, "output_fn", _csv_output),
        user_error=getattr(module, "InvalidInput", ValueError),
    )


def answer(
    handlers: Handlers, body: bytes, content_type: str, accept: str
) -> tuple[int, bytes, str]:
    """(status, body, content type) of one request through the model's four functions, as the
    serving toolkit answers it: a bad request is its status (the handler's ``status_code``, else
    400), a model bug a 500. The endpoint and batch transform (``jobs.transform``) both call it.
    """
    try:
        data = handlers.input_fn(body, content_type)
        prediction = handlers.predict_fn(data, handlers.model)
        payload, out_type = handlers.output_fn(prediction, accept)
    except RequestError as exc:
        return exc.status, str(exc).encode(), "text/plain"
    except handlers.user_error as exc:  # the toolkit's errors carry their status_code
        return getattr(exc, "status_code", 400), str(exc).encode(), "text/plain"
    except Exception as exc:  # noqa: BLE001 - a model bug is a 500, never a dead server
        return 500, f"{type(exc).__name__}: {exc}".encode(), "text/plain"
    return 200, payload.encode() if isinstance(payload, str) else bytes(payload), out_type


def _unpack(uri: str, objects_root: Path, target: Path, what: str) -> None:
    if not uri.startswith("s3://"):
        raise LoadError(f"{what} {uri!r} is not an S3 URI (s3://bucket/key)")
    bucket, _, key = uri.removeprefix("s3://").partition("/")
    path = objects_root / bucket / key
    target.mkdir(parents=True, exist_ok=True)
    if not key or not path.is_file():
        raise LoadError(f"{what} {uri}: the object does not exist (NoSuchKey)")
    try:
        with tarfile.open(path, "r:*") as tar:
            tar.extractall(target, filter="data")
    except (tarfile.TarError, OSError) as exc:
        raise LoadError(f"{what} {uri} is not a tar.gz archive: {exc}") from exc


def _import_script(code_dir: Path, program: str, model_name: str) -> Any:
    path = code_dir / program
    if not path.is_file():
        raise LoadError(f"model {model_name}: SAGEMAKER_PROGRAM {program} is not in its code")
    sys.path.insert(0, str(code_dir))
    name = f"sfn_mlops_serving_{uuid.uuid4().hex}"
    spec = importlib.util.spec_from_file_location(name, path)
    assert spec is not None and spec.loader is not None
    module = importlib.util.module_from_spec(spec)
    sys.modules[name] = module  # dataclasses (and pickling) look their module up there
    try:
        spec.loader.exec_module(module)
    except Exception as exc:  # noqa: BLE001 - the user's script failed to import
        del sys.modules[name]
        raise LoadError(f"model {model_name}: importing {program} failed: {exc}") from exc
    finally:
        sys.path.remove(str(code_dir))
    return module


def _default_handlers(model_dir: Path) -> Handlers:
    """The XGBoost container's own handler: numeric CSV rows in, one prediction a line out."""
    return Handlers(_load_booster(model_dir), _csv_input, _predict_booster, _csv_output, ValueError)


def _load_booster(model_dir: Path) -> Any:
    import xgboost

    path = model_dir / "xgboost-model"
    if not path.is_file():
        raise LoadError(f"the model archive has no xgboost-model (found {_listing(model_dir)})")
    booster = xgboost.Booster()
    try:
        booster.load_model(str(path))
    except xgboost.core.XGBoostError as exc:
        raise LoadError(f"xgboost-model does not load: {exc}") from exc
    booster.set_param({"nthread": 1})
    return booster


def _predict_booster(rows: Any, booster: Any) -> Any:
    import numpy as np

    matrix = np.asarray(rows, dtype=np.float32)
    expected = booster.num_features()
    if matrix.ndim != 2 or matrix.shape[1] != expected:
        raise ValueError(
            f"Feature size of csv inference data {matrix.shape[-1]} is not consistent "
            f"with feature size of trained model {expected}."
        )
    return booster.inplace_predict(matrix)


def _listing(folder: Path) -> list[str]:
    return sorted(p.name for p in folder.iterdir()) if folder.is_dir() else []


def _csv_input(body: bytes, content_type: str) -> Any:
    """Numeric CSV rows: a float32 matrix for a large body pyarrow reads exactly as the loop
    below does, else the loop's list of rows (its errors, and ragged rows for predict to refuse).
    """
    if content_type.split(";")[0].strip().lower() != "text/csv":
        raise RequestError(415, f"Content type {content_type} is not supported by this model")
    matrix = _numeric_csv(body) if len(body) >= FAST_CSV_BYTES else None
    if matrix is not None:
        return matrix
    rows = []
    for number, line in enumerate(body.decode("utf-8").splitlines(), 1):
        if line.strip():
            try:
                rows.append([float(v) if v.strip() else float("nan") for v in line.split(",")])
            except ValueError:
                raise ValueError(f"Loading csv data failed: row {number} is not numeric") from None
    if not rows:
        raise ValueError("Loading csv data failed: the request has no rows")
    return rows


def _numeric_csv(body: bytes) -> Any:
    """The float32 matrix of a numeric CSV body read by pyarrow, or None where it cannot read
    it or might read it otherwise than ``_csv_input``'s loop (``splitlines``, then ``float()``
    of each comma-separated value, an empty one NaN): a non-ASCII body, a line break pyarrow
    does not know, a row of another width, a value that is not a plain decimal number."""
    if not isinstance(body, bytes) or not body.isascii():
        return None
    if any(character in body for character in _SPLITLINES_ONLY):
        return None
    import numpy as np
    import pyarrow as pa
    import pyarrow.csv as pacsv

    end = body.find(b"\n")
    width = (body if end < 0 else body[:end]).count(b",") + 1  # pyarrow checks the other rows
    names = [f"c{index}" for index in range(width)]
    try:
        table = pacsv.read_csv(
            pa.BufferReader(body),
            read_options=pacsv.ReadOptions(column_names=names),
            parse_options=pacsv.ParseOptions(quote_char=False, escape_char=False),
            convert_options=pacsv.ConvertOptions(
                column_types=dict.fromkeys(names, pa.float64()), null_values=[""]
            ),
        )
    except pa.ArrowInvalid:
        return None
    if table.num_rows == 0:
        return None
    matrix = np.empty((table.num_rows, width), dtype=np.float64)
    for index in range(width):
        column = table.column(index)
        numbers = column.to_numpy()  # an empty field (a null) is NaN
        if np.count_nonzero(~np.isfinite(numbers)) != column.null_count:
            return None  # "nan", "inf", "1e999", "nan(1)": float() decides what they are
        matrix[:, index] = numbers
    return matrix.astype(np.float32)  # double, then float32: what np.asarray(rows, float32) does


def _csv_output(prediction: Any, accept: str) -> tuple[str, str]:
    return "\n".join(str(v) for v in prediction) + "\n", "text/csv"


# ------------------------------------------------------------------ routing


@dataclass
class Variant:
    name: str
    weight: float
    handlers: Handlers


@dataclass
class Fleet:
    fleet_id: str
    share: float
    variants: list[Variant]


@dataclass
class Routing:
    """Which fleet and variant a request goes to: fleets by share, variants by weight."""

    fleets: list[Fleet]

    def pick(self, target: str | None) -> Variant:
        live = [f for f in self.fleets if f.share > 0 and any(v.weight > 0 for v in f.variants)]
        fleet = _weighted(live, [f.share for f in live]) if live else None
        if target:
            candidates = ([fleet] if fleet else []) + self.fleets
            for candidate in candidates:
                for variant in candidate.variants:
                    if variant.name == target:
                        return variant
            names = sorted({v.name for f in self.fleets for v in f.variants})
            raise RequestError(
                400, f"The variant {target!r} is not part of this endpoint; variants: {names}"
            )
        if fleet is None:
            raise RequestError(503, "No variant of this endpoint has a weight above 0")
        variants = [v for v in fleet.variants if v.weight > 0]
        return _weighted(variants, [v.weight for v in variants])


def _weighted(items: list[Any], weights: list[float]) -> Any:
    if len(items) == 1:
        return items[0]
    return random.choices(items, weights)[0]


# ------------------------------------------------------------------ capture


@dataclass(frozen=True)
class Capture:
    destination: str  # s3://bucket/prefix
    sampling_percentage: int
    capture_input: bool
    capture_output: bool
    csv_types: frozenset[str]
    json_types: frozenset[str]

    @classmethod
    def from_spec(cls, spec: dict[str, Any] | None) -> Capture | None:
        if not spec:
            return None
        return cls(
            destination=spec["destination_s3_uri"].rstrip("/"),
            sampling_percentage=int(spec["sampling_percentage"]),
            capture_input=bool(spec["capture_input"]),
            capture_output=bool(spec["capture_output"]),
            csv_types=frozenset(t.lower() for t in spec.get("csv_content_types") or ()),
            json_types=frozenset(t.lower() for t in spec.get("json_content_types") or ()),
        )

    def encode(self, data: bytes, content_type: str, mode: str) -> dict[str, str]:
        """SageMaker's captured payload: CSV or JSON as text when so configured, else base64."""
        media = content_type.split(";")[0].strip().lower()
        encoding = "CSV" if media in self.csv_types else "JSON" if media in self.json_types else ""
        text = data.decode("utf-8", "replace") if encoding else ""
        if not encoding:
            encoding, text = "BASE64", base64.b64encode(data).decode("ascii")
        return {
            "observedContentType": content_type,
            "mode": mode,
            "data": text,
            "encoding": encoding,
        }


class CaptureWriter:
    """Capture files per variant: whole lines flushed, moved into the object store on rotation."""

    def __init__(self, endpoint: str, spool: Path, objects_root: Path, rotate_seconds: float):
        self.endpoint, self.spool, self.objects_root = endpoint, spool, objects_root
        self.rotate_seconds = rotate_seconds
        self._lock = threading.Lock()
        self._pending: dict[tuple[str, str], list[bytes]] = {}  # (destination, variant) -> lines
        self._files: dict[tuple[str, str], tuple[int, Path, str, float]] = {}

    def add(self, destination: str, variant: str, record: dict[str, Any]) -> None:
        line = json.dumps(record, separators=(",", ":")).encode() + b"\n"
        with self._lock:
            self._pending.setdefault((destination, variant), []).append(line)

    def flush(self, *, rotate_all: bool = False) -> None:
        with self._lock:
            pending, self._pending = self._pending, {}
            now = time.time()
            for key, lines in pending.items():
                fd, _, _, _ = self._open(key, now)
                os.write(fd, b"".join(lines))  # whole lines; a kill mid-write tears the last
            for key, (fd, path, object_key, opened) in list(self._files.items()):
                if rotate_all or now - opened >= self.rotate_seconds:
                    os.close(fd)
                    publish(path, object_key, self.objects_root)
                    del self._files[key]

    def _open(self, key: tuple[str, str], now: float) -> tuple[int, Path, str, float]:
        if key not in self._files:
            destination, variant = key
            stamp = datetime.fromtimestamp(now, UTC)
            bucket, _, prefix = destination.removeprefix("s3://").partition("/")
            name = f"{stamp:%M-%S}-{stamp.microsecond // 1000:03d}-{uuid.uuid4()}.jsonl"
            parts = [prefix, self.endpoint, variant, f"{stamp:%Y/%m/%d/%H}", name]
            object_key = "/".join(p for p in parts if p)
            path = self.spool / f"{uuid.uuid4().hex}.part"
            path.parent.mkdir(parents=True, exist_ok=True)
            path.with_suffix(".key").write_text(f"{bucket}/{object_key}")
            fd = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_APPEND, 0o644)
            self._files[key] = (fd, path, f"{bucket}/{object_key}", now)
        return self._files[key]


def publish(path: Path, bucket_key: str, objects_root: Path) -> None:
    """Move a finished capture file to its object (its name beside it in a ``.key`` file)."""
    target = objects_root / bucket_key
    if path.stat().st_size:
        target.parent.mkdir(parents=True, exist_ok=True)
        os.replace(path, target)
    else:
        path.unlink()
    path.with_suffix(".key").unlink(missing_ok=True)


def publish_leftovers(spool: Path, objects_root: Path) -> int:
    """Capture files a killed endpoint left in its spool: published with whole lines only."""
    count = 0
    for part in sorted(spool.glob("*.part")) if spool.is_dir() else []:
        key_file = part.with_suffix(".key")
        if key_file.is_file():
            _cut_torn_line(part)
            publish(part, key_file.read_text().strip(), objects_root)
            count += 1
        else:
            part.unlink()
    return count


def _cut_torn_line(path: Path, chunk: int = 1 << 16) -> None:
    """Truncate ``path`` after its last newline. Linux ends a write to a file at a page when a
    SIGKILL arrives, so a killed writer's last ``os.write`` can leave part of a line."""
    with open(path, "r+b") as file:
        end = file.seek(0, os.SEEK_END)
        while end > 0:
            start = max(0, end - chunk)
            file.seek(start)
            newline = file.read(end - start).rfind(b"\n")
            if newline >= 0:
                file.truncate(start + newline + 1)
                return
            end = start
        file.truncate(0)


# ------------------------------------------------------------------ metrics


@dataclass
class VariantMetrics:
    invocations: int = 0
    errors_4xx: int = 0
    errors_5xx: int = 0
    model_latency_us: list[float] = field(default_factory=list)
    overhead_latency_us: list[float] = field(default_factory=list)


class Metrics:
    """Counters per variant since the last read (the service turns them into datapoints)."""

    def __init__(self) -> None:
        self._lock = threading.Lock()
        self._variants: dict[str, VariantMetrics] = {}

    def record(self, variant: str, status: int, model_us: float, overhead_us: float) -> None:
        with self._lock:
            metrics = self._variants.setdefault(variant, VariantMetrics())
            metrics.invocations += 1
            metrics.errors_4xx += 400 <= status < 500
            metrics.errors_5xx += status >= 500
            metrics.model_latency_us.append(model_us)
            metrics.overhead_latency_us.append(overhead_us)

    def take(self) -> dict[str, Any]:
        with self._lock:
            variants, self._variants = self._variants, {}
        return {name: _summary(m) for name, m in variants.items()}


def _summary(metrics: VariantMetrics) -> dict[str, Any]:
    def stats(values: list[float]) -> dict[str, float]:
        return {"SampleCount": len(values), "Sum": sum(values), "Minimum": min(values),
                "Maximum": max(values)}  # fmt: skip

    return {
        "Invocations": metrics.invocations,
        "Invocation4XXErrors": metrics.errors_4xx,
        "Invocation5XXErrors": metrics.errors_5xx,
        "ModelLatency": stats(metrics.model_latency_us),
        "OverheadLatency": stats(metrics.overhead_latency_us),
    }


# ------------------------------------------------------------------ the server


class Endpoint:
    """What one endpoint process holds: its routing table, capture and metrics."""

    def __init__(self, spec: dict[str, Any]) -> None:
        self.name: str = spec["endpoint_name"]
        self.folder = Path(spec["folder"])
        self.objects_root = Path(spec["objects_root"])
        self.capture_writer = CaptureWriter(
            self.name, self.folder / "spool", self.objects_root, float(spec["rotate_seconds"])
        )
        self.metrics = Metrics()
        self._loaded: dict[tuple[str, str], Handlers] = {}  # (fleet id, variant) -> model
        self._routing_lock = threading.Lock()
        self.routing, self.capture = self.load(spec)

    def load(self, spec: dict[str, Any]) -> tuple[Routing, Capture | None]:
        """The table ``spec`` describes, every model in it loaded (reused when already loaded)."""
        fleets = []
        for fleet in spec["fleets"]:
            variants = []
            for variant in fleet["variants"]:
                key = (fleet["fleet_id"], variant["name"])
                if key not in self._loaded:
                    folder = self.folder / "models" / uuid.uuid4().hex
                    self._loaded[key] = load_variant(variant, self.objects_root, folder)
                variants.append(
                    Variant(variant["name"], float(variant["weight"]), self._loaded[key])
                )
            fleets.append(Fleet(fleet["fleet_id"], float(fleet["share"]), variants))
        return Routing(fleets), Capture.from_spec(spec.get("capture"))

    def update(self, spec: dict[str, Any]) -> None:
        with self._routing_lock:
            routing, capture = self.load(spec)
            self.routing, self.capture = routing, capture  # one swap: requests see old or new
            keep = {(f.fleet_id, v.name) for f in routing.fleets for v in f.variants}
            self._loaded = {k: v for k, v in self._loaded.items() if k in keep}

    def reject(self, status: int) -> None:
        """Count a request refused before any model saw it, on the variant it would have met."""
        try:
            variant = self.routing.pick(None).name
        except RequestError:
            return
        self.metrics.record(variant, status, 0.0, 0.0)

    def invoke(self, body: bytes, headers: Any) -> tuple[int, bytes, str, str]:
        """(status, body, content type, variant) for one request, captured and counted."""
        started = time.perf_counter()
        routing, capture = self.routing, self.capture
        variant = routing.pick(headers.get(TARGET_VARIANT_HEADER))
        content_type = headers.get("Content-Type") or "application/octet-stream"
        accept = headers.get("Accept") or "*/*"
        model_started = time.perf_counter()
        status, out, out_type = answer(variant.handlers, body, content_type, accept)
        model_us = (time.perf_counter() - model_started) * 1e6
        if status == 200 and capture is not None and _sampled(capture.sampling_percentage):
            self._capture(capture, variant.name, body, content_type, out, out_type, headers)
        overhead_us = (time.perf_counter() - started) * 1e6 - model_us
        self.metrics.record(variant.name, status, model_us, overhead_us)
        return status, out, out_type, variant.name

    def _capture(
        self, capture: Capture, variant: str, body: bytes, content_type: str, out: bytes,
        out_type: str, headers: Any,
    ) -> None:  # fmt: skip
        data: dict[str, Any] = {}
        if capture.capture_input:
            data["endpointInput"] = capture.encode(body, content_type, "INPUT")
        if capture.capture_output:
            data["endpointOutput"] = capture.encode(out, out_type, "OUTPUT")
        metadata = {
            "eventId": str(uuid.uuid4()),
            "inferenceTime": datetime.now(UTC).strftime("%Y-%m-%dT%H:%M:%SZ"),
        }
        if headers.get(INFERENCE_ID_HEADER):
            metadata["inferenceId"] = headers[INFERENCE_ID_HEADER]
        record = {"captureData": data, "eventMetadata": metadata, "eventVersion": "0"}
        self.capture_writer.add(capture.destination, variant, record)


def _sampled(percentage: int) -> bool:
    return percentage >= 100 or random.random() * 100 < percentage


class Handler(BaseHTTPRequestHandler):
    protocol_version = "HTTP/1.1"  # keep-alive: a client reuses its connection
    disable_nagle_algorithm = True  # headers and body go out in two writes: no 40 ms stall
    endpoint: Endpoint
    token = ""  # the service's token, which the paths under ADMIN need

    def log_message(self, format: str, *args: Any) -> None:  # noqa: A002 - the base's name
        return  # one line a request would be most of the log; metrics count them instead

    def _refused(self) -> bool:
        """Answer 403 (and close) a request not addressed to this server, from another site,
        or to the service's own paths without its token."""
        port = int(self.server.server_address[1])  # type: ignore[index]
        message = loopback.refusal(self.headers.get("Host"), self.headers.get("Origin"), port)
        if message is None and self.path.startswith(ADMIN):
            offered = self.headers.get(TOKEN_HEADER) or ""
            if not (self.token and hmac.compare_digest(offered, self.token)):
                message = f"the endpoint's own paths ({ADMIN}) need the service's token"
        if message is None:
            return False
        self.close_connection = True  # its body, if any, is left unread
        self._answer(403, message.encode(), "text/plain", {"Connection": "close"})
        return True

    def do_GET(self) -> None:
        if self._refused():
            return
        if self.path == "/ping":
            self._answer(200, b"", "text/plain")
        elif self.path == ADMIN + "metrics":
            self._answer(200, json.dumps(self.endpoint.metrics.take()).encode(), "application/json")
        else:
            self._answer(404, b"Not Found", "text/plain")

    def do_POST(self) -> None:
        if self._refused():
            return
        length = int(self.headers.get("Content-Length") or 0)
        if length > MAX_PAYLOAD:
            self.endpoint.reject(413)
            self._discard(length)
            self._answer(413, f"HTTP content length exceeded {MAX_PAYLOAD} bytes.".encode(),
                         "text/plain")  # fmt: skip
            return
        body = self.rfile.read(length)
        path, _, query = self.path.partition("?")
        if path == ADMIN + "rejected":
            self.endpoint.reject(int(query.removeprefix("status=") or 400))
            self._answer(200, b"{}", "application/json")
        elif path == "/invocations":
            self._invocations(body)
        elif self.path == ADMIN + "routing":
            self._routing(body)
        else:
            self._answer(404, b"Not Found", "text/plain")

    def _invocations(self, body: bytes) -> None:
        try:
            status, out, out_type, variant = self.endpoint.invoke(body, self.headers)
        except RequestError as exc:  # routing: no variant to send it to
            self._answer(exc.status, str(exc).encode(), "text/plain", {ROUTING_ERROR_HEADER: "1"})
            return
        self._answer(status, out, out_type, {VARIANT_HEADER: variant})

    def _routing(self, body: bytes) -> None:
        try:
            self.endpoint.update(json.loads(body))
        except LoadError as exc:
            self._answer(422, str(exc).encode(), "text/plain")
            return
        self._answer(200, b"{}", "application/json")

    def _discard(self, length: int) -> None:
        while length > 0:
            length -= len(self.rfile.read(min(length, 1 << 20)) or b"\0" * length)

    def _answer(self, status: int, body: bytes, content_type: str,
                headers: dict[str, str] | None = None) -> None:  # fmt: skip
        self.send_response(status)
        self.send_header("Content-Type", content_type)
        self.send_header("Content-Length", str(len(body)))
        for name, value in (headers or {}).items():
            self.send_header(name, value)
        self.end_headers()
        self.wfile.write(body)


class Server(ThreadingHTTPServer):
    daemon_threads = True
    request_queue_size = 128


def serve(spec: dict[str, Any]) -> None:
    endpoint = Endpoint(spec)
    token = os.environ.pop(SERVICE_TOKEN_ENV, "")  # not for the models' code to see
    handler = type("EndpointHandler", (Handler,), {"endpoint": endpoint, "token": token})
    try:  # the port it had before a restart, so that a user's URL still works
        server = Server(("127.0.0.1", int(spec.get("port") or 0)), handler)
    except OSError:
        server = Server(("127.0.0.1", 0), handler)
    stop = threading.Event()

    def flusher() -> None:
        while not stop.wait(_FLUSH_SECONDS):
            endpoint.capture_writer.flush()

    threading.Thread(target=flusher, name="capture-flush", daemon=True).start()
    signal.signal(signal.SIGTERM, lambda *_: threading.Thread(target=server.shutdown).start())
    print(json.dumps({"port": server.server_address[1]}), flush=True)
    try:
        server.serve_forever(poll_interval=0.2)
    finally:
        stop.set()
        endpoint.capture_writer.flush(rotate_all=True)


def main(argv: list[str]) -> int:
    spec = json.loads(Path(argv[0]).read_text())
    try:
        serve(spec)
    except LoadError as exc:
        print(str(exc), file=sys.stderr, flush=True)
        return 3
    return 0


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
