"""The default worker client: POSTs over the shared HTTP/1.1 keep-alive engine.

Same interface and semantics as the aiohttp client (:mod:`asqsd.clients.worker.aiohttp_impl`)
at a fraction of its CPU per POST: a request is one pre-built ``bytes`` and only the status and
Retry-After are read from the response. What it deliberately does not do (proxies, redirects,
cookies, decompression, pipelining, HTTP/2) is listed in docs/http-client.md.
"""

from __future__ import annotations

import ssl
import time
from collections.abc import Callable

from asqsd.addresses import http_address
from asqsd.clients.http1.connection import ExchangeError, Failure, describe_os_error
from asqsd.clients.http1.parser import MAX_HEAD_BYTES, ResponseParser
from asqsd.clients.http1.pool import KeepAlivePool
from asqsd.clients.http1.request import encode_head, encode_request
from asqsd.clients.worker.base import (
    RETRY_AFTER_STATUSES,
    BodyStream,
    BodyStreamError,
    DeliveryResult,
    Request,
    parse_retry_after,
    wire_target,
)


class LeanWorkerClient(KeepAlivePool):
    """POSTs requests to the worker at ``base_url`` over a pool of keep-alive connections.

    Same interface and semantics as :class:`asqsd.clients.worker.aiohttp_impl.WorkerClient`:
    ``post`` never raises for a delivery problem, it returns a
    :class:`~asqsd.clients.worker.base.DeliveryResult` with the status, or an error string
    (``connect timeout``, ``inactivity timeout``, ``connection failed: ...``, ``server
    disconnected ...``, ``protocol error: ...``). At most ``connections`` connections exist;
    more concurrent posts than that wait for a free one. ``request.headers`` must not contain
    ``Host``, ``Content-Length`` or ``Transfer-Encoding``: those are the client's.

    ``keepalive_idle_s`` bounds how long a connection may sit idle and still be reused (None: no
    bound); ``response_bytes`` how much of a non-2xx body ``DeliveryResult.response_start`` keeps.
    """

    def __init__(
        self,
        base_url: str,
        connect_timeout_s: float,
        inactivity_timeout_s: float,
        connections: int,
        *,
        max_head_bytes: int = MAX_HEAD_BYTES,
        ssl_context: ssl.SSLContext | None = None,
        keepalive_idle_s: float | None = None,
        response_bytes: int = 0,
        clock: Callable[[], float] = time.monotonic,
    ) -> None:
        try:
            address = http_address(base_url)
        except ValueError:
            raise ValueError(f"worker URL must be http(s)://host[:port]: {base_url!r}") from None
        super().__init__(
            address.host,
            address.port,
            connections,
            ssl_context=(ssl_context or ssl.create_default_context()) if address.scheme == "https" else None,
            idle_timeout_s=inactivity_timeout_s,
            connect_timeout_s=connect_timeout_s,
            max_head_bytes=max_head_bytes,
            snippet_bytes=response_bytes,
            max_idle_s=keepalive_idle_s,
            # A request the worker may have read is never re-sent at once (docs/http-client.md).
            resend_after_write=False,
            clock=clock,
        )
        self._base_url = base_url.rstrip("/")
        self._host_line = f"Host: {address.host_header}\r\n"
        self._request_lines: dict[str, str] = {}

    @property
    def base_url(self) -> str:
        """``scheme://host:port`` of the worker."""
        return self._base_url

    async def post(self, request: Request) -> DeliveryResult:
        """Deliver once; re-send once at once only if a reused connection refused the request."""
        if self._closing:
            raise RuntimeError("LeanWorkerClient is closed")
        if request.stream is not None:
            return await self._post_streamed(request, request.stream)
        started = time.monotonic()
        data = self.serialize(request)
        try:
            parser, resends = await self._request(data, None)
        except ExchangeError as exc:
            return DeliveryResult(None, _delivery_error(exc), time.monotonic() - started, None, exc.resends)
        return _result(parser, started, resends)

    async def _post_streamed(self, request: Request, stream: BodyStream) -> DeliveryResult:
        """POST a streamed body (never re-sent); a body that fails mid-way raises
        :class:`BodyStreamError` after the connection was cut off."""
        started = time.monotonic()
        head = encode_head(self._request_line(request.path), 2, request.headers, stream.length)
        try:
            parser = await self._request_streamed(head, stream.chunks, stream.length)
        except ExchangeError as exc:
            return DeliveryResult(None, _delivery_error(exc), time.monotonic() - started)
        except Exception as exc:
            raise BodyStreamError(str(exc)) from exc
        return _result(parser, started, 0)

    async def close(self) -> None:
        """Close every connection (idle and busy) and wait briefly until they are gone."""
        await self.aclose()

    async def __aenter__(self) -> LeanWorkerClient:
        return self

    async def __aexit__(self, *_exc: object) -> None:
        await self.close()

    # --- request bytes --------------------------------------------------------------------------
    def serialize(self, request: Request) -> bytes:
        """The request bytes; ValueError for a CR or LF in a header (aiohttp refuses those too)."""
        # Header values were validated upstream; encode_request's count check still guarantees
        # that nothing smuggled into a name or value can split the request.
        return encode_request(self._request_line(request.path), 2, request.headers, request.body)

    def _request_line(self, path: str) -> str:
        line = self._request_lines.get(path)
        if line is None:
            # Few distinct paths exist (http_path and the cron task paths): cache the lines.
            if len(self._request_lines) >= 256:
                self._request_lines.clear()
            target = wire_target(self._base_url, path)
            line = self._request_lines[path] = f"POST {target} HTTP/1.1\r\n{self._host_line}"
        return line


def _result(parser: ResponseParser, started: float, resends: int) -> DeliveryResult:
    """The DeliveryResult of a response: Retry-After and the body's start only where they count."""
    status = parser.status
    if status in RETRY_AFTER_STATUSES:
        return DeliveryResult(
            status,
            None,
            time.monotonic() - started,
            parse_retry_after(parser.retry_after),
            resends,
            parser.snippet,
            parser.pause_seconds,
        )
    elapsed = time.monotonic() - started
    if status >= 300:
        return DeliveryResult(status, None, elapsed, None, resends, parser.snippet, parser.pause_seconds)
    return DeliveryResult(status, None, elapsed, None, resends, b"", parser.pause_seconds)


def _delivery_error(exc: ExchangeError) -> str:
    """DeliveryResult.error for a failed exchange, worded like aiohttp's WorkerClient."""
    match exc.kind:
        case Failure.PROTOCOL:
            return f"protocol error: {exc.error}"
        case Failure.TIMEOUT:
            return "inactivity timeout"
        case Failure.DISCONNECTED:
            reason = "server disconnected" if exc.error is None else f"connection lost: {exc.error}"
            return f"{reason} {'mid-response' if exc.started else 'before responding'}"
        case Failure.CLIENT_CLOSED | Failure.POOL_CLOSED:
            return "client closed"
        case Failure.CONNECT_TIMEOUT:
            return "connect timeout"
        case Failure.CONNECT_FAILED:
            assert isinstance(exc.error, OSError)
            return f"connection failed: {describe_os_error(exc.error)}"
        case Failure.NO_SLOT:  # posts wait for a connection without a deadline
            return "no free connection"
        case Failure.PROXY:  # not expected: the worker client never goes through a proxy
            return f"proxy error: {exc.error}"
