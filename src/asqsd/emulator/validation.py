"""Request parameter checks shared by the operations, with AWS's error codes and wording."""

from __future__ import annotations

import base64
import binascii
import re
from collections.abc import Mapping
from dataclasses import dataclass
from decimal import Decimal, InvalidOperation
from typing import Any

from asqsd.emulator import errors
from asqsd.emulator.attributes import MAX_DELAY_SECONDS
from asqsd.emulator.checksums import EncodedAttribute, md5_of_attributes, md5_of_body
from asqsd.emulator.messages import MessageAttributes
from asqsd.emulator.store import Outgoing

Params = dict[str, Any]

MAX_BATCH_ENTRIES = 10
MAX_MESSAGE_ATTRIBUTES = 10
# The characters AWS allows in bodies and string attribute values; anything else is rejected.
_INVALID_CHARS = re.compile("[^\t\n\r\x20-\ud7ff\ue000-\ufffd\U00010000-\U0010ffff]")
_BATCH_ID = re.compile(r"[A-Za-z0-9_-]{1,80}")
_ATTRIBUTE_NAME = re.compile(r"[A-Za-z0-9_.-]{1,256}")
_RESERVED_PREFIXES = ("aws.", "amazon.")
_DATA_TYPES = ("String", "Number", "Binary")
# MessageGroupId / MessageDeduplicationId: 1-128 alphanumerics and punctuation.
_ID_CHARS = re.compile(r"[A-Za-z0-9!\"#$%&'()*+,\-./:;<=>?@\[\\\]^_`{|}~]{1,128}")


def text(params: Params, name: str) -> str:
    """A required string parameter."""
    value = params.get(name)
    if not isinstance(value, str):
        raise errors.missing_parameter(name)
    return value


def optional_text(params: Params, name: str) -> str | None:
    value = params.get(name)
    if value is None or isinstance(value, str):
        return value
    raise errors.serialization_error(f"{name} must be a string")


def integer(params: Params, name: str, low: int, high: int, reason: str) -> int | None:
    """An optional integer parameter in [low, high]; ``reason`` completes AWS's error sentence."""
    value = params.get(name)
    if value is None:
        return None
    if isinstance(value, bool) or not isinstance(value, int):
        raise errors.serialization_error(f"{name} must be an integer")
    if not low <= value <= high:
        raise errors.invalid_value(name, value, reason)
    return value


def string_list(params: Params, name: str) -> list[str]:
    value = params.get(name)
    if value is None:
        return []
    if not isinstance(value, list) or not all(isinstance(item, str) for item in value):
        raise errors.serialization_error(f"{name} must be a list of strings")
    return value


def string_map(params: Params, name: str) -> dict[str, str]:
    value = params.get(name)
    if value is None:
        return {}
    if not isinstance(value, dict):
        raise errors.serialization_error(f"{name} must be a map")
    return value


def queue_name_of(params: Params) -> str:
    """Queues are resolved by the last path segment of QueueUrl, whatever its host."""
    url = text(params, "QueueUrl")
    return url.rstrip("/").rsplit("/", 1)[-1]


def batch_entries(params: Params, operation: str) -> list[Params]:
    """Entries of a batch call, checked as AWS does: 1-10 entries with distinct, well-formed ids."""
    entries = params.get("Entries")
    if not isinstance(entries, list) or not entries:
        raise errors.empty_batch(operation)
    if len(entries) > MAX_BATCH_ENTRIES:
        raise errors.too_many_entries(len(entries))
    seen: set[str] = set()
    for entry in entries:
        entry_id = entry.get("Id") if isinstance(entry, dict) else None
        if not isinstance(entry_id, str) or _BATCH_ID.fullmatch(entry_id) is None:
            raise errors.invalid_batch_entry_id()
        if entry_id in seen:
            raise errors.ids_not_distinct(entry_id)
        seen.add(entry_id)
    return entries


def check_text(value: str, what: str) -> None:
    match = _INVALID_CHARS.search(value)
    if match is not None:
        raise errors.invalid_message_contents(
            f"Invalid binary character '#x{ord(match.group()):X}' was found in the {what}, "
            "the set of allowed characters is #x9 | #xA | #xD | #x20 to #xD7FF | #xE000 to #xFFFD "
            "| #x10000 to #x10FFFF"
        )


