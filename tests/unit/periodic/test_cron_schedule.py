"""The cron schedule dialect and next/previous runs."""

from __future__ import annotations

import time
from datetime import UTC, datetime, timedelta, timezone

import pytest

from asqsd.periodic.schedule import CronError, Schedule, parse_schedule


def utc(text: str) -> datetime:
    """``YYYY-MM-DD HH:MM`` (or with ``:SS``) as an aware UTC datetime."""
    fmt = "%Y-%m-%d %H:%M:%S" if text.count(":") == 2 else "%Y-%m-%d %H:%M"
    return datetime.strptime(text, fmt).replace(tzinfo=UTC)


def problem_of(expression: str) -> str:
    with pytest.raises(CronError) as caught:
        parse_schedule(expression)
    assert len(caught.value.problems) == 1
    return caught.value.problems[0]


# Every example from parse-cron's own spec (CronParser#next), read as UTC.
STOCK_NEXT = [
    ("* * * * *", "2011-08-15 12:00", "2011-08-15 12:01"),
    ("* * * * *", "2011-08-15 02:25", "2011-08-15 02:26"),
    ("* * * * *", "2011-08-15 02:59", "2011-08-15 03:00"),
    ("*/15 * * * *", "2011-08-15 02:02", "2011-08-15 02:15"),
    ("*/15,25 * * * *", "2011-08-15 02:15", "2011-08-15 02:25"),
    ("30 3,6,9 * * *", "2011-08-15 02:15", "2011-08-15 03:30"),
    ("30 9 * * *", "2011-08-15 10:15", "2011-08-16 09:30"),
    ("30 9 * * *", "2011-08-31 10:15", "2011-09-01 09:30"),
    ("30 9 * * *", "2011-09-30 10:15", "2011-10-01 09:30"),
    ("0 9 * * *", "2011-12-31 10:15", "2012-01-01 09:00"),
    ("* * 12 * *", "2010-04-15 10:15", "2010-05-12 00:00"),
    ("* * * * 1,3", "2010-04-15 10:15", "2010-04-19 00:00"),
    ("* * * * MON,WED", "2010-04-15 10:15", "2010-04-19 00:00"),
    ("0 0 1 1 *", "2010-04-15 10:15", "2011-01-01 00:00"),
    ("0 0 * * 1", "2011-08-01 00:00", "2011-08-08 00:00"),
    ("0 0 * * 1", "2011-07-25 00:00", "2011-08-01 00:00"),
    ("45 23 7 3 *", "2011-01-01 00:00", "2011-03-07 23:45"),
    ("0 0 1 jun *", "2013-05-14 11:20", "2013-06-01 00:00"),
    ("0 0 1 may,jul *", "2013-05-14 15:00", "2013-07-01 00:00"),
    ("0 0 1 MAY,JUL *", "2013-05-14 15:00", "2013-07-01 00:00"),
    ("40 5 * * *", "2014-02-01 15:56", "2014-02-02 05:40"),
    ("0 5 * * 1", "2014-02-01 15:56", "2014-02-03 05:00"),
    ("10 8 15 * *", "2014-02-01 15:56", "2014-02-15 08:10"),
    ("50 6 * * 1", "2014-02-01 15:56", "2014-02-03 06:50"),
    ("1 2 * apr mOn", "2014-02-01 15:56", "2014-04-07 02:01"),
    ("1 2 3 4 7", "2014-02-01 15:56", "2014-04-03 02:01"),
    ("1 2 3 4 7", "2014-04-04 15:56", "2014-04-06 02:01"),
    ("1-20/3 * * * *", "2014-02-01 15:56", "2014-02-01 16:01"),
    ("1,2,3 * * * *", "2014-02-01 15:56", "2014-02-01 16:01"),
    ("1-9,15-30 * * * *", "2014-02-01 15:56", "2014-02-01 16:01"),
    ("1-9/3,15-30/4 * * * *", "2014-02-01 15:56", "2014-02-01 16:01"),
    ("1 2 3 jan mon", "2014-02-01 15:56", "2015-01-03 02:01"),
    ("1 2 3 4 mON", "2014-02-01 15:56", "2014-04-03 02:01"),
    ("1 2 3 jan 5", "2014-02-01 15:56", "2015-01-02 02:01"),
    ("@yearly", "2014-02-01 15:56", "2015-01-01 00:00"),
    ("@annually", "2014-02-01 15:56", "2015-01-01 00:00"),
    ("@monthly", "2014-02-01 15:56", "2014-03-01 00:00"),
    ("@weekly", "2014-02-01 15:56", "2014-02-02 00:00"),
    ("@daily", "2014-02-01 15:56", "2014-02-02 00:00"),
    ("@midnight", "2014-02-01 15:56", "2014-02-02 00:00"),
    ("@hourly", "2014-02-01 15:56", "2014-02-01 16:00"),
    ("*/3 * * * *", "2014-02-01 15:56", "2014-02-01 15:57"),
    ("0 5 * 2,3 *", "2014-02-01 15:56", "2014-02-02 05:00"),
    ("15-59/15 * * * *", "2014-02-01 15:56", "2014-02-01 16:15"),
    ("15-59/15 * * * *", "2014-02-01 15:00", "2014-02-01 15:15"),
    ("15-59/15 * * * *", "2014-02-01 15:01", "2014-02-01 15:15"),
    ("15-59/15 * * * *", "2014-02-01 15:16", "2014-02-01 15:30"),
    ("15-59/15 * * * *", "2014-02-01 15:26", "2014-02-01 15:30"),
    ("15-59/15 * * * *", "2014-02-01 15:36", "2014-02-01 15:45"),
    ("15-59/15 * * * *", "2014-02-01 15:45", "2014-02-01 16:15"),
    ("15-59/15 * * * *", "2014-02-01 15:46", "2014-02-01 16:15"),
]

