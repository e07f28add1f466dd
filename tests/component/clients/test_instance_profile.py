"""Instance-profile credentials from a fake IMDS on 127.0.0.1: botocore's answers, asqsd's fetcher.

Parity: for every behaviour of the fake, botocore's own ``InstanceMetadataFetcher`` and
``InstanceMetadataProvider`` (built as botocore's default chain builds them) and asqsd's fetcher make
the same requests (method, path, TTL, token and User-Agent headers) and give the same credentials,
or both give none, or both raise. The static-stability jitter is drawn from ``random`` by both:
each side starts from the same seed.

Refresh: the fake runs on the test's event loop, so a fetch made on the loop could never be
answered; each refresh that completes ran in a worker thread.
"""

from __future__ import annotations

import asyncio
import datetime
import os
import random
from collections.abc import Callable
from pathlib import Path
from typing import Any

import botocore.session
import pytest
from botocore.credentials import InstanceMetadataProvider
from botocore.exceptions import CredentialRetrievalError, MetadataRetrievalError
from botocore.utils import InstanceMetadataFetcher as BotocoreFetcher
from botocore.utils import resolve_imds_endpoint_mode
from structlog.testing import capture_logs

from asqsd.clients.sqs.aws_config import AwsConfigSession
from asqsd.clients.sqs.credential_chain import BotocoreChain
from asqsd.clients.sqs.instance_profile import (
    ADVISORY_REFRESH_S,
    ImdsSettings,
    InstanceMetadataFetcher,
    InstanceProfileCredentials,
    instance_profile_settings,
    load_instance_profile,
    utc_now,
)
from tests.support.imds import ACCESS_KEY, MODES, FakeImds, Mode, instance_environment
from tests.support.polling import wait_until

_COMPARED_HEADERS = ("user-agent", "x-aws-ec2-metadata-token-ttl-seconds", "x-aws-ec2-metadata-token")


@pytest.fixture(autouse=True)
def instance_only(monkeypatch: pytest.MonkeyPatch, tmp_path: Path) -> pytest.MonkeyPatch:
    """An instance's environment; the IMDS is a closed loopback port until a test starts a fake."""
    instance_environment(monkeypatch, tmp_path)
    monkeypatch.setenv("AWS_EC2_METADATA_SERVICE_ENDPOINT", "http://127.0.0.1:9/")
    return monkeypatch


def _ours() -> ImdsSettings:
    settings = instance_profile_settings(AwsConfigSession(), os.environ)
    assert settings is not None
    return settings


def _botocores() -> BotocoreFetcher:
    """The fetcher botocore's create_credential_resolver builds for its default session."""
    session = botocore.session.get_session()
    return BotocoreFetcher(
        timeout=session.get_config_variable("metadata_service_timeout"),
        num_attempts=session.get_config_variable("metadata_service_num_attempts"),
        user_agent=session.user_agent(),
        config={
            "ec2_metadata_service_endpoint": session.get_config_variable("ec2_metadata_service_endpoint"),
            "ec2_metadata_service_endpoint_mode": resolve_imds_endpoint_mode(session),
            "ec2_credential_refresh_window": ADVISORY_REFRESH_S,
            "ec2_metadata_v1_disabled": session.get_config_variable("ec2_metadata_v1_disabled"),
        },
    )


def _requests(imds: FakeImds, start: int) -> list[tuple[str, str, dict[str, str]]]:
    compared = [
        {k.lower(): v for k, v in headers.items() if k.lower() in _COMPARED_HEADERS}
        for headers in imds.headers[start:]
    ]
    return [(m, p, h) for (m, p), h in zip(imds.calls[start:], compared, strict=True)]


async def _outcome(call: Callable[[], Any]) -> Any:
    random.seed(20261206)
    try:
        return await asyncio.to_thread(call)
    except Exception as exc:  # compared by type and message
        return (type(exc).__name__, str(exc))


def _extended_by(outcome: Any) -> datetime.timedelta:
    """How far ahead of now an extended expiry was set: the part both sides must agree on."""
    expiry = datetime.datetime.strptime(outcome.pop("expiry_time"), "%Y-%m-%dT%H:%M:%SZ")
    return expiry - datetime.datetime.now(datetime.UTC).replace(tzinfo=None)


