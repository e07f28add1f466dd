"""Which proxy and CA bundle the SQS endpoint gets, and how a proxy is spoken to (pure logic).

The proxy choice must be botocore's for the same environment; the tests pin the rules users rely
on (scheme, spelling, NO_PROXY forms) and, where it matters, compare with botocore directly.
"""

from __future__ import annotations

from collections.abc import Callable
from pathlib import Path
from typing import Any

import pytest
from botocore.utils import get_environ_proxies

from asqsd.clients.http1.proxy import HTTPProxy, ProxyError, _check_reply
from asqsd.clients.sqs.network import (
    ca_bundle,
    check_ca_bundle,
    endpoint_proxy_url,
    environment_proxies,
    lean_proxy,
    proxy_address,
    session_tls_context,
    tls_context,
)
from asqsd.clients.sqs.transport import LeanHTTPTransport
from asqsd.errors import StartupError
from tests.support.proxy import clear_proxy_environment

SQS = "https://sqs.eu-west-1.amazonaws.com"


@pytest.fixture(autouse=True)
def clean_environment(monkeypatch: pytest.MonkeyPatch) -> None:
    clear_proxy_environment(monkeypatch)


# --- endpoint_proxy_url: botocore's choice ---------------------------------------------------------


def test_no_proxy_variables_means_direct() -> None:
    assert endpoint_proxy_url(SQS, None) is None


