"""The ledger harness: prove that nothing is lost (and count duplicates) under faults.

Four parts, reusable by tests and by ``benchmarks/soak.py``:

* **Producer**: N uniquely numbered messages (body ``ledger <n>`` plus optional padding), either
  through an SQS client (:func:`send_numbered`) or by bulk preload into an in-process emulator
  (:func:`preload_numbered`).
* **Worker** (:class:`LedgerWorker`): a real aiohttp server on 127.0.0.1 whose answer to each
  delivery is decided by a *script* (:class:`Action`: a status, latency, ``Retry-After``, a reset, a
  hang, garbage or raw bytes, a huge streamed body). Every delivery is recorded
  (:class:`DeliveryRecord`: message number, receive count, status answered, times).
* **Checker** (:meth:`Ledger.report`): compares what the worker answered 200 with what is still in
  the queue (and its DLQ) after the run, read either from the in-process emulator's store
  (:func:`inventory_from_store`, non-destructive, gives receipt handles) or with a client
  (:func:`inventory_via_client`, destructive, works against a subprocess emulator).
* **Processes**: :class:`EmulatorProcess` (``python -m asqsd.emulator``, driven through its admin
  API) and :class:`DaemonProcess` (``python -m asqsd run --log-format json``), started from argv
  lists and stopped by PID, for process faults and the soak (``benchmarks/soak.py``).

Definitions (per message number):

* **lost**: never answered 200 (nor accepted with 202 and acknowledged ``done``, with
  ``async_ack``) and not in the queue or DLQ in any state. This must be 0.
* **duplicated**: answered 200 (or acknowledged ``done``) more than once (at-least-once
  delivery; each is explained in docs/reliability.md).
* **stuck**: still in flight when the run was checked (nobody is working on it any more).
* **pending**: visible or delayed in the queue and never answered 200 (work not done yet, not lost).
* **stored twice**: held more than once across the queue and its DLQ (e.g. dead-lettered by asqsd
  and still in the queue): not lost, but a copy too many.
"""

from __future__ import annotations

import asyncio
import contextlib
import dataclasses
import hashlib
import itertools
import json
import os
import re
import select
import socket
import struct
import subprocess
import sys
import time
import urllib.request
from collections import Counter
from collections.abc import AsyncIterator, Callable, Iterable, Mapping
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Literal

import aiohttp
from aiohttp import web

from asqsd.emulator import Emulator
from asqsd.emulator.messages import DELAYED, IN_FLIGHT, READY

BODY_PREFIX = "ledger "
_NUMBER = re.compile(r"^ledger (\d+)")

# ----------------------------------------------------------------------------------- producer


def numbered_body(n: int, pad_to: int = 0) -> str:
    """The body of message ``n``: ``ledger <n>``, padded with ``.`` to ``pad_to`` characters."""
    body = f"{BODY_PREFIX}{n:07d} "
    return body + "." * max(0, pad_to - len(body))


def number_of(body: bytes | str) -> int | None:
    """The message number a ledger body carries, or None for a foreign body."""
    text = body.decode("utf-8", "replace") if isinstance(body, bytes) else body
    match = _NUMBER.match(text)
    return int(match.group(1)) if match else None


def preload_numbered(emu: Emulator, queue: str, count: int, *, start: int = 0, pad_to: int = 0) -> range:
    """Bulk-append messages ``start`` .. ``start + count - 1`` to an in-process emulator queue."""
    emu.preload(queue, count, body_factory=lambda i: numbered_body(start + i, pad_to))
    return range(start, start + count)


