"""Writes the run's Clarify analysis configs (bias and explainability) to S3.

Invoked by the state machine's `PrepareClarify` Task after `CreateModel` with
`{"clarify": {...the pipeline config's clarify section...}, "schema_uri", "test_uri",
"output_prefix", "model_name", "instance_type"}`. Writes
`<output_prefix>/bias/config/analysis_config.json`,
`<output_prefix>/explainability/config/analysis_config.json` and the records to explain,
`<output_prefix>/explainability/data/test.csv` (the first `shap.max_records` rows of the test
split, which the processing job shuffled). Errors propagate under their class names
(`ClarifyConfigError` is the user's).
"""

from __future__ import annotations

import json
from typing import Any

import analysis_config
import boto3
from aws_lambda_powertools import Logger, Tracer
from aws_lambda_powertools.utilities.parser import event_parser
from aws_lambda_powertools.utilities.typing import LambdaContext
from pydantic import BaseModel, ConfigDict, Field

logger = Logger()
tracer = Tracer()  # disabled locally (POWERTOOLS_TRACE_DISABLED): there is no X-Ray

_s3_client: Any = None
S3_URI = r"^s3://[^/]+/.+"


def get_s3_client() -> Any:
    """The S3 client, created on first use."""
    global _s3_client
    if _s3_client is None:
        _s3_client = boto3.client("s3")
    return _s3_client


def set_s3_client(client: Any) -> None:
    """Replaces the S3 client (tests, or a caller with its own session); None resets it."""
    global _s3_client
    _s3_client = client


class PrepareClarifyEvent(BaseModel):
    model_config = ConfigDict(extra="forbid")

    clarify: dict[str, Any]
    schema_uri: str = Field(pattern=S3_URI)
    test_uri: str = Field(pattern=S3_URI)
    output_prefix: str = Field(pattern=S3_URI)
    model_name: str
    instance_type: str


def _split(uri: str) -> tuple[str, str]:
    bucket, _, key = uri.removeprefix("s3://").partition("/")
    return bucket, key


def _head_lines(s3: Any, uri: str, count: int) -> bytes:
    """The first ``count`` lines of an object, read as a stream (the test split can be large)."""
    bucket, key = _split(uri)
    body = s3.get_object(Bucket=bucket, Key=key)["Body"]
    lines = []
    for line in body.iter_lines(keepends=True):
        if len(lines) == count:
            break
        lines.append(line)
    body.close()
    return b"".join(lines)


def prepare(event: PrepareClarifyEvent, s3: Any) -> dict[str, str]:
    bucket, key = _split(event.schema_uri)
    schema = json.loads(s3.get_object(Bucket=bucket, Key=key)["Body"].read())
    args = (event.clarify, schema, event.model_name, event.instance_type)
    configs = {
        "bias": analysis_config.bias_config(*args),
        "explainability": analysis_config.explainability_config(*args),
    }
    out_bucket, out_key = _split(event.output_prefix.rstrip("/"))
    uris = {}
    for name, config in configs.items():
        key = f"{out_key}/{name}/config/analysis_config.json"
        s3.put_object(Bucket=out_bucket, Key=key, Body=json.dumps(config, indent=2).encode())
        uris[f"{name}_config"] = f"s3://{out_bucket}/{key}"
    records = _head_lines(s3, event.test_uri, int(event.clarify["shap"]["max_records"]))
    data_key = f"{out_key}/explainability/data/test.csv"
    s3.put_object(Bucket=out_bucket, Key=data_key, Body=records)
    uris["explainability_data"] = f"s3://{out_bucket}/{data_key}"
    return uris


@logger.inject_lambda_context
@tracer.capture_lambda_handler
@event_parser(model=PrepareClarifyEvent)
def lambda_handler(event: PrepareClarifyEvent, context: LambdaContext) -> dict[str, str]:
    uris = prepare(event, get_s3_client())
    logger.info("clarify analysis configs written", extra=uris)
    return uris
