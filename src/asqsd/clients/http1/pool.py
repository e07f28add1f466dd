"""The keep-alive connection pool shared by the worker client and the lean SQS transport.

A bounded set of :class:`~asqsd.clients.http1.connection.Connection` objects to one host; callers
wait for a slot in FIFO order. One engine for both clients: the worker client discards response
bodies and bounds a call by inactivity, the SQS transport keeps bodies and bounds a call by a total
deadline; the pool takes those differences at construction (docs/http-client.md).
"""

from __future__ import annotations

import asyncio
import collections
import ssl
import time
from collections.abc import AsyncIterator, Callable

from asqsd.clients.http1.connection import Connection, ExchangeError, Failure
from asqsd.clients.http1.parser import MAX_HEAD_BYTES, ResponseParser
from asqsd.clients.http1.proxy import HTTPProxy, ProxyError, open_tunnel

"""Largest response header section (status line + headers, or chunk line / trailers) accepted."""


class KeepAlivePool:
    """At most ``connections`` HTTP/1.1 keep-alive connections to one server, one request each.

    The base of both lean clients: :class:`LeanWorkerClient` (bodies discarded, an
    inactivity limit) and :class:`asqsd.clients.sqs.transport.LeanHTTPTransport` (bodies captured, a total
    deadline per call). What differs is chosen here, at construction, so that the per-request path
    has nothing to decide:

    * ``idle_timeout_s``: a request fails once no response byte has arrived for this long (0 or
      less: never). None bounds each request by the ``deadline`` given to :meth:`_request` instead.
    * ``connect_timeout_s``: the limit on connecting, TLS included; None leaves it to the deadline.
    * ``max_body_bytes``: keep response bodies up to this size in ``parser.body`` (larger ones are
      a :class:`ProtocolError`); None discards them as they arrive.
    * ``snippet_bytes``: with bodies discarded, keep this many first bytes of a non-2xx response's
      body in ``parser.snippet`` (0: none).
    * ``tunnel``: reach the server through this proxy's ``CONNECT`` tunnel (TLS, if any, runs
      inside it). None, the default, connects directly: only a caller that asks gets a proxy.

    * ``max_idle_s``: never reuse a connection idle for longer than this (a server's keep-alive
      timer may be closing it just as the request arrives); None reuses any open one.
    * ``resend_after_write``: whether a reused connection the server closed before the first
      response byte has the request re-sent (see below) even though the socket took it.
    * ``clock``: the monotonic clock ``max_idle_s`` is measured with (tests control it).

    Idle connections are reused last-in first-out (the warmest first); one the server closed while
    idle is dropped as soon as its close arrives. A server that closes a *reused* connection before
    the first response byte dropped it as idle just as we reused it: the request is re-sent once,
    at once, on a new connection. Never twice, never after a new connection fails that way, never
    once any of the response has arrived, and without ``resend_after_write`` only when the socket
    refused the request (then the server cannot have read it).
    """

    def __init__(
        self,
        host: str,
        port: int,
        connections: int,
        *,
        ssl_context: ssl.SSLContext | None,
        idle_timeout_s: float | None,
        connect_timeout_s: float | None,
        max_head_bytes: int = MAX_HEAD_BYTES,
        max_body_bytes: int | None = None,
        tunnel: HTTPProxy | None = None,
        snippet_bytes: int = 0,
        max_idle_s: float | None = None,
        resend_after_write: bool = True,
        clock: Callable[[], float] = time.monotonic,
    ) -> None:
        if connections < 1:
            raise ValueError("connections must be at least 1")
        self._host = host
        self._port = port
        self._ssl = ssl_context
        self._tunnel = tunnel
        self.limit = connections
        """At most this many connections exist at once."""
        self.idle_timeout_s = idle_timeout_s
        self._connect_timeout_s = connect_timeout_s
        self.max_head_bytes = max_head_bytes
        self.max_body_bytes = max_body_bytes
        self.snippet_bytes = snippet_bytes
        self._max_idle_s = max_idle_s
        self._resend_after_write = resend_after_write
        self._clock = clock
        self._closing = False  # set by aclose(); no request may start after that
        self._idle: list[Connection] = []  # LIFO: the most recently used is the warmest
        self._all: set[Connection] = set()
        self._slots_used = 0
        self._slot_waiters: collections.deque[asyncio.Future[None]] = collections.deque()
        self._all_lost: asyncio.Future[None] | None = None

    @property
    def open_connections(self) -> int:
        """Connections open (idle or busy), not counting ones already being torn down."""
        return sum(1 for conn in self._all if not conn.closed)

    @property
    def idle_connections(self) -> int:
        """Open connections waiting in the pool."""
        return len(self._idle)

    async def _request(self, data: bytes, deadline: float | None) -> tuple[ResponseParser, int]:
        """Send ``data`` (one whole request); (the parser holding the response, re-sends made).

        Read the parser before the next ``await``: its connection is back in the pool, and the
        next request on it resets the parser. ``deadline`` (loop time, or None) bounds waiting for
        a connection, connecting and, without an inactivity limit, the exchange. Failures raise
        :class:`ExchangeError`.
        """
        if self._slots_used < self.limit and not self._slot_waiters:
            self._slots_used += 1  # the usual case, without a coroutine call
        else:
            await self._wait_for_slot(deadline)
        try:
            resends = 0
            conn = self._take_idle()
            if conn is not None:
                try:
                    return await self._exchange(conn, data, deadline), 0
                except ExchangeError as exc:
                    if exc.kind is not Failure.DISCONNECTED or exc.started:
                        raise
                    if exc.written and not self._resend_after_write:
                        raise  # the server may have read it: re-sending could do the work twice
                # The server closed the idle connection as we reused it: re-send at once on a new
                # one, like the stock daemon, but only once so that a server that always closes
                # cannot make us loop.
                resends = 1
            try:
                return await self._exchange(await self._connect(deadline), data, deadline), resends
            except ExchangeError as exc:
                exc.resends = resends
                raise
        finally:
            self._release_slot()

    async def _request_streamed(
        self, head: bytes, chunks: AsyncIterator[bytes], length: int
    ) -> ResponseParser:
        """Send ``head`` then exactly ``length`` bytes from ``chunks``; the parser holding the
        response. Never re-sent (the body cannot be replayed). When ``chunks`` raises or yields
        more or fewer bytes, the connection is closed mid-body and that error (or ValueError) is
        raised: the server never reads a short body as a complete one."""
        if self._slots_used < self.limit and not self._slot_waiters:
            self._slots_used += 1
        else:
            await self._wait_for_slot(None)
        try:
            conn = self._take_idle() or await self._connect(None)
            response = conn.send(head, None)
            try:
                await _stream_body(conn, response, chunks, length)
            except BaseException:
                conn.close()  # mid-body or failed: the stream cannot be trusted any more
                if response.done() and not response.cancelled():
                    response.exception()  # retrieved: the body's own failure is the one reported
                raise
            return self._finished(conn)
        finally:
            self._release_slot()

    async def aclose(self) -> None:
        """Close every connection (idle and busy) and wait briefly until they are gone."""
        self._closing = True
        for conn in list(self._all):
            conn.close()
        self._idle.clear()
        if self._all:
            self._all_lost = asyncio.get_running_loop().create_future()
            # Transports report connection_lost on a later loop iteration; waiting keeps tests and
            # shutdown free of "unclosed transport" warnings. Bounded: never hang on close.
            await asyncio.wait({self._all_lost}, timeout=1.0)

    async def _exchange(self, conn: Connection, data: bytes, deadline: float | None) -> ResponseParser:
        """One request on ``conn``; the connection goes back to the pool (or is closed) after."""
        try:
            await conn.send(data, deadline)
        except BaseException:
            # Failed, timed out or cancelled (daemon shutdown): the stream is in an unknown
            # state, so the connection is never reused.
            conn.close()
            raise
        return self._finished(conn)

    def _finished(self, conn: Connection) -> ResponseParser:
        """After a complete exchange: ``conn`` back to the pool if it is clean, else closed."""
        if conn.reusable() and not self._closing:
            conn.idle_since = self._clock()
            self._idle.append(conn)
        else:
            conn.close()
        return conn.parser

    def _take_idle(self) -> Connection | None:
        idle = self._idle
        oldest = None if self._max_idle_s is None else self._clock() - self._max_idle_s
        while idle:
            conn = idle.pop()
            transport = conn.transport
            if oldest is not None and conn.idle_since < oldest:
                # Idle too long: the server's keep-alive timer may fire as our request arrives.
                # The rest of the stack went idle even earlier.
                for stale in (conn, *idle):
                    stale.close()
                idle.clear()
                return None
            if not conn.closed and transport is not None and not transport.is_closing():
                return conn
            conn.close()
        return None

    async def _connect(self, deadline: float | None) -> Connection:
        loop = asyncio.get_running_loop()
        if self._connect_timeout_s is not None:
            limit = loop.time() + self._connect_timeout_s
            deadline = limit if deadline is None else min(deadline, limit)
        try:
            async with asyncio.timeout_at(deadline):
                if self._tunnel is None:
                    _transport, conn = await loop.create_connection(
                        lambda: Connection(self, loop),
                        self._host,
                        self._port,
                        ssl=self._ssl,
                        server_hostname=self._host if self._ssl is not None else None,
                    )
                else:
                    conn = await open_tunnel(
                        self._tunnel,
                        self._host,
                        self._port,
                        lambda: Connection(self, loop),
                        self._ssl,
                        self.max_head_bytes,
                    )
        except TimeoutError:
            raise ExchangeError(Failure.CONNECT_TIMEOUT) from None
        except ProxyError as exc:
            raise ExchangeError(Failure.PROXY, exc) from None
        except OSError as exc:
            raise ExchangeError(Failure.CONNECT_FAILED, exc) from None
        if self._closing:  # aclose() ran while we were connecting: do not leak this one
            conn.close()
            raise ExchangeError(Failure.POOL_CLOSED)
        return conn

    # --- bookkeeping (called by connections) ------------------------------------------------
    def _opened(self, conn: Connection) -> None:
        self._all.add(conn)

    def _lost(self, conn: Connection) -> None:
        self._all.discard(conn)
        if conn in self._idle:  # the peer closed an idle connection: forget it now
            self._idle.remove(conn)
        if not self._all and self._all_lost is not None and not self._all_lost.done():
            self._all_lost.set_result(None)

    # --- the connection limit ---------------------------------------------------------------------
    async def _wait_for_slot(self, deadline: float | None) -> None:
        waiter = asyncio.get_running_loop().create_future()
        self._slot_waiters.append(waiter)
        try:
            async with asyncio.timeout_at(deadline):
                await waiter  # _release_slot hands its slot over without decrementing
        except (asyncio.CancelledError, TimeoutError) as exc:
            if waiter.done() and not waiter.cancelled():
                self._release_slot()  # granted and cancelled in the same iteration: pass it on
            else:
                self._slot_waiters.remove(waiter)
            if isinstance(exc, TimeoutError):
                raise ExchangeError(Failure.NO_SLOT) from None
            raise

    def _release_slot(self) -> None:
        waiters = self._slot_waiters
        while waiters:
            waiter = waiters.popleft()
            if not waiter.done():
                waiter.set_result(None)
                return
        self._slots_used -= 1


async def _stream_body(
    conn: Connection, response: asyncio.Future[None], chunks: AsyncIterator[bytes], length: int
) -> None:
    """Write ``chunks`` after the head, then wait for the response. A server that answers early
    (before reading the whole body) ends the upload: its answer is what counts, and
    :meth:`Connection.reusable` then refuses to reuse the half-read connection."""
    sent = 0
    async for chunk in chunks:
        if response.done() or conn.closed:
            break
        sent += len(chunk)
        if sent > length:
            raise ValueError(f"body stream longer than its {length} bytes")
        await conn.write_body(chunk)
    else:
        if sent != length:
            raise ValueError(f"body stream ended after {sent} of {length} bytes")
    await response
