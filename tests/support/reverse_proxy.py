"""A reverse proxy on 127.0.0.1 with nginx's ``proxy_read_timeout``, for the async_ack scenario.

On Elastic Beanstalk the daemon's POST usually reaches the application through nginx, which ends
a request whose upstream has not answered within its read timeout (60 s by default) with a 504.
:class:`TimeoutProxy` does the same in front of one upstream on 127.0.0.1, with the timeout scaled
down for tests, and counts what it forwarded and what timed out.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Self

import aiohttp
from aiohttp import web

# Hop-by-hop headers (and those the client library sets itself) are not forwarded, as nginx does.
_NOT_FORWARDED = frozenset({"host", "content-length", "connection", "keep-alive", "transfer-encoding"})


@dataclass
class TimeoutProxy:
    """``async with TimeoutProxy(upstream_port, read_timeout_s) as proxy``: listens on :attr:`port`."""

    upstream_port: int
    read_timeout_s: float
    port: int = field(default=0, init=False)
    forwarded: int = field(default=0, init=False)
    timeouts: int = field(default=0, init=False)
    _runner: web.AppRunner | None = field(default=None, init=False)
    _session: aiohttp.ClientSession | None = field(default=None, init=False)

    async def __aenter__(self) -> Self:
        self._session = aiohttp.ClientSession()
        app = web.Application(client_max_size=4 * 1024 * 1024)
        app.router.add_route("*", "/{tail:.*}", self._forward)
        self._runner = web.AppRunner(app, handle_signals=False, access_log=None, shutdown_timeout=0.5)
        await self._runner.setup()
        site = web.TCPSite(self._runner, "127.0.0.1", 0)
        await site.start()
        self.port = int(self._runner.addresses[0][1])
        return self

    async def __aexit__(self, *_exc: object) -> None:
        if self._runner is not None:
            await self._runner.cleanup()
        if self._session is not None:
            await self._session.close()

    async def _forward(self, request: web.Request) -> web.Response:
        assert self._session is not None
        body = await request.read()
        headers = {k: v for k, v in request.headers.items() if k.lower() not in _NOT_FORWARDED}
        url = f"http://127.0.0.1:{self.upstream_port}{request.path_qs}"
        self.forwarded += 1
        try:
            async with self._session.request(
                request.method,
                url,
                data=body,
                headers=headers,
                timeout=aiohttp.ClientTimeout(sock_read=self.read_timeout_s),
            ) as upstream:
                answer = await upstream.read()
                return web.Response(status=upstream.status, body=answer)
        except TimeoutError:
            self.timeouts += 1
            return web.Response(status=504, text="upstream timed out (proxy read timeout)")