def utf8_size(value: str) -> int:
    return len(value) if value.isascii() else len(value.encode("utf-8", "surrogatepass"))


def outgoing(entry: Params, max_size: int) -> Outgoing:
    """Validate one SendMessage request (or batch entry) into an :class:`Outgoing`."""
    body = entry.get("MessageBody")
    if not isinstance(body, str) or not body:
        raise errors.missing_parameter("MessageBody")
    check_text(body, "message body")
    attributes, md5_attributes, attributes_size = message_attributes(entry.get("MessageAttributes"))
    trace_header, md5_system = system_attributes(entry.get("MessageSystemAttributes"))
    size = utf8_size(body) + attributes_size
    if size > max_size:
        raise errors.invalid_parameter(
            f"One or more parameters are invalid. Reason: Message must be shorter than {max_size} bytes."
        )
    delay = integer(
        entry, "DelaySeconds", 0, MAX_DELAY_SECONDS, f"DelaySeconds must be >= 0 and <= {MAX_DELAY_SECONDS}."
    )
    return Outgoing(
        body=body,
        md5_body=md5_of_body(body),
        size=size,
        attributes=attributes,
        md5_attributes=md5_attributes,
        delay_seconds=delay,
        group_id=_message_id_field(entry, "MessageGroupId"),
        dedup_id=_message_id_field(entry, "MessageDeduplicationId"),
        trace_header=trace_header,
        md5_system=md5_system,
    )


def _message_id_field(entry: Params, name: str) -> str | None:
    value = optional_text(entry, name)
    if value is not None and _ID_CHARS.fullmatch(value) is None:
        raise errors.invalid_value(
            name, value, f"{name} can only include alphanumeric and punctuation characters."
        )
    return value


ParsedAttributes = tuple[MessageAttributes | None, str | None, int]
# Producers tend to send the same attributes on every message: remember recent parses (and share the
# resulting dict between messages; it is never mutated).  Bounded; cleared when full.
_ATTRIBUTE_CACHE: dict[tuple[tuple[str, object, object, object], ...], ParsedAttributes] = {}
_ATTRIBUTE_CACHE_SIZE = 4096


def message_attributes(raw: object) -> ParsedAttributes:
    """Validated attributes in wire form, their MD5 and their size (name + type + value bytes)."""
    if raw is None or raw == {}:
        return None, None, 0
    if not isinstance(raw, dict):
        raise errors.serialization_error("MessageAttributes must be a map")
    try:
        key = tuple(
            (name, value.get("DataType"), value.get("StringValue"), value.get("BinaryValue"))
            for name, value in raw.items()
        )
        cached = _ATTRIBUTE_CACHE.get(key)
    except (AttributeError, TypeError):  # malformed input: let the full parse report it
        return _parse_attributes(raw)
    if cached is None:
        cached = _parse_attributes(raw)
        if len(_ATTRIBUTE_CACHE) >= _ATTRIBUTE_CACHE_SIZE:
            _ATTRIBUTE_CACHE.clear()
        _ATTRIBUTE_CACHE[key] = cached
    return cached


def _parse_attributes(raw: dict[str, Any]) -> ParsedAttributes:
    if len(raw) > MAX_MESSAGE_ATTRIBUTES:
        raise errors.invalid_parameter(
            f"Number of message attributes [{len(raw)}] exceeds the allowed maximum "
            f"[{MAX_MESSAGE_ATTRIBUTES}]."
        )
    stored: MessageAttributes = {}
    encoded: list[EncodedAttribute] = []
    size = 0
    for name, value in raw.items():
        item = _attribute(name, value)
        stored[name] = _wire_form(item)
        encoded.append(item)
        size += len(name.encode("utf-8")) + len(item[1].encode("utf-8")) + len(item[2])
    return stored, md5_of_attributes(encoded), size


def _wire_form(item: EncodedAttribute) -> dict[str, str]:
    _, data_type, value, binary = item
    if binary:
        return {"DataType": data_type, "BinaryValue": base64.b64encode(value).decode("ascii")}
    return {"DataType": data_type, "StringValue": value.decode("utf-8")}


