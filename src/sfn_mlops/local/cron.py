"""AWS cron expressions, ``cron(minutes hours day-of-month month day-of-week year)``, with
EventBridge's rules, and when each one fires next (UTC).

The fields and what each accepts (EventBridge's "Cron expressions" reference):

=============  =========================  ==================
field          values                     wildcards
=============  =========================  ==================
minutes        0-59                       , - * /
hours          0-23                       , - * /
day-of-month   1-31                       , - * ? / L W
month          1-12 or JAN-DEC            , - * /
day-of-week    1-7 or SUN-SAT (1 = SUN)   , - * ? L #
year           1970-2199                  , - * /
=============  =========================  ==================

Exactly one of day-of-month and day-of-week is ``?``. ``L`` is the last day of the month (in
day-of-month, ``LW`` its last weekday) or, in day-of-week, Saturday alone and ``6L`` the
month's last Friday; ``15W`` is the weekday nearest the 15th within its month; ``3#2`` the
second Tuesday. A range may wrap (``FRI-MON``, ``22-2``); ``a/n`` and ``*/n`` step from ``a``
(or the field's first value) to the field's end. Names are case-insensitive.

``parse(expr)`` raises ``ValueError`` naming the field at fault; ``Cron.next_after(moment)``
is the first firing strictly after ``moment``, None when the expression never fires again
(its years are over). ``ScaledTimer`` places the firings on the wall clock when local time
runs at the workspace's ``time_scale``.
"""

from __future__ import annotations

import calendar
import datetime as dt
import re
from dataclasses import dataclass

UTC = dt.timezone.utc
FIELDS = ("minutes", "hours", "day-of-month", "month", "day-of-week", "year")
_BOUNDS = {
    "minutes": (0, 59),
    "hours": (0, 23),
    "day-of-month": (1, 31),
    "month": (1, 12),
    "day-of-week": (1, 7),
    "year": (1970, 2199),
}
_MONTH_NAMES = ("JAN", "FEB", "MAR", "APR", "MAY", "JUN", "JUL", "AUG", "SEP", "OCT", "NOV", "DEC")
_DAY_NAMES = ("SUN", "MON", "TUE", "WED", "THU", "FRI", "SAT")
_NAMES = {
    "month": {name: i + 1 for i, name in enumerate(_MONTH_NAMES)},
    "day-of-week": {name: i + 1 for i, name in enumerate(_DAY_NAMES)},
}
_EXPRESSION = re.compile(r"^cron\((.*)\)$")
_ITEM = re.compile(r"^(\*|[A-Za-z0-9]+(?:-[A-Za-z0-9]+)?)(?:/(\d+))?$")
_NEAREST_WEEKDAY = re.compile(r"^(\d{1,2})W$")
_LAST_OF_WEEK = re.compile(r"^([1-7]|[A-Za-z]{3})L$")
_NTH_OF_WEEK = re.compile(r"^([1-7]|[A-Za-z]{3})#([1-5])$")


def _error(field: str, text: str, why: str) -> ValueError:
    return ValueError(f"cron {field} field {text!r}: {why}")


def _value(field: str, text: str) -> int:
    names = _NAMES.get(field, {})
    if text.upper() in names:
        return names[text.upper()]
    if not text.isdigit():
        raise _error(field, text, "not a number" + (" or a name" if names else ""))
    low, high = _BOUNDS[field]
    number = int(text)
    if not low <= number <= high:
        raise _error(field, text, f"out of range {low}-{high}")
    return number


def _values(field: str, text: str) -> frozenset[int]:
    """A plain field: a comma-separated list of ``*``, ``a``, ``a-b``, each with ``/step``."""
    low, high = _BOUNDS[field]
    found: set[int] = set()
    for item in text.split(","):
        match = _ITEM.match(item)
        if match is None:
            raise _error(field, item, "not a value, a range or a step")
        span, step_text = match.group(1), match.group(2)
        step = int(step_text) if step_text is not None else 1
        if step < 1:
            raise _error(field, item, "the step must be at least 1")
        if span == "*":
            start, end = low, high
        elif "-" in span:
            first, _, last = span.partition("-")
            start, end = _value(field, first), _value(field, last)
        else:
            start = _value(field, span)
            end = high if step_text is not None else start
        if end < start:  # a range that wraps: FRI-MON, 22-2
            ordered = [*range(start, high + 1), *range(low, end + 1)]
        else:
            ordered = list(range(start, end + 1))
        found.update(ordered[::step])
    return frozenset(found)


