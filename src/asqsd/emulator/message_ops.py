"""Message operations: send, receive (the synchronous part), delete and visibility, single and batch."""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass
from typing import Any

from asqsd.emulator import errors
from asqsd.emulator.attributes import MAX_MESSAGE_SIZE, MAX_VISIBILITY_TIMEOUT, MAX_WAIT_SECONDS
from asqsd.emulator.checksums import md5_of_json_attributes
from asqsd.emulator.context import Context
from asqsd.emulator.messages import Message
from asqsd.emulator.queues import Queue
from asqsd.emulator.store import Outgoing, SendResult
from asqsd.emulator.validation import (
    AttributeSelector,
    Params,
    batch_entries,
    integer,
    outgoing,
    queue_name_of,
    string_list,
    text,
)

Result = dict[str, Any]
_VT_REASON = f"Must be >= 0 and <= {MAX_VISIBILITY_TIMEOUT}, if provided."


def send_message(ctx: Context, params: Params) -> Result:
    queue = ctx.store.get_queue(queue_name_of(params))
    item = outgoing(params, queue.config.maximum_message_size)
    return _sent(ctx.store.send(queue, item), item)


def _sent(result: SendResult, item: Outgoing) -> Result:
    out: Result = {"MD5OfMessageBody": item.md5_body, "MessageId": result.message_id}
    if item.md5_attributes is not None:
        out["MD5OfMessageAttributes"] = item.md5_attributes
    if item.md5_system is not None:
        out["MD5OfMessageSystemAttributes"] = item.md5_system
    if result.sequence_number is not None:
        out["SequenceNumber"] = result.sequence_number
    return out


def send_message_batch(ctx: Context, params: Params) -> Result:
    queue = ctx.store.get_queue(queue_name_of(params))
    entries = batch_entries(params, "SendMessageBatch")
    items = {entry["Id"]: _try_outgoing(entry, queue.config.maximum_message_size) for entry in entries}
    total = sum(item.size for item in items.values() if isinstance(item, Outgoing))
    if total > MAX_MESSAGE_SIZE:
        raise errors.batch_too_long(total, MAX_MESSAGE_SIZE)

    def send_one(entry: Params) -> Result:
        item = items[entry["Id"]]
        if isinstance(item, errors.SqsError):
            raise item
        return _sent(ctx.store.send(queue, item), item)

    return _batch(ctx, entries, send_one)


def _try_outgoing(entry: Params, max_size: int) -> Outgoing | errors.SqsError:
    try:
        return outgoing(entry, max_size)
    except errors.SqsError as exc:
        return exc


def _batch(ctx: Context, entries: list[Params], apply: Callable[[Params], Result]) -> Result:
    """Apply each entry; errors (and injected faults) become per-entry ``Failed`` results."""
    successful: list[Result] = []
    failed: list[Result] = []
    for entry in entries:
        entry_id = entry["Id"]
        if ctx.fail_entry is not None and ctx.fail_entry():
            ctx.entries_failed += 1
            failed.append(_failure(entry_id, errors.internal_error("Injected batch entry failure")))
            continue
        try:
            successful.append({"Id": entry_id, **apply(entry)})
        except errors.SqsError as exc:
            failed.append(_failure(entry_id, exc))
    return {"Successful": successful, "Failed": failed}


def _failure(entry_id: str, exc: errors.SqsError) -> Result:
    return {"Id": entry_id, "SenderFault": exc.sender_fault, "Code": exc.code, "Message": exc.message}


def delete_message(ctx: Context, params: Params) -> Result:
    queue = ctx.store.get_queue(queue_name_of(params))
    ctx.store.delete(queue, text(params, "ReceiptHandle"))
    return {}


def delete_message_batch(ctx: Context, params: Params) -> Result:
    queue = ctx.store.get_queue(queue_name_of(params))
    entries = batch_entries(params, "DeleteMessageBatch")

    def delete_one(entry: Params) -> Result:
        ctx.store.delete(queue, text(entry, "ReceiptHandle"))
        return {}

    return _batch(ctx, entries, delete_one)


