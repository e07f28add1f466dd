"""A lean HTTP/1.1 keep-alive client for one job: POST a message to the worker, read the status.

:class:`LeanWorkerClient` is a drop-in for :class:`asqsd.worker.WorkerClient` (same ``post`` and
:class:`~asqsd.worker.DeliveryResult`, same timeout and stale-connection semantics) built directly on
asyncio Protocols. aiohttp's per-request machinery (request/response objects, multidict headers,
payload registry, per-request timers, tracing hooks) was ~90 µs of CPU per delivery; here a request
is one pre-built ``bytes`` written with one ``transport.write``, and the response is parsed by
:class:`ResponseParser`, which only looks at the status and the four headers that matter and
discards the body as it arrives.

The connections and their pool (:class:`KeepAlivePool`) also carry the lean SQS transport
(:class:`asqsd.sqs_lean.LeanHTTPTransport`), which keeps the bodies and bounds each call by a total
deadline instead of an inactivity limit; the pool takes those differences at construction.

What it deliberately does not do (see docs/http-client.md): proxies, redirects, cookies,
decompression (bodies are discarded unread), request pipelining, HTTP/2.
"""

from __future__ import annotations

import asyncio
import collections
import enum
import os
import re
import ssl
import time
from typing import Final, cast

from yarl import URL

from asqsd.headers import Request
from asqsd.worker import DeliveryResult, parse_retry_after

MAX_HEAD_BYTES: Final = 64 * 1024
"""Largest response header section (status line + headers, or chunk line / trailers) accepted."""

_RETRY_AFTER_STATUSES: Final = frozenset({429, 503})
_NO_BODY_STATUSES: Final = frozenset({204, 304})
# Re-arming the idle timer for less than this would only spin: fire instead (timers can run a
# clock tick early, and uvloop's clock has millisecond resolution).
_TIMER_SLOP_S: Final = 0.005

# The whole header section, validated by one C-speed regex instead of per-line checks: a status
# line, then ``token ":" value`` lines. Values may hold anything but CR and LF; obs-fold
# continuation lines, spaces before the colon and bare LFs all fail to match (strict parsing).
# Possessive quantifiers: nothing here ever needs to backtrack, and not recording it is faster.
_HEAD_RE: Final = re.compile(
    rb"HTTP/1\.([01]) ([0-9]{3})(?: [^\r\n]*+)?+(?:\r\n[!#$%&'*+\-.^_`|~0-9A-Za-z]++:[^\r\n]*+)*+"
)
_FIELDS_RE: Final = re.compile(
    rb"\r\n(content-length|transfer-encoding|connection|retry-after):([^\r\n]*)", re.IGNORECASE
)
_HEX_RE: Final = re.compile(rb"[0-9A-Fa-f]{1,16}")

# Parser states.
_HEAD: Final = 0
_LENGTH: Final = 1
_UNTIL_CLOSE: Final = 2
_CHUNK_SIZE: Final = 3
_CHUNK_DATA: Final = 4
_CHUNK_END: Final = 5
_TRAILERS: Final = 6
_DONE: Final = 7


class ProtocolError(Exception):
    """The worker's response is not valid HTTP/1.x (as far as this client cares to check)."""


