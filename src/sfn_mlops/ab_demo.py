"""``sfn-mlops demo ab``: an A/B test that concludes, on the local endpoint.

A champion trained briefly (few boosting rounds) serves; the pipeline then deploys a
challenger trained fully with ``deployment.strategy: ab``. The demo sends abalone rows to both
variants and uploads their true ages as ground truth, then evaluates the test (the A/B test
function, the code the schedule runs) until it concludes: the better challenger wins, the
traffic moves to it step by step, and the endpoint ends with one variant, the challenger, whose
registry version records why. The helpers here also drive the end-to-end tests.
"""

from __future__ import annotations

import argparse
import csv
import datetime as dt
import io
import json
import random
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any, Literal

from sfn_mlops.monitor_cli import ground_truth_prefix, ground_truth_record, upload_ground_truth

ENDPOINT = "sfn-mlops"
TARGET = "rings"
VARIANTS = ("Champion", "Challenger")
Favour = Literal["truth", "Champion", "Challenger", "neither"]
#: The demo's two runs: a weak champion, then a challenger in an A/B test.
CHAMPION_SETTINGS = [
    "hyperparameters.num_round=3", "gate.threshold=4", "clarify.enabled=false",
    "monitoring.enabled=false",
]  # fmt: skip
CHALLENGER_SETTINGS = [
    "clarify.enabled=false", "monitoring.enabled=false", "deployment.strategy=ab",
    "deployment.ab_challenger_share=0.2", "deployment.ab.min_samples=100",
    "deployment.ab.step_percent=40",
]  # fmt: skip
ROWS = 300


def example_rows(workspace: Path, count: int = ROWS, seed: int = 11) -> list[dict[str, str]]:
    from sfn_mlops.data import example_dataset

    with open(example_dataset(workspace / "datasets"), newline="", encoding="utf-8") as stream:
        rows = list(csv.DictReader(stream))
    return random.Random(seed).sample(rows, count)


def _csv_line(values: list[str]) -> bytes:
    buffer = io.StringIO()
    csv.writer(buffer, lineterminator="\n").writerow(values)
    return buffer.getvalue().encode()


def send_pairs(runtime: Any, rows: list[dict[str, str]], *, endpoint: str = ENDPOINT,
               favour: Favour = "truth", tag: str = "ab", seed: int = 3,
               noise: float = 0.3) -> list[dict[str, Any]]:  # fmt: skip
    """Each row to both variants (``TargetVariant``, each request its own ``InferenceId``);
    returns the ground truth records. The label is the row's own (``truth``), or, to drive a
    test's outcome, the favoured variant's prediction plus a little noise (``neither``: the
    mean of the two, no noise, so neither is better)."""
    rng = random.Random(seed)
    records = []
    for index, row in enumerate(rows):
        body = _csv_line([value for name, value in row.items() if name != TARGET])
        predictions, ids = {}, {}
        for variant in VARIANTS:
            ids[variant] = f"{tag}-{index}-{variant.lower()}"
            answer = runtime.invoke_endpoint(
                EndpointName=endpoint, ContentType="text/csv", Body=body,
                TargetVariant=variant, InferenceId=ids[variant],
            )  # fmt: skip
            predictions[variant] = float(answer["Body"].read().decode().split(",")[0])
        if favour == "truth":
            label = float(row[TARGET])
        elif favour == "neither":
            label = sum(predictions.values()) / 2
        else:
            label = predictions[favour] + rng.gauss(0, noise)
        records += [ground_truth_record(ids[v], f"{label:.4f}") for v in VARIANTS]
    return records


def label(s3: Any, bucket: str, records: list[dict[str, Any]], endpoint: str = ENDPOINT) -> str:
    return upload_ground_truth(s3, ground_truth_prefix(bucket, endpoint), records)


def ab_call(lambda_client: Any, action: str, endpoint: str = ENDPOINT) -> dict[str, Any]:
    """The A/B test function's answer to ``action`` (status, evaluate, promote, end)."""
    from sfn_mlops.hosting_cli import AB_FUNCTION, HostingError

    answer = lambda_client.invoke(
        FunctionName=AB_FUNCTION, Payload=json.dumps({"action": action, "endpoint": endpoint})
    )
    result: dict[str, Any] = json.loads(answer["Payload"].read())
    if answer.get("FunctionError"):
        raise HostingError(f"{result.get('errorType')}: {result.get('errorMessage')}")
    return result


def labelled(result: dict[str, Any]) -> int:
    return min((v["labelled"] for v in result["variants"]), default=0)


def wait_for_labels(lambda_client: Any, wanted: int, timeout: float = 60.0,
                    endpoint: str = ENDPOINT) -> dict[str, Any]:  # fmt: skip
    """Captures are published every few seconds: wait until both variants have ``wanted``
    labelled requests (or the test has ended)."""
    deadline = time.monotonic() + timeout
    while True:
        result = ab_call(lambda_client, "status", endpoint)
        if result["phase"] == "done" or labelled(result) >= wanted:
            return result
        if time.monotonic() > deadline:
            raise TimeoutError(f"fewer than {wanted} labelled requests per variant after "
                               f"{timeout:.0f} s: {result['variants']}")  # fmt: skip
        time.sleep(0.5)


def cmd_demo_ab(args: argparse.Namespace, connect: Callable[[argparse.Namespace], Any]) -> int:
    import boto3

    from sfn_mlops import cli, settings
    from sfn_mlops.demo import _global_args
    from sfn_mlops.hosting_cli import ab_report
    from sfn_mlops.local import control

    service = connect(args)
    deployment = control.admin(
        service, "deploy", {"project": str(settings.project_root(args.project))}
    )
    since = dt.datetime.now(dt.UTC)
    for name, overrides in (("champion", CHAMPION_SETTINGS), ("challenger", CHALLENGER_SETTINGS)):
        print(f"Training the {name} ({', '.join(overrides)})")
        sets = [item for value in overrides for item in ("--set", value)]
        if cli.main(_global_args(args) + ["run", *sets]) != 0:
            print(f"The {name}'s run failed; see its summary")
            return 1
    lambdas = boto3.client("lambda")
    rows = example_rows(service.workspace)
    records = send_pairs(boto3.client("sagemaker-runtime"), rows, tag=f"demo-{since:%H%M%S}")
    uri = label(boto3.client("s3"), deployment["bucket"], records)
    print(f"\nSent {len(rows)} abalone rows to both variants; their true ages: {uri}")
    wait_for_labels(lambdas, len(rows))
    for _ in range(20):  # a look, then one evaluation per traffic step
        result = ab_call(lambdas, "evaluate")
        print("\n" + ab_report(result))
        if result["phase"] == "done":
            return 0
    return 1
