"""Batch transform jobs: SageMaker's CreateTransformJob, run on this machine.

Two halves in one module, because a job of a framework image starts warm only as a Python script
of the fork server (``launch.is_python_script``):

- **The runner** (``TransformRun``, a thread of the service): lists the input objects, checks the
  output and capture buckets, links the inputs into the job's folder, writes ``plan.json`` and
  starts the worker; when the job ends it publishes what SageMaker publishes and writes the
  batch data capture manifests.
- **The worker** (``main``, the job's process; ``python transform.py PLAN``): loads the model
  exactly as a local endpoint does (``endpoint_server.load_variant``: ``model.tar.gz``, and in
  script mode the model's ``model_fn``/``input_fn``/``predict_fn``/``output_fn``, else the
  XGBoost container's numeric-CSV handler) and streams each input object through
  ``endpoint_server.answer`` in mini-batches, with no HTTP hop: with ``SplitType`` Line and
  ``MultiRecord``, as many whole lines as fit in ``MaxPayloadInMB`` per call (the file is read
  a payload at a time, never whole), ``SingleRecord`` one line per call, ``SplitType`` None the
  whole object in one call. ``MaxConcurrentTransforms`` calls run at once (threads; the model's
  own threads are ``SM_NUM_CPUS``).

What SageMaker publishes (Describe/Stop docs, "Use Batch Transform"): one object
``<S3OutputPath>/<path under the input prefix>.out`` per input object, only for an object whose
every record was transformed; a job whose object fails goes on with the other objects, then ends
Failed, and the objects that succeeded are published; a stopped job publishes nothing. So each
object's output is written to ``opt_ml/output/data/<path>.out.part``, renamed without ``.part``
once the object is done, and the runner moves the finished ones into the object store when the
job ends: a destination never holds half an object.

DataProcessing for CSV (AWS's "Associate Prediction Results with Input Records"): each line is a
JSON array; ``InputFilter`` selects the columns the model sees, ``JoinSource`` Input appends each
output line's columns to the whole input line, ``OutputFilter`` selects from that (or from the
output alone). Supported: ``$``, ``$[*]``, ``$[i]``, ``$[i,j]``, negative indexes and slices
``$[start:end]`` whose end is inclusive (AWS: "``$[1:4]`` specifies the second through fifth
columns"); an index outside the record fails the job.
"""

from __future__ import annotations

import contextlib
import csv
import gzip
import io
import itertools
import json
import os
import re
import sys
import threading
import time
import uuid
from collections import deque
from collections.abc import Callable, Iterator
from concurrent.futures import Future, ThreadPoolExecutor
from dataclasses import asdict, dataclass, field
from datetime import UTC, datetime
from pathlib import Path
from typing import Any, BinaryIO

from sfn_mlops.local.errors import AwsError
from sfn_mlops.local.images import PYTHON_SCRIPT, runtime_for
from sfn_mlops.local.jobs import registry
from sfn_mlops.local.jobs.launch import Launch
from sfn_mlops.local.jobs.paths import reroot
from sfn_mlops.local.jobs.runner import Run, read_limited
from sfn_mlops.local.jobs.state import KIND_TRANSFORM, JobFailed
from sfn_mlops.local.jobs.training import job_cpus
from sfn_mlops.local.objectstore import ObjectStore, link_or_copy, parse_s3_uri

MB = 1024 * 1024
MAX_PAYLOAD_MB = 100  # CreateTransformJob: MaxPayloadInMB, and MaxConcurrentTransforms x it
DEFAULT_PAYLOAD_MB = 6
DEFAULT_TIMEOUT_SECONDS = 600  # ModelClientConfig.InvocationsTimeoutInSeconds
DEFAULT_MAX_RETRIES = 3  # ModelClientConfig.InvocationsMaxRetries
CSV = "text/csv"
PLAN = "plan.json"  # in the job's folder
OUTPUT_DATA = Path("output") / "data"  # under /opt/ml: finished .out files, published at the end
FAILURE_FILE = Path("output") / "failure"  # under /opt/ml: the worker's reason for the runner
PART = ".part"
OUT = ".out"
#: The characters a CSV record's JSONPath may use, as SageMaker lists them in its error.
CSV_OPERATORS = ("$", "[", "]", "*", ",", ":", "-", " ")
_SLICE = re.compile(r"(-?\d+)?:(-?\d+)?")
_INDEX = re.compile(r"-?\d+")


