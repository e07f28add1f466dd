"""``asqsd pause | resume | status`` as subprocesses against a daemon running in-process."""

from __future__ import annotations

import asyncio
import sys

from aiohttp import web

from asqsd.config import load_settings
from asqsd.emulator import Emulator
from tests.integration.cli.conftest import QUEUE
from tests.reliability.conftest import daemon_running
from tests.support.polling import wait_until
from tests.support.servers import free_loopback_port
from tests.support.worker import Delivery, RecordingWorker


async def asqsd(*args: str) -> tuple[int, str, str]:
    """Run ``python -m asqsd ARGS`` without blocking the loop the daemon runs on."""
    process = await asyncio.create_subprocess_exec(
        sys.executable,
        "-m",
        "asqsd",
        *args,
        stdout=asyncio.subprocess.PIPE,
        stderr=asyncio.subprocess.PIPE,
    )
    async with asyncio.timeout(30):
        out, err = await process.communicate()
    assert process.returncode is not None
    return process.returncode, out.decode(), err.decode()


async def test_nothing_listening_is_one_clear_line_and_exit_1() -> None:
    port = free_loopback_port()
    code, out, err = await asqsd("status", "--health-port", str(port))
    assert code == 1 and out == ""
    assert err.startswith(f"asqsd: nothing answers at http://127.0.0.1:{port} (")
    assert "health_server" in err and err.count("\n") == 1


async def test_pause_status_resume(emu: Emulator, worker: RecordingWorker) -> None:
    """1. The worker holds one message; ``asqsd pause --seconds 60`` (health port from a flag).
    2. ``asqsd status`` prints the paused state and a table row for the held message, posting.
    3. ``asqsd resume`` says running; the daemon receives again."""
    release = asyncio.Event()

    async def hold(_request: web.Request, _delivery: Delivery) -> web.StreamResponse:
        await release.wait()
        return web.Response(status=200, text="ok")

    worker.handler = hold
    emu.preload(QUEUE, 1, body="held")
    settings = load_settings(
        {
            "queue_url": emu.queue_url(QUEUE),
            "endpoint_url": emu.endpoint_url,
            "http_url": "http://127.0.0.1",
            "http_port": worker.port,
            "http_connections": 1,
            "wait_time_s": 1,
            "health_server": True,
            "health_port": 0,
            "pause_control": True,
        },
        env={},
    ).settings
    async with daemon_running(settings) as daemon:
        await wait_until(lambda: len(worker.deliveries) == 1, what="the message posted")
        health = daemon.observers.health
        assert health is not None
        code, out, _err = await asqsd("pause", "--seconds", "60", "--health-port", str(health.port))
        assert code == 0
        assert out.startswith("intake paused since ") and "(by api)" in out and "until resumed" not in out
        assert daemon.intake.paused

        code, out, _err = await asqsd("status", "--health-url", health.url)
        assert code == 0
        lines = out.splitlines()
        assert lines[0].startswith("intake paused since ")
        assert lines[1] == "held: 1 (buffered 0, posting 1, settling 0)"
        assert lines[2].split() == [
            "MESSAGE",
            "ID",
            "RECEIVES",
            "STATE",
            "HELD",
            "S",
            "VISIBLE",
            "IN",
            "S",
            "RECEIPT",
        ]
        assert lines[3].split()[1:3] == ["1", "posting"]

        code, out, _err = await asqsd("resume", "--health-url", health.url)
        assert (code, out) == (0, "intake running\n")
        assert not daemon.intake.paused
        release.set()
        await wait_until(lambda: daemon.counters.deleted == 1, what="the message deleted")