async def _compare(imds: FakeImds, ours: Callable[[], Any], theirs: Callable[[], Any]) -> Any:
    """Run botocore's call, then asqsd's, against ``imds``: the same requests and the same outcome.

    An expiry extended for static stability is "now" plus the jitter: now differs between the two
    calls, so those are compared to within a few seconds.
    """
    theirs_outcome = await _outcome(theirs)
    theirs_ahead = _extended_by(theirs_outcome) if imds.mode == "expired" and theirs_outcome else None
    middle = len(imds.calls)
    ours_outcome = await _outcome(ours)
    ours_ahead = _extended_by(ours_outcome) if imds.mode == "expired" and ours_outcome else None
    assert _requests(imds, middle) == _requests(imds, 0)[:middle]
    assert middle == len(imds.calls) - middle
    assert ours_outcome == theirs_outcome
    if ours_ahead is not None and theirs_ahead is not None:
        assert abs(ours_ahead - theirs_ahead) < datetime.timedelta(seconds=5)
    return ours_outcome


async def _fetched_by_both(env: pytest.MonkeyPatch, mode: Mode) -> Any:
    """botocore's fetcher, then asqsd's, against a fake IMDS in ``mode``: see :func:`_compare`."""
    async with FakeImds(mode) as imds:
        env.setenv("AWS_EC2_METADATA_SERVICE_ENDPOINT", imds.endpoint)
        return await _compare(
            imds, InstanceMetadataFetcher(_ours()).retrieve, _botocores().retrieve_iam_role_credentials
        )


# A timed-out token request is not retried, so "hangs" with two attempts is the one-attempt case.
@pytest.mark.parametrize(
    ("mode", "attempts"),
    [(mode, tries) for mode in MODES for tries in ("1", "2") if (mode, tries) != ("hangs", "2")],
)
async def test_fetcher_parity(instance_only: pytest.MonkeyPatch, mode: Mode, attempts: str) -> None:
    instance_only.setenv("AWS_METADATA_SERVICE_NUM_ATTEMPTS", attempts)
    outcome = await _fetched_by_both(instance_only, mode)
    if mode in ("answers", "expired", "token-403", "token-404", "token-405", "token-500"):
        assert outcome["access_key"] == ACCESS_KEY  # a real answer was compared
    else:
        assert outcome == {}


@pytest.mark.parametrize("mode", ["token-404", "token-500", "answers"])
async def test_imdsv1_disabled_parity(instance_only: pytest.MonkeyPatch, mode: Mode) -> None:
    """With IMDSv1 forbidden, a missing token raises MetadataRetrievalError on both sides."""
    instance_only.setenv("AWS_EC2_METADATA_V1_DISABLED", "true")
    outcome = await _fetched_by_both(instance_only, mode)
    if mode == "answers":
        assert outcome["access_key"] == ACCESS_KEY
    else:
        assert outcome[0] == "MetadataRetrievalError"


async def test_closed_port_parity() -> None:
    """Nothing listening: both give nothing."""
    ours = await _outcome(InstanceMetadataFetcher(_ours()).retrieve)
    assert ours == await _outcome(_botocores().retrieve_iam_role_credentials) == {}


def _frozen_and_method(credentials: Any) -> Any:
    if credentials is None:
        return None
    frozen = credentials.get_frozen_credentials()
    return (credentials.method, tuple(frozen))


@pytest.mark.parametrize("mode", ["answers", "expired", "no-role", "error-json"])
async def test_provider_parity(instance_only: pytest.MonkeyPatch, mode: Mode) -> None:
    """The credentials object: botocore's provider and asqsd's loader, method and frozen keys."""
    async with FakeImds(mode) as imds:
        instance_only.setenv("AWS_EC2_METADATA_SERVICE_ENDPOINT", imds.endpoint)
        theirs = _frozen_and_method(await asyncio.to_thread(InstanceMetadataProvider(_botocores()).load))
        ours = await asyncio.to_thread(load_instance_profile, _ours())
        if ours is None:
            assert theirs is None
            return
        assert (ours.method, tuple(await ours.get_frozen_credentials())) == theirs
        assert theirs[0] == "iam-role"


async def test_expired_credentials_are_kept_a_while(instance_only: pytest.MonkeyPatch) -> None:
    """Static stability: credentials an hour past expiry get an expiry 17-25 minutes ahead."""
    async with FakeImds("expired") as imds:
        instance_only.setenv("AWS_EC2_METADATA_SERVICE_ENDPOINT", imds.endpoint)
        credentials = await asyncio.to_thread(load_instance_profile, _ours())
    assert credentials is not None
    ahead = (credentials.expiry_time - utc_now()).total_seconds()
    assert 17 * 60 - 5 <= ahead <= 25 * 60
    assert not credentials.refresh_needed()


class _Clock:
    """The real time plus an offset the test moves (the fake IMDS stamps expiries in real time)."""

    def __init__(self) -> None:
        self.ahead = datetime.timedelta()

    def __call__(self) -> datetime.datetime:
        return utc_now() + self.ahead


