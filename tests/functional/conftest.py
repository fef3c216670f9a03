"""Functional tests run the local services in-process, behind a real loopback server.

Each test gets a fresh workspace and its own server; boto3 reaches it through
``AWS_ENDPOINT_URL`` exactly as the CLI, the Lambdas and other SDKs do.
"""

from __future__ import annotations

from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path

import pytest

from sfn_mlops.local.cloud import LocalCloud
from sfn_mlops.local.server import LocalServer


@contextmanager
def serving(cloud: LocalCloud) -> Iterator[LocalServer]:
    """Serve ``cloud`` on a free loopback port and point this process's boto3 at it."""
    server = LocalServer(cloud).start()
    with pytest.MonkeyPatch.context() as patch:
        patch.setenv("AWS_ENDPOINT_URL", server.url)
        patch.setenv("AWS_ACCESS_KEY_ID", "local")
        patch.setenv("AWS_SECRET_ACCESS_KEY", "local")
        try:
            yield server
        finally:
            if "lambda" in cloud._services:
                cloud.service("lambda").shutdown()
            server.stop()


@pytest.fixture
def cloud(tmp_path: Path) -> Iterator[LocalCloud]:
    local = LocalCloud(tmp_path / "workspace", time_scale=0.001)
    with serving(local):
        yield local
