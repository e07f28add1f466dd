"""A fake EC2 instance metadata service (IMDSv2) on 127.0.0.1, for the credential tests.

It serves what botocore's instance-profile provider asks for: ``PUT /latest/api/token``, then
``GET /latest/meta-data/iam/security-credentials/`` (the role name) and
``.../security-credentials/<role>`` (the keys), each GET carrying the token. IMDSv1 is off, as on
Amazon Linux 2023: a GET without a token gets 401. ``mode`` says how it behaves and can change
while a daemon uses it:

* ``"answers"``: a token, a role and credentials valid until an hour after the fake started;
* ``"hangs"``: the token PUT never gets an answer, as inside a container on an instance whose
  IMDSv2 hop limit is 1 (the answer is dropped one hop short);
* ``"expired"``: credentials whose ``Expiration`` is an hour before the fake started;
* ``"no-role"``: tokens, but no IAM role on the instance (404 for the role name);
* ``"token-400"``, ``"token-403"``, ``"token-404"``, ``"token-405"``, ``"token-500"``: the token
  request gets that status and the GETs are served without a token (IMDSv1), as by an IMDS with
  IMDSv2 off or a proxy in front of it;
* ``"error-json"``: the credentials document is an error (``Code`` and ``Message``, no keys), as
  when the role does not trust EC2; ``"bad-json"``: it is not JSON.

While :attr:`gate` is set to an unset event, the credentials GET waits for it (a slow IMDS); with
:attr:`rotating`, each credentials answer holds a new session token.

Point a process at it with ``AWS_EC2_METADATA_SERVICE_ENDPOINT=<url>/``; :attr:`calls` counts
every request, so a test can check that retries stay bounded.
"""

from __future__ import annotations

import asyncio
import contextlib
import datetime
import os
from collections.abc import AsyncIterator
from pathlib import Path
from typing import Literal, get_args

import pytest
from aiohttp import web

Mode = Literal[
    "answers",
    "hangs",
    "expired",
    "no-role",
    "token-400",
    "token-403",
    "token-404",
    "token-405",
    "token-500",
    "error-json",
    "bad-json",
]
MODES: tuple[Mode, ...] = get_args(Mode)

ROLE = "asqsd-test-role"
ACCESS_KEY = "ASIAFAKEIMDSKEY00001"
_TOKEN = "fake-imds-token"
_CREDENTIALS_PATH = "/latest/meta-data/iam/security-credentials/"


class FakeImds:
    """The server; ``async with FakeImds() as imds`` binds a free loopback port."""

    def __init__(self, mode: Mode = "answers") -> None:
        self.mode: Mode = mode
        self.calls: list[tuple[str, str]] = []  # (method, path) of every request, in order
        self.headers: list[dict[str, str]] = []  # the headers of each request, in the same order
        self.gate: asyncio.Event | None = None
        self._started = datetime.datetime.now(datetime.UTC)
        self.rotating = False  # True: each credentials answer has a new token (-1, -2 ...)
        self._answers = 0
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
    def _record(self, request: web.Request) -> None:
        self.calls.append((request.method, request.path))
        self.headers.append(dict(request.headers))

    async def _token(self, request: web.Request) -> web.StreamResponse:
        self._record(request)
        if self.mode == "hangs":
            await self._released.wait()  # the client gives up first (botocore: 1 s)
        if self.mode.startswith("token-"):
            return web.Response(status=int(self.mode.removeprefix("token-")))
        if "X-aws-ec2-metadata-token-ttl-seconds" not in request.headers:
            return web.Response(status=400)
        return web.Response(text=_TOKEN)

    async def _role(self, request: web.Request) -> web.StreamResponse:
        self._record(request)
        if not self._authorised(request):
            return web.Response(status=401)
        if self.mode == "no-role":
            return web.Response(status=404)
        return web.Response(text=ROLE)

    async def _credentials(self, request: web.Request) -> web.StreamResponse:
        self._record(request)
        if self.gate is not None:
            await self.gate.wait()
        if not self._authorised(request):
            return web.Response(status=401)
        if self.mode == "no-role" or request.match_info["role"] != ROLE:
            return web.Response(status=404)
        if self.mode == "error-json":
            return web.json_response(
                {"Code": "AssumeRoleUnauthorizedAccess", "Message": "EC2 is not trusted"}
            )
        if self.mode == "bad-json":
            return web.Response(text="{not json")
        hours = -1 if self.mode == "expired" else 1
        now = self._started  # every answer the same, whenever it is asked
        expiration = (now + datetime.timedelta(hours=hours)).strftime("%Y-%m-%dT%H:%M:%SZ")
        return web.json_response(
            {
                "Code": "Success",
                "LastUpdated": now.strftime("%Y-%m-%dT%H:%M:%SZ"),
                "Type": "AWS-HMAC",
                "AccessKeyId": ACCESS_KEY,
                "SecretAccessKey": "fake-imds-secret",
                "Token": f"fake-imds-session-token{self._issued() if self.rotating else ''}",
                "Expiration": expiration,
            }
        )

    def _issued(self) -> str:
        self._answers += 1
        return f"-{self._answers}"

    def _authorised(self, request: web.Request) -> bool:
        token = request.headers.get("X-aws-ec2-metadata-token")
        return token == _TOKEN or (token is None and self.mode.startswith("token-"))


@contextlib.asynccontextmanager
async def fake_imds(mode: Mode = "answers") -> AsyncIterator[FakeImds]:
    """A started :class:`FakeImds`, closed on exit."""
    async with FakeImds(mode) as imds:
        yield imds


def instance_environment(monkeypatch: pytest.MonkeyPatch, tmp_path: Path) -> None:
    """An Elastic Beanstalk instance's AWS environment in this process: no AWS or boto variable, no
    proxy, the shared config and credentials files named under ``tmp_path`` but missing."""
    for name in list(os.environ):
        if name.startswith(("AWS_", "BOTO_")) or name.lower().endswith("_proxy"):
            monkeypatch.delenv(name)
    monkeypatch.setenv("AWS_CONFIG_FILE", str(tmp_path / "missing-config"))
    monkeypatch.setenv("AWS_SHARED_CREDENTIALS_FILE", str(tmp_path / "missing-credentials"))