async def send_numbered(
    client: Any,
    queue_url: str,
    numbers: Iterable[int],
    *,
    pad_to: int = 0,
    concurrency: int = 8,
    max_attempts: int = 20,
) -> int:
    """SendMessageBatch every number (10 per call, ``concurrency`` calls at once); failed entries
    and failed calls are retried up to ``max_attempts`` times. Returns how many were sent."""
    pending = list(numbers)
    batches = [pending[i : i + 10] for i in range(0, len(pending), 10)]
    gate = asyncio.Semaphore(concurrency)
    sent = 0

    async def send(batch: list[int]) -> None:
        nonlocal sent
        left = batch
        for attempt in range(max_attempts):
            entries = [{"Id": str(n), "MessageBody": numbered_body(n, pad_to)} for n in left]
            try:
                async with gate:
                    response = await client.send_message_batch(QueueUrl=queue_url, Entries=entries)
            except Exception:
                await asyncio.sleep(min(0.05 * 2**attempt, 1.0))
                continue
            ok = {int(e["Id"]) for e in response.get("Successful", [])}
            sent += len(ok)
            left = [n for n in left if n not in ok]
            if not left:
                return
            await asyncio.sleep(min(0.05 * 2**attempt, 1.0))
        raise RuntimeError(f"could not send {len(left)} ledger messages after {max_attempts} attempts")

    await asyncio.gather(*(send(batch) for batch in batches))
    return sent


# ------------------------------------------------------------------------------------- worker

ActionKind = Literal["answer", "reset", "hang", "garbage", "raw", "big", "accept"]


@dataclass(frozen=True, slots=True)
class Action:
    """What the worker does with one delivery.

    * ``answer``: wait ``delay_s``, answer ``status`` (with ``retry_after`` and ``headers`` if set).
    * ``reset``: wait ``delay_s``, then reset the connection (RST, no response).
    * ``hang``: never answer (until ``hang_s`` passes or the worker stops).
    * ``garbage``: write ``raw`` bytes that are not HTTP, then close.
    * ``raw``: write each ``(delay, bytes)`` piece of ``pieces`` after its delay, then close.
    * ``big``: answer ``status`` with a ``body_bytes``-long body streamed in 1 MiB chunks.
    * ``accept``: wait ``delay_s``, answer 202, then (``async_ack``) POST ``{"outcome": ack}`` to
      the request's ``X-Asqsd-Ack-Url`` after ``ack_after_s``; ``ack=None`` never acknowledges.
    """

    kind: ActionKind = "answer"
    status: int = 200
    delay_s: float = 0.0
    retry_after: str | None = None
    hang_s: float = 600.0
    raw: bytes = b""
    pieces: tuple[tuple[float, bytes], ...] = ()
    body_bytes: int = 0
    close: bool = False  # answer with Connection: close
    ack: str | None = "done"  # accept: the outcome reported later (None: never)
    ack_after_s: float = 0.0  # accept: how long the job runs after the 202
    headers: tuple[tuple[str, str], ...] = ()  # more response headers (e.g. X-Asqsd-Pause-Seconds)

    @property
    def answered_status(self) -> int | None:
        """The status the worker answers with, or None when it sends no (valid) response."""
        if self.kind == "accept":
            return 202
        return self.status if self.kind in ("answer", "big") else None


OK = Action()


Script = Callable[[int, int], Action]
"""Decides the :class:`Action` for a delivery of message ``n`` (first argument), the worker's
``attempt``-th sighting of it (second argument, 1-based)."""


def always(action: Action) -> Script:
    """Every delivery gets ``action``."""
    return lambda _n, _attempt: action


def sequence(*actions: Action | int) -> Script:
    """Attempt k of each message gets ``actions[k-1]`` (ints are statuses); the last one repeats."""
    steps = [a if isinstance(a, Action) else Action(status=a) for a in actions]

    def script(_n: int, attempt: int) -> Action:
        return steps[min(attempt, len(steps)) - 1]

    return script


def at_rate(rate: float, fault: Action, *, seed: int = 0, otherwise: Action = OK) -> Script:
    """A deterministic ``rate`` share of deliveries gets ``fault`` (hash of seed, n and attempt)."""

    def script(n: int, attempt: int) -> Action:
        digest = hashlib.blake2b(f"{seed}:{n}:{attempt}".encode(), digest_size=8).digest()
        return fault if int.from_bytes(digest, "big") / 2**64 < rate else otherwise

    return script


