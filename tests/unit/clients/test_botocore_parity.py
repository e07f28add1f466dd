"""The start-up answers asqsd gives without importing botocore.utils are botocore's own.

With no shared config file, the configuration variables come from the environment alone
(``aws_config.env_config_variable``); endpoint URLs, region names, request paths and the environment's
proxies are checked by asqsd first and by botocore only when asqsd's quick check is not certain. Each
answer is compared with botocore's for the same input.
"""

from __future__ import annotations

import os
from pathlib import Path
from urllib.parse import quote

import botocore.session
import pytest
from botocore.exceptions import InvalidRegionError
from botocore.httpsession import ProxyConfiguration
from botocore.utils import (
    get_environ_proxies,
    is_valid_endpoint_url,
    is_valid_ipv6_endpoint_url,
    normalize_url_path,
    validate_region_name,
)

from asqsd.addresses import plain_host
from asqsd.clients.sqs.aws_config import AwsConfigSession, no_shared_config
from asqsd.clients.sqs.endpoint import _valid_region
from asqsd.clients.sqs.network import endpoint_proxy_url
from asqsd.clients.sqs.sigv4 import _canonical_path

# Each served variable with values botocore converts differently (int, boolean, as is; empty).
_VALUES = {
    "AWS_DEFAULT_REGION": ["eu-west-1", ""],
    "AWS_DATA_PATH": ["/opt/models"],
    "AWS_CA_BUNDLE": ["/etc/ca.pem", ""],
    "AWS_METADATA_SERVICE_TIMEOUT": ["3"],
    "AWS_METADATA_SERVICE_NUM_ATTEMPTS": ["2"],
    "AWS_EC2_METADATA_V1_DISABLED": ["true", "True", "no"],
    "AWS_IMDS_USE_IPV6": ["TRUE", ""],
    "AWS_EC2_METADATA_SERVICE_ENDPOINT": ["http://127.0.0.1:1338"],
    "AWS_EC2_METADATA_SERVICE_ENDPOINT_MODE": ["IPv6"],
    "AWS_USE_DUALSTACK_ENDPOINT": ["true", "TRUE", "false", "yes", ""],
    "AWS_USE_FIPS_ENDPOINT": ["True", "0"],
}
_SERVED = [
    "profile",
    "region",
    "data_path",
    "config_file",
    "credentials_file",
    "ca_bundle",
    "metadata_service_timeout",
    "metadata_service_num_attempts",
    "ec2_metadata_service_endpoint",
    "ec2_metadata_service_endpoint_mode",
    "ec2_metadata_v1_disabled",
    "imds_use_ipv6",
    "use_dualstack_endpoint",
    "use_fips_endpoint",
]


@pytest.fixture
def no_files(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> pytest.MonkeyPatch:
    """Both shared files named but missing, no profile and none of the served variables set."""
    for name in [*_VALUES, "AWS_PROFILE", "AWS_DEFAULT_PROFILE"]:
        monkeypatch.delenv(name, raising=False)
    monkeypatch.setenv("AWS_CONFIG_FILE", str(tmp_path / "config"))
    monkeypatch.setenv("AWS_SHARED_CREDENTIALS_FILE", str(tmp_path / "credentials"))
    return monkeypatch


def _both() -> tuple[list[object], list[object]]:
    ours, theirs = AwsConfigSession(), botocore.session.get_session()
    return [ours.get_config_variable(n) for n in _SERVED], [theirs.get_config_variable(n) for n in _SERVED]


def test_unset_variables_give_botocores_defaults(no_files: pytest.MonkeyPatch) -> None:
    assert no_shared_config(os.environ)
    ours, theirs = _both()
    assert ours == theirs


@pytest.mark.parametrize(
    ("var", "value"), [(var, value) for var, values in _VALUES.items() for value in values]
)
def test_each_variable_set_gives_botocores_value(no_files: pytest.MonkeyPatch, var: str, value: str) -> None:
    no_files.setenv(var, value)
    ours, theirs = _both()
    assert ours == theirs


def test_a_config_file_or_a_profile_means_botocores_store(
    no_files: pytest.MonkeyPatch, tmp_path: Path
) -> None:
    no_files.setenv("AWS_PROFILE", "work")
    assert not no_shared_config(os.environ)
    no_files.delenv("AWS_PROFILE")
    (tmp_path / "config").write_text("[default]\nregion = ap-south-1\nuse_fips_endpoint = true\n")
    assert not no_shared_config(os.environ)
    session = AwsConfigSession()
    assert session.get_config_variable("region") == "ap-south-1"
    assert session.get_config_variable("use_fips_endpoint") is True


_ENDPOINTS = [
    "http://127.0.0.1:9324",
    "https://sqs.eu-west-1.amazonaws.com",
    "http://localhost.:80/",
    "http://-bad.example",
    "http://a_b.example",
    "http://[::1]:9324",
    "http://exa\tmple.com",
    "http://" + "a" * 64 + ".example",
    "http://bücher.example",
    "not a url",
]


@pytest.mark.parametrize("endpoint", _ENDPOINTS)
def test_plain_hosts_are_ones_botocore_accepts(endpoint: str) -> None:
    botocore_accepts = bool(is_valid_endpoint_url(endpoint) or is_valid_ipv6_endpoint_url(endpoint))
    assert not plain_host(endpoint) or botocore_accepts
    if endpoint in _ENDPOINTS[:3]:
        assert plain_host(endpoint)  # the usual ones need no botocore


@pytest.mark.parametrize(
    "region", ["us-east-1", "eu-west-1", "us-gov-west-1", "local", "123", "-x", "bad region", ""]
)
def test_region_names_as_botocore_validates_them(region: str) -> None:
    try:
        validate_region_name(region)
    except InvalidRegionError:
        valid = False
    else:
        valid = True
    assert _valid_region(region) is valid


@pytest.mark.parametrize(
    "path", ["/123456789012/q", "/1/q/", "/", "", "//a", "/a/./b", "/a/../b", "/a b/~c", "a/b"]
)
def test_canonical_paths_are_botocores(path: str) -> None:
    assert _canonical_path(path) == quote(normalize_url_path(path), safe="/~")


@pytest.mark.parametrize(
    "env",
    [{}, {"HTTPS_PROXY": "http://127.0.0.1:3128"}, {"http_proxy": "127.0.0.1:3128", "NO_PROXY": "127.0.0.1"}],
)
def test_environment_proxies_as_botocore_reads_them(
    monkeypatch: pytest.MonkeyPatch, env: dict[str, str]
) -> None:
    for name in [n for n in os.environ if n.lower().endswith("_proxy")]:
        monkeypatch.delenv(name)
    for name, value in env.items():
        monkeypatch.setenv(name, value)
    for url in ("http://127.0.0.1:9324", "https://sqs.eu-west-1.amazonaws.com"):
        expected = ProxyConfiguration(proxies=get_environ_proxies(url)).proxy_url_for(url) or None
        assert endpoint_proxy_url(url, None) == expected