# parse-cron's CronParser#last examples. Stock "last" is strictly before the minute, which is
# previous_at_or_before(now - 1 minute) for the whole-minute times used here.
STOCK_LAST = [
    ("* * * * *", "2011-08-15 12:00", "2011-08-15 11:59"),
    ("* * * * *", "2011-08-15 02:25", "2011-08-15 02:24"),
    ("* * * * *", "2011-08-15 03:00", "2011-08-15 02:59"),
    ("*/15 * * * *", "2011-08-15 02:02", "2011-08-15 02:00"),
    ("*/15,45 * * * *", "2011-08-15 02:55", "2011-08-15 02:45"),
    ("*/15,25 * * * *", "2011-08-15 02:35", "2011-08-15 02:30"),
    ("30 3,6,9 * * *", "2011-08-15 02:15", "2011-08-14 09:30"),
    ("30 9 * * *", "2011-08-15 10:15", "2011-08-15 09:30"),
    ("30 9 * * *", "2011-09-01 08:15", "2011-08-31 09:30"),
    ("30 9 * * *", "2011-10-01 08:15", "2011-09-30 09:30"),
    ("0 9 * * *", "2012-01-01 00:15", "2011-12-31 09:00"),
    ("* * 12 * *", "2010-04-15 10:15", "2010-04-12 23:59"),
    ("* * * * 1,3", "2010-04-15 10:15", "2010-04-14 23:59"),
    ("* * * * MON,WED", "2010-04-15 10:15", "2010-04-14 23:59"),
    ("0 0 1 1 *", "2010-04-15 10:15", "2010-01-01 00:00"),
    ("0 0 1 jun *", "2013-05-14 11:20", "2012-06-01 00:00"),
    ("0 0 1 may,jul *", "2013-05-14 15:00", "2013-05-01 00:00"),
    ("0 0 1 MAY,JUL *", "2013-05-14 15:00", "2013-05-01 00:00"),
    ("40 5 * * *", "2014-02-01 15:56", "2014-02-01 05:40"),
    ("0 5 * * 1", "2014-02-01 15:56", "2014-01-27 05:00"),
    ("10 8 15 * *", "2014-02-01 15:56", "2014-01-15 08:10"),
    ("50 6 * * 1", "2014-02-01 15:56", "2014-01-27 06:50"),
    ("1 2 * apr mOn", "2014-02-01 15:56", "2013-04-29 02:01"),
    ("1 2 3 4 7", "2014-02-01 15:56", "2013-04-28 02:01"),
    ("1 2 3 4 7", "2014-04-04 15:56", "2014-04-03 02:01"),
    ("1-20/3 * * * *", "2014-02-01 15:56", "2014-02-01 15:19"),
    ("1,2,3 * * * *", "2014-02-01 15:56", "2014-02-01 15:03"),
    ("1-9,15-30 * * * *", "2014-02-01 15:56", "2014-02-01 15:30"),
    ("1-9/3,15-30/4 * * * *", "2014-02-01 15:56", "2014-02-01 15:27"),
    ("1 2 3 jan mon", "2014-02-01 15:56", "2014-01-27 02:01"),
    ("1 2 3 4 mON", "2014-02-01 15:56", "2013-04-29 02:01"),
    ("1 2 3 jan 5", "2014-02-01 15:56", "2014-01-31 02:01"),
    ("@yearly", "2014-02-01 15:56", "2014-01-01 00:00"),
    ("@annually", "2014-02-01 15:56", "2014-01-01 00:00"),
    ("@monthly", "2014-02-01 15:56", "2014-02-01 00:00"),
    ("@weekly", "2014-02-01 15:56", "2014-01-26 00:00"),
    ("@daily", "2014-02-01 15:56", "2014-02-01 00:00"),
    ("@midnight", "2014-02-01 15:56", "2014-02-01 00:00"),
    ("@hourly", "2014-02-01 15:56", "2014-02-01 15:00"),
    ("*/3 * * * *", "2014-02-01 15:56", "2014-02-01 15:54"),
    ("0 5 * 2,3 *", "2014-02-01 15:56", "2014-02-01 05:00"),
    ("15-59/15 * * * *", "2014-02-01 15:56", "2014-02-01 15:45"),
    ("15-59/15 * * * *", "2014-02-01 15:00", "2014-02-01 14:45"),
    ("15-59/15 * * * *", "2014-02-01 15:01", "2014-02-01 14:45"),
    ("15-59/15 * * * *", "2014-02-01 15:16", "2014-02-01 15:15"),
    ("15-59/15 * * * *", "2014-02-01 15:26", "2014-02-01 15:15"),
    ("15-59/15 * * * *", "2014-02-01 15:36", "2014-02-01 15:30"),
    ("15-59/15 * * * *", "2014-02-01 15:45", "2014-02-01 15:30"),
    ("15-59/15 * * * *", "2014-02-01 15:46", "2014-02-01 15:45"),
]


