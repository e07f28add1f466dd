"""Worker probes: is the worker up? TCP connect by default, or the stock ``HTTP:<port><path>`` check.

Used by readiness, the CloudWatch Health metric and local mode's start-up warning; each probe is
bounded by a timeout and never raises for an unreachable worker.
"""

from __future__ import annotations

import asyncio
import contextlib

from asqsd.addresses import join_host_port, url_address
from asqsd.config import WorkerHealthcheck


async def tcp_check(url: str, timeout_s: float = 2.0) -> bool:
    """True if a TCP connection to the URL's host and port opens within ``timeout_s``."""
    address = url_address(url)
    try:
        async with asyncio.timeout(timeout_s):
            _reader, writer = await asyncio.open_connection(address.host, address.port)
    except (OSError, TimeoutError):
        return False
    writer.close()
    with contextlib.suppress(OSError):  # a reset on close still proves the port accepted us
        await writer.wait_closed()
    return True


async def http_check(url: str, timeout_s: float = 2.0) -> bool:
    """True if ``GET url`` answers 200 within ``timeout_s`` (stock ``HTTP:`` health checks)."""
    # Imported here: only an ``HTTP:`` healthcheck needs aiohttp (the default daemon has none).
    import aiohttp

    timeout = aiohttp.ClientTimeout(total=timeout_s)
    try:
        async with (
            aiohttp.ClientSession(timeout=timeout) as session,
            session.get(url, allow_redirects=False) as response,
        ):
            return response.status == 200
    except (aiohttp.ClientError, OSError, TimeoutError):
        return False


async def probe_worker(
    worker_url: str, healthcheck: WorkerHealthcheck | None, timeout_s: float = 2.0
) -> bool:
    """Probe the worker host of ``worker_url`` as ``healthcheck`` says (default: TCP on its port)."""
    address = url_address(worker_url)
    port = address.port if healthcheck is None else healthcheck.port
    scheme = address.scheme or "http"
    netloc = join_host_port(address.host, port)
    if healthcheck is not None and healthcheck.kind == "http":
        return await http_check(f"{scheme}://{netloc}{healthcheck.path}", timeout_s)
    return await tcp_check(f"{scheme}://{netloc}", timeout_s)