# ------------------------------------------------------------------ JSONPath on CSV records
class FilterError(Exception):
    """A filter expression SageMaker rejects, or a record it cannot be applied to."""


@dataclass(frozen=True)
class Selection:
    """A parsed ``$[...]`` of a CSV record: the columns it selects, in its order."""

    member: str  # InputFilter or OutputFilter
    text: str
    items: tuple[tuple[str, int | None, int | None], ...]  # (kind, a, b) per comma-part
    _by_width: dict[int, list[int]] = field(default_factory=dict, compare=False, repr=False)

    def indexes(self, width: int) -> list[int]:
        """The column indexes for a record of ``width`` columns (memoised per width)."""
        found = self._by_width.get(width)
        if found is None:
            found = [i for item in self.items for i in self._resolve(item, width)]
            self._by_width[width] = found
        return found

    def _resolve(self, item: tuple[str, int | None, int | None], width: int) -> list[int]:
        kind, a, b = item
        if kind == "*":
            return list(range(width))
        if kind == "index":
            return [self._at(a, width)]
        start = 0 if a is None else self._at(a, width)
        end = width - 1 if b is None else self._at(b, width)  # inclusive, as AWS documents
        return list(range(start, end + 1))

    def _at(self, index: int | None, width: int) -> int:
        assert index is not None
        at = index + width if index < 0 else index
        if not 0 <= at < width:
            raise FilterError(
                f"{self.member} {self.text}: index {index} is not within the {width} columns "
                "of the record"
            )
        return at

    def apply(self, row: list[str]) -> list[str]:
        return [row[i] for i in self.indexes(len(row))]


def parse_filter(expression: str | None, member: str, content_type: str) -> Selection | None:
    """The selection ``expression`` makes of a CSV record; None for the whole record (``$``).

    Raises FilterError with SageMaker's words for a character its CSV JSONPath does not take.
    """
    text = expression if expression is not None else "$"
    if text.strip() in ("", "$"):
        return None
    bad = next((c for c in text if not (c in "0123456789" or c in CSV_OPERATORS)), None)
    if bad is not None:
        allowed = ", ".join(f"'{c}'" for c in CSV_OPERATORS)
        raise FilterError(
            f'Invalid {member}: "{text}". Unexpected "{bad}" in JsonPath. Supported operators '
            f'for "{content_type}" are [{allowed}]'
        )
    compact = text.replace(" ", "")
    if not (compact.startswith("$[") and compact.endswith("]")) or len(compact) < 4:
        raise FilterError(
            f'Invalid {member}: "{text}". A CSV record is an array: select its columns with '
            "$[index], $[i,j], $[start:end] (end included) or $[*]"
        )
    items = tuple(_filter_item(part, member, text) for part in compact[2:-1].split(","))
    return Selection(member, text, items)


def _filter_item(part: str, member: str, text: str) -> tuple[str, int | None, int | None]:
    if part == "*":
        return ("*", None, None)
    if _INDEX.fullmatch(part):
        return ("index", int(part), None)
    match = _SLICE.fullmatch(part)
    if match:
        start, end = match.groups()
        return ("slice", int(start) if start else None, int(end) if end else None)
    raise FilterError(f'Invalid {member}: "{text}". {part!r} is not an index, a slice or *')


# ------------------------------------------------------------------ the input objects
class InputsMissing(Exception):
    """The input data source names no object (CreateTransformJob's ValidationException)."""


@dataclass(frozen=True)
class InputObject:
    bucket: str
    key: str
    relative: str  # its path under the input prefix: the output is <S3OutputPath>/<relative>.out
    path: str = ""  # the job's link to it (filled by the runner)

    @property
    def name(self) -> str:
        """How SageMaker's log names it: bucket/key."""
        return f"{self.bucket}/{self.key}"


def no_objects_message(uri: str, bucket: str, region: str, role: str | None) -> str:
    """CreateTransformJob's words for an S3 prefix with no object under it."""
    return (
        f'No S3 objects found under S3 URL "{uri}" given in input data source. Please ensure '
        f"that the bucket exists in the selected region ({region}), that objects exist under "
        f'that S3 prefix, and that the role "{role or "(the model has no ExecutionRoleArn)"}" '
        f'has "s3:ListBucket" permissions on bucket "{bucket}".'
    )


