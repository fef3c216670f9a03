"""Clarify's shadow endpoint: made from the analysis config's model, asked for the predictions,
deleted when the job is done, all with the job's own credentials (its RoleArn).

AWS's Clarify container does this whenever its ``predictor`` names a ``model_name``: "Instance
type for the shadow endpoint", "Instance count for the shadow endpoint" (SageMaker Developer
Guide, "Analysis configuration files",
https://docs.aws.amazon.com/sagemaker/latest/dg/clarify-processing-job-configure-analysis.html).
Its code is not public; what this module does and where it comes from:

- **Names.** Clarify's managed-endpoint code (as ported into aws/fmeval,
  ``src/model_runners/managed_endpoint.py``, commit eb3c7fea) names the endpoint config
  ``unique_name_from_base(prefix + "-config")`` and the endpoint
  ``gen_shadow_endpoint_unique_name(prefix, model_name)``: the prefix and the model name cut so
  that both fit the 63 characters of an endpoint name with 15 to spare, then
  ``unique_name_from_base`` of the sagemaker package (``sagemaker/utils.py``): ``base[:47]``
  (63 minus the two hyphens, 10 digits of epoch seconds and 4 hex digits), ``-<seconds>-<hex>``.
  The prefix is ``predictor.endpoint_name_prefix`` or ``sm-clarify``, which an AWS user's
  FailureReason shows: ``endpoint-config/sm-clarify-config-1746251067-14e5``.
- **Calls.** CreateEndpointConfig (one ``AllTraffic`` variant of the model, the config's
  ``instance_type`` and ``initial_instance_count``, as ``sagemaker.Session
  .create_endpoint_config`` writes it), CreateEndpoint, DescribeEndpoint until ``InService``,
  InvokeEndpoint, then DeleteEndpointConfig and DeleteEndpoint (in that order, Clarify's),
  whatever happened: a deletion that fails is logged, not raised (Clarify logs "Failed to delete
  endpoint ..." and goes on). Both resources are created with tags, so the role also needs
  ``sagemaker:AddTags`` on them (a create request with Tags needs it: Service Authorization
  Reference, https://docs.aws.amazon.com/service-authorization/latest/reference/
  list_amazonsagemaker.html): an AWS user whose role lacked it saw Clarify fail with
  "An error occurred (AccessDeniedException) when calling the CreateEndpointConfig operation:
  ... is not authorized to perform: sagemaker:AddTags on resource: ...endpoint-config/
  sm-clarify-config-...". Which tags Clarify writes is not public; here one, naming the
  processing job that made them.
- **Batches.** Records go as CSV (``predictor.content_type``, by default the dataset's type;
  ``accept_type``, by default the content type), at most ``BATCH_RECORDS`` records and never
  more than InvokeEndpoint's 6 MB body
  (https://docs.aws.amazon.com/sagemaker/latest/APIReference/API_runtime_InvokeEndpoint.html);
  each answer must hold one CSV row per record sent. Clarify's own batch size is not public.
"""

from __future__ import annotations

import csv
import io
import random
import sys
import time
from collections.abc import Callable, Iterator, Sequence
from contextlib import contextmanager
from dataclasses import dataclass
from typing import Any

PREFIX = "sm-clarify"
NAME_MAX = 63  # EndpointName and EndpointConfigName: at most 63 characters
UNIQUE_LEN = 15  # what gen_shadow_endpoint_unique_name keeps free for the unique suffix
VARIANT = "AllTraffic"
CSV = "text/csv"
MAX_PAYLOAD = 6 * 1024 * 1024
BATCH_RECORDS = 1000
#: How long the endpoint may take to come InService (the job's MaxRuntimeInSeconds also ends it).
WAIT_SECONDS = 600.0
#: The first wait between DescribeEndpoint calls, and the longest: a local endpoint is up in
#: one to three seconds, and a longer wait is that much longer a job (AWS's Clarify polls every
#: minute, its endpoints taking minutes).
POLL_SECONDS = (0.05, 0.2)
TAG_KEY = "sm-clarify-processing-job"


