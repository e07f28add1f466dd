"""Cron schedule expressions, parsed the way the stock daemon's parser reads them.

The stock daemon hands every ``schedule`` string to the Ruby ``parse-cron`` gem (0.1.4,
``CronParser``). This module accepts the same dialect:

* five fields -- minute, hour, day-of-month, month, day-of-week -- separated by ASCII
  whitespace; a sixth token is accepted and ignored (so a seconds-style ``*/30 * * * * *``
  means "every 30 minutes"); fewer than five or more than six tokens is an error;
* per field: ``*``, ``*/n``, ``a``, ``a-b``, ``a-b/n`` and comma lists of those; ``a/n``
  (a step without a range) is rejected, as are ``L``, ``W``, ``#`` and ``?``;
* month names ``jan``..``dec`` and weekday names ``sun``..``sat``, case-insensitive; weekday
  ``7`` is Sunday like ``0``;
* ``@yearly``/``@annually``, ``@monthly``, ``@weekly``, ``@daily``/``@midnight``,
  ``@hourly``; ``@reboot`` and unknown macros are rejected;
* when day-of-month and day-of-week are both restricted, a day matches if either matches
  (Vixie semantics). As in parse-cron, a field counts as unrestricted only if it is exactly
  ``*``: ``*/1`` in one day field and a value in the other therefore means "either".

Where parse-cron silently accepts nonsense (out-of-range values, reversed ranges, ``1,``
trailing commas, ``*-5``, names outside their own field) or crashes (``*/0``), this parser
refuses with a message saying why; a schedule that would never fire (``0 0 30 2 *``) is
refused at parse time too -- stock fails to start on it as well, because it computes the next
run while loading the file. Times are UTC at minute resolution.
"""

from __future__ import annotations

import bisect
import calendar
import functools
import json
import re
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from datetime import MAXYEAR, MINYEAR, UTC, datetime, timedelta

from asqsd.errors import ConfigError

__all__ = ["CronError", "Schedule", "parse_schedule"]


class CronError(ConfigError):
    """``cron.yaml`` or a schedule in it is invalid; ``problems`` has one line per problem."""


MACROS: Mapping[str, str] = {
    "@yearly": "0 0 1 1 *",
    "@annually": "0 0 1 1 *",
    "@monthly": "0 0 1 * *",
    "@weekly": "0 0 * * 0",
    "@daily": "0 0 * * *",
    "@midnight": "0 0 * * *",
    "@hourly": "0 * * * *",
}

# Spelled out here rather than taken from calendar.month_name, which follows the locale.
_MONTHS_IN_FULL = (
    "January", "February", "March", "April", "May", "June",
    "July", "August", "September", "October", "November", "December",
)  # fmt: skip
MONTH_NAMES: Mapping[str, int] = {name[:3].lower(): number for number, name in enumerate(_MONTHS_IN_FULL, 1)}
WEEKDAY_NAMES: Mapping[str, int] = {
    name: number for number, name in enumerate(("sun", "mon", "tue", "wed", "thu", "fri", "sat"))
}

# Ruby's /\s+/ (what parse-cron splits on) is ASCII whitespace only; a no-break space stays
# inside a token and makes it invalid rather than separating fields.
_ASCII_SPACE = " \t\n\r\f\v"
_FIELD_SEPARATOR = re.compile(r"[ \t\n\r\f\v]+")
_STAR = re.compile(r"\*(?:/([0-9]*))?")
_ELEMENT = re.compile(r"([0-9]+|[a-z]+)(?:-([0-9]+|[a-z]+))?(?:/([0-9]*))?")
_LAST_OR_WEEKDAY = re.compile(r"[0-9]*l(?:-[0-9]+)?|[0-9]+w|lw")
# Larger than any field's range; stands in for absurdly long digit strings so int() never sees
# them (Python refuses to convert more than 4300 digits).
_HUGE = 1_000_000
_LONGEST_MONTH: Mapping[int, int] = {
    m: 29 if m == 2 else calendar.monthrange(2001, m)[1] for m in range(1, 13)
}


@dataclass(frozen=True, slots=True)
class _FieldSpec:
    """What one of the five fields accepts."""

    label: str
    low: int
    high: int  # highest literal value accepted (7 for day-of-week, which means Sunday)
    star_high: int  # highest value ``*`` expands to (6 for day-of-week)
    names: Mapping[str, int]