def resolve_inputs(objects: ObjectStore, source: dict[str, Any]) -> tuple[list[InputObject], str]:
    """The objects an S3DataSource names, in key order, and the prefix URI they are under.

    S3Prefix: every object whose key starts with the prefix; the path of each below the last
    ``/`` of the prefix names its output. ManifestFile: ``[{"prefix": P}, "rel", ...]``, each
    ``P + rel`` (which must exist). InputsMissing when there is none.
    """
    uri = source["S3Uri"]
    if source["S3DataType"] == "ManifestFile":
        return _manifest_inputs(objects, uri)
    bucket, prefix = parse_s3_uri(uri)
    base = prefix[: prefix.rfind("/") + 1]
    try:
        found = [
            InputObject(bucket, info.key, info.key[len(base) :])
            for info in objects.list(bucket, prefix)
        ]
    except AwsError:  # NoSuchBucket: no objects either
        found = []
    if not found:
        raise InputsMissing(uri)
    return found, f"s3://{bucket}/{base}"


def _manifest_inputs(objects: ObjectStore, uri: str) -> tuple[list[InputObject], str]:
    try:
        entries = json.loads(objects.get_bytes(*parse_s3_uri(uri)))
    except (AwsError, ValueError) as err:
        raise InputsMissing(f"the manifest {uri} cannot be read: {err}") from err
    head = entries[0] if isinstance(entries, list) and entries else None
    if not isinstance(head, dict) or not isinstance(head.get("prefix"), str):
        raise InputsMissing(
            f'the manifest {uri} is not [{{"prefix": "s3://bucket/prefix/"}}, "relative/key", ...]'
        )
    bucket, base = parse_s3_uri(head["prefix"])
    found = []
    for relative in entries[1:]:
        key = f"{base}{relative}"
        try:
            objects.head(bucket, key)
        except (AwsError, ValueError) as err:
            raise InputsMissing(f"the manifest {uri} lists s3://{bucket}/{key}: {err}") from err
        found.append(InputObject(bucket, key, str(relative)))
    if not found:
        raise InputsMissing(f"the manifest {uri} lists no object")
    return found, head["prefix"]


def output_uri(output_path: str, relative: str) -> str:
    return f"{output_path.rstrip('/')}/{relative}{OUT}"


# ------------------------------------------------------------------ the plan (runner -> worker)
@dataclass(frozen=True)
class Plan:
    """Everything the worker needs, resolved by the runner (so the worker reads no metadata)."""

    job_name: str
    objects_root: str
    opt_ml: str
    log_path: str
    model: dict[str, Any]  # endpoint_server.load_variant's spec
    inputs: list[InputObject]
    content_type: str
    accept: str
    split_type: str
    compression: str
    strategy: str
    max_payload_mb: int
    concurrency: int
    assemble_with: str
    input_filter: str | None
    output_filter: str | None
    join_input: bool
    inference_id: bool
    start_time: str  # the job's start, UTC, as SageMakerInferenceTime
    timeout_seconds: int
    max_retries: int
    threads: int

    def save(self, path: Path) -> None:
        path.write_text(json.dumps(asdict(self), indent=1))

    @classmethod
    def load(cls, path: Path) -> Plan:
        raw = json.loads(path.read_text())
        raw["inputs"] = [InputObject(**item) for item in raw["inputs"]]
        return cls(**raw)


def strategy_word(strategy: str) -> str:
    """SAGEMAKER_BATCH_STRATEGY's spelling of BatchStrategy."""
    return "SINGLE_RECORD" if strategy == "SingleRecord" else "MULTI_RECORD"


