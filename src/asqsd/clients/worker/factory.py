"""Open the configured worker client (``http_client``: lean by default, or aiohttp).

Both honour ``connect_timeout``, ``inactivity_timeout`` and at most ``http_connections``
connections; the lean one costs a fraction of aiohttp's CPU per POST (docs/http-client.md).
"""

from __future__ import annotations

import contextlib

from asqsd.clients.worker.base import WorkerPoster
from asqsd.clients.worker.lean_impl import LeanWorkerClient
from asqsd.config import Settings


async def open_worker(settings: Settings, stack: contextlib.AsyncExitStack) -> WorkerPoster:
    """The configured worker client, closed with ``stack``."""
    if settings.http_client == "lean":
        # A fraction of aiohttp's CPU per POST (docs/http-client.md), same semantics.
        return await stack.enter_async_context(
            LeanWorkerClient(
                settings.worker_url,
                settings.connect_timeout,
                settings.inactivity_timeout,
                settings.http_connections,
                keepalive_idle_s=settings.worker_keepalive_idle_s,
                response_bytes=settings.log_response_bytes,
            )
        )
    from asqsd.clients.worker.aiohttp_impl import WorkerClient, create_session

    session = await stack.enter_async_context(
        create_session(settings.http_connections, settings.user_agent, settings.worker_keepalive_idle_s)
    )
    return WorkerClient(
        session,
        settings.worker_url,
        settings.connect_timeout,
        settings.inactivity_timeout,
        response_bytes=settings.log_response_bytes,
    )
