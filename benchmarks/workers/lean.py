"""The benchmark worker's default server: a raw asyncio HTTP/1.1 protocol with precise job timers.

Why not aiohttp: the benchmark measures the *daemon*, so the worker must add as little as it can to
every round trip.  Two things in the aiohttp worker did not:

- ``asyncio.sleep(0.02)`` overshoots by 0.4-0.7 ms on average here, even on an idle loop (epoll and
  libuv time out in whole milliseconds), which alone costs 2-3.5 % of the fixed-20 ms limit.  Worse,
  millisecond rounding lines up jobs that started a fraction of a millisecond apart, so every cycle
  the 50 connections finish together and queue behind each other in both processes.
- aiohttp's server costs about 150 µs of CPU per request on this machine.

So this server reads requests with llhttp (httptools' ``HttpRequestParser``: Content-Length and
chunked bodies, keep-alive, pipelined requests answered in order, 400 for anything llhttp refuses)
and holds each job with :class:`PreciseTimers`: one Linux ``timerfd``
armed at the earliest absolute deadline, which the kernel fires with microsecond precision.  Where
``timerfd`` is missing (not Linux), it falls back to the event loop's own timers.

A job is held for its full duration, never less: the timer is armed at (request fully read) +
duration, and the response is written when it fires.
"""

from __future__ import annotations

import asyncio
import collections
import contextlib
import ctypes
import ctypes.util
import heapq
import json
import os
import time
from collections.abc import Callable
from typing import Any, cast
from urllib.parse import parse_qs, urlsplit

import httptools

from benchmarks.workers.server import MSGID_HEADER, DeliveryStats, LatencyModel, Sampler

_MSGID = MSGID_HEADER.lower().encode()
_MAX_HEAD = 64 * 1024
_MAX_BODY = 2 * 1024 * 1024
_OK = b"HTTP/1.1 200 OK\r\nContent-Length: 0\r\n\r\n"
_OK_CLOSE = b"HTTP/1.1 200 OK\r\nContent-Length: 0\r\nConnection: close\r\n\r\n"

# Linux <sys/timerfd.h>
_CLOCK_MONOTONIC = 1
_TFD_NONBLOCK = 0o4000
_TFD_CLOEXEC = 0o2000000
_TFD_TIMER_ABSTIME = 1


class _Timespec(ctypes.Structure):
    _fields_ = [("tv_sec", ctypes.c_long), ("tv_nsec", ctypes.c_long)]


class _Itimerspec(ctypes.Structure):
    _fields_ = [("it_interval", _Timespec), ("it_value", _Timespec)]


class PreciseTimers:
    """Callbacks at absolute ``time.monotonic()`` deadlines, fired through one ``timerfd``.

    A heap holds the deadlines.  Waking a process takes 60-150 µs on this VM after the kernel timer
    expires, so the timerfd is armed ``lead_s`` before the earliest deadline, ``lead_s`` being a
    running mean of that wake-up latency.  Callbacks whose deadline is within ``TOLERANCE_S`` run;
    when the process wakes earlier than that, the timerfd is re-armed at a moment already past,
    which returns to the event loop (other connections get served) and comes straight back: a
    short cooperative wait instead of a late job.  Measured here: a lone 20 ms timer fires 30-50 µs
    late on average (``asyncio.sleep``: 370-720 µs).
    """

    TOLERANCE_S = 40e-6
    MAX_LEAD_S = 500e-6

    def __init__(self, loop: asyncio.AbstractEventLoop) -> None:
        self._loop = loop
        self._heap: list[tuple[float, int, Callable[[], None]]] = []
        self._seq = 0
        self._armed_at: float | None = None
        self._slept = False  # armed in the future: the wake-up's lateness measures the latency
        self.lead_s = 100e-6
        self.batches: dict[int, int] = {}  # callbacks run per wake-up → how often (clumping)
        self._fd = -1
        self._settime: Any = None
        libc_name = ctypes.util.find_library("c")
        libc = ctypes.CDLL(libc_name, use_errno=True) if libc_name else None
        if libc is not None and hasattr(libc, "timerfd_create"):
            fd = libc.timerfd_create(_CLOCK_MONOTONIC, _TFD_NONBLOCK | _TFD_CLOEXEC)
            if fd >= 0:
                self._fd = fd
                self._settime = libc.timerfd_settime
                loop.add_reader(fd, self._expired)

    @property
    def precise(self) -> bool:
        """True when a timerfd backs the timers (else the loop's millisecond timers do)."""
        return self._fd >= 0

    def call_at(self, deadline: float, callback: Callable[[], None]) -> None:
        """Run ``callback`` once ``time.monotonic()`` reaches ``deadline`` (within the tolerance)."""
        if self._fd < 0:
            self._loop.call_later(max(0.0, deadline - time.monotonic()), callback)
            return
        self._seq += 1
        heapq.heappush(self._heap, (deadline, self._seq, callback))
        wake = deadline - self.lead_s
        if self._armed_at is None or wake < self._armed_at:
            self._arm(wake)

    def _arm(self, wake: float) -> None:
        self._slept = wake > time.monotonic()
        sec = int(wake)
        spec = _Itimerspec(_Timespec(0, 0), _Timespec(sec, max(1, int((wake - sec) * 1e9))))
        if self._settime(self._fd, _TFD_TIMER_ABSTIME, ctypes.byref(spec), None) != 0:
            raise OSError(ctypes.get_errno(), "timerfd_settime failed")
        self._armed_at = wake

    def _expired(self) -> None:
        with contextlib.suppress(BlockingIOError):
            os.read(self._fd, 8)  # the expiry count: consumed so the fd stops being readable
        now = time.monotonic()
        if self._slept and self._armed_at is not None:
            late = min(max(0.0, now - self._armed_at), self.MAX_LEAD_S)
            self.lead_s += (late - self.lead_s) / 16  # running mean over about 16 wake-ups
        self._armed_at = None
        heap = self._heap
        due = now + self.TOLERANCE_S
        fired = 0
        while heap and heap[0][0] <= due:
            heapq.heappop(heap)[2]()
            fired += 1
        self.batches[fired] = self.batches.get(fired, 0) + 1
        if heap:
            self._arm(heap[0][0] - self.lead_s)

    def close(self) -> None:
        """Stop watching the timerfd and close it; pending callbacks are dropped."""
        if self._fd >= 0:
            self._loop.remove_reader(self._fd)
            os.close(self._fd)
            self._fd = -1
        self._heap.clear()