# ------------------------------------------------------------------ the runner
class TransformRun(Run):
    """One transform job; its process is the worker below (``main``)."""

    def __init__(
        self,
        cloud: Any,
        name: str,
        request: dict[str, Any],
        container: dict[str, Any],
        model_role: str = "",
    ) -> None:
        super().__init__(cloud, KIND_TRANSFORM, name, request)
        self.container = container  # the model's container as CreateTransformJob found it
        self.model_role = model_role  # the model's ExecutionRoleArn: a transform has no RoleArn
        self._inputs: list[InputObject] = []
        self._input_prefix = ""
        self._worker_failed = False

    def role_arn(self) -> str:
        return self.model_role

    def image_uri(self) -> str:
        return str(self.container.get("Image") or "")

    def download_inputs(self) -> None:
        source = self.request["TransformInput"]["DataSource"]["S3DataSource"]
        try:
            inputs, self._input_prefix = resolve_inputs(self.cloud.objects, source)
        except InputsMissing as err:
            raise JobFailed(f"ClientError: no input to transform: {err}") from err
        output = self.request["TransformOutput"]["S3OutputPath"]
        self._check_writable(output, "the output path")
        capture = self.request.get("DataCaptureConfig")
        if capture:
            self._check_writable(capture["DestinationS3Uri"], "DataCaptureConfig.DestinationS3Uri")
        data = self.opt_ml / "input" / "data"
        for item in inputs:
            target = data / item.relative
            target.parent.mkdir(parents=True, exist_ok=True)
            link_or_copy(self.cloud.objects.object_path(item.bucket, item.key), target)
            self._inputs.append(InputObject(item.bucket, item.key, item.relative, str(target)))
        self.log(f"{len(inputs)} input object(s) under {self._input_prefix} -> {output}")
        self._plan().save(self.folder / PLAN)

    def _check_writable(self, uri: str, what: str) -> None:
        try:
            self.cloud.objects.require_bucket(parse_s3_uri(uri)[0])
        except (AwsError, ValueError) as err:
            detail = err.message if isinstance(err, AwsError) else str(err)
            raise JobFailed(f"ClientError: cannot write to {what} {uri}: {detail}") from err

    def _plan(self) -> Plan:
        request = self.request
        inputs, outputs = request["TransformInput"], request["TransformOutput"]
        processing = request.get("DataProcessing") or {}
        client = request.get("ModelClientConfig") or {}
        environment = dict(self.container.get("Environment") or {})
        environment.update(request.get("Environment") or {})
        return Plan(
            job_name=self.name,
            objects_root=str(self.cloud.objects.root),
            opt_ml=str(self.opt_ml),
            log_path=str(self.log_path),
            model={
                "model_name": request["ModelName"],
                "model_data_url": self.container["ModelDataUrl"],
                "environment": environment,
            },
            inputs=self._inputs,
            content_type=inputs.get("ContentType") or "application/octet-stream",
            accept=outputs.get("Accept") or "*/*",
            split_type=inputs.get("SplitType", "None"),
            compression=inputs.get("CompressionType", "None"),
            strategy=request.get("BatchStrategy", "MultiRecord"),
            max_payload_mb=int(request.get("MaxPayloadInMB") or DEFAULT_PAYLOAD_MB),
            concurrency=max(1, int(request.get("MaxConcurrentTransforms") or 1)),
            assemble_with=outputs.get("AssembleWith", "None"),
            input_filter=processing.get("InputFilter"),
            output_filter=processing.get("OutputFilter"),
            join_input=processing.get("JoinSource") == "Input",
            inference_id=bool((request.get("DataCaptureConfig") or {}).get("GenerateInferenceId")),
            start_time=datetime.fromtimestamp(self._started, UTC).strftime("%Y-%m-%dT%H:%M:%SZ"),
            timeout_seconds=int(client.get("InvocationsTimeoutInSeconds", DEFAULT_TIMEOUT_SECONDS)),
            max_retries=int(client.get("InvocationsMaxRetries", DEFAULT_MAX_RETRIES)),
            threads=job_cpus(),
        )

    def launch(self) -> Launch:
        """The worker, with the container's environment: the model's, then the job's."""
        plan = Plan.load(self.folder / PLAN)
        env = self.base_env()
        env.update(
            {key: reroot(value, self.opt_ml) for key, value in plan.model["environment"].items()}
        )
        env.update(
            SAGEMAKER_BATCH="true",
            SAGEMAKER_MAX_PAYLOAD_IN_MB=str(plan.max_payload_mb),
            SAGEMAKER_BATCH_STRATEGY=strategy_word(plan.strategy),
            SAGEMAKER_MAX_CONCURRENT_TRANSFORMS=str(plan.concurrency),
            SM_NUM_CPUS=str(plan.threads),
        )
        env.setdefault("SFN_MLOPS_INFERENCE_THREADS", str(plan.threads))
        warm = runtime_for(self.container["Image"]).kind == PYTHON_SCRIPT
        argv = [sys.executable, str(Path(__file__).resolve()), str(self.folder / PLAN)]
        return Launch(argv, env, self.folder, warm)

    def failure_written(self) -> str | None:
        reason = read_limited(self.opt_ml / FAILURE_FILE)
        self._worker_failed = reason is not None
        return reason

    def upload_outputs(self, status: str) -> dict[str, Any]:
        """Completed: every output. Stopped: nothing (StopTransformJob: "doesn't store the
        job's output in Amazon S3")."""
        if status == "Completed":
            self._publish()
        return {}

    def _finish(self, status: str, *, failure: str | None = None, timed_out: bool = False) -> None:
        # Run._finish uploads nothing for a Failed job; SageMaker keeps the objects that
        # succeeded ("uploads only the output for successfully processed objects").
        if status == "Failed" and self._worker_failed:
            try:
                self._publish()
            except JobFailed as err:
                failure = f"{failure}; {err.reason}"
        super()._finish(status, failure=failure, timed_out=timed_out)

    def _publish(self) -> None:
        """Move each finished ``.out`` into the store; then the data capture manifests."""
        folder = self.opt_ml / OUTPUT_DATA
        output = self.request["TransformOutput"]["S3OutputPath"]
        done = sorted(p for p in folder.rglob("*") if p.is_file() and not p.name.endswith(PART))
        relatives = []
        for path in done:
            relative = path.relative_to(folder).as_posix().removesuffix(OUT)
            self.upload_file(path, output_uri(output, relative))
            relatives.append(relative)
        capture = self.request.get("DataCaptureConfig")
        if capture and relatives:
            self._capture(capture["DestinationS3Uri"], output, relatives)

    def _capture(self, destination: str, output: str, relatives: list[str]) -> None:
        """Batch data capture: manifests, not copies, under ``input/`` and ``output/`` and the
        job's start hour (SageMaker's "Capture data from batch transform job")."""
        hour = datetime.fromtimestamp(self._started, UTC).strftime("%Y/%m/%d/%H")
        bucket, prefix = parse_s3_uri(destination.rstrip("/"))
        manifests = {
            "input": [{"prefix": self._input_prefix}, *relatives],
            "output": [{"prefix": f"{output.rstrip('/')}/"}, *[r + OUT for r in relatives]],
        }
        for side, manifest in manifests.items():
            key = "/".join(p for p in (prefix, side, hour, f"{self.name}.jsonl") if p)
            self.log(f"data capture manifest -> s3://{bucket}/{key}")
            try:
                self.cloud.objects.put_bytes(bucket, key, json.dumps(manifest).encode() + b"\n")
            except AwsError as err:
                raise JobFailed(
                    f"ClientError: cannot write s3://{bucket}/{key}: {err.message}"
                ) from err


