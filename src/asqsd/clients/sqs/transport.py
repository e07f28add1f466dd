"""The lean SQS client's HTTP transport: signed POSTs over the shared HTTP/1.1 keep-alive engine.

Unlike the worker client it keeps response bodies (bounded) and bounds each call by a total
deadline; TLS is verified with the default context (or the one given) for https endpoints, and
an HTTP proxy, when given, carries every connection.
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
from asqsd.clients.http1.proxy import HTTPProxy
from asqsd.clients.http1.request import encode_request


def request_url(endpoint_url: str) -> str:
    """The URL botocore POSTs JSON-protocol operations to (requestUri ``/`` joined to the endpoint)."""
    parts = urlsplit(endpoint_url)
    # botocore's _urljoin keeps the endpoint's own path (or "/" when there is none) and its query.
    return urlunsplit((parts.scheme, parts.netloc, parts.path or "/", parts.query, ""))


MAX_RESPONSE_BYTES = 16 * 1024 * 1024


_QUERY_ERROR_RE = re.compile(rb"\r\nx-amzn-query-error:[ \t]*([^\r\n]*)", re.IGNORECASE)


def _request_start(url: str, forward_to: HTTPProxy | None) -> tuple[str, int]:
    """The request line (and lines) every POST starts with, and how many lines that is.

    Origin form (``POST /path``) to the server itself or through a tunnel; absolute form (``POST
    http://host/path``) and the proxy's credentials when ``forward_to`` forwards the request.
    """
    parts = urlsplit(url)
    target = parts.path or "/"
    if parts.query:
        target = f"{target}?{parts.query}"
    if forward_to is None:
        return f"POST {target} HTTP/1.1\r\n", 1
    line = f"POST http://{http_address(url).host_header}{target} HTTP/1.1\r\n"
    if forward_to.authorization is None:
        return line, 1
    return f"{line}Proxy-Authorization: {forward_to.authorization}\r\n", 2


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

    With a ``proxy``, an https endpoint is reached through a ``CONNECT`` tunnel (TLS end to end,
    checked against the endpoint host) and an http one by sending each request to the proxy in
    absolute form (``POST http://host/ HTTP/1.1``), as botocore, urllib3 and aiohttp do: every
    forward proxy accepts that, while many allow CONNECT to port 443 only. Either way the choice
    is made here, once: a request costs the same with or without a proxy.
    """

    def __init__(
        self,
        url: str,
        *,
        connections: int = 32,
        max_body_bytes: int = MAX_RESPONSE_BYTES,
        ssl_context: ssl.SSLContext | None = None,
        proxy: HTTPProxy | None = None,
    ) -> None:
        try:
            address = http_address(url)
        except ValueError:
            raise ValueError(f"SQS endpoint must be http(s)://host[:port][/path]: {url!r}") from None
        https = address.scheme == "https"
        self.proxy = proxy
        """The proxy every connection goes through, or None."""
        self._forwarding = proxy is not None and not https
        self._request_line, self._start_lines = _request_start(url, proxy if self._forwarding else None)
        host, port = address.host, address.port
        if proxy is not None and self._forwarding:
            host, port = proxy.host, proxy.port  # the proxy forwards each request
        super().__init__(
            host,
            port,
            connections,
            ssl_context=(ssl_context or ssl.create_default_context()) if https else None,
            idle_timeout_s=None,  # every call has its own total deadline instead
            connect_timeout_s=None,  # so has connecting
            max_body_bytes=max_body_bytes,
            tunnel=proxy if https else None,
        )
        self._address = f"{address.host}:{address.port}"  # as aiohttp names it: no IPv6 brackets

    def serialize(self, headers: Mapping[str, str], body: bytes) -> bytes:
        """The request bytes: the signer's headers (Host included), Content-Length, the body."""
        # Signed values come from botocore's config and credentials; still refuse header splitting.
        return encode_request(self._request_line, self._start_lines, headers, body)

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
                return self._connect_error(exc.error)
            case Failure.NO_SLOT:
                return TransportError("TimeoutError", "no free connection before the deadline")
            case Failure.PROXY:
                assert self.proxy is not None
                return TransportError("ProxyConnectionError", f"proxy {self.proxy.address} {exc.error}")

    def _connect_error(self, error: BaseException | None) -> TransportError:
        # Named like botocore's errors for the same cases (ProxyConnectionError when the proxy
        # cannot be reached), so both SQS clients report a proxy problem alike.
        proxy = self.proxy
        if proxy is None:
            return TransportError("ClientConnectorError", f"Cannot connect to host {self._address}: {error}")
        if self._forwarding:
            return TransportError("ProxyConnectionError", f"Cannot connect to proxy {proxy.address}: {error}")
        message = f"Cannot connect to host {self._address} through proxy {proxy.address}: {error}"
        return TransportError("ClientConnectorError", message)
