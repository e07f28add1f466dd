"""botocore's credential chain on the event loop: lookups and due refreshes in a worker thread."""

from __future__ import annotations

import threading
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

import botocore.session
import pytest
from botocore.credentials import Credentials, RefreshableCredentials

from asqsd.clients.sqs.credential_chain import BotocoreChain, LazyAioSession, ThreadedCredentials


class _Refresher:
    """A refresh function that records the thread it ran on and hands out numbered keys."""

    def __init__(self) -> None:
        self.threads: list[int] = []

    def __call__(self) -> dict[str, str]:
        self.threads.append(threading.get_ident())
        expiry = datetime.now(UTC) + timedelta(hours=1)
        n = len(self.threads)
        return {"access_key": f"AK{n}", "secret_key": "s", "token": "t", "expiry_time": expiry.isoformat()}


def _refreshable(expires_in: timedelta, refresher: _Refresher) -> RefreshableCredentials:
    expiry = datetime.now(UTC) + expires_in
    return RefreshableCredentials("AK0", "s", "t", expiry, refresher, "sts-assume-role")


async def test_fresh_credentials_are_read_without_a_refresh() -> None:
    refresher = _Refresher()
    credentials = ThreadedCredentials(_refreshable(timedelta(hours=1), refresher))
    assert (await credentials.get_frozen_credentials()).access_key == "AK0"
    assert refresher.threads == []
    assert credentials.method == "sts-assume-role"


async def test_a_due_refresh_runs_off_the_event_loop() -> None:
    """Within botocore's advisory window (15 minutes) the refresh happens, in a worker thread."""
    refresher = _Refresher()
    credentials = ThreadedCredentials(_refreshable(timedelta(minutes=5), refresher))
    assert (await credentials.get_frozen_credentials()).access_key == "AK1"
    assert len(refresher.threads) == 1
    assert refresher.threads[0] != threading.get_ident()


async def test_static_credentials_are_returned_as_they_are() -> None:
    credentials = ThreadedCredentials(Credentials("AK", "SK", method="env"))
    frozen = await credentials.get_frozen_credentials()
    assert (frozen.access_key, frozen.secret_key, frozen.token) == ("AK", "SK", None)


def _isolated_session(tmp_path: Path, monkeypatch: pytest.MonkeyPatch, **env: str) -> Any:
    for name in ("AWS_ACCESS_KEY_ID", "AWS_SECRET_ACCESS_KEY", "AWS_SESSION_TOKEN", "AWS_PROFILE"):
        monkeypatch.delenv(name, raising=False)
    monkeypatch.setenv("AWS_CONFIG_FILE", str(tmp_path / "config"))
    monkeypatch.setenv("AWS_SHARED_CREDENTIALS_FILE", str(tmp_path / "credentials"))
    monkeypatch.setenv("AWS_EC2_METADATA_DISABLED", "true")  # nothing asked over the network
    for name, value in env.items():
        monkeypatch.setenv(name, value)
    return botocore.session.Session()


async def test_the_chain_finds_the_environments_keys(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    session = _isolated_session(tmp_path, monkeypatch, AWS_ACCESS_KEY_ID="AK", AWS_SECRET_ACCESS_KEY="SK")
    credentials = await BotocoreChain(session).get_credentials()
    assert credentials is not None and credentials.method == "env"
    assert (await credentials.get_frozen_credentials()).access_key == "AK"


async def test_no_source_is_none_and_a_later_lookup_finds_keys(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """Nothing is cached while the chain finds nothing: keys that appear later are found."""
    chain = BotocoreChain(_isolated_session(tmp_path, monkeypatch))
    assert await chain.get_credentials() is None
    (tmp_path / "credentials").write_text("[default]\naws_access_key_id = AK\naws_secret_access_key = SK\n")
    credentials = await chain.get_credentials()
    assert credentials is not None and credentials.method == "shared-credentials-file"


def test_the_chain_reads_the_sessions_configuration(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    session = _isolated_session(tmp_path, monkeypatch, AWS_CA_BUNDLE="/etc/ca.pem")
    assert BotocoreChain(session).get_config_variable("ca_bundle") == "/etc/ca.pem"


def test_the_aiobotocore_session_is_made_at_first_use() -> None:
    lazy = LazyAioSession()
    assert lazy._session is None
    assert callable(lazy.create_client)
    assert type(lazy._session).__name__ == "AioSession"