def submit(cloud: Any, doc: dict[str, Any]) -> None:
    """Store the new transform job (``AlreadyExists`` if the name is taken) and start it."""
    registry.submit(
        cloud,
        KIND_TRANSFORM,
        doc,
        make_run=lambda stored: TransformRun(
            cloud,
            stored["Name"],
            stored["Request"],
            stored["ModelContainer"],
            stored.get("ModelRoleArn", ""),
        ),
    )


# ------------------------------------------------------------------ the worker
class ObjectFailed(Exception):
    """One input object cannot be transformed; the reason says whose fault it is."""

    def __init__(self, reason: str, log_lines: list[str] | None = None) -> None:
        super().__init__(reason)
        self.reason = reason
        self.log_lines = log_lines or []


@dataclass(frozen=True)
class Batch:
    """One mini-batch: whole lines of the object, as one invocation's payload."""

    data: bytes
    first_line: int  # 1-based
    lines: int

    def where(self) -> str:
        last = self.first_line + max(self.lines, 1) - 1
        if last == self.first_line:
            return f"line {last}"
        return f"lines {self.first_line}-{last}"


def sagemaker_log(line: str) -> None:
    """A line in the job's log as SageMaker's transform agent writes it to CloudWatch."""
    stamp = datetime.now(UTC).strftime("%Y-%m-%dT%H:%M:%S.%f")[:-3]
    print(f"{stamp}:[sagemaker logs]: {line}", flush=True)


def _count_lines(data: bytes) -> int:
    return data.count(b"\n") + (1 if data and not data.endswith(b"\n") else 0)


def _too_large(item: InputObject, what: str, limit_mb: int, remedy: str) -> ObjectFailed:
    return ObjectFailed(
        f"ClientError: s3://{item.name}: {what} is larger than MaxPayloadInMB ({limit_mb} MB = "
        f"{limit_mb * MB} bytes). {remedy}"
    )