@dataclass(frozen=True)
class DayOfMonth:
    days: frozenset[int] = frozenset()
    last: bool = False  # L
    last_weekday: bool = False  # LW
    nearest_weekday: int | None = None  # nW

    def matches(self, year: int, month: int, day: int) -> bool:
        length = calendar.monthrange(year, month)[1]
        if self.last:
            return day == length
        if self.last_weekday:
            return day == _nearest_weekday(year, month, length)
        if self.nearest_weekday is not None:
            wanted = self.nearest_weekday
            return wanted <= length and day == _nearest_weekday(year, month, wanted)
        return day in self.days


@dataclass(frozen=True)
class DayOfWeek:
    days: frozenset[int] = frozenset()  # 1 = SUN ... 7 = SAT
    last_of: int | None = None  # nL: the month's last day n
    nth: tuple[int, int] | None = None  # n#k: the month's k-th day n

    def matches(self, year: int, month: int, day: int) -> bool:
        weekday = aws_weekday(dt.date(year, month, day))
        if self.last_of is not None:
            return weekday == self.last_of and day + 7 > calendar.monthrange(year, month)[1]
        if self.nth is not None:
            wanted, index = self.nth
            return weekday == wanted and (day - 1) // 7 + 1 == index
        return weekday in self.days


def aws_weekday(date: dt.date) -> int:
    """1 = Sunday ... 7 = Saturday, as cron's day-of-week counts."""
    return (date.weekday() + 1) % 7 + 1


def _nearest_weekday(year: int, month: int, day: int) -> int:
    """The weekday (Mon-Fri) nearest ``day`` without leaving the month (cron's ``W``)."""
    length = calendar.monthrange(year, month)[1]
    weekday = dt.date(year, month, day).weekday()  # 5 = Saturday, 6 = Sunday
    if weekday == 5:
        return day - 1 if day > 1 else day + 2
    if weekday == 6:
        return day + 1 if day < length else day - 2
    return day


def _day_of_month(text: str) -> DayOfMonth:
    field = "day-of-month"
    upper = text.upper()
    if upper == "L":
        return DayOfMonth(last=True)
    if upper == "LW":
        return DayOfMonth(last_weekday=True)
    match = _NEAREST_WEEKDAY.match(upper)
    if match:
        return DayOfMonth(nearest_weekday=_value(field, match.group(1)))
    if "L" in upper or "W" in upper:
        raise _error(field, text, "L, LW and nW stand alone (e.g. L, LW, 15W)")
    return DayOfMonth(days=_values(field, text))


def _day_of_week(text: str) -> DayOfWeek:
    field = "day-of-week"
    upper = text.upper()
    if upper == "L":
        return DayOfWeek(days=frozenset({7}))  # L alone: the week's last day, Saturday
    match = _LAST_OF_WEEK.match(upper)
    if match:
        return DayOfWeek(last_of=_value(field, match.group(1)))
    match = _NTH_OF_WEEK.match(upper)
    if match:
        return DayOfWeek(nth=(_value(field, match.group(1)), int(match.group(2))))
    if "#" in upper or (upper.endswith("L") and upper[:-1].isalnum()):
        raise _error(field, text, "use nL (last day n of the month) or n#k (k from 1 to 5)")
    return DayOfWeek(days=_values(field, text))