class ResponseParser:
    """Incremental, strict HTTP/1.x response parser that keeps the status and discards the body.

    Feed it bytes in any chunking with :meth:`feed` until it returns True, then read ``status``,
    ``keep_alive`` and ``retry_after``. Memory is bounded: at most ``limit`` + 4 bytes are held,
    whatever the server sends; anything larger raises :class:`ProtocolError`.

    With ``capture_limit`` set (body-capturing mode, used by the SQS client) the parser also keeps
    the final response's header section in ``head`` (without the final CRLFCRLF) and its decoded
    body (chunk framing removed) in ``body``; a body larger than ``capture_limit`` bytes raises
    :class:`ProtocolError`. Without it (the default) the body is discarded as before.
    """

    __slots__ = (
        "_buf",
        "_capture_limit",
        "_limit",
        "_remaining",
        "_state",
        "_trailer_bytes",
        "body",
        "extra",
        "head",
        "keep_alive",
        "retry_after",
        "started",
        "status",
    )

    def __init__(self, limit: int = MAX_HEAD_BYTES, *, capture_limit: int | None = None) -> None:
        self._limit = limit
        self._capture_limit = capture_limit
        self._buf = bytearray()
        self.body = bytearray()
        self.reset()

    def reset(self) -> None:
        """Prepare for the next response on the same connection."""
        self._state = _HEAD
        self._buf.clear()
        self._remaining = 0
        self._trailer_bytes = 0
        self.status = 0
        self.keep_alive = False
        self.retry_after: str | None = None
        self.started = False  # any byte of this response seen (then a disconnect is not "stale")
        self.extra = 0  # bytes received after the end of the response (unsolicited)
        self.head = b""  # capturing mode only: the final response's header section
        if self._capture_limit is not None:
            self.body = bytearray()  # a fresh one: the previous response's may still be in use

    @property
    def buffered(self) -> int:
        """Bytes held right now (never more than ``limit`` + 4)."""
        return len(self._buf)

    @property
    def done(self) -> bool:
        """Whether a complete final response has been parsed."""
        return self._state == _DONE

    def feed(self, data: bytes) -> bool:
        """Consume ``data``; True once the response is complete (later bytes count in ``extra``)."""
        if data:
            self.started = True
        pos, end = 0, len(data)
        while pos < end:
            state = self._state
            if state == _HEAD:
                pos = self._feed_head(data, pos)
            elif state in (_LENGTH, _CHUNK_DATA):
                take = min(self._remaining, end - pos)
                if self._capture_limit is not None:
                    self._capture(data, pos, take)
                pos += take
                self._remaining -= take
                if not self._remaining:
                    self._state = _DONE if state == _LENGTH else _CHUNK_END
            elif state == _UNTIL_CLOSE:
                if self._capture_limit is not None:
                    self._capture(data, pos, end - pos)
                return False  # the body runs to EOF
            elif state == _DONE:
                self.extra += end - pos
                return True
            else:
                pos = self._feed_chunk_framing(data, pos)
        return self._state == _DONE

    def _capture(self, data: bytes, pos: int, take: int) -> None:
        limit = self._capture_limit
        assert limit is not None
        if len(self.body) + take > limit:
            raise ProtocolError(f"response body larger than {limit} bytes")
        self.body += data[pos : pos + take]

    def feed_eof(self) -> bool:
        """The peer closed: True if that completes the response (a body delimited by close)."""
        if self._state == _UNTIL_CLOSE:
            self._state = _DONE
        return self._state == _DONE

    # --- header section ----------------------------------------------------------------------
    def _feed_head(self, data: bytes, pos: int) -> int:
        buf, limit = self._buf, self._limit
        if not buf:
            # Fast path: the whole header section usually arrives in one piece.
            found = data.find(b"\r\n\r\n", pos, pos + limit + 4)
            if found >= 0:
                self._parse_head(data[pos:found])
                return found + 4
            taken = min(len(data), pos + limit + 4) - pos
            buf += data[pos : pos + taken]
            self._check_buffer()
            return pos + taken
        # The terminator may straddle the boundary: search from the last 3 buffered bytes. Never
        # copy more than the limit allows, however big ``data`` is.
        start = max(0, len(buf) - 3)
        before = len(buf)
        buf += data[pos : pos + limit + 4 - before]
        found = buf.find(b"\r\n\r\n", start)
        if found < 0:
            self._check_buffer()
            return pos + len(buf) - before
        head = bytes(buf[:found])
        buf.clear()
        self._parse_head(head)
        return pos + found + 4 - before

    def _check_buffer(self) -> None:
        # Up to 3 bytes of an unfinished terminator may sit beyond the limit; _parse_head
        # checks the exact size once the terminator is complete.
        if len(self._buf) > self._limit + 3:
            raise ProtocolError(f"response header section larger than {self._limit} bytes")

    def _parse_head(self, head: bytes) -> None:
        if len(head) > self._limit:
            raise ProtocolError(f"response header section larger than {self._limit} bytes")
        parsed = _HEAD_CACHE.get(head)
        if parsed is None:
            parsed = _analyse_head(head)
            if len(head) <= _CACHEABLE_HEAD_BYTES:
                if len(_HEAD_CACHE) >= _HEAD_CACHE_ENTRIES:
                    _HEAD_CACHE.clear()
                _HEAD_CACHE[head] = parsed
        if parsed[0] < 200:
            return  # interim response (100 Continue, 103 Early Hints): the final one follows
        if self._capture_limit is not None:
            self.head = head
            if parsed[2] == _LENGTH and parsed[3] > self._capture_limit:
                raise ProtocolError(f"response body larger than {self._capture_limit} bytes")
        self.status, self.keep_alive, self._state, self._remaining, self.retry_after = parsed

    # --- chunked framing -----------------------------------------------------------------------
    def _feed_chunk_framing(self, data: bytes, pos: int) -> int:
        line, pos = self._take_line(data, pos)
        if line is None:
            return pos
        state = self._state
        if state == _CHUNK_SIZE:
            size = _chunk_size(line)
            self._remaining = size
            self._state = _CHUNK_DATA if size else _TRAILERS
        elif state == _CHUNK_END:
            if line:
                raise ProtocolError("chunk data longer than its size")
            self._state = _CHUNK_SIZE
        elif not line:  # _TRAILERS: the empty line ends the message
            self._state = _DONE
        else:
            self._trailer_bytes += len(line) + 2
            if self._trailer_bytes > self._limit:
                raise ProtocolError(f"trailer section larger than {self._limit} bytes")
        return pos

    def _take_line(self, data: bytes, pos: int) -> tuple[bytes | None, int]:
        """One CRLF-terminated line (without the CRLF), or (None, end) after buffering a part."""
        buf = self._buf
        if buf and buf[-1] == 13 and data[pos : pos + 1] == b"\n":  # CRLF split across reads
            line = bytes(buf[:-1])
            buf.clear()
            return line, pos + 1
        # Search only as far as a line within the limit could reach: a longer one is an error,
        # and it is never copied.
        room = self._limit - len(buf)
        found = data.find(b"\r\n", pos, pos + room + 2)
        if found < 0:
            end = min(len(data), pos + room + 1)
            buf += data[pos:end]
            if len(buf) > self._limit:
                raise ProtocolError(f"chunk or trailer line longer than {self._limit} bytes")
            return None, end
        if buf:
            line = bytes(buf) + data[pos:found]
            buf.clear()
        else:
            line = data[pos:found]
        return line, found + 2