_FIELDS: tuple[_FieldSpec, ...] = (
    _FieldSpec("minute", 0, 59, 59, {}),
    _FieldSpec("hour", 0, 23, 23, {}),
    _FieldSpec("day-of-month", 1, 31, 31, {}),
    _FieldSpec("month", 1, 12, 12, MONTH_NAMES),
    _FieldSpec("day-of-week", 0, 7, 6, WEEKDAY_NAMES),
)


class _FieldError(Exception):
    """A field is invalid; the message is the reason, without the expression or field."""


def quoted(value: str, limit: int = 80) -> str:
    """``value`` in double quotes with control characters escaped, shortened for messages."""
    if len(value) > limit:
        value = value[:limit] + "..."
    # YAML escapes can produce lone surrogates; spell them out so the message can be logged.
    return json.dumps(value, ensure_ascii=False).encode("utf-8", "backslashreplace").decode("utf-8")


@dataclass(frozen=True, slots=True)
class Schedule:
    """A parsed cron expression: the allowed values of each field, evaluated in UTC.

    Build one with :func:`parse_schedule`. Every field tuple is sorted and non-empty;
    ``days_of_week`` uses 0 = Sunday (a ``7`` in the expression is stored as 0).
    ``dom_restricted``/``dow_restricted`` tell whether the day fields were anything other than
    a bare ``*``, which decides how they combine (see :meth:`day_matches`).
    """

    expression: str
    minutes: tuple[int, ...]
    hours: tuple[int, ...]
    days_of_month: tuple[int, ...]
    months: tuple[int, ...]
    days_of_week: tuple[int, ...]
    dom_restricted: bool
    dow_restricted: bool

    def __str__(self) -> str:
        return self.expression

    def day_matches(self, day_of_month: int, day_of_week: int) -> bool:
        """Whether a calendar day qualifies (``day_of_week`` 0 = Sunday).

        Both day fields ``*``: every day. Exactly one restricted: that one decides. Both
        restricted: either may match (Vixie cron and parse-cron 0.1.4).
        """
        if not (self.dom_restricted or self.dow_restricted):
            return True
        return (self.dom_restricted and day_of_month in self.days_of_month) or (
            self.dow_restricted and day_of_week in self.days_of_week
        )

    def matches(self, when: datetime) -> bool:
        """Whether the minute containing ``when`` (an aware datetime) is an occurrence."""
        t = _utc_minute(when)
        return (
            t.minute in self.minutes
            and t.hour in self.hours
            and t.month in self.months
            and t.day in self._days(t.year, t.month)
        )

    def next_after(self, t: datetime) -> datetime:
        """The first occurrence strictly after ``t``, as an aware UTC datetime.

        ``t`` must be timezone-aware (any zone; it is converted to UTC). Its seconds and
        microseconds are dropped first, so for 12:00:30 the earliest possible answer is 12:01
        -- the stock daemon behaves the same way. Always finds an answer (schedules that can
        never fire are refused by :func:`parse_schedule`), unless the answer would lie beyond
        year 9999, which raises :class:`OverflowError`.
        """
        start = _utc_minute(t) + timedelta(minutes=1)
        return self._search_forward(start.year, start.month, start.day, start.hour, start.minute)

    def previous_at_or_before(self, t: datetime) -> datetime:
        """The most recent occurrence at or before ``t``, as an aware UTC datetime.

        Seconds are dropped as in :meth:`next_after`, so at 12:00:30 an every-minute schedule
        answers 12:00. (The stock ``CronParser#last`` answers strictly before the minute, i.e.
        11:59; the missed-run check wants "the occurrence now due", hence this variant.)
        Raises :class:`OverflowError` if the answer would lie before year 1.
        """
        start = _utc_minute(t)
        return self._search_backward(start.year, start.month, start.day, start.hour, start.minute)

    def _days(self, year: int, month: int) -> tuple[int, ...]:
        return _matching_days(self, year, month)

    def _search_forward(self, y: int, mo: int, d: int, h: int, mi: int) -> datetime:
        # Walk month -> day -> hour -> minute, jumping straight to the next allowed value at each
        # level and resetting the finer levels when a coarser one moves; an overflow at one level
        # (no allowed value left) carries into the next coarser one.
        while True:
            if y > MAXYEAR:
                raise OverflowError(f"schedule {quoted(self.expression)} has no occurrence before year 10000")
            month = _ceil(self.months, mo)
            if month is None:
                y, mo, d, h, mi = y + 1, 1, 1, 0, 0
                continue
            if month != mo:
                mo, d, h, mi = month, 1, 0, 0
            day = _ceil(self._days(y, mo), d)
            if day is None:
                mo, d, h, mi = mo + 1, 1, 0, 0
                continue
            if day != d:
                d, h, mi = day, 0, 0
            hour = _ceil(self.hours, h)
            if hour is None:
                d, h, mi = d + 1, 0, 0
                continue
            if hour != h:
                h, mi = hour, 0
            minute = _ceil(self.minutes, mi)
            if minute is None:
                h, mi = h + 1, 0
                continue
            return datetime(y, mo, d, h, minute, tzinfo=UTC)

    def _search_backward(self, y: int, mo: int, d: int, h: int, mi: int) -> datetime:
        # Mirror image of _search_forward; "31" stands for "the end of whatever month this is".
        while True:
            if y < MINYEAR:
                raise OverflowError(f"schedule {quoted(self.expression)} has no occurrence after year 0")
            month = _floor(self.months, mo)
            if month is None:
                y, mo, d, h, mi = y - 1, 12, 31, 23, 59
                continue
            if month != mo:
                mo, d, h, mi = month, 31, 23, 59
            day = _floor(self._days(y, mo), d)
            if day is None:
                mo, d, h, mi = mo - 1, 31, 23, 59
                continue
            if day != d:
                d, h, mi = day, 23, 59
            hour = _floor(self.hours, h)
            if hour is None:
                d, h, mi = d - 1, 23, 59
                continue
            if hour != h:
                h, mi = hour, 59
            minute = _floor(self.minutes, mi)
            if minute is None:
                h, mi = h - 1, 59
                continue
            return datetime(y, mo, d, h, minute, tzinfo=UTC)


