"""The seven steps `sfn-mlops demo drift` prints, checked in order (sfn_mlops.loop_timeline)."""

from __future__ import annotations

import re
from pathlib import Path
from typing import Any

from sfn_mlops.loop_timeline import RETRAINING_PREFIXES

#: A first run for the whole loop at the tests' time scale: a canary the retraining keeps, and
#: alarms held by one breach in two periods (their window outlasts the gap between two runs).
LOOP_RUN = (
    "--set", "clarify.enabled=false", "--set", "deployment.strategy=canary",
    "--set", "monitoring.evaluation_periods=2", "--set", "monitoring.datapoints_to_alarm=1",
)  # fmt: skip


def demo_retraining(out: str) -> str:
    """The retraining `demo drift` says its alarm started."""
    found = re.search(r"Retraining started by the alarm: (\S+)", out)
    assert found, out
    return found[1]


def retrainings(aws: Any) -> list[str]:
    """The executions the Retrain Lambda started."""
    return [name for name in aws.execution_names() if name.startswith(RETRAINING_PREFIXES)]


def closes_the_loop(cli: Any, workspace: Path, aws: Any, mode: str, *settings: str) -> str:
    """A first run (``LOOP_RUN`` and ``settings``), then `demo drift --mode MODE` through all
    seven steps to the alarm back at OK, and no other retraining; the retraining's name."""
    first = cli(workspace, "run", "--name", "first", *LOOP_RUN, *settings)
    assert first.code == 0, first.out + first.err
    result = cli(workspace, "demo", "drift", "--mode", mode, "--ok-timeout", "240")
    assert result.code == 0, result.out + result.err
    retraining = demo_retraining(result.out)
    schedule = "sfn-mlops-data-quality" if mode == "data" else "sfn-mlops-model-quality"
    assert_timeline(result.out, retraining, schedule, back_to_ok=True)
    assert re.search(r"\[7/7\] \d\d:\d\d:\d\d  the alarms? returned to OK$", result.out, re.M)
    assert retrainings(aws) == [retraining], retrainings(aws)
    return retraining


def assert_timeline(out: str, retraining: str, schedule: str, *, back_to_ok: bool = False) -> None:
    """The demo's seven steps in order; the last one pending unless ``back_to_ok``."""
    steps = re.findall(r"^  \[(\d)/7\] (?:\d\d:\d\d:\d\d  )?(.*)$", out, re.MULTILINE)
    assert [int(number) for number, _ in steps] == list(range(1, 8)), out
    texts = [text for _, text in steps]
    expected = [
        "alarm sfn-mlops-",
        f"retraining {retraining} started by the alarm (the only one)",
        "the new model beats production on recent labelled data",
        f"canary deployment: 10% of capacity first, the rest after 60 s: sfn-mlops serves "
        f"{retraining}-config",
        "new monitoring baselines from the new training data: s3://",
        f"the next monitoring run, over 600 fresh rows since the new model took over, is within "
        f"the baseline ({schedule}: Completed, no violations)",
        "the alarm" if back_to_ok else "pending: the alarms return to OK at about",
    ]
    for text, start in zip(texts, expected, strict=True):
        assert text.startswith(start), (text, start)
    assert f"runs/{retraining}/monitoring/" in texts[4]
    assert "did not happen" not in out and "The loop did not close" not in out
