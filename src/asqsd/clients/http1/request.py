"""Request bytes for the HTTP/1.1 engine: one head builder, with its CR/LF guard, for both clients.

Hot path (one call per POST to the worker and per SQS call): one join, one f-string, two C-speed
counts, one encode and one concatenation; no per-header check.
"""

from __future__ import annotations

from collections.abc import Mapping


def encode_request(start: str, start_lines: int, headers: Mapping[str, str], body: bytes) -> bytes:
    """``start``, a line per header, ``Content-Length``, a blank line, then ``body``: one buffer.

    ``start`` is the request line plus any fixed header lines (the worker client's Host), exactly
    ``start_lines`` lines each ending in CRLF. Raises ValueError when a CR or LF in a header name
    or value (or in ``start``) would split the request: the head must hold exactly one CR and one
    LF per line, which two counts over the whole head prove. Text goes out as UTF-8, like aiohttp
    (Latin-1 values outside ASCII as UTF-8 bytes: stock parity).
    """
    return encode_head(start, start_lines, headers, len(body)) + body


def encode_head(start: str, start_lines: int, headers: Mapping[str, str], content_length: int) -> bytes:
    """The head :func:`encode_request` sends, for a body of ``content_length`` bytes sent apart
    (a streamed body); the same CR/LF guard."""
    if headers:  # the CRLF after the last header goes into the f-string: no copy of the lines
        lines = "\r\n".join(map(": ".join, headers.items()))
        head = f"{start}{lines}\r\nContent-Length: {content_length}\r\n\r\n"
    else:
        head = f"{start}Content-Length: {content_length}\r\n\r\n"
    expected = start_lines + len(headers) + 2  # + Content-Length and the blank line
    if head.count("\n") != expected or head.count("\r") != expected:
        raise ValueError("CR or LF in a request header name or value")
    return head.encode("utf-8")