@dataclass(frozen=True)
class Cron:
    expression: str
    minutes: frozenset[int]
    hours: frozenset[int]
    day_of_month: DayOfMonth | None  # None: ?
    months: frozenset[int]
    day_of_week: DayOfWeek | None  # None: ?
    years: frozenset[int]

    def matches_day(self, year: int, month: int, day: int) -> bool:
        if self.day_of_month is not None:
            return self.day_of_month.matches(year, month, day)
        assert self.day_of_week is not None
        return self.day_of_week.matches(year, month, day)

    def next_after(self, moment: dt.datetime) -> dt.datetime | None:
        """The first firing strictly after ``moment`` (naive means UTC), or None."""
        if moment.tzinfo is None:
            moment = moment.replace(tzinfo=UTC)
        start = moment.astimezone(UTC).replace(second=0, microsecond=0) + dt.timedelta(minutes=1)
        hours, minutes = sorted(self.hours), sorted(self.minutes)
        for year in sorted(y for y in self.years if y >= start.year):
            for month in sorted(self.months):
                if (year, month) < (start.year, start.month):
                    continue
                first = start.day if (year, month) == (start.year, start.month) else 1
                for day in range(first, calendar.monthrange(year, month)[1] + 1):
                    if not self.matches_day(year, month, day):
                        continue
                    found = _first_time(dt.datetime(year, month, day, tzinfo=UTC), start,
                                        hours, minutes)  # fmt: skip
                    if found is not None:
                        return found
        return None


def _first_time(
    day: dt.datetime, start: dt.datetime, hours: list[int], minutes: list[int]
) -> dt.datetime | None:
    for hour in hours:
        for minute in minutes:
            candidate = day.replace(hour=hour, minute=minute)
            if candidate >= start:
                return candidate
    return None


def parse(expression: str) -> Cron:
    """``cron(...)`` parsed; ValueError naming the field (or the form) that is wrong."""
    match = _EXPRESSION.match(expression.strip())
    if match is None:
        raise ValueError(f"{expression!r} is not of the form cron(fields)")
    parts = match.group(1).split()
    if len(parts) != len(FIELDS):
        raise ValueError(
            f"{expression!r} has {len(parts)} fields; cron takes 6: {' '.join(FIELDS)}"
        )
    minutes, hours, dom, month, dow, year = parts
    if (dom == "?") == (dow == "?"):
        raise _error(
            "day-of-month" if dom != "?" else "day-of-week",
            dom if dom != "?" else dow,
            "exactly one of day-of-month and day-of-week must be ? (the other gives the days)",
        )
    for field, text in (("minutes", minutes), ("hours", hours), ("month", month),
                        ("year", year)):  # fmt: skip
        if "?" in text:
            raise _error(field, text, "? is allowed only in day-of-month or day-of-week")
    return Cron(
        expression=expression,
        minutes=_values("minutes", minutes),
        hours=_values("hours", hours),
        day_of_month=None if dom == "?" else _day_of_month(dom),
        months=_values("month", month),
        day_of_week=None if dow == "?" else _day_of_week(dow),
        years=_values("year", year),
    )


def next_after(expression: str, moment: dt.datetime) -> dt.datetime | None:
    return parse(expression).next_after(moment)


class ScaledTimer:
    """The wall-clock (monotonic) times of a cron schedule's firings in scaled local time.

    Local time starts at the wall time the timer is made (``wall``, epoch seconds, seen at the
    monotonic ``mono``) and runs ``1 / scale`` times as fast: the firing at cron time ``t`` is
    due ``(t - wall) * scale`` seconds after ``mono``. With ``scale`` 1 that is ``t`` itself.
    Two firings are at least ``min_gap`` seconds of wall time apart (a scale of 0 must not
    fire in a busy loop); a timer that fell behind skips to its next firing still ahead.
    """

    def __init__(
        self, cron: Cron, scale: float, wall: float, mono: float, min_gap: float = 0.05
    ) -> None:
        self.cron = cron
        self.scale = scale
        self.wall = wall
        self.mono = mono
        self.min_gap = min_gap
        self.next: dt.datetime | None = cron.next_after(dt.datetime.fromtimestamp(wall, UTC))
        self._earliest = mono

    def due(self) -> float | None:
        """The monotonic time of the next firing, None when there is none."""
        if self.next is None:
            return None
        return max(self.mono + (self.next.timestamp() - self.wall) * self.scale, self._earliest)

    def advance(self, now: float) -> None:
        """The firing at ``self.next`` happened at monotonic ``now``: move to the next one."""
        self._earliest = now + self.min_gap
        while self.next is not None:
            self.next = self.cron.next_after(self.next)
            due = self.due()
            if due is None or due > now:
                return
