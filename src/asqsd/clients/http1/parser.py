"""The keep-alive engine's HTTP/1.1 response parser: llhttp, plus what a client adds to it.

llhttp (Node.js's parser, through httptools, as uvicorn uses it) validates and frames every
response strictly: bare CR or LF, whitespace around chunk sizes, bad chunk extensions, control
characters in header values, malformed trailers, duplicate Content-Length and Content-Length with
Transfer-Encoding are all errors, the inputs behind response-smuggling attacks. Around it this
module bounds the header section (``MAX_HEAD_BYTES``), chunk lines and trailers, reads the three
headers a client acts on, skips 1xx interim responses, ends a body at the close and counts bytes
that arrive after the response. Anything it cannot frame is a ProtocolError, so a response can
never be paired with the wrong request (docs/http-client.md).
"""

from __future__ import annotations

from types import SimpleNamespace
from typing import Final

from httptools import HttpParserCallbackError, HttpParserError, HttpParserUpgrade, HttpResponseParser

MAX_HEAD_BYTES: Final = 64 * 1024


_HEAD_END: Final = b"\r\n\r\n"


# Every header section must start with this: llhttp also takes HTTP/0.9, HTTP/2.0, RTSP/ and ICE/
# status lines and skips empty lines before one; a client of HTTP/1.1 servers takes none of them.
_HTTP1: Final = b"HTTP/1."


# The header names the parser reads have these lengths (Retry-After, Content-Length,
# Transfer-Encoding, X-Asqsd-Pause-Seconds): other names are skipped on their length alone,
# without lower-casing them.
_READ_NAME_LENGTHS: Final = frozenset((11, 14, 17, 21))


_NO_BODY_STATUSES: Final = frozenset({204, 304})


class ProtocolError(Exception):
    """The worker's response is not valid HTTP/1.x (as far as this client cares to check)."""


class _AfterResponse(Exception):
    """Raised from a callback to stop llhttp at bytes that follow a complete response."""


