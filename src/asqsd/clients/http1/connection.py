"""One HTTP/1.1 keep-alive connection as an asyncio Protocol, and how an exchange can fail.

A request is one ``transport.write``; the response is fed to a ResponseParser as it arrives and
a per-connection timer bounds it. Failures are typed (:class:`Failure`) so each client can word
them as its callers expect.
"""

from __future__ import annotations

import asyncio
import enum
import os
import ssl
from typing import TYPE_CHECKING, Final, cast

from asqsd.clients.http1.parser import ProtocolError, ResponseParser

if TYPE_CHECKING:
    from asqsd.clients.http1.pool import KeepAlivePool

# Re-arming the idle timer for less than this would only spin: fire instead (timers can run a
# clock tick early, and uvloop's clock has millisecond resolution).
_TIMER_SLOP_S: Final = 0.005


def describe_os_error(exc: OSError) -> str:
    # asyncio's strerror is "Connect call failed (address)", which hides *why*; the errno says it.
    # SSL errors carry OpenSSL codes in errno, so their own text is the useful part.
    if isinstance(exc, ssl.SSLError) or not exc.errno:
        return str(exc.strerror or exc)
    return os.strerror(exc.errno)


class Failure(enum.Enum):
    """How an exchange failed; each client turns it into its own error wording."""

    PROTOCOL = enum.auto()  # the response is not valid HTTP/1.x (``error``: the ProtocolError)
    TIMEOUT = enum.auto()  # the inactivity limit or the request's deadline passed
    DISCONNECTED = enum.auto()  # the server closed (``error`` None) or reset (``error``) the connection
    CLIENT_CLOSED = enum.auto()  # the pool closed the connection under the request
    POOL_CLOSED = enum.auto()  # the pool closed while the request was connecting
    CONNECT_TIMEOUT = enum.auto()
    CONNECT_FAILED = enum.auto()  # ``error``: the OSError
    PROXY = enum.auto()  # the tunnel's proxy was unreachable or refused (``error``: the ProxyError)
    NO_SLOT = enum.auto()  # no connection became free before the request's deadline


class ExchangeError(Exception):
    """A pooled request failed; ``kind`` says how, ``resends`` whether it had been re-sent."""

    def __init__(
        self,
        kind: Failure,
        error: BaseException | None = None,
        *,
        started: bool = False,
        written: bool = True,
    ) -> None:
        super().__init__(kind.name if error is None else f"{kind.name}: {error}")
        self.kind = kind
        self.error = error
        self.started = started  # some of the response had arrived (DISCONNECTED only)
        # The socket took the request without an error (DISCONNECTED only): the server may have
        # read it and acted on it, so re-sending it could make it act twice.
        self.written = written
        self.resends = 0