@pytest.mark.parametrize(("expression", "now", "expected"), STOCK_NEXT)
def test_next_after_matches_stock_parser_examples(expression: str, now: str, expected: str) -> None:
    assert parse_schedule(expression).next_after(utc(now)) == utc(expected)


@pytest.mark.parametrize(("expression", "now", "expected"), STOCK_LAST)
def test_previous_matches_stock_last_examples(expression: str, now: str, expected: str) -> None:
    schedule = parse_schedule(expression)
    assert schedule.previous_at_or_before(utc(now) - timedelta(minutes=1)) == utc(expected)


# Accepted forms, one per grammar rule, with the values each field expands to.
ALL_MINUTES = tuple(range(60))
ALL_HOURS = tuple(range(24))
ALL_DOMS = tuple(range(1, 32))
ALL_MONTHS = tuple(range(1, 13))
ALL_DOWS = tuple(range(7))


@pytest.mark.parametrize(
    ("expression", "field", "values"),
    [
        ("* * * * *", "minutes", ALL_MINUTES),
        ("*/20 * * * *", "minutes", (0, 20, 40)),
        ("*/25 * * * *", "minutes", (0, 25, 50)),
        ("*/90 * * * *", "minutes", (0,)),  # step larger than the field: only the start
        ("7 * * * *", "minutes", (7,)),
        ("07 * * * *", "minutes", (7,)),  # leading zeros are just digits
        ("10-15 * * * *", "minutes", (10, 11, 12, 13, 14, 15)),
        ("10-40/10 * * * *", "minutes", (10, 20, 30, 40)),
        ("5-5 * * * *", "minutes", (5,)),
        ("1,30,1,59 * * * *", "minutes", (1, 30, 59)),
        ("0-4/2,50-59/3,7 * * * *", "minutes", (0, 2, 4, 7, 50, 53, 56, 59)),
        ("0 */6 * * *", "hours", (0, 6, 12, 18)),
        ("0 23 * * *", "hours", (23,)),
        ("0 0 */10 * *", "days_of_month", (1, 11, 21, 31)),
        ("0 0 31 * *", "days_of_month", (31,)),
        ("0 0 1 */3 *", "months", (1, 4, 7, 10)),
        ("0 0 1 jan,Dec *", "months", (1, 12)),
        ("0 0 1 FEB-apr *", "months", (2, 3, 4)),
        ("0 0 1 jan-dec/6 *", "months", (1, 7)),
        ("0 0 * * */2", "days_of_week", (0, 2, 4, 6)),  # "*" means 0-6, never 7
        ("0 0 * * 7", "days_of_week", (0,)),
        ("0 0 * * 0,7", "days_of_week", (0,)),
        ("0 0 * * 5-7", "days_of_week", (0, 5, 6)),
        ("0 0 * * sun", "days_of_week", (0,)),
        ("0 0 * * MON-FRI", "days_of_week", (1, 2, 3, 4, 5)),
        ("0 0 * * Sat,sun", "days_of_week", (0, 6)),
        ("0 0 * * 0-6/3", "days_of_week", (0, 3, 6)),
    ],
)
def test_accepted_field_forms(expression: str, field: str, values: tuple[int, ...]) -> None:
    assert getattr(parse_schedule(expression), field) == values