@dataclass(slots=True)
class DeliveryRecord:
    """One delivery the worker saw."""

    n: int | None  # message number (None: not a ledger body)
    msgid: str | None
    receive_count: int
    attempt: int  # the worker's count of sightings of this message number, 1-based
    action: ActionKind
    status: int | None  # status answered (None: no valid response was given)
    started: float  # time.monotonic() when the request arrived
    finished: float | None = None  # when the handler ended
    body_ok: bool = True  # body bytes matched what the test expected (if it said)
    raw_headers: list[tuple[bytes, bytes]] = field(default_factory=list)
    body: bytes = b""  # kept only when the worker was told to (keep_bodies)
    path: str = ""  # the request's path and query
    ack: str | None = None  # accept: the outcome reported to the acknowledgement URL
    ack_sent: float | None = None  # when that acknowledgement was sent
    ack_status: int | None = None  # the daemon's answer to it (None: no answer)

    @property
    def ok(self) -> bool:
        """The job succeeded: answered 200, or accepted and acknowledged ``done`` (answered 200)."""
        return self.status == 200 or (self.ack == "done" and self.ack_status == 200)


def _status_line(raw: bytes) -> int | None:
    """The status of a raw ``HTTP/1.1 NNN ...`` response, if it has a well-formed one."""
    match = re.match(rb"HTTP/1\.[01] (\d{3}) [^\r\n]*\r\n", raw)
    return int(match.group(1)) if match else None


def _reset_socket(request: web.Request) -> None:
    transport = request.transport
    if transport is None:
        return
    sock = transport.get_extra_info("socket")
    if sock is not None:
        with contextlib.suppress(OSError):
            sock.setsockopt(socket.SOL_SOCKET, socket.SO_LINGER, struct.pack("ii", 1, 0))
    transport.abort()


