"""What every worker client shares: the request it sends, the result it returns, its interface.

The pipeline builds a :class:`Request` and hands it to a :class:`WorkerPoster`; either
implementation (``lean_impl`` by default, ``aiohttp_impl`` as the fallback) answers with a
:class:`DeliveryResult` and never raises for a delivery problem.
"""

from __future__ import annotations

import email.utils
import functools
import time
from collections.abc import AsyncIterator
from dataclasses import dataclass, field
from typing import Protocol

from yarl import URL

RETRY_AFTER_STATUSES = frozenset({429, 503})


@dataclass(slots=True, frozen=True)
class BodyStream:
    """A body streamed into the POST instead of ``Request.body`` (an S3 payload): exactly
    ``length`` bytes from ``chunks``. If ``chunks`` raises or yields fewer bytes, the client
    closes the connection mid-body, so the worker never sees a short body as a complete one."""

    length: int
    chunks: AsyncIterator[bytes]


class BodyStreamError(Exception):
    """A :class:`BodyStream` failed or ended early; the POST was cut off mid-body."""


PAUSE_HEADER = "X-Asqsd-Pause-Seconds"
"""The response header a worker pauses asqsd's intake with (an asqsd extension; ``pause_control``)."""


@dataclass(slots=True)
class Request:
    """What to POST for one message."""

    path: str
    body: bytes
    headers: dict[str, str]
    skipped: list[tuple[str, str]] = field(default_factory=list)  # (header or attribute, reason)
    error: str | None = None  # set when the message cannot be delivered at all
    stream: BodyStream | None = None  # when set, POSTed instead of ``body``


@dataclass(slots=True, frozen=True)
class DeliveryResult:
    """The outcome of one POST: a status, or an error description when no response came."""

    status: int | None
    error: str | None
    elapsed_s: float
    retry_after_s: int | None = None
    stale_resends: int = 0
    response_start: bytes = b""  # the first bytes of a non-2xx response's body (log_response_bytes)
    pause_header: str | None = None  # the worker's X-Asqsd-Pause-Seconds, unparsed (asqsd extension)


@functools.lru_cache(maxsize=256)
def wire_target(base_url: str, path: str) -> str:
    """The request target both clients put on the request line for ``path``: yarl normalises and
    percent-encodes it exactly as aiohttp's request does. Few distinct paths exist (http_path and
    the cron task paths): cached."""
    return URL(base_url + path).raw_path_qs


def parse_retry_after(value: str | None, now: float | None = None) -> int | None:
    """Retry-After as whole seconds from now (delta-seconds or an HTTP date); None if malformed."""
    if value is None:
        return None
    value = value.strip()
    if value.isdigit():
        return int(value)
    try:
        when = email.utils.parsedate_to_datetime(value)
    except (TypeError, ValueError, IndexError):
        return None
    if when.tzinfo is None:
        return None
    delta = when.timestamp() - (time.time() if now is None else now)
    return max(0, int(delta + 0.999))


class WorkerPoster(Protocol):
    """What a dispatcher needs of a worker client (aiohttp :class:`WorkerClient` or the lean one)."""

    @property
    def base_url(self) -> str:
        """``scheme://host:port`` of the worker."""
        ...

    async def post(self, request: Request) -> DeliveryResult:
        """Deliver one request; raises only :class:`BodyStreamError`, when the source of a
        streamed body failed (a delivery problem is a result)."""
        ...
