"""Both SQS clients behind an HTTP proxy and with a custom CA bundle, against moto_server.

The proxy (tests/support/proxy.py) counts what passes through it, so each test proves which way
the requests went. https endpoints are a TLS front (tests/support/tls.py) before moto with a
self-signed certificate that only ``AWS_CA_BUNDLE`` makes trusted.

Loopback is not special to urllib's ``proxy_bypass`` on Linux (botocore's rule, which the lean
client follows): with ``NO_PROXY`` unset, requests to 127.0.0.1 and localhost go through the
proxy, which is what lets these tests proxy a loopback endpoint. The proxy variables are set
only after the test's own moto client exists, so that client talks to moto directly.
"""

from __future__ import annotations

import asyncio
import uuid
from collections.abc import AsyncIterator
from pathlib import Path
from typing import Any

import pytest
import uvloop
from aiobotocore.config import AioConfig
from aiobotocore.credentials import AioCredentials
from aiobotocore.session import AioSession, get_session

from asqsd.clients.http1.proxy import HTTPProxy
from asqsd.clients.sqs.base import DeleteEntry, SQSClient
from asqsd.clients.sqs.botocore_impl import BotocoreSQS
from asqsd.clients.sqs.lean_impl import LeanSQS, create_lean_sqs
from asqsd.clients.sqs.network import tls_context
from asqsd.emulator import Emulator
from asqsd.errors import SQSError, StartupError
from tests.support.proxy import ForwardProxy, clear_proxy_environment
from tests.support.tls import TLSFront, self_signed_cert

FAST_CONFIG = AioConfig(retries={"max_attempts": 1}, connect_timeout=2, read_timeout=5)


@pytest.fixture(autouse=True)
def no_proxy_environment(monkeypatch: pytest.MonkeyPatch) -> None:
    """Start from an environment without proxy or CA settings (either spelling)."""
    clear_proxy_environment(monkeypatch)


@pytest.fixture
async def moto_sqs(moto_url: str) -> AsyncIterator[Any]:
    """The test's own SQS client on moto, created before any proxy variable is set."""
    async with get_session().create_client("sqs", endpoint_url=moto_url, config=FAST_CONFIG) as client:
        yield client


@pytest.fixture
async def queue_url(moto_sqs: Any) -> AsyncIterator[str]:
    url = str((await moto_sqs.create_queue(QueueName=f"proxy-{uuid.uuid4().hex[:12]}"))["QueueUrl"])
    yield url
    await moto_sqs.delete_queue(QueueUrl=url)


@pytest.fixture
async def proxy() -> AsyncIterator[ForwardProxy]:
    async with ForwardProxy() as forward_proxy:
        yield forward_proxy


@pytest.fixture
def cert(tmp_path: Path) -> tuple[Path, Path]:
    return self_signed_cert(tmp_path)


@pytest.fixture
async def tls_front(moto_url: str, cert: tuple[Path, Path]) -> AsyncIterator[TLSFront]:
    """https://localhost:<port> in front of moto, with the self-signed certificate."""
    async with TLSFront(int(moto_url.rsplit(":", 1)[1]), *cert) as front:
        yield front


class Clients:
    """Builds either SQSClient *now*, so it reads the environment as it is at that moment."""

    def __init__(self, session: AioSession) -> None:
        self.session = session
        self._raws: list[Any] = []
        self._leans: list[LeanSQS] = []

    async def build(
        self, impl: str, endpoint_url: str, queue_url: str, config: AioConfig | None = None
    ) -> SQSClient:
        merged = FAST_CONFIG if config is None else FAST_CONFIG.merge(config)
        raw = await self.session.create_client(
            "sqs", endpoint_url=endpoint_url, region_name="us-east-1", config=merged
        ).__aenter__()
        self._raws.append(raw)
        if impl == "botocore":
            return BotocoreSQS(raw, queue_url)
        lean = await create_lean_sqs(self.session, raw, None, queue_url, request_timeout_s=5)
        self._leans.append(lean)
        return lean

    async def aclose(self) -> None:
        for lean in self._leans:
            await lean.aclose()
        for raw in self._raws:
            await raw.__aexit__(None, None, None)


