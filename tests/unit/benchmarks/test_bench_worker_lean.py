"""The benchmark worker's lean HTTP/1.1 request parser and its timerfd timers (pure logic, no network)."""

from __future__ import annotations

import asyncio
import time

import pytest
from benchmarks.worker_lean import BadRequest, PreciseTimers, _NeedMore, parse_request


def _request(body: bytes = b"{}", *, extra: bytes = b"") -> bytes:
    return (
        b"POST /job HTTP/1.1\r\nHost: w\r\nX-Aws-Sqsd-Msgid: m-1\r\n"
        + extra
        + b"Content-Length: "
        + str(len(body)).encode()
        + b"\r\n\r\n"
        + body
    )


def test_a_content_length_request_is_parsed_and_its_length_used() -> None:
    data = bytearray(_request(b'{"a":1}') + b"NEXT")
    request, used = parse_request(data)
    assert (request.method, request.target, request.msg_id, request.body) == (
        b"POST",
        b"/job",
        "m-1",
        b'{"a":1}',
    )
    assert request.close is False
    assert bytes(data[used:]) == b"NEXT"  # a pipelined request after it is left in the buffer


@pytest.mark.parametrize("cut", [5, 30, -3])
def test_an_incomplete_request_asks_for_more(cut: int) -> None:
    data = _request(b'{"a":1}')
    with pytest.raises(_NeedMore):
        parse_request(bytearray(data[:cut]))


def test_a_chunked_body_is_reassembled() -> None:
    head = b"POST / HTTP/1.1\r\nTransfer-Encoding: chunked\r\nX-Aws-Sqsd-Msgid: c\r\n\r\n"
    body = b"3;ext=1\r\nabc\r\n2\r\nde\r\n0\r\n\r\n"
    request, used = parse_request(bytearray(head + body + b"rest"))
    assert request.body == b"abcde"
    assert used == len(head + body)
    with pytest.raises(_NeedMore):
        parse_request(bytearray(head + body[:-2]))


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
    request, _ = parse_request(bytearray(data))
    assert request.close is close


@pytest.mark.parametrize(
    "data",
    [
        b"NONSENSE\r\n\r\n",
        b"POST / SPDY/3\r\n\r\n",
        b"POST / HTTP/1.1\r\nno colon here\r\n\r\n",
        b"POST / HTTP/1.1\r\nContent-Length: -4\r\n\r\n",
        b"POST / HTTP/1.1\r\nContent-Length: 99999999999\r\n\r\n",
        b"POST / HTTP/1.1\r\nTransfer-Encoding: chunked\r\n\r\nzz\r\n",
    ],
)
def test_malformed_requests_are_refused_with_a_reason(data: bytes) -> None:
    with pytest.raises(BadRequest):
        parse_request(bytearray(data))


def test_an_endless_head_is_refused_rather_than_buffered_forever() -> None:
    with pytest.raises(BadRequest, match="too large"):
        parse_request(bytearray(b"POST / HTTP/1.1\r\nX: " + b"a" * 70_000))


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
