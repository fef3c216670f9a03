"""Offline and quiet: every test runs with a fixed region and no instance metadata lookups."""

from __future__ import annotations

import os

import pytest

os.environ["AWS_DEFAULT_REGION"] = "us-east-1"
os.environ["AWS_EC2_METADATA_DISABLED"] = "true"
os.environ["SAGEMAKER_SUPPRESS_V2_WARNING"] = "1"
os.environ.setdefault("AWS_ACCESS_KEY_ID", "testing")
os.environ.setdefault("AWS_SECRET_ACCESS_KEY", "testing")
for _proxy in ("HTTP_PROXY", "HTTPS_PROXY", "http_proxy", "https_proxy"):
    os.environ.pop(_proxy, None)
os.environ["NO_PROXY"] = "127.0.0.1,localhost"


@pytest.fixture(autouse=True)
def _no_local_endpoint_left_behind(monkeypatch: pytest.MonkeyPatch) -> None:
    """A test that talks to a local service sets AWS_ENDPOINT_URL itself; moto's never see it.

    The CLI points its own process at the workspace's service (``control.connect``); when tests
    run it in-process, that setting must not leak into the next test.
    """
    monkeypatch.delenv("AWS_ENDPOINT_URL", raising=False)
