"""Request signing and the bearer token end to end: the verifiers printed in docs/daemon.md accept
what a running daemon sends (with either HTTP client) and reject tampering, old timestamps and a
wrong secret."""

from __future__ import annotations

import contextlib
import re
import threading
import time
from collections.abc import AsyncIterator, Callable, Iterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import aiohttp
import pytest
from aiohttp import web
from werkzeug.serving import make_server

from asqsd.config import WorkerHealthcheck
from asqsd.daemon import Daemon
from asqsd.errors import StartupError
from asqsd.observe.probes import probe_worker
from tests.component.conftest import SettingsFactory, queue_counts
from tests.support.polling import wait_until, wait_until_async

DOC = Path(__file__).resolve().parents[3] / "docs" / "daemon.md"
SECRET = "doc-snippet-secret-0123456789abcdef"
TOKEN = "tok.en-42~+/=="
Verify = Callable[..., bool]


def doc_snippet(framework: str) -> str:
    """The ```python block of the signing section that imports ``framework``."""
    section = DOC.read_text(encoding="utf-8").split("## Request signing", 1)[1].split("\n## ", 1)[0]
    blocks = re.findall(r"```python\n(.*?)```", section, flags=re.DOTALL)
    [block] = [b for b in blocks if f"from {framework} import" in b]
    return block


def exec_snippet(framework: str) -> dict[str, Any]:
    namespace: dict[str, Any] = {"__name__": f"doc_{framework}"}
    exec(compile(doc_snippet(framework), f"docs/daemon.md ({framework})", "exec"), namespace)
    return namespace


@dataclass
class Seen:
    """One request the documented aiohttp app let through to its handler."""

    path: str
    body: bytes
    headers: dict[str, str]


@dataclass
class DocWorker:
    """The documented aiohttp app on 127.0.0.1 with a handler that records what passed."""

    port: int = 0
    seen: list[Seen] = field(default_factory=list)
    rejected: int = 0


@contextlib.asynccontextmanager
async def doc_worker(namespace: dict[str, Any]) -> AsyncIterator[DocWorker]:
    state = DocWorker()
    app: web.Application = namespace["app"]

    @web.middleware
    async def count_rejections(request: web.Request, handler: Any) -> web.StreamResponse:
        try:
            return await handler(request)  # type: ignore[no-any-return]
        except web.HTTPUnauthorized:
            state.rejected += 1
            raise

    app.middlewares.insert(0, count_rejections)

    async def record(request: web.Request) -> web.Response:
        state.seen.append(Seen(request.raw_path, await request.read(), dict(request.headers)))
        return web.Response(text="ok")

    app.router.add_post("/{tail:.*}", record)
    runner = web.AppRunner(app, access_log=None, handle_signals=False)
    await runner.setup()
    site = web.TCPSite(runner, "127.0.0.1", 0)
    await site.start()
    state.port = int(runner.addresses[0][1])
    try:
        yield state
    finally:
        await runner.cleanup()


@pytest.fixture
def aiohttp_snippet(monkeypatch: pytest.MonkeyPatch) -> dict[str, Any]:
    """The aiohttp snippet, executed with its secret in SIGNING_SECRET."""
    monkeypatch.setenv("SIGNING_SECRET", SECRET)
    return exec_snippet("aiohttp")


@pytest.mark.parametrize("client", ["lean", "aiohttp"])
async def test_documented_verifiers_accept_signed_deliveries(
    sqs: Any,
    queue_url: str,
    make_settings: SettingsFactory,
    run_daemon: Any,
    aiohttp_snippet: dict[str, Any],
    monkeypatch: pytest.MonkeyPatch,
    tmp_path: Path,
    client: str,
) -> None:
    """1. The daemon signs with the secret from an env var and sends a bearer token from a file.
    2. The documented aiohttp app (its middleware) lets every delivery through: they are deleted.
    3. The documented Flask verify accepts the same deliveries. 4. A changed body, a changed
    path or a timestamp older than the window is refused by both."""
    monkeypatch.setenv("ASQSD_TEST_SIGNING", SECRET)
    (tmp_path / "token").write_text(TOKEN + "\n")
    bodies = ['{"n": 1}', "résumé ☃ 𝄞 " + "x" * 1024]
    for body in bodies:
        await sqs.send_message(QueueUrl=queue_url, MessageBody=body)
    async with doc_worker(aiohttp_snippet) as worker:
        settings = make_settings(
            http_port=worker.port,
            http_path="/jobs/résumé?kind=a",
            http_client=client,
            request_signing_secret_env="ASQSD_TEST_SIGNING",
            worker_bearer_token_file=str(tmp_path / "token"),
        )
        async with run_daemon(settings) as daemon:
            await wait_until(lambda: daemon.counters.deleted == 2, what="both deleted")
    assert worker.rejected == 0
    assert sorted(seen.body for seen in worker.seen) == sorted(b.encode() for b in bodies)
    flask_verify: Verify = exec_snippet("flask")["verify"]
    aiohttp_verify: Verify = aiohttp_snippet["verify"]
    secret = SECRET.encode()
    for seen in worker.seen:
        assert seen.path == "/jobs/r%C3%A9sum%C3%A9?kind=a"  # signed as sent: percent-encoded
        assert seen.headers["Authorization"] == f"Bearer {TOKEN}"
        header = seen.headers["X-Asqsd-Signature"]
        signed_at = int(header.split(",")[0].removeprefix("t="))
        assert abs(time.time() - signed_at) < 60
        for verify in (aiohttp_verify, flask_verify):
            assert verify(secret, "POST", seen.path, seen.body, header)
            assert verify(secret, "POST", seen.path, seen.body, header, now=signed_at + 299)
            assert not verify(secret, "POST", seen.path, seen.body + b" ", header)
            assert not verify(secret, "POST", "/jobs/résumé?kind=a", seen.body, header)
            assert not verify(secret, "POST", "/jobs/r%C3%A9sum%C3%A9?kind=b", seen.body, header)
            assert not verify(secret, "POST", seen.path, seen.body, header, now=signed_at + 301)
            assert not verify(b"another secret 0123456789", "POST", seen.path, seen.body, header)
            assert not verify(secret, "POST", seen.path, seen.body, None)
            assert not verify(secret, "POST", seen.path, seen.body, "t=x,v1=ab")


