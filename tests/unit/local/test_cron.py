"""AWS cron expressions (sfn_mlops.local.cron): EventBridge's fields and rules, next firings
checked by hand against the calendar (2026-03-04 is a Wednesday), and scaled timers."""

from __future__ import annotations

import datetime as dt

import pytest

from sfn_mlops.local import cron

UTC = dt.timezone.utc
START = dt.datetime(2026, 3, 4, 10, 30, tzinfo=UTC)  # Wednesday


def firings(expression: str, count: int = 4, start: dt.datetime = START) -> list[str]:
    parsed = cron.parse(expression)
    found, moment = [], start
    for _ in range(count):
        following = parsed.next_after(moment)
        assert following is not None
        found.append(f"{following:%a %Y-%m-%d %H:%M}")
        moment = following
    return found


@pytest.mark.parametrize(
    ("expression", "expected"),
    [
        (
            "cron(0 * ? * * *)",  # hourly
            ["Wed 2026-03-04 11:00", "Wed 2026-03-04 12:00", "Wed 2026-03-04 13:00",
             "Wed 2026-03-04 14:00"],
        ),
        (
            "cron(15 10 ? * 6L 2026-2027)",  # the last Friday of each month, 10:15
            ["Fri 2026-03-27 10:15", "Fri 2026-04-24 10:15", "Fri 2026-05-29 10:15",
             "Fri 2026-06-26 10:15"],
        ),
        (
            "cron(0 18 ? * MON-FRI *)",  # weekdays at 18:00
            ["Wed 2026-03-04 18:00", "Thu 2026-03-05 18:00", "Fri 2026-03-06 18:00",
             "Mon 2026-03-09 18:00"],
        ),
        (
            "cron(0 8 1W * ? *)",  # the weekday nearest the 1st (Mar 1 is a Sunday: Mon 2nd)
            ["Wed 2026-04-01 08:00", "Fri 2026-05-01 08:00", "Mon 2026-06-01 08:00",
             "Wed 2026-07-01 08:00"],
        ),
        (
            "cron(0 0 ? * 3#2 *)",  # the second Tuesday
            ["Tue 2026-03-10 00:00", "Tue 2026-04-14 00:00", "Tue 2026-05-12 00:00",
             "Tue 2026-06-09 00:00"],
        ),
        (
            "cron(0 0 LW * ? *)",  # the last weekday (May 31 is a Sunday: Fri 29th)
            ["Tue 2026-03-31 00:00", "Thu 2026-04-30 00:00", "Fri 2026-05-29 00:00",
             "Tue 2026-06-30 00:00"],
        ),
        (
            "cron(0 0 L FEB ? 2027-2028)",  # the last day of February, leap year included
            ["Sun 2027-02-28 00:00", "Tue 2028-02-29 00:00"],
        ),
        (
            "cron(0/20 9-10 ? * sat,SUN *)",  # names in any case, lists, steps, ranges
            ["Sat 2026-03-07 09:00", "Sat 2026-03-07 09:20", "Sat 2026-03-07 09:40",
             "Sat 2026-03-07 10:00"],
        ),
        (
            "cron(0 23-1 ? * FRI-MON *)",  # ranges that wrap: hours and days
            ["Fri 2026-03-06 00:00", "Fri 2026-03-06 01:00", "Fri 2026-03-06 23:00",
             "Sat 2026-03-07 00:00"],
        ),
        (
            "cron(30 12 15W * ? *)",  # Mar 15 is a Sunday: Mon 16th; Aug 15 a Saturday: Fri 14th
            ["Mon 2026-03-16 12:30", "Wed 2026-04-15 12:30", "Fri 2026-05-15 12:30",
             "Mon 2026-06-15 12:30"],
        ),
        (
            "cron(0 0 ? * L *)",  # L alone in day-of-week: Saturday
            ["Sat 2026-03-07 00:00", "Sat 2026-03-14 00:00", "Sat 2026-03-21 00:00",
             "Sat 2026-03-28 00:00"],
        ),
    ],
)  # fmt: skip
def test_next_firings(expression: str, expected: list[str]) -> None:
    assert firings(expression, len(expected)) == expected