class LedgerWorker:
    """A recording, scriptable aiohttp worker on 127.0.0.1 (see :class:`Action`).

    ``script`` may be replaced at any time. ``stop()`` / ``start()`` simulate a worker restart on
    the same port; ``reserve()`` picks a port without listening (connections are refused).
    """

    def __init__(
        self,
        script: Script | None = None,
        *,
        expect_body: Callable[[int], bytes] | None = None,
        keep_bodies: bool = False,
    ) -> None:
        self.script: Script = script or always(OK)
        self.keep_bodies = keep_bodies
        self.records: list[DeliveryRecord] = []
        self.port = 0
        self.in_flight = 0
        self.arrived = asyncio.Event()
        self._expect_body = expect_body
        self._sightings: Counter[int] = Counter()
        self._runner: web.AppRunner | None = None
        self._release = asyncio.Event()
        self._acks: set[asyncio.Task[None]] = set()

    @property
    def url(self) -> str:
        """Scheme and host for ``http_url`` (the port goes to ``http_port``)."""
        return "http://127.0.0.1"

    def reserve(self) -> int:
        """Choose a free port now, listen later (until then connections are refused)."""
        with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as sock:
            sock.bind(("127.0.0.1", 0))
            self.port = int(sock.getsockname()[1])
        return self.port

    async def start(self) -> None:
        """Listen on 127.0.0.1 (on the reserved/previous port if any, else a free one)."""
        self._release = asyncio.Event()
        app = web.Application(client_max_size=4 * 1024 * 1024)
        app.router.add_route("*", "/{tail:.*}", self._handle)
        runner = web.AppRunner(app, handle_signals=False, access_log=None, shutdown_timeout=0.5)
        await runner.setup()
        site = web.TCPSite(runner, "127.0.0.1", self.port, reuse_address=True)
        try:
            await site.start()
        except BaseException:
            await runner.cleanup()
            raise
        self.port = int(runner.addresses[0][1])
        self._runner = runner

    async def stop(self) -> None:
        """Stop listening; hanging handlers are released. The port is kept for a restart."""
        self._release.set()
        for task in list(self._acks):
            task.cancel()
        if self._runner is not None:
            runner, self._runner = self._runner, None
            await runner.cleanup()

    @property
    def running(self) -> bool:
        """Whether the worker is listening."""
        return self._runner is not None

    async def _handle(self, request: web.Request) -> web.StreamResponse:
        body = await request.read()
        n = number_of(body)
        msgid = request.headers.get("X-Aws-Sqsd-Msgid")
        try:
            receive_count = int(request.headers.get("X-Aws-Sqsd-Receive-Count", "0"))
        except ValueError:
            receive_count = 0
        key = n if n is not None else -1
        self._sightings[key] += 1
        attempt = self._sightings[key]
        action = self.script(key, attempt)
        record = DeliveryRecord(
            n,
            msgid,
            receive_count,
            attempt,
            action.kind,
            None,
            time.monotonic(),
            raw_headers=list(request.raw_headers),
            path=request.path_qs,
        )
        if self._expect_body is not None and n is not None:
            record.body_ok = body == self._expect_body(n)
        if self.keep_bodies:
            record.body = body
        self.records.append(record)
        self.arrived.set()
        self.in_flight += 1
        try:
            response = await self._perform(request, action, record)
        finally:
            self.in_flight -= 1
            record.finished = time.monotonic()
        return response

    async def _perform(
        self, request: web.Request, action: Action, record: DeliveryRecord
    ) -> web.StreamResponse:
        if action.delay_s:
            await self._wait(action.delay_s)
        if action.kind == "hang":
            await self._wait(action.hang_s)
            return web.Response(status=action.status)
        if action.kind == "reset":
            _reset_socket(request)
            return web.Response(status=500)  # never reaches the client
        if action.kind in ("garbage", "raw"):
            if await self._write_raw(request, action):
                record.status = _status_line(b"".join(piece for _delay, piece in action.pieces))
            return web.Response(status=500)  # never reaches the client
        if action.kind == "big":
            return await self._stream_big(request, action, record)
        if action.kind == "accept":
            return self._accept(request, action, record)
        headers = {"Retry-After": action.retry_after} if action.retry_after is not None else {}
        headers.update(action.headers)
        if action.close:
            headers["Connection"] = "close"
        record.status = action.status
        return web.Response(status=action.status, text="ok", headers=headers)

    def _accept(self, request: web.Request, action: Action, record: DeliveryRecord) -> web.Response:
        url = request.headers.get("X-Asqsd-Ack-Url")
        if url is not None and action.ack is not None:
            task = asyncio.create_task(self._acknowledge(url, action, record))
            self._acks.add(task)
            task.add_done_callback(self._acks.discard)
        record.status = 202
        return web.Response(status=202, text="accepted")

    async def _acknowledge(self, url: str, action: Action, record: DeliveryRecord) -> None:
        """The background job: run ``ack_after_s``, then report its outcome (once, no retry)."""
        await self._wait(action.ack_after_s)
        if self._release.is_set():
            return  # the worker stopped: the job dies with it
        record.ack = action.ack
        record.ack_sent = time.monotonic()
        timeout = aiohttp.ClientTimeout(total=5)
        with contextlib.suppress(aiohttp.ClientError, TimeoutError):
            async with (
                aiohttp.ClientSession(timeout=timeout) as session,
                session.post(url, json={"outcome": action.ack}) as response,
            ):
                record.ack_status = response.status

    async def _wait(self, seconds: float) -> None:
        with contextlib.suppress(TimeoutError):
            async with asyncio.timeout(seconds):
                await self._release.wait()

    async def _write_raw(self, request: web.Request, action: Action) -> bool:
        """Write the action's bytes and close; True if every raw piece was written."""
        transport = request.transport
        if transport is None:
            return False
        if action.kind == "garbage":
            transport.write(action.raw or b"\x00\xffNOT HTTP AT ALL\r\n\r\n")
            transport.close()
            return False
        for delay, piece in action.pieces:
            if delay:
                await self._wait(delay)
            if transport.is_closing():
                return False
            transport.write(piece)
        transport.close()
        return True

    async def _stream_big(
        self, request: web.Request, action: Action, record: DeliveryRecord
    ) -> web.StreamResponse:
        response = web.StreamResponse(status=action.status)
        response.content_length = action.body_bytes
        await response.prepare(request)
        chunk = b"x" * (1 << 20)
        left = action.body_bytes
        while left > 0:
            piece = chunk if left >= len(chunk) else chunk[:left]
            await response.write(piece)
            left -= len(piece)
        await response.write_eof()
        record.status = action.status
        return response

    # --- views --------------------------------------------------------------------------------
    def of(self, n: int) -> list[DeliveryRecord]:
        """Every delivery of message ``n``, in arrival order."""
        return [r for r in self.records if r.n == n]

    def ok_numbers(self) -> set[int]:
        """Message numbers answered 200 at least once."""
        return {r.n for r in self.records if r.ok and r.n is not None}

    def ok_count(self) -> int:
        """How many distinct messages were answered 200."""
        return len(self.ok_numbers())

    def first_ok_after(self, t: float) -> float | None:
        """The monotonic time of the first 200 answered after ``t`` (None: none yet)."""
        times = [r.started for r in self.records if r.status == 200 and r.started >= t]
        return min(times) if times else None


