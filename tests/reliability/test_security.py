"""Security: no credential, secret or receipt handle in the logs at any level; the health server on
loopback unless allowed; no header injection from message content on the wire; TLS verification
on for https workers. (The Dockerfile's non-root USER is checked in
tests/integration/packaging/test_docker.py.)"""

from __future__ import annotations

import asyncio
import contextlib
import ipaddress
import signal
import ssl
from collections.abc import AsyncIterator, Iterator
from pathlib import Path
from typing import Any

import pytest
from aiohttp import web

import asqsd.emulator.store as emulator_store
from asqsd.config import load_settings
from asqsd.emulator import Emulator
from asqsd.errors import ConfigError
from tests.reliability.conftest import Record, Rig, daemon_running
from tests.support.ledger import (
    TEST_ACCESS_KEY,
    TEST_SECRET_KEY,
    TEST_SESSION_TOKEN,
    Action,
    DaemonProcess,
    LedgerWorker,
    daemon_env,
    numbered_body,
)
from tests.support.polling import wait_until
from tests.support.tls import self_signed_cert

CLIENTS = pytest.mark.parametrize("client", ["lean", "aiohttp"])
# Real SQS receipt handles are ~180+ characters; the emulator's are short unless told otherwise,
# and a handle shorter than the 12-character log prefix would be "logged in full" harmlessly.
LONG_HANDLE_PREFIX = "AQEBLedgerHandle" + "Zq9" * 56


@pytest.fixture
def captured_handles(emu: Emulator, monkeypatch: pytest.MonkeyPatch) -> list[str]:
    """Every receipt handle the emulator hands out (they never reach the worker), made as long
    as real ones."""
    monkeypatch.setattr(emulator_store, "_HANDLE_PREFIX", LONG_HANDLE_PREFIX)
    handles: list[str] = []
    deliver = emu.store._deliver

    def capture(queue: Any, message: Any, *args: Any) -> None:
        deliver(queue, message, *args)
        handles.append(message.receipt_handle)

    monkeypatch.setattr(emu.store, "_deliver", capture)
    return handles


async def test_no_secret_or_receipt_handle_in_debug_logs(
    rig: Rig, captured_handles: list[str], tmp_path: Path, record: Record
) -> None:
    """The daemon (subprocess, ``--log-level debug --log-format json``) with credentials and a
    session token in its environment, through every logged path: worker 500s and resets,
    skipped headers, failed deletes and visibility changes, heartbeat extensions and failures,
    receive errors, release at shutdown. Neither the secret key, the session token, the full
    access key id, nor any receipt handle (or 40 characters of one) appears in its output or in
    the stock-format log file."""
    rig.emu.preload(
        rig.queue,
        40,
        body_factory=numbered_body,
        message_attributes={"evil": {"DataType": "String", "StringValue": "a\r\nX-Injected: 1"}},
    )
    rig.numbers.update(range(40))

    def script(n: int, attempt: int) -> Action:
        if attempt > 1:
            return Action(delay_s=0.1)
        return (Action(status=500), Action(kind="reset"), Action(delay_s=1.5), Action())[n % 4]

    rig.worker.script = script
    rig.emu.faults.set("DeleteMessageBatch", batch_failure_rate=0.3)
    rig.emu.faults.set("ChangeMessageVisibilityBatch", batch_failure_rate=0.3, error_rate=0.2)
    rig.emu.faults.set("ReceiveMessage", error_rate=0.2)
    args = [
        "--queue-url",
        rig.queue_url,
        "--endpoint-url",
        rig.emu.endpoint_url,
        "--http-url",
        rig.worker.url,
        "--http-port",
        str(rig.worker.port),
        "--wait-time-s",
        "1",
        "--visibility-timeout",
        "2",
        "--error-visibility-timeout",
        "0",
        "--http-connections",
        "4",
        "--log-level",
        "debug",
        "--stock-log-file",
        str(tmp_path / "stock.log"),
    ]
    daemon = DaemonProcess(tmp_path / "daemon.log", args, daemon_env())
    try:
        await wait_until(lambda: rig.worker.ok_count() >= 20, timeout_s=30, what="deliveries")
        daemon.proc.send_signal(signal.SIGTERM)
        assert await daemon.wait_exit(30) == 0
    finally:
        daemon.close()
    text = daemon.text() + (tmp_path / "stock.log").read_text(errors="replace")
    events = {e.get("event") for e in daemon.events()}
    record(handles=len(captured_handles), log_lines=len(text.splitlines()), events=sorted(map(str, events)))
    assert captured_handles and len(captured_handles[0]) > 150
    for needle in (
        TEST_SECRET_KEY,
        TEST_SESSION_TOKEN,
        TEST_ACCESS_KEY,
        TEST_SECRET_KEY[:20],
        TEST_SESSION_TOKEN[:20],
    ):
        assert needle not in text, f"credential material in the log: {needle[:8]}..."
    for handle in captured_handles:
        assert handle[:40] not in text, "a receipt handle appears in the log"
    # The run went through the interesting paths (else the check above proves little).
    assert {"http-err", "socket-err", "header-skipped", "stopped"} <= events, events


