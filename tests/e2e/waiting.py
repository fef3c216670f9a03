"""Waiting for what a local stack does in the background: poll a check until a deadline."""

from __future__ import annotations

import time
from collections.abc import Callable
from typing import Any

WAIT_SECONDS = 120.0


def until(check: Callable[[], Any], what: str, timeout: float = WAIT_SECONDS) -> Any:
    """The first truthy value ``check`` gives; AssertionError naming ``what`` at the deadline."""
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        value = check()
        if value:
            return value
        time.sleep(0.1)
    raise AssertionError(f"timed out waiting for {what}")
