"""The seven steps `sfn-mlops demo drift` prints, checked in order (sfn_mlops.loop_timeline)."""

from __future__ import annotations

import re


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