async def test_wrong_secret_is_refused_and_nothing_is_lost(
    sqs: Any,
    queue_url: str,
    make_settings: SettingsFactory,
    run_daemon: Any,
    aiohttp_snippet: dict[str, Any],
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    """A daemon signing with another secret gets 401 from the documented app: the message is a
    failed delivery, left in the queue for a retry, never deleted."""
    monkeypatch.setenv("ASQSD_TEST_SIGNING", "not-the-workers-secret-0123456789")
    await sqs.send_message(QueueUrl=queue_url, MessageBody="refused")
    async with doc_worker(aiohttp_snippet) as worker:
        settings = make_settings(
            http_port=worker.port,
            request_signing_secret_env="ASQSD_TEST_SIGNING",
            error_visibility_timeout=30,
        )
        async with run_daemon(settings) as daemon:
            await wait_until(lambda: daemon.counters.failed >= 1, what="a failed delivery")
            assert daemon.counters.deleted == 0
    assert worker.rejected >= 1
    assert worker.seen == []

    async def still_queued() -> bool:
        return sum(await queue_counts(sqs, queue_url)) == 1

    await wait_until_async(still_queued, what="the message still in the queue")


def test_a_missing_secret_stops_the_daemon_before_it_starts(make_settings: SettingsFactory) -> None:
    """The secret is read when the daemon is built: a missing file is a StartupError naming it."""
    settings = make_settings(request_signing_secret_file="/nonexistent/asqsd-secret")
    with pytest.raises(StartupError, match="request_signing_secret_file /nonexistent/asqsd-secret"):
        Daemon(settings)


async def test_documented_aiohttp_app_lets_the_health_check_through(aiohttp_snippet: dict[str, Any]) -> None:
    """The documented middleware checks POSTs only: asqsd's HTTP health check is an unsigned GET."""
    app: web.Application = aiohttp_snippet["app"]

    async def health(_request: web.Request) -> web.Response:
        return web.Response(text="ok")

    app.router.add_get("/health", health)
    async with doc_worker(aiohttp_snippet) as worker:
        probe = WorkerHealthcheck.parse(f"HTTP:{worker.port}/health")
        assert await probe_worker("http://127.0.0.1", probe, timeout_s=2)
        url = f"http://127.0.0.1:{worker.port}/jobs"
        async with aiohttp.ClientSession() as session, session.post(url, data=b"x") as response:
            assert response.status == 401  # an unsigned POST is refused


@contextlib.contextmanager
def flask_worker(namespace: dict[str, Any]) -> Iterator[tuple[int, list[bytes]]]:
    """The documented Flask app under Werkzeug's server on 127.0.0.1 (a thread); yields its port
    and the bodies its handler accepted."""
    app = namespace["app"]
    accepted: list[bytes] = []

    def record(tail: str) -> str:
        accepted.append(namespace["request"].get_data())
        return "ok"

    app.add_url_rule("/<path:tail>", "record", record, methods=["POST"])
    server = make_server("127.0.0.1", 0, app, threaded=True)
    thread = threading.Thread(target=server.serve_forever, daemon=True)
    thread.start()
    try:
        yield server.server_port, accepted
    finally:
        server.shutdown()
        thread.join(5)


async def test_documented_flask_app_accepts_signed_deliveries(
    sqs: Any,
    queue_url: str,
    make_settings: SettingsFactory,
    run_daemon: Any,
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    """The Flask snippet as a real server: its request-target lookup and verify let the daemon's
    signed POSTs (to a path that needs percent-encoding) through, and they are deleted."""
    monkeypatch.setenv("SIGNING_SECRET", SECRET)
    monkeypatch.setenv("ASQSD_TEST_SIGNING", SECRET)
    for body in ('{"n": 1}', "ünïcödé"):
        await sqs.send_message(QueueUrl=queue_url, MessageBody=body)
    with flask_worker(exec_snippet("flask")) as (port, accepted):
        settings = make_settings(
            http_port=port, http_path="/jobs/résumé?kind=a", request_signing_secret_env="ASQSD_TEST_SIGNING"
        )
        async with run_daemon(settings) as daemon:
            await wait_until(lambda: daemon.counters.deleted == 2, what="both deleted")
    assert sorted(accepted) == sorted([b'{"n": 1}', "ünïcödé".encode()])
