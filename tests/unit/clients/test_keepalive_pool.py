"""The shared keep-alive pool's failures, worded by each lean client (pure logic: no sockets)."""

from __future__ import annotations

from collections.abc import Callable

import pytest

from asqsd.clients.http1.connection import ExchangeError, Failure
from asqsd.clients.http1.parser import ProtocolError
from asqsd.clients.http1.pool import KeepAlivePool
from asqsd.clients.http1.proxy import HTTPProxy, ProxyError
from asqsd.clients.sqs.transport import LeanHTTPTransport
from asqsd.clients.worker.lean_impl import LeanWorkerClient, _delivery_error

REFUSED = ConnectionRefusedError(111, "Connect call failed ('127.0.0.1', 443)")
RESET = ConnectionResetError(104, "Connection reset by peer")

# One pool failure; the worker client's DeliveryResult.error; the SQS transport's (name, message).
WORDING = [
    (
        ExchangeError(Failure.PROTOCOL, ProtocolError("invalid chunk size line: b'x'")),
        "protocol error: invalid chunk size line: b'x'",
        ("ProtocolError", "invalid chunk size line: b'x'"),
    ),
    (ExchangeError(Failure.TIMEOUT), "inactivity timeout", ("TimeoutError", "request deadline exceeded")),
    (
        ExchangeError(Failure.DISCONNECTED),
        "server disconnected before responding",
        ("ServerDisconnectedError", "Server disconnected"),
    ),
    (
        ExchangeError(Failure.DISCONNECTED, started=True),
        "server disconnected mid-response",
        ("ServerDisconnectedError", "Server disconnected mid-response"),
    ),
    (
        ExchangeError(Failure.DISCONNECTED, RESET),
        "connection lost: [Errno 104] Connection reset by peer before responding",
        ("ServerDisconnectedError", "Connection lost: [Errno 104] Connection reset by peer"),
    ),
    (ExchangeError(Failure.CLIENT_CLOSED), "client closed", ("ClientConnectionError", "client closed")),
    (ExchangeError(Failure.POOL_CLOSED), "client closed", ("ClientConnectionError", "transport is closed")),
    (
        ExchangeError(Failure.CONNECT_TIMEOUT),
        "connect timeout",
        ("TimeoutError", "connect deadline exceeded"),
    ),
    (
        ExchangeError(Failure.CONNECT_FAILED, REFUSED),
        "connection failed: Connection refused",
        (
            "ClientConnectorError",
            "Cannot connect to host sqs.example:443: [Errno 111] Connect call failed ('127.0.0.1', 443)",
        ),
    ),
    (
        ExchangeError(Failure.NO_SLOT),
        "no free connection",
        ("TimeoutError", "no free connection before the deadline"),
    ),
    (  # new with proxies: the SQS transport words it with the proxy's address (see below)
        ExchangeError(Failure.PROXY, ProxyError("refused CONNECT sqs.example:443: HTTP 403 Forbidden")),
        "proxy error: refused CONNECT sqs.example:443: HTTP 403 Forbidden",
        (
            "ProxyConnectionError",
            "proxy proxy.example:3128 refused CONNECT sqs.example:443: HTTP 403 Forbidden",
        ),
    ),
]
PROXY = HTTPProxy("proxy.example", 3128, "Basic b3BzOnNlY3JldA==")


def test_every_failure_kind_is_worded() -> None:
    assert {failure.kind for failure, _, _ in WORDING} == set(Failure)


@pytest.mark.parametrize(("failure", "worker", "sqs"), WORDING, ids=lambda v: getattr(v, "args", [""])[0])
def test_each_client_words_a_failure_as_before_the_merge(
    failure: ExchangeError, worker: str, sqs: tuple[str, str]
) -> None:
    """The texts the two clients produced before they shared one pool, kept byte for byte."""
    assert _delivery_error(failure) == worker
    proxy = PROXY if failure.kind is Failure.PROXY else None
    error = LeanHTTPTransport("https://sqs.example/", proxy=proxy)._transport_error(failure)
    assert (error.name, str(error)) == sqs


@pytest.mark.parametrize(
    ("url", "expected"),
    [
        (
            "https://sqs.example/",
            (
                "ClientConnectorError",
                "Cannot connect to host sqs.example:443 through proxy proxy.example:3128: "
                "[Errno 111] Connect call failed ('127.0.0.1', 443)",
            ),
        ),
        (
            "http://sqs.example/",
            (
                "ProxyConnectionError",
                "Cannot connect to proxy proxy.example:3128: "
                "[Errno 111] Connect call failed ('127.0.0.1', 443)",
            ),
        ),
    ],
    ids=["tunnel", "forwarding"],
)
def test_a_failed_connect_through_a_proxy_says_which_hop_failed(url: str, expected: tuple[str, str]) -> None:
    """https: the proxy answered and the TLS handshake with SQS failed; http: the proxy is down."""
    error = LeanHTTPTransport(url, proxy=PROXY)._transport_error(
        ExchangeError(Failure.CONNECT_FAILED, REFUSED)
    )
    assert (error.name, str(error)) == expected


@pytest.mark.parametrize(
    "make",
    [
        lambda: KeepAlivePool("h", 1, 0, ssl_context=None, idle_timeout_s=None, connect_timeout_s=None),
        lambda: LeanWorkerClient("http://h:1", 1.0, 1.0, 0),
        lambda: LeanHTTPTransport("http://h", connections=0),
    ],
    ids=["pool", "worker", "sqs"],
)
def test_at_least_one_connection(make: Callable[[], object]) -> None:
    with pytest.raises(ValueError, match="at least 1"):
        make()
