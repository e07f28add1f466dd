"""ResponseParser (llhttp) against two oracles: the regex parser it replaced, and raw llhttp.

* Valid responses (status lines, headers, Content-Length, chunked bodies with extensions and
  trailers, bodies that run to the close, 1xx interim responses), cut into reads at random points:
  the parser frames each exactly as the regex parser did (tests/support/regex_response_parser.py):
  the same status, keep-alive, Retry-After, captured head and body, completion at the same read,
  and the bytes after the response counted alike.
* Inputs of the response-smuggling classes (bare CR or LF in chunk extensions, whitespace around
  chunk sizes, NUL and control characters in header values, malformed trailers, duplicate or
  conflicting Content-Length, Content-Length with Transfer-Encoding, obs-fold, bare LF): raw llhttp
  (httptools) refuses each, and so does the parser, in any chunking. The regex parser took several.
* Any byte inserted into, dropped from or changed in a valid response: whenever raw llhttp refuses
  the result, the parser raises ProtocolError.
"""

from __future__ import annotations

from dataclasses import dataclass

import httptools
import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from asqsd.clients.http1.parser import ProtocolError, ResponseParser
from tests.support import regex_response_parser as regex
from tests.support.wire import split_at

CAPTURE_LIMIT = 1 << 20

# --- the raw llhttp oracle ------------------------------------------------------------------------


class _FinalResponseParsed(Exception):
    pass


class _Oracle:
    """httptools with no checks of its own, stopped at the end of the first final (non-1xx) response."""

    def __init__(self) -> None:
        self.parser = httptools.HttpResponseParser(self)
        self.status = 0

    def on_headers_complete(self) -> None:
        self.status = self.parser.get_status_code()

    def on_message_complete(self) -> None:
        if self.status >= 200:
            raise _FinalResponseParsed


def llhttp_refuses(wire: bytes) -> bool:
    """Whether raw llhttp refuses ``wire`` before the end of its first final response."""
    oracle = _Oracle()
    try:
        oracle.parser.feed_data(wire)
    except httptools.HttpParserCallbackError as exc:
        if isinstance(exc.__context__, _FinalResponseParsed):
            return False
        raise
    except (httptools.HttpParserError, httptools.HttpParserUpgrade):
        return True
    return False


# --- valid responses ------------------------------------------------------------------------------

TOKEN = st.from_regex(r"\A[!#$%&'*+\-.^_`|~0-9A-Za-z]{1,12}\Z")
# field-value: visible characters and obs-text, with spaces and tabs only inside.
FIELD_VALUE = st.from_regex(r"\A(?:[!-~\x80-\xff](?:[ \t!-~\x80-\xff]{0,30}[!-~\x80-\xff])?)?\Z")
OWS = st.sampled_from(["", " ", "  ", "\t", " \t "])
REASON = st.from_regex(r"\A[\t !-~\x80-\xff]{0,20}\Z")


def cased(word: str) -> st.SearchStrategy[str]:
    """``word`` in any mix of upper and lower case (field names and tokens are case-insensitive)."""
    flips = st.lists(st.booleans(), min_size=len(word), max_size=len(word))
    return flips.map(lambda up: "".join(c.upper() if u else c.lower() for c, u in zip(word, up, strict=True)))


def field(
    name: st.SearchStrategy[str], value: st.SearchStrategy[str], after: st.SearchStrategy[str] = OWS
) -> st.SearchStrategy[str]:
    return st.tuples(name, OWS, value, after).map(lambda parts: "{}:{}{}{}".format(*parts))


def transfer_encoding(codings: list[str]) -> st.SearchStrategy[str]:
    # No tab after the last coding: llhttp then reads the body until the close even when it is
    # "chunked", where the regex parser read chunks (a documented difference, and a safe one: the
    # connection is not reused).
    return field(
        cased("Transfer-Encoding"), st.sampled_from(codings).flatmap(cased), st.sampled_from(["", " "])
    )


# X- names only: they can never collide with a field the parsers read (or Proxy-Connection, which
# llhttp reads as Connection: a documented difference).
OTHER_FIELDS = st.lists(field(TOKEN.map(lambda token: f"X-{token}"), FIELD_VALUE), max_size=4)
CONNECTION = field(
    cased("Connection"),
    st.lists(
        st.sampled_from(["close", "keep-alive", "upgrade", "te", "x-other"]).flatmap(cased), min_size=1
    ).flatmap(lambda tokens: st.sampled_from([", ", ",", " , "]).map(lambda sep: sep.join(tokens))),
)
RETRY_AFTER = field(
    cased("Retry-After"),
    st.integers(0, 10**6).map(str) | st.just("Wed, 21 Oct 2015 07:28:00 GMT"),
)