@pytest.fixture
async def clients() -> AsyncIterator[Clients]:
    built = Clients(get_session())
    try:
        yield built
    finally:
        await built.aclose()


@pytest.fixture(params=["botocore", "lean"])
def impl(request: pytest.FixtureRequest) -> str:
    return str(request.param)


async def round_trip(sqs: SQSClient) -> int:
    """Send, receive and delete one message; the number of SQS calls made (3)."""
    await sqs.send_message("through the proxy")
    messages = await sqs.receive(max_messages=1, wait_time_s=1, visibility_timeout_s=30)
    assert [m.body for m in messages] == ["through the proxy"]
    result = await sqs.delete_batch([DeleteEntry("0", messages[0].receipt_handle)])
    assert result.succeeded == ["0"]
    return 3


async def test_http_endpoint_goes_through_the_forwarding_proxy(
    monkeypatch: pytest.MonkeyPatch,
    clients: Clients,
    proxy: ForwardProxy,
    moto_url: str,
    queue_url: str,
    impl: str,
) -> None:
    monkeypatch.setenv("HTTP_PROXY", proxy.url)
    sqs = await clients.build(impl, moto_url, queue_url)

    calls = await round_trip(sqs)

    assert proxy.forwarded == calls and proxy.tunnels == 0
    assert set(proxy.targets) == {moto_url.removeprefix("http://")}


async def test_https_endpoint_goes_through_a_connect_tunnel_with_the_ca_bundle(
    monkeypatch: pytest.MonkeyPatch,
    clients: Clients,
    tls_front: TLSFront,
    cert: tuple[Path, Path],
    queue_url: str,
    impl: str,
) -> None:
    async with ForwardProxy(credentials="ops:s3cr%t") as proxy:
        # The password percent-encoded in the URL, as curl and botocore expect it.
        monkeypatch.setenv("HTTPS_PROXY", proxy.url.replace("%", "%25"))
        monkeypatch.setenv("AWS_CA_BUNDLE", str(cert[0]))
        sqs = await clients.build(impl, tls_front.url, queue_url)

        await round_trip(sqs)

    assert proxy.refused == 0, "the proxy credentials were not sent"
    assert proxy.tunnels >= 1 and proxy.forwarded == 0
    assert set(proxy.targets) == {f"localhost:{tls_front.port}"}
    # Every TLS connection the front saw came through a tunnel.
    assert tls_front.connections == proxy.tunnels


@pytest.mark.parametrize("no_proxy", ["127.0.0.1", "127.0.0.1:{port}", "*", "example.com, .0.0.1"])
async def test_no_proxy_sends_the_endpoint_directly(
    monkeypatch: pytest.MonkeyPatch,
    clients: Clients,
    proxy: ForwardProxy,
    moto_url: str,
    queue_url: str,
    impl: str,
    no_proxy: str,
) -> None:
    monkeypatch.setenv("HTTP_PROXY", proxy.url)
    monkeypatch.setenv("no_proxy", no_proxy.format(port=moto_url.rsplit(":", 1)[1]))
    sqs = await clients.build(impl, moto_url, queue_url)

    await round_trip(sqs)

    assert proxy.connections == 0


async def test_proxies_in_the_client_config_are_used_without_no_proxy(
    monkeypatch: pytest.MonkeyPatch,
    clients: Clients,
    proxy: ForwardProxy,
    moto_url: str,
    queue_url: str,
    impl: str,
) -> None:
    """botocore's ``Config(proxies=...)`` replaces the environment's proxies, NO_PROXY included."""
    monkeypatch.setenv("NO_PROXY", "*")
    sqs = await clients.build(impl, moto_url, queue_url, config=AioConfig(proxies={"http": proxy.url}))

    calls = await round_trip(sqs)

    assert proxy.forwarded == calls