class ShadowEndpointError(Exception):
    """The shadow endpoint did not come up or answered what cannot be read; ``kind`` says whose
    fault (ClientError: the model's, AlgorithmError: the platform's)."""

    def __init__(self, message: str, kind: str = "ClientError") -> None:
        super().__init__(message)
        self.kind = kind


def unique_name(base: str, now: float, rng: random.Random) -> str:
    """``sagemaker.utils.unique_name_from_base(base)``: ``base`` cut to fit, then
    ``-<epoch seconds>-<4 hex digits>``, at most 63 characters."""
    unique = f"{rng.randrange(16**4):04x}"
    stamp = str(int(now))
    return f"{base[: NAME_MAX - 2 - len(stamp) - len(unique)]}-{stamp}-{unique}"


def config_name(prefix: str, now: float, rng: random.Random) -> str:
    return unique_name(f"{prefix}-config", now, rng)


def endpoint_name(prefix: str, model_name: str, now: float, rng: random.Random) -> str:
    """Clarify's ``gen_shadow_endpoint_unique_name``: ``<prefix>-<model>-<seconds>-<hex>``."""
    room = NAME_MAX - UNIQUE_LEN
    if len(prefix) + len(model_name) > room:
        prefix = prefix[: room // 2 - 1]
        model_name = model_name[: room - len(prefix)]
    return unique_name(f"{prefix}-{model_name}", now, rng)


@dataclass(frozen=True)
class Predictor:
    """The analysis config's ``predictor`` section, as the shadow endpoint needs it."""

    model_name: str
    instance_type: str
    instance_count: int
    content_type: str
    accept: str
    prefix: str = PREFIX
    custom_attributes: str | None = None

    @classmethod
    def from_config(cls, config: dict[str, Any]) -> Predictor:
        predictor = config.get("predictor") or {}
        content_type = str(predictor.get("content_type") or config.get("dataset_type") or CSV)
        return cls(
            model_name=str(predictor["model_name"]),
            instance_type=str(predictor.get("instance_type") or ""),
            instance_count=int(predictor.get("initial_instance_count") or 1),
            content_type=content_type,
            accept=str(predictor.get("accept_type") or content_type),
            prefix=str(predictor.get("endpoint_name_prefix") or PREFIX),
            custom_attributes=predictor.get("custom_attributes"),
        )


@dataclass(frozen=True)
class Endpoint:
    """An endpoint that is InService: ``predict`` sends it records, in batches."""

    runtime: Any
    name: str
    predictor: Predictor
    batch_records: int = BATCH_RECORDS
    max_payload: int = MAX_PAYLOAD

    def predict(self, records: Sequence[str]) -> list[list[str]]:
        """The endpoint's answer to each record (a CSV line of features): its CSV row."""
        answers: list[list[str]] = []
        for batch in batches(records, self.batch_records, self.max_payload):
            body = "".join(line + "\n" for line in batch).encode()
            extra = {"CustomAttributes": self.predictor.custom_attributes}
            response = self.runtime.invoke_endpoint(
                EndpointName=self.name,
                Body=body,
                ContentType=self.predictor.content_type,
                Accept=self.predictor.accept,
                **{key: value for key, value in extra.items() if value},
            )
            rows = read_answer(response["Body"].read())
            if len(rows) != len(batch):
                raise ShadowEndpointError(
                    f"endpoint {self.name} answered {len(rows)} record(s) to a request of "
                    f"{len(batch)}: a CSV answer needs one line per record"
                )
            answers.extend(rows)
        return answers


def batches(records: Sequence[str], most: int, max_payload: int) -> Iterator[Sequence[str]]:
    """Consecutive runs of ``records``: at most ``most`` each, their body under ``max_payload``."""
    start, size = 0, 0
    for index, record in enumerate(records):
        length = len(record.encode()) + 1
        if length > max_payload:
            raise ShadowEndpointError(
                f"record {index + 1} alone is {length} bytes, over InvokeEndpoint's "
                f"{max_payload}-byte limit"
            )
        if index > start and (index - start >= most or size + length > max_payload):
            yield records[start:index]
            start, size = index, 0
        size += length
    if start < len(records):
        yield records[start:]


def read_answer(body: bytes) -> list[list[str]]:
    """A CSV answer's rows (a quoted cell such as ``"[0.1, 0.9]"`` stays one cell)."""
    text = body.decode("utf-8")
    return [row for row in csv.reader(io.StringIO(text)) if row]


def _log(line: str) -> None:
    print(line, flush=True)


@contextmanager
def shadow_endpoint(
    sagemaker: Any,
    runtime: Any,
    predictor: Predictor,
    *,
    job_name: str | None = None,
    log: Callable[[str], None] = _log,
    clock: Callable[[], float] = time.time,
    sleep: Callable[[float], None] = time.sleep,
    rng: random.Random | None = None,
    wait_seconds: float = WAIT_SECONDS,
) -> Iterator[Endpoint]:
    """Create the endpoint config and endpoint, wait for InService, yield the endpoint; delete
    both afterwards, also when anything failed (a ``botocore`` ClientError goes through)."""
    rng = rng or random.Random()
    tags = [{"Key": TAG_KEY, "Value": job_name}] if job_name else []
    config = config_name(predictor.prefix, clock(), rng)
    created: list[tuple[str, str]] = []
    try:
        log(f"Creating endpoint config: '{config}'")
        variant = {
            "VariantName": VARIANT,
            "ModelName": predictor.model_name,
            "InitialVariantWeight": 1,
            "InitialInstanceCount": predictor.instance_count,
            "InstanceType": predictor.instance_type,
        }
        sagemaker.create_endpoint_config(
            EndpointConfigName=config, ProductionVariants=[variant], Tags=tags
        )
        created.append(("endpoint config", config))
        name = endpoint_name(predictor.prefix, predictor.model_name, clock(), rng)
        log(f"Creating endpoint: '{name}'")
        sagemaker.create_endpoint(EndpointName=name, EndpointConfigName=config, Tags=tags)
        created.append(("endpoint", name))
        waited = wait_in_service(sagemaker, name, clock, sleep, wait_seconds)
        log(f"Endpoint is in service after {waited:.1f} seconds")
        yield Endpoint(runtime, name, predictor)
    finally:
        delete(sagemaker, created, log)


def wait_in_service(
    sagemaker: Any,
    name: str,
    clock: Callable[[], float],
    sleep: Callable[[float], None],
    wait_seconds: float,
) -> float:
    """DescribeEndpoint until InService; how long it took. Failed, or still not InService after
    ``wait_seconds``, raises ShadowEndpointError."""
    start = clock()
    pause = POLL_SECONDS[0]
    while True:
        described = sagemaker.describe_endpoint(EndpointName=name)
        status = described["EndpointStatus"]
        if status == "InService":
            return clock() - start
        if status not in ("Creating", "Updating", "SystemUpdating"):
            reason = described.get("FailureReason") or "no reason given"
            raise ShadowEndpointError(f"Error hosting endpoint {name}: {status}. Reason: {reason}")
        waited = clock() - start
        if waited >= wait_seconds:
            raise ShadowEndpointError(
                f"endpoint {name} is still {status} after {waited:.0f} s (the shadow endpoint "
                f"gets {wait_seconds:.0f} s to come InService)",
                kind="AlgorithmError",
            )
        sleep(min(pause, max(0.0, wait_seconds - waited)))
        pause = min(pause * 2, POLL_SECONDS[1])


def delete(sagemaker: Any, created: list[tuple[str, str]], log: Callable[[str], None]) -> None:
    """Delete what was created, the config first as Clarify does; a failure is logged only."""
    calls = {"endpoint config": "delete_endpoint_config", "endpoint": "delete_endpoint"}
    members = {"endpoint config": "EndpointConfigName", "endpoint": "EndpointName"}
    for kind, name in created:
        log(f"Deleting {kind}: '{name}'")
        try:
            getattr(sagemaker, calls[kind])(**{members[kind]: name})
        except Exception as exc:  # noqa: BLE001 - Clarify logs a failed clean-up and goes on
            print(f"Failed to delete {kind} {name}: {exc}", file=sys.stderr, flush=True)
