"""AwsConfigSession gives what a botocore session gives: configuration, profiles and credentials."""

from __future__ import annotations

from collections.abc import Callable
from pathlib import Path
from typing import Any

import botocore.session
import pytest
from botocore.credentials import RefreshableCredentials
from botocore.exceptions import PartialCredentialsError, ProfileNotFound

from asqsd.clients.sqs.aws_config import AwsConfigSession, EnvCredentials
from asqsd.clients.sqs.credential_chain import BotocoreChain, ThreadedCredentials
from asqsd.clients.sqs.endpoint import regional_endpoint

_CONFIG = """\
[default]
region = eu-west-1
[profile work]
region = ap-south-1
ca_bundle = /etc/work-ca.pem
services = local
[services local]
sqs =
  endpoint_url = http://127.0.0.1:9324
"""
_CREDENTIALS = """\
[default]
aws_access_key_id = FILEKEY
aws_secret_access_key = FILESECRET
[only-here]
aws_access_key_id = OTHER
aws_secret_access_key = OTHERSECRET
"""


@pytest.fixture
def aws_env(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> pytest.MonkeyPatch:
    """No AWS variable but the two files (written here) and IMDS off: nothing asked over the network."""
    for name in [
        "AWS_ACCESS_KEY_ID",
        "AWS_SECRET_ACCESS_KEY",
        "AWS_SESSION_TOKEN",
        "AWS_SECURITY_TOKEN",
        "AWS_CREDENTIAL_EXPIRATION",
        "AWS_ACCOUNT_ID",
        "AWS_PROFILE",
        "AWS_DEFAULT_PROFILE",
        "AWS_REGION",
        "AWS_DEFAULT_REGION",
        "AWS_CA_BUNDLE",
    ]:
        monkeypatch.delenv(name, raising=False)
    (tmp_path / "config").write_text(_CONFIG)
    (tmp_path / "credentials").write_text(_CREDENTIALS)
    monkeypatch.setenv("AWS_CONFIG_FILE", str(tmp_path / "config"))
    monkeypatch.setenv("AWS_SHARED_CREDENTIALS_FILE", str(tmp_path / "credentials"))
    monkeypatch.setenv("AWS_EC2_METADATA_DISABLED", "true")
    return monkeypatch


def _frozen(credentials: Any) -> tuple[Any, ...]:
    frozen = credentials.get_frozen_credentials()
    return (credentials.method, frozen.access_key, frozen.secret_key, frozen.token, frozen.account_id)


async def _ours(session: AwsConfigSession) -> tuple[Any, ...]:
    credentials = await BotocoreChain(session).get_credentials()
    assert credentials is not None
    frozen = await credentials.get_frozen_credentials()
    return (credentials.method, frozen.access_key, frozen.secret_key, frozen.token, frozen.account_id)


def _assert_same_error(error: type[Exception], call: Callable[[Any], object]) -> None:
    """``call`` raises ``error``, with botocore's message, on both sessions."""
    messages = []
    for session in (AwsConfigSession(), botocore.session.get_session()):
        with pytest.raises(error) as raised:
            call(session)
        messages.append(str(raised.value))
    assert messages[0] == messages[1]


@pytest.mark.parametrize(
    "env",
    [
        {"AWS_ACCESS_KEY_ID": "AK", "AWS_SECRET_ACCESS_KEY": "SK"},
        {"AWS_ACCESS_KEY_ID": "AK", "AWS_SECRET_ACCESS_KEY": "SK", "AWS_SESSION_TOKEN": "ST"},
        {"AWS_ACCESS_KEY_ID": "AK", "AWS_SECRET_ACCESS_KEY": "SK", "AWS_SECURITY_TOKEN": "OLD"},
        {
            "AWS_ACCESS_KEY_ID": "AK",
            "AWS_SECRET_ACCESS_KEY": "SK",
            "AWS_SECURITY_TOKEN": "OLD",
            "AWS_SESSION_TOKEN": "ST",
        },
        {
            "AWS_ACCESS_KEY_ID": "AK",
            "AWS_SECRET_ACCESS_KEY": "SK",
            "AWS_SESSION_TOKEN": "",
            "AWS_ACCOUNT_ID": "1234",
        },
        {"AWS_ACCESS_KEY_ID": "AK", "AWS_SECRET_ACCESS_KEY": "SK", "AWS_PROFILE": "work"},
    ],
)
async def test_environment_keys_are_botocores_without_botocores_session(
    aws_env: pytest.MonkeyPatch, env: dict[str, str]
) -> None:
    for name, value in env.items():
        aws_env.setenv(name, value)
    session = AwsConfigSession()
    assert isinstance(session.get_credentials(), EnvCredentials)
    assert session._session is None  # no botocore session was made
    assert await _ours(session) == _frozen(botocore.session.get_session().get_credentials())


@pytest.mark.parametrize(
    ("env", "method"),
    [
        ({}, "shared-credentials-file"),
        ({"AWS_ACCESS_KEY_ID": "", "AWS_SECRET_ACCESS_KEY": "SK"}, "shared-credentials-file"),
        ({"AWS_PROFILE": "only-here"}, "shared-credentials-file"),
    ],
)
async def test_other_sources_are_botocores_chain(
    aws_env: pytest.MonkeyPatch, env: dict[str, str], method: str
) -> None:
    for name, value in env.items():
        aws_env.setenv(name, value)
    session = AwsConfigSession()
    credentials = await BotocoreChain(session).get_credentials()
    assert isinstance(credentials, ThreadedCredentials)
    assert credentials.method == method
    assert await _ours(session) == _frozen(botocore.session.get_session().get_credentials())


async def test_expiring_environment_keys_stay_botocores_refreshable_ones(aws_env: pytest.MonkeyPatch) -> None:
    aws_env.setenv("AWS_ACCESS_KEY_ID", "AK")
    aws_env.setenv("AWS_SECRET_ACCESS_KEY", "SK")
    aws_env.setenv("AWS_CREDENTIAL_EXPIRATION", "2999-01-01T00:00:00Z")
    assert isinstance(AwsConfigSession().get_credentials(), RefreshableCredentials)


def test_a_key_id_without_its_secret_fails_as_in_botocore(aws_env: pytest.MonkeyPatch) -> None:
    aws_env.setenv("AWS_ACCESS_KEY_ID", "AK")
    _assert_same_error(PartialCredentialsError, lambda session: session.get_credentials())


@pytest.mark.parametrize("profile", [None, "work", "only-here", "default"])
def test_configuration_is_botocores(aws_env: pytest.MonkeyPatch, profile: str | None) -> None:
    if profile is not None:
        aws_env.setenv("AWS_PROFILE", profile)
    ours, theirs = AwsConfigSession(), botocore.session.get_session()
    assert ours.full_config == theirs.full_config
    assert ours.get_scoped_config() == theirs.get_scoped_config()
    assert ours.profile == theirs.profile
    for name in ("region", "ca_bundle", "use_fips_endpoint", "ec2_metadata_service_endpoint_mode"):
        assert ours.get_config_variable(name) == theirs.get_config_variable(name)


def test_the_environment_overrides_the_profile_as_in_botocore(aws_env: pytest.MonkeyPatch) -> None:
    aws_env.setenv("AWS_PROFILE", "work")
    aws_env.setenv("AWS_DEFAULT_REGION", "us-west-2")
    aws_env.setenv("AWS_CA_BUNDLE", "/etc/env-ca.pem")
    ours = AwsConfigSession()
    assert (ours.get_config_variable("region"), ours.get_config_variable("ca_bundle")) == (
        "us-west-2",
        "/etc/env-ca.pem",
    )


def test_a_missing_profile_is_botocores_error(aws_env: pytest.MonkeyPatch) -> None:
    aws_env.setenv("AWS_PROFILE", "nowhere")
    _assert_same_error(ProfileNotFound, lambda session: session.get_scoped_config())


def test_missing_files_are_an_empty_configuration(aws_env: pytest.MonkeyPatch, tmp_path: Path) -> None:
    aws_env.setenv("AWS_CONFIG_FILE", str(tmp_path / "absent"))
    aws_env.setenv("AWS_SHARED_CREDENTIALS_FILE", str(tmp_path / "absent-too"))
    ours, theirs = AwsConfigSession(), botocore.session.get_session()
    assert ours.full_config == theirs.full_config == {"profiles": {}}
    assert ours.get_scoped_config() == {}


def test_the_data_loader_searches_botocores_paths(aws_env: pytest.MonkeyPatch, tmp_path: Path) -> None:
    aws_env.setenv("AWS_DATA_PATH", str(tmp_path))
    ours, theirs = AwsConfigSession(), botocore.session.get_session()
    assert ours.get_component("data_loader").search_paths == theirs.get_component("data_loader").search_paths
    assert ours._session is None


def test_a_usual_regions_endpoint_needs_no_botocore_session(aws_env: pytest.MonkeyPatch) -> None:
    ours = AwsConfigSession()
    assert regional_endpoint(ours, "eu-west-1") == regional_endpoint(
        botocore.session.get_session(), "eu-west-1"
    )
    assert ours._session is None


def test_anything_else_is_the_botocore_sessions(aws_env: pytest.MonkeyPatch) -> None:
    session = AwsConfigSession()
    assert session.get_component("event_emitter") is session.botocore_session().get_component("event_emitter")
    assert isinstance(session.botocore_session(), botocore.session.Session)
