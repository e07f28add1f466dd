"""A tiny worker for demos and end-to-end checks: answers every POST and logs the sqsd headers.

Run it with the Python of the asqsd image (it only needs aiohttp)::

    HOST=0.0.0.0 PORT=8080 WORKER_STATUS=200 WORKER_LATENCY_S=0.1 python app.py

Environment:

* ``HOST`` (default ``127.0.0.1``) and ``PORT`` (default ``8080``): where to listen. Inside a
  container the compose file sets ``HOST=0.0.0.0`` so the daemon's container can reach it.
* ``WORKER_STATUS`` (default ``200``): the status every POST gets. Only 200 makes asqsd delete the
  message (stock rule); anything else makes it retry after ``error_visibility_timeout``.
* ``WORKER_LATENCY_S`` (default ``0``): seconds to sleep before answering (simulated work).
* ``WORKER_RETRY_AFTER`` (unset by default): a ``Retry-After`` value sent with 429 and 503.

``GET /healthz`` answers 200 for container health checks. One JSON line per request goes to stdout;
SIGTERM and SIGINT stop the server after in-flight requests are answered.
"""

from __future__ import annotations

import asyncio
import json
import os
import signal
import sys
import time
from dataclasses import asdict, dataclass

from aiohttp import web

READY_PREFIX = "sample-worker listening on"


@dataclass(frozen=True, slots=True)
class Knobs:
    """How the worker answers, read once from the environment."""

    status: int = 200
    latency_s: float = 0.0
    retry_after: str | None = None

    @classmethod
    def from_env(cls) -> Knobs:
        """``WORKER_STATUS``, ``WORKER_LATENCY_S`` and ``WORKER_RETRY_AFTER``."""
        return cls(
            status=int(os.environ.get("WORKER_STATUS", "200")),
            latency_s=float(os.environ.get("WORKER_LATENCY_S", "0")),
            retry_after=os.environ.get("WORKER_RETRY_AFTER") or None,
        )


KNOBS = web.AppKey("knobs", Knobs)


def _log(**fields: object) -> None:
    """Write one JSON log line to stdout."""
    print(json.dumps({"ts": round(time.time(), 3), **fields}, sort_keys=True), flush=True)


async def handle_message(request: web.Request) -> web.Response:
    """Any POST: log the sqsd headers and body size, wait the configured latency, answer."""
    knobs = request.app[KNOBS]
    body = await request.read()
    sqsd_headers = {k: v for k, v in request.headers.items() if k.lower().startswith("x-aws-sqsd-")}
    _log(
        event="message",
        path=request.path,
        content_type=request.headers.get("Content-Type"),
        user_agent=request.headers.get("User-Agent"),
        body_bytes=len(body),
        headers=sqsd_headers,
    )
    if knobs.latency_s > 0:
        await asyncio.sleep(knobs.latency_s)
    headers = {}
    if knobs.retry_after is not None and knobs.status in (429, 503):
        headers["Retry-After"] = knobs.retry_after
    return web.json_response({"status": knobs.status}, status=knobs.status, headers=headers)


async def handle_health(request: web.Request) -> web.Response:
    """Liveness for the container health check."""
    return web.json_response({"status": "ok"})


def make_app(knobs: Knobs | None = None) -> web.Application:
    """The aiohttp application: GET /healthz, and POST on every path."""
    app = web.Application()
    app[KNOBS] = knobs or Knobs.from_env()
    app.router.add_get("/healthz", handle_health)
    app.router.add_post("/{tail:.*}", handle_message)
    return app


async def serve(host: str, port: int) -> None:
    """Serve until SIGTERM or SIGINT, then close gracefully."""
    stop = asyncio.Event()
    loop = asyncio.get_running_loop()
    for signum in (signal.SIGTERM, signal.SIGINT):
        loop.add_signal_handler(signum, stop.set)
    runner = web.AppRunner(make_app(), access_log=None)
    await runner.setup()
    try:
        site = web.TCPSite(runner, host, port)
        await site.start()
        _log(event="ready", message=f"{READY_PREFIX} http://{host}:{port}", knobs=asdict(runner.app[KNOBS]))
        await stop.wait()
        _log(event="stopping")
    finally:
        await runner.cleanup()


def main() -> int:
    """Entry point: ``HOST``/``PORT`` from the environment."""
    host = os.environ.get("HOST", "127.0.0.1")
    port = int(os.environ.get("PORT", "8080"))
    asyncio.run(serve(host, port))
    return 0


if __name__ == "__main__":
    sys.exit(main())
