"""Signing, the bearer token, trace headers and OpenTelemetry spans under the ledger harness: with
worker faults (500s, resets, slow answers) nothing is lost, every delivery (retries included)
carries a valid signature over the bytes the worker received, and no secret reaches the logs."""

from __future__ import annotations

import hashlib
import hmac
import signal
from collections.abc import AsyncIterator
from pathlib import Path

import pytest

from tests.reliability.conftest import Record, Rig, daemon_running
from tests.support.ledger import (
    Action,
    DaemonProcess,
    DeliveryRecord,
    LedgerWorker,
    daemon_env,
    numbered_body,
)
from tests.support.polling import wait_until

SECRET = "ledger-signing-secret-0123456789abcdef"
TOKEN = "ledger-bearer-token-42"
PARENT = "00-4bf92f3577b34da6a3ce929d0e0e4736-00f067aa0ba902b7-01"


def faulty(n: int, attempt: int) -> Action:
    """First attempts fail in three ways (or are slow); retries answer 200."""
    if attempt > 1:
        return Action()
    return (Action(status=500), Action(kind="reset"), Action(delay_s=0.2), Action())[n % 4]


def header(record: DeliveryRecord, name: str) -> str | None:
    for key, value in record.raw_headers:
        if key.decode("latin-1").lower() == name.lower():
            return value.decode("latin-1")
    return None


def signature_valid(record: DeliveryRecord, path: str) -> bool:
    """Recompute the documented HMAC for what the worker received."""
    value = header(record, "X-Asqsd-Signature") or ""
    fields = dict(part.split("=", 1) for part in value.split(","))
    signed = f"POST\n{path}\n{fields['t']}\n".encode() + record.body
    expected = hmac.new(SECRET.encode(), signed, hashlib.sha256).hexdigest()
    return hmac.compare_digest(expected, fields["v1"])


@pytest.fixture
async def worker() -> AsyncIterator[LedgerWorker]:
    """The ledger worker keeping bodies (the signatures are checked over them)."""
    recorder = LedgerWorker(faulty, keep_bodies=True)
    await recorder.start()
    try:
        yield recorder
    finally:
        await recorder.stop()


@pytest.mark.parametrize("client", ["lean", "aiohttp"])
async def test_signed_deliveries_under_worker_faults(
    rig: Rig, monkeypatch: pytest.MonkeyPatch, tmp_path: Path, record: Record, client: str
) -> None:
    """60 messages with a traceparent; a quarter each fail with 500, a reset, or answer slowly on
    the first try. All are done, none lost; each of the deliveries carries a valid signature, the
    bearer token and the traceparent."""
    monkeypatch.setenv("LEDGER_SIGNING_SECRET", SECRET)
    (tmp_path / "token").write_text(TOKEN)
    rig.emu.preload(
        rig.queue,
        60,
        body_factory=numbered_body,
        message_attributes={"traceparent": {"DataType": "String", "StringValue": PARENT}},
    )
    rig.numbers.update(range(60))
    settings = rig.settings(
        http_client=client,
        http_path="/ledger",
        request_signing_secret_env="LEDGER_SIGNING_SECRET",
        worker_bearer_token_file=str(tmp_path / "token"),
        trace_headers=True,
        otel_tracing=True,
    )
    async with daemon_running(settings):
        await rig.wait_done()
    report = rig.report()
    records = rig.worker.records
    bad = [r.n for r in records if not signature_valid(r, "/ledger")]
    record(report=report, deliveries=len(records), bad_signatures=len(bad))
    report.assert_all_done()
    assert len(records) >= 60 + 30  # the failed first attempts were delivered again
    assert bad == []
    assert all(header(r, "Authorization") == f"Bearer {TOKEN}" for r in records)
    assert all(header(r, "traceparent") == PARENT for r in records)


async def test_no_signing_secret_or_token_in_debug_logs(rig: Rig, tmp_path: Path, record: Record) -> None:
    """The daemon as a subprocess (``--log-level debug``) signing with a secret from its
    environment and a token from a file, through failures and a SIGTERM: neither value appears in
    its output."""
    rig.load(8)
    (tmp_path / "token").write_text(TOKEN + "\n")
    args = [
        *("--queue-url", rig.queue_url, "--endpoint-url", rig.emu.endpoint_url),
        *("--http-url", rig.worker.url, "--http-port", str(rig.worker.port), "--http-path", "/ledger"),
        *("--wait-time-s", "1", "--error-visibility-timeout", "0", "--log-level", "debug"),
        *("--request-signing-secret-env", "LEDGER_SIGNING_SECRET"),
        *("--worker-bearer-token-file", str(tmp_path / "token")),
    ]
    daemon = DaemonProcess(tmp_path / "daemon.log", args, daemon_env({"LEDGER_SIGNING_SECRET": SECRET}))
    try:
        await wait_until(rig.done, timeout_s=30, what="every message done")
        daemon.proc.send_signal(signal.SIGTERM)
        assert await daemon.wait_exit(30) == 0
    finally:
        daemon.close()
    text = daemon.text()
    events = {str(e.get("event")) for e in daemon.events()}
    record(report=rig.report(), log_lines=len(text.splitlines()))
    rig.report().assert_all_done()
    assert all(signature_valid(r, "/ledger") for r in rig.worker.records)
    assert {"http-err", "socket-err", "stopped"} <= events, events  # the failure paths were logged
    for needle in (SECRET, SECRET[:16], TOKEN, f"Bearer {TOKEN}"):
        assert needle not in text