@pytest.mark.parametrize(
    ("macro", "equivalent"),
    [
        ("@yearly", "0 0 1 1 *"),
        ("@annually", "0 0 1 1 *"),
        ("@monthly", "0 0 1 * *"),
        ("@weekly", "0 0 * * 0"),
        ("@daily", "0 0 * * *"),
        ("@midnight", "0 0 * * *"),
        ("@hourly", "0 * * * *"),
    ],
)
def test_macros_expand(macro: str, equivalent: str) -> None:
    expanded = parse_schedule(macro)
    plain = parse_schedule(equivalent)
    assert expanded.expression == macro
    fields = (
        "minutes",
        "hours",
        "days_of_month",
        "months",
        "days_of_week",
        "dom_restricted",
        "dow_restricted",
    )
    assert all(getattr(expanded, f) == getattr(plain, f) for f in fields)


@pytest.mark.parametrize(
    ("expression", "message"),
    [
        # token count
        ("", "is empty"),
        ("   ", "is empty"),
        ("* * * *", "expected 5 fields"),
        ("*", "got 1"),
        ("* * * * * * *", "got 7"),
        # steps
        ("5/10 * * * *", 'a step needs a range: write "5-59/10" or "*/10"'),
        ("0 0 * * 1/2", 'write "1-6/2"'),
        ("*/0 * * * *", "step must be >= 1"),
        ("0-30/0 * * * *", "step must be >= 1"),
        ("*/ * * * *", "step is missing"),
        ("*/x * * * *", "invalid element"),
        ("*-5 * * * *", "invalid element"),
        ("*/5/5 * * * *", "invalid element"),
        ("1-2-3 * * * *", "invalid element"),
        # unsupported Quartz-style characters
        ("0 0 L * *", '"L" and "W" are not supported'),
        ("0 0 15W * *", '"L" and "W" are not supported'),
        ("0 0 LW * *", '"L" and "W" are not supported'),
        ("0 0 * * 5L", '"L" and "W" are not supported'),
        ("0 0 * * 1#2", '"#" (nth weekday of the month) is not supported'),
        ("0 0 ? * 1", '"?" is not supported'),
        ("0 0 * * ?", '"?" is not supported'),
        # ranges of values
        ("60 * * * *", "60 is out of range 0-59 (minute field"),
        ("0 24 * * *", "24 is out of range 0-23 (hour field"),
        ("0 0 0 * *", "0 is out of range 1-31 (day-of-month field"),
        ("0 0 32 * *", "32 is out of range 1-31"),
        ("0 0 1 0 *", "0 is out of range 1-12 (month field"),
        ("0 0 1 13 *", "13 is out of range 1-12"),
        ("0 0 * * 8", "8 is out of range 0-7 (day-of-week field"),
        ("0-60 * * * *", "60 is out of range 0-59"),
        ("99999999999999999999 * * * *", "out of range 0-59"),
        ("30-10 * * * *", "range 30-10 is reversed"),
        ("0 0 * * fri-mon", "range fri-mon is reversed"),
        ("0 0 1 dec-jan *", "range dec-jan is reversed"),
        # lists
        ("1, * * * *", "empty list element"),
        (",1 * * * *", "empty list element"),
        ("1,,2 * * * *", "empty list element"),
        # names
        ("0 0 1 january *", 'unknown name "january"'),
        ("0 0 * * monday", 'unknown name "monday"'),
        ("0 0 1 mon *", '"mon" is a day-of-week name, not allowed in the month field'),
        ("0 0 * * jan", '"jan" is a month name, not allowed in the day-of-week field'),
        ("mon * * * *", '"mon" is a day-of-week name, not allowed in the minute field'),
        ("0 x * * *", '"x" is not a number (hour field "x")'),
        # odd characters
        ("0\u00a00 * * * *", "non-ASCII"),  # a no-break space does not separate fields
        ("0 0 * * ١", "non-ASCII"),  # Arabic-Indic digit one
        ("-1 * * * *", "invalid element"),
        ("+1 * * * *", "invalid element"),
        # macros
        ("@reboot", "@reboot is not supported"),
        ("@every 5m", "unknown macro"),
        ("@Daily", "unknown macro (macros are lower-case"),
        ("@", "unknown macro"),
        ("@daily 0", "unknown macro"),
        # schedules that can never fire
        ("0 0 30 2 *", "day-of-month 30 never occurs in February, so it would never run"),
        ("0 0 30,31 feb *", "day-of-month 30,31 never occurs in February"),
        ("0 0 31 4,6,9,11 *", "never occurs in April, June, September, November"),
        ("0 0 31 */2 4", None),  # accepted: the day-of-week restriction can match any month
    ],
)
def test_rejected_forms(expression: str, message: str | None) -> None:
    if message is None:
        parse_schedule(expression)
        return
    problem = problem_of(expression)
    assert message in problem
    assert problem.startswith("schedule ")