@contextlib.asynccontextmanager
async def running_worker(script: Script | None = None, **kwargs: Any) -> AsyncIterator[LedgerWorker]:
    """A started :class:`LedgerWorker`, stopped on exit."""
    worker = LedgerWorker(script, **kwargs)
    await worker.start()
    try:
        yield worker
    finally:
        await worker.stop()


# ------------------------------------------------------------------------------------ checker

QueueState = Literal["visible", "in_flight", "delayed", "dlq"]


@dataclass(slots=True)
class Inventory:
    """What is left in the queue (and DLQ) after a run, by message number."""

    states: dict[int, QueueState] = field(default_factory=dict)
    copies: Counter[int] = field(default_factory=Counter)  # how often each number is stored
    receipt_handles: list[str] = field(default_factory=list)  # of messages ever received (store only)
    foreign: int = 0  # messages whose body is not a ledger body
    unidentified_in_flight: int = 0  # client inventory: in flight and never seen


def _walk_queue(queue: Any) -> Iterable[Any]:
    """Every live message of an emulator queue (standard or FIFO), each once."""
    seen: set[int] = set()
    ready = queue.ready
    pools: list[Iterable[Any]] = [queue.received.values()]
    if hasattr(ready, "_items"):
        pools.append(ready._items)
    for group in getattr(ready, "_groups", {}).values():
        pools.append(group.items)
    pools.append(entry[2] for entry in queue.in_flight_heap)
    pools.append(entry[2] for entry in queue.delayed_heap)
    for pool in pools:
        for message in pool:
            if message.state in (READY, IN_FLIGHT, DELAYED) and message.seq not in seen:
                seen.add(message.seq)
                yield message


def inventory_from_store(emu: Emulator, queue: str, dlq: str | None = None) -> Inventory:
    """Non-destructive inventory of an in-process emulator queue (white-box: reads the store)."""
    inventory = Inventory()
    names: list[tuple[str, bool]] = [(queue, False)] + ([(dlq, True)] if dlq else [])
    for name, is_dlq in names:
        stored = emu.store.get_queue(name)
        emu.store.reap(stored)  # in-flight messages whose lease ended are visible again
        for message in _walk_queue(stored):
            if message.receipt_handle:
                inventory.receipt_handles.append(message.receipt_handle)
            n = number_of(message.body)
            if n is None:
                inventory.foreign += 1
                continue
            state: QueueState
            if is_dlq:
                state = "dlq"
            elif message.state == IN_FLIGHT:
                state = "in_flight"
            elif message.state == DELAYED:
                state = "delayed"
            else:
                state = "visible"
            inventory.states[n] = state
            inventory.copies[n] += 1
    return inventory


async def _queue_gauges(client: Any, queue_url: str) -> tuple[int, int, int]:
    names = [
        "ApproximateNumberOfMessages",
        "ApproximateNumberOfMessagesNotVisible",
        "ApproximateNumberOfMessagesDelayed",
    ]
    attrs = (await client.get_queue_attributes(QueueUrl=queue_url, AttributeNames=names))["Attributes"]
    return tuple(int(attrs[name]) for name in names)  # type: ignore[return-value]


async def _take_visible(client: Any, queue_url: str, inventory: Inventory, state: QueueState) -> int:
    """Receive (and hide for 10 minutes) everything visible now; returns how many were taken."""
    taken = 0
    for _ in range(100_000):
        response = await client.receive_message(
            QueueUrl=queue_url, MaxNumberOfMessages=10, WaitTimeSeconds=0, VisibilityTimeout=600
        )
        messages = response.get("Messages", [])
        if not messages:
            return taken
        for message in messages:
            taken += 1
            n = number_of(message["Body"])
            if n is None:
                inventory.foreign += 1
            else:
                inventory.states.setdefault(n, state)
                inventory.copies[n] += 1
    return taken