# status, keep_alive, parser state for the body, bytes remaining (Content-Length), Retry-After
_Head = tuple[int, bool, int, int, str | None]
# A worker answers with the same head again and again (only Date changes, once a second), so a
# small cache of validated heads skips the regexes for nearly every response. Bounded: at most
# _HEAD_CACHE_ENTRIES heads of at most _CACHEABLE_HEAD_BYTES each (256 KiB).
_HEAD_CACHE: dict[bytes, _Head] = {}
_HEAD_CACHE_ENTRIES: Final = 256
_CACHEABLE_HEAD_BYTES: Final = 1024


def _analyse_head(head: bytes) -> _Head:
    """Validate a complete response head (without the final CRLFCRLF) and read what matters."""
    match = _HEAD_RE.fullmatch(head)
    if match is None:
        raise ProtocolError(f"malformed response head: {head[:80]!r}")
    status = int(match[2])
    if status < 200:
        if status == 101:  # we never ask to upgrade
            raise ProtocolError("unexpected 101 Switching Protocols")
        return status, False, _HEAD, 0, None
    length: int | None = None
    chunked = has_te = False
    connection = b""
    retry_after = None
    # Only four fields matter; one C-speed findall picks them out of the validated head.
    for raw_name, value in _FIELDS_RE.findall(head):
        name = raw_name.lower()
        if name == b"content-length":
            length = _content_length(value, length)
        elif name == b"transfer-encoding":
            has_te = True
            # Only the final coding says how the body ends; an earlier "chunked" is wrong.
            chunked = value.rsplit(b",", 1)[-1].strip(b" \t").lower() == b"chunked"
        elif name == b"connection":
            connection += b"," + value.lower()
        else:
            retry_after = value.strip(b" \t").decode("latin-1")
    # HTTP/1.1 keeps the connection unless told to close; HTTP/1.0 closes unless asked not to.
    if match[1] == b"1":
        keep_alive = not connection or not _has_token(connection, b"close")
    else:
        keep_alive = bool(connection) and _has_token(connection, b"keep-alive")
    state, remaining, keep_alive = _framing(status, length, chunked, has_te, keep_alive)
    return status, keep_alive, state, remaining, retry_after