async def test_no_proxy_for_another_host_still_proxies(
    monkeypatch: pytest.MonkeyPatch, clients: Clients, proxy: ForwardProxy, moto_url: str, queue_url: str
) -> None:
    monkeypatch.setenv("HTTP_PROXY", proxy.url)
    monkeypatch.setenv("NO_PROXY", "localhost,169.254.169.254,127.0.0.1:1")
    sqs = await clients.build("lean", moto_url, queue_url)

    calls = await round_trip(sqs)

    assert proxy.forwarded == calls


@pytest.mark.parametrize(("refuse", "credentials"), [(403, None), (None, "ops:secret")])
async def test_a_refused_connect_is_a_retryable_proxy_error(
    monkeypatch: pytest.MonkeyPatch,
    clients: Clients,
    tls_front: TLSFront,
    cert: tuple[Path, Path],
    queue_url: str,
    impl: str,
    refuse: int | None,
    credentials: str | None,
) -> None:
    """403 from the proxy, or 407 because the URL carries no credentials: both clients name it alike."""
    async with ForwardProxy(refuse=refuse, credentials=credentials) as proxy:
        monkeypatch.setenv("HTTPS_PROXY", f"http://127.0.0.1:{proxy.port}")
        monkeypatch.setenv("AWS_CA_BUNDLE", str(cert[0]))
        sqs = await clients.build(impl, tls_front.url, queue_url)

        for _ in range(2):  # and again: nothing is cached from a refusal
            with pytest.raises(SQSError) as caught:
                await sqs.get_queue_attributes(["All"])
            assert (caught.value.code, caught.value.retryable) == ("ProxyConnectionError", True)

    assert tls_front.connections == 0
    if impl == "lean":
        assert proxy.refused == 2
        status = refuse or 407
        message = str(caught.value)
        assert (
            f"proxy 127.0.0.1:{proxy.port} refused CONNECT localhost:{tls_front.port}: HTTP {status}"
            in message
        )


async def test_an_unreachable_proxy_is_a_retryable_proxy_error(
    monkeypatch: pytest.MonkeyPatch, clients: Clients, moto_url: str, queue_url: str, impl: str
) -> None:
    async with ForwardProxy() as proxy:
        port = proxy.port
    monkeypatch.setenv("HTTP_PROXY", f"http://127.0.0.1:{port}")  # closed: nothing listens there
    sqs = await clients.build(impl, moto_url, queue_url)

    with pytest.raises(SQSError) as caught:
        await sqs.get_queue_attributes(["All"])

    assert (caught.value.code, caught.value.retryable) == ("ProxyConnectionError", True)
    assert f"127.0.0.1:{port}" in str(caught.value)


async def test_the_default_trust_store_refuses_the_self_signed_endpoint(
    monkeypatch: pytest.MonkeyPatch,
    clients: Clients,
    proxy: ForwardProxy,
    tls_front: TLSFront,
    queue_url: str,
) -> None:
    """Without AWS_CA_BUNDLE the tunnel opens but TLS fails: the bundle is what made it work."""
    monkeypatch.setenv("HTTPS_PROXY", proxy.url)
    sqs = await clients.build("lean", tls_front.url, queue_url)

    with pytest.raises(SQSError) as caught:
        await sqs.get_queue_attributes(["All"])

    assert caught.value.retryable is True
    assert "CERTIFICATE_VERIFY_FAILED" in str(caught.value)
    assert f"through proxy 127.0.0.1:{proxy.port}" in str(caught.value)
    assert proxy.tunnels == 1


@pytest.mark.parametrize("content", [None, b"not a certificate\n"])
async def test_an_unusable_ca_bundle_is_a_startup_error(
    monkeypatch: pytest.MonkeyPatch,
    clients: Clients,
    tmp_path: Path,
    moto_url: str,
    queue_url: str,
    content: bytes | None,
) -> None:
    bundle = tmp_path / "bundle.pem"
    if content is not None:
        bundle.write_bytes(content)
    monkeypatch.setenv("AWS_CA_BUNDLE", str(bundle))

    with pytest.raises(StartupError, match="CA bundle") as caught:
        await clients.build("lean", moto_url, queue_url)

    assert str(bundle) in str(caught.value)