def test_problem_names_expression_field_and_reason() -> None:
    assert problem_of("*/0 * * * *") == 'schedule "*/0 * * * *": step must be >= 1 (minute field "*/0")'


def test_non_string_is_a_cron_error() -> None:
    with pytest.raises(CronError, match="must be a string"):
        parse_schedule(5)  # type: ignore[arg-type]


def test_sixth_token_is_ignored() -> None:
    six = parse_schedule("*/30 * * * * *")
    five = parse_schedule("*/30 * * * *")
    assert six.minutes == five.minutes == (0, 30)  # "every 30 minutes", not seconds
    assert parse_schedule("0 12 * * * garbage!").next_after(utc("2020-01-01 00:00")) == utc(
        "2020-01-01 12:00"
    )
    assert parse_schedule("0 12 * * * 2099").hours == (12,)


def test_fields_may_be_separated_by_any_ascii_whitespace() -> None:
    schedule = parse_schedule(" \t0\t12  * *\n*  ")
    assert (schedule.minutes, schedule.hours) == ((0,), (12,))
    assert schedule.expression == " \t0\t12  * *\n*  "  # kept as written


@pytest.mark.parametrize(
    ("expression", "now", "expected"),
    [
        # month and year boundaries
        ("0 0 * * *", "2023-01-31 23:59", "2023-02-01 00:00"),
        ("59 23 31 12 *", "2023-12-31 23:59", "2024-12-31 23:59"),
        ("0 0 1 * *", "2023-12-15 08:00", "2024-01-01 00:00"),
        ("0 0 31 * *", "2023-01-31 00:00", "2023-03-31 00:00"),  # skips February
        ("0 0 31 * *", "2023-05-31 12:00", "2023-07-31 00:00"),  # skips June
        ("0 12 30 * *", "2023-01-30 12:00", "2023-03-30 12:00"),
        ("*/20 * * * *", "2023-12-31 23:45", "2024-01-01 00:00"),
        ("0-50 * * * *", "2024-01-01 00:55", "2024-01-01 01:00"),  # carry from minute to hour
        ("0-50 * * * *", "2024-01-01 23:55", "2024-01-02 00:00"),  # ... and on to the day
        ("0 0 * * *", "2024-01-01 00:30", "2024-01-02 00:00"),
        ("*/33 */11 * * *", "2024-01-01 22:40", "2024-01-02 00:00"),
        ("0 0 1 jan *", "2023-01-01 00:00", "2024-01-01 00:00"),
        # leap years
        ("0 0 29 2 *", "2023-03-01 00:00", "2024-02-29 00:00"),
        ("0 0 29 2 *", "2024-02-29 00:00", "2028-02-29 00:00"),
        ("0 0 29 2 *", "2097-01-01 00:00", "2104-02-29 00:00"),  # 2100 is not a leap year
        ("0 0 29 2 *", "1999-01-01 00:00", "2000-02-29 00:00"),  # 2000 is
        ("0 0 * 2 *", "2024-02-28 12:00", "2024-02-29 00:00"),
        ("0 0 * 2 *", "2023-02-28 12:00", "2024-02-01 00:00"),
        ("0 0 28,29 2 *", "2023-02-28 00:00", "2024-02-28 00:00"),
        # day-of-month and day-of-week both restricted: either matches
        ("0 0 13 * 5", "2023-10-01 00:00", "2023-10-06 00:00"),  # Friday the 6th comes first
        ("0 0 13 * 5", "2023-10-06 00:00", "2023-10-13 00:00"),
        ("0 0 13 * 5", "2023-10-13 00:00", "2023-10-20 00:00"),
        ("0 0 1 * mon", "2024-01-01 00:00", "2024-01-08 00:00"),
        ("0 0 1,15 * sun", "2024-03-10 00:00", "2024-03-15 00:00"),
        ("0 0 30 2 1", "2024-02-01 00:00", "2024-02-05 00:00"),  # Feb 30 never, Mondays do
        # only one day field restricted: that field alone decides
        ("0 0 * * 1", "2024-01-01 00:00", "2024-01-08 00:00"),
        ("0 0 15 * *", "2024-01-01 00:00", "2024-01-15 00:00"),
        # "*/1" counts as restricted (parse-cron compares the field text with "*")
        ("0 0 */1 * 1", "2024-01-02 00:00", "2024-01-03 00:00"),
        # weekday 7 and names
        ("0 9 * * 7", "2024-01-01 00:00", "2024-01-07 09:00"),
        ("0 9 * * SUN", "2024-01-01 00:00", "2024-01-07 09:00"),
        ("30 8 * Mar-May Sat", "2024-01-01 00:00", "2024-03-02 08:30"),
        # the example from the docs: every 12 hours
        ("0 */12 * * *", "2024-05-05 11:59", "2024-05-05 12:00"),
        ("0 */12 * * *", "2024-05-05 12:00", "2024-05-06 00:00"),
    ],
)
def test_next_after_examples(expression: str, now: str, expected: str) -> None:
    assert parse_schedule(expression).next_after(utc(now)) == utc(expected)


