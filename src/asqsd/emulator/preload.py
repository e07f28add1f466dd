"""Bulk preload: put many messages straight into a queue, without the SDK or HTTP per message."""

from __future__ import annotations

from collections.abc import Callable, Iterator, Mapping
from typing import Any

from asqsd.emulator import errors
from asqsd.emulator.checksums import md5_of_body
from asqsd.emulator.store import Preset, Store
from asqsd.emulator.validation import check_text, message_attributes, utf8_size

INDEX_PLACEHOLDER = "{i}"
PRESET_ATTRIBUTES = frozenset(
    {"SentTimestamp", "ApproximateFirstReceiveTimestamp", "ApproximateReceiveCount", "MessageGroupId"}
)


def preload(
    store: Store,
    queue_name: str,
    count: int,
    *,
    body: str = "message {i}",
    body_factory: Callable[[int], str] | None = None,
    message_attributes: Mapping[str, Mapping[str, str]] | None = None,
    attributes: Mapping[str, Any] | None = None,
) -> int:
    """Append ``count`` messages to ``queue_name``; returns how many were added.

    ``body`` may contain ``{i}`` (replaced by the message index, 0-based); ``body_factory(i)`` overrides it.
    ``attributes`` presets system attributes: SentTimestamp and ApproximateFirstReceiveTimestamp (epoch
    ms), ApproximateReceiveCount, MessageGroupId (required for FIFO queues).
    """
    if count < 0:
        raise ValueError("count must be >= 0")
    queue = store.get_queue(queue_name)
    preset = _preset(attributes or {}, message_attributes)
    if body_factory is None and INDEX_PLACEHOLDER not in body:
        return store.preload(queue, count, _constant(body), preset)
    factory = body_factory or (lambda index: body.replace(INDEX_PLACEHOLDER, str(index)))
    return store.preload(queue, count, _generated(factory), preset)


def _preset(
    attributes: Mapping[str, Any], raw_message_attributes: Mapping[str, Mapping[str, str]] | None
) -> Preset:
    unknown = set(attributes) - PRESET_ATTRIBUTES
    if unknown:
        raise ValueError(f"cannot preset {sorted(unknown)}; allowed: {sorted(PRESET_ATTRIBUTES)}")
    raw = (
        {name: dict(value) for name, value in raw_message_attributes.items()}
        if raw_message_attributes
        else None
    )
    stored, md5, size = message_attributes(raw)
    sent = attributes.get("SentTimestamp")
    group = attributes.get("MessageGroupId")
    return Preset(
        sent_ms=None if sent is None else int(sent),
        first_receive_ms=int(attributes.get("ApproximateFirstReceiveTimestamp", 0)),
        receive_count=int(attributes.get("ApproximateReceiveCount", 0)),
        group_id=None if group is None else str(group),
        attributes=stored,
        md5_attributes=md5,
        attributes_size=size,
    )


def _checked(body: str) -> tuple[str, str, int]:
    if not body:
        raise errors.missing_parameter("MessageBody")
    check_text(body, "message body")
    return body, md5_of_body(body), utf8_size(body)


def _constant(body: str) -> Iterator[tuple[str, str, int]]:
    # One MD5 for the whole preload: this is what makes a million messages take about a second.
    item = _checked(body)
    while True:
        yield item


def _generated(factory: Callable[[int], str]) -> Iterator[tuple[str, str, int]]:
    index = 0
    while True:
        yield _checked(factory(index))
        index += 1
