"""Value shapes the local services share: AWS responses carry timestamps as aware datetimes."""

from __future__ import annotations

import datetime as dt


def timestamp(epoch: float | None) -> dt.datetime | None:
    """Stored epoch seconds as the timezone-aware datetime botocore's parsers return."""
    return None if epoch is None else dt.datetime.fromtimestamp(epoch, tz=dt.timezone.utc)
