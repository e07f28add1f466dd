"""The health server on a real loopback port, read through a stub DaemonView.

The last test feeds the Prometheus queue gauges from moto_server through the real SQS client.
"""

from __future__ import annotations

import asyncio
from collections.abc import AsyncIterator, Callable, Mapping
from dataclasses import dataclass, field
from typing import Any

import aiohttp
import pytest
from aiohttp import web

from asqsd.addresses import is_loopback_host
from asqsd.clients.sqs.botocore_impl import BotocoreSQS
from asqsd.config import WorkerHealthcheck
from asqsd.observe.backlog import QueueBacklogPoller
from asqsd.observe.counters import Counters
from asqsd.observe.delivery import DeliveryStats
from asqsd.observe.gauges import IN_FLIGHT
from asqsd.observe.health import CachedCheck, DaemonView, HealthServer
from asqsd.observe.probes import http_check, probe_worker, tcp_check
from asqsd.observe.prometheus import CONTENT_TYPE
from tests.support.metrics import parse_families, value_of
from tests.support.polling import wait_until
from tests.support.servers import free_loopback_port


@dataclass
class StubView:
    """A DaemonView whose every answer a test sets directly."""

    counters: Counters = field(default_factory=Counters)
    ready: asyncio.Event = field(default_factory=asyncio.Event)
    stopping: bool = False
    failure: BaseException | None = None
    credential_problem: str | None = None
    delivery: DeliveryStats = field(default_factory=DeliveryStats)
    gauge_values: dict[str, float] = field(default_factory=dict)
    sqs_ok: bool = True
    worker_ok: bool = True
    sqs_calls: int = 0
    worker_calls: int = 0
    worker_probe: Callable[[], Any] | None = None

    def gauges(self) -> Mapping[str, float]:
        return self.gauge_values

    async def check_sqs(self) -> bool:
        self.sqs_calls += 1
        return self.sqs_ok

    async def check_worker(self) -> bool:
        self.worker_calls += 1
        if self.worker_probe is not None:
            return bool(await self.worker_probe())
        return self.worker_ok


def _conforms(view: StubView) -> DaemonView:
    return view  # mypy checks the stub against the Protocol the lead implements


class Clock:
    """A monotonic clock the test moves by hand (check caching)."""

    def __init__(self) -> None:
        self.now = 1000.0

    def __call__(self) -> float:
        return self.now


@pytest.fixture
def view() -> StubView:
    return StubView()


@pytest.fixture
def clock() -> Clock:
    return Clock()


@pytest.fixture
async def server(view: StubView, clock: Clock) -> AsyncIterator[HealthServer]:
    health = HealthServer(_conforms(view), port=0, check_ttl_s=5, check_timeout_s=0.5, clock=clock)
    await health.start()
    try:
        yield health
    finally:
        await health.stop()


@pytest.fixture
async def http() -> AsyncIterator[aiohttp.ClientSession]:
    async with aiohttp.ClientSession(timeout=aiohttp.ClientTimeout(total=10)) as session:
        yield session


async def get(http: aiohttp.ClientSession, server: HealthServer, path: str) -> tuple[int, Any]:
    async with http.get(server.url + path) as response:
        if response.content_type == "application/json":
            return response.status, await response.json()
        return response.status, await response.text()


class TestLiveness:
    """/healthz: alive unless a component crashed; still alive while draining."""

    async def test_ok(self, server: HealthServer, http: aiohttp.ClientSession) -> None:
        """A running daemon (even before ready) is alive."""
        assert server.port > 0
        assert await get(http, server, "/healthz") == (200, {"status": "ok"})

    async def test_stopping_is_still_alive(
        self, server: HealthServer, view: StubView, http: aiohttp.ClientSession
    ) -> None:
        """A graceful shutdown must not be cut short by a liveness probe."""
        view.stopping = True
        assert await get(http, server, "/healthz") == (200, {"status": "stopping"})

    async def test_crashed(self, server: HealthServer, view: StubView, http: aiohttp.ClientSession) -> None:
        """A crashed component: 503 naming the exception type (not its text)."""
        view.failure = KeyError("secret detail")
        assert await get(http, server, "/healthz") == (503, {"status": "crashed", "error": "KeyError"})


