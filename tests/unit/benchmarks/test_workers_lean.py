"""The benchmark worker's request reader (llhttp) and its timerfd timers (pure logic, no network)."""

from __future__ import annotations

import asyncio
import time

import pytest
from benchmarks.workers.lean import BadRequest, PreciseTimers, RequestReader, _Request


def _request(body: bytes = b"{}", *, extra: bytes = b"") -> bytes:
    return (
        b"POST /job HTTP/1.1\r\nHost: w\r\nX-Aws-Sqsd-Msgid: m-1\r\n"
        + extra
        + b"Content-Length: "
        + str(len(body)).encode()
        + b"\r\n\r\n"
        + body
    )


def _one(reader: RequestReader, data: bytes) -> _Request:
    [request] = reader.feed(data)
    assert isinstance(request, _Request)
    return request


def test_a_content_length_request_is_parsed_and_its_length_used() -> None:
    reader = RequestReader()
    request = _one(reader, _request(b'{"a":1}') + b"GET /ne")
    assert (request.method, request.target, request.msg_id, request.body) == (
        b"POST",
        b"/job",
        "m-1",
        b'{"a":1}',
    )
    assert request.close is False
    # The bytes after the body start the next (pipelined) request, which the next read completes.
    assert not reader.idle
    assert _one(reader, b"xt HTTP/1.1\r\n\r\n").target == b"/next"
    assert reader.idle


def test_pipelined_requests_in_one_read_come_out_in_order() -> None:
    requests = RequestReader().feed(_request(b"1") + _request(b"22") + b"GET /stats HTTP/1.1\r\n\r\n")
    assert [(r.method, r.body) for r in requests if isinstance(r, _Request)] == [
        (b"POST", b"1"),
        (b"POST", b"22"),
        (b"GET", b""),
    ]


@pytest.mark.parametrize("cut", [5, 30, -3])
def test_an_incomplete_request_waits_for_more(cut: int) -> None:
    data = _request(b'{"a":1}')
    reader = RequestReader()
    assert reader.feed(data[:cut]) == []
    assert not reader.idle
    assert _one(reader, data[cut:]).body == b'{"a":1}'


def test_a_chunked_body_is_reassembled() -> None:
    head = b"POST / HTTP/1.1\r\nTransfer-Encoding: chunked\r\nX-Aws-Sqsd-Msgid: c\r\n\r\n"
    body = b"3;ext=1\r\nabc\r\n2\r\nde\r\n0\r\n\r\n"
    reader = RequestReader()
    assert _one(reader, head + body + b"POST").body == b"abcde"
    assert not reader.idle  # "POST" begins the next request
    reader = RequestReader()
    assert reader.feed(head + body[:-2]) == []
    assert _one(reader, body[-2:]).body == b"abcde"


@pytest.mark.parametrize(
    ("version", "connection", "close"),
    [
        (b"HTTP/1.1", b"", False),
        (b"HTTP/1.1", b"Connection: close\r\n", True),
        (b"HTTP/1.0", b"", True),
        (b"HTTP/1.0", b"Connection: keep-alive\r\n", False),
    ],
)
def test_connection_persistence_follows_http_rules(version: bytes, connection: bytes, close: bool) -> None:
    data = b"GET /stats " + version + b"\r\n" + connection + b"\r\n"
    assert _one(RequestReader(), data).close is close


@pytest.mark.parametrize(
    "data",
    [
        b"NONSENSE\r\n\r\n",
        b"POST / SPDY/3\r\n\r\n",
        b"POST / HTTP/1.1\r\nno colon here\r\n\r\n",
        b"POST / HTTP/1.1\r\nContent-Length: -4\r\n\r\n",
        b"POST / HTTP/1.1\r\nContent-Length: 99999999999\r\n\r\n",
        b"POST / HTTP/1.1\r\nTransfer-Encoding: chunked\r\n\r\nzz\r\n",
        b"POST / HTTP/1.1\r\nContent-Length: 1\r\nContent-Length: 1\r\n\r\nx",
        b"POST / HTTP/1.1\r\nContent-Length: 1\r\nTransfer-Encoding: chunked\r\n\r\n",
        b"POST / HTTP/1.1\r\nX: a\x00b\r\n\r\n",
        b"POST / HTTP/1.1\nContent-Length: 0\n\n",
    ],
)
def test_malformed_requests_are_refused_with_a_reason(data: bytes) -> None:
    [error] = RequestReader().feed(data)
    assert isinstance(error, BadRequest) and str(error)


def test_requests_before_a_malformed_one_are_kept_and_nothing_after_it_is_read() -> None:
    reader = RequestReader()
    first, error = reader.feed(_request(b"ok") + b"BAD REQUEST\r\n\r\n")
    assert isinstance(first, _Request) and first.body == b"ok"
    assert isinstance(error, BadRequest)
    assert reader.feed(_request(b"later")) == []


def test_an_endless_head_is_refused_rather_than_buffered_forever() -> None:
    reader = RequestReader()
    assert reader.feed(b"POST / HTTP/1.1\r\nX: ") == []
    results = [reader.feed(b"a" * 1000) for _ in range(70)]
    [error] = [item for batch in results for item in batch]
    assert isinstance(error, BadRequest) and "too large" in str(error)


def test_a_body_over_the_limit_is_refused() -> None:
    reader = RequestReader()
    head = b"POST / HTTP/1.1\r\nTransfer-Encoding: chunked\r\n\r\n"
    chunk = b"100000\r\n" + b"x" * 0x100000 + b"\r\n"  # 1 MiB a chunk: the third passes 2 MiB
    assert reader.feed(head + chunk + chunk) == []
    [error] = reader.feed(chunk)
    assert isinstance(error, BadRequest) and "too large" in str(error)


async def test_timers_fire_in_deadline_order_and_not_before_their_deadline() -> None:
    timers = PreciseTimers(asyncio.get_running_loop())
    fired: list[tuple[str, float]] = []
    done = asyncio.Event()
    start = time.monotonic()
    deadlines = {"c": start + 0.06, "a": start + 0.02, "b": start + 0.04}

    def fire(name: str) -> None:
        fired.append((name, time.monotonic()))
        if len(fired) == len(deadlines):
            done.set()

    try:
        for name, deadline in deadlines.items():
            timers.call_at(deadline, lambda name=name: fire(name))
        await asyncio.wait_for(done.wait(), timeout=5)
    finally:
        timers.close()
    assert [name for name, _ in fired] == ["a", "b", "c"]
    for name, at in fired:
        # The tolerance lets a callback run at most TOLERANCE_S early, never more.
        assert at >= deadlines[name] - PreciseTimers.TOLERANCE_S
    assert sum(timers.batches.values()) >= 1