def _framing(
    status: int, length: int | None, chunked: bool, has_te: bool, keep_alive: bool
) -> tuple[int, int, bool]:
    """How the body ends: (parser state, Content-Length, whether the connection can be reused)."""
    if status in _NO_BODY_STATUSES:
        return _DONE, 0, keep_alive
    if has_te:
        if length is not None:  # a request-smuggling shape; aiohttp rejects it too
            raise ProtocolError("both Transfer-Encoding and Content-Length")
        # Not chunked last: the body runs until the server closes.
        return (_CHUNK_SIZE, 0, keep_alive) if chunked else (_UNTIL_CLOSE, 0, False)
    if length is not None:
        return (_LENGTH if length else _DONE), length, keep_alive
    return _UNTIL_CLOSE, 0, False


def _has_token(value: bytes, token: bytes) -> bool:
    return token in [part.strip(b" \t") for part in value.split(b",")]


def _content_length(value: bytes, previous: int | None) -> int:
    digits = value.strip(b" \t")
    if not digits.isdigit():
        raise ProtocolError(f"invalid Content-Length: {value[:40]!r}")
    length = int(digits)
    if previous is not None and previous != length:
        raise ProtocolError("conflicting Content-Length headers")
    return length


def _chunk_size(line: bytes) -> int:
    size = line.split(b";", 1)[0].strip(b" \t")  # chunk extensions are ignored
    if _HEX_RE.fullmatch(size) is None:
        raise ProtocolError(f"invalid chunk size line: {line[:40]!r}")
    return int(size, 16)


def _describe_os_error(exc: OSError) -> str:
    # asyncio's strerror is "Connect call failed (address)", which hides *why*; the errno says it.
    # SSL errors carry OpenSSL codes in errno, so their own text is the useful part.
    if isinstance(exc, ssl.SSLError) or not exc.errno:
        return str(exc.strerror or exc)
    return os.strerror(exc.errno)


# --- connections and the pool ------------------------------------------------------------------
# One connection class and one pool serve both lean clients, which subclass the pool:
# LeanWorkerClient below and the SQS transport (asqsd.sqs_lean.LeanHTTPTransport). They live here,
# beside the parser they drive, so that the worker client's whole per-message path is one module
# and sqs_lean only adds what is SQS's.


class Failure(enum.Enum):
    """How an exchange failed; each client turns it into its own error wording."""

    PROTOCOL = enum.auto()  # the response is not valid HTTP/1.x (``error``: the ProtocolError)
    TIMEOUT = enum.auto()  # the inactivity limit or the request's deadline passed
    DISCONNECTED = enum.auto()  # the server closed (``error`` None) or reset (``error``) the connection
    CLIENT_CLOSED = enum.auto()  # the pool closed the connection under the request
    POOL_CLOSED = enum.auto()  # the pool closed while the request was connecting
    CONNECT_TIMEOUT = enum.auto()
    CONNECT_FAILED = enum.auto()  # ``error``: the OSError
    NO_SLOT = enum.auto()  # no connection became free before the request's deadline


class ExchangeError(Exception):
    """A pooled request failed; ``kind`` says how, ``resends`` whether it had been re-sent."""

    def __init__(self, kind: Failure, error: BaseException | None = None, *, started: bool = False) -> None:
        super().__init__(kind.name if error is None else f"{kind.name}: {error}")
        self.kind = kind
        self.error = error
        self.started = started  # some of the response had arrived (DISCONNECTED only)
        self.resends = 0