class WorkerState:
    """What every connection of one server shares: the latency model, the sampler and the stats."""

    def __init__(self, model: LatencyModel, seed: int, timers: PreciseTimers) -> None:
        self.model = model
        self.seed = seed
        self.timers = timers
        self.stats = DeliveryStats()
        self.sampler: Sampler = model.sampler(seed)

    def reset(self) -> None:
        """Forget everything seen so far and restart the seeded draws."""
        self.stats = DeliveryStats()
        self.timers.batches.clear()
        self.sampler = self.model.sampler(self.seed)

    def stats_payload(self, full: bool) -> dict[str, Any]:
        """The ``GET /stats`` document (the same shape as the aiohttp worker's)."""
        payload = self.stats.snapshot(full)
        sampler = self.sampler
        payload["latency_model"] = {
            "kind": self.model.kind,
            "analytic_mean_ms": round(self.model.mean_s * 1000, 4),
            "drawn": sampler.drawn,
            "drawn_mean_ms": round(sampler.total_s / sampler.drawn * 1000, 4) if sampler.drawn else None,
            "precise_timers": self.timers.precise,
            "timer_lead_us": round(self.timers.lead_s * 1e6, 1),
            "jobs_per_timer_wakeup": dict(sorted(self.timers.batches.items())),
        }
        return payload


class _Request:
    __slots__ = ("body", "close", "method", "msg_id", "target")

    def __init__(self, method: bytes, target: bytes, msg_id: str | None, body: bytes, close: bool) -> None:
        self.method = method
        self.target = target
        self.msg_id = msg_id
        self.body = body
        self.close = close


class BadRequest(Exception):
    """The bytes are not a request this server can answer; the connection gets a 400 and closes."""


class RequestReader:
    """The requests in one connection's byte stream, in order, parsed by llhttp.

    :meth:`feed` returns the requests its bytes completed. A malformed request ends that list with
    a :class:`BadRequest`, and nothing after it is read. Heads are bounded by ``_MAX_HEAD`` bytes
    and bodies by ``_MAX_BODY`` (llhttp bounds neither).
    """

    def __init__(self) -> None:
        self._parser = httptools.HttpRequestParser(self)
        self._ready: list[_Request | BadRequest] = []
        self._failed = False
        self._in_message = self._in_head = False
        self._head_bytes = 0  # bytes fed while a head was unfinished (an upper bound on its size)
        self._target = b""
        self._msg_id: str | None = None
        self._length = 0
        self._body = bytearray()
        self._close = False

    @property
    def idle(self) -> bool:
        """No part of a request is pending: the next byte starts a new one."""
        return not self._in_message

    def feed(self, data: bytes) -> list[_Request | BadRequest]:
        """Parse ``data``; the requests (or the error) it completed, in order."""
        if not self._failed:
            try:
                self._parser.feed_data(data)
                self._bound_head(len(data))
            except BadRequest as exc:
                self._fail(exc)
            except httptools.HttpParserCallbackError as exc:
                cause = exc.__context__
                self._fail(cause if isinstance(cause, BadRequest) else BadRequest(str(exc)))
            except (httptools.HttpParserError, httptools.HttpParserUpgrade) as exc:
                self._fail(BadRequest(f"malformed request: {exc}"))
        ready, self._ready = self._ready, []
        return ready

    def _bound_head(self, size: int) -> None:
        if not self._in_head:
            self._head_bytes = 0
            return
        self._head_bytes += size
        if self._head_bytes > _MAX_HEAD:
            raise BadRequest("request head too large")

    def _fail(self, error: BadRequest) -> None:
        self._failed = True
        self._ready.append(error)

    # llhttp callbacks
    def on_message_begin(self) -> None:
        self._in_message = self._in_head = True
        self._target, self._msg_id, self._length, self._body = b"", None, 0, bytearray()

    def on_url(self, part: bytes) -> None:
        self._target += part

    def on_header(self, name: bytes, value: bytes) -> None:
        field = name.lower()
        if field == _MSGID:
            self._msg_id = value.decode("latin-1")
        elif field == b"content-length":  # llhttp checked it: digits, once
            self._length = int(value)

    def on_headers_complete(self) -> None:
        self._in_head = False
        if self._length > _MAX_BODY:
            raise BadRequest("body too large")
        # HTTP/1.1 keeps the connection unless told to close; HTTP/1.0 closes unless asked not to.
        self._close = not self._parser.should_keep_alive()

    def on_body(self, chunk: bytes) -> None:
        if len(self._body) + len(chunk) > _MAX_BODY:
            raise BadRequest("body too large")
        self._body += chunk

    def on_message_complete(self) -> None:
        self._in_message = False
        method = self._parser.get_method()
        self._ready.append(_Request(method, self._target, self._msg_id, bytes(self._body), self._close))


