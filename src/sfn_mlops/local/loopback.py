"""Who may reach a loopback server: requests addressed to it, not from another site's page.

Listening on 127.0.0.1 keeps other machines out, not web pages: a page on any site can make
the browser send requests to 127.0.0.1, and through DNS rebinding (its own name resolving to
127.0.0.1) read the answers as same-origin. Such a request still carries the page's name in
``Host``, and a cross-origin one an ``Origin`` header. So every server the local service runs
(the AWS gateway with its ``/_sfn-mlops/`` paths, each endpoint's server) answers only requests
whose ``Host`` is its own loopback address and port, and that carry no ``Origin`` other than
that same address. HTTP clients (botocore, the AWS CLI, urllib, http.client, curl, browsers)
send the port in ``Host`` whenever it is not 80, and these servers never listen on 80, so a
bare name is refused too. See the README, "Who may call the local service".
"""

from __future__ import annotations

from functools import cache

LOOPBACK_NAMES = ("127.0.0.1", "localhost", "[::1]")


@cache
def allowed_hosts(port: int) -> frozenset[str]:
    """The ``Host`` values that name this server: its loopback addresses with its port."""
    return frozenset(f"{name}:{port}" for name in LOOPBACK_NAMES)


@cache
def allowed_origins(port: int) -> frozenset[str]:
    """The one origin a browser may send from: a page served by this same server."""
    return frozenset(f"http://{host}" for host in allowed_hosts(port))


def refusal(host: str | None, origin: str | None, port: int) -> str | None:
    """Why a request with these headers is refused (a message for its 403), or None."""
    if (host or "").strip().lower() not in allowed_hosts(port):
        return (
            f"Host {host!r} is not this server (127.0.0.1:{port}, localhost:{port} or "
            f"[::1]:{port}): refused, as a request from a web page through DNS rebinding would be"
        )
    if origin is not None and origin.strip().lower() not in allowed_origins(port):
        return (
            f"Origin {origin!r} is another site: cross-origin requests are refused "
            f"(only http://127.0.0.1:{port} may send one)"
        )
    return None
