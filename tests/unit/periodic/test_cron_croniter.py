"""croniter as an independent oracle for the schedule dialect: same next and previous runs.

Every expression the dialect accepts (random ones from tests/support/cron_cases.py, and the
macros) must give the same next occurrence after, and the same latest occurrence at or before,
a random start time as croniter, a maintained cron library with its own parser and its own date
arithmetic. croniter speaks a slightly different dialect; the known differences are listed in
``KNOWN_DIFFERENCES`` (and in docs/periodic-tasks.md). croniter can say the stock meaning of each
in other words, so the oracle hands it those words (:func:`croniter_expression`) and no case is
left out. Each difference has a test of its own showing that it is real, so the list cannot go
stale.

croniter is a test dependency only; the daemon never imports it.
"""

from __future__ import annotations

import re
from datetime import UTC, datetime, timedelta

import pytest
from croniter import croniter
from hypothesis import HealthCheck, given, reject, settings
from hypothesis import strategies as st

from asqsd.periodic.schedule import MACROS, CronError, Schedule, parse_schedule
from tests.support.cron_cases import MONTHS, WEEKDAYS, Case, cases, times

ORACLE_SETTINGS = settings(
    max_examples=300, deadline=None, suppress_health_check=[HealthCheck.too_slow], database=None
)

_NAME_VALUES = {name: number for number, name in enumerate(MONTHS, 1)} | {
    name: number for number, name in enumerate(WEEKDAYS)
}
_RANGE = re.compile(r"(?P<first>[0-9a-z]+)-(?P<last>[0-9a-z]+)(?:/[0-9]+)?", re.IGNORECASE)

KNOWN_DIFFERENCES = {
    "sixth-field": (
        "A sixth token is ignored by the stock parser (so `*/30 * * * * *` runs every 30 minutes); "
        "croniter reads it as seconds. The oracle gives croniter the first five fields only."
    ),
    "equal-range": (
        "An equal range `a-a` (or `a-a/n`) is the single value a for the stock parser; croniter "
        "widens it to the whole field (`5-5` in the minute field fires every minute). The oracle "
        "gives croniter the single value instead."
    ),
    "day-field-star": (
        "When both day fields are restricted, the stock parser fires on a day matching either, and "
        "any day-field text other than a bare `*` is a restriction. croniter takes a day field for "
        "a bare `*` when one of its list elements is `*` (`*,5`), or when it covers its whole range "
        "(`*/1`, `1-31`, `0-6`) and the other day field contains a `*`; then only the other field "
        "decides. When both day fields are restricted the oracle spells every `*` in them as the "
        "field's range (`1-31`, `0-6`), which croniter reads as a restriction."
    ),
}


# ---------------------------------------------------------------------------- the oracle


def croniter_expression(expression: str) -> str:
    """The stock meaning of ``expression`` in croniter's words (the known differences applied)."""
    fields = [
        ",".join(_single_if_equal(element) for element in field.split(","))
        for field in expression.split()[:5]  # sixth-field
    ]
    if fields[2] != "*" and fields[4] != "*":
        # day-field-star: with no "*" left in either day field, croniter sees two restrictions.
        fields[2] = fields[2].replace("*", "1-31")
        fields[4] = fields[4].replace("*", "0-6")
    return " ".join(fields)


def _single_if_equal(element: str) -> str:
    # equal-range: "a-a" and "a-a/n" are the single value a in the stock dialect.
    match = _RANGE.fullmatch(element)
    if match is None:
        return element
    first, last = (_value_of(match[group]) for group in ("first", "last"))
    return str(first) if first == last else element


def _value_of(token: str) -> int:
    return int(token) if token.isdigit() else _NAME_VALUES[token.lower()]


def croniter_next(expression: str, t: datetime) -> datetime:
    result = croniter(expression, t).get_next(datetime)
    assert isinstance(result, datetime)
    return result


