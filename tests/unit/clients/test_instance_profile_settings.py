"""When asqsd asks the IMDS itself, and with which settings: botocore's, compared input by input.

:func:`instance_profile_settings` must answer only when botocore's default chain would end at the
instance-metadata provider, and then with the endpoint, timeout, attempts, IMDSv1 switch and
User-Agent botocore's fetcher would use. Any other configuration is left to botocore's chain.
"""

from __future__ import annotations

import os
from pathlib import Path

import botocore.session
import pytest
from botocore.credentials import create_credential_resolver
from botocore.exceptions import InvalidIMDSEndpointModeError
from botocore.utils import InstanceMetadataFetcher, resolve_imds_endpoint_mode

from asqsd.clients.sqs.aws_config import AwsConfigSession
from asqsd.clients.sqs.imds import imds_endpoint
from asqsd.clients.sqs.instance_profile import ImdsSettings, instance_profile_settings
from tests.support.imds import instance_environment


@pytest.fixture(autouse=True)
def instance_only(monkeypatch: pytest.MonkeyPatch, tmp_path: Path) -> pytest.MonkeyPatch:
    """An instance's environment: no AWS or boto variable, no proxy, both shared files missing."""
    instance_environment(monkeypatch, tmp_path)
    return monkeypatch


def _settings() -> ImdsSettings | None:
    return instance_profile_settings(AwsConfigSession(), os.environ)


def _botocores() -> tuple[str, float, int, bool, str]:
    """What botocore's default chain configures its IMDS fetcher with, for the same environment."""
    session = botocore.session.get_session()
    fetcher = InstanceMetadataFetcher(
        config={
            "ec2_metadata_service_endpoint": session.get_config_variable("ec2_metadata_service_endpoint"),
            "ec2_metadata_service_endpoint_mode": resolve_imds_endpoint_mode(session),
        }
    )
    return (
        fetcher.get_base_url(),
        session.get_config_variable("metadata_service_timeout"),
        session.get_config_variable("metadata_service_num_attempts"),
        bool(session.get_config_variable("ec2_metadata_v1_disabled")),
        session.user_agent(),
    )


def test_with_nothing_configured_botocores_chain_ends_at_the_instance_profile() -> None:
    resolver = create_credential_resolver(botocore.session.get_session())
    resolver.remove("iam-role")
    assert resolver.load_credentials() is None  # every other source finds nothing
    assert _settings() is not None


@pytest.mark.parametrize(
    "env",
    [
        {},
        {"AWS_EC2_METADATA_SERVICE_ENDPOINT": "http://127.0.0.1:1338/"},
        {"AWS_EC2_METADATA_SERVICE_ENDPOINT": "http://imds.internal:8080"},
        {"AWS_EC2_METADATA_SERVICE_ENDPOINT_MODE": "IPv6"},
        {"AWS_IMDS_USE_IPV6": "true"},
        {"AWS_IMDS_USE_IPV6": "TRUE", "AWS_EC2_METADATA_SERVICE_ENDPOINT_MODE": "ipv4"},
        {"AWS_METADATA_SERVICE_TIMEOUT": "3", "AWS_METADATA_SERVICE_NUM_ATTEMPTS": "4"},
        {"AWS_EC2_METADATA_V1_DISABLED": "true"},
        {"AWS_EC2_METADATA_V1_DISABLED": "yes"},
        {"AWS_EXECUTION_ENV": "AWS_ECS_EC2"},
        {"HTTP_PROXY": "http://127.0.0.1:3128", "NO_PROXY": "169.254.169.254"},
    ],
)
def test_settings_are_botocores(instance_only: pytest.MonkeyPatch, env: dict[str, str]) -> None:
    for name, value in env.items():
        instance_only.setenv(name, value)
    settings = _settings()
    assert settings is not None
    ours = (
        settings.endpoint,
        settings.timeout_s,
        settings.num_attempts,
        settings.v1_disabled,
        settings.user_agent,
    )
    assert ours == _botocores()


@pytest.mark.parametrize(
    "env",
    [
        {"AWS_ACCESS_KEY_ID": "AKIDEXAMPLE"},
        {"AWS_SECRET_ACCESS_KEY": "secret"},
        {"AWS_SESSION_TOKEN": "token"},
        {"AWS_SECURITY_TOKEN": "token"},
        {"AWS_CREDENTIAL_EXPIRATION": "2030-01-01T00:00:00Z"},
        {"AWS_WEB_IDENTITY_TOKEN_FILE": "/var/run/token", "AWS_ROLE_ARN": "arn:aws:iam::1:role/r"},
        {"AWS_ROLE_ARN": "arn:aws:iam::1:role/r"},
        {"AWS_CONTAINER_CREDENTIALS_RELATIVE_URI": "/v2/credentials/x"},
        {"AWS_CONTAINER_CREDENTIALS_FULL_URI": "http://127.0.0.1:9/creds"},
        {"AWS_CREDENTIAL_FILE": "/etc/aws-credentials"},
        {"BOTO_CONFIG": "/etc/boto.cfg"},
        {"AWS_EC2_METADATA_DISABLED": "true"},
        {"AWS_PROFILE": "work"},
        {"AWS_DEFAULT_PROFILE": "work"},
        {"HTTP_PROXY": "http://127.0.0.1:3128"},
        {"AWS_EC2_METADATA_SERVICE_ENDPOINT": "https://127.0.0.1:1338/"},
        {"AWS_EC2_METADATA_SERVICE_ENDPOINT": "http://user:pw@127.0.0.1:1338/"},
        {"AWS_EC2_METADATA_SERVICE_ENDPOINT": "http://[::1]:1338/"},
        {"AWS_EC2_METADATA_SERVICE_ENDPOINT": "http://127.0.0.1:99999/"},
    ],
)
def test_anything_else_is_left_to_botocores_chain(
    instance_only: pytest.MonkeyPatch, env: dict[str, str]
) -> None:
    for name, value in env.items():
        instance_only.setenv(name, value)
    assert _settings() is None


def test_a_shared_file_is_left_to_botocores_chain(tmp_path: Path) -> None:
    (tmp_path / "missing-config").write_text("[default]\nregion = eu-west-1\n")
    assert _settings() is None


@pytest.mark.parametrize("mode", ["ipv5", ""])
def test_an_unknown_endpoint_mode_raises_botocores_error(
    instance_only: pytest.MonkeyPatch, mode: str
) -> None:
    instance_only.setenv("AWS_EC2_METADATA_SERVICE_ENDPOINT_MODE", mode)
    with pytest.raises(InvalidIMDSEndpointModeError) as theirs:
        resolve_imds_endpoint_mode(botocore.session.get_session())
    with pytest.raises(InvalidIMDSEndpointModeError) as ours:
        imds_endpoint(AwsConfigSession())
    assert str(ours.value) == str(theirs.value)
