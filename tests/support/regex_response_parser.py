"""The regex response parser the keep-alive engine used before llhttp: the differential tests' reference.

tests/unit/clients/test_http1_parser_differential.py checks that asqsd.clients.http1.parser frames
every valid response exactly as this one did. It reads only the status line and Content-Length,
Transfer-Encoding, Connection and Retry-After, frames the body (length, chunked or until close) and
discards it unless asked to capture it. Kept as it was, less its cache of validated heads (a speed
trick that changed no result); nothing in src/ imports it.
"""

from __future__ import annotations

import re
from typing import Final

MAX_HEAD_BYTES: Final = 64 * 1024


_NO_BODY_STATUSES: Final = frozenset({204, 304})


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
        parsed = _analyse_head(head)
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
