"""A small HTTP proxy on 127.0.0.1 for tests: CONNECT tunnels and absolute-form forwarding, counted.

``async with ForwardProxy() as proxy`` listens on a free port. A ``CONNECT host:port`` request opens
a connection to the target and pipes bytes both ways (the TLS inside is not looked at); a request in
absolute form (``POST http://host:port/path HTTP/1.1``) is sent on to the target in origin form, and
the target's answers are piped back, on one upstream connection per client connection. Everything
that passes is counted, so a test can prove which connections went through the proxy and which
did not. With ``credentials`` set, requests without the matching ``Proxy-Authorization`` get a 407;
with ``refuse`` set, every request gets that status instead.
"""

from __future__ import annotations

import asyncio
import base64
import contextlib
import ssl
from dataclasses import dataclass, field
from typing import Any, Self
from urllib.parse import urlsplit

import pytest

# Every variable that could route or verify a test's AWS calls, in either spelling.
PROXY_VARIABLES = (
    "HTTP_PROXY",
    "HTTPS_PROXY",
    "NO_PROXY",
    "ALL_PROXY",
    "REQUESTS_CA_BUNDLE",
    "AWS_CA_BUNDLE",
)


def clear_proxy_environment(monkeypatch: pytest.MonkeyPatch) -> None:
    """Unset the proxy and CA bundle variables for one test (restored after it)."""
    for name in PROXY_VARIABLES:
        monkeypatch.delenv(name, raising=False)
        monkeypatch.delenv(name.lower(), raising=False)


_REASONS = {200: "Connection established", 403: "Forbidden", 407: "Proxy Authentication Required"}