def line_chunks(stream: BinaryIO, item: InputObject, limit_mb: int) -> Iterator[Batch]:
    """Whole lines of ``stream``, as many as fit in ``limit_mb``, one chunk at a time."""
    limit = limit_mb * MB
    carry, line = b"", 1
    while True:
        block = stream.read(limit - len(carry))
        data = carry + block if carry else block
        if not block:
            if data:
                yield Batch(data, line, _count_lines(data))
            return
        cut = data.rfind(b"\n") + 1
        if cut == 0:
            if len(data) >= limit:
                remedy = f"Raise MaxPayloadInMB (at most {MAX_PAYLOAD_MB}) or split the record."
                raise _too_large(item, f"the record at line {line}", limit_mb, remedy)
            carry = data
            continue
        chunk, carry = data[:cut], data[cut:]
        count = chunk.count(b"\n")
        if not chunk.isspace():
            yield Batch(chunk, line, count)
        line += count


def batches(stream: BinaryIO, item: InputObject, plan: Plan) -> Iterator[Batch]:
    """The object's invocations, as SplitType and BatchStrategy cut it."""
    if plan.split_type != "Line":
        data = stream.read(plan.max_payload_mb * MB + 1)
        if len(data) > plan.max_payload_mb * MB:
            remedy = "Set SplitType to Line to send it in mini-batches, or raise MaxPayloadInMB."
            raise _too_large(item, "the object", plan.max_payload_mb, remedy)
        if data:
            yield Batch(data, 1, _count_lines(data))
        return
    for chunk in line_chunks(stream, item, plan.max_payload_mb):
        if plan.strategy != "SingleRecord":
            yield chunk
            continue
        for offset, record in enumerate(chunk.data.split(b"\n")):
            if record.strip():
                yield Batch(record, chunk.first_line + offset, 1)


class Watchdog:
    """Ends the process when an invocation outlasts InvocationsTimeoutInSeconds (a call into
    the model cannot be interrupted in its own thread)."""

    def __init__(self, timeout: float, on_expiry: Callable[[str], None]) -> None:
        self.timeout = timeout
        self.on_expiry = on_expiry
        self._calls: dict[int, tuple[float, str]] = {}
        self._tokens = itertools.count()  # next() is atomic: calls come from several threads
        threading.Thread(target=self._watch, name="invocation-timeout", daemon=True).start()

    @contextlib.contextmanager
    def call(self, what: str) -> Iterator[None]:
        token = next(self._tokens)
        self._calls[token] = (time.monotonic(), what)
        try:
            yield
        finally:
            self._calls.pop(token, None)

    def _watch(self) -> None:
        while True:
            time.sleep(min(1.0, self.timeout / 4))
            now = time.monotonic()
            for started, what in list(self._calls.values()):
                if now - started > self.timeout:
                    self.on_expiry(what)


class Invoker:
    """One invocation of the model: the endpoint's handler call, retried on a model error."""

    def __init__(self, handlers: Any, plan: Plan, watchdog: Watchdog) -> None:
        from sfn_mlops.local.endpoint_server import answer

        self.answer = answer
        self.handlers, self.plan, self.watchdog = handlers, plan, watchdog

    def __call__(self, payload: bytes, what: str) -> tuple[int, bytes, str]:
        plan = self.plan
        status, body, out_type = 500, b"", "text/plain"
        for attempt in range(plan.max_retries + 1):
            with self.watchdog.call(what):
                status, body, out_type = self.answer(
                    self.handlers, payload, plan.content_type, plan.accept
                )
            if status < 500:  # a bad request does not get better by asking again
                break
            if attempt < plan.max_retries:
                sagemaker_log(f"{what}: {status} from the model; retrying ({attempt + 1})")
        return status, body, out_type


def _model_error(item: InputObject, batch: Batch, status: int, body: bytes) -> ObjectFailed:
    kind = "ClientError" if status < 500 else "AlgorithmError"
    message = body.decode("utf-8", "replace").strip()
    lines = [f"{item.name}: {kind}: {status}", f"{item.name}: ", f"{item.name}: Message:"]
    lines += [f"{item.name}: {text}" for text in message.splitlines() or [""]]
    reason = f"{kind}: {status} from the model for s3://{item.name} ({batch.where()}): {message}"
    return ObjectFailed(reason, lines)


