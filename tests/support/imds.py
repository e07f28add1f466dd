"""A fake EC2 instance metadata service (IMDSv2) on 127.0.0.1, for the credential tests.

It serves what botocore's instance-profile provider asks for: ``PUT /latest/api/token``, then
``GET /latest/meta-data/iam/security-credentials/`` (the role name) and
``.../security-credentials/<role>`` (the keys), each GET carrying the token. IMDSv1 is off, as on
Amazon Linux 2023: a GET without a token gets 401. ``mode`` says how it behaves and can change
while a daemon uses it:

* ``"answers"``: a token, a role and credentials valid for an hour;
* ``"hangs"``: the token PUT never gets an answer, as inside a container on an instance whose
  IMDSv2 hop limit is 1 (the answer is dropped one hop short);
* ``"expired"``: credentials whose ``Expiration`` is an hour in the past;
* ``"no-role"``: tokens, but no IAM role on the instance (404 for the role name).

Point a process at it with ``AWS_EC2_METADATA_SERVICE_ENDPOINT=<url>/``; :attr:`calls` counts
every request, so a test can check that retries stay bounded.
"""

from __future__ import annotations

import asyncio
import contextlib
import datetime
from collections.abc import AsyncIterator
from typing import Literal

from aiohttp import web

Mode = Literal["answers", "hangs", "expired", "no-role"]

ROLE = "asqsd-test-role"
ACCESS_KEY = "ASIAFAKEIMDSKEY00001"
_TOKEN = "fake-imds-token"
_CREDENTIALS_PATH = "/latest/meta-data/iam/security-credentials/"


class FakeImds:
    """The server; ``async with FakeImds() as imds`` binds a free loopback port."""

    def __init__(self, mode: Mode = "answers") -> None:
        self.mode: Mode = mode
        self.calls: list[tuple[str, str]] = []  # (method, path) of every request, in order
        self.port = 0
        self._released = asyncio.Event()  # set on close: hanging handlers return
        self._runner: web.AppRunner | None = None

    @property
    def endpoint(self) -> str:
        """The value for ``AWS_EC2_METADATA_SERVICE_ENDPOINT``."""
        return f"http://127.0.0.1:{self.port}/"

    def count(self, method: str | None = None) -> int:
        """Requests so far (of one method, when given)."""
        return sum(1 for m, _ in self.calls if method is None or m == method)

    async def __aenter__(self) -> FakeImds:
        app = web.Application()
        app.router.add_put("/latest/api/token", self._token)
        app.router.add_get(_CREDENTIALS_PATH, self._role)
        app.router.add_get(_CREDENTIALS_PATH + "{role}", self._credentials)
        runner = web.AppRunner(app, access_log=None, shutdown_timeout=0.5)
        await runner.setup()
        site = web.TCPSite(runner, "127.0.0.1", 0)
        await site.start()
        self._runner = runner
        self.port = int(runner.addresses[0][1])
        return self

    async def __aexit__(self, *_exc: object) -> None:
        self._released.set()
        if self._runner is not None:
            await self._runner.cleanup()

    # --- handlers ----------------------------------------------------------------------------
    async def _token(self, request: web.Request) -> web.StreamResponse:
        self.calls.append((request.method, request.path))
        if self.mode == "hangs":
            await self._released.wait()  # the client gives up first (botocore: 1 s)
        if "X-aws-ec2-metadata-token-ttl-seconds" not in request.headers:
            return web.Response(status=400)
        return web.Response(text=_TOKEN)

    async def _role(self, request: web.Request) -> web.StreamResponse:
        self.calls.append((request.method, request.path))
        if not self._authorised(request):
            return web.Response(status=401)
        if self.mode == "no-role":
            return web.Response(status=404)
        return web.Response(text=ROLE)

    async def _credentials(self, request: web.Request) -> web.StreamResponse:
        self.calls.append((request.method, request.path))
        if not self._authorised(request):
            return web.Response(status=401)
        if self.mode == "no-role" or request.match_info["role"] != ROLE:
            return web.Response(status=404)
        hours = -1 if self.mode == "expired" else 1
        now = datetime.datetime.now(datetime.UTC)
        expiration = (now + datetime.timedelta(hours=hours)).strftime("%Y-%m-%dT%H:%M:%SZ")
        return web.json_response(
            {
                "Code": "Success",
                "LastUpdated": now.strftime("%Y-%m-%dT%H:%M:%SZ"),
                "Type": "AWS-HMAC",
                "AccessKeyId": ACCESS_KEY,
                "SecretAccessKey": "fake-imds-secret",
                "Token": "fake-imds-session-token",
                "Expiration": expiration,
            }
        )

    @staticmethod
    def _authorised(request: web.Request) -> bool:
        return request.headers.get("X-aws-ec2-metadata-token") == _TOKEN


@contextlib.asynccontextmanager
async def fake_imds(mode: Mode = "answers") -> AsyncIterator[FakeImds]:
    """A started :class:`FakeImds`, closed on exit."""
    async with FakeImds(mode) as imds:
        yield imds
