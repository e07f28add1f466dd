"""Build the stock daemon's request headers for a message (contract §1.3).

Pure functions: the dispatcher calls :func:`build_request` once per message and gets the path,
the body bytes, the headers and the list of headers it had to skip (to log).
"""

from __future__ import annotations

import time
from dataclasses import dataclass, field

from asqsd.message import Message

TASK_PATH_ATTR = "beanstalk.sqsd.path"
TASK_NAME_ATTR = "beanstalk.sqsd.task_name"
TASK_TIME_ATTR = "beanstalk.sqsd.scheduled_time"
RESERVED_PREFIX = "beanstalk.sqsd."
# RFC 9110 token characters: what a header name may contain.
_TCHAR = frozenset("!#$%&'*+-.^_`|~0123456789abcdefghijklmnopqrstuvwxyzABCDEFGHIJKLMNOPQRSTUVWXYZ")


@dataclass(slots=True, frozen=True)
class StaticHeaders:
    """Headers that are the same for every message, computed once from the settings."""

    mime_type: str
    user_agent: str
    queue_name: str
    http_path: str


@dataclass(slots=True)
class Request:
    """What to POST for one message."""

    path: str
    body: bytes
    headers: dict[str, str]
    skipped: list[tuple[str, str]] = field(default_factory=list)  # (header or attribute, reason)
    error: str | None = None  # set when the message cannot be delivered at all


def wire_name(name: str) -> str:
    """Capitalise each dash-separated part, the rest lower-case (em-http-request's munging)."""
    return "-".join(part[:1].upper() + part[1:].lower() for part in name.split("-"))


def unsafe_value_reason(value: str) -> str | None:
    """Why a header value cannot go on the wire (CR, LF, NUL, control, non-Latin-1), or None."""
    for char in value:
        code = ord(char)
        if char in "\r\n":
            return "contains CR or LF"
        if code == 0:
            return "contains NUL"
        if (code < 32 and char != "\t") or code == 127:
            return "contains a control character"
        if code > 255:
            return "contains a character outside Latin-1"
    return None


def iso_from_epoch_ms(value: str | None) -> str | None:
    """SQS epoch milliseconds → ``YYYY-MM-DDTHH:MM:SSZ`` (whole seconds, UTC); None if malformed."""
    if value is None:
        return None
    try:
        seconds = int(value) // 1000
        return time.strftime("%Y-%m-%dT%H:%M:%SZ", time.gmtime(seconds))
    except (ValueError, OverflowError, OSError):
        return None


def iso_from_task_time(value: str | None) -> str | None:
    """``2017-03-22 23:10:00 UTC`` → ``2017-03-22T23:10:00Z``; None if malformed."""
    if value is None:
        return None
    try:
        parsed = time.strptime(value.strip(), "%Y-%m-%d %H:%M:%S UTC")
    except ValueError:
        return None
    return time.strftime("%Y-%m-%dT%H:%M:%SZ", parsed)


def is_task(message: Message) -> bool:
    """A periodic-task message carries the scheduled-time attribute."""
    return TASK_TIME_ATTR in message.message_attributes


def build_request(message: Message, static: StaticHeaders) -> Request:
    """Path, body and headers for ``message``, exactly as the stock daemon sends them."""
    task = is_task(message)
    path = static.http_path
    request = Request(path=path, body=b"", headers={})
    if task:
        task_path = _task_attr(message, TASK_PATH_ATTR)
        if task_path is None or not _valid_path(task_path):
            request.error = f"periodic task has an invalid {TASK_PATH_ATTR} attribute: {task_path!r}"
        else:
            path = request.path = task_path
    else:
        request.body = message.body.encode("utf-8")
    attrs = message.attributes
    candidates: list[tuple[str, str | None]] = [
        ("Content-Type", static.mime_type),
        ("User-Agent", static.user_agent),
        ("Accept-Encoding", "gzip, compressed"),
        ("X-Aws-Sqsd-Msgid", message.message_id),
        ("X-Aws-Sqsd-Receive-Count", attrs.get("ApproximateReceiveCount")),
        ("X-Aws-Sqsd-First-Received-At", iso_from_epoch_ms(attrs.get("ApproximateFirstReceiveTimestamp"))),
        ("X-Aws-Sqsd-Sent-At", iso_from_epoch_ms(attrs.get("SentTimestamp"))),
        ("X-Aws-Sqsd-Queue", static.queue_name),
        ("X-Aws-Sqsd-Path", path),
        ("X-Aws-Sqsd-Sender-Id", attrs.get("SenderId")),
    ]
    if task:
        candidates.append(("X-Aws-Sqsd-Taskname", _task_attr(message, TASK_NAME_ATTR)))
        candidates.append(
            ("X-Aws-Sqsd-Scheduled-At", iso_from_task_time(_task_attr(message, TASK_TIME_ATTR)))
        )
    for name, value in candidates:
        if value is not None:
            _add(request, name, value)
    _add_attributes(request, message)
    return request


def _valid_path(path: str) -> bool:
    return path.startswith("/") and unsafe_value_reason(path) is None and not any(c.isspace() for c in path)


def _task_attr(message: Message, name: str) -> str | None:
    attr = message.message_attributes.get(name)
    return attr.string_value if attr is not None else None


def _add(request: Request, name: str, value: str) -> None:
    reason = unsafe_value_reason(value)
    if reason is not None:
        request.skipped.append((name, f"value {reason}"))
        return
    request.headers[name] = value


def _add_attributes(request: Request, message: Message) -> None:
    for attr_name, attr in message.message_attributes.items():
        if attr_name.startswith(RESERVED_PREFIX):
            continue
        if not attr.data_type.startswith(("String", "Number")) or attr.string_value is None:
            continue  # Binary attributes are dropped, as the stock daemon does
        if not attr_name or not set(attr_name) <= _TCHAR:
            request.skipped.append((attr_name, "attribute name is not a valid header name"))
            continue
        header = wire_name("X-Aws-Sqsd-Attr-" + attr_name)
        if header in request.headers:
            request.skipped.append((attr_name, f"duplicate header {header}"))
            continue
        _add(request, header, attr.string_value)