class Assembler:
    """Writes the model's answers to the object's output as AssembleWith and DataProcessing say."""

    def __init__(self, out: BinaryIO, plan: Plan, output_selection: Selection | None) -> None:
        self.out, self.plan, self.selection = out, plan, output_selection
        #: join, output filter or inference id: the answer is taken apart record by record
        self.record_level = plan.join_input or plan.inference_id or output_selection is not None

    def write(self, item: InputObject, batch: Batch, body: bytes) -> None:
        if self.record_level:
            self.out.write(self._records(item, batch, body))
        elif self.plan.assemble_with == "Line":
            self.out.write(body[:-1] if body.endswith(b"\n") else body)
            self.out.write(b"\n")
        else:
            self.out.write(body)

    def _records(self, item: InputObject, batch: Batch, body: bytes) -> bytes:
        outputs = body.decode("utf-8").splitlines()
        rows = list(csv.reader(outputs))
        if self.plan.join_input:
            inputs = [line for line in batch.data.decode("utf-8").splitlines() if line.strip()]
            if len(inputs) != len(rows):
                raise ObjectFailed(
                    f"ClientError: s3://{item.name} ({batch.where()}): JoinSource Input needs "
                    f"one output line per input record; the model answered {len(rows)} lines "
                    f"for {len(inputs)} records"
                )
            rows = [a + b for a, b in zip(csv.reader(inputs), rows, strict=True)]
        if self.selection is not None:
            try:
                rows = [self.selection.apply(row) for row in rows]
            except FilterError as err:
                raise ObjectFailed(
                    f"ClientError: s3://{item.name} ({batch.where()}): {err}"
                ) from err
        if self.plan.inference_id:
            rows = [[*row, str(uuid.uuid4()), self.plan.start_time] for row in rows]
        text = io.StringIO()
        csv.writer(text, lineterminator="\n").writerows(rows)
        return text.getvalue().encode("utf-8")


def filter_payload(data: bytes, selection: Selection, item: InputObject, batch: Batch) -> bytes:
    """The columns InputFilter selects of each line, for the model."""
    lines = [line for line in data.decode("utf-8").splitlines() if line.strip()]
    text = io.StringIO()
    try:
        csv.writer(text, lineterminator="\n").writerows(
            selection.apply(row) for row in csv.reader(lines)
        )
    except FilterError as err:
        raise ObjectFailed(f"ClientError: s3://{item.name} ({batch.where()}): {err}") from err
    return text.getvalue().encode("utf-8")


def _answers(
    batches_: Iterator[Batch], call: Callable[[Batch], tuple[int, bytes, str]], concurrency: int
) -> Iterator[tuple[Batch, tuple[int, bytes, str]]]:
    """Each batch with its answer, in order; up to ``concurrency`` invocations at once."""
    if concurrency <= 1:
        for batch in batches_:
            yield batch, call(batch)
        return
    with ThreadPoolExecutor(concurrency, thread_name_prefix="invocation") as pool:
        pending: deque[tuple[Batch, Future[tuple[int, bytes, str]]]] = deque()
        try:
            for batch in batches_:
                pending.append((batch, pool.submit(call, batch)))
                if len(pending) >= concurrency:
                    done, future = pending.popleft()
                    yield done, future.result()
            while pending:
                done, future = pending.popleft()
                yield done, future.result()
        finally:
            for _, future in pending:
                future.cancel()