class _Connection(asyncio.Protocol):
    """One keep-alive connection of a :class:`KeepAlivePool`; at most one request at a time."""

    __slots__ = (
        "_idle_timeout",
        "_last_activity",
        "_loop",
        "_pool",
        "_timer",
        "_waiter",
        "closed",
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
        self.transport: asyncio.Transport | None = None
        self.parser = ResponseParser(pool.max_head_bytes, capture_limit=pool.max_body_bytes)
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

    def connection_lost(self, exc: Exception | None) -> None:
        self.closed = True
        self._cancel_timer()
        self._pool._lost(self)
        waiter, self._waiter = self._waiter, None
        if waiter is None or waiter.done():
            return
        parser = self.parser
        if parser.feed_eof():
            waiter.set_result(None)  # a body delimited by the close
            return
        waiter.set_exception(ExchangeError(Failure.DISCONNECTED, exc, started=parser.started))

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
        return waiter

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


class KeepAlivePool:
    """At most ``connections`` HTTP/1.1 keep-alive connections to one server, one request each.

    The base of both lean clients: :class:`LeanWorkerClient` (bodies discarded, an
    inactivity limit) and :class:`asqsd.sqs_lean.LeanHTTPTransport` (bodies captured, a total
    deadline per call). What differs is chosen here, at construction, so that the per-request path
    has nothing to decide:

    * ``idle_timeout_s``: a request fails once no response byte has arrived for this long (0 or
      less: never). None bounds each request by the ``deadline`` given to :meth:`_request` instead.
    * ``connect_timeout_s``: the limit on connecting, TLS included; None leaves it to the deadline.
    * ``max_body_bytes``: keep response bodies up to this size in ``parser.body`` (larger ones are
      a :class:`ProtocolError`); None discards them as they arrive.

    Idle connections are reused last-in first-out (the warmest first). A server that closes a
    *reused* connection before the first response byte dropped it as idle just as we reused it: the
    request is re-sent once, at once, on a new connection. Never twice, never after a new connection
    fails that way, never once any of the response has arrived.
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
    ) -> None:
        if connections < 1:
            raise ValueError("connections must be at least 1")
        self._host = host
        self._port = port
        self._ssl = ssl_context
        self.limit = connections
        """At most this many connections exist at once."""
        self.idle_timeout_s = idle_timeout_s
        self._connect_timeout_s = connect_timeout_s
        self.max_head_bytes = max_head_bytes
        self.max_body_bytes = max_body_bytes
        self._closing = False  # set by aclose(); no request may start after that
        self._idle: list[_Connection] = []  # LIFO: the most recently used is the warmest
        self._all: set[_Connection] = set()
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

    async def _exchange(self, conn: _Connection, data: bytes, deadline: float | None) -> ResponseParser:
        """One request on ``conn``; the connection goes back to the pool (or is closed) after."""
        try:
            await conn.send(data, deadline)
        except BaseException:
            # Failed, timed out or cancelled (daemon shutdown): the stream is in an unknown
            # state, so the connection is never reused.
            conn.close()
            raise
        if conn.reusable() and not self._closing:
            self._idle.append(conn)
        else:
            conn.close()
        return conn.parser

    def _take_idle(self) -> _Connection | None:
        idle = self._idle
        while idle:
            conn = idle.pop()
            transport = conn.transport
            if not conn.closed and transport is not None and not transport.is_closing():
                return conn
            conn.close()
        return None

    async def _connect(self, deadline: float | None) -> _Connection:
        loop = asyncio.get_running_loop()
        if self._connect_timeout_s is not None:
            limit = loop.time() + self._connect_timeout_s
            deadline = limit if deadline is None else min(deadline, limit)
        try:
            async with asyncio.timeout_at(deadline):
                _transport, conn = await loop.create_connection(
                    lambda: _Connection(self, loop),
                    self._host,
                    self._port,
                    ssl=self._ssl,
                    server_hostname=self._host if self._ssl is not None else None,
                )
        except TimeoutError:
            raise ExchangeError(Failure.CONNECT_TIMEOUT) from None
        except OSError as exc:
            raise ExchangeError(Failure.CONNECT_FAILED, exc) from None
        if self._closing:  # aclose() ran while we were connecting: do not leak this one
            conn.close()
            raise ExchangeError(Failure.POOL_CLOSED)
        return conn

    # --- bookkeeping (called by connections) ------------------------------------------------
    def _opened(self, conn: _Connection) -> None:
        self._all.add(conn)

    def _lost(self, conn: _Connection) -> None:
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


# --- the worker client ----------------------------------------------------------------------------


class LeanWorkerClient(KeepAlivePool):
    """POSTs requests to the worker at ``base_url`` over a pool of keep-alive connections.

    Same interface and semantics as :class:`asqsd.worker.WorkerClient`: ``post`` never raises for
    a delivery problem, it returns a :class:`~asqsd.worker.DeliveryResult` with the status, or an
    error string (``connect timeout``, ``inactivity timeout``, ``connection failed: ...``,
    ``server disconnected ...``, ``protocol error: ...``). At most ``connections`` connections
    exist; more concurrent posts than that wait for a free one. ``request.headers`` must not
    contain ``Host``, ``Content-Length`` or ``Transfer-Encoding``: those are the client's.
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
    ) -> None:
        url = URL(base_url)
        host, port = url.raw_host, url.port
        if url.scheme not in ("http", "https") or not host or port is None:
            raise ValueError(f"worker URL must be http(s)://host[:port]: {base_url!r}")
        super().__init__(
            host,
            port,
            connections,
            ssl_context=(ssl_context or ssl.create_default_context()) if url.scheme == "https" else None,
            idle_timeout_s=inactivity_timeout_s,
            connect_timeout_s=connect_timeout_s,
            max_head_bytes=max_head_bytes,
        )
        self._base_url = base_url.rstrip("/")
        self._host_line = f"Host: {url.host_port_subcomponent}\r\n"
        self._request_lines: dict[str, str] = {}

    @property
    def base_url(self) -> str:
        """``scheme://host:port`` of the worker."""
        return self._base_url

    async def post(self, request: Request) -> DeliveryResult:
        """Deliver once; re-send once at once if a pooled connection turned out to be closed."""
        if self._closing:
            raise RuntimeError("LeanWorkerClient is closed")
        started = time.monotonic()
        data = self._serialize(request)
        try:
            parser, resends = await self._request(data, None)
        except ExchangeError as exc:
            return DeliveryResult(None, _delivery_error(exc), time.monotonic() - started, None, exc.resends)
        status = parser.status
        if status in _RETRY_AFTER_STATUSES:
            return DeliveryResult(
                status, None, time.monotonic() - started, parse_retry_after(parser.retry_after), resends
            )
        return DeliveryResult(status, None, time.monotonic() - started, None, resends)

    async def close(self) -> None:
        """Close every connection (idle and busy) and wait briefly until they are gone."""
        await self.aclose()

    async def __aenter__(self) -> LeanWorkerClient:
        return self

    async def __aexit__(self, *_exc: object) -> None:
        await self.close()

    # --- request bytes --------------------------------------------------------------------------
    def _serialize(self, request: Request) -> bytes:
        headers = request.headers
        body = request.body
        lines = "\r\n".join(map(": ".join, headers.items())) + "\r\n" if headers else ""
        head = f"{self._request_line(request.path)}{lines}Content-Length: {len(body)}\r\n\r\n"
        # Header values were validated upstream; this one C-speed count still guarantees that no
        # CR or LF smuggled into a name or value can split the request (aiohttp refuses those too).
        expected = len(headers) + 4
        if head.count("\n") != expected or head.count("\r") != expected:
            raise ValueError("CR or LF in a request header name or value")
        # UTF-8, like aiohttp: Latin-1 values outside ASCII go out as UTF-8 bytes (stock parity).
        return head.encode("utf-8") + body

    def _request_line(self, path: str) -> str:
        line = self._request_lines.get(path)
        if line is None:
            # yarl normalises and percent-encodes the path exactly as aiohttp's request does.
            # Few distinct paths exist (http_path and the cron task paths): cache them.
            if len(self._request_lines) >= 256:
                self._request_lines.clear()
            target = URL(self._base_url + path).raw_path_qs
            line = self._request_lines[path] = f"POST {target} HTTP/1.1\r\n{self._host_line}"
        return line


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
            return f"connection failed: {_describe_os_error(exc.error)}"
        case Failure.NO_SLOT:  # posts wait for a connection without a deadline
            return "no free connection"