class JobConnection(asyncio.Protocol):
    """One client connection: requests are answered one at a time, in order (pipelining is allowed)."""

    def __init__(self, state: WorkerState) -> None:
        self._state = state
        self._transport: asyncio.Transport | None = None
        self._reader = RequestReader()
        self._pending: collections.deque[_Request | BadRequest] = collections.deque()
        self._busy = False
        self._responded_at = 0.0  # when the last response went out (0: none yet)
        self._close_after = False

    def connection_made(self, transport: asyncio.BaseTransport) -> None:
        self._transport = cast(asyncio.Transport, transport)  # uvloop's are not subclasses
        self._state.stats.peers[transport.get_extra_info("peername")] = 0.0

    def connection_lost(self, exc: Exception | None) -> None:
        self._transport = None

    def data_received(self, data: bytes) -> None:
        if not self._pending and not self._busy and self._reader.idle and self._responded_at:
            # The first byte of the next request: the gap since our last response is the client's.
            self._state.stats.gaps.append(time.time() - self._responded_at)
            self._responded_at = 0.0
        self._pending.extend(self._reader.feed(data))
        if not self._busy:
            self._next()

    def _next(self) -> None:
        if not self._pending:
            return
        request = self._pending.popleft()
        if isinstance(request, BadRequest):
            self._reply(400, json.dumps({"error": str(request)}).encode(), close=True)
            return
        self._busy = True
        self._close_after = request.close
        self._handle(request)

    def _handle(self, request: _Request) -> None:
        if request.method == b"POST" and not request.target.startswith(b"/reset"):
            self._job(request)  # the hot path: no URL parsing
            return
        path = urlsplit(request.target.decode("latin-1"))
        state = self._state
        if request.method == b"GET" and path.path == "/stats":
            full = parse_qs(path.query).get("full") == ["1"]
            self._reply(200, json.dumps(state.stats_payload(full)).encode())
        elif request.method == b"POST" and path.path == "/reset":
            state.reset()
            self._reply(200, b'{"reset": true}')
        elif request.method == b"POST":
            self._job(request)
        else:
            self._reply(405, b'{"error": "only POST jobs, GET /stats and POST /reset"}')

    def _job(self, request: _Request) -> None:
        # The job starts when its request has been read: its deadline is taken first, so the
        # bookkeeping below is part of the job's time, not added to it.
        start = time.monotonic()
        state = self._state
        stats = state.stats
        arrived = time.time()
        delay = state.sampler.draw()
        stats.record(request.msg_id, request.body, arrived)
        stats.job_started()
        if delay <= 0:
            self._job_done(arrived)
            return
        state.timers.call_at(start + delay, lambda: self._job_done(arrived))

    def _job_done(self, started: float) -> None:
        ended = time.time()
        self._state.stats.job_done(started, ended)
        transport = self._transport
        if transport is None:
            return
        transport.write(_OK_CLOSE if self._close_after else _OK)
        self._finish_response()

    def _reply(self, status: int, body: bytes, close: bool = False) -> None:
        transport = self._transport
        if transport is None:
            return
        close = close or self._close_after
        head = (
            f"HTTP/1.1 {status} {'OK' if status == 200 else 'Error'}\r\n"
            f"Content-Type: application/json\r\nContent-Length: {len(body)}\r\n"
            f"{'Connection: close' + chr(13) + chr(10) if close else ''}\r\n"
        )
        transport.write(head.encode() + body)
        self._close_after = close
        self._finish_response()

    def _finish_response(self) -> None:
        transport = self._transport
        assert transport is not None
        self._busy = False
        if self._close_after:
            transport.close()
            return
        self._responded_at = time.time()
        self._next()


async def start_lean_server(
    model: LatencyModel, seed: int, sock: Any
) -> tuple[asyncio.AbstractServer, WorkerState]:
    """Serve on the bound socket ``sock``; returns the server and the shared state."""
    loop = asyncio.get_running_loop()
    state = WorkerState(model, seed, PreciseTimers(loop))
    server = await loop.create_server(lambda: JobConnection(state), sock=sock, backlog=1024)
    return server, state