class TestReadiness:
    """/readyz: daemon serving AND SQS reachable AND worker port open; 503 says which failed."""

    async def test_not_ready_before_start(self, server: HealthServer, http: aiohttp.ClientSession) -> None:
        """Before the ready event: 503, other checks skipped (and not run)."""
        status, body = await get(http, server, "/readyz")
        assert status == 503
        assert body["checks"] == {"daemon": "starting", "sqs": "skipped", "worker": "skipped"}
        assert body["failed"] == ["daemon", "sqs", "worker"]

    async def test_ready(self, server: HealthServer, view: StubView, http: aiohttp.ClientSession) -> None:
        """All three checks pass: 200."""
        view.ready.set()
        status, body = await get(http, server, "/readyz")
        assert status == 200
        assert body == {
            "status": "ready",
            "failed": [],
            "checks": {"daemon": "ok", "sqs": "ok", "worker": "ok"},
        }

    async def test_worker_outage_is_named(
        self, server: HealthServer, view: StubView, http: aiohttp.ClientSession
    ) -> None:
        """During a worker outage the worker check says so, even though the port accepts connections."""
        view.ready.set()
        view.gauge_values = {"worker_outage": 1}
        status, body = await get(http, server, "/readyz")
        assert status == 503
        assert body["checks"]["worker"] == "outage" and body["failed"] == ["worker"]
        view.gauge_values = {"worker_outage": 0}
        assert (await get(http, server, "/readyz"))[0] == 200

    async def test_waiting_for_credentials_names_the_problem(
        self, server: HealthServer, view: StubView, http: aiohttp.ClientSession
    ) -> None:
        """Start-up held by missing credentials: the daemon check names the problem, not "starting"."""
        view.credential_problem = "credentials-imds-unreachable"
        status, body = await get(http, server, "/readyz")
        assert status == 503
        assert body["checks"]["daemon"] == "credentials-imds-unreachable"
        view.credential_problem = None
        assert (await get(http, server, "/readyz"))[1]["checks"]["daemon"] == "starting"

    async def test_refused_credentials_outrank_a_recent_receive(
        self, server: HealthServer, view: StubView, http: aiohttp.ClientSession
    ) -> None:
        """Serving, a receive succeeded a moment ago, but SQS now refuses the credentials: not ready."""
        view.ready.set()
        view.counters.count_call("ReceiveMessage")
        view.credential_problem = "credentials-expired"
        status, body = await get(http, server, "/readyz")
        assert (status, body["failed"]) == (503, ["sqs"])
        assert body["checks"]["sqs"] == "credentials-expired"
        view.credential_problem = None
        assert (await get(http, server, "/readyz"))[0] == 200

    @pytest.mark.parametrize(
        ("sqs_ok", "worker_ok", "failed"),
        [(False, True, ["sqs"]), (True, False, ["worker"]), (False, False, ["sqs", "worker"])],
    )
    async def test_failed_checks_named(
        self,
        server: HealthServer,
        view: StubView,
        http: aiohttp.ClientSession,
        sqs_ok: bool,
        worker_ok: bool,
        failed: list[str],
    ) -> None:
        """The JSON body lists exactly the checks that failed."""
        view.ready.set()
        view.sqs_ok, view.worker_ok = sqs_ok, worker_ok
        status, body = await get(http, server, "/readyz")
        assert status == 503
        assert body["status"] == "not ready"
        assert body["failed"] == failed

    @pytest.mark.parametrize(
        ("stopping", "crashed", "state"), [(True, False, "stopping"), (False, True, "crashed")]
    )
    async def test_stopping_or_crashed(
        self,
        server: HealthServer,
        view: StubView,
        http: aiohttp.ClientSession,
        stopping: bool,
        crashed: bool,
        state: str,
    ) -> None:
        """A stopping or crashed daemon takes no more traffic."""
        view.ready.set()
        view.stopping = stopping
        view.failure = RuntimeError() if crashed else None
        status, body = await get(http, server, "/readyz")
        assert status == 503
        assert body["checks"]["daemon"] == state

    async def test_recent_receive_skips_sqs_call(
        self, server: HealthServer, view: StubView, clock: Clock, http: aiohttp.ClientSession
    ) -> None:
        """A successful ReceiveMessage since the last look is proof enough: no extra SQS call."""
        view.ready.set()
        view.sqs_ok = False  # the cheap check would fail; it must not be asked
        view.counters.count_call("ReceiveMessage")
        assert (await get(http, server, "/readyz"))[0] == 200
        assert view.sqs_calls == 0
        clock.now += 31  # no receive for longer than sqs_fresh_s: fall back to the check
        assert (await get(http, server, "/readyz"))[0] == 503
        assert view.sqs_calls == 1

    async def test_failed_receive_is_not_freshness(
        self, server: HealthServer, view: StubView, http: aiohttp.ClientSession
    ) -> None:
        """A receive that failed does not count as SQS being reachable."""
        view.ready.set()
        view.sqs_ok = False
        view.counters.count_call("ReceiveMessage", error=True)
        assert (await get(http, server, "/readyz"))[0] == 503
        assert view.sqs_calls == 1

    async def test_checks_cached(
        self, server: HealthServer, view: StubView, clock: Clock, http: aiohttp.ClientSession
    ) -> None:
        """Within the TTL a probe loop reuses results; after it the checks run again."""
        view.ready.set()
        for _ in range(5):
            await get(http, server, "/readyz")
        assert (view.worker_calls, view.sqs_calls) == (1, 1)
        view.worker_ok = False
        assert (await get(http, server, "/readyz"))[0] == 200  # cached "ok"
        clock.now += 5
        assert (await get(http, server, "/readyz"))[0] == 503
        assert (view.worker_calls, view.sqs_calls) == (2, 2)

    async def test_hanging_or_raising_check(
        self, server: HealthServer, view: StubView, http: aiohttp.ClientSession
    ) -> None:
        """A check that hangs (timeout) or raises counts as failed; the endpoint still answers."""
        view.ready.set()

        async def hang() -> bool:
            await asyncio.sleep(3600)
            return True

        view.worker_probe = hang
        status, body = await get(http, server, "/readyz")
        assert (status, body["failed"]) == (503, ["worker"])

        async def boom() -> bool:
            raise RuntimeError("probe bug")

        check = CachedCheck("x", boom, ttl_s=0)
        assert not await check()
        assert check.runs == 1

    async def test_concurrent_probes_share_one_check(self, view: StubView) -> None:
        """Callers arriving while a check runs wait for it instead of starting their own."""
        release = asyncio.Event()
        runs = 0

        async def slow() -> bool:
            nonlocal runs
            runs += 1
            await release.wait()
            return True

        check = CachedCheck("slow", slow, ttl_s=60)
        tasks = [asyncio.create_task(check()) for _ in range(5)]
        await wait_until(lambda: runs == 1, what="first check to start")
        release.set()
        assert await asyncio.gather(*tasks) == [True] * 5
        assert runs == 1


