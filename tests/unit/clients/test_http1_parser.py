"""ResponseParser: the keep-alive engine's strict HTTP/1.x response parser (llhttp plus bounds).

The differential tests against the previous regex parser and raw llhttp are in
test_http1_parser_differential.py.
"""

from __future__ import annotations

import pytest
from hypothesis import HealthCheck, example, given, settings
from hypothesis import strategies as st

from asqsd.clients.http1.parser import MAX_HEAD_BYTES, ProtocolError, ResponseParser
from tests.support.wire import split_at

OK = b"HTTP/1.1 200 OK\r\nContent-Type: text/plain\r\nContent-Length: 2\r\n\r\nok"


def parse(*pieces: bytes, limit: int = MAX_HEAD_BYTES) -> ResponseParser:
    """Feed the pieces in order; the parser must finish exactly at the last one."""
    parser = ResponseParser(limit)
    for index, piece in enumerate(pieces):
        done = parser.feed(piece)
        assert done == (index == len(pieces) - 1), f"done={done} after piece {index}"
    return parser


def bytewise(data: bytes, limit: int = MAX_HEAD_BYTES) -> ResponseParser:
    """Feed one byte at a time, checking the memory bound at every step."""
    parser = ResponseParser(limit)
    done = False
    for offset in range(len(data)):
        done = parser.feed(data[offset : offset + 1])
        assert parser.buffered <= limit + 4
    assert done
    return parser


def test_simple_response_in_one_piece() -> None:
    parser = parse(OK)
    assert (parser.status, parser.keep_alive, parser.retry_after, parser.extra) == (200, True, None, 0)
    assert parser.buffered == 0


def test_same_result_byte_by_byte() -> None:
    parser = bytewise(OK)
    assert (parser.status, parser.keep_alive) == (200, True)


def test_reset_allows_the_next_response_on_the_same_connection() -> None:
    parser = parse(OK)
    parser.reset()
    assert not parser.done and not parser.started
    assert parser.feed(b"HTTP/1.1 503 Busy\r\nretry-after:  120 \r\ncontent-length: 0\r\n\r\n")
    assert (parser.status, parser.retry_after) == (503, "120")


def test_pause_header_is_kept_raw_and_cleared_for_the_next_response() -> None:
    """X-Asqsd-Pause-Seconds, any status and any spelling of the name; the pipeline parses it."""
    parser = parse(b"HTTP/1.1 200 OK\r\nx-ASQSD-pause-seconds:  soon \r\nContent-Length: 0\r\n\r\n")
    assert (parser.status, parser.pause_seconds, parser.retry_after) == (200, "soon", None)
    parser.reset()
    assert parser.feed(OK)
    assert parser.pause_seconds is None


def test_an_interim_response_pause_header_does_not_count() -> None:
    parser = parse(
        b"HTTP/1.1 103 Early Hints\r\nX-Asqsd-Pause-Seconds: 9\r\n\r\n"
        b"HTTP/1.1 200 OK\r\nContent-Length: 0\r\n\r\n"
    )
    assert (parser.status, parser.pause_seconds) == (200, None)


@pytest.mark.parametrize(
    ("head", "keep_alive"),
    [
        (b"HTTP/1.1 200 OK\r\nContent-Length: 0", True),
        (b"HTTP/1.1 200 OK\r\nConnection: close\r\nContent-Length: 0", False),
        (b"HTTP/1.1 200 OK\r\nCONNECTION: Upgrade, Close\r\nContent-Length: 0", False),
        (b"HTTP/1.0 200 OK\r\nContent-Length: 0", False),
        (b"HTTP/1.0 200 OK\r\nConnection: Keep-Alive\r\nContent-Length: 0", True),
        (b"HTTP/1.1 204 No Content", True),
        (b"HTTP/1.1 304 Not Modified\r\nContent-Length: 99", True),  # never a body
    ],
)
def test_keep_alive_rules(head: bytes, keep_alive: bool) -> None:
    assert parse(head + b"\r\n\r\n").keep_alive is keep_alive


def test_no_framing_reads_until_close() -> None:
    parser = ResponseParser()
    assert not parser.feed(b"HTTP/1.0 200 OK\r\n\r\nbody that")
    assert not parser.feed(b" never ends" * 1000)
    assert parser.buffered == 0
    assert parser.feed_eof()
    assert (parser.status, parser.keep_alive) == (200, False)


def test_eof_mid_body_is_not_a_response() -> None:
    parser = ResponseParser()
    assert not parser.feed(b"HTTP/1.1 200 OK\r\nContent-Length: 10\r\n\r\nabc")
    assert parser.started
    assert not parser.feed_eof()


