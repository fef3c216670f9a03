"""Waiting for what a local stack does in the background: poll a check until a deadline.

Importable as ``waiting`` from every test folder (pytest puts ``tests/``, the root conftest's
folder, on the path)."""

from __future__ import annotations

import time
from collections.abc import Callable
from typing import Any

WAIT_SECONDS = 120.0


def until(
    check: Callable[[], Any], what: str, timeout: float = WAIT_SECONDS, poll: float = 0.1
) -> Any:
    """The first truthy value ``check`` gives, tried every ``poll`` s; AssertionError naming
    ``what`` at the deadline."""
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        value = check()
        if value:
            return value
        time.sleep(poll)
    raise AssertionError(f"timed out waiting for {what}")
