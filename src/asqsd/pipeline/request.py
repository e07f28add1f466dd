"""Build the worker request for a message: the stock headers and the body.

Pure functions: the dispatcher calls :func:`build_request` once per message and gets the path,
the body bytes, the headers and the list of headers it had to skip (to log). With ``unwrap_sns``
the body of an SNS notification envelope is unwrapped first (:func:`unwrap_sns`;
the stock daemon had the option, ``via_sns``, but never exposed it). With ``trace_headers`` the
producer's trace context is added too (:mod:`asqsd.pipeline.trace_context`).
"""

from __future__ import annotations

import functools
import json
import re
import time
from dataclasses import dataclass

from asqsd.clients.worker.base import Request
from asqsd.message import RESERVED_PREFIX, TASK_NAME_ATTR, TASK_PATH_ATTR, TASK_TIME_ATTR, Message
from asqsd.pipeline.trace_context import add_trace_headers

# RFC 9110 token characters: what a header name may contain.
_TOKEN = re.compile(r"[!#$%&'*+\-.^_`|~0-9A-Za-z]+")
# One regex search (C speed) decides whether a value is wire-safe; the per-character loop in
# unsafe_value_reason only runs for the rare unsafe value, to say why. Unsafe: anything but tab,
# U+0020-U+007E and U+0080-U+00FF (written as the complement: the same set, compiled in 0.1 ms
# where the ranges up to U+10FFFF took 4.5 ms of every start-up).
_UNSAFE = re.compile("[^\t\x20-\x7e\x80-\xff]")


@dataclass(slots=True, frozen=True)
class StaticHeaders:
    """Headers that are the same for every message, computed once from the settings.

    The settings model validated these values already, so they are not checked per message.
    """

    mime_type: str
    user_agent: str
    queue_name: str
    http_path: str
    # Receives after which SQS dead-letters a failing message (see attempt_limit); None: unknown.
    max_receive_count: int | None = None
    # trace_headers: forward the producer's trace context (pipeline/trace_context.py).
    trace_headers: bool = False

    def base(self) -> dict[str, str]:
        """The leading headers, in the stock order."""
        return {
            "Content-Type": self.mime_type,
            "User-Agent": self.user_agent,
            "Accept-Encoding": "gzip, compressed",
        }


def attempt_limit(*limits: int | None) -> int | None:
    """The receive count of a message's last attempt before it is dead-lettered, or None.

    The one place that decides it: pass every known limit (today the redrive policy's
    ``maxReceiveCount``; a daemon-side retry cap goes here too); the smallest wins.
    """
    known = [limit for limit in limits if limit is not None and limit > 0]
    return min(known) if known else None


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
        return _iso_seconds(int(value) // 1000)
    except (ValueError, OverflowError, OSError):
        return None


@functools.lru_cache(maxsize=512)
def _iso_seconds(seconds: int) -> str:
    # Messages received together share their timestamps' seconds: formatting is cached.
    return time.strftime("%Y-%m-%dT%H:%M:%SZ", time.gmtime(seconds))


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
    request.headers = static.base()
    candidates: list[tuple[str, str | None]] = [
        ("X-Aws-Sqsd-Msgid", message.message_id),
        ("X-Aws-Sqsd-Receive-Count", attrs.get("ApproximateReceiveCount")),
        ("X-Aws-Sqsd-First-Received-At", iso_from_epoch_ms(attrs.get("ApproximateFirstReceiveTimestamp"))),
        ("X-Aws-Sqsd-Sent-At", iso_from_epoch_ms(attrs.get("SentTimestamp"))),
    ]
    for name, value in candidates:
        if value is not None:
            _add(request, name, value)
    request.headers["X-Aws-Sqsd-Queue"] = static.queue_name
    _add(request, "X-Aws-Sqsd-Path", path)
    sender = attrs.get("SenderId")
    if sender is not None:
        _add(request, "X-Aws-Sqsd-Sender-Id", sender)
    if static.max_receive_count is not None:
        _add_attempt_headers(request, message, static.max_receive_count)
    if task:
        for name, value in (
            ("X-Aws-Sqsd-Taskname", _task_attr(message, TASK_NAME_ATTR)),
            ("X-Aws-Sqsd-Scheduled-At", iso_from_task_time(_task_attr(message, TASK_TIME_ATTR))),
        ):
            if value is not None:
                _add(request, name, value)
    _add_attributes(request, message)
    if static.trace_headers:
        add_trace_headers(request, message)
    return request


def _add_attempt_headers(request: Request, message: Message, limit: int) -> None:
    # asqsd extensions (not X-Aws-Sqsd-*): sent only when the limit is known; Last-Attempt only
    # when SQS said the receive count.
    request.headers["X-Asqsd-Max-Receive-Count"] = str(limit)
    receive_count = message.receive_count
    if receive_count > 0:
        request.headers["X-Asqsd-Last-Attempt"] = "true" if receive_count >= limit else "false"


def _valid_path(path: str) -> bool:
    return path.startswith("/") and unsafe_value_reason(path) is None and not any(c.isspace() for c in path)


def _task_attr(message: Message, name: str) -> str | None:
    attr = message.message_attributes.get(name)
    return attr.string_value if attr is not None else None


def _add(request: Request, name: str, value: str) -> None:
    if _UNSAFE.search(value) is not None:
        request.skipped.append((name, f"value {unsafe_value_reason(value)}"))
        return
    request.headers[name] = value


def _add_attributes(request: Request, message: Message) -> None:
    for attr_name, attr in message.message_attributes.items():
        if attr_name.startswith(RESERVED_PREFIX):
            continue
        if not attr.data_type.startswith(("String", "Number")) or attr.string_value is None:
            continue  # Binary attributes are dropped, as the stock daemon does
        if _TOKEN.fullmatch(attr_name) is None:
            request.skipped.append((attr_name, "attribute name is not a valid header name"))
            continue
        header = wire_name("X-Aws-Sqsd-Attr-" + attr_name)
        if header in request.headers:
            request.skipped.append((attr_name, f"duplicate header {header}"))
            continue
        _add(request, header, attr.string_value)


# --- SNS envelopes ------------------------------------------------------------------------------
_REQUIRED_STRINGS = ("Message", "TopicArn", "MessageId")


def unwrap_sns(body: str) -> str | None:
    """The published message if ``body`` is an SNS notification envelope, else None.

    Anything that is not exactly that shape (other SNS types such as ``SubscriptionConfirmation``,
    JSON that is not an object, non-string fields, invalid or absurdly nested JSON) yields None
    so the caller delivers the body unchanged. Never raises.
    """
    # Cheap pre-filter: most bodies are not JSON objects, and json.loads is the costly part.
    if not isinstance(body, str) or not body.lstrip().startswith("{"):
        return None
    try:
        envelope = json.loads(body)
    except (ValueError, RecursionError):
        # ValueError covers JSONDecodeError and over-long integer literals; RecursionError a
        # body of thousands of nested brackets.
        return None
    if not isinstance(envelope, dict) or envelope.get("Type") != "Notification":
        return None
    if not all(isinstance(envelope.get(key), str) for key in _REQUIRED_STRINGS):
        return None
    message: str = envelope["Message"]
    try:
        message.encode("utf-8")
    except UnicodeEncodeError:
        return None  # a lone surrogate (JSON "\ud800"): not deliverable as bytes; keep the envelope
    return message
