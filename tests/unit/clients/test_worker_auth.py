"""Request signing and bearer tokens: the canonical form, secret loading, redaction."""

from __future__ import annotations

import hashlib
import hmac
from pathlib import Path
from typing import Any

import pytest

from asqsd.clients.worker.auth import AuthenticatingWorker, RequestSigner, WorkerAuth, load_worker_auth
from asqsd.clients.worker.base import DeliveryResult, Request
from asqsd.config import describe_settings, load_settings
from asqsd.errors import ConfigError, StartupError

SECRET = b"0123456789abcdef0123456789abcdef"


class Recorder:
    """A WorkerPoster that keeps what it was given."""

    base_url = "http://127.0.0.1:1"

    def __init__(self) -> None:
        self.requests: list[dict[str, str]] = []

    async def post(self, request: Request) -> DeliveryResult:
        self.requests.append(dict(request.headers))
        return DeliveryResult(200, None, 0.0)


def settings(**values: Any) -> Any:
    return load_settings({"queue_url": "http://127.0.0.1:1/1/q", **values}, env={}).settings


def test_signature_is_hmac_sha256_of_the_documented_form() -> None:
    """``POST\\n<path>\\n<t>\\n<body>``, keyed with the secret, lower-case hex."""
    signer = RequestSigner(SECRET, clock=lambda: 1700000000.9)
    expected = hmac.new(SECRET, b'POST\n/work?x=1\n1700000000\n{"a":1}', hashlib.sha256).hexdigest()
    assert signer.header_value("/work?x=1", b'{"a":1}') == f"t=1700000000,v1={expected}"


async def test_every_post_is_signed_afresh_with_the_bearer_token() -> None:
    """Both headers on each POST; a second POST of the same request gets the new time."""
    now = [1700000000.0]
    inner = Recorder()
    worker = AuthenticatingWorker(inner, RequestSigner(SECRET, clock=lambda: now[0]), "tok-1")
    request = Request(path="/", body=b"x", headers={"Content-Type": "text/plain"})
    await worker.post(request)
    now[0] += 60
    await worker.post(request)
    first, second = inner.requests
    assert first["Authorization"] == second["Authorization"] == "Bearer tok-1"
    assert first["X-Asqsd-Signature"].startswith("t=1700000000,")
    assert second["X-Asqsd-Signature"].startswith("t=1700000060,")
    assert worker.base_url == inner.base_url


def test_nothing_configured_costs_nothing() -> None:
    """Without a secret or token the worker client is used as it is."""
    inner = Recorder()
    assert load_worker_auth(settings(), {}).wrap(inner) is inner


def test_secrets_from_file_and_env_never_in_repr(tmp_path: Path) -> None:
    """The file's content without its trailing newline; the env var by name; reprs hide both."""
    secret_file = tmp_path / "secret"
    secret_file.write_bytes(SECRET + b"\n")
    auth = load_worker_auth(
        settings(request_signing_secret_file=str(secret_file), worker_bearer_token_env="TOKEN"),
        {"TOKEN": "bearer-value-123"},
    )
    worker = auth.wrap(Recorder())
    for text in (repr(auth), repr(worker), repr(RequestSigner(SECRET))):
        assert SECRET.decode() not in text
        assert "bearer-value-123" not in text


def test_config_shows_names_not_values(tmp_path: Path) -> None:
    """``asqsd config`` lists the file and the variable name only."""
    loaded = load_settings(
        {"request_signing_secret_file": "/run/secrets/sign", "worker_bearer_token_env": "TOKEN"}, env={}
    )
    rows = {key: value for key, value, _source in describe_settings(loaded)}
    assert rows["request_signing_secret_file"] == "/run/secrets/sign"
    assert rows["worker_bearer_token_env"] == "TOKEN"


@pytest.mark.parametrize(
    ("values", "env", "message"),
    [
        ({"request_signing_secret_file": "/nonexistent/secret"}, {}, "request_signing_secret_file"),
        ({"request_signing_secret_env": "SIGN"}, {}, "SIGN, which is not set"),
        ({"request_signing_secret_env": "SIGN"}, {"SIGN": "  \n"}, "is empty"),
        ({"request_signing_secret_env": "SIGN"}, {"SIGN": "short"}, "5 bytes; use at least 16"),
        ({"worker_bearer_token_env": "TOK"}, {"TOK": "has space"}, "bearer token has characters"),
    ],
)
def test_unusable_secrets_stop_the_start(values: dict[str, str], env: dict[str, str], message: str) -> None:
    """Each problem is a StartupError naming the setting; the value never appears in it."""
    with pytest.raises(StartupError, match=message) as caught:
        load_worker_auth(settings(**values), env)
    for value in env.values():
        if value.strip():
            assert value not in str(caught.value)


@pytest.mark.parametrize(
    ("values", "message"),
    [
        (
            {"request_signing_secret_file": "/a", "request_signing_secret_env": "B"},
            "request_signing_secret_file or request_signing_secret_env, not both",
        ),
        ({"worker_bearer_token_env": "abc=def"}, "environment variable name"),
    ],
)
def test_settings_refuse_ambiguous_sources(values: dict[str, str], message: str) -> None:
    """Two sources for one secret, or a value where a variable name belongs, are config errors."""
    with pytest.raises(ConfigError, match=message):
        settings(**values)


def test_wrap_signs_only_when_a_secret_is_set() -> None:
    """A bearer token alone adds no signature header."""
    assert not WorkerAuth(None, "t").signs
    assert WorkerAuth(SECRET, None).signs
