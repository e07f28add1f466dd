"""The lean SQS client's HTTP transport: signed POSTs over the shared HTTP/1.1 keep-alive engine.

Unlike the worker client it keeps response bodies (bounded) and bounds each call by a total
deadline; TLS is verified with the default context for https endpoints.
"""

from __future__ import annotations

import asyncio
import re
import ssl
from collections.abc import Mapping
from urllib.parse import urlsplit, urlunsplit

from asqsd.addresses import http_address
from asqsd.clients.http1.connection import ExchangeError, Failure
from asqsd.clients.http1.pool import KeepAlivePool
from asqsd.clients.http1.request import encode_request


def request_url(endpoint_url: str) -> str:
    """The URL botocore POSTs JSON-protocol operations to (requestUri ``/`` joined to the endpoint)."""
    parts = urlsplit(endpoint_url)
    # botocore's _urljoin keeps the endpoint's own path (or "/" when there is none) and its query.
    return urlunsplit((parts.scheme, parts.netloc, parts.path or "/", parts.query, ""))


MAX_RESPONSE_BYTES = 16 * 1024 * 1024


_QUERY_ERROR_RE = re.compile(rb"\r\nx-amzn-query-error:[ \t]*([^\r\n]*)", re.IGNORECASE)


class TransportError(Exception):
    """A lean-transport exchange failed (connect, disconnect, timeout, protocol, size limit).

    ``name`` plays the role of the aiohttp exception class name in the resulting
    :class:`SQSError`'s code.
    """

    def __init__(self, name: str, message: str) -> None:
        super().__init__(message)
        self.name = name


class LeanHTTPTransport(KeepAlivePool):
    """HTTP/1.1 keep-alive POSTs to one SQS endpoint: an :class:`asqsd.clients.http1.pool.KeepAlivePool`.

    At most ``connections`` connections exist (a ReceiveMessage long poll holds one for up to its
    ``WaitTimeSeconds``); more concurrent calls wait for a free one, within their deadline. Every
    :meth:`post` has a *total* deadline covering the wait for a connection, connecting, TLS, sending
    and reading the whole response. A reused connection the server had closed while idle is retried
    once at once on a new connection. https endpoints are verified against the system trust store
    (``ssl.create_default_context()``, or ``ssl_context``) with the endpoint host as SNI/hostname.
    """

    def __init__(
        self,
        url: str,
        *,
        connections: int = 32,
        max_body_bytes: int = MAX_RESPONSE_BYTES,
        ssl_context: ssl.SSLContext | None = None,
    ) -> None:
        try:
            address = http_address(url)
        except ValueError:
            raise ValueError(f"SQS endpoint must be http(s)://host[:port][/path]: {url!r}") from None
        super().__init__(
            address.host,
            address.port,
            connections,
            ssl_context=(ssl_context or ssl.create_default_context()) if address.scheme == "https" else None,
            idle_timeout_s=None,  # every call has its own total deadline instead
            connect_timeout_s=None,  # so has connecting
            max_body_bytes=max_body_bytes,
        )
        self._address = f"{address.host}:{address.port}"  # as aiohttp names it: no IPv6 brackets
        parts = urlsplit(url)
        target = parts.path or "/"
        if parts.query:
            target = f"{target}?{parts.query}"
        self._request_line = f"POST {target} HTTP/1.1\r\n"

    def serialize(self, headers: Mapping[str, str], body: bytes) -> bytes:
        """The request bytes: the signer's headers (Host included), Content-Length, the body."""
        # Signed values come from botocore's config and credentials; still refuse header splitting.
        return encode_request(self._request_line, 1, headers, body)

    async def post(self, data: bytes, timeout_s: float) -> tuple[int, bytes, str | None]:
        """Send one serialized request; (status, body, x-amzn-query-error) or TransportError."""
        if self._closing:
            raise TransportError("ClientConnectionError", "transport is closed")
        deadline = asyncio.get_running_loop().time() + timeout_s
        try:
            parser, _resends = await self._request(data, deadline)
        except ExchangeError as exc:
            raise self._transport_error(exc) from None
        status = parser.status
        query_error = None
        if status >= 300:
            match = _QUERY_ERROR_RE.search(parser.head)
            if match is not None:
                query_error = match[1].strip(b" \t").decode("latin-1")
        return status, bytes(parser.body), query_error

    def _transport_error(self, exc: ExchangeError) -> TransportError:
        """The failure, named like the aiohttp exception the aiohttp transport would raise."""
        match exc.kind:
            case Failure.PROTOCOL:
                return TransportError("ProtocolError", str(exc.error))
            case Failure.TIMEOUT:
                return TransportError("TimeoutError", "request deadline exceeded")
            case Failure.DISCONNECTED:
                reason = "Server disconnected" if exc.error is None else f"Connection lost: {exc.error}"
                message = f"{reason} mid-response" if exc.started else reason
                return TransportError("ServerDisconnectedError", message)
            case Failure.CLIENT_CLOSED:
                return TransportError("ClientConnectionError", "client closed")
            case Failure.POOL_CLOSED:
                return TransportError("ClientConnectionError", "transport is closed")
            case Failure.CONNECT_TIMEOUT:
                return TransportError("TimeoutError", "connect deadline exceeded")
            case Failure.CONNECT_FAILED:
                message = f"Cannot connect to host {self._address}: {exc.error}"
                return TransportError("ClientConnectorError", message)
            case Failure.NO_SLOT:
                return TransportError("TimeoutError", "no free connection before the deadline")