@functools.lru_cache(maxsize=512)
def _matching_days(schedule: Schedule, year: int, month: int) -> tuple[int, ...]:
    """The days of ``year``-``month`` on which ``schedule`` may fire, ascending."""
    monday_based_first, length = calendar.monthrange(year, month)
    sunday_based_first = (monday_based_first + 1) % 7
    return tuple(
        day for day in range(1, length + 1) if schedule.day_matches(day, (sunday_based_first + day - 1) % 7)
    )


def _ceil(values: Sequence[int], x: int) -> int | None:
    """The smallest of the sorted ``values`` that is >= ``x``, or None."""
    i = bisect.bisect_left(values, x)
    return values[i] if i < len(values) else None


def _floor(values: Sequence[int], x: int) -> int | None:
    """The largest of the sorted ``values`` that is <= ``x``, or None."""
    i = bisect.bisect_right(values, x)
    return values[i - 1] if i > 0 else None


def _utc_minute(t: datetime) -> datetime:
    if t.tzinfo is None or t.utcoffset() is None:
        raise ValueError(f"cron times must be timezone-aware, got naive {t.isoformat()}")
    return t.astimezone(UTC).replace(second=0, microsecond=0)


def parse_schedule(expression: str) -> Schedule:
    """Parse a cron expression (see the module docstring for the dialect).

    Raises :class:`CronError` with a single problem of the form
    ``schedule "<expression>": <reason>`` -- for anything at all wrong with the input,
    including a value that is not a string, and including schedules that can never fire.
    """
    if not isinstance(expression, str):
        raise CronError([f"schedule {expression!r}: must be a string"])
    try:
        return _parse(expression)
    except _FieldError as exc:
        raise CronError([f"schedule {quoted(expression)}: {exc}"]) from None


def _parse(expression: str) -> Schedule:
    text = expression.strip(_ASCII_SPACE)
    if not text:
        raise _FieldError("is empty")
    if text.startswith("@"):
        text = _expand_macro(text)
    tokens = _FIELD_SEPARATOR.split(text)
    if len(tokens) not in (5, 6):
        raise _FieldError(
            f"expected 5 fields (minute hour day-of-month month day-of-week), "
            f"optionally followed by one ignored field, got {len(tokens)}"
        )
    values = [_parse_field(token, spec) for token, spec in zip(tokens, _FIELDS, strict=False)]
    schedule = Schedule(
        expression=expression,
        minutes=values[0],
        hours=values[1],
        days_of_month=values[2],
        months=values[3],
        days_of_week=values[4],
        dom_restricted=tokens[2] != "*",
        dow_restricted=tokens[4] != "*",
    )
    _check_can_fire(schedule)
    return schedule