class TestMetricsEndpoint:
    """/metrics: Prometheus text 0.0.4 (or OpenMetrics when asked) from the live counters and gauges."""

    async def test_metrics(self, server: HealthServer, view: StubView, http: aiohttp.ClientSession) -> None:
        """Content type, counter values and gauges come straight from the view."""
        view.counters.received = 12
        view.counters.count_status(200)
        view.gauge_values = {IN_FLIGHT: 3}
        async with http.get(server.url + "/metrics") as response:
            assert response.status == 200
            assert response.headers["Content-Type"] == CONTENT_TYPE
            text = await response.text()
        assert value_of(text, "asqsd_messages_received_total") == 12
        assert value_of(text, "asqsd_delivery_attempts_total", **{"class": "2xx"}) == 1
        assert value_of(text, "asqsd_worker_requests_in_flight") == 3
        assert "# TYPE asqsd_worker_latency_seconds histogram" in text.splitlines()

    async def test_openmetrics_negotiated(
        self, server: HealthServer, view: StubView, http: aiohttp.ClientSession
    ) -> None:
        """A scraper asking for OpenMetrics gets it (content type and a document its parser accepts)."""
        view.counters.received = 5
        accept = "application/openmetrics-text;version=1.0.0,text/plain;version=0.0.4;q=0.5"
        async with http.get(server.url + "/metrics", headers={"Accept": accept}) as response:
            assert response.status == 200
            assert response.headers["Content-Type"].startswith("application/openmetrics-text; version=1.0.0")
            assert response.headers["Cache-Control"] == "no-store"
            text = await response.text()
        families = parse_families(text, openmetrics=True)
        assert families["asqsd_messages_received_total"].samples[0].value == 5
        assert families["asqsd_worker_latency_seconds"].type == "histogram"

    async def test_unknown_path(self, server: HealthServer, http: aiohttp.ClientSession) -> None:
        """Anything else is a 404."""
        async with http.get(server.url + "/admin") as response:
            assert response.status == 404