async def splice(reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
    """Copy ``reader`` to ``writer`` until EOF or an error, then close ``writer``."""
    try:
        while data := await reader.read(65536):
            writer.write(data)
            await writer.drain()
    except ConnectionError:
        pass
    finally:
        writer.close()


async def splice_both(
    a: tuple[asyncio.StreamReader, asyncio.StreamWriter], b: tuple[asyncio.StreamReader, asyncio.StreamWriter]
) -> None:
    """Pipe two connections into each other until one side closes, then close both."""
    await asyncio.gather(splice(a[0], b[1]), splice(b[0], a[1]))


@dataclass
class _Request:
    method: str
    target: str
    headers: list[tuple[str, str]]

    def header(self, name: str) -> str | None:
        return next((value for key, value in self.headers if key.lower() == name.lower()), None)


def _parse_head(head: bytes) -> _Request:
    lines = head.decode("latin-1").split("\r\n")
    method, target, _version = lines[0].split(" ")
    headers = [(key, value.strip()) for key, _, value in (line.partition(":") for line in lines[1:] if line)]
    return _Request(method, target, headers)


@dataclass
class StreamServer:
    """An asyncio server on 127.0.0.1 (free port) whose connections are all closed on exit."""

    port: int = field(default=0, init=False)
    _server: asyncio.Server | None = field(default=None, init=False)
    _tasks: set[asyncio.Task[Any]] = field(default_factory=set, init=False)
    _writers: list[asyncio.StreamWriter] = field(default_factory=list, init=False)

    def _ssl_context(self) -> ssl.SSLContext | None:
        return None

    async def _handle(self, reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        raise NotImplementedError

    async def __aenter__(self) -> Self:
        self._server = await asyncio.start_server(self._serve, "127.0.0.1", 0, ssl=self._ssl_context())
        self.port = self._server.sockets[0].getsockname()[1]
        return self

    async def __aexit__(self, *_exc: object) -> None:
        assert self._server is not None
        self._server.close()
        for writer in self._writers:
            writer.close()
        for task in self._tasks:
            task.cancel()
        await asyncio.gather(*self._tasks, return_exceptions=True)
        await self._server.wait_closed()

    def _adopt(self, writer: asyncio.StreamWriter) -> None:
        """Close ``writer`` on exit (an accepted or an upstream connection)."""
        self._writers.append(writer)

    async def _serve(self, reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        task = asyncio.current_task()
        assert task is not None
        self._tasks.add(task)
        self._adopt(writer)
        try:
            await self._handle(reader, writer)
        except (asyncio.IncompleteReadError, ConnectionError):
            pass
        finally:
            writer.close()


@dataclass
class ForwardProxy(StreamServer):
    """An HTTP forward proxy on 127.0.0.1 that counts what passes through it (see the module)."""

    credentials: str | None = None  # "user:password" required in Proxy-Authorization
    refuse: int | None = None  # answer every request with this status
    connections: int = 0  # client connections accepted
    tunnels: int = 0  # CONNECT requests answered 200
    forwarded: int = 0  # absolute-form requests sent on
    refused: int = 0  # requests answered with an error status
    targets: list[str] = field(default_factory=list)  # host:port of every tunnel and forwarded request
    authorizations: list[str] = field(default_factory=list)  # Authorization of every forwarded request

    @property
    def url(self) -> str:
        """The proxy URL, with the credentials in it when the proxy requires them."""
        userinfo = f"{self.credentials}@" if self.credentials else ""
        return f"http://{userinfo}127.0.0.1:{self.port}"

    async def _handle(self, reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        self.connections += 1
        request = _parse_head(await reader.readuntil(b"\r\n\r\n"))
        if await self._refused(request, writer):
            return
        if request.method == "CONNECT":
            await self._tunnel(request, reader, writer)
        else:
            await self._forward(request, reader, writer)

    async def _refused(self, request: _Request, writer: asyncio.StreamWriter) -> bool:
        status = self.refuse
        if status is None and self.credentials is not None:
            expected = "Basic " + base64.b64encode(self.credentials.encode()).decode()
            status = None if request.header("Proxy-Authorization") == expected else 407
        if status is None:
            return False
        self.refused += 1
        reason = _REASONS.get(status, "Refused")
        body = b"refused by the test proxy"
        writer.write(
            f"HTTP/1.1 {status} {reason}\r\nProxy-Authenticate: Basic\r\nContent-Length: {len(body)}\r\n"
            f"Connection: close\r\n\r\n".encode()
            + body
        )
        await writer.drain()
        return True

    async def _open(self, host: str, port: int) -> tuple[asyncio.StreamReader, asyncio.StreamWriter]:
        upstream = await asyncio.open_connection(host, port)
        self._adopt(upstream[1])
        return upstream

    async def _tunnel(
        self, request: _Request, reader: asyncio.StreamReader, writer: asyncio.StreamWriter
    ) -> None:
        host, _, port = request.target.rpartition(":")
        upstream = await self._open(host.strip("[]"), int(port))
        self.tunnels += 1
        self.targets.append(request.target)
        writer.write(b"HTTP/1.1 200 Connection established\r\n\r\n")
        await splice_both((reader, writer), upstream)

    async def _forward(
        self, request: _Request, reader: asyncio.StreamReader, writer: asyncio.StreamWriter
    ) -> None:
        """Send requests on to their target, one upstream connection for this client connection."""
        target = urlsplit(request.target)
        assert target.hostname is not None and target.port is not None, request.target
        address = f"{target.hostname}:{target.port}"
        upstream_reader, upstream_writer = await self._open(target.hostname, target.port)
        answers = asyncio.create_task(splice(upstream_reader, writer))
        self._tasks.add(answers)
        while True:
            parts = urlsplit(request.target)
            assert f"{parts.hostname}:{parts.port}" == address, "one target per client connection"
            body = await reader.readexactly(int(request.header("Content-Length") or 0))
            path = parts.path + (f"?{parts.query}" if parts.query else "")
            headers = "".join(
                f"{key}: {value}\r\n"
                for key, value in request.headers
                if key.lower() not in ("proxy-authorization", "proxy-connection")
            )
            upstream_writer.write(f"{request.method} {path} HTTP/1.1\r\n{headers}\r\n".encode() + body)
            self.forwarded += 1
            self.targets.append(address)
            self.authorizations.append(request.header("Authorization") or "")
            try:
                head = await reader.readuntil(b"\r\n\r\n")
            except asyncio.IncompleteReadError:
                break
            request = _parse_head(head)
            if await self._refused(request, writer):
                break
        upstream_writer.close()
        with contextlib.suppress(asyncio.CancelledError, ConnectionError):
            await answers