async def test_an_https_proxy_url_is_a_startup_error_without_its_password(
    monkeypatch: pytest.MonkeyPatch, clients: Clients, moto_url: str, queue_url: str
) -> None:
    monkeypatch.setenv("HTTP_PROXY", "https://ops:hunter2@127.0.0.1:1")

    with pytest.raises(StartupError, match="only http:// proxies") as caught:
        await clients.build("lean", moto_url, queue_url)

    assert "hunter2" not in str(caught.value)


# --- the lean transport's proxy path itself (both event loops, a silent proxy) ------------------------


async def _static_credentials() -> AioCredentials:
    return AioCredentials("AKIDEXAMPLE", "secret-key")


def _lean_through(proxy_url: str, endpoint: str, queue_url: str, cafile: Path, **options: Any) -> LeanSQS:
    return LeanSQS(
        None,
        queue_url,
        endpoint_url=endpoint,
        region="us-east-1",
        credentials=_static_credentials,
        transport="lean",
        ssl_context=tls_context(str(cafile)),
        proxy=HTTPProxy.from_url(proxy_url),
        **options,
    )


async def three_round_trips(cert: tuple[Path, Path], scheme: str) -> tuple[int, int, int]:
    """Three round trips via the emulator (which keeps connections open; moto_server does not):
    the proxy's (connections, tunnels, forwarded requests)."""
    async with (
        Emulator(host="127.0.0.1", port=0) as emulator,
        ForwardProxy(credentials="ops:secret") as proxy,
        TLSFront(emulator.port, *cert) as front,
    ):
        endpoint = front.url if scheme == "https" else emulator.endpoint_url
        async with _lean_through(proxy.url, endpoint, emulator.create_queue("kept"), cert[0]) as lean:
            for _ in range(3):
                await round_trip(lean)
            transport = lean.lean_transport
            assert transport is not None and transport.open_connections == 1
        assert transport.open_connections == 0  # closing closed the tunnel too
    return proxy.connections, proxy.tunnels, proxy.forwarded


KEPT_ALIVE = {"https": (1, 1, 0), "http": (1, 0, 9)}  # one connection for all 9 calls


@pytest.mark.parametrize("scheme", ["http", "https"])
async def test_keep_alive_reuses_the_proxied_connection(cert: tuple[Path, Path], scheme: str) -> None:
    assert await three_round_trips(cert, scheme) == KEPT_ALIVE[scheme]


@pytest.mark.parametrize("scheme", ["http", "https"])
def test_keep_alive_through_the_proxy_on_uvloop(cert: tuple[Path, Path], scheme: str) -> None:
    """The daemon's default loop: uvloop's start_tls over the tunnel."""
    assert uvloop.run(three_round_trips(cert, scheme)) == KEPT_ALIVE[scheme]


async def test_a_silent_proxy_times_the_call_out_and_leaves_nothing_open(cert: tuple[Path, Path]) -> None:
    """The proxy accepts the connection and never answers CONNECT: the call's deadline ends it."""
    readers: list[asyncio.StreamReader] = []
    writers: list[asyncio.StreamWriter] = []

    async def hold(reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        readers.append(reader)
        writers.append(writer)

    server = await asyncio.start_server(hold, "127.0.0.1", 0)
    proxy_url = f"http://127.0.0.1:{server.sockets[0].getsockname()[1]}"
    try:
        endpoint = "https://localhost:1"
        async with _lean_through(
            proxy_url, endpoint, f"{endpoint}/1/q", cert[0], request_timeout_s=0.3
        ) as lean:
            with pytest.raises(SQSError) as caught:
                await lean.delete_batch([DeleteEntry("0", "handle")])
            assert (caught.value.code, caught.value.retryable) == ("TimeoutError", True)
            assert lean.lean_transport is not None and lean.lean_transport.open_connections == 0
        # What the proxy got, up to our close of the half-open tunnel: the CONNECT request, and EOF.
        [reader] = readers
        sent = await asyncio.wait_for(reader.read(), 5)
        assert sent.startswith(b"CONNECT localhost:1 HTTP/1.1\r\n")
    finally:
        for writer in writers:
            writer.close()
        server.close()
        await server.wait_closed()