class TestBinding:
    """Loopback by default; remote binding needs an explicit opt-in; lifecycle edges."""

    @pytest.mark.parametrize(
        ("host", "loopback"),
        [
            ("127.0.0.1", True),
            ("127.8.9.10", True),
            ("::1", True),
            ("[::1]", True),
            ("localhost", True),
            ("0.0.0.0", False),
            ("::", False),
            ("10.0.0.5", False),
            ("example.com", False),
            ("", False),
        ],
    )
    def test_is_loopback_host(self, host: str, loopback: bool) -> None:
        """Only loopback literals and ``localhost`` count."""
        assert is_loopback_host(host) is loopback

    def test_refuses_remote_without_opt_in(self, view: StubView) -> None:
        """A non-loopback host raises at construction unless allow_remote is passed."""
        with pytest.raises(ValueError, match="allow_remote"):
            HealthServer(_conforms(view), host="0.0.0.0")
        HealthServer(_conforms(view), host="0.0.0.0", allow_remote=True)  # constructed, never started

    def test_rejects_bad_port(self, view: StubView) -> None:
        """Ports outside 0-65535 are refused."""
        with pytest.raises(ValueError, match="port"):
            HealthServer(_conforms(view), port=70000)

    async def test_lifecycle(self, view: StubView) -> None:
        """Start twice is an error; stop is idempotent and fine without start; a taken port raises."""
        health = HealthServer(_conforms(view), port=0)
        await health.stop()
        await health.start()
        try:
            with pytest.raises(RuntimeError):
                await health.start()
            clash = HealthServer(_conforms(view), port=health.port)
            with pytest.raises(OSError):
                await clash.start()
            await clash.stop()
        finally:
            await health.stop()
            await health.stop()


@pytest.fixture
async def probe_target() -> AsyncIterator[tuple[str, Callable[[int], None]]]:
    """A loopback aiohttp server whose /health status the test sets."""
    status = [200]

    async def handler(_request: web.Request) -> web.Response:
        return web.Response(status=status[0])

    app = web.Application()
    app.router.add_get("/health", handler)
    runner = web.AppRunner(app, access_log=None)
    await runner.setup()
    site = web.TCPSite(runner, "127.0.0.1", 0)
    await site.start()
    port = runner.addresses[0][1]

    def set_status(value: int) -> None:
        status[0] = value

    try:
        yield f"http://127.0.0.1:{port}", set_status
    finally:
        await runner.cleanup()


