"""Lambda unit tests: each function folder is its own import root, as /var/task is in Lambda."""

from __future__ import annotations

import importlib
import sys
from collections.abc import Callable, Iterator
from pathlib import Path
from types import ModuleType

import pytest

LAMBDAS_DIR = Path(__file__).resolve().parents[3] / "lambdas"


@pytest.fixture(autouse=True)
def offline_aws(monkeypatch: pytest.MonkeyPatch) -> None:
    """Region and fake credentials from the environment; never the instance metadata service."""
    monkeypatch.setenv("AWS_DEFAULT_REGION", "us-east-1")
    monkeypatch.setenv("AWS_EC2_METADATA_DISABLED", "true")
    monkeypatch.setenv("AWS_ACCESS_KEY_ID", "testing")
    monkeypatch.setenv("AWS_SECRET_ACCESS_KEY", "testing")
    monkeypatch.setenv("AWS_SESSION_TOKEN", "testing")
    monkeypatch.delenv("AWS_PROFILE", raising=False)


def _forget_lambda_modules() -> None:
    """Drops modules imported from any Lambda folder: their names (app, ...) repeat."""
    for name, module in list(sys.modules.items()):
        origin = getattr(module, "__file__", None)
        if origin and Path(origin).resolve().is_relative_to(LAMBDAS_DIR):
            del sys.modules[name]


@pytest.fixture
def load_lambda(monkeypatch: pytest.MonkeyPatch) -> Iterator[Callable[..., list[ModuleType]]]:
    """`load_lambda("read_evaluation", "app", "gate")` imports those modules of that function."""

    def load(function: str, *modules: str) -> list[ModuleType]:
        _forget_lambda_modules()
        monkeypatch.syspath_prepend(str(LAMBDAS_DIR / function))
        return [importlib.import_module(module) for module in modules]

    yield load
    _forget_lambda_modules()


@pytest.fixture
def app(load_lambda: Callable[..., list[ModuleType]]) -> Iterator[ModuleType]:
    """read_evaluation's handler module, with its S3 client reset after the test."""
    (module,) = load_lambda("read_evaluation", "app")
    yield module
    module.set_s3_client(None)