def test_next_after_is_strictly_after_and_minute_aligned() -> None:
    hourly = cron.parse("cron(0 * ? * * *)")
    on_the_hour = dt.datetime(2026, 3, 4, 11, 0, tzinfo=UTC)
    assert hourly.next_after(on_the_hour) == dt.datetime(2026, 3, 4, 12, 0, tzinfo=UTC)
    assert hourly.next_after(on_the_hour - dt.timedelta(microseconds=1)) == on_the_hour
    naive = dt.datetime(2026, 3, 4, 10, 30)  # naive means UTC
    assert hourly.next_after(naive) == dt.datetime(2026, 3, 4, 11, 0, tzinfo=UTC)
    aware = dt.datetime(2026, 3, 4, 12, 30, tzinfo=dt.timezone(dt.timedelta(hours=2)))
    assert hourly.next_after(aware) == dt.datetime(2026, 3, 4, 11, 0, tzinfo=UTC)


def test_31w_and_years_that_are_over() -> None:
    # April has no 31st; May 31 is a Sunday: Friday 29th
    assert firings("cron(0 0 31W * ? *)", 2) == ["Tue 2026-03-31 00:00", "Fri 2026-05-29 00:00"]
    assert cron.next_after("cron(0 0 1 1 ? 2026)", START) is None
    fifth_monday = dt.datetime(2026, 3, 30, tzinfo=UTC)  # Mondays: 2, 9, 16, 23 and 30
    assert cron.next_after("cron(0 0 ? * 2#5 2026)", START) == fifth_monday


@pytest.mark.parametrize(
    ("expression", "field"),
    [
        ("cron(60 * ? * * *)", "minutes"),
        ("cron(0 24 ? * * *)", "hours"),
        ("cron(0 ? ? * * *)", "hours"),
        ("cron(0 0 32 * ? *)", "day-of-month"),
        ("cron(0 0 * * * *)", "day-of-month"),  # neither is ?
        ("cron(0 0 ? * ? *)", "day-of-week"),  # both are ?
        ("cron(0 0 L-2 * ? *)", "day-of-month"),
        ("cron(0 0 ? 13 * *)", "month"),
        ("cron(0 0 ? JANUARY * *)", "month"),
        ("cron(0 0 ? * 8 *)", "day-of-week"),
        ("cron(0 0 ? * 2#6 *)", "day-of-week"),
        ("cron(0 0 ? * -1 *)", "day-of-week"),
        ("cron(0 0 ? * * 1969)", "year"),
        ("cron(*/0 * ? * * *)", "minutes"),
    ],
)
def test_invalid_expressions_name_the_field(expression: str, field: str) -> None:
    with pytest.raises(ValueError, match=f"cron {field} field"):
        cron.parse(expression)


@pytest.mark.parametrize(
    "expression", ["cron(0 12 * *)", "cron(0 0 1 * ? * *)", "rate(5 minutes)", "0 * ? * * *"]
)
def test_invalid_forms(expression: str) -> None:
    with pytest.raises(ValueError, match="cron"):
        cron.parse(expression)


def test_weekday_numbers_are_cron_s() -> None:
    assert [cron.aws_weekday(dt.date(2026, 3, day)) for day in range(1, 8)] == [
        1, 2, 3, 4, 5, 6, 7  # Sunday 1st ... Saturday 7th
    ]  # fmt: skip


def test_a_scaled_timer_runs_local_time_faster_than_the_wall() -> None:
    wall = START.timestamp()  # 10:30
    timer = cron.ScaledTimer(cron.parse("cron(0 * ? * * *)"), 0.001, wall, mono=100.0)
    assert timer.next == dt.datetime(2026, 3, 4, 11, 0, tzinfo=UTC)
    assert timer.due() == pytest.approx(100.0 + 1800 * 0.001)  # half an hour: 1.8 s
    timer.advance(101.8)
    assert timer.next == dt.datetime(2026, 3, 4, 12, 0, tzinfo=UTC)
    assert timer.due() == pytest.approx(100.0 + 5400 * 0.001)  # every 3.6 s from then on


def test_a_timer_that_fell_behind_skips_ahead_and_never_busy_loops() -> None:
    timer = cron.ScaledTimer(cron.parse("cron(* * ? * * *)"), 0.001, START.timestamp(), 0.0)
    timer.advance(10.0)  # 10 s of wall time: 10,000 minutes of local time went by
    due = timer.due()
    assert due is not None and due > 10.0
    at_zero = cron.ScaledTimer(cron.parse("cron(0 * ? * * *)"), 0.0, START.timestamp(), 5.0)
    assert at_zero.due() == 5.0
    at_zero.advance(5.0)
    assert at_zero.due() == pytest.approx(5.05)  # min_gap apart