@st.composite
def chunked_body(draw: st.DrawFn, body: bytes) -> bytes:
    """``body`` in chunks, with sizes in any case and leading zeros, extensions and trailers."""
    hex_digits = st.integers(0, 2).map(lambda zeros: "0" * zeros)
    extension = st.tuples(
        TOKEN,
        st.none() | TOKEN | st.from_regex(r'\A"[ !#-\[\]-~]{0,10}"\Z'),
    ).map(lambda pair: f";{pair[0]}" if pair[1] is None else f";{pair[0]}={pair[1]}")
    extensions = st.lists(extension, max_size=2).map("".join)
    out, offset = [], 0
    for size in draw(st.lists(st.integers(1, 200), max_size=6)):
        chunk = body[offset : offset + size]
        offset += len(chunk)
        if chunk:
            size_hex = draw(hex_digits) + draw(cased(f"{len(chunk):x}"))
            out.append(f"{size_hex}{draw(extensions)}\r\n".encode() + chunk + b"\r\n")
    if offset < len(body):
        rest = body[offset:]
        out.append(f"{len(rest):x}\r\n".encode() + rest + b"\r\n")
    trailers = draw(OTHER_FIELDS) + draw(st.lists(RETRY_AFTER, max_size=1))  # trailers are not read
    last = f"{draw(hex_digits)}0{draw(extensions)}\r\n" + "".join(f"{t}\r\n" for t in trailers) + "\r\n"
    return b"".join(out) + last.encode("latin-1")


@dataclass(frozen=True)
class Wire:
    """A generated response: its bytes, whether it is chunked, whether it ends only at the close."""

    data: bytes
    chunked: bool
    until_close: bool


def head(status_line: str, fields: list[str]) -> bytes:
    return "".join(f"{line}\r\n" for line in [status_line, *fields]).encode("latin-1") + b"\r\n"


@st.composite
def valid_responses(draw: st.DrawFn) -> Wire:
    """A response that is valid HTTP/1.1 (RFC 9112), 1xx interim responses first, maybe more bytes after."""
    interim = b"".join(  # their fields are not read
        head(
            f"HTTP/1.1 {status} {draw(REASON)}", draw(OTHER_FIELDS) + draw(st.lists(RETRY_AFTER, max_size=1))
        )
        for status in draw(st.lists(st.sampled_from([100, 102, 103]), max_size=2))
    )
    version = draw(st.sampled_from(["1.0", "1.1"]))
    status = draw(st.sampled_from([200, 201, 202, 204, 304, 400, 404, 429, 500, 503, 599]))
    reason = draw(st.none() | REASON)
    status_line = f"HTTP/{version} {status}" + ("" if reason is None else f" {reason}")
    fields = draw(OTHER_FIELDS)
    fields += draw(st.lists(CONNECTION | RETRY_AFTER, max_size=2))
    body = draw(st.binary(max_size=600))
    framing = draw(st.sampled_from(["length", "chunked", "close", "coded-close"]))
    chunked = until_close = False
    if status in (204, 304):  # never a body, whatever the fields say
        if framing == "length":
            fields.append(f"Content-Length: {len(body)}")
        payload = b""
    elif framing == "length":
        zeros = draw(st.integers(0, 2))
        fields.append(draw(field(cased("Content-Length"), st.just("0" * zeros + str(len(body))))))
        payload = body
    elif framing == "chunked":
        fields.append(draw(transfer_encoding(["chunked", "gzip, chunked", "gzip,chunked"])))
        payload, chunked = draw(chunked_body(body)), True
    else:  # the body runs to the close: no framing, or a final coding other than chunked
        if framing == "coded-close":
            fields.append(draw(transfer_encoding(["gzip", "chunked, gzip"])))
        payload, until_close = body, True
    fields = draw(st.permutations(fields))
    data = interim + head(status_line, fields) + payload
    if not until_close:
        data += draw(st.sampled_from([b"", b"", b"HTTP/1.1 200 OK\r\n", b"junk"]))
    return Wire(data, chunked, until_close)


def outcome(parser: ResponseParser | regex.ResponseParser, pieces: list[bytes], eof: bool) -> object:
    """Everything a caller can read: feed()'s answers, the fields, the counted bytes after."""
    answers = [parser.feed(piece) for piece in pieces]
    if eof:
        answers.append(parser.feed_eof())
    return answers, parser.status, parser.keep_alive, parser.retry_after, parser.head, bytes(parser.body)