class ResponseParser:
    """Incremental, strict HTTP/1.x response parser that keeps the status and discards the body.

    Feed it bytes in any chunking with :meth:`feed` until it returns True, then read ``status``,
    ``keep_alive`` and ``retry_after``. Memory is bounded: an unfinished header section is held up
    to ``limit`` + 3 bytes, and a header section, chunk line or trailer section longer than
    ``limit`` raises :class:`ProtocolError`; bodies are never held.

    With ``capture_limit`` set (body-capturing mode, used by the SQS client) the parser also keeps
    the final response's header section in ``head`` (without the final CRLFCRLF) and its decoded
    body (chunk framing removed) in ``body``; a body larger than ``capture_limit`` bytes raises
    :class:`ProtocolError`. Without it (the default) the body is discarded as it arrives, except
    that with ``snippet_limit`` the first that many bytes of a non-2xx response's body are kept in
    ``snippet`` (for the failure log: a 2xx body costs nothing).

    ``extra`` counts the bytes that arrived after the response (the pool never reuses a connection
    that had any): all of any later read, and the rest of the read that ended the response, with
    two exceptions where llhttp does not say where in a read the response ended: empty lines (CR,
    LF) right after it may go uncounted (llhttp skips them, as RFC 9112 allows), and after a
    chunked response the rest of that read counts as 1.
    """

    __slots__ = (
        "_body_limit",
        "_buf",
        "_callbacks",
        "_chunked",
        "_done",
        "_final",
        "_framing",
        "_heading",
        "_length",
        "_limit",
        "_llhttp",
        "_mark",
        "_plain",
        "_snippet_limit",
        "_snippet_room",
        "body",
        "extra",
        "head",
        "keep_alive",
        "pause_seconds",
        "retry_after",
        "snippet",
        "started",
        "status",
    )

    status: int
    keep_alive: bool  # whether the connection may carry another request after this response
    retry_after: str | None
    pause_seconds: str | None  # X-Asqsd-Pause-Seconds, unparsed (the pipeline judges it)
    started: bool  # any byte of this response seen (then a disconnect is not "stale")
    extra: int  # bytes received after the end of the response (see above)

    def __init__(
        self, limit: int = MAX_HEAD_BYTES, *, capture_limit: int | None = None, snippet_limit: int = 0
    ) -> None:
        self._limit = limit
        self._body_limit = capture_limit
        self._snippet_limit = snippet_limit
        self._snippet_room = 0
        self.snippet = b""
        self._buf = bytearray()
        self.body = bytearray()
        self.head = b""  # capturing mode only: the final response's header section
        # llhttp calls only what is set here (no status text, no chunk headers or extensions).
        self._callbacks = SimpleNamespace(
            on_message_begin=self._on_message_begin,
            on_header=self._on_header,
            on_headers_complete=self._on_headers_complete,
            on_body=self._on_body if capture_limit is None else self._on_body_captured,
            on_chunk_header=self._on_chunk_header,
            on_message_complete=self._on_message_complete,
        )
        self._done = False
        self.reset()

    def reset(self) -> None:
        """Prepare for the next response on the same connection."""
        # After a whole keep-alive response and nothing else, llhttp waits for the next one;
        # after anything else (and at first) it starts afresh.
        if not (self._done and self.keep_alive and not self.extra):
            self._llhttp = HttpResponseParser(self._callbacks)
            self._buf.clear()
        self._heading = True  # the final response's header section has not all arrived yet
        self._final = self._done = self._chunked = False  # _final: llhttp has parsed that section
        self._plain = self._body_limit is None  # no head to keep, no interim response seen
        self._length: int | None = None  # Content-Length
        # Bytes after the final header section that were not body: chunk framing, trailers, and
        # at the end what followed the response. _mark: the count at the last chunk boundary.
        self._framing = self._mark = 0
        self.status = self.extra = 0
        self.keep_alive = self.started = False
        self.retry_after = self.pause_seconds = None
        if self._snippet_room or self.snippet:  # only after a non-2xx response with a body
            self._snippet_room = 0
            self.snippet = b""
        if self._body_limit is not None:
            self.head = b""
            self.body = bytearray()  # a fresh one: the previous response's may still be in use

    @property
    def buffered(self) -> int:
        """Bytes of an unfinished header section, chunk line or trailer section held or counted."""
        if self._heading:
            return len(self._buf)
        return 0 if self._done else self._framing - self._mark

    @property
    def done(self) -> bool:
        """Whether a complete final response has been parsed."""
        return self._done

    def feed(self, data: bytes) -> bool:
        """Consume ``data``; True once the response is complete (later bytes count in ``extra``)."""
        if self._done:
            self.extra += len(data)
            return True
        if not data:
            return False
        self.started = True
        heading = self._heading
        try:
            self._llhttp.feed_data(data)
        except (HttpParserError, HttpParserUpgrade) as exc:
            if not self._done:
                raise self._error(exc) from None
            self.extra = 1  # llhttp refused what followed the response, or was stopped there
        if heading:
            # The usual case: this read held one whole response and nothing more, and nothing is
            # held from earlier. llhttp checked all of it but the first line's protocol and the
            # header section's size, which cannot exceed the read's.
            if (
                self._done
                and not self.extra
                and self._plain
                and not self._buf
                and len(data) <= self._limit + 4
                and data.startswith(_HTTP1)
            ):
                self._heading = False
                return True
            start = self._settle_heads(data)
            if start < 0:
                return False
        else:
            start = 0
        framing = self._framing = self._framing + len(data) - start
        if self._done:
            # Unless the body was chunked (its end is known to llhttp alone: what followed it
            # counts as 1, above), what was not body followed the response.
            if not self._chunked:
                self.extra = framing
            return True
        if self._mark < 0:  # a chunk line ended in this read: count afresh from its end
            self._mark = framing
        elif framing - self._mark > self._limit:
            raise ProtocolError(f"chunk line or trailer section longer than {self._limit} bytes")
        return False

    def feed_eof(self) -> bool:
        """The peer closed: True if that completes the response (a body delimited by close)."""
        if self._final and self._length is None and not self._chunked:
            self._done = True
        return self._done

    # --- header sections: what llhttp leaves to its user -------------------------------------
    def _settle_heads(self, data: bytes) -> int:
        """Where the final header section ends in ``data`` (llhttp has parsed it), or -1 if not yet.

        Checks the size and the first line of every header section (1xx interim ones too) that ends
        in ``data``, and holds the bytes of one that has not ended, up to the limit.
        """
        pos = 0
        while True:
            if self._buf:
                joined = self._join_head(data, pos)
                if joined is None:
                    return -1
                head, stop, end = joined
                head_pos = 0
            else:
                stop = data.find(_HEAD_END, pos, pos + self._limit + 4)
                if stop < 0:
                    self._buf += data[pos : pos + self._limit + 4]
                    self._check_held()
                    return -1
                head, head_pos, end = data, pos, stop + 4
            if not head.startswith(_HTTP1, head_pos):
                raise ProtocolError(f"malformed response head: {head[head_pos : head_pos + 40]!r}")
            # llhttp takes exactly "HTTP/1.x SP 3DIGIT": a 1xx status has a 1 at offset 9 (which
            # exists: the terminator follows at least "HTTP/1.").
            if head[head_pos + 9] != 49:
                self._heading = False
                if self._body_limit is not None:
                    self.head = head[head_pos:stop]
                return end
            pos = end  # an interim response: the final one follows
            if pos == len(data):
                return -1

    def _join_head(self, data: bytes, pos: int) -> tuple[bytes, int, int] | None:
        """The header section begun in an earlier read (with its terminator), where the terminator
        starts in it and where the section ends in ``data``; None if it goes on in a later read."""
        buf, limit = self._buf, self._limit
        held = len(buf)
        # Never copy more than the limit allows, however big ``data`` is; the terminator may
        # straddle the two reads.
        buf += data[pos : pos + limit + 4 - held]
        found = buf.find(_HEAD_END, max(0, held - 3))
        if found < 0:
            self._check_held()
            return None
        if found > limit:
            raise ProtocolError(f"response header section larger than {limit} bytes")
        head = bytes(buf[: found + 4])
        buf.clear()
        return head, found, pos + found + 4 - held

    def _check_held(self) -> None:
        # Up to 3 bytes of an unfinished terminator may sit beyond the limit.
        if len(self._buf) > self._limit + 3:
            raise ProtocolError(f"response header section larger than {self._limit} bytes")

    def _error(self, exc: Exception) -> BaseException:
        if isinstance(exc, HttpParserCallbackError) and exc.__context__ is not None:
            return exc.__context__  # what a callback below raised: a ProtocolError
        return ProtocolError(f"malformed response {'body' if self._final else 'head'}: {exc}")

    # --- llhttp callbacks ----------------------------------------------------------------------
    def _on_message_begin(self) -> None:
        if self._done:
            raise _AfterResponse

    def _on_header(self, name: bytes, value: bytes) -> None:
        if len(name) in _READ_NAME_LENGTHS and not self._final:  # trailers are not read
            field = name.lower()
            if field == b"content-length":  # llhttp checked it: digits, once
                self._length = int(value)
            elif field == b"transfer-encoding":
                # Only the final coding of the last field says the body is chunked; otherwise it
                # runs until the close. llhttp's rule exactly: after "chunked" it allows spaces
                # but no tab (and then reads until the close). _on_chunk_header confirms it.
                last = value.rsplit(b",", 1)[-1].lstrip(b" \t").rstrip(b" ")
                self._chunked = last.lower() == b"chunked"
            elif field == b"retry-after":
                self.retry_after = value.strip(b" \t").decode("latin-1")
            elif field == b"x-asqsd-pause-seconds":
                self.pause_seconds = value.strip(b" \t").decode("latin-1")

    def _on_headers_complete(self) -> None:
        llhttp = self._llhttp
        status = llhttp.get_status_code()
        if status < 200:
            if status == 101:  # we never ask to upgrade
                raise ProtocolError("unexpected 101 Switching Protocols")
            if status < 100:
                raise ProtocolError(f"invalid status {status:03d}")
            # An interim response (100 Continue, 103 Early Hints): the final one follows.
            self._length, self._chunked, self.retry_after = None, False, None
            self.pause_seconds = None
            self._plain = False
            return
        self._final = True
        self.status = status
        if status >= 300:
            self._snippet_room = self._snippet_limit
        self.keep_alive = llhttp.should_keep_alive()
        limit = self._body_limit
        if limit is not None and (self._length or 0) > limit and status not in _NO_BODY_STATUSES:
            raise ProtocolError(f"response body larger than {limit} bytes")

    def _on_body(self, chunk: bytes) -> None:
        self._framing -= len(chunk)
        room = self._snippet_room
        if room:  # a non-2xx body with a snippet wanted: keep its first bytes
            piece = chunk[:room]
            self.snippet += piece
            self._snippet_room = room - len(piece)

    def _on_body_captured(self, chunk: bytes) -> None:
        body, limit = self.body, self._body_limit
        assert limit is not None
        if len(body) + len(chunk) > limit:
            raise ProtocolError(f"response body larger than {limit} bytes")
        body += chunk
        self._framing -= len(chunk)

    def _on_chunk_header(self) -> None:
        # A chunk size line has ended (after it: the chunk's data, or the trailers). The body is
        # chunked whatever _on_header made of the field.
        self._chunked = True
        self._mark = -1  # feed() sets it once the read is parsed

    def _on_message_complete(self) -> None:
        self._done = self._final  # an interim response is complete too; only the final one counts
