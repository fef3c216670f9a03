"""What deciding SageMaker's own calls as a job's role adds to each job (src/sfn_mlops/local/jobs/
aws_calls.py): the image pull (3 ECR needs), the log stream (4 CloudWatch Logs needs) and the
instance metrics (PutMetricData with its namespace, then the 2 data written to the local
CloudWatch's store), each as the runner makes them, for the deployed template's SageMaker role.

The decisions go through `Authorization.denial` (enforce mode, statements recorded once) in a
scratch workspace; the publication through the workspace's CloudWatch service (`metrics.db`).
Timed warm in blocks of `--jobs` job starts; the median over `--blocks` blocks, in microseconds
per job. No service, no network, no job process: only what the runner adds.
Usage: python bench/bench_job_calls.py [--jobs N] [--blocks B]
"""

from __future__ import annotations

import argparse
import statistics
import sys
import tempfile
import time
from pathlib import Path
from typing import Any

sys.path.insert(0, str(Path(__file__).resolve().parent))

import common  # noqa: E402

ROOT = Path(__file__).resolve().parents[1]
IMAGE = "683313688378.dkr.ecr.us-east-1.amazonaws.com/sagemaker-xgboost:3.0-5"
ROLE = "arn:aws:iam::123456789012:role/SageMakerExecutionRole"


def _median_us(step: Any, jobs: int, blocks: int) -> float:
    step(0)
    figures = []
    for _ in range(blocks):
        start = time.perf_counter()
        for index in range(jobs):
            step(index)
        figures.append((time.perf_counter() - start) / jobs * 1e6)
    return statistics.median(figures)


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("--jobs", type=int, default=500)
    parser.add_argument("--blocks", type=int, default=7)
    args = parser.parse_args()
    common.print_machine()

    from sfn_mlops.aws.translate import translate
    from sfn_mlops.local.cloud import LocalCloud
    from sfn_mlops.local.jobs import aws_calls
    from sfn_mlops.local.jobs.state import KIND_TRAINING
    from sfn_mlops.local.processes import Usage
    from sfn_mlops.template import load

    with tempfile.TemporaryDirectory() as scratch:
        cloud = LocalCloud(Path(scratch))
        cloud.authorization.deployed(translate(load(ROOT / "template.yaml"), ROOT), {})
        iam = cloud.authorization
        caller = iam.caller(ROLE, "SageMaker")
        region, account = cloud.region, cloud.account
        watch = cloud.service("cloudwatch")
        watch.background = False  # no alarm evaluator thread in a bench

        def pull(_: int) -> None:
            assert iam.denial(caller, aws_calls.image_pull(IMAGE)) is None

        def logs(index: int) -> None:
            group, stream = aws_calls.log_stream(KIND_TRAINING, f"job-{index}", time.time())
            wanted = aws_calls.log_delivery(group, stream, region, account)
            assert iam.denial(caller, wanted) is None

        def decide_metrics(_: int) -> None:
            wanted = aws_calls.metrics_publication("/aws/sagemaker/TrainingJobs", region, account)
            assert iam.denial(caller, wanted) is None

        def publish_metrics(index: int) -> None:
            usage = Usage(cpu_seconds=0.4, max_rss_bytes=200 << 20)
            request = aws_calls.instance_metrics(KIND_TRAINING, f"job-{index}", usage, 1.0, 0.0)
            watch.record_metrics(request)

        rows = []
        total = 0.0
        for label, step in (
            ("image pull: 3 ECR needs decided", pull),
            ("log stream: 4 CloudWatch Logs needs decided", logs),
            ("metrics: PutMetricData with cloudwatch:namespace decided", decide_metrics),
            ("metrics: 2 data written to metrics.db", publish_metrics),
        ):
            figure = _median_us(step, args.jobs, args.blocks)
            total += figure
            rows.append([label, f"{figure:.1f}"])
        rows.append(["per job start (sum of medians)", f"{total:.1f}"])
        print(common.table(rows, ["added per job (warm)", "median µs"]))


if __name__ == "__main__":
    main()
