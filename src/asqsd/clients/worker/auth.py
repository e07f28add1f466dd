"""Let the worker check that a POST came from this daemon: an HMAC signature, a bearer token, or both.

With ``request_signing_secret_file`` / ``_env`` every POST carries

    X-Asqsd-Signature: t=<unix seconds>,v1=<hex HMAC-SHA256>

computed with the secret over ``POST\\n<request-target>\\n<t>\\n`` followed by the body bytes,
the target as it goes on the request line, percent-encoded (docs/daemon.md has the exact form
and verifiers). With ``worker_bearer_token_file`` / ``_env``
every POST carries ``Authorization: Bearer <token>``. :class:`AuthenticatingWorker` adds them in
front of either worker client, at each POST (not when the request is built), so a message POSTed
again after a worker outage carries a fresh timestamp.

Secrets are read once, at start-up (:func:`load_worker_auth`), and kept only as bytes inside
:class:`RequestSigner` and :class:`AuthenticatingWorker`, whose reprs never show them.
"""

from __future__ import annotations

import hmac
import re
import time
from collections.abc import Callable, Mapping
from pathlib import Path

from asqsd.clients.worker.base import DeliveryResult, Request, WorkerPoster, wire_target
from asqsd.config import Settings
from asqsd.errors import StartupError

SIGNATURE_HEADER = "X-Asqsd-Signature"
# Shorter secrets are refused: HMAC-SHA256 is only as strong as its key.
MIN_SECRET_BYTES = 16
# RFC 6750 b64token: what may follow "Bearer " without quoting.
_BEARER_TOKEN = re.compile(r"[A-Za-z0-9\-._~+/]+=*")


class RequestSigner:
    """Signs requests with one secret. Thread-free and cheap: the keyed HMAC state is copied per
    request instead of re-keyed."""

    __slots__ = ("_clock", "_keyed")

    def __init__(self, secret: bytes, clock: Callable[[], float] = time.time) -> None:
        self._keyed = hmac.new(secret, digestmod="sha256")
        self._clock = clock

    def __repr__(self) -> str:
        return "RequestSigner(secret=<redacted>)"

    def signature(self, method: str, path: str, timestamp: int, body: bytes) -> str:
        """The hex HMAC-SHA256 of the canonical form of one request."""
        mac = self._keyed.copy()
        mac.update(f"{method}\n{path}\n{timestamp}\n".encode("latin-1"))
        mac.update(body)
        return mac.hexdigest()

    def header_value(self, path: str, body: bytes) -> str:
        """``t=<now>,v1=<signature>`` for a POST of ``body`` to ``path``."""
        timestamp = int(self._clock())
        return f"t={timestamp},v1={self.signature('POST', path, timestamp, body)}"


class AuthenticatingWorker:
    """A :class:`WorkerPoster` that adds the signature and/or the bearer token to every POST."""

    __slots__ = ("_authorization", "_inner", "_signer")

    def __init__(self, inner: WorkerPoster, signer: RequestSigner | None, bearer_token: str | None) -> None:
        self._inner = inner
        self._signer = signer
        self._authorization = None if bearer_token is None else f"Bearer {bearer_token}"

    def __repr__(self) -> str:
        return f"AuthenticatingWorker({self._inner!r}, signed={self._signer is not None}, bearer=<redacted>)"

    @property
    def base_url(self) -> str:
        """``scheme://host:port`` of the worker."""
        return self._inner.base_url

    async def post(self, request: Request) -> DeliveryResult:
        """Add the headers (replacing any from an earlier attempt), then deliver."""
        if self._authorization is not None:
            request.headers["Authorization"] = self._authorization
        if self._signer is not None:
            # Signed as it goes on the wire (percent-encoded), which is what the worker sees.
            target = wire_target(self._inner.base_url, request.path)
            request.headers[SIGNATURE_HEADER] = self._signer.header_value(target, request.body)
        return await self._inner.post(request)


class WorkerAuth:
    """The secrets read at start-up; :meth:`wrap` puts them in front of a worker client."""

    __slots__ = ("_bearer_token", "_signing_secret")

    def __init__(self, signing_secret: bytes | None, bearer_token: str | None) -> None:
        self._signing_secret = signing_secret
        self._bearer_token = bearer_token

    def __repr__(self) -> str:
        return f"WorkerAuth(signed={self.signs}, bearer={self._bearer_token is not None})"

    @property
    def signs(self) -> bool:
        """Whether POSTs carry X-Asqsd-Signature."""
        return self._signing_secret is not None

    def wrap(self, worker: WorkerPoster) -> WorkerPoster:
        """``worker`` itself when nothing is configured (no cost per POST), else the wrapper."""
        if self._signing_secret is None and self._bearer_token is None:
            return worker
        signer = None if self._signing_secret is None else RequestSigner(self._signing_secret)
        return AuthenticatingWorker(worker, signer, self._bearer_token)


def load_worker_auth(settings: Settings, env: Mapping[str, str]) -> WorkerAuth:
    """Read the signing secret and the bearer token the settings name; StartupError saying which
    setting, file or variable is wrong (never the value)."""
    secret = _read_secret(
        "request_signing_secret",
        settings.request_signing_secret_file,
        settings.request_signing_secret_env,
        env,
    )
    if secret is not None and len(secret) < MIN_SECRET_BYTES:
        raise StartupError(
            f"request signing secret is {len(secret)} bytes; use at least {MIN_SECRET_BYTES} "
            "(e.g. the output of `openssl rand -hex 32`)"
        )
    token_bytes = _read_secret(
        "worker_bearer_token", settings.worker_bearer_token_file, settings.worker_bearer_token_env, env
    )
    token = None
    if token_bytes is not None:
        token = token_bytes.decode("latin-1")
        if _BEARER_TOKEN.fullmatch(token) is None:
            raise StartupError(
                "worker bearer token has characters a bearer token cannot carry "
                "(allowed: letters, digits and -._~+/ with trailing =)"
            )
    return WorkerAuth(secret, token)


def _read_secret(key: str, file: str | None, env_name: str | None, env: Mapping[str, str]) -> bytes | None:
    # The value without surrounding whitespace: files usually end with a newline.
    if file is not None:
        try:
            raw = Path(file).read_bytes()
        except OSError as exc:
            raise StartupError(f"{key}_file {file}: cannot read: {exc.strerror or 'I/O error'}") from None
        where = f"{key}_file {file}"
    elif env_name is not None:
        if env_name not in env:
            raise StartupError(f"{key}_env names {env_name}, which is not set in the environment")
        raw = env[env_name].encode("utf-8", "surrogateescape")
        where = f"{key}_env ({env_name})"
    else:
        return None
    value = raw.strip()
    if not value:
        raise StartupError(f"{where} is empty")
    return value