async def test_health_server_binds_loopback_by_default(rig: Rig) -> None:
    """``health_server`` without ``health_host`` listens on 127.0.0.1 only."""
    rig.load(1)
    async with daemon_running(rig.settings(health_server=True, health_port=0)) as daemon:
        health = daemon.observers.health
        assert health is not None
        assert health.url.startswith("http://127.0.0.1:")
        assert health._runner is not None
        addresses = health._runner.addresses
        assert addresses and all(ipaddress.ip_address(a[0]).is_loopback for a in addresses), addresses
        await rig.wait_done()


@pytest.mark.parametrize("host", ["0.0.0.0", "::", "192.0.2.10", "health.example.com", "[::]"])
def test_remote_health_host_needs_explicit_permission(host: str) -> None:
    """A non-loopback ``health_host`` is a ConfigError naming the key, unless
    ``health_allow_remote`` is set (the endpoints have no authentication)."""
    with pytest.raises(ConfigError) as info:
        load_settings({"health_server": True, "health_host": host}, env={})
    assert "health_host" in str(info.value)
    allowed = load_settings({"health_server": True, "health_host": host, "health_allow_remote": True}, env={})
    assert allowed.settings.health_host == host


class RawWorker:
    """A worker that records the raw bytes of each request (no HTTP library on this side)."""

    def __init__(self) -> None:
        self.requests: list[bytes] = []
        self.port = 0
        self._server: asyncio.Server | None = None

    async def __aenter__(self) -> RawWorker:
        self._server = await asyncio.start_server(self._serve, "127.0.0.1", 0)
        self.port = int(self._server.sockets[0].getsockname()[1])
        return self

    async def __aexit__(self, *_exc: object) -> None:
        assert self._server is not None
        self._server.close()
        with contextlib.suppress(Exception):
            await asyncio.wait_for(self._server.wait_closed(), 2)

    async def _serve(self, reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        try:
            while True:
                head = await reader.readuntil(b"\r\n\r\n")
                length = 0
                for line in head.split(b"\r\n"):
                    if line.lower().startswith(b"content-length:"):
                        length = int(line.split(b":", 1)[1])
                body = await reader.readexactly(length)
                self.requests.append(head + body)
                writer.write(b"HTTP/1.1 200 OK\r\nContent-Length: 0\r\n\r\n")
                await writer.drain()
        except (asyncio.IncompleteReadError, ConnectionError):
            pass
        finally:
            writer.close()


@CLIENTS
async def test_no_header_injection_on_the_wire(emu: Emulator, client: str, record: Record) -> None:
    """Attribute values with CR/LF (allowed by SQS) or characters outside Latin-1 are skipped and
    logged; the raw request carries no injected header line; a 256-character attribute name and
    a tab in a value pass intact; the message is delivered byte-exact."""
    emu.create_queue("raw")
    long_name = "n" * 244 + ".Z-_0123456"  # 255 characters, every character SQS allows in a name
    attributes = {
        "crlf": {"DataType": "String", "StringValue": "a\r\nX-Injected: 1"},
        "lf": {"DataType": "String", "StringValue": "b\nX-Injected-Lf: 1"},
        "cr": {"DataType": "String.custom", "StringValue": "1\rX-Injected-Cr: 1"},
        "snowman": {"DataType": "String", "StringValue": "\u2603"},
        "tab": {"DataType": "String", "StringValue": "a\tb"},
        long_name + "x": {"DataType": "String", "StringValue": "v" * 300},
    }
    assert len(long_name + "x") == 256
    body = "line1\r\nX-Not-A-Header: 1\r\n\r\nPOST / HTTP/1.1\r\n"
    emu.preload("raw", 1, body=body, message_attributes=attributes)
    async with RawWorker() as worker:
        settings = load_settings(
            {
                "queue_url": emu.queue_url("raw"),
                "endpoint_url": emu.endpoint_url,
                "http_url": "http://127.0.0.1",
                "http_port": worker.port,
                "wait_time_s": 1,
                "http_client": client,
                "delete_batch_wait_s": 0.01,
            },
            env={},
        ).settings
        async with daemon_running(settings) as daemon:
            await wait_until(lambda: emu.counters("raw")["deleted"] == 1, timeout_s=15, what="delivered")
    raw = worker.requests[0]
    head, _, sent_body = raw.partition(b"\r\n\r\n")
    lines = head.split(b"\r\n")
    record(client=client, header_lines=len(lines) - 1, headers_skipped=daemon.counters.headers_skipped)
    assert sent_body == body.encode()
    assert not any(line.lower().startswith(b"x-injected") for line in lines), lines
    assert all(b"\r" not in line and b"\n" not in line for line in lines)
    names = [line.split(b":", 1)[0].lower() for line in lines[1:]]
    assert b"x-aws-sqsd-attr-tab" in names
    assert ("x-aws-sqsd-attr-" + (long_name + "x").lower()).encode() in names
    for skipped in (b"crlf", b"lf", b"cr", b"snowman"):
        assert b"x-aws-sqsd-attr-" + skipped not in names
    assert daemon.counters.headers_skipped == 4


@contextlib.asynccontextmanager
async def https_worker(worker: LedgerWorker, cert: Path, key: Path) -> AsyncIterator[int]:
    """The ledger worker's handler behind TLS with a self-signed certificate; yields the port."""
    context = ssl.create_default_context(ssl.Purpose.CLIENT_AUTH)
    context.load_cert_chain(cert, key)
    app = web.Application()
    app.router.add_route("*", "/{tail:.*}", worker._handle)
    runner = web.AppRunner(app, handle_signals=False, access_log=None, shutdown_timeout=0.5)
    await runner.setup()
    site = web.TCPSite(runner, "127.0.0.1", 0, ssl_context=context)
    await site.start()
    try:
        yield int(runner.addresses[0][1])
    finally:
        await runner.cleanup()


@pytest.fixture
def certificate(tmp_path: Path) -> Iterator[tuple[Path, Path]]:
    """(cert, key) files of a self-signed certificate for 127.0.0.1."""
    yield self_signed_cert(tmp_path)


@CLIENTS
async def test_https_worker_with_self_signed_certificate_fails(
    rig: Rig, certificate: tuple[Path, Path], client: str, record: Record
) -> None:
    """TLS verification is on: a worker with an untrusted certificate gets no request, every
    delivery fails (not a silent success), and the message stays in the queue."""
    rig.load(1)
    async with https_worker(rig.worker, *certificate) as port:
        settings = rig.settings(http_url="https://127.0.0.1", http_port=port, http_client=client)
        async with daemon_running(settings) as daemon:
            await wait_until(lambda: daemon.counters.failed >= 2, timeout_s=15, what="failed deliveries")
    report = rig.report()
    record(report=report, client=client, failed=daemon.counters.failed)
    assert rig.worker.records == []
    assert daemon.counters.deleted == 0
    report.assert_nothing_lost()
    assert report.pending == 1


async def test_https_worker_with_a_trusted_certificate_succeeds(
    rig: Rig, certificate: tuple[Path, Path], monkeypatch: pytest.MonkeyPatch
) -> None:
    """Control for the test above: the same server, with its certificate trusted through
    ``SSL_CERT_FILE``, is delivered to (so the failure above is the verification)."""
    monkeypatch.setenv("SSL_CERT_FILE", str(certificate[0]))
    rig.load(1)
    async with https_worker(rig.worker, *certificate) as port:
        settings = rig.settings(http_url="https://127.0.0.1", http_port=port, http_client="lean")
        async with daemon_running(settings):
            await rig.wait_done(timeout_s=15)
    rig.report().assert_all_done()