def test_eof_before_anything_is_not_started() -> None:
    parser = ResponseParser()
    assert not parser.started
    assert not parser.feed_eof()


def test_chunked_with_extensions_and_trailers() -> None:
    wire = (
        b"HTTP/1.1 200 OK\r\nTransfer-Encoding: chunked\r\n\r\n"
        b"5;name=value\r\nhello\r\n1A\r\n" + b"x" * 26 + b"\r\n0\r\nX-Checksum: abc\r\nX-More: 1\r\n\r\n"
    )
    parser = parse(wire)
    assert (parser.status, parser.keep_alive, parser.extra) == (200, True, 0)
    assert bytewise(wire).status == 200


def test_chunked_final_coding_decides() -> None:
    parser = ResponseParser()
    assert not parser.feed(b"HTTP/1.1 200 OK\r\nTransfer-Encoding: chunked, gzip\r\n\r\n0\r\n\r\n")
    assert not parser.keep_alive  # not chunked last: the body runs to the close
    assert parse(b"HTTP/1.1 200 OK\r\nTransfer-Encoding: gzip, Chunked\r\n\r\n0\r\n\r\n").status == 200


@pytest.mark.parametrize(("after", "chunked"), [(b" ", True), (b"  ", True), (b"\t", False), (b" \t", False)])
def test_a_tab_after_chunked_makes_the_body_run_to_the_close(after: bytes, chunked: bool) -> None:
    """llhttp's reading, which the parser follows: spaces may follow the last coding, a tab may not.
    Then the body is framed by the close, and the connection is not reused."""
    parser = ResponseParser(capture_limit=100)
    wire = b"HTTP/1.1 200 OK\r\nTransfer-Encoding: chunked" + after + b"\r\n\r\n2\r\nok\r\n0\r\n\r\n"
    assert parser.feed(wire) is chunked
    assert parser.feed_eof()
    expected = (True, b"ok") if chunked else (False, b"2\r\nok\r\n0\r\n\r\n")
    assert (parser.keep_alive, bytes(parser.body)) == expected


def test_interim_responses_are_skipped() -> None:
    parser = parse(b"HTTP/1.1 100 Continue\r\n\r\nHTTP/1.1 103 Early Hints\r\nLink: </a>\r\n\r\n", OK)
    assert parser.status == 200


def test_bytes_after_the_response_are_counted() -> None:
    parser = ResponseParser()
    assert parser.feed(OK + b"HTTP/1.1 200 OK\r\n")
    assert parser.extra == len(b"HTTP/1.1 200 OK\r\n")


def test_duplicate_content_length_is_rejected_even_when_equal() -> None:
    """The regex parser took two equal Content-Length fields; llhttp takes no second one. Two
    fields are a smuggling shape (a proxy may keep either), so the stricter answer is the right one."""
    with pytest.raises(ProtocolError, match="Duplicate Content-Length"):
        ResponseParser().feed(b"HTTP/1.1 200 OK\r\nContent-Length: 2\r\nContent-Length: 2\r\n\r\nok")


