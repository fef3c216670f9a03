"""Functional tests run the local services in-process against a fresh workspace."""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path

import pytest

from sfn_mlops.local import routing
from sfn_mlops.local.cloud import LocalCloud


@pytest.fixture
def cloud(tmp_path: Path) -> Iterator[LocalCloud]:
    local = routing.activate(LocalCloud(tmp_path / "workspace", time_scale=0.001))
    yield local
    if "lambda" in local._services:
        local.service("lambda").shutdown()
    routing.deactivate()