async def _loaded(imds: FakeImds, clock: _Clock, *, v1_disabled: bool = False) -> InstanceProfileCredentials:
    settings = ImdsSettings(
        imds.endpoint, timeout_s=1, num_attempts=1, v1_disabled=v1_disabled, user_agent="t"
    )
    credentials = await asyncio.to_thread(load_instance_profile, settings, clock)
    assert credentials is not None
    return credentials


async def test_fresh_credentials_are_not_fetched_again_due_ones_are() -> None:
    clock = _Clock()
    async with FakeImds("answers") as imds:
        credentials = await _loaded(imds, clock)
        fetched = imds.count("GET")
        clock.ahead = datetime.timedelta(minutes=40)  # 20 minutes left: nothing due
        assert (await credentials.get_frozen_credentials()).access_key == ACCESS_KEY
        assert imds.count("GET") == fetched
        clock.ahead = datetime.timedelta(minutes=47)  # 13 minutes left: advisory refresh
        assert (await credentials.get_frozen_credentials()).access_key == ACCESS_KEY
        assert imds.count("GET") == fetched + 2  # the role name, then its credentials
        clock.ahead = datetime.timedelta()
        await credentials.get_frozen_credentials()
        assert imds.count("GET") == fetched + 2


async def test_an_advisory_refresh_that_fails_keeps_the_keys_a_mandatory_one_raises() -> None:
    """The fetch raises (IMDSv1 forbidden and no token): kept in the advisory window, raised after."""
    clock = _Clock()
    async with FakeImds("answers") as imds:
        credentials = await _loaded(imds, clock, v1_disabled=True)
        imds.mode = "token-404"
        clock.ahead = datetime.timedelta(minutes=47)
        with capture_logs() as logs:
            assert (await credentials.get_frozen_credentials()).access_key == ACCESS_KEY
            clock.ahead = datetime.timedelta(minutes=52)  # 8 minutes left: mandatory
            with pytest.raises(MetadataRetrievalError):
                await credentials.get_frozen_credentials()
    failed = [(e["log_level"], e["period"]) for e in logs if e["event"] == "credentials-refresh-failed"]
    assert failed == [("warning", "advisory"), ("warning", "mandatory")]


async def test_a_refresh_that_finds_nothing_raises_as_botocore_does() -> None:
    """The IMDS answers without a role: botocore's refresh raises CredentialRetrievalError."""
    clock = _Clock()
    async with FakeImds("answers") as imds:
        credentials = await _loaded(imds, clock)
        imds.mode = "no-role"
        clock.ahead = datetime.timedelta(minutes=47)
        with pytest.raises(CredentialRetrievalError, match="access_key, secret_key, token, expiry_time"):
            await credentials.get_frozen_credentials()


async def test_one_refresh_at_a_time() -> None:
    """While a refresh waits on a slow IMDS, advisory callers keep the current keys at once;
    mandatory callers wait for it."""
    clock = _Clock()
    async with FakeImds("answers") as imds:
        credentials = await _loaded(imds, clock)
        imds.gate, imds.rotating = asyncio.Event(), True
        old = await credentials.get_frozen_credentials()  # not due yet: no request
        clock.ahead = datetime.timedelta(minutes=47)
        gets = imds.count("GET")
        first = asyncio.create_task(credentials.get_frozen_credentials())
        await wait_until(lambda: imds.count("GET") == gets + 2, timeout_s=30, what="the gated GET")
        assert await credentials.get_frozen_credentials() == old  # advisory: the current keys at once
        assert not first.done()
        clock.ahead = datetime.timedelta(minutes=52)  # now mandatory: the next caller waits
        second = asyncio.create_task(credentials.get_frozen_credentials())
        imds.gate.set()
        new, waited = await asyncio.wait_for(asyncio.gather(first, second), timeout=30)
        assert new.token != old.token and waited == new
        assert imds.count("PUT") == 2  # one refresh: the waiting caller found the new keys fresh


async def test_the_chain_uses_the_instance_profile_and_keeps_it(instance_only: pytest.MonkeyPatch) -> None:
    async with FakeImds("answers") as imds:
        instance_only.setenv("AWS_EC2_METADATA_SERVICE_ENDPOINT", imds.endpoint)
        chain = BotocoreChain(AwsConfigSession())
        credentials = await chain.get_credentials()
        assert isinstance(credentials, InstanceProfileCredentials)
        assert await chain.get_credentials() is credentials
        assert imds.count("PUT") == 1