@settings(max_examples=400, suppress_health_check=[HealthCheck.too_slow])
@given(valid_responses(), st.lists(st.integers(min_value=0), max_size=12), st.booleans())
def test_valid_responses_are_framed_exactly_as_the_regex_parser_did(
    wire: Wire, cuts: list[int], capture: bool
) -> None:
    pieces = split_at(wire.data, cuts)
    limit = CAPTURE_LIMIT if capture else None
    old, new = regex.ResponseParser(capture_limit=limit), ResponseParser(capture_limit=limit)
    assert not llhttp_refuses(wire.data)
    assert outcome(new, pieces, wire.until_close) == outcome(old, pieces, wire.until_close)
    assert new.done
    if wire.chunked:
        # llhttp does not say where in a read a chunked response ends: what follows it in that
        # read counts as one byte (and a later read in full).
        assert bool(new.extra) == bool(old.extra)
    else:
        assert new.extra == old.extra


# --- smuggling shapes -----------------------------------------------------------------------------

BASE_HEAD = "HTTP/1.1 200 OK"
CHUNKED = "Transfer-Encoding: chunked"
CONTROL = st.sampled_from([*range(0x09), 0x0B, 0x0C, *range(0x0E, 0x20), 0x7F]).map(chr)


def insert(text: str, at: int, piece: str) -> str:
    at %= len(text) + 1
    return text[:at] + piece + text[at:]


@st.composite
def bare_cr_or_lf_in_a_chunk_extension(draw: st.DrawFn) -> str:
    extension = f";{draw(TOKEN)}={draw(TOKEN)}"
    # A CR not followed by LF, or an LF not preceded by CR, anywhere after the ";".
    at = draw(st.integers(1, len(extension)))
    bare = draw(st.sampled_from(["\rx", "x\n", "\r", "\n"]))
    bare = bare if not (bare == "\r" and extension[at:].startswith("\n")) else "\rx"
    return head_text([CHUNKED]) + f"5{insert(extension, at, bare)}\r\nhello\r\n0\r\n\r\n"


@st.composite
def whitespace_around_a_chunk_size(draw: st.DrawFn) -> str:
    space = draw(st.sampled_from([" ", "\t", "  "]))
    size = draw(st.sampled_from([f"{space}5", f"5{space}", f"5{space};a=b", f"{space}5{space}"]))
    return head_text([CHUNKED]) + f"{size}\r\nhello\r\n0\r\n\r\n"


@st.composite
def control_character_in_a_field_value(draw: st.DrawFn) -> str:
    value = draw(FIELD_VALUE)
    bad = draw(CONTROL | st.just("\rx"))
    at = draw(st.integers(1, len(value) + 1))  # after the first character: not a leading OWS case
    name = draw(st.sampled_from(["X-Any", "Retry-After", "Connection"]))
    return head_text([f"{name}: v{insert(value, at - 1, bad)}", "Content-Length: 0"])


@st.composite
def malformed_trailer(draw: st.DrawFn) -> str:
    trailer = draw(
        st.sampled_from(["Bad Trailer: x", "NoColon", " X-Lead: space", "X-T : v", "X-T: a\nX-U: b"])
        | CONTROL.map(lambda c: f"X-T: a{c}b")
    )
    return head_text([CHUNKED]) + f"5\r\nhello\r\n0\r\n{trailer}\r\n\r\n"


@st.composite
def content_length_twice(draw: st.DrawFn) -> str:
    first, second = draw(st.integers(0, 5)), draw(st.integers(0, 5))
    fields = [f"{draw(cased('Content-Length'))}: {first}", f"{draw(cased('Content-Length'))}: {second}"]
    return head_text(draw(st.permutations(fields))) + "x" * max(first, second)


@st.composite
def content_length_and_chunked(draw: st.DrawFn) -> str:
    fields = [f"Content-Length: {draw(st.integers(0, 20))}", f"{draw(cased('Transfer-Encoding'))}: chunked"]
    return head_text(draw(st.permutations(fields))) + "5\r\nhello\r\n0\r\n\r\n"


@st.composite
def obs_fold(draw: st.DrawFn) -> str:
    fold = draw(st.sampled_from([" ", "\t"])) + draw(TOKEN)
    return head_text([f"X-A: {draw(TOKEN)}\r\n{fold}", "Content-Length: 0"])


@st.composite
def bare_lf_in_the_head(draw: st.DrawFn) -> str:
    text = head_text(["X-A: 1", "Content-Length: 0", "X-B: 2"])
    ends = [index for index in range(len(text)) if text.startswith("\r\n", index)]
    at = draw(st.sampled_from(ends))
    return text[:at] + text[at + 1 :]