def change_message_visibility(ctx: Context, params: Params) -> Result:
    queue = ctx.store.get_queue(queue_name_of(params))
    _change_visibility(ctx, queue, params)
    return {}


def _change_visibility(ctx: Context, queue: Queue, params: Params) -> None:
    handle = text(params, "ReceiptHandle")
    timeout = integer(params, "VisibilityTimeout", 0, MAX_VISIBILITY_TIMEOUT, _VT_REASON)
    if timeout is None:
        raise errors.missing_parameter("VisibilityTimeout")
    ctx.store.change_visibility(queue, handle, timeout)


def change_message_visibility_batch(ctx: Context, params: Params) -> Result:
    queue = ctx.store.get_queue(queue_name_of(params))
    entries = batch_entries(params, "ChangeMessageVisibilityBatch")

    def change_one(entry: Params) -> Result:
        _change_visibility(ctx, queue, entry)
        return {}

    return _batch(ctx, entries, change_one)


@dataclass(frozen=True, slots=True)
class ReceiveRequest:
    """A validated ReceiveMessage call."""

    queue_name: str
    limit: int
    visibility_timeout: int | None
    wait_seconds: int
    system_names: frozenset[str]
    message_attributes: AttributeSelector | None


def parse_receive(ctx: Context, params: Params) -> ReceiveRequest:
    name = queue_name_of(params)
    queue = ctx.store.get_queue(name)
    limit = integer(params, "MaxNumberOfMessages", 1, 10, "Must be between 1 and 10, if provided.")
    wait = integer(
        params,
        "WaitTimeSeconds",
        0,
        MAX_WAIT_SECONDS,
        f"Must be >= 0 and <= {MAX_WAIT_SECONDS}, if provided.",
    )
    timeout = integer(params, "VisibilityTimeout", 0, MAX_VISIBILITY_TIMEOUT, _VT_REASON)
    names = string_list(params, "AttributeNames") + string_list(params, "MessageSystemAttributeNames")
    return ReceiveRequest(
        queue_name=name,
        limit=1 if limit is None else limit,
        visibility_timeout=timeout,
        wait_seconds=queue.config.receive_wait_seconds if wait is None else wait,
        system_names=frozenset(names),
        message_attributes=AttributeSelector.parse(string_list(params, "MessageAttributeNames")),
    )


def receive_now(ctx: Context, request: ReceiveRequest) -> list[Message]:
    """One non-blocking attempt; the server retries it while a long poll lasts."""
    queue = ctx.store.get_queue(request.queue_name)
    return ctx.store.receive(queue, request.limit, request.visibility_timeout)


def render_received(ctx: Context, request: ReceiveRequest, messages: list[Message]) -> Result:
    if not messages:
        return {}
    queue = ctx.store.queues.get(request.queue_name)
    return {"Messages": [_render(ctx, queue, request, message) for message in messages]}


def _render(ctx: Context, queue: Queue | None, request: ReceiveRequest, message: Message) -> Result:
    out: Result = {
        "MessageId": message.message_id,
        "ReceiptHandle": message.receipt_handle,
        "MD5OfBody": message.md5_body,
        "Body": message.body,
    }
    if request.system_names and queue is not None:
        system = ctx.store.system_attributes(queue, message)
        if "All" not in request.system_names:
            system = {key: value for key, value in system.items() if key in request.system_names}
        if system:
            out["Attributes"] = system
    selector = request.message_attributes
    if selector is not None and message.attributes:
        chosen = selector.select(message.attributes)
        if chosen:
            out["MessageAttributes"] = chosen
            same = len(chosen) == len(message.attributes)
            out["MD5OfMessageAttributes"] = message.md5_attributes if same else md5_of_json_attributes(chosen)
    return out
