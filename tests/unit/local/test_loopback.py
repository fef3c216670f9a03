"""Which requests a loopback server answers: its own address and port, no other site's page."""

from __future__ import annotations

import pytest

from sfn_mlops.local.loopback import refusal

PORT = 43123


@pytest.mark.parametrize(
    "host", ["127.0.0.1:43123", "localhost:43123", "LOCALHOST:43123", "[::1]:43123"]
)
def test_its_own_loopback_address_is_answered(host: str) -> None:
    assert refusal(host, None, PORT) is None
    assert refusal(host, f"http://{host.lower()}", PORT) is None


@pytest.mark.parametrize(
    "host",
    [
        "evil.example",
        "evil.example:43123",
        "127.0.0.1",
        "localhost",
        "127.0.0.1:80",
        "127.0.0.1:43124",
        "",
        None,
    ],
)
def test_any_other_host_is_refused(host: str | None) -> None:
    message = refusal(host, None, PORT)
    assert message is not None and message.startswith(f"Host {host!r} is not this server")


@pytest.mark.parametrize(
    "origin", ["http://evil.example", "null", "http://127.0.0.1:43124", "https://127.0.0.1:43123"]
)
def test_a_cross_origin_request_is_refused(origin: str) -> None:
    message = refusal("127.0.0.1:43123", origin, PORT)
    assert message is not None and message.startswith(f"Origin {origin!r} is another site")
