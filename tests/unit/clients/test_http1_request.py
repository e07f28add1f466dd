"""encode_request: the one request-head builder (and CR/LF guard) of both lean clients."""

from __future__ import annotations

import pytest

from asqsd.clients.http1.request import encode_request
from asqsd.clients.sqs.transport import LeanHTTPTransport
from asqsd.clients.worker.base import Request
from asqsd.clients.worker.lean_impl import LeanWorkerClient

START = "POST /q HTTP/1.1\r\nHost: h:81\r\n"


def test_head_then_body_in_one_buffer() -> None:
    data = encode_request(START, 2, {"A": "1", "B-C": "x y"}, b"{}")
    assert data == b"POST /q HTTP/1.1\r\nHost: h:81\r\nA: 1\r\nB-C: x y\r\nContent-Length: 2\r\n\r\n{}"


def test_no_headers_and_no_body() -> None:
    assert (
        encode_request("POST / HTTP/1.1\r\n", 1, {}, b"") == b"POST / HTTP/1.1\r\nContent-Length: 0\r\n\r\n"
    )


def test_text_goes_out_as_utf8() -> None:
    assert encode_request(START, 2, {"X": "é"}, b"").split(b"\r\n")[2] == "X: é".encode()


@pytest.mark.parametrize(
    ("start", "headers"),
    [
        (START, {"X-Evil": "a\r\nX-Injected: 1"}),
        (START, {"X-Evil": "a\nX-Injected: 1"}),
        (START, {"X-Evil": "a\rb"}),
        (START, {"X-Evil\r\nX-Injected": "1"}),
        (START, {"X-Evil": "a\r\n"}),
        ("POST /a\r\nb HTTP/1.1\r\nHost: h\r\n", {}),  # in the start: counted too
    ],
)
def test_cr_or_lf_that_would_split_the_request_is_refused(start: str, headers: dict[str, str]) -> None:
    with pytest.raises(ValueError, match="CR or LF"):
        encode_request(start, 2, headers, b"{}")


def test_both_clients_use_it() -> None:
    """Same bytes through the worker client and the SQS transport as through encode_request."""
    worker = LeanWorkerClient("http://[::1]:8080", 1, 1, 1)
    request = Request(path="/p", headers={"Content-Type": "application/json"}, body=b"{}")
    assert worker.serialize(request) == encode_request(
        "POST /p HTTP/1.1\r\nHost: [::1]:8080\r\n", 2, request.headers, request.body
    )
    transport = LeanHTTPTransport("https://sqs.eu-west-1.amazonaws.com/")
    headers = {"Host": "sqs.eu-west-1.amazonaws.com", "X-Amz-Target": "AmazonSQS.ReceiveMessage"}
    assert transport.serialize(headers, b"{}") == encode_request("POST / HTTP/1.1\r\n", 1, headers, b"{}")
    with pytest.raises(ValueError, match="CR or LF"):
        transport.serialize({"Host": "h\r\nX: 1"}, b"{}")
