"""The aiohttp worker client (``http_client: aiohttp``): POST a message, report what happened.

Timeouts follow the stock daemon: ``connect_timeout`` bounds connecting; ``inactivity_timeout``
is an idle timer (aiohttp's ``sock_read``), reset whenever response bytes arrive, so a slow
streaming response longer than the timeout still succeeds. The response body is read to the
end and discarded chunk by chunk: never buffered.
"""

from __future__ import annotations

import time
from collections.abc import AsyncIterator
from typing import Any

import aiohttp

from asqsd.clients.worker.base import (
    PAUSE_HEADER,
    RETRY_AFTER_STATUSES,
    BodyStream,
    BodyStreamError,
    DeliveryResult,
    Request,
    parse_retry_after,
)


class WorkerClient:
    """POSTs requests to ``base_url`` over a pooled keep-alive session owned by the caller."""

    def __init__(
        self,
        session: aiohttp.ClientSession,
        base_url: str,
        connect_timeout_s: float,
        inactivity_timeout_s: float,
        *,
        response_bytes: int = 0,
    ) -> None:
        self._session = session
        self._response_bytes = response_bytes
        self._base_url = base_url
        self._timeout = aiohttp.ClientTimeout(
            total=None, connect=None, sock_connect=connect_timeout_s, sock_read=inactivity_timeout_s
        )

    @property
    def base_url(self) -> str:
        """``scheme://host:port`` of the worker."""
        return self._base_url

    async def post(self, request: Request) -> DeliveryResult:
        """Deliver once; never re-sent at once (aiohttp cannot tell whether the worker read it).

        A connection the worker closed while idle is dropped by aiohttp when the close arrives,
        and none idle longer than ``keepalive_idle_s`` of :func:`create_session` is reused.
        """
        started = time.monotonic()
        failed: list[BaseException] = []  # what a streamed body's source raised, if it did
        try:
            status, retry_after, start, pause = await self._post_once(
                self._base_url + request.path, request, failed
            )
        except TimeoutError as exc:
            return DeliveryResult(None, _timeout_reason(exc), time.monotonic() - started)
        except aiohttp.ClientError as exc:
            if failed:  # aiohttp cut the connection because the body's source failed
                raise BodyStreamError(str(failed[0])) from failed[0]
            return DeliveryResult(None, _describe(exc), time.monotonic() - started)
        return DeliveryResult(status, None, time.monotonic() - started, retry_after, 0, start, pause)

    async def _post_once(
        self, url: str, request: Request, failed: list[BaseException]
    ) -> tuple[int, int | None, bytes, str | None]:
        data: Any = request.body
        headers = request.headers
        if request.stream is not None:  # Content-Length given: aiohttp sends it, not chunked
            data = _checked(request.stream, failed)
            headers = {**headers, "Content-Length": str(request.stream.length)}
        async with self._session.post(
            url,
            data=data,
            headers=headers,
            timeout=self._timeout,
            allow_redirects=False,
        ) as response:
            # Drain, keeping at most the first bytes of a failure's body for the log: the idle
            # timer restarts on every chunk.
            start = b""
            room = self._response_bytes if response.status >= 300 else 0
            while chunk := await response.content.readany():
                if room:
                    start += chunk[:room]
                    room -= len(chunk[:room])
            retry_after = None
            if response.status in RETRY_AFTER_STATUSES:
                retry_after = parse_retry_after(response.headers.get("Retry-After"))
            return response.status, retry_after, start, response.headers.get(PAUSE_HEADER)


async def _checked(stream: BodyStream, failed: list[BaseException]) -> AsyncIterator[bytes]:
    """``stream``'s chunks, raising (after noting it in ``failed``) when they fail or do not add
    up to its length: aiohttp then closes the connection mid-body."""
    sent = 0
    try:
        async for chunk in stream.chunks:
            sent += len(chunk)
            if sent > stream.length:
                raise ValueError(f"body stream longer than its {stream.length} bytes")
            yield chunk
        if sent != stream.length:
            raise ValueError(f"body stream ended after {sent} of {stream.length} bytes")
    except Exception as exc:
        failed.append(exc)
        raise


def _timeout_reason(exc: TimeoutError) -> str:
    if isinstance(exc, aiohttp.ConnectionTimeoutError):
        return "connect timeout"
    if isinstance(exc, aiohttp.SocketTimeoutError):
        return "inactivity timeout"
    return "timeout"


def _describe(exc: aiohttp.ClientError) -> str:
    if isinstance(exc, aiohttp.ClientConnectorError):
        return f"connection failed: {exc.os_error.strerror or exc.os_error}"
    text = str(exc)
    return f"{type(exc).__name__}: {text}" if text else type(exc).__name__


def create_session(
    connections: int, user_agent: str, keepalive_idle_s: float = 15.0
) -> aiohttp.ClientSession:
    """The worker session: a pool of ``connections`` keep-alive connections, no decompression;
    a connection idle for more than ``keepalive_idle_s`` is not reused (aiohttp checks on taking it)."""
    connector = aiohttp.TCPConnector(
        limit=connections, limit_per_host=0, enable_cleanup_closed=False, keepalive_timeout=keepalive_idle_s
    )
    return aiohttp.ClientSession(
        connector=connector,
        cookie_jar=aiohttp.DummyCookieJar(),  # the stock daemon never sends cookies back
        auto_decompress=False,  # the body is discarded; never spend CPU inflating it
        skip_auto_headers=("Accept",),  # the stock daemon sends no Accept header
        headers={"User-Agent": user_agent},
        raise_for_status=False,
    )
