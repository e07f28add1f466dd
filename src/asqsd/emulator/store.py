"""The in-memory queue engine: pure, synchronous, no I/O.

Every operation costs O(1) amortised (plus the size of its own batch), whatever the queue depth:

* ready messages sit in a deque (per group for FIFO queues);
* in-flight and delayed messages sit in heaps of ``(visible_at, token, message)``; an entry whose token no
  longer matches the message is stale and skipped when popped (lazy invalidation), so a delete or a
  visibility change never searches a heap;
* receipt handles encode queue and message ids, and resolve through ``Queue.received``;
* the approximate counts are gauges updated on every transition.

Time comes from an injectable clock (seconds since the epoch), so tests can drive visibility and
retention without sleeping.  A :class:`StoreListener` hears when messages become available, so the
server can wake long polls.
"""

from __future__ import annotations

import gc
import heapq
import itertools
import time
import uuid
from collections.abc import Callable, Iterable
from dataclasses import dataclass
from typing import NamedTuple, Protocol

from asqsd.emulator import attributes as attrs
from asqsd.emulator import errors
from asqsd.emulator.checksums import content_dedup_id
from asqsd.emulator.messages import DELAYED, GONE, IN_FLIGHT, READY, Message, MessageAttributes
from asqsd.emulator.queues import Queue, QueueCounters

DEDUP_WINDOW_SECONDS = 300.0
SENDER_ID = "AIDAEMULATOR000000000"
_HANDLE_PREFIX = "AQEB"
_SEQUENCE_BASE = 10**19
_COMPACT_SLACK = 1024


class StoreListener(Protocol):
    """Hears about state changes that matter to parked ReceiveMessage calls."""

    def available(self, queue: Queue, count: int) -> None:
        """``count`` messages (FIFO: groups) just became receivable in ``queue``."""

    def scheduled(self, queue: Queue, when: float) -> None:
        """Something in ``queue`` will become receivable at ``when`` (store clock)."""

    def deleted(self, queue: Queue) -> None:
        """``queue`` was deleted."""


class _NullListener:
    def available(self, queue: Queue, count: int) -> None:
        pass

    def scheduled(self, queue: Queue, when: float) -> None:
        pass

    def deleted(self, queue: Queue) -> None:
        pass


@dataclass(slots=True)
class Outgoing:
    """A validated message to send (the protocol layer builds it)."""

    body: str
    md5_body: str
    size: int
    attributes: MessageAttributes | None = None
    md5_attributes: str | None = None
    delay_seconds: int | None = None
    group_id: str | None = None
    dedup_id: str | None = None
    trace_header: str | None = None
    md5_system: str | None = None


class SendResult(NamedTuple):
    message_id: str
    sequence_number: str | None


@dataclass(slots=True)
class Preset:
    """Message fields a preload may set directly, e.g. to test retention or redrive."""

    sent_ms: int | None = None
    first_receive_ms: int = 0
    receive_count: int = 0
    group_id: str | None = None
    attributes: MessageAttributes | None = None
    md5_attributes: str | None = None
    attributes_size: int = 0


