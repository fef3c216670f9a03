"""Functional tests run the local services in-process, behind a real loopback server.

Each test gets a fresh workspace and its own server; boto3 reaches it through
``AWS_ENDPOINT_URL`` with the workspace's administrator keys, exactly as the CLI does.
"""

from __future__ import annotations

from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path

import boto3
import pytest

from sfn_mlops.local.cloud import LocalCloud
from sfn_mlops.local.server import LocalServer


@contextmanager
def serving(cloud: LocalCloud) -> Iterator[LocalServer]:
    """Serve ``cloud`` on a free loopback port and point this process's boto3 at it."""
    server = LocalServer(cloud).start()
    with pytest.MonkeyPatch.context() as patch:
        patch.setenv("AWS_ENDPOINT_URL", server.url)
        for name, value in cloud.credentials.admin().environment().items():
            patch.setenv(name, value)
        patch.setattr(boto3, "DEFAULT_SESSION", None)  # it keeps the keys it first resolved
        try:
            yield server
        finally:
            if "lambda" in cloud._services:
                cloud.service("lambda").shutdown()
            server.stop()


@pytest.fixture
def server(tmp_path: Path) -> Iterator[LocalServer]:
    """A fresh workspace's local cloud, served (its port, its gateway's clock)."""
    local = LocalCloud(tmp_path / "workspace", time_scale=0.001)
    with serving(local) as served:
        yield served


@pytest.fixture
def cloud(server: LocalServer) -> LocalCloud:
    return server.gateway.cloud  # type: ignore[no-any-return]