async def inventory_via_client(
    client: Any, queue_url: str, *, dlq_url: str | None = None, in_flight_wait_s: float = 0.0
) -> Inventory:
    """Inventory by receiving everything left (destructive: call after the daemon stopped).

    Messages in flight at the start are counted; with ``in_flight_wait_s`` the checker waits for
    them to become visible (their lease ends) to learn their numbers, and marks them ``in_flight``.
    """
    inventory = Inventory()
    _visible, in_flight, _delayed = await _queue_gauges(client, queue_url)
    await _take_visible(client, queue_url, inventory, "visible")
    if dlq_url is not None:
        await _take_visible(client, dlq_url, inventory, "dlq")
    deadline = time.monotonic() + in_flight_wait_s
    found = 0
    while found < in_flight and time.monotonic() < deadline:
        found += await _take_visible(client, queue_url, inventory, "in_flight")
        if found < in_flight:
            await asyncio.sleep(0.1)
    inventory.unidentified_in_flight = max(0, in_flight - found)
    return inventory


@dataclass(frozen=True, slots=True)
class LedgerReport:
    """The outcome of a ledger run. Examples are a few message numbers of each kind."""

    expected: int
    done: int  # distinct messages answered 200
    deliveries: int  # every POST the worker saw
    ok_answers: int  # every 200 answered
    lost: int
    duplicated: int  # messages answered 200 more than once
    stuck: int  # in flight at the check (identified or not)
    pending: int  # visible/delayed, never answered 200
    in_dlq: int
    redelivered: int  # messages delivered more than once, whatever the answers
    max_receive_count: int
    lost_examples: tuple[int, ...] = ()
    duplicate_examples: tuple[int, ...] = ()
    stuck_examples: tuple[int, ...] = ()
    unexpected: int = 0  # numbers the worker saw that were never produced
    stored_twice: int = 0  # numbers held more than once across the queue and its DLQ

    def summary(self) -> str:
        """One line for logs, assertion messages and the docs."""
        return (
            f"expected={self.expected} done={self.done} lost={self.lost} duplicated={self.duplicated} "
            f"stuck={self.stuck} pending={self.pending} dlq={self.in_dlq} deliveries={self.deliveries} "
            f"redelivered={self.redelivered} max_receive_count={self.max_receive_count} "
            f"stored_twice={self.stored_twice}"
            + (f" lost_examples={list(self.lost_examples)}" if self.lost else "")
            + (f" duplicate_examples={list(self.duplicate_examples)}" if self.duplicated else "")
            + (f" stuck_examples={list(self.stuck_examples)}" if self.stuck_examples else "")
        )

    def assert_nothing_lost(self) -> None:
        """Every message was answered 200 or is still in the queue or DLQ."""
        assert self.lost == 0, f"messages lost: {self.summary()}"
        assert self.unexpected == 0, f"unexpected message numbers: {self.summary()}"

    def assert_all_done(self) -> None:
        """Nothing lost, nothing stuck in flight, nothing left to do: every message answered 200."""
        self.assert_nothing_lost()
        assert self.stuck == 0, f"messages stuck in flight: {self.summary()}"
        assert self.pending == 0 and self.in_dlq == 0, f"messages not done: {self.summary()}"
        assert self.done == self.expected, f"not every message answered 200: {self.summary()}"

    def as_dict(self) -> dict[str, Any]:
        """The counts, for JSON output."""
        return {f.name: getattr(self, f.name) for f in dataclasses.fields(self)}