class Store:
    """All queues of one emulator, and every operation on them."""

    def __init__(
        self,
        clock: Callable[[], float] = time.time,
        *,
        listener: StoreListener | None = None,
        account_id: str = "000000000000",
        region: str = "us-east-1",
        strict_purge: bool = True,
    ) -> None:
        self.clock = clock
        self.listener: StoreListener = listener or _NullListener()
        self.account_id = account_id
        self.region = region
        self.strict_purge = strict_purge
        self.queues: dict[str, Queue] = {}
        self.retired = QueueCounters()
        self._id_prefix = str(uuid.uuid4())[:24]
        self._seq = 0
        self._token = 0
        self._serial = 0
        self._uid = 0
        self._examined_retired = 0

    # ----------------------------------------------------------------- queues

    def create_queue(self, name: str, attributes: dict[str, str] | None = None) -> Queue:
        """Create a queue, or return the existing one if every given attribute matches (AWS)."""
        given = attributes or {}
        fifo = attrs.is_fifo_request(name, given)
        attrs.validate_name(name, fifo)
        config = attrs.new_config(fifo, given, self._dlq_lookup)
        existing = self.queues.get(name)
        if existing is not None:
            self._check_same(existing, config, given)
            return existing
        self._uid += 1
        now = self.clock()
        queue = Queue(self._uid, name, self.arn(name), config, now)
        self.queues[name] = queue
        return queue

    def _check_same(self, queue: Queue, config: attrs.QueueConfig, given: dict[str, str]) -> None:
        if queue.config.fifo != config.fifo:
            raise errors.queue_name_exists(queue.name, "FifoQueue")
        current, wanted = attrs.render(queue.config), attrs.render(config)
        for key in given:
            if current.get(key) != wanted.get(key):
                raise errors.queue_name_exists(queue.name, key)

    def arn(self, name: str) -> str:
        return f"arn:aws:sqs:{self.region}:{self.account_id}:{name}"

    def _dlq_lookup(self, arn: str) -> bool | None:
        queue = self.queues.get(arn.rsplit(":", 1)[-1])
        return None if queue is None else queue.config.fifo

    def get_queue(self, name: str) -> Queue:
        queue = self.queues.get(name)
        if queue is None:
            raise errors.queue_does_not_exist()
        return queue

    def delete_queue(self, queue: Queue) -> None:
        if self.queues.get(queue.name) is queue:
            del self.queues[queue.name]
        self.retired.add(queue.counters)
        self._examined_retired += queue.ready.examined
        queue.deleted = True
        self.listener.deleted(queue)

    def list_queues(self, prefix: str = "") -> list[str]:
        return sorted(name for name in self.queues if name.startswith(prefix))

    def set_attributes(self, queue: Queue, given: dict[str, str]) -> None:
        if "FifoQueue" in given:
            raise errors.invalid_attribute_name("FifoQueue")
        attrs.apply_attributes(queue.config, given, self._dlq_lookup)
        queue.modified = self.clock()

    def get_attributes(self, queue: Queue, names: Iterable[str]) -> dict[str, str]:
        wanted = set(names)
        unknown = wanted - attrs.KNOWN - {"All"}
        if unknown:
            raise errors.invalid_attribute_name(sorted(unknown)[0])
        if not wanted:
            return {}
        self.reap(queue)
        full = self._all_attributes(queue)
        if "All" in wanted:
            return full
        return {key: value for key, value in full.items() if key in wanted}

    def _all_attributes(self, queue: Queue) -> dict[str, str]:
        out = {
            "QueueArn": queue.arn,
            "ApproximateNumberOfMessages": str(queue.visible),
            "ApproximateNumberOfMessagesNotVisible": str(queue.in_flight),
            "ApproximateNumberOfMessagesDelayed": str(queue.delayed),
            "CreatedTimestamp": str(int(queue.created)),
            "LastModifiedTimestamp": str(int(queue.modified)),
        }
        out.update(attrs.render(queue.config))
        return out

    def purge(self, queue: Queue, *, force: bool = False) -> int:
        """Drop every message; AWS allows one purge per queue per 60 s (``strict_purge``)."""
        now = self.clock()
        last = queue.last_purge
        if self.strict_purge and not force and last is not None and now - last < 60:
            raise errors.purge_in_progress(queue.name)
        queue.last_purge = now
        dropped = queue.depth
        self._examined_retired += queue.ready.examined
        for message in queue.received.values():
            message.state = GONE
        queue.clear_messages()
        queue.counters.purged += dropped
        return dropped

    # --------------------------------------------------------------- messages

    def send(self, queue: Queue, item: Outgoing) -> SendResult:
        """Store one message; for FIFO queues a duplicate within 5 minutes returns the original's ids."""
        now = self.clock()
        if queue.config.fifo:
            key = self._fifo_key(queue, item)
            hit = self._dedup_hit(queue, key, now)
            if hit is not None:
                return hit
        elif item.dedup_id is not None:
            raise errors.invalid_value(
                "MessageDeduplicationId",
                item.dedup_id,
                "The request include parameter that is not valid for this queue type.",
            )
        message = self._new_message(item.body, item.md5_body, item.size, int(now * 1000))
        message.attributes = item.attributes
        message.md5_attributes = item.md5_attributes
        message.trace_header = item.trace_header
        message.md5_system = item.md5_system
        message.group_id = item.group_id
        if queue.config.fifo:
            message.dedup_id = item.dedup_id or content_dedup_id(item.body)
            message.sequence_number = str(_SEQUENCE_BASE + message.seq)
            self._remember(queue, key, now, message)
        delay = queue.config.delay_seconds if item.delay_seconds is None else item.delay_seconds
        self._enqueue(queue, message, delay, now)
        queue.counters.sent += 1
        return SendResult(message.message_id, message.sequence_number)

    def _fifo_key(self, queue: Queue, item: Outgoing) -> str:
        if not item.group_id:
            raise errors.missing_parameter("MessageGroupId")
        if item.delay_seconds:
            raise errors.invalid_value(
                "DelaySeconds",
                item.delay_seconds,
                "The request include parameter that is not valid for this queue type.",
            )
        dedup_id = item.dedup_id
        if dedup_id is None:
            if not queue.config.content_based_dedup:
                raise errors.invalid_parameter(
                    "The queue should either have ContentBasedDeduplication enabled or "
                    "MessageDeduplicationId provided explicitly"
                )
            dedup_id = content_dedup_id(item.body)
        if queue.config.dedup_scope == "messageGroup":
            return f"{item.group_id}\x00{dedup_id}"
        return dedup_id

    def _dedup_hit(self, queue: Queue, key: str, now: float) -> SendResult | None:
        order = queue.dedup_order
        while order and order[0][0] <= now:
            _, old = order.popleft()
            entry = queue.dedup.get(old)
            if entry is not None and entry[0] <= now:
                del queue.dedup[old]
        hit = queue.dedup.get(key)
        return None if hit is None else SendResult(hit[1], hit[2])

    def _remember(self, queue: Queue, key: str, now: float, message: Message) -> None:
        expires = now + DEDUP_WINDOW_SECONDS
        queue.dedup[key] = (expires, message.message_id, message.sequence_number)
        queue.dedup_order.append((expires, key))

    def _new_message(self, body: str, md5_body: str, size: int, sent_ms: int) -> Message:
        self._seq += 1
        seq = self._seq
        return Message(seq, f"{self._id_prefix}{seq:012x}", body, md5_body, sent_ms, size)

    def _enqueue(self, queue: Queue, message: Message, delay: float, now: float) -> None:
        if delay > 0:
            message.state = DELAYED
            message.visible_at = now + delay
            self._token += 1
            message.token = self._token
            heapq.heappush(queue.delayed_heap, (message.visible_at, self._token, message))
            queue.delayed += 1
            self.listener.scheduled(queue, message.visible_at)
        else:
            message.state = READY
            queue.visible += 1
            woken = queue.ready.append(message)
            if woken:
                self.listener.available(queue, woken)
        depth = queue.visible + queue.in_flight + queue.delayed
        if depth > queue.max_depth:
            queue.max_depth = depth

    def receive(self, queue: Queue, limit: int, visibility_timeout: int | None = None) -> list[Message]:
        """Deliver up to ``limit`` messages; each gets a new receipt handle and goes in flight."""
        now = self.clock()
        self._reap(queue, now)
        if not queue.visible:
            return []
        timeout = queue.config.visibility_timeout if visibility_timeout is None else visibility_timeout
        now_ms = int(now * 1000)
        expired_before = now_ms - queue.config.retention_seconds * 1000

        def admit(message: Message) -> bool:
            if message.sent_ms <= expired_before:
                self._drop_expired(queue, message)
                return False
            redrive = queue.config.redrive
            if redrive is not None and message.receive_count >= redrive.max_receive_count:
                return not self._redrive(queue, message, redrive.target_name, now)
            return True

        out = queue.ready.take(limit, admit)
        for message in out:
            self._deliver(queue, message, now, now_ms, timeout)
        if out:
            self.listener.scheduled(queue, now + timeout)
        return out

    def _deliver(self, queue: Queue, message: Message, now: float, now_ms: int, timeout: int) -> None:
        message.state = IN_FLIGHT
        message.receive_count += 1
        if not message.first_receive_ms:
            message.first_receive_ms = now_ms
        self._serial += 1
        message.receipt_handle = f"{_HANDLE_PREFIX}.{queue.uid:x}.{message.seq:x}.{self._serial:x}"
        message.received_at = now
        message.visible_at = now + timeout
        self._token += 1
        message.token = self._token
        heapq.heappush(queue.in_flight_heap, (message.visible_at, self._token, message))
        queue.received[message.seq] = message
        queue.visible -= 1
        queue.in_flight += 1
        queue.counters.received += 1
        if message.receive_count > 1:
            queue.counters.duplicates += 1

    def _drop_expired(self, queue: Queue, message: Message) -> None:
        message.state = GONE
        queue.visible -= 1
        queue.received.pop(message.seq, None)
        queue.counters.expired += 1

    def _redrive(self, queue: Queue, message: Message, target: str, now: float) -> bool:
        dlq = self.queues.get(target)
        if dlq is None or dlq is queue:
            return False
        message.state = GONE
        queue.visible -= 1
        queue.received.pop(message.seq, None)
        queue.counters.redriven_out += 1
        moved = self._new_message(message.body, message.md5_body, message.size, message.sent_ms)
        for name in ("attributes", "md5_attributes", "trace_header", "md5_system", "group_id", "dedup_id"):
            setattr(moved, name, getattr(message, name))
        moved.sequence_number = message.sequence_number
        moved.message_id = message.message_id
        moved.receive_count = message.receive_count
        moved.first_receive_ms = message.first_receive_ms
        moved.dlq_source_arn = queue.arn
        dlq.counters.redriven_in += 1
        self._enqueue(dlq, moved, 0, now)
        return True

    def reap(self, queue: Queue) -> None:
        """Return expired in-flight messages and due delayed messages to the ready structures."""
        self._reap(queue, self.clock())

    def _reap(self, queue: Queue, now: float) -> None:
        woken = 0
        heap = queue.in_flight_heap
        while heap and heap[0][0] <= now:
            _, token, message = heapq.heappop(heap)
            if message.token == token and message.state == IN_FLIGHT:
                woken += self._make_visible(queue, message)
        heap = queue.delayed_heap
        while heap and heap[0][0] <= now:
            _, token, message = heapq.heappop(heap)
            if message.token == token and message.state == DELAYED:
                message.state = READY
                queue.delayed -= 1
                queue.visible += 1
                woken += queue.ready.append(message)
        if woken:
            self.listener.available(queue, woken)

    def _make_visible(self, queue: Queue, message: Message) -> int:
        message.state = READY
        queue.in_flight -= 1
        queue.visible += 1
        return queue.ready.requeue(message)

    def _invalidated(self, queue: Queue) -> None:
        """An in-flight heap entry just went stale; rebuild the heap once stale entries dominate.

        Without this, messages deleted long before their visibility would end stay referenced by the heap
        (memory and GC work proportional to throughput x visibility timeout).  A rebuild costs O(heap) and
        happens only after at least as many invalidations, so it stays O(1) amortised per operation.
        """
        heap = queue.in_flight_heap
        if len(heap) > 2 * queue.in_flight + _COMPACT_SLACK:
            live = [entry for entry in heap if entry[2].token == entry[1] and entry[2].state == IN_FLIGHT]
            heapq.heapify(live)
            queue.in_flight_heap = live

    def next_due(self, queue: Queue) -> float | None:
        """When the earliest in-flight or delayed message may become visible (may be a stale entry)."""
        due = [heap[0][0] for heap in (queue.in_flight_heap, queue.delayed_heap) if heap]
        return min(due) if due else None

    def _lookup(self, queue: Queue, handle: object) -> Message | None:
        """The message behind a well-formed handle (None if it is gone); garbage raises."""
        if not isinstance(handle, str):
            raise errors.missing_parameter("ReceiptHandle")
        parts = handle.split(".")
        try:
            if len(parts) != 4 or parts[0] != _HANDLE_PREFIX or int(parts[1], 16) != queue.uid:
                raise ValueError(handle)
            seq = int(parts[2], 16)
            int(parts[3], 16)
        except ValueError:
            raise errors.receipt_handle_invalid(handle) from None
        return queue.received.get(seq)

    def delete(self, queue: Queue, handle: str) -> bool:
        """Delete by receipt handle.  A stale handle is accepted but deletes nothing (AWS documents this)."""
        message = self._lookup(queue, handle)
        if message is None or message.receipt_handle != handle:
            queue.counters.stale_deletes += 1
            return False
        woken = 0
        if message.state == IN_FLIGHT:
            queue.in_flight -= 1
            woken = queue.ready.release(message)
        elif message.state == READY:
            queue.visible -= 1
        else:
            return False
        message.state = GONE
        del queue.received[message.seq]
        queue.counters.deleted += 1
        self._invalidated(queue)
        if woken:
            self.listener.available(queue, woken)
        return True

    def change_visibility(self, queue: Queue, handle: str, timeout: int) -> None:
        """Set a new visibility timeout, counted from now, for a message in flight under ``handle``."""
        now = self.clock()
        self._reap(queue, now)
        message = self._lookup(queue, handle)
        if message is None:
            raise errors.message_gone(handle)
        if message.receipt_handle != handle or message.state != IN_FLIGHT:
            raise errors.message_not_inflight()
        if now + timeout - message.received_at > attrs.MAX_VISIBILITY_TIMEOUT:
            raise errors.invalid_value(
                "VisibilityTimeout",
                timeout,
                "Total VisibilityTimeout for the message is beyond the limit "
                f"[{attrs.MAX_VISIBILITY_TIMEOUT} seconds]",
            )
        if timeout <= 0:
            woken = self._make_visible(queue, message)
            self._invalidated(queue)
            if woken:
                self.listener.available(queue, woken)
            return
        message.visible_at = now + timeout
        self._token += 1
        message.token = self._token
        heapq.heappush(queue.in_flight_heap, (message.visible_at, self._token, message))
        self._invalidated(queue)
        self.listener.scheduled(queue, message.visible_at)

    # ----------------------------------------------------------------- bulk

    def preload(
        self,
        queue: Queue,
        count: int,
        bodies: Iterable[tuple[str, str, int]],
        preset: Preset,
    ) -> int:
        """Append ``count`` messages directly, bypassing the protocol; ``bodies`` yields (body, md5, size).

        No deduplication and no delay; FIFO messages need ``preset.group_id``.
        """
        if queue.config.fifo and not preset.group_id:
            raise errors.missing_parameter("MessageGroupId")
        now = self.clock()
        sent_ms = int(now * 1000) if preset.sent_ms is None else preset.sent_ms
        # Millions of new objects would trigger repeated full collections for nothing: none of them
        # is in a reference cycle.  Pause the cyclic GC for the loop only.
        gc_was_enabled = gc.isenabled()
        gc.disable()
        try:
            woken, added = self._append_bulk(queue, count, bodies, preset, sent_ms)
        finally:
            if gc_was_enabled:
                gc.enable()
        queue.visible += added
        queue.counters.sent += added
        queue.max_depth = max(queue.max_depth, queue.depth)
        if woken:
            self.listener.available(queue, woken)
        return added

    def _append_bulk(
        self, queue: Queue, count: int, bodies: Iterable[tuple[str, str, int]], preset: Preset, sent_ms: int
    ) -> tuple[int, int]:
        append = queue.ready.append
        fifo = queue.config.fifo
        woken = added = 0
        for body, md5, size in itertools.islice(bodies, count):
            message = self._new_message(body, md5, size + preset.attributes_size, sent_ms)
            message.attributes = preset.attributes
            message.md5_attributes = preset.md5_attributes
            message.receive_count = preset.receive_count
            message.first_receive_ms = preset.first_receive_ms
            message.group_id = preset.group_id
            if fifo:
                message.sequence_number = str(_SEQUENCE_BASE + message.seq)
            woken += append(message)
            added += 1
        return woken, added

    # --------------------------------------------------------------- introspection

    @property
    def examined(self) -> int:
        """Messages popped from ready structures so far: a structural measure of receive cost."""
        return self._examined_retired + sum(queue.ready.examined for queue in self.queues.values())

    def system_attributes(self, queue: Queue, message: Message) -> dict[str, str]:
        """Every system attribute AWS can return for ``message`` (``AttributeNames=All``)."""
        out = {
            "SenderId": SENDER_ID,
            "SentTimestamp": str(message.sent_ms),
            "ApproximateReceiveCount": str(message.receive_count),
            "ApproximateFirstReceiveTimestamp": str(message.first_receive_ms),
        }
        if message.group_id is not None:
            out["MessageGroupId"] = message.group_id
        if message.dedup_id is not None:
            out["MessageDeduplicationId"] = message.dedup_id
        if message.sequence_number is not None:
            out["SequenceNumber"] = message.sequence_number
        if message.trace_header is not None:
            out["AWSTraceHeader"] = message.trace_header
        if message.dlq_source_arn is not None:
            out["DeadLetterQueueSourceArn"] = message.dlq_source_arn
        return out
