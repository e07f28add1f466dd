"""HTTP proxies for the HTTP/1.1 engine: the proxy's address and a ``CONNECT`` tunnel through it.

Only a pool given a :class:`HTTPProxy` as its ``tunnel`` ever goes through a proxy (the lean SQS
transport, when the environment names one); the worker client never does. Everything here runs
once per connection, never per request: after :func:`open_tunnel` the connection is an ordinary
keep-alive :class:`~asqsd.clients.http1.connection.Connection` whose bytes happen to pass the proxy.
"""

from __future__ import annotations

import asyncio
import base64
import re
import ssl
from collections.abc import Callable
from dataclasses import dataclass
from typing import Final, cast
from urllib.parse import unquote, urlsplit

from asqsd.addresses import join_host_port, url_address
from asqsd.clients.http1.connection import Connection, describe_os_error

# The status line of the proxy's answer to CONNECT (the reason phrase is optional).
_STATUS_RE: Final = re.compile(rb"HTTP/1\.[01] ([0-9]{3})(?: ([^\r\n]*))?\r\n")


class ProxyError(Exception):
    """The proxy could not be reached, refused the tunnel, or answered something else than HTTP."""


@dataclass(frozen=True, slots=True)
class HTTPProxy:
    """A plain-HTTP proxy: where it listens and the ``Proxy-Authorization`` value, if any.

    ``authorization`` holds credentials: never log it; :attr:`address` is what logs may show.
    """

    host: str
    port: int
    authorization: str | None = None

    @classmethod
    def from_url(cls, url: str) -> HTTPProxy:
        """``http://[user:password@]host[:port]`` (port 80 by default); ValueError otherwise.

        Credentials in the URL are percent-decoded and sent as Basic authentication, as curl,
        urllib3 and aiohttp do. A TLS (``https://``) proxy is not supported.
        """
        parts = urlsplit(url)
        if parts.scheme != "http":
            raise ValueError(f"only http:// proxies are supported, not {parts.scheme or 'no'} scheme")
        address = url_address(url)  # ValueError without a host or with a bad port
        authorization = None
        if parts.username is not None:
            userinfo = f"{unquote(parts.username)}:{unquote(parts.password or '')}"
            authorization = "Basic " + base64.b64encode(userinfo.encode()).decode("ascii")
        return cls(address.host, address.port, authorization)

    @property
    def address(self) -> str:
        """``host:port``, safe to log."""
        return join_host_port(self.host, self.port)

    def connect_request(self, host: str, port: int) -> bytes:
        """The ``CONNECT host:port`` request that asks the proxy for a tunnel."""
        target = join_host_port(host, port)
        auth = "" if self.authorization is None else f"Proxy-Authorization: {self.authorization}\r\n"
        return f"CONNECT {target} HTTP/1.1\r\nHost: {target}\r\n{auth}\r\n".encode()


class _ConnectReply(asyncio.Protocol):
    """Collects the proxy's answer to CONNECT: ``head`` completes with what has arrived once the
    header section is complete (the header section, and anything after it)."""

    def __init__(self, limit: int) -> None:
        self._limit = limit
        self._buffer = bytearray()
        self._transport: asyncio.Transport | None = None
        self.head: asyncio.Future[bytes] = asyncio.get_running_loop().create_future()

    def connection_made(self, transport: asyncio.BaseTransport) -> None:
        self._transport = cast(asyncio.Transport, transport)  # uvloop's do not subclass it

    def data_received(self, data: bytes) -> None:
        if self.head.done():
            # The proxy spoke again before the TLS handshake: the stream is out of step, and
            # dropping it makes the handshake fail rather than go on with bytes missing.
            assert self._transport is not None
            self._transport.abort()
            return
        self._buffer += data
        if self._buffer.find(b"\r\n\r\n") >= 0:
            self.head.set_result(bytes(self._buffer))
        elif len(self._buffer) > self._limit:
            self.head.set_exception(ProxyError(f"answered CONNECT with more than {self._limit} bytes"))

    def eof_received(self) -> bool:
        return False  # close; connection_lost settles the future

    def connection_lost(self, exc: Exception | None) -> None:
        if not self.head.done():
            reason = "closed the connection" if exc is None else f"lost the connection ({exc})"
            self.head.set_exception(ProxyError(f"{reason} before answering CONNECT"))


def _check_reply(reply: bytes, target: str) -> None:
    """Raise ProxyError unless ``reply`` is a 2xx answer and nothing more (the tunnel is up)."""
    match = _STATUS_RE.match(reply)
    if match is None:
        raise ProxyError(f"answered CONNECT {target} with something else than HTTP: {reply[:80]!r}")
    status = int(match[1])
    if not 200 <= status < 300:
        reason = (match[2] or b"").decode("latin-1").strip()
        raise ProxyError(f"refused CONNECT {target}: HTTP {status} {reason}".rstrip())
    if reply.find(b"\r\n\r\n") + 4 != len(reply):
        # A tunnel carries nothing from the proxy itself after the answer (RFC 9110, 9.3.6).
        raise ProxyError(f"sent data after its answer to CONNECT {target}")


async def open_tunnel(
    proxy: HTTPProxy,
    host: str,
    port: int,
    protocol_factory: Callable[[], Connection],
    ssl_context: ssl.SSLContext | None,
    max_head_bytes: int,
) -> Connection:
    """A connection to ``host:port`` through ``proxy``: CONNECT, then TLS (if ``ssl_context``).

    The TLS handshake runs over the tunnel with ``host`` as server name, so the certificate is
    checked against the target, not the proxy. Failing to reach the proxy, or a refusal, raises
    :class:`ProxyError`; a TLS failure raises the usual ``ssl.SSLError``. The caller bounds the
    time. Nothing is left open on failure or cancellation.
    """
    loop = asyncio.get_running_loop()
    try:
        transport, reply = await loop.create_connection(
            lambda: _ConnectReply(max_head_bytes), proxy.host, proxy.port
        )
    except OSError as exc:
        raise ProxyError(f"cannot be reached: {describe_os_error(exc)}") from None
    try:
        transport.write(proxy.connect_request(host, port))
        _check_reply(await reply.head, join_host_port(host, port))
        conn = protocol_factory()
        if ssl_context is None:
            transport.set_protocol(conn)
            conn.connection_made(transport)  # set_protocol does not call it
            return conn
        tls = await loop.start_tls(transport, conn, ssl_context, server_hostname=host)
        if tls is None:  # typeshed allows it; asyncio returns None only for a closed transport
            raise ConnectionResetError("the tunnel closed during the TLS handshake")
        conn.connection_made(tls)  # start_tls does not call it
        return conn
    except BaseException:
        transport.abort()
        raise
