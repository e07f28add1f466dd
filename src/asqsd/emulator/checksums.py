"""Checksums SQS returns: MD5 of the body, MD5 of message attributes, content-based deduplication ids."""

from __future__ import annotations

import base64
import hashlib
import struct
from collections.abc import Iterable, Mapping

_STRING_TRANSPORT = b"\x01"
_BINARY_TRANSPORT = b"\x02"
_LENGTH = struct.Struct("!I")

# (name, data type, value bytes, is binary): the decoded form the MD5 algorithm works on.
EncodedAttribute = tuple[str, str, bytes, bool]


def md5_of_body(body: str) -> str:
    """Hex MD5 of the UTF-8 body, as ``MD5OfMessageBody`` / ``MD5OfBody``."""
    return hashlib.md5(body.encode("utf-8"), usedforsecurity=False).hexdigest()


def md5_of_attributes(attributes: Iterable[EncodedAttribute]) -> str:
    """``MD5OfMessageAttributes`` with AWS's algorithm.

    Attributes sorted by name; for each: length-prefixed name, length-prefixed data type, one transport byte
    (1 string/number, 2 binary), then the length-prefixed value.  Lengths are 4-byte big-endian.
    """
    digest = hashlib.md5(usedforsecurity=False)
    for name, data_type, value, binary in sorted(attributes, key=lambda item: item[0]):
        _update(digest, name.encode("utf-8"))
        _update(digest, data_type.encode("utf-8"))
        digest.update(_BINARY_TRANSPORT if binary else _STRING_TRANSPORT)
        _update(digest, value)
    return digest.hexdigest()


def _update(digest: hashlib._Hash, value: bytes) -> None:
    digest.update(_LENGTH.pack(len(value)))
    digest.update(value)


def md5_of_json_attributes(attributes: Mapping[str, Mapping[str, str]]) -> str:
    """MD5 of attributes in their wire form (``BinaryValue`` base64-encoded)."""
    return md5_of_attributes(encode_attribute(name, value) for name, value in attributes.items())


def encode_attribute(name: str, value: Mapping[str, str]) -> EncodedAttribute:
    """The (name, type, bytes, binary) tuple of one wire-form attribute."""
    data_type = value["DataType"]
    if "BinaryValue" in value:
        return name, data_type, base64.b64decode(value["BinaryValue"]), True
    return name, data_type, value["StringValue"].encode("utf-8"), False


def content_dedup_id(body: str) -> str:
    """FIFO content-based deduplication id: SHA-256 of the body (AWS ignores attributes)."""
    return hashlib.sha256(body.encode("utf-8")).hexdigest()