class Ledger:
    """The expected message numbers and the worker's records; :meth:`report` checks them."""

    def __init__(self, numbers: Iterable[int], worker: LedgerWorker) -> None:
        self.expected = frozenset(numbers)
        self.worker = worker

    def report(self, inventory: Inventory, examples: int = 5) -> LedgerReport:
        """Classify every expected message (see the module docstring)."""
        records = self.worker.records
        ok_answers: Counter[int] = Counter(r.n for r in records if r.ok and r.n is not None)
        seen: Counter[int] = Counter(r.n for r in records if r.n is not None)
        done = set(ok_answers)
        states: Mapping[int, QueueState] = inventory.states
        lost = sorted(n for n in self.expected if n not in done and n not in states)
        # A client inventory may not know the numbers of some in-flight messages: those count as
        # stuck, and as many "lost" candidates are only unaccounted for, not proven lost.
        unidentified = inventory.unidentified_in_flight
        proven_lost = lost[unidentified:] if unidentified else lost
        duplicated = sorted(n for n, count in ok_answers.items() if count > 1)
        stuck = sorted(n for n, state in states.items() if state == "in_flight")
        pending = [n for n, s in states.items() if s in ("visible", "delayed") and n not in done]
        receive_counts = [r.receive_count for r in records]
        return LedgerReport(
            expected=len(self.expected),
            done=len(done & self.expected),
            deliveries=len(records),
            ok_answers=sum(ok_answers.values()),
            lost=len(proven_lost),
            duplicated=len(duplicated),
            stuck=len(stuck) + unidentified,
            pending=len(pending),
            in_dlq=sum(1 for s in states.values() if s == "dlq"),
            redelivered=sum(1 for count in seen.values() if count > 1),
            max_receive_count=max(receive_counts, default=0),
            lost_examples=tuple(proven_lost[:examples]),
            duplicate_examples=tuple(duplicated[:examples]),
            stuck_examples=tuple(stuck[:examples]),
            unexpected=len(set(seen) - self.expected),
            stored_twice=sum(1 for count in inventory.copies.values() if count > 1),
        )


def attempt_gaps(worker: LedgerWorker) -> list[float]:
    """Seconds between consecutive deliveries of the same message, over every message."""
    by_n: dict[int, list[float]] = {}
    for record in worker.records:
        if record.n is not None:
            by_n.setdefault(record.n, []).append(record.started)
    gaps: list[float] = []
    for times in by_n.values():
        gaps.extend(b - a for a, b in itertools.pairwise(times))
    return gaps


def resends_within(worker: LedgerWorker, seconds: float) -> int:
    """Deliveries that arrived less than ``seconds`` after the previous delivery of the same message.

    With ``error_visibility_timeout`` above ``seconds``, SQS cannot redeliver that soon: each one is
    the daemon sending again at once a request the worker had already read.
    """
    return sum(1 for gap in attempt_gaps(worker) if gap < seconds)


# ------------------------------------------------------------------------------- subprocesses

# Test credentials for daemon subprocesses. The secret and the token are distinctive so a log
# check can grep for them; nothing here reaches AWS.
TEST_ACCESS_KEY = "AKIAIOSFODNN7LEDGER1"
TEST_SECRET_KEY = "wJalrXUtnFEMI/K7MDENG/LedgerSecretKey0000"
TEST_SESSION_TOKEN = "IQoJb3JpZ2luX2VjELedgerSessionToken/0123456789abcdefSECRET=="


def daemon_env(extra: Mapping[str, str] | None = None) -> dict[str, str]:
    """The environment for an asqsd subprocess: no inherited ASQSD_/AWS_ variables, test
    credentials (with a session token), region us-east-1."""
    env = {k: v for k, v in os.environ.items() if not k.startswith(("ASQSD_", "AWS_"))}
    env.update(
        AWS_ACCESS_KEY_ID=TEST_ACCESS_KEY,
        AWS_SECRET_ACCESS_KEY=TEST_SECRET_KEY,
        AWS_SESSION_TOKEN=TEST_SESSION_TOKEN,
        AWS_DEFAULT_REGION="us-east-1",
        PYTHONUNBUFFERED="1",
    )
    env.update(extra or {})
    return env