@pytest.mark.parametrize(
    ("expression", "now", "expected"),
    [
        ("* * * * *", "2024-01-01 12:00:30", "2024-01-01 12:00"),  # at or before: its own minute
        ("0 0 1 * *", "2024-01-01 00:00", "2024-01-01 00:00"),
        ("0 0 1 * *", "2024-01-01 00:00:59", "2024-01-01 00:00"),
        ("0 0 1 * *", "2023-12-31 23:59", "2023-12-01 00:00"),
        ("0 0 31 * *", "2023-05-01 00:00", "2023-03-31 00:00"),
        ("0 0 29 2 *", "2104-02-28 00:00", "2096-02-29 00:00"),
        ("0 0 13 * 5", "2023-10-19 00:00", "2023-10-13 00:00"),
        ("59 23 31 12 *", "2024-01-01 00:00", "2023-12-31 23:59"),
        ("0 */12 * * *", "2024-03-01 11:59", "2024-03-01 00:00"),
        ("0 */12 * * *", "2024-03-01 00:00", "2024-03-01 00:00"),
        ("45 * * * *", "2024-03-01 00:30", "2024-02-29 23:45"),
        ("10-59 * * * *", "2024-03-01 05:05", "2024-03-01 04:59"),  # borrow from minute to hour
        ("10-59 * * * *", "2024-03-01 00:05", "2024-02-29 23:59"),  # ... and on to the day
        ("59 23 * * *", "2024-03-01 00:00", "2024-02-29 23:59"),
        ("59 23 * * *", "2024-03-01 22:00", "2024-02-29 23:59"),
        ("0 0 1 * *", "2024-03-15 12:00", "2024-03-01 00:00"),
    ],
)
def test_previous_at_or_before_examples(expression: str, now: str, expected: str) -> None:
    assert parse_schedule(expression).previous_at_or_before(utc(now)) == utc(expected)