class Connection(asyncio.Protocol):
    """One keep-alive connection of a :class:`KeepAlivePool`; at most one request at a time."""

    __slots__ = (
        "_drained",
        "_idle_timeout",
        "_last_activity",
        "_loop",
        "_pool",
        "_timer",
        "_waiter",
        "_written",
        "closed",
        "idle_since",
        "parser",
        "transport",
    )

    def __init__(self, pool: KeepAlivePool, loop: asyncio.AbstractEventLoop) -> None:
        self._pool = pool
        self._loop = loop
        self._idle_timeout = pool.idle_timeout_s  # None: each request's deadline bounds it instead
        self._last_activity = 0.0
        self._timer: asyncio.TimerHandle | None = None
        self._waiter: asyncio.Future[None] | None = None
        self._written = False  # the socket took the current request without an error
        self._drained: asyncio.Future[None] | None = None  # set while the transport paused writing
        self.idle_since = 0.0  # when the connection last went back to the pool (pool's clock)
        self.transport: asyncio.Transport | None = None
        self.parser = ResponseParser(
            pool.max_head_bytes, capture_limit=pool.max_body_bytes, snippet_limit=pool.snippet_bytes
        )
        self.closed = False

    # --- asyncio.Protocol callbacks --------------------------------------------------------
    def connection_made(self, transport: asyncio.BaseTransport) -> None:
        # uvloop's transports implement asyncio.Transport without subclassing it: no isinstance.
        self.transport = cast(asyncio.Transport, transport)
        self._pool._opened(self)

    def data_received(self, data: bytes) -> None:
        waiter = self._waiter
        if waiter is None:
            # Bytes on an idle connection: nothing asked for them, so the stream can no longer be
            # trusted to line up with our next request.
            self.close()
            return
        # Only the inactivity limit reads this, but recording it always is cheaper per chunk
        # than asking which limit applies.
        self._last_activity = self._loop.time()
        try:
            complete = self.parser.feed(data)
        except ProtocolError as exc:
            self._fail(ExchangeError(Failure.PROTOCOL, exc))
            return
        if complete:
            self._waiter = None
            if self._idle_timeout is None:
                self._cancel_timer()  # this request's deadline timer; an idle timer stays armed
            if not waiter.done():  # the requesting task may have been cancelled this iteration
                waiter.set_result(None)

    def eof_received(self) -> bool:
        # Mark at once so the pool never hands out a connection the peer has half-closed;
        # returning False lets the transport close, and connection_lost settles any request.
        self.closed = True
        return False

    def pause_writing(self) -> None:
        # Only a streamed body writes enough to fill the transport's buffer (see write_body).
        if self._drained is None:
            self._drained = self._loop.create_future()

    def resume_writing(self) -> None:
        drained, self._drained = self._drained, None
        if drained is not None and not drained.done():
            drained.set_result(None)

    def connection_lost(self, exc: Exception | None) -> None:
        self.closed = True
        self.resume_writing()  # a streamed body waiting for room: let it see the close
        self._cancel_timer()
        self._pool._lost(self)
        waiter, self._waiter = self._waiter, None
        if waiter is None or waiter.done():
            return
        parser = self.parser
        if parser.feed_eof():
            waiter.set_result(None)  # a body delimited by the close
            return
        waiter.set_exception(
            ExchangeError(Failure.DISCONNECTED, exc, started=parser.started, written=self._written)
        )

    # --- request / response ------------------------------------------------------------------
    def send(self, data: bytes, deadline: float | None) -> asyncio.Future[None]:
        """Write one request; the future completes when ``parser`` holds the whole response.

        A plain function returning the future rather than a coroutine: one coroutine frame less
        on the hot path. Whoever awaits it must :meth:`close` the connection if the await fails.
        ``deadline`` (loop time) applies only without an inactivity limit.
        """
        transport = self.transport
        assert transport is not None and self._waiter is None
        loop = self._loop
        waiter = self._waiter = loop.create_future()
        self.parser.reset()
        self._last_activity = now = loop.time()
        if self._timer is None:
            idle = self._idle_timeout
            if idle is None:
                if deadline is not None:  # a timer per request, cancelled when it completes
                    self._timer = loop.call_at(deadline, self._on_timer)
            elif idle > 0:  # a timer per connection: see _on_timer
                self._timer = loop.call_at(now + idle, self._on_timer)
        transport.write(data)
        # A write the socket refused (reset or closed under us) closes the transport at once:
        # then the server cannot have read the request. Anything else may have reached it.
        self._written = not transport.is_closing()
        return waiter

    async def write_body(self, chunk: bytes) -> None:
        """Write one chunk of a streamed body after :meth:`send` sent its head, then wait while
        the transport's buffer is over its high-water mark (backpressure: a delivery holds at
        most about one chunk plus that buffer). Progress counts as activity for the inactivity
        limit, so a long upload is not a silent worker."""
        transport = self.transport
        assert transport is not None
        transport.write(chunk)
        self._last_activity = self._loop.time()
        if self._drained is not None:
            await self._drained

    def reusable(self) -> bool:
        """Whether the last exchange left the connection clean for another request."""
        transport = self.transport
        return (
            not self.closed
            and self.parser.keep_alive
            and not self.parser.extra
            and transport is not None
            and not transport.is_closing()
            # The server answered before reading our whole body: what it has not read yet
            # would be parsed as the next request.
            and not transport.get_write_buffer_size()
        )

    def _on_timer(self) -> None:
        # The inactivity timer is one per connection, re-armed only when it fires early:
        # data_received merely records the time, so a trickling response costs no timer churn per
        # chunk. A deadline timer is one per request and never early.
        self._timer = None
        if self._waiter is None or self.closed:
            return  # idle: the next exchange arms a fresh timer
        idle = self._idle_timeout
        if idle is not None:
            deadline = self._last_activity + idle
            if deadline - self._loop.time() > _TIMER_SLOP_S:
                self._timer = self._loop.call_at(deadline, self._on_timer)
                return
        self._fail(ExchangeError(Failure.TIMEOUT))

    def _fail(self, failure: ExchangeError) -> None:
        waiter, self._waiter = self._waiter, None
        if waiter is not None and not waiter.done():
            waiter.set_exception(failure)
        self.close()

    def _cancel_timer(self) -> None:
        if self._timer is not None:
            self._timer.cancel()
            self._timer = None

    def close(self) -> None:
        """Drop the connection at once (unsent data is discarded); a pending request fails."""
        waiter, self._waiter = self._waiter, None
        if waiter is not None and not waiter.done():
            waiter.set_exception(ExchangeError(Failure.CLIENT_CLOSED))
        self.closed = True
        self._cancel_timer()
        if self.transport is not None:
            self.transport.abort()