def test_large_body_is_discarded_not_buffered() -> None:
    parser = ResponseParser()
    size = 10 * 1024 * 1024
    assert not parser.feed(b"HTTP/1.1 200 OK\r\nContent-Length: %d\r\n\r\n" % size)
    block = b"z" * 65536
    for _ in range(size // len(block) - 1):
        assert not parser.feed(block)
        assert parser.buffered == 0
    assert parser.feed(block)


@pytest.mark.parametrize(
    "wire",
    [
        b"HTTP/2 200 OK\r\n\r\n",
        b"HTTP/1.1 20 OK\r\n\r\n",
        b"HTTP/1.1 2000 OK\r\n\r\n",
        b"HTTP/1.1 200OK\r\n\r\n",
        b"ICY 200 OK\r\n\r\n",
        b"http/1.1 200 OK\r\n\r\n",
        b"\r\nHTTP/1.1 200 OK\r\n\r\n",
        b"HTTP/1.1 200 OK\r\nBad Name: x\r\n\r\n",
        b"HTTP/1.1 200 OK\r\nName : x\r\n\r\n",
        b"HTTP/1.1 200 OK\r\nNoColon\r\n\r\n",
        b"HTTP/1.1 200 OK\r\nA: b\r\n folded\r\n\r\n",
        b"HTTP/1.1 200 OK\r\nA: b\nC: d\r\n\r\n",
        b"HTTP/1.1 101 Switching Protocols\r\nUpgrade: h2c\r\n\r\n",
        b"HTTP/1.1 200 OK\r\nContent-Length: 12a\r\n\r\n",
        b"HTTP/1.1 200 OK\r\nContent-Length: -1\r\n\r\n",
        b"HTTP/1.1 200 OK\r\nContent-Length: +1\r\n\r\nx",
        b"HTTP/1.1 200 OK\r\nContent-Length: 1\r\nContent-Length: 2\r\n\r\n",
        b"HTTP/1.1 200 OK\r\nContent-Length: 1\r\nTransfer-Encoding: chunked\r\n\r\n",
        b"HTTP/1.1 200 OK\r\nTransfer-Encoding: chunked\r\n\r\nzz\r\n",
        b"HTTP/1.1 200 OK\r\nTransfer-Encoding: chunked\r\n\r\n\r\n",
        b"HTTP/1.1 200 OK\r\nTransfer-Encoding: chunked\r\n\r\n-1\r\n",
        b"HTTP/1.1 200 OK\r\nTransfer-Encoding: chunked\r\n\r\n11111111111111111\r\n",
        b"HTTP/1.1 200 OK\r\nTransfer-Encoding: chunked\r\n\r\n2\r\nabc\r\n",
    ],
)
def test_malformed_responses_raise_protocol_error(wire: bytes) -> None:
    with pytest.raises(ProtocolError):
        ResponseParser().feed(wire)
    parser = ResponseParser()
    with pytest.raises(ProtocolError):
        for offset in range(len(wire)):
            parser.feed(wire[offset : offset + 1])


def test_header_section_over_the_limit_in_one_piece() -> None:
    parser = ResponseParser(1024)
    wire = b"HTTP/1.1 200 OK\r\nX-Big: " + b"a" * 2000 + b"\r\n\r\n"
    with pytest.raises(ProtocolError, match="larger than 1024"):
        parser.feed(wire)
    assert parser.buffered <= 1024 + 4


def test_header_section_over_the_limit_byte_by_byte() -> None:
    parser = ResponseParser(1024)
    wire = b"HTTP/1.1 200 OK\r\nX-Big: " + b"a" * 2000
    with pytest.raises(ProtocolError):
        for offset in range(len(wire)):
            parser.feed(wire[offset : offset + 1])
            assert parser.buffered <= 1024 + 4
    assert offset < 1100


def test_header_section_exactly_at_the_limit_is_accepted() -> None:
    head = b"HTTP/1.1 200 OK\r\nContent-Length: 0\r\nX-Pad: "
    head += b"p" * (256 - len(head))
    assert parse(head + b"\r\n\r\n", limit=256).status == 200
    assert bytewise(head + b"\r\n\r\n", limit=256).status == 200
    with pytest.raises(ProtocolError):
        ResponseParser(255).feed(head + b"\r\n\r\n")


def test_endless_chunk_line_is_bounded() -> None:
    parser = ResponseParser(1024)
    parser.feed(b"HTTP/1.1 200 OK\r\nTransfer-Encoding: chunked\r\n\r\n1;")
    with pytest.raises(ProtocolError, match="longer than 1024"):
        for _ in range(100):
            parser.feed(b"e" * 100)
            assert parser.buffered <= 1024 + 4


def test_the_chunk_line_bound_is_per_line_not_per_body() -> None:
    """300 chunks, with 3 KB of framing in all but none of it near the limit per line."""
    head = b"HTTP/1.1 200 OK\r\nTransfer-Encoding: chunked\r\n\r\n"
    wire = head + b"1;ext=value\r\nx\r\n" * 300 + b"0\r\nX-T: 1\r\n\r\n"
    assert parse(wire, limit=64).status == 200
    assert bytewise(wire, limit=64).status == 200
    parser = ResponseParser(64)
    pieces = [wire[offset : offset + 50] for offset in range(0, len(wire), 50)]
    assert [parser.feed(piece) for piece in pieces][-1]


def test_endless_trailers_are_bounded() -> None:
    parser = ResponseParser(1024)
    parser.feed(b"HTTP/1.1 200 OK\r\nTransfer-Encoding: chunked\r\n\r\n0\r\n")
    with pytest.raises(ProtocolError, match="trailer section"):
        for _ in range(100):
            parser.feed(b"X-T: " + b"v" * 50 + b"\r\n")


def test_repeated_and_unique_heads_parse_alike_under_the_size_limit() -> None:
    """The same head again gives the same result; every head gets the per-parser size limit, and a
    bad head is refused however many good ones came before."""
    head = b"HTTP/1.1 503 Busy\r\nRetry-After: 5\r\nConnection: close\r\nContent-Length: 1"
    first, second = parse(head + b"\r\n\r\nx"), parse(head + b"\r\n\r\nx")
    assert (
        (first.status, first.retry_after, first.keep_alive)
        == (second.status, second.retry_after, second.keep_alive)
        == (503, "5", False)
    )
    with pytest.raises(ProtocolError):
        ResponseParser(40).feed(head + b"\r\n\r\nx")
    for n in range(1000):
        assert parse(b"HTTP/1.1 200 OK\r\nX-Request-Id: %d\r\nContent-Length: 0\r\n\r\n" % n).status == 200
    with pytest.raises(ProtocolError):
        ResponseParser().feed(b"HTTP/1.1 200 OK\r\nBad Name: 1\r\n\r\n")
    big = b"HTTP/1.1 200 OK\r\nX-Pad: " + b"p" * 2000 + b"\r\nContent-Length: 0"
    assert parse(big + b"\r\n\r\n").status == 200


def test_the_same_interim_head_twice_is_skipped_twice() -> None:
    for _ in range(2):
        assert parse(b"HTTP/1.1 100 Continue\r\n\r\n", OK).status == 200


# --- properties --------------------------------------------------------------------------------


@settings(max_examples=400, suppress_health_check=[HealthCheck.too_slow])
@given(st.binary(max_size=3000), st.lists(st.integers(min_value=0), max_size=20))
@example(OK, [3, 17, 18])
@example(b"HTTP/1.1 200 OK\r\nTransfer-Encoding: chunked\r\n\r\n" + b"1" * 3000, [60])
def test_arbitrary_bytes_only_ever_raise_protocol_error(data: bytes, cuts: list[int]) -> None:
    """Whatever arrives, in whatever chunking: ProtocolError or nothing, and bounded memory."""
    limit = 512
    parser = ResponseParser(limit)
    try:
        for piece in split_at(data, cuts):
            parser.feed(piece)
            assert parser.buffered <= limit + 4
        parser.feed_eof()
    except ProtocolError:
        pass


@settings(max_examples=300)
@given(
    st.binary(max_size=3000).map(lambda prefix: b"HTTP/1.1 200 OK\r\n" + prefix),
    st.lists(st.integers(min_value=0), max_size=20),
)
def test_arbitrary_headers_only_ever_raise_protocol_error(data: bytes, cuts: list[int]) -> None:
    """Same, with a valid status line so the fuzzing reaches the header and body states."""
    parser = ResponseParser(256)
    try:
        for piece in split_at(data, cuts):
            parser.feed(piece)
            assert parser.buffered <= 256 + 4
    except ProtocolError:
        pass


header_names = st.from_regex(r"\AX-[A-Za-z0-9-]{1,20}\Z")
header_values = st.from_regex(r"\A[ -~]{0,40}\Z").map(str.strip)


@st.composite
def responses(draw: st.DrawFn) -> tuple[bytes, int, bool, str | None]:
    """A valid response, its status, keep-alive flag and Retry-After value."""
    status = draw(st.sampled_from([200, 201, 404, 429, 500, 503]))
    body = draw(st.binary(max_size=500))
    lines = [f"HTTP/1.1 {status} Reason Phrase"]
    lines += [f"{n}: {v}" for n, v in draw(st.lists(st.tuples(header_names, header_values), max_size=6))]
    retry_after = draw(st.none() | st.integers(0, 10**6).map(str))
    if retry_after is not None:
        lines.append(f"Retry-After: {retry_after}")
    close = draw(st.booleans())
    if close:
        lines.append("Connection: close")
    if draw(st.booleans()):
        lines.append("Transfer-Encoding: chunked")
        sizes = draw(st.lists(st.integers(1, 100), max_size=8))
        payload, offset = b"", 0
        for size in sizes:
            chunk = body[offset : offset + size]
            offset += size
            if chunk:
                payload += b"%x\r\n%s\r\n" % (len(chunk), chunk)
        payload += b"0\r\n\r\n"
    else:
        lines.append(f"Content-Length: {len(body)}")
        payload = body
    interim = b"HTTP/1.1 100 Continue\r\n\r\n" if draw(st.booleans()) else b""
    return interim + ("\r\n".join(lines) + "\r\n\r\n").encode() + payload, status, not close, retry_after


@settings(max_examples=300)
@given(responses(), st.lists(st.integers(min_value=0), max_size=30))
def test_valid_responses_parse_the_same_in_any_chunking(
    response: tuple[bytes, int, bool, str | None], cuts: list[int]
) -> None:
    wire, status, keep_alive, retry_after = response
    parser = ResponseParser()
    pieces = [piece for piece in split_at(wire, cuts) if piece]
    for piece in pieces[:-1]:
        assert not parser.feed(piece)
    assert parser.feed(pieces[-1])
    assert (parser.status, parser.keep_alive, parser.retry_after, parser.extra) == (
        status,
        keep_alive,
        retry_after,
        0,
    )