def croniter_previous_at_or_before(expression: str, t: datetime) -> datetime:
    """croniter's get_prev is strictly before its start: start one minute after t's minute."""
    start = t.replace(second=0, microsecond=0) + timedelta(minutes=1)
    result = croniter(expression, start).get_prev(datetime)
    assert isinstance(result, datetime)
    return result


def assert_same_runs(schedule: Schedule, expression: str, t: datetime) -> None:
    assert schedule.next_after(t) == croniter_next(expression, t), (schedule.expression, expression, t)
    assert schedule.previous_at_or_before(t) == croniter_previous_at_or_before(expression, t), (
        schedule.expression,
        expression,
        t,
    )


# ---------------------------------------------------------------------------- properties


@ORACLE_SETTINGS
@given(cases(), times)
def test_next_and_previous_equal_croniters(case: Case, t: datetime) -> None:
    """Every accepted random expression: the same next and previous runs as croniter."""
    try:
        schedule = parse_schedule(case.expression)
    except CronError:
        reject()  # can never fire (e.g. "0 0 31 2 *"): refused, as test_cron_properties checks
    assert_same_runs(schedule, croniter_expression(case.expression), t)


@settings(max_examples=50, deadline=None, database=None)
@given(st.sampled_from(sorted(MACROS)), times)
def test_macros_equal_croniters(macro: str, t: datetime) -> None:
    """``@hourly`` ... ``@yearly``: croniter knows the same macros, unchanged."""
    assert_same_runs(parse_schedule(macro), macro, t)


# ---------------------------------------------------------------------------- the differences are real

_T = datetime(2024, 6, 5, 12, 0, 30, tzinfo=UTC)  # a Wednesday


@pytest.mark.parametrize(
    ("name", "expression", "ours", "croniters"),
    [
        ("sixth-field", "*/30 * * * * *", "2024-06-05 12:30", "2024-06-05 12:00:31"),
        ("equal-range", "5-5 * * * *", "2024-06-05 12:05", "2024-06-05 12:01"),
        ("equal-range", "0 0 * * 7-7", "2024-06-09 00:00", "2024-06-06 00:00"),
        ("day-field-star", "0 0 */1 * */3", "2024-06-06 00:00", "2024-06-08 00:00"),
        ("day-field-star", "0 0 */10 * 0-6", "2024-06-06 00:00", "2024-06-11 00:00"),
        ("day-field-star", "0 0 *,5 * mon", "2024-06-06 00:00", "2024-06-10 00:00"),
    ],
)
def test_known_difference_is_real(name: str, expression: str, ours: str, croniters: str) -> None:
    """Each listed difference: asqsd keeps the stock meaning, croniter (as installed) another."""
    assert name in KNOWN_DIFFERENCES
    expected_ours = datetime.fromisoformat(ours).replace(tzinfo=UTC)
    expected_croniters = datetime.fromisoformat(croniters).replace(tzinfo=UTC)
    assert parse_schedule(expression).next_after(_T) == expected_ours
    assert croniter_next(expression, _T) == expected_croniters


@pytest.mark.parametrize(
    ("expression", "meant"),
    [
        ("5-5 * * * *", "5 * * * *"),
        ("0 0 * * 7-7", "0 0 * * 7"),
        ("0 0 * Sep-9/10 *", "0 0 * 9 *"),
        ("*/30 * * * * 0", "*/30 * * * *"),
        ("1-5,9 */2 */3,1-31 * */2", "1-5,9 */2 1-31/3,1-31 * 0-6/2"),
        ("*/5 * */3 * *", "*/5 * */3 * *"),
        ("0 0 * * *,mon", "0 0 * * *,mon"),
    ],
)
def test_croniter_expression_rewrites_only_the_differences(expression: str, meant: str) -> None:
    """The oracle rewrites equal ranges, the sixth token and stars in two restricted day fields only."""
    assert croniter_expression(expression) == meant
