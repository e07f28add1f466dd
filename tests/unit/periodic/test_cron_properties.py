"""Property tests: random expressions from the grammar against an independent brute-force matcher.

The strategies (tests/support/cron_cases.py) build each field as structured data, render it as
text and compute the set of values it stands for on their own, so the reference matcher never
relies on the parser.
"""

from __future__ import annotations

from datetime import UTC, date, datetime, timedelta

import yaml
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from asqsd.periodic.cron_yaml import CronError, CronTask, parse_cron_yaml
from asqsd.periodic.schedule import Schedule, parse_schedule
from tests.support.cron_cases import Case, cases, times

PROPERTY_SETTINGS = settings(
    max_examples=200, deadline=None, suppress_health_check=[HealthCheck.too_slow], database=None
)
FUZZ_SETTINGS = settings(max_examples=250, deadline=None, database=None)

# ---------------------------------------------------------------------------- reference


def ref_day(case: Case, day: date) -> bool:
    dom_ok = day.day in case.doms
    dow_ok = (day.weekday() + 1) % 7 in case.dows  # Python: Monday = 0; cron: Sunday = 0
    if not (case.dom_restricted or case.dow_restricted):
        return True
    return (case.dom_restricted and dom_ok) or (case.dow_restricted and dow_ok)


def ref_matches(case: Case, t: datetime) -> bool:
    return (
        t.minute in case.minutes
        and t.hour in case.hours
        and t.month in case.months
        and ref_day(case, t.date())
    )


def ref_possible(case: Case) -> bool:
    # A leap year holds every (month, day) pair and every weekday in every month.
    day = date(2024, 1, 1)
    while day.year == 2024:
        if day.month in case.months and ref_day(case, day):
            return True
        day += timedelta(days=1)
    return False


def floor_minute(t: datetime) -> datetime:
    return t.replace(second=0, microsecond=0)


def ref_next(case: Case, t: datetime) -> datetime:
    """Brute force forwards, skipping whole days and hours that cannot match."""
    cur = floor_minute(t) + timedelta(minutes=1)
    while True:
        if not (cur.month in case.months and ref_day(case, cur.date())):
            cur = cur.replace(hour=0, minute=0) + timedelta(days=1)
        elif cur.hour not in case.hours:
            cur = cur.replace(minute=0) + timedelta(hours=1)
        elif cur.minute not in case.minutes:
            cur += timedelta(minutes=1)
        else:
            return cur


def ref_previous(case: Case, t: datetime) -> datetime:
    """Brute force backwards, skipping whole days and hours that cannot match."""
    cur = floor_minute(t)
    while True:
        if not (cur.month in case.months and ref_day(case, cur.date())):
            cur = cur.replace(hour=23, minute=59) - timedelta(days=1)
        elif cur.hour not in case.hours:
            cur = cur.replace(minute=59) - timedelta(hours=1)
        elif cur.minute not in case.minutes:
            cur -= timedelta(minutes=1)
        else:
            return cur


def parse_possible(case: Case) -> Schedule | None:
    """The parsed schedule, or None after checking that an impossible one was refused."""
    if ref_possible(case):
        return parse_schedule(case.expression)
    try:
        parse_schedule(case.expression)
    except CronError as exc:
        assert "never occurs" in exc.problems[0]
        return None
    raise AssertionError(f"{case.expression!r} can never fire but was accepted")


# ---------------------------------------------------------------------------- properties


@PROPERTY_SETTINGS
@given(cases())
def test_parsed_fields_match_the_grammar(case: Case) -> None:
    schedule = parse_possible(case)
    if schedule is None:
        return
    assert schedule.minutes == tuple(sorted(case.minutes))
    assert schedule.hours == tuple(sorted(case.hours))
    assert schedule.days_of_month == tuple(sorted(case.doms))
    assert schedule.months == tuple(sorted(case.months))
    assert schedule.days_of_week == tuple(sorted(case.dows))
    assert (schedule.dom_restricted, schedule.dow_restricted) == (case.dom_restricted, case.dow_restricted)