def _attribute(name: str, value: object) -> EncodedAttribute:
    _check_attribute_name(name)
    if not isinstance(value, Mapping):
        raise errors.serialization_error(f"Message attribute {name} must be a structure")
    data_type = value.get("DataType")
    if not isinstance(data_type, str) or not data_type:
        raise errors.invalid_parameter(f"The message attribute '{name}' must contain a non-empty data type.")
    base = data_type.split(".", 1)[0]
    if base not in _DATA_TYPES or len(data_type) > 256:
        raise errors.invalid_parameter(
            f"The message attribute '{name}' has an invalid message attribute type, the set of supported "
            "type prefixes is Binary, Number, and String."
        )
    if base == "Binary":
        return name, data_type, _binary_value(name, data_type, value.get("BinaryValue")), True
    return name, data_type, _string_value(name, data_type, base, value.get("StringValue")), False


def _check_attribute_name(name: str) -> None:
    lowered = name.lower()
    if (
        _ATTRIBUTE_NAME.fullmatch(name) is None
        or lowered.startswith(_RESERVED_PREFIXES)
        or name.startswith(".")
        or name.endswith(".")
        or ".." in name
    ):
        raise errors.invalid_parameter(
            f"The message attribute name '{name}' is invalid. Attribute name can contain A-Z, a-z, 0-9, "
            "underscore (_), hyphen (-), and period (.) characters."
        )


def _empty_value(name: str, data_type: str) -> errors.SqsError:
    return errors.invalid_parameter(
        f"The message attribute '{name}' must contain non-empty message attribute value for message "
        f"attribute type '{data_type}'."
    )


def _binary_value(name: str, data_type: str, value: object) -> bytes:
    if not isinstance(value, str) or not value:
        raise _empty_value(name, data_type)
    try:
        decoded = base64.b64decode(value, validate=True)
    except (binascii.Error, ValueError):
        raise errors.serialization_error(f"Message attribute {name} is not valid base64") from None
    if not decoded:
        raise _empty_value(name, data_type)
    return decoded


def _string_value(name: str, data_type: str, base: str, value: object) -> bytes:
    if not isinstance(value, str) or not value:
        raise _empty_value(name, data_type)
    check_text(value, f"message attribute '{name}'")
    if base == "Number" and not _is_number(value):
        raise errors.invalid_parameter(f"Could not cast message attribute '{name}' value to number.")
    return value.encode("utf-8")


def _is_number(value: str) -> bool:
    try:
        number = Decimal(value)
    except InvalidOperation:
        return False
    return number.is_finite() and len(number.as_tuple().digits) <= 38


def system_attributes(raw: object) -> tuple[str | None, str | None]:
    """The AWSTraceHeader (the only message system attribute SQS accepts) and its MD5."""
    if raw is None or raw == {}:
        return None, None
    if not isinstance(raw, dict) or set(raw) != {"AWSTraceHeader"}:
        raise errors.invalid_parameter("Message system attribute name must be AWSTraceHeader.")
    item = _attribute("AWSTraceHeader", raw["AWSTraceHeader"])
    if item[1] != "String":
        raise errors.invalid_parameter("Message system attribute AWSTraceHeader must have data type String.")
    return item[2].decode("utf-8"), md5_of_attributes([item])


@dataclass(frozen=True, slots=True)
class AttributeSelector:
    """Which message attributes a ReceiveMessage asked for (``All``, ``.*``, ``prefix.*`` or exact names)."""

    everything: bool
    names: frozenset[str]
    prefixes: tuple[str, ...]

    @classmethod
    def parse(cls, requested: list[str]) -> AttributeSelector | None:
        if not requested:
            return None
        if "All" in requested or ".*" in requested:
            return cls(True, frozenset(), ())
        prefixes = tuple(name[:-1] for name in requested if name.endswith(".*"))
        names = frozenset(name for name in requested if not name.endswith(".*"))
        return cls(False, names, prefixes)

    def select(self, attributes: MessageAttributes) -> MessageAttributes:
        if self.everything:
            return attributes
        return {
            name: value
            for name, value in attributes.items()
            if name in self.names or name.startswith(self.prefixes)
        }