def test_seconds_are_dropped_and_next_is_strictly_after() -> None:
    every_minute = parse_schedule("* * * * *")
    assert every_minute.next_after(utc("2024-01-01 12:00:00")) == utc("2024-01-01 12:01")
    assert every_minute.next_after(utc("2024-01-01 12:00:59").replace(microsecond=999999)) == utc(
        "2024-01-01 12:01"
    )
    hourly = parse_schedule("@hourly")
    assert hourly.next_after(utc("2024-01-01 12:00:00")) == utc("2024-01-01 13:00")


def test_other_time_zones_are_converted_to_utc() -> None:
    tokyo = timezone(timedelta(hours=9))
    daily = parse_schedule("0 23 * * *")  # "11 PM UTC", whatever the local zone
    result = daily.next_after(datetime(2024, 1, 2, 7, 0, tzinfo=tokyo))  # 2024-01-01 22:00 UTC
    assert result == utc("2024-01-01 23:00")
    assert result.tzinfo is UTC
    assert daily.previous_at_or_before(datetime(2024, 1, 2, 7, 0, tzinfo=tokyo)) == utc("2023-12-31 23:00")


def test_naive_datetimes_are_refused() -> None:
    schedule = parse_schedule("* * * * *")
    with pytest.raises(ValueError, match="timezone-aware"):
        schedule.next_after(datetime(2024, 1, 1))
    with pytest.raises(ValueError, match="timezone-aware"):
        schedule.previous_at_or_before(datetime(2024, 1, 1))
    with pytest.raises(ValueError, match="timezone-aware"):
        schedule.matches(datetime(2024, 1, 1))


def test_matches() -> None:
    schedule = parse_schedule("15 10 13 * fri")
    assert schedule.matches(utc("2023-10-13 10:15:42"))  # the 13th and a Friday
    assert schedule.matches(utc("2023-10-06 10:15"))  # a Friday
    assert schedule.matches(utc("2023-11-13 10:15"))  # a 13th (Monday)
    assert not schedule.matches(utc("2023-11-14 10:15"))
    assert not schedule.matches(utc("2023-10-13 10:16"))
    assert not schedule.matches(utc("2023-10-13 11:15"))


def test_day_matches_combines_day_fields_like_vixie_cron() -> None:
    both = parse_schedule("0 0 1 * 1")
    assert both.day_matches(1, 3) and both.day_matches(9, 1) and not both.day_matches(9, 3)
    dom_only = parse_schedule("0 0 1 * *")
    assert dom_only.day_matches(1, 3) and not dom_only.day_matches(9, 1)
    dow_only = parse_schedule("0 0 * * 1")
    assert dow_only.day_matches(9, 1) and not dow_only.day_matches(1, 3)
    neither = parse_schedule("0 0 * * *")
    assert neither.day_matches(9, 3)


def test_results_beyond_the_calendar_overflow_cleanly() -> None:
    yearly = parse_schedule("@yearly")
    with pytest.raises(OverflowError):
        yearly.next_after(datetime(9999, 6, 1, tzinfo=UTC))
    with pytest.raises(OverflowError):
        parse_schedule("0 0 2 1 *").previous_at_or_before(datetime(1, 1, 1, 12, 0, tzinfo=UTC))


def test_str_is_the_expression() -> None:
    assert str(parse_schedule("@daily")) == "@daily"
    assert isinstance(parse_schedule("@daily"), Schedule)


def test_sparse_schedules_are_fast() -> None:
    # Leap-day and once-a-year schedules must skip by month/day, not scan minute by minute.
    leap = parse_schedule("59 23 29 2 *")
    start = time.perf_counter()
    t = utc("2001-01-01 00:00")
    for _ in range(200):
        t = leap.next_after(t)
    assert t.year > 2700
    for _ in range(200):
        t = leap.previous_at_or_before(t - timedelta(minutes=1))
    assert time.perf_counter() - start < 1.0
