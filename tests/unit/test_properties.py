"""Property-based tests (hypothesis) for the three parsers of untrusted input:

* header building (:func:`asqsd.pipeline.request.build_request`), then the lean client's request
  serialisation: never raises, emits only wire-safe headers, accounts for every attribute;
* config parsing (:func:`asqsd.config.load_settings`) with arbitrary YAML-ish values, given
  directly and through a YAML file: ConfigError or success, nothing else;
* the cron dialect (:func:`asqsd.cron_schedule.parse_schedule`) with cron-like token soup:
  CronError or a schedule whose ``next_after(t)`` is a matching minute after ``t``.
"""

from __future__ import annotations

import re
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

import yaml
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from asqsd.clients.worker.lean_impl import LeanWorkerClient
from asqsd.config import Settings, load_settings
from asqsd.errors import ConfigError
from asqsd.message import RESERVED_PREFIX, Message, MessageAttribute
from asqsd.periodic.schedule import CronError, parse_schedule
from asqsd.pipeline.request import StaticHeaders, build_request, unsafe_value_reason, wire_name

FAST = settings(max_examples=300, deadline=None, database=None, suppress_health_check=[HealthCheck.too_slow])
STATIC = StaticHeaders("application/json", "aws-sqsd/9.9", "my-queue", "/work")
TOKEN = re.compile(r"[!#$%&'*+\-.^_`|~0-9A-Za-z]+")

# --- header building ---------------------------------------------------------------------------

# Any character a Python str can hold except lone surrogates (no SQS body or attribute has one).
ANY_TEXT = st.text(st.characters(exclude_categories=["Cs"]), max_size=60)
NASTY = st.sampled_from(
    ["\r\n", "\n", "\r", "\x00", "\t", "\x7f", "\x85", "\u2028", "\u00e9", "\u2603", "\U0001f600"]
)
HOSTILE_TEXT = st.lists(st.one_of(ANY_TEXT, NASTY), max_size=5).map("".join)
DATA_TYPES = st.sampled_from(
    ["String", "Number", "Binary", "String.custom", "Number.int", "Binary.x", "Custom"]
)


@st.composite
def attributes(draw: st.DrawFn) -> MessageAttribute:
    """A message attribute of any data type, with or without a value."""
    data_type = draw(DATA_TYPES)
    value = draw(st.one_of(st.none(), HOSTILE_TEXT))
    binary = draw(st.one_of(st.none(), st.binary(max_size=8)))
    return MessageAttribute(data_type, value, binary)


@st.composite
def messages(draw: st.DrawFn) -> Message:
    """A received message with hostile ids, system attributes and message attributes."""
    names = st.one_of(
        HOSTILE_TEXT.filter(bool),
        st.from_regex(r"[A-Za-z0-9_.\-]{1,256}", fullmatch=True),
        st.sampled_from(["beanstalk.sqsd.path", "beanstalk.sqsd.task_name", "beanstalk.sqsd.scheduled_time"]),
    )
    system = st.dictionaries(
        st.sampled_from(
            ["ApproximateReceiveCount", "ApproximateFirstReceiveTimestamp", "SentTimestamp", "SenderId"]
        ),
        st.one_of(HOSTILE_TEXT, st.integers(-(10**20), 10**20).map(str)),
    )
    return Message(
        message_id=draw(HOSTILE_TEXT),
        receipt_handle="rh",
        body=draw(ANY_TEXT),
        attributes=draw(system),
        message_attributes=draw(st.dictionaries(names, attributes(), max_size=10)),
    )


@FAST
@given(messages())
def test_build_request_never_emits_an_unsafe_header(message: Message) -> None:
    """Whatever the message: no exception; every header name is an HTTP token and every value is
    wire-safe; each String/Number attribute is forwarded with its exact value, or skipped with a
    reason, or was a duplicate; the body is the UTF-8 of the SQS body (or empty for a task)."""
    request = build_request(message, STATIC)
    for name, value in request.headers.items():
        assert TOKEN.fullmatch(name), name
        assert unsafe_value_reason(value) is None, (name, value)
    skipped = {name for name, _reason in request.skipped}
    for name, attr in message.message_attributes.items():
        if name.startswith(RESERVED_PREFIX) or attr.string_value is None:
            continue
        if not attr.data_type.startswith(("String", "Number")):
            # Not forwarded; the header may still exist for a String attribute of the same folded
            # name (hypothesis found "R" String beside "r" Binary).
            header = wire_name("X-Aws-Sqsd-Attr-" + name)
            folded_strings = {
                n
                for n, a in message.message_attributes.items()
                if a.data_type.startswith(("String", "Number"))
                and wire_name("X-Aws-Sqsd-Attr-" + n) == header
            }
            assert header not in request.headers or name in skipped or folded_strings
            continue
        header = wire_name("X-Aws-Sqsd-Attr-" + name)
        if name in skipped or header not in request.headers:
            assert name in skipped or any(h == header for h, _ in request.skipped), name
            continue
        # Forwarded: the exact value (the first attribute that folds to this header wins).
        assert request.headers[header] in {
            a.string_value
            for n, a in message.message_attributes.items()
            if wire_name("X-Aws-Sqsd-Attr-" + n) == header
        }
    if request.error is None and "beanstalk.sqsd.scheduled_time" not in message.message_attributes:
        assert request.body == message.body.encode("utf-8")