@PROPERTY_SETTINGS
@given(cases(), times)
def test_next_after_is_the_first_matching_minute_after_t(case: Case, t: datetime) -> None:
    schedule = parse_possible(case)
    if schedule is None:
        return
    result = schedule.next_after(t)
    assert result > t
    assert result.tzinfo is UTC and result.second == 0 and result.microsecond == 0
    assert ref_matches(case, result)
    assert schedule.matches(result)
    # Plain minute-by-minute scan over a bounded window: nothing matches strictly in between.
    cur = floor_minute(t) + timedelta(minutes=1)
    while cur < min(result, t + timedelta(hours=6)):
        assert not ref_matches(case, cur), cur
        cur += timedelta(minutes=1)
    # And the day/hour-skipping brute force finds the very same minute however far away it is.
    assert result == ref_next(case, t)


@PROPERTY_SETTINGS
@given(cases(), times)
def test_previous_at_or_before_is_the_last_matching_minute_up_to_t(case: Case, t: datetime) -> None:
    schedule = parse_possible(case)
    if schedule is None:
        return
    result = schedule.previous_at_or_before(t)
    assert result <= t
    assert ref_matches(case, result)
    cur = floor_minute(t)
    while cur > max(result, t - timedelta(hours=6)):
        assert not ref_matches(case, cur), cur
        cur -= timedelta(minutes=1)
    assert result == ref_previous(case, t)


@PROPERTY_SETTINGS
@given(cases(), times)
def test_next_and_previous_agree(case: Case, t: datetime) -> None:
    schedule = parse_possible(case)
    if schedule is None:
        return
    following = schedule.next_after(t)
    assert schedule.previous_at_or_before(following) == following
    assert schedule.next_after(schedule.previous_at_or_before(t)) == following
    assert schedule.previous_at_or_before(following - timedelta(minutes=1)) == schedule.previous_at_or_before(
        t
    )


# ---------------------------------------------------------------------------- fuzzing

CRON_ALPHABET = "0123456789*/-,@ \tLW#?abcdefjlmnoprstuvwyJMS"


@FUZZ_SETTINGS
@given(st.one_of(st.text(), st.text(alphabet=CRON_ALPHABET, max_size=40)))
def test_parse_schedule_only_raises_cron_error(text: str) -> None:
    try:
        schedule = parse_schedule(text)
    except CronError as exc:
        assert len(exc.problems) == 1
        assert exc.problems[0].startswith("schedule ")
        return
    # Anything accepted must be usable.
    t = datetime(2024, 6, 1, tzinfo=UTC)
    assert schedule.previous_at_or_before(t) <= t < schedule.next_after(t)


@FUZZ_SETTINGS
@given(st.text())
def test_parse_cron_yaml_only_raises_cron_error_on_text(text: str) -> None:
    try:
        tasks = parse_cron_yaml(text)
    except CronError as exc:
        assert exc.problems
        assert all(p.startswith("cron.yaml: ") for p in exc.problems)
        "\n".join(exc.problems).encode("utf-8")  # loggable as UTF-8
        return
    assert all(isinstance(task, CronTask) for task in tasks)


scalars = st.one_of(
    st.none(),
    st.booleans(),
    st.integers(-3, 3),
    st.floats(allow_nan=False),
    st.sampled_from(["1", "", "/x", "@daily", "* * * * *", "*/0 * * * *", "job", "x y"]),
    st.text(max_size=10),
)
yaml_values = st.recursive(
    scalars,
    lambda inner: st.lists(inner, max_size=3) | st.dictionaries(st.text(max_size=8), inner, max_size=3),
)
entries = st.dictionaries(
    st.sampled_from(["name", "url", "schedule", "description"]), yaml_values, max_size=4
)
documents = st.fixed_dictionaries(
    {},
    optional={
        "version": st.one_of(st.just(1), yaml_values),
        "cron": st.one_of(st.lists(st.one_of(entries, yaml_values), max_size=4), yaml_values),
    },
)


@FUZZ_SETTINGS
@given(st.one_of(documents, yaml_values))
def test_parse_cron_yaml_only_raises_cron_error_on_structures(document: object) -> None:
    text = yaml.safe_dump(document, allow_unicode=True)
    try:
        tasks = parse_cron_yaml(text)
    except CronError as exc:
        assert exc.problems
        return
    assert isinstance(document, dict) and document.get("version") == 1
    assert all(task.url.startswith("/") for task in tasks)