def _expand_macro(text: str) -> str:
    if text in MACROS:
        return MACROS[text]
    if text == "@reboot":
        raise _FieldError("@reboot is not supported: it has no time to schedule")
    known = ", ".join(MACROS)
    raise _FieldError(f"unknown macro (macros are lower-case, one of {known})")


def _parse_field(token: str, spec: _FieldSpec) -> tuple[int, ...]:
    try:
        if not token.isascii():
            raise _FieldError("contains a non-ASCII character")
        values: set[int] = set()
        for element in token.lower().split(","):
            values.update(_parse_element(element, spec))
    except _FieldError as exc:
        raise _FieldError(f"{exc} ({spec.label} field {quoted(token)})") from None
    if spec.star_high < spec.high:  # day-of-week: 7 is another spelling of Sunday
        values = {v % 7 for v in values}
    return tuple(sorted(values))


def _parse_element(element: str, spec: _FieldSpec) -> range:
    if not element:
        raise _FieldError("empty list element")
    if star := _STAR.fullmatch(element):
        return range(spec.low, spec.star_high + 1, _step(star[1]))
    if match := _ELEMENT.fullmatch(element):
        return _parse_range(match[1], match[2], match[3], spec)
    if "#" in element:
        raise _FieldError('"#" (nth weekday of the month) is not supported')
    if "?" in element:
        raise _FieldError('"?" is not supported; use "*"')
    if _LAST_OR_WEEKDAY.fullmatch(element):
        raise _FieldError('"L" and "W" are not supported')
    raise _FieldError(f"invalid element {quoted(element)}; expected *, */n, a, a-b or a-b/n")


def _parse_range(first: str, last: str | None, step_text: str | None, spec: _FieldSpec) -> range:
    start = _value(first, spec)
    if last is None:
        if step_text is not None:
            # parse-cron's grammar only allows a step after a range or "*".
            raise _FieldError(
                f'a step needs a range: write "{first}-{spec.star_high}/{step_text}" or "*/{step_text}"'
            )
        return range(start, start + 1)
    stop = _value(last, spec)
    if start > stop:
        raise _FieldError(f"range {first}-{last} is reversed; ranges cannot wrap around")
    return range(start, stop + 1, 1 if step_text is None else _step(step_text))


def _step(text: str | None) -> int:
    if text is None:
        return 1
    if not text:
        raise _FieldError("step is missing after /")
    step = _number(text)
    if step < 1:
        raise _FieldError("step must be >= 1")
    return step


def _value(token: str, spec: _FieldSpec) -> int:
    if token.isdigit():
        value = _number(token)
        if not spec.low <= value <= spec.high:
            raise _FieldError(f"{token} is out of range {spec.low}-{spec.high}")
        return value
    if token in spec.names:
        return spec.names[token]
    raise _FieldError(_name_problem(token, spec))


def _name_problem(token: str, spec: _FieldSpec) -> str:
    if token in ("l", "w", "lw"):
        return '"L" and "W" are not supported'
    if token in MONTH_NAMES or token in WEEKDAY_NAMES:
        # parse-cron would quietly turn e.g. "mon" in the month field into 1 (January).
        kind = "month" if token in MONTH_NAMES else "day-of-week"
        return f"{quoted(token)} is a {kind} name, not allowed in the {spec.label} field"
    if spec.names:
        return f"unknown name {quoted(token)}; use three-letter names such as {next(iter(spec.names))}"
    return f"{quoted(token)} is not a number"


def _number(digits: str) -> int:
    significant = digits.lstrip("0") or "0"
    return _HUGE if len(significant) > 6 else int(significant)


def _check_can_fire(schedule: Schedule) -> None:
    # Only a day-of-month restriction with an unrestricted day-of-week can be impossible: every
    # month contains every weekday, and February has a 29th in leap years.
    if schedule.dow_restricted or not schedule.dom_restricted:
        return
    if any(day <= _LONGEST_MONTH[month] for month in schedule.months for day in schedule.days_of_month):
        return
    days = ",".join(map(str, schedule.days_of_month))
    months = ", ".join(_MONTHS_IN_FULL[m - 1] for m in schedule.months)
    raise _FieldError(f"day-of-month {days} never occurs in {months}, so it would never run")