class Worker:
    """The job's process: the model loaded once, then each input object in turn."""

    def __init__(self, plan: Plan, handlers: Any) -> None:
        self.plan = plan
        self.invoker = Invoker(handlers, plan, Watchdog(plan.timeout_seconds, self._timed_out))
        content, accept = plan.content_type, plan.accept
        self.input_selection = parse_filter(plan.input_filter, "InputFilter", content)
        self.output_selection = parse_filter(plan.output_filter, "OutputFilter", accept)
        self.output_dir = Path(plan.opt_ml) / OUTPUT_DATA

    def _timed_out(self, what: str) -> None:
        write_failure(
            Path(self.plan.opt_ml),
            f"ClientError: s3://{what}: the model did not answer within "
            f"InvocationsTimeoutInSeconds ({self.plan.timeout_seconds} s)",
            self.plan.log_path,
        )
        os._exit(1)

    def transform(self, item: InputObject) -> int:
        """The object's output in the output folder (``.out`` once whole); its line count."""
        final = self.output_dir / f"{item.relative}{OUT}"
        final.parent.mkdir(parents=True, exist_ok=True)
        part = final.with_name(final.name + PART)
        try:
            lines = self._write(item, part)
        except ObjectFailed:
            part.unlink(missing_ok=True)
            raise
        except (OSError, EOFError, UnicodeDecodeError, csv.Error) as err:
            part.unlink(missing_ok=True)
            how = "gzip " if self.plan.compression == "Gzip" else ""
            raise ObjectFailed(
                f"ClientError: s3://{item.name} cannot be read as {how}{self.plan.content_type} "
                f"data: {type(err).__name__}: {err}"
            ) from err
        os.replace(part, final)
        return lines

    def _write(self, item: InputObject, part: Path) -> int:
        lines = 0
        with _open_input(item, self.plan) as stream, open(part, "wb", buffering=MB) as out:
            assembler = Assembler(out, self.plan, self.output_selection)
            for batch, (status, body, _) in _answers(
                batches(stream, item, self.plan), self._call(item), self.plan.concurrency
            ):
                if status != 200:
                    raise _model_error(item, batch, status, body)
                assembler.write(item, batch, body)
                lines += batch.lines
        return lines

    def _call(self, item: InputObject) -> Callable[[Batch], tuple[int, bytes, str]]:
        selection = self.input_selection

        def call(batch: Batch) -> tuple[int, bytes, str]:
            payload = batch.data
            if selection is not None:
                payload = filter_payload(payload, selection, item, batch)
            return self.invoker(payload, f"{item.name} ({batch.where()})")

        return call


@contextlib.contextmanager
def _open_input(item: InputObject, plan: Plan) -> Iterator[BinaryIO]:
    if plan.compression == "Gzip":
        with gzip.open(item.path, "rb") as stream:
            yield stream  # type: ignore[misc]
    else:
        with open(item.path, "rb", buffering=0) as raw:
            yield raw  # type: ignore[misc]


def write_failure(opt_ml: Path, reason: str, log_path: str) -> None:
    path = opt_ml / FAILURE_FILE
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text(f"{reason}; see the log: {log_path}")


def _pin_threads(handlers: Any, threads: int) -> None:
    """The container's default handler loads its booster pinned to one thread (an endpoint
    worker's share); a transform job has the job's cores."""
    xgboost = sys.modules.get("xgboost")  # loaded by the handler if its model is a booster
    if xgboost is not None and isinstance(handlers.model, xgboost.Booster):
        handlers.model.set_param({"nthread": threads})


def run_plan(plan: Plan) -> int:
    """Transform every input object; 0, or 1 with the reason in the failure file."""
    from sfn_mlops.local.endpoint_server import LoadError, load_variant

    sagemaker_log(
        f"MaxConcurrentTransforms={plan.concurrency}, MaxPayloadInMB={plan.max_payload_mb}, "
        f"BatchStrategy={strategy_word(plan.strategy)}"
    )
    opt_ml = Path(plan.opt_ml)
    try:
        handlers = load_variant(plan.model, Path(plan.objects_root), opt_ml)
    except LoadError as err:
        write_failure(opt_ml, f"ClientError: the model did not load: {err}", plan.log_path)
        return 1
    _pin_threads(handlers, plan.threads)
    worker = Worker(plan, handlers)
    failures: list[ObjectFailed] = []
    for item in plan.inputs:
        started = time.perf_counter()
        try:
            lines = worker.transform(item)
        except ObjectFailed as failed:
            for line in failed.log_lines or [f"{item.name}: {failed.reason}"]:
                sagemaker_log(line)
            failures.append(failed)
            continue
        seconds = time.perf_counter() - started
        print(f"[sfn-mlops] {item.name}: {lines} lines in {seconds:.2f} s", flush=True)
    if failures:
        reason = failures[0].reason
        if len(failures) > 1:
            reason = f"{len(failures)} of {len(plan.inputs)} input objects failed; first: {reason}"
        write_failure(opt_ml, reason, plan.log_path)
        return 1
    return 0


def main(argv: list[str]) -> int:
    here = str(Path(__file__).resolve().parent)  # run as a script: its folder is not a package
    sys.path[:] = [p for p in sys.path if os.path.abspath(p or ".") != here]
    return run_plan(Plan.load(Path(argv[0])))


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
