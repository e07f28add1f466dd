"""Random cron expressions from the stock dialect's grammar, each with the values it stands for.

The strategies build each field as structured data, render it as text and compute the set of
values it means on their own, so a test can check the parser (or another implementation) against
meanings that never came from the parser. ``times`` draws start times, favouring the ends of hours,
days, months and years where carries and borrows go wrong.
"""

from __future__ import annotations

from dataclasses import dataclass
from datetime import UTC, date, datetime, timedelta

from hypothesis import strategies as st

MONTHS = ("jan", "feb", "mar", "apr", "may", "jun", "jul", "aug", "sep", "oct", "nov", "dec")
WEEKDAYS = ("sun", "mon", "tue", "wed", "thu", "fri", "sat")


@dataclass(frozen=True)
class Field:
    """One field as generated: the text, and the values it means (before 7 -> 0 folding)."""

    low: int
    high: int  # highest literal
    star_high: int  # highest value "*" covers
    names: tuple[str, ...]  # names[i] means value name_base + i
    name_base: int


FIELDS = (
    Field(0, 59, 59, (), 0),
    Field(0, 23, 23, (), 0),
    Field(1, 31, 31, (), 0),
    Field(1, 12, 12, MONTHS, 1),
    Field(0, 7, 6, WEEKDAYS, 0),
)


@dataclass(frozen=True)
class Case:
    """A generated expression and the independent meaning of each field."""

    expression: str
    minutes: frozenset[int]
    hours: frozenset[int]
    doms: frozenset[int]
    months: frozenset[int]
    dows: frozenset[int]
    dom_restricted: bool
    dow_restricted: bool


@st.composite
def values_text(draw: st.DrawFn, field: Field, value: int) -> str:
    """A value as digits (maybe zero-padded) or, where the field has one, as a name in any case."""
    index = value - field.name_base
    if field.names and 0 <= index < len(field.names) and draw(st.booleans()):
        return "".join(c.upper() if draw(st.booleans()) else c for c in field.names[index])
    return ("0" if draw(st.booleans()) and value < 10 else "") + str(value)


@st.composite
def element(draw: st.DrawFn, field: Field) -> tuple[str, set[int]]:
    """One comma-list element: *, */n, a, a-b or a-b/n, with its values."""
    kind = draw(st.sampled_from(["star", "star_step", "single", "range", "range_step"]))
    span = field.star_high - field.low + 1
    if kind == "star":
        return "*", set(range(field.low, field.star_high + 1))
    if kind == "star_step":
        step = draw(st.integers(1, span + 1))
        return f"*/{step}", set(range(field.low, field.star_high + 1, step))
    # Values at the ends of a field are where carries and borrows go wrong; favour them.
    a = draw(st.sampled_from([field.low, field.high - 1, field.high]) | st.integers(field.low, field.high))
    if kind == "single":
        return draw(values_text(field, a)), {a}
    b = draw(st.sampled_from([a, field.high]) | st.integers(a, field.high))
    text = f"{draw(values_text(field, a))}-{draw(values_text(field, b))}"
    if kind == "range":
        return text, set(range(a, b + 1))
    step = draw(st.integers(1, field.high - field.low + 1))
    return f"{text}/{step}", set(range(a, b + 1, step))


@st.composite
def field_text(draw: st.DrawFn, field: Field) -> tuple[str, frozenset[int]]:
    """A whole field: mostly one element, sometimes a comma list."""
    parts = draw(st.lists(element(field), min_size=1, max_size=3))
    values: set[int] = set()
    for _, part_values in parts:
        values |= part_values
    return ",".join(text for text, _ in parts), frozenset(values)


@st.composite
def cases(draw: st.DrawFn) -> Case:
    """A random expression from the grammar; day fields are often left as * to vary OR/AND."""
    texts: list[str] = []
    sets: list[frozenset[int]] = []
    for position, field in enumerate(FIELDS):
        if position >= 2 and draw(st.booleans()):
            text, values = "*", frozenset(range(field.low, field.star_high + 1))
        else:
            text, values = draw(field_text(field))
        texts.append(text)
        sets.append(values)
    separators = draw(st.lists(st.sampled_from([" ", "  ", "\t", " \t "]), min_size=4, max_size=4))
    expression = texts[0] + "".join(sep + text for sep, text in zip(separators, texts[1:], strict=True))
    if draw(st.booleans()):
        expression += " " + draw(st.sampled_from(["*", "0", "*/30", "anything-at-all"]))
    return Case(
        expression=expression,
        minutes=sets[0],
        hours=sets[1],
        doms=sets[2],
        months=sets[3],
        dows=frozenset(v % 7 for v in sets[4]),
        dom_restricted=texts[2] != "*",
        dow_restricted=texts[4] != "*",
    )


@st.composite
def edge_times(draw: st.DrawFn) -> datetime:
    """Times at the ends and starts of hours, days, months and years, where carries happen."""
    year = draw(st.integers(1995, 2105))
    month = draw(st.sampled_from([1, 2, 12]) | st.integers(1, 12))
    last_day = (date(year + month // 12, month % 12 + 1, 1) - timedelta(days=1)).day
    day = draw(st.sampled_from([1, last_day]) | st.integers(1, last_day))
    hour = draw(st.sampled_from([0, 23]) | st.integers(0, 23))
    minute = draw(st.sampled_from([0, 59]) | st.integers(0, 59))
    return datetime(year, month, day, hour, minute, draw(st.integers(0, 59)), tzinfo=UTC)


times = st.one_of(
    st.datetimes(min_value=datetime(1990, 1, 1), max_value=datetime(2200, 1, 1), timezones=st.just(UTC)),
    edge_times(),
)