class EmulatorProcess:
    """``python -m asqsd.emulator`` on 127.0.0.1 (free port), driven through its admin API.

    It outlives any daemon it serves, so a SIGKILLed daemon's leases stay visible in it.
    """

    def __init__(self, log_path: Path, *, ready_timeout_s: float = 20) -> None:
        self._log = log_path.open("wb")
        self.proc = subprocess.Popen(
            [sys.executable, "-m", "asqsd.emulator", "--host", "127.0.0.1", "--port", "0", "--seed", "1"],
            stdout=subprocess.PIPE,
            stderr=self._log,
            stdin=subprocess.DEVNULL,
        )
        assert self.proc.stdout is not None
        ready, _, _ = select.select([self.proc.stdout], [], [], ready_timeout_s)
        line = self.proc.stdout.readline().decode() if ready else ""
        if "listening on" not in line:
            self.stop()
            raise RuntimeError(f"emulator did not start: {line!r}")
        self.endpoint_url = line.rsplit(" ", 1)[1].strip()

    def admin(self, method: str, path: str, body: Any = None) -> Any:
        """One admin API call (JSON in and out)."""
        data = None if body is None else json.dumps(body).encode()
        request = urllib.request.Request(
            f"{self.endpoint_url}/_asqsd/{path}",
            data=data,
            method=method,
            headers={"Content-Type": "application/json"},
        )
        with urllib.request.urlopen(request, timeout=10) as response:
            return json.loads(response.read() or b"null")

    def create_queue(self, name: str, attributes: Mapping[str, str] | None = None) -> str:
        """Create a queue; returns its URL."""
        result = self.admin("POST", "queues", {"name": name, "attributes": dict(attributes or {})})
        return str(result["QueueUrl"])

    def preload(self, queue: str, count: int) -> range:
        """Bulk-append ledger messages 0 .. count-1."""
        self.admin("POST", f"queues/{queue}/preload", {"count": count, "body": BODY_PREFIX + "{i}"})
        return range(count)

    def counters(self, queue: str) -> dict[str, int]:
        """One queue's counters and gauges."""
        return dict(self.admin("GET", f"counters?queue={queue}"))

    def stop(self) -> None:
        """SIGTERM by PID, then SIGKILL if it does not exit within 5 s."""
        if self.proc.poll() is None:
            self.proc.terminate()
            try:
                self.proc.wait(5)
            except subprocess.TimeoutExpired:
                self.proc.kill()
                self.proc.wait()
        if self.proc.stdout is not None:
            self.proc.stdout.close()
        self._log.close()


def emulator_run_args(emu: Emulator, queue: str, worker_port: int) -> list[str]:
    """The ``asqsd run`` flags for ``queue`` on the emulator, POSTing to a worker on 127.0.0.1."""
    return [
        "--queue-url",
        emu.queue_url(queue),
        "--endpoint-url",
        emu.endpoint_url,
        "--http-url",
        "http://127.0.0.1",
        "--http-port",
        str(worker_port),
    ]


class DaemonProcess:
    """``python -m asqsd run --log-format json ...`` as a child; its JSON log lines in a file."""

    def __init__(self, log_path: Path, args: Iterable[str], env: Mapping[str, str]) -> None:
        self.log_path = log_path
        self._log = log_path.open("wb")
        self.proc = subprocess.Popen(
            [sys.executable, "-m", "asqsd", "run", "--log-format", "json", *args],
            stdout=self._log,
            stderr=subprocess.STDOUT,
            stdin=subprocess.DEVNULL,
            env=dict(env),
        )

    @property
    def pid(self) -> int:
        """The daemon's process id."""
        return self.proc.pid

    def text(self) -> str:
        """Everything it logged so far."""
        return self.log_path.read_text(errors="replace")

    def events(self) -> list[dict[str, Any]]:
        """Its JSON log lines, parsed."""
        out = []
        for line in self.text().splitlines():
            if line.startswith("{"):
                with contextlib.suppress(ValueError):
                    out.append(json.loads(line))
        return out

    def saw(self, event: str) -> bool:
        """Whether it logged ``event``."""
        return any(e.get("event") == event for e in self.events())

    async def wait_exit(self, timeout_s: float) -> int:
        """Poll for the exit status; fail after ``timeout_s``."""
        deadline = time.monotonic() + timeout_s
        while self.proc.poll() is None:
            if time.monotonic() > deadline:
                raise AssertionError(f"daemon {self.pid} did not exit within {timeout_s}s")
            await asyncio.sleep(0.05)
        return self.proc.returncode

    def close(self) -> None:
        """SIGKILL by PID if still running; close the log."""
        if self.proc.poll() is None:
            self.proc.kill()
            self.proc.wait()
        self._log.close()