def head_text(fields: list[str]) -> str:
    return "".join(f"{line}\r\n" for line in [BASE_HEAD, *fields]) + "\r\n"


SMUGGLING_SHAPES = {
    "bare CR or LF in a chunk extension": bare_cr_or_lf_in_a_chunk_extension(),
    "whitespace around a chunk size": whitespace_around_a_chunk_size(),
    "NUL or control character in a field value": control_character_in_a_field_value(),
    "malformed trailer": malformed_trailer(),
    "Content-Length twice (equal or not)": content_length_twice(),
    "Content-Length with Transfer-Encoding": content_length_and_chunked(),
    "obs-fold": obs_fold(),
    "bare LF in the head": bare_lf_in_the_head(),
}


@pytest.mark.parametrize("shape", list(SMUGGLING_SHAPES))
@settings(max_examples=60)
@given(data=st.data(), cuts=st.lists(st.integers(min_value=0), max_size=8))
def test_smuggling_shapes_are_refused_as_llhttp_refuses_them(
    shape: str, data: st.DataObject, cuts: list[int]
) -> None:
    wire = data.draw(SMUGGLING_SHAPES[shape]).encode("latin-1")
    assert llhttp_refuses(wire)
    parser = ResponseParser()
    with pytest.raises(ProtocolError):
        for piece in split_at(wire, cuts):
            parser.feed(piece)
        parser.feed_eof()


@pytest.mark.parametrize(
    "wire",
    [
        head_text([CHUNKED]) + "5;a=\rb\r\nhello\r\n0\r\n\r\n",
        head_text([CHUNKED]) + "5;a=\nb\r\nhello\r\n0\r\n\r\n",
        head_text([CHUNKED]) + " 5\r\nhello\r\n0\r\n\r\n",
        head_text([CHUNKED]) + "5 \r\nhello\r\n0\r\n\r\n",
        head_text([CHUNKED]) + "5 ;a=b\r\nhello\r\n0\r\n\r\n",
        head_text(["X-A: a\x00b", "Content-Length: 0"]),
        head_text(["X-A: a\x01b", "Content-Length: 0"]),
        head_text(["X-A: a\x7fb", "Content-Length: 0"]),
        head_text([CHUNKED]) + "5\r\nhello\r\n0\r\nBad Trailer\r\n\r\n",
        head_text([CHUNKED]) + "5\r\nhello\r\n0\r\nX-T: a\x00b\r\n\r\n",
        head_text([CHUNKED]) + "5\r\nhello\r\n0\r\nX-T: a\nX-U: b\r\n\r\n",
        head_text(["Content-Length: 2", "Content-Length: 2"]) + "ok",
    ],
    ids=[
        "bare-cr-in-extension",
        "bare-lf-in-extension",
        "space-before-size",
        "space-after-size",
        "space-before-extension",
        "nul-in-value",
        "soh-in-value",
        "del-in-value",
        "trailer-without-colon",
        "nul-in-trailer",
        "bare-lf-in-trailers",
        "content-length-twice",
    ],
)
def test_shapes_the_regex_parser_took_are_refused_now(wire: str) -> None:
    """Each was a complete, valid response to the regex parser: the reason for the change."""
    data = wire.encode("latin-1")
    assert regex.ResponseParser().feed(data)
    with pytest.raises(ProtocolError):
        ResponseParser().feed(data)


# --- mutations: whatever llhttp refuses is refused ------------------------------------------------


@st.composite
def mutated_responses(draw: st.DrawFn) -> bytes:
    data = bytearray(draw(valid_responses()).data)
    for _ in range(draw(st.integers(1, 3))):
        at = draw(st.integers(0, len(data)))
        byte = draw(st.sampled_from(b'\x00\x01\t\n\r \x7f\x80:;,"=0aAHT') | st.integers(0, 255))
        match draw(st.sampled_from(["insert", "drop", "change"])):
            case "insert":
                data[at:at] = bytes([byte])
            case "drop":
                del data[at : at + 1]
            case _:
                data[at : at + 1] = bytes([byte])
    return bytes(data)


@settings(max_examples=500, suppress_health_check=[HealthCheck.too_slow])
@given(mutated_responses(), st.lists(st.integers(min_value=0), max_size=8))
def test_whatever_llhttp_refuses_is_a_protocol_error(wire: bytes, cuts: list[int]) -> None:
    parser = ResponseParser()
    refused = False
    try:
        for piece in split_at(wire, cuts):
            parser.feed(piece)
        parser.feed_eof()
    except ProtocolError:
        refused = True
    if llhttp_refuses(wire):
        assert refused