def test_the_endpoint_scheme_picks_the_variable(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("HTTPS_PROXY", "http://secure-proxy:3128")
    monkeypatch.setenv("HTTP_PROXY", "http://plain-proxy:3128")
    assert endpoint_proxy_url(SQS, None) == "http://secure-proxy:3128"
    assert endpoint_proxy_url("http://127.0.0.1:9324", None) == "http://plain-proxy:3128"


def test_an_https_endpoint_ignores_http_proxy_and_all_proxy(monkeypatch: pytest.MonkeyPatch) -> None:
    """As in botocore: HTTP_PROXY is for http endpoints, and ALL_PROXY is not read at all."""
    monkeypatch.setenv("HTTP_PROXY", "http://plain-proxy:3128")
    monkeypatch.setenv("ALL_PROXY", "http://any-proxy:3128")
    assert endpoint_proxy_url(SQS, None) is None


def test_lower_case_wins_over_upper_case(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("HTTPS_PROXY", "http://upper:1")
    monkeypatch.setenv("https_proxy", "http://lower:2")
    monkeypatch.setenv("NO_PROXY", "amazonaws.com")
    monkeypatch.setenv("no_proxy", "example.com")
    assert endpoint_proxy_url(SQS, None) == "http://lower:2"


def test_a_proxy_without_a_scheme_is_http(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("HTTPS_PROXY", "proxy.internal:3128")
    assert endpoint_proxy_url(SQS, None) == "http://proxy.internal:3128"


@pytest.mark.parametrize(
    ("no_proxy", "endpoint", "bypassed"),
    [
        ("*", SQS, True),
        ("amazonaws.com", SQS, True),  # a domain suffix
        (".amazonaws.com", SQS, True),  # a leading dot is ignored
        ("sqs.eu-west-1.amazonaws.com", SQS, True),
        ("SQS.EU-WEST-1.AMAZONAWS.COM", SQS, True),  # case-insensitive
        ("example.com, amazonaws.com", SQS, True),  # a list, spaces allowed
        ("sqs.eu-west-1.amazonaws.com:443", SQS, False),  # the URL has no port: none to match
        ("s.amazonaws.com", SQS, False),  # suffixes match whole labels only
        ("127.0.0.1", "http://127.0.0.1:9324", True),
        ("127.0.0.1:9324", "http://127.0.0.1:9324", True),  # with the port
        ("127.0.0.1:9325", "http://127.0.0.1:9324", False),  # another port
        ("127.0.0.0/8", "http://127.0.0.1:9324", False),  # no CIDR ranges (urllib, botocore)
        ("localhost", "http://127.0.0.1:9324", False),  # names, not addresses
        ("", "http://127.0.0.1:9324", False),  # loopback is not special
    ],
)
def test_no_proxy_follows_urllib(
    monkeypatch: pytest.MonkeyPatch, no_proxy: str, endpoint: str, bypassed: bool
) -> None:
    monkeypatch.setenv("HTTPS_PROXY", "http://proxy:3128")
    monkeypatch.setenv("HTTP_PROXY", "http://proxy:3128")
    monkeypatch.setenv("NO_PROXY", no_proxy)
    assert (endpoint_proxy_url(endpoint, None) is None) is bypassed
    assert (get_environ_proxies(endpoint) == {}) is bypassed  # botocore's own view


def test_configured_proxies_win_and_ignore_no_proxy(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("HTTPS_PROXY", "http://from-env:1")
    monkeypatch.setenv("NO_PROXY", "*")
    assert endpoint_proxy_url(SQS, {"https": "http://configured:2"}) == "http://configured:2"
    assert endpoint_proxy_url(SQS, {}) is None  # configured as none at all


def test_proxy_address_never_shows_credentials() -> None:
    assert proxy_address("http://ops:hunter2@proxy.internal:3128") == "proxy.internal:3128"
    assert proxy_address("http://proxy.internal") == "proxy.internal:80"
    assert proxy_address("http://[fd00::1]:3128") == "fd00::1:3128"


# --- HTTPProxy: the proxy as the lean transport speaks to it ---------------------------------------


def test_a_proxy_url_with_credentials() -> None:
    proxy = HTTPProxy.from_url("http://ops%40corp:p%3Ass@proxy.internal:3128")
    assert (proxy.host, proxy.port, proxy.address) == ("proxy.internal", 3128, "proxy.internal:3128")
    # base64("ops@corp:p:ss"): the user and password percent-decoded first.
    assert proxy.authorization == "Basic b3BzQGNvcnA6cDpzcw=="


def test_a_proxy_url_without_credentials_or_port() -> None:
    assert HTTPProxy.from_url("http://proxy.internal") == HTTPProxy("proxy.internal", 80, None)


@pytest.mark.parametrize(
    ("url", "problem"),
    [
        ("https://proxy.internal:3128", "only http:// proxies"),
        ("socks5://proxy.internal:1080", "only http:// proxies"),
        ("http://:3128", "no host"),
        ("http://proxy.internal:99999", "out of range"),
    ],
)
def test_unusable_proxy_urls(url: str, problem: str) -> None:
    with pytest.raises(ValueError, match=problem):
        HTTPProxy.from_url(url)


def test_lean_proxy_masks_the_credentials_of_an_unusable_url() -> None:
    with pytest.raises(StartupError) as caught:
        lean_proxy("https://ops:hunter2@proxy.internal:3128")
    message = str(caught.value)
    assert "hunter2" not in message and "ops" not in message
    assert "https://***:***@proxy.internal:3128" in message
    assert "sqs_client: botocore" in message


def test_the_connect_request() -> None:
    proxy = HTTPProxy("proxy.internal", 3128, "Basic b3BzOnM=")
    assert proxy.connect_request("sqs.eu-west-1.amazonaws.com", 443) == (
        b"CONNECT sqs.eu-west-1.amazonaws.com:443 HTTP/1.1\r\n"
        b"Host: sqs.eu-west-1.amazonaws.com:443\r\n"
        b"Proxy-Authorization: Basic b3BzOnM=\r\n\r\n"
    )
    assert (
        HTTPProxy("p", 1).connect_request("::1", 443)
        == b"CONNECT [::1]:443 HTTP/1.1\r\nHost: [::1]:443\r\n\r\n"
    )


@pytest.mark.parametrize(
    "reply", [b"HTTP/1.1 200 Connection established\r\n\r\n", b"HTTP/1.0 200\r\nVia: squid\r\n\r\n"]
)
def test_a_2xx_reply_opens_the_tunnel(reply: bytes) -> None:
    _check_reply(reply, "sqs:443")


@pytest.mark.parametrize(
    ("reply", "problem"),
    [
        (
            b"HTTP/1.1 403 Forbidden\r\nContent-Length: 4\r\n\r\ndeny",
            "refused CONNECT sqs:443: HTTP 403 Forbidden",
        ),
        (b"HTTP/1.1 407 \r\n\r\n", "refused CONNECT sqs:443: HTTP 407$"),
        (b"HTTP/1.1 502 Bad Gateway\r\n\r\n", "HTTP 502 Bad Gateway"),
        (b"SSH-2.0-OpenSSH\r\n\r\n", "something else than HTTP"),
        (b"HTTP/1.1 200 OK\r\n\r\n\x16\x03", "sent data after its answer"),
    ],
)
def test_other_replies_are_proxy_errors(reply: bytes, problem: str) -> None:
    with pytest.raises(ProxyError, match=problem):
        _check_reply(reply, "sqs:443")


@pytest.mark.parametrize(
    ("url", "proxy", "start"),
    [
        ("https://sqs.example/", None, b"POST / HTTP/1.1\r\n"),
        ("https://sqs.example/", HTTPProxy("p", 1, "Basic eA=="), b"POST / HTTP/1.1\r\n"),  # tunnelled
        ("http://sqs.example:9324/", HTTPProxy("p", 1), b"POST http://sqs.example:9324/ HTTP/1.1\r\n"),
        (
            "http://sqs.example/x?y=1",
            HTTPProxy("p", 1, "Basic eA=="),
            b"POST http://sqs.example/x?y=1 HTTP/1.1\r\nProxy-Authorization: Basic eA==\r\n",
        ),
    ],
    ids=["direct", "tunnel", "forwarded", "forwarded-with-credentials"],
)
def test_request_forms(url: str, proxy: HTTPProxy | None, start: bytes) -> None:
    """Origin form directly and inside a tunnel; absolute form (plus credentials) to a forwarding proxy."""
    transport = LeanHTTPTransport(url, proxy=proxy)
    data = transport.serialize({"Host": "sqs.example"}, b"{}")
    assert data == start + b"Host: sqs.example\r\nContent-Length: 2\r\n\r\n{}"


# --- the CA bundle ----------------------------------------------------------------------------------


class _Session:
    def __init__(self, ca_bundle: str | None) -> None:
        self._ca_bundle = ca_bundle

    def get_config_variable(self, name: str) -> Any:
        assert name == "ca_bundle"
        return self._ca_bundle


def test_the_ca_bundle_comes_from_the_session_then_requests_ca_bundle(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    assert ca_bundle(_Session(None)) is None
    monkeypatch.setenv("REQUESTS_CA_BUNDLE", "/etc/requests.pem")
    assert ca_bundle(_Session(None)) == "/etc/requests.pem"
    assert ca_bundle(_Session("/etc/aws.pem")) == "/etc/aws.pem"


def test_the_session_reads_aws_ca_bundle(monkeypatch: pytest.MonkeyPatch) -> None:
    from aiobotocore.session import get_session

    monkeypatch.setenv("AWS_CA_BUNDLE", "/etc/pki/corp.pem")
    assert ca_bundle(get_session()) == "/etc/pki/corp.pem"


@pytest.mark.parametrize("check", [tls_context, check_ca_bundle], ids=["loaded", "checked"])
@pytest.mark.parametrize(
    ("content", "problem"),
    [
        (None, "No such file"),
        (b"", "no certificate|NO_CERTIFICATE"),
        (b"junk\n", "no certificate|NO_CERTIFICATE"),
    ],
)
def test_an_unusable_ca_bundle_is_a_startup_error(
    tmp_path: Path, content: bytes | None, problem: str, check: Callable[[str], object]
) -> None:
    """Loaded (an https endpoint) or only checked (http), the same files are refused, alike."""
    bundle = tmp_path / "corp.pem"
    if content is not None:
        bundle.write_bytes(content)
    with pytest.raises(StartupError, match=problem) as caught:
        check(str(bundle))
    assert f"CA bundle '{bundle}'" in str(caught.value)
    assert "AWS_CA_BUNDLE" in str(caught.value)


def test_the_bundle_is_loaded_only_for_an_https_endpoint(tmp_path: Path) -> None:
    bundle = tmp_path / "corp.pem"
    # A certificate marker the check accepts, but no certificate ssl can parse: only loading fails.
    bundle.write_bytes(b"-----BEGIN CERTIFICATE-----\nnot base64\n-----END CERTIFICATE-----\n")
    check_ca_bundle(str(bundle))
    assert session_tls_context(_Session(str(bundle)), "http://127.0.0.1:9324") is None
    with pytest.raises(StartupError, match="No such file"):  # checked for http all the same
        session_tls_context(_Session(str(tmp_path / "missing.pem")), "http://127.0.0.1:9324")
    with pytest.raises(StartupError, match="CA bundle"):
        session_tls_context(_Session(str(bundle)), SQS)
    with pytest.raises(StartupError, match="CA bundle"):
        session_tls_context(_Session(str(bundle)))  # the endpoint not known: loaded, as before


@pytest.mark.parametrize(
    "variables",
    [
        {},
        {"HTTPS_PROXY": "http://proxy:3128"},
        {"http_proxy": "http://proxy:3128", "NO_PROXY": "*"},
        {"ftp_proxy": "http://proxy:21"},
        {"HTTP_PROXY": ""},
        {"NO_PROXY": "example.com"},
        {"Https_Proxy": "proxy:8080"},
    ],
)
def test_environment_proxies_are_urllibs(monkeypatch: pytest.MonkeyPatch, variables: dict[str, str]) -> None:
    from urllib.request import getproxies

    for name, value in variables.items():
        monkeypatch.setenv(name, value)
    assert environment_proxies() == getproxies()


def test_a_directory_is_not_a_ca_bundle(tmp_path: Path) -> None:
    with pytest.raises(StartupError, match="CA bundle"):
        tls_context(str(tmp_path))