class TestWorkerProbes:
    """Helpers the daemon's check_worker can use: TCP connect, or the stock HTTP health check."""

    async def test_tcp(self, probe_target: tuple[str, Callable[[int], None]]) -> None:
        """An open port passes; a closed one fails quickly without raising."""
        url, _ = probe_target
        assert await tcp_check(url)
        assert not await tcp_check(f"http://127.0.0.1:{closed_port()}", timeout_s=1)

    async def test_http(self, probe_target: tuple[str, Callable[[int], None]]) -> None:
        """Only 200 passes an HTTP health check."""
        url, set_status = probe_target
        assert await http_check(url + "/health")
        set_status(204)
        assert not await http_check(url + "/health")
        assert not await http_check(f"http://127.0.0.1:{closed_port()}/health", timeout_s=1)

    async def test_probe_worker_uses_healthcheck_port(
        self, probe_target: tuple[str, Callable[[int], None]]
    ) -> None:
        """The healthcheck's port replaces the worker URL's port; the host stays."""
        url, set_status = probe_target
        port = int(url.rsplit(":", 1)[1])
        dead = f"http://127.0.0.1:{closed_port()}"
        assert not await probe_worker(dead, None, timeout_s=1)
        assert await probe_worker(dead, WorkerHealthcheck.parse(f"TCP:{port}"))
        assert await probe_worker(dead, WorkerHealthcheck.parse(f"HTTP:{port}/health"))
        set_status(500)
        assert not await probe_worker(dead, WorkerHealthcheck.parse(f"http:{port}/health"))

    @pytest.mark.parametrize(
        ("spec", "expected"),
        [
            ("TCP:80", WorkerHealthcheck("tcp", 80)),
            ("HTTP:8080/health/check", WorkerHealthcheck("http", 8080, "/health/check")),
            ("HTTP:80", WorkerHealthcheck("http", 80, "/")),
        ],
    )
    def test_parse(self, spec: str, expected: WorkerHealthcheck) -> None:
        """The stock ``healthcheck`` syntax."""
        assert WorkerHealthcheck.parse(spec) == expected

    @pytest.mark.parametrize(
        "spec", ["", "TCP", "UDP:80", "TCP:0", "TCP:99999", "TCP:80/x", "HTTP:/x", "TCP:8o"]
    )
    def test_parse_rejects(self, spec: str) -> None:
        """Anything else is a configuration error."""
        with pytest.raises(ValueError):
            WorkerHealthcheck.parse(spec)


def closed_port() -> int:
    """A loopback port nothing listens on (bound and released a moment ago)."""
    return free_loopback_port()


async def test_metrics_show_queue_backlog_from_sqs(
    sqs: Any, queue_url: str, view: StubView, server: HealthServer, http: aiohttp.ClientSession
) -> None:
    """QueueBacklogPoller on the real SQS client (moto): /metrics shows visible and in-flight counts."""
    await sqs.send_message_batch(
        QueueUrl=queue_url, Entries=[{"Id": str(i), "MessageBody": f"m{i}"} for i in range(3)]
    )
    await sqs.receive_message(QueueUrl=queue_url, MaxNumberOfMessages=1, VisibilityTimeout=300)
    poller = QueueBacklogPoller(BotocoreSQS(sqs, queue_url).get_queue_attributes, interval_s=0.05)
    view.gauge_values = poller.gauges()  # empty before the first poll
    task = asyncio.create_task(poller.run())
    try:
        await wait_until(lambda: poller.latest is not None, what="first backlog poll")
        view.gauge_values = poller.gauges()
        status, text = await get(http, server, "/metrics")
    finally:
        poller.stop()
        await task
    assert status == 200
    assert value_of(text, "asqsd_queue_messages", state="visible") == 2
    assert value_of(text, "asqsd_queue_messages", state="in_flight") == 1
    assert value_of(text, "asqsd_queue_messages", state="delayed") == 0
    assert poller.failures == 0
