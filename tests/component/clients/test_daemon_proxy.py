"""The whole daemon with HTTP_PROXY / HTTPS_PROXY / AWS_CA_BUNDLE set, against moto_server.

SQS traffic goes through a counting proxy on 127.0.0.1 (tests/support/proxy.py); the worker is
POSTed to directly, as by the stock daemon, whichever worker client is used. With NO_PROXY unset,
urllib (and so botocore and asqsd) proxies loopback endpoints too, which is how these tests put
the proxy before a local moto. The variables are set after the test's own moto client exists.
"""

from __future__ import annotations

import asyncio
import uuid
from collections.abc import AsyncIterator
from pathlib import Path
from typing import Any

import pytest
from structlog.testing import capture_logs

from asqsd.daemon import Daemon
from asqsd.errors import StartupError
from tests.component.conftest import SettingsFactory
from tests.support.polling import wait_until
from tests.support.proxy import ForwardProxy, clear_proxy_environment
from tests.support.tls import TLSFront, self_signed_cert
from tests.support.worker import RecordingWorker


@pytest.fixture(autouse=True)
def no_proxy_environment(monkeypatch: pytest.MonkeyPatch) -> None:
    clear_proxy_environment(monkeypatch)


@pytest.fixture
async def proxy() -> AsyncIterator[ForwardProxy]:
    async with ForwardProxy(credentials="ops:hunter2") as forward_proxy:
        yield forward_proxy


@pytest.mark.parametrize("http_client", ["lean", "aiohttp"])
async def test_sqs_goes_through_the_proxy_and_the_worker_does_not(
    monkeypatch: pytest.MonkeyPatch,
    sqs: Any,
    queue_url: str,
    moto_url: str,
    worker: RecordingWorker,
    make_settings: SettingsFactory,
    run_daemon: Any,
    proxy: ForwardProxy,
    http_client: str,
) -> None:
    for i in range(3):
        await sqs.send_message(QueueUrl=queue_url, MessageBody=f"m{i}")
    for name in ("HTTP_PROXY", "HTTPS_PROXY", "http_proxy", "https_proxy"):
        monkeypatch.setenv(name, proxy.url)

    with capture_logs() as logs:
        async with run_daemon(make_settings(http_client=http_client)) as daemon:
            await wait_until(lambda: daemon.counters.deleted == 3, what="3 deletes")

    assert sorted(d.body for d in worker.deliveries) == [b"m0", b"m1", b"m2"]
    # Every SQS call passed the proxy, and nothing else did: not one POST to the worker.
    assert proxy.forwarded == sum(daemon.counters.sqs_calls.values()) > 0
    assert set(proxy.targets) == {moto_url.removeprefix("http://")}
    assert proxy.refused == 0
    [line] = [e for e in logs if e["event"] == "sqs-proxy"]
    assert line["proxy"] == f"127.0.0.1:{proxy.port}"
    assert "hunter2" not in repr(logs)


async def test_https_through_a_tunnel_with_the_ca_bundle(
    monkeypatch: pytest.MonkeyPatch,
    sqs: Any,
    queue_url: str,
    moto_url: str,
    worker: RecordingWorker,
    make_settings: SettingsFactory,
    run_daemon: Any,
    proxy: ForwardProxy,
    tmp_path: Path,
) -> None:
    cert, key = self_signed_cert(tmp_path)
    await sqs.send_message(QueueUrl=queue_url, MessageBody="secure")
    async with TLSFront(int(moto_url.rsplit(":", 1)[1]), cert, key) as front:
        monkeypatch.setenv("HTTPS_PROXY", proxy.url)
        monkeypatch.setenv("HTTP_PROXY", proxy.url)
        monkeypatch.setenv("AWS_CA_BUNDLE", str(cert))
        async with run_daemon(make_settings(endpoint_url=front.url)) as daemon:
            await wait_until(lambda: daemon.counters.deleted == 1, what="the delete")

    assert [d.body for d in worker.deliveries] == [b"secure"]
    assert proxy.tunnels == front.connections >= 1
    assert set(proxy.targets) == {f"localhost:{front.port}"}


async def test_a_refusing_proxy_is_retried_with_backoff_not_fatal(
    monkeypatch: pytest.MonkeyPatch, make_settings: SettingsFactory, moto_url: str, tmp_path: Path
) -> None:
    """The proxy answers CONNECT with 403: start-up waits and retries, says why, and stops cleanly."""
    cert, key = self_signed_cert(tmp_path)
    async with (
        ForwardProxy(refuse=403) as refusing,
        TLSFront(int(moto_url.rsplit(":", 1)[1]), cert, key) as front,
    ):
        monkeypatch.setenv("HTTPS_PROXY", refusing.url)
        monkeypatch.setenv("AWS_CA_BUNDLE", str(cert))
        daemon = Daemon(make_settings(endpoint_url=front.url))
        with capture_logs() as logs:
            task = asyncio.create_task(daemon.run())
            await wait_until(lambda: refusing.refused >= 2, what="a retried CONNECT")
            assert not task.done() and not daemon.ready.is_set()
            daemon.request_stop()
            async with asyncio.timeout(10):
                await task

    assert daemon.failure is None
    assert front.connections == 0
    failures = [e for e in logs if e.get("code") == "ProxyConnectionError"]
    assert len(failures) >= 2
    assert (
        f"proxy 127.0.0.1:{refusing.port} refused CONNECT localhost:{front.port}: HTTP 403"
        in failures[0]["error"]
    )
    assert all(e["retry_in_s"] > 0 for e in failures)  # backed off, never a tight loop


@pytest.mark.parametrize("sqs_client", ["lean", "botocore"])
@pytest.mark.parametrize("blank", [False, True], ids=["missing", "blank"])
async def test_an_unusable_ca_bundle_stops_start_up_with_its_path(
    monkeypatch: pytest.MonkeyPatch,
    make_settings: SettingsFactory,
    tmp_path: Path,
    sqs_client: str,
    blank: bool,
) -> None:
    """For either client: botocore alone would fail each call (missing) or crash (blank)."""
    bundle = " " if blank else str(tmp_path / f"{uuid.uuid4().hex}.pem")
    monkeypatch.setenv("AWS_CA_BUNDLE", bundle)

    with pytest.raises(StartupError, match="CA bundle") as caught:
        await Daemon(make_settings(sqs_client=sqs_client)).run()

    assert f"CA bundle {bundle!r}" in str(caught.value)
