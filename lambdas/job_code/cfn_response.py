"""Answers a CloudFormation custom resource request, and never leaves the stack waiting.

CloudFormation waits (up to an hour) for a PUT to the request's `ResponseURL`. `answer` runs the
work and always sends exactly one response: SUCCESS with the work's physical id and data, or
FAILED with a reason, when the work raises anything, and before the Lambda's own timeout (a timer
fires `margin_seconds` before it). Plain functions; the HTTP call is passed in for tests.
"""

from __future__ import annotations

import json
import logging
import threading
import urllib.request
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any

logger = logging.getLogger(__name__)

SUCCESS = "SUCCESS"
FAILED = "FAILED"
#: CloudFormation keeps at most 4 KB of a response; the reason is cut well below that.
MAX_REASON = 1000
PUT_TIMEOUT_SECONDS = 30


@dataclass(frozen=True)
class Outcome:
    physical_id: str
    data: dict[str, str] = field(default_factory=dict)


Send = Callable[[str, bytes], None]


def put(url: str, body: bytes) -> None:
    """PUT `body` to the presigned `url` (an empty Content-Type, as the URL was signed)."""
    request = urllib.request.Request(  # noqa: S310 - CloudFormation's https ResponseURL
        url,
        data=body,
        method="PUT",
        headers={"Content-Type": "", "Content-Length": str(len(body))},
    )
    with urllib.request.urlopen(request, timeout=PUT_TIMEOUT_SECONDS) as answer:  # noqa: S310
        answer.read()


class Responder:
    """Sends one response for `event`; later calls do nothing (the timer and the work race)."""

    def __init__(self, event: dict[str, Any], context: Any, send: Send) -> None:
        self.event = event
        self.context = context
        self.send = send
        self.sent: dict[str, Any] | None = None
        self._lock = threading.Lock()

    def body(self, status: str, reason: str, outcome: Outcome | None) -> dict[str, Any]:
        fallback = self.event.get("PhysicalResourceId") or getattr(
            self.context, "log_stream_name", "unknown"
        )
        return {
            "Status": status,
            "Reason": reason[:MAX_REASON],
            "PhysicalResourceId": outcome.physical_id if outcome else fallback,
            "StackId": self.event.get("StackId", ""),
            "RequestId": self.event.get("RequestId", ""),
            "LogicalResourceId": self.event.get("LogicalResourceId", ""),
            "NoEcho": False,
            "Data": outcome.data if outcome else {},
        }

    def respond(self, status: str, reason: str, outcome: Outcome | None = None) -> bool:
        with self._lock:
            if self.sent is not None:
                return False
            self.sent = self.body(status, reason, outcome)
        url = self.event.get("ResponseURL")
        if not url:
            logger.error("the request has no ResponseURL; nothing to answer: %s", self.sent)
            return True
        try:
            self.send(str(url), json.dumps(self.sent).encode())
        except Exception:  # the stack waits for its timeout; all that is left is the log
            logger.exception("could not send the %s response to CloudFormation", status)
        return True


def answer(
    event: dict[str, Any],
    context: Any,
    work: Callable[[dict[str, Any]], Outcome],
    *,
    send: Send = put,
    margin_seconds: float = 10.0,
) -> dict[str, Any] | None:
    """Runs `work(event)` and answers CloudFormation; returns the response sent.

    Never raises: a failure of the work is answered FAILED with the error as the reason.
    """
    responder = Responder(event, context, send)
    remaining = context.get_remaining_time_in_millis() / 1000.0 - margin_seconds
    timer = threading.Timer(
        max(remaining, 0.0),
        responder.respond,
        args=(
            FAILED,
            f"timed out: the work did not finish {margin_seconds:g} s before the Lambda's "
            f"timeout; see log stream {getattr(context, 'log_stream_name', '?')}",
        ),
    )
    timer.daemon = True
    timer.start()
    try:
        outcome = work(event)
    except Exception as error:
        logger.exception("the custom resource request failed")
        responder.respond(FAILED, f"{type(error).__name__}: {error}")
    else:
        responder.respond(SUCCESS, "OK", outcome)
    finally:
        timer.cancel()
    return responder.sent