@FAST
@given(messages())
def test_serialised_request_has_exactly_the_built_headers(message: Message) -> None:
    """The lean client turns any built request into bytes without raising (its CR/LF guard never
    fires on build_request output) and the head has one line per header, nothing smuggled."""
    request = build_request(message, STATIC)
    if request.error is not None:
        return
    client = LeanWorkerClient("http://127.0.0.1:8080", 1, 1, 1)
    raw = client.serialize(request)
    head, _, body = raw.partition(b"\r\n\r\n")
    lines = head.split(b"\r\n")
    assert body == request.body
    assert len(lines) == 1 + 1 + len(request.headers) + 1  # request line, Host, headers, Content-Length
    sent = [line.split(b":", 1)[0].decode("ascii") for line in lines[2:-1]]
    assert sent == list(request.headers)


# --- config parsing ------------------------------------------------------------------------------

FIELDS = sorted(Settings.model_fields)
SCALARS = st.one_of(
    st.none(),
    st.booleans(),
    st.integers(-(10**30), 10**30),
    st.floats(allow_nan=True, allow_infinity=True),
    st.text(max_size=40),
    st.sampled_from(
        ["200", "2xx", "200,204", "200-299", "http://127.0.0.1", "/", "lean", "TCP:80", "HTTP:80/h"]
    ),
)
YAMLISH = st.recursive(
    SCALARS,
    lambda inner: st.one_of(
        st.lists(inner, max_size=4), st.dictionaries(st.text(max_size=8), inner, max_size=4)
    ),
    max_leaves=10,
)
SETTINGS_DICTS = st.dictionaries(
    st.one_of(st.sampled_from(FIELDS), st.text(max_size=20)), YAMLISH, max_size=8
)


@FAST
@given(SETTINGS_DICTS)
def test_load_settings_gives_config_error_or_settings(values: dict[str, Any]) -> None:
    """Arbitrary values for arbitrary keys (as CLI values): success or ConfigError, nothing else."""
    cli = {k: v for k, v in values.items() if k in Settings.model_fields}
    try:
        loaded = load_settings(cli, env={})
    except ConfigError as exc:
        assert exc.problems and all(isinstance(p, str) and p for p in exc.problems)
    else:
        assert isinstance(loaded.settings, Settings)


@settings(
    max_examples=150,
    deadline=None,
    database=None,
    suppress_health_check=[HealthCheck.function_scoped_fixture],
)
@given(values=SETTINGS_DICTS)
def test_config_file_gives_config_error_or_settings(values: dict[str, Any], tmp_path: Path) -> None:
    """The same values written to a YAML config file (unknown keys are warnings)."""
    path = tmp_path / "default.yaml"
    path.write_text(yaml.safe_dump(values, allow_unicode=True))
    try:
        loaded = load_settings({}, env={}, config_file=path)
    except ConfigError as exc:
        assert exc.problems
    else:
        assert all(isinstance(w, str) for w in loaded.warnings)


@FAST
@given(st.dictionaries(st.sampled_from(FIELDS), st.text(max_size=30), max_size=6))
def test_environment_strings_give_config_error_or_settings(values: dict[str, str]) -> None:
    """Any strings in ``ASQSD_*`` variables: success or ConfigError."""
    env = {"ASQSD_" + k.upper(): v for k, v in values.items()}
    try:
        load_settings({}, env=env)
    except ConfigError as exc:
        assert exc.problems


# --- cron dialect -----------------------------------------------------------------------------

CRON_TOKENS = st.sampled_from(
    [
        "*",
        "*/",
        "/",
        "-",
        ",",
        "?",
        "L",
        "W",
        "#",
        "0",
        "1",
        "5",
        "7",
        "12",
        "15",
        "23",
        "29",
        "30",
        "31",
        "59",
        "60",
        "99",
        "jan",
        "FEB",
        "dec",
        "sun",
        "Mon",
        "sat",
        "@daily",
        "@hourly",
        "@weekly",
        "@monthly",
        "@yearly",
        "@annually",
        "@midnight",
        "@reboot",
        "@every",
    ]
)
CRON_SPACES = st.sampled_from([" ", "  ", "\t", " \t "])


@st.composite
def cron_like(draw: st.DrawFn) -> str:
    """Five or six space-separated fields of cron tokens (often valid, often subtly not)."""
    fields = draw(st.integers(1, 7))
    parts = ["".join(draw(st.lists(CRON_TOKENS, min_size=1, max_size=4))) for _ in range(fields)]
    text = parts[0]
    for part in parts[1:]:
        text += draw(CRON_SPACES) + part
    return text


TIMES = st.datetimes(min_value=datetime(1970, 1, 1), max_value=datetime(2200, 12, 31), timezones=st.just(UTC))


@FAST
@given(st.one_of(cron_like(), st.text(max_size=40)), TIMES)
def test_parse_schedule_is_cron_error_or_a_schedule_that_moves_forward(text: str, t: datetime) -> None:
    """Only CronError or a schedule; for a schedule, ``next_after(t)`` is later than ``t``, a
    matching minute, and no matching minute lies between them."""
    try:
        schedule = parse_schedule(text)
    except CronError as exc:
        assert exc.problems and exc.problems[0].startswith("schedule ")
        return
    following = schedule.next_after(t)
    assert following > t
    assert following.second == 0 and following.microsecond == 0
    assert schedule.matches(following)
    assert schedule.previous_at_or_before(following - timedelta(minutes=1)) <= t
